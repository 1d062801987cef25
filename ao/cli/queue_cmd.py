"""``ao queue add|ls|rm``: the work queue that admission (``ao start``, ``ao poll``) spawns from."""

from __future__ import annotations

import sys
import time
from typing import Annotated, Any, Optional

import typer

from ao.cli.common import ConfigOption, JsonOption, load_config, print_json
from ao.cli.status_cmd import _age
from ao.errors import AoError

app = typer.Typer(help="The work queue: issues waiting for a session, spawned under the caps by `ao start` and "
                       "`ao poll`.", no_args_is_help=True)

COLUMNS = ("project", "issue", "priority", "state", "waiting", "session", "blocked_by", "title")


def _row(e: Any, now: float) -> dict[str, Any]:
    return {"project": e.project, "issue": e.issue, "priority": e.priority, "state": e.state,
            "waiting": _age(max(0.0, now - e.added_at)), "added_at": e.added_at, "source": e.source,
            "session": e.session or None, "blocked_by": list(e.blocked_by), "attempts": e.attempts,
            "error": e.error or None, "title": e.title}


@app.command()
def add(
    ctx: typer.Context,
    project: Annotated[str, typer.Argument(help="Project id from the config.", show_default=False)],
    issues: Annotated[list[str], typer.Argument(metavar="ISSUE...", help="Issue ids, oldest first.",
                                                show_default=False)],
    priority: Annotated[int, typer.Option("--priority", "-p", help="Higher goes first; then the oldest.")] = 0,
    json: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """Queue issues for a session. Examples:

      ao queue add my-app 12 13 14

      ao queue add my-app 99 --priority 10     # ahead of everything at priority 0
    """
    from ao.sessions import Sessions
    from ao.workqueue import WorkQueue

    cfg = load_config(ctx, config)
    tracker = Sessions(cfg).tracker(cfg.project(project))
    bad = [i for i in issues if not tracker.looks_like_id(i.strip())]
    if bad:
        raise AoError(f"not an issue id of project {project}'s {tracker.name} tracker: {', '.join(bad)}")
    added, present = WorkQueue(cfg.data_dir).add(project, issues, priority=priority, now=time.time())
    if json:
        now = time.time()
        print_json({"added": [_row(e, now) for e in added], "already": [_row(e, now) for e in present]})
        return
    for e in added:
        print(f"queued {e.project} {e.issue} (priority {e.priority})")
    for e in present:
        print(f"already {e.state}: {e.project} {e.issue}" + (f" → {e.session}" if e.session else "")
              + (f" (priority now {e.priority})" if e.state == "queued" else ""))


@app.command("ls")
def ls(
    ctx: typer.Context,
    project: Annotated[Optional[str], typer.Argument(metavar="[PROJECT]", help="Only this project.",
                                                     show_default=False)] = None,
    all_: Annotated[bool, typer.Option("--all", "-a", help="Also admitted and failed entries.")] = False,
    json: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """The queue in admission order: priority, then age. Plain lines when piped. Example: ao queue ls --json"""
    from ao.workqueue import WorkQueue, order_key

    cfg = load_config(ctx, config)
    if project is not None:
        cfg.project(project)
    now = time.time()
    entries = sorted((e for e in WorkQueue(cfg.data_dir).load() if project in (None, e.project)
                      and (all_ or e.state in ("queued", "admitting"))), key=order_key)
    rows = [_row(e, now) for e in entries]
    if json:
        print_json(rows)
        return

    def cell(row: dict[str, Any], column: str) -> str:
        value = row[column]
        if isinstance(value, list):
            value = ",".join(value)
        return "-" if value in (None, "") else str(value)

    if not sys.stdout.isatty():
        for row in rows:
            print("\t".join(cell(row, c) for c in COLUMNS))
        return
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(title="queue", title_justify="left")
    for column in COLUMNS:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*(escape(cell(row, c)) for c in COLUMNS))
    if not rows:
        table.caption = "the queue is empty (add with: ao queue add PROJECT ISSUE...)"
    Console().print(table)


@app.command()
def rm(
    ctx: typer.Context,
    project: Annotated[str, typer.Argument(help="Project id from the config.", show_default=False)],
    issues: Annotated[list[str], typer.Argument(metavar="ISSUE...", help="Issue ids.", show_default=False)],
    json: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """Take issues off the queue (a picked-up issue removed while still matching pickup comes back).
    Example: ao queue rm my-app 13"""
    from ao.workqueue import WorkQueue, normalize

    cfg = load_config(ctx, config)
    cfg.project(project)
    gone = WorkQueue(cfg.data_dir).remove(project, issues)
    if json:
        print_json([_row(e, time.time()) for e in gone])
    else:
        for e in gone:
            print(f"removed {e.project} {e.issue} ({e.state})")
    missing = sorted({normalize(i) for i in issues} - {e.issue for e in gone})
    if missing:
        raise AoError(f"not in the queue of {project}: {', '.join(missing)}")
