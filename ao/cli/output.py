"""How every listing prints, in one place: a table on a terminal, plain lines when piped, JSON on request.

When stdout is a terminal a listing is a rich table (colours, folded cells). When it is not (a pipe, a file,
``$(...)``), every record is one line of tab-separated fields, nothing wrapped, no header and no colour, as
``gh`` does: ``ao status | grep feat/issue-3``, ``cut -f1`` and ``awk -F'\\t'`` work. Messages about the
listing (nothing found, warnings) go to stderr so that stdout holds only records.

A command module builds its rows as plain dicts and calls :func:`listing`::

    from ao.cli.output import Column, listing

    listing(rows, [Column("session"), Column("status", style=status_style)], title="sessions",
            empty="no sessions (start one with: ao spawn PROJECT ISSUE)", json=json)

Times in JSON output are ISO 8601 UTC strings (:func:`iso`), never epoch numbers.
"""

from __future__ import annotations

import json as jsonlib
import re
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Optional, Sequence

from ao.durations import ago, short_duration  # noqa: F401 - re-exported for command modules

_BREAKS = re.compile(r"[\t\n\r\v\f\x85\u2028\u2029]+")


@dataclass(frozen=True)
class Column:
    """One column: the row key it shows, its heading on a terminal, and an optional rich style per row."""

    key: str
    header: str = ""
    style: Optional[Callable[[dict[str, Any]], Optional[str]]] = None
    text: Optional[Callable[[dict[str, Any]], Any]] = None  # what to show, when it is not row[key]
    # On a terminal: "fold" wraps a long cell over lines; "keep" never splits it (an id, a status, a branch:
    # the table gives way around it); "clip" keeps free text to one line, cut with an ellipsis.
    fit: str = "fold"
    # When the table is wider than the terminal, columns go in decreasing ``drop`` order (0: never).
    drop: int = 0

    @property
    def title(self) -> str:
        return self.header or self.key

    def value(self, row: dict[str, Any]) -> str:
        return cell(self.text(row) if self.text else row.get(self.key))


def is_terminal(stream: Any = None) -> bool:
    stream = sys.stdout if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def cell(value: Any) -> str:
    """A field as one line of text: tabs and line breaks become spaces (they would split a record), other
    control characters are shown as ``\\xNN`` (``common.safe_text``); nothing (None, "", "none") is ``-``."""
    from ao.cli.common import safe_text

    if value is None or value == "" or value == "none":
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, tuple)):
        value = ",".join(str(v) for v in value) if value else "-"
    text = safe_text(_BREAKS.sub(" ", str(value))).strip()
    return text or "-"


def iso(ts: Any) -> Optional[str]:
    """An epoch time as ISO 8601 UTC (``2026-01-01T09:00:00Z``); None stays None."""
    if ts is None or ts == "" or isinstance(ts, bool):
        return None
    if isinstance(ts, str):
        return ts
    from ao.events import iso as to_iso

    return to_iso(float(ts))


TIME_KEYS = frozenset({"at", "ts", "opened_at", "created_at", "updated_at", "ended_at", "first_at", "since",
                       "observed_at", "restored_at", "last_activity_at"})


def with_iso_times(data: Any) -> Any:
    """``data`` with epoch numbers under time keys (``at``, ``created_at``...) as ISO 8601 UTC, at any depth."""
    if isinstance(data, dict):
        return {k: (iso(v) if k in TIME_KEYS and isinstance(v, (int, float)) and not isinstance(v, bool)
                    else with_iso_times(v)) for k, v in data.items()}
    if isinstance(data, list):
        return [with_iso_times(v) for v in data]
    return data


def print_json(data: Any) -> None:
    jsonlib.dump(data, sys.stdout, indent=2, sort_keys=False, default=str, ensure_ascii=False)
    sys.stdout.write("\n")


def plain_lines(rows: Iterable[dict[str, Any]], columns: Sequence[Column]) -> list[str]:
    return ["\t".join(c.value(row) for c in columns) for row in rows]


CLIP_MIN = 16  # the least of a "clip" column worth showing: "input: Do you w…"


def fitting(rows: Sequence[dict[str, Any]], columns: Sequence[Column], width: int) -> list[Column]:
    """``columns`` without the droppable ones a table ``width`` cells wide has no room for, least useful first.

    A table needs each column's widest cell plus three (padding and a border) and one more for the last border;
    a "clip" column counts as at most :data:`CLIP_MIN`, since it is cut to what is left."""
    from rich.cells import cell_len

    def need(column: Column) -> int:
        widest = max([cell_len(column.title), *(cell_len(column.value(row)) for row in rows)])
        return (min(widest, CLIP_MIN) if column.fit == "clip" else widest) + 3

    kept = list(columns)
    while sum(map(need, kept)) + 1 > width and any(c.drop for c in kept):
        kept.remove(max((c for c in kept if c.drop), key=lambda c: c.drop))
    return kept


def table(rows: Sequence[dict[str, Any]], columns: Sequence[Column], title: str = "", caption: str = "",
          width: Optional[int] = None) -> Any:
    """The rich table of a listing (also what ``--watch`` redraws), fitted to ``width`` (:func:`fitting`)."""
    from rich.markup import escape
    from rich.table import Table
    from rich.text import Text

    if width is not None:
        columns = fitting(rows, columns, width)
    out = Table(title=escape(title) if title else None, title_justify="left",
                caption=escape(caption) if caption else None, caption_justify="left")
    for column in columns:
        if column.fit == "fold":
            out.add_column(column.title, overflow="fold")
        else:  # "keep" is cut only when even the kept columns cannot fit; rich shrinks "clip" columns first
            out.add_column(Text(column.title, no_wrap=True, overflow="ellipsis"), overflow="ellipsis",
                           no_wrap=column.fit == "keep")
    for row in rows:
        cells = []
        for column in columns:
            style = column.style(row) if column.style else None
            cells.append(Text(column.value(row), style=style or "", no_wrap=column.fit != "fold" or None,
                              overflow="ellipsis" if column.fit != "fold" else None))
        out.add_row(*cells)
    return out


def listing(rows: Sequence[dict[str, Any]], columns: Sequence[Column], *, title: str = "", empty: str = "",
            json: bool = False, json_rows: Optional[Any] = None, caption: str = "") -> None:
    """Print a listing: JSON (``json_rows`` or ``rows``), a table on a terminal, else plain lines.

    ``empty`` is said on stderr when there are no rows (stdout stays empty when piped)."""
    if json:
        print_json(rows if json_rows is None else json_rows)
        return
    if not is_terminal():
        for line in plain_lines(rows, columns):
            sys.stdout.write(line + "\n")
        if not rows and empty:
            print(empty, file=sys.stderr)
        sys.stdout.flush()
        return
    from rich.text import Text

    from ao.cli.common import console  # rich writes its styling to the raw stream; values are plain Text

    out = console()
    if not rows and empty:
        out.print(Text(empty))
        return
    out.print(table(rows, columns, title, caption, width=out.width))


def warn(message: str) -> None:
    """``ao: warning: ...`` on stderr (never on stdout, which holds the records)."""
    print(f"ao: warning: {message}", file=sys.stderr)


def watch(render: Callable[[], tuple[Sequence[dict[str, Any]], Sequence[Column], str]], interval: float,
          json: bool = False) -> None:
    """Redraw a listing every ``interval`` seconds until Ctrl-C (exit 130 through the caller's handler).

    On a terminal the table is redrawn in place. Without one (a pipe, a log file) each refresh is printed
    after a ``# <ISO time>`` line (with ``--json``: one JSON array per line), so ``ao status --watch | tee``
    keeps a readable history."""
    if json or not is_terminal():
        while True:
            rows, columns, _ = render()
            if json:
                sys.stdout.write(jsonlib.dumps(rows, default=str, ensure_ascii=False) + "\n")
            else:
                sys.stdout.write(f"# {iso(time.time())}\n")
                for line in plain_lines(rows, columns):
                    sys.stdout.write(line + "\n")
            sys.stdout.flush()
            time.sleep(interval)  # a display refresh period, not synchronisation
    from rich.live import Live

    from ao.cli.common import console

    out = console()
    with Live(auto_refresh=False, console=out) as live:
        while True:
            rows, columns, title = render()
            live.update(table(rows, columns, title, width=out.width), refresh=True)  # out.width follows resizes
            time.sleep(interval)  # a display refresh period, not synchronisation
