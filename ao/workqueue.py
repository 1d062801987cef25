"""The work queue (SPEC 12): issues waiting for a session, added by hand (``ao queue add``) or picked up from a
tracker, admitted by :mod:`ao.admission`.

One file, ``<dataDir>/queue.json``, changed under ``queue.lock`` (``ao queue add`` and the poller may write at
once) and written atomically. An entry lives on after admission, as ``admitted`` to its session: that keeps a
picked-up issue from being picked up again while its work is under way or merged and the issue still open. It
is dropped once the tracker says the issue is closed, so an issue reopened later comes back through pickup.

States: ``queued`` → ``admitting`` (written *before* the spawn, with the admission's token, which the spawn
writes into the session record) → ``admitted``; or ``failed`` after :data:`MAX_ATTEMPTS` failed spawns.
"""

from __future__ import annotations

import contextlib
import json
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Iterator

from ao.errors import AoError
from ao.ledger import atomic_write
from ao.locks import file_lock

QUEUE_FILE, LOCK_FILE = "queue.json", "queue.lock"
STATES = ("queued", "admitting", "admitted", "failed")
MAX_ATTEMPTS = 3


@dataclass
class Entry:
    project: str
    issue: str
    priority: int = 0
    added_at: float = 0.0
    source: str = "manual"           # manual | pickup
    state: str = "queued"
    session: str = ""                # the session it was admitted to
    token: str = ""                  # the admission's id, also in that session's meta["admission"]
    attempts: int = 0                # failed spawns
    error: str = ""
    title: str = ""
    blocked_by: list[str] = field(default_factory=list)  # open blockers at the last look
    checked_at: float = 0.0          # when the tracker was last asked about it

    @property
    def key(self) -> tuple[str, str]:
        return (self.project, self.issue)

    def to_dict(self) -> dict[str, Any]:
        # by hand: dataclasses.asdict deep-copies, and a queue of thousands is written several times a cycle
        out = dict(self.__dict__)
        out["blocked_by"] = list(self.blocked_by)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Entry":
        return cls(**{k: v for k, v in data.items() if k in _NAMES})


_NAMES = tuple(f.name for f in fields(Entry))


def natural(text: str) -> tuple:
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", text))


def order_key(e: Entry) -> tuple:
    """Admission order: higher priority first, then older, then the issue id (12 before 100)."""
    return (-e.priority, e.added_at, e.project, natural(e.issue))


def normalize(issue: str) -> str:
    """``#12`` and ``12`` are the same issue."""
    return str(issue).strip().lstrip("#")


class WorkQueue:
    def __init__(self, data_dir: Path) -> None:
        self.path = Path(data_dir) / QUEUE_FILE
        self.lock = Path(data_dir) / LOCK_FILE

    def load(self) -> list[Entry]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            return [Entry.from_dict(e) for e in data["entries"]]
        except FileNotFoundError:
            return []
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise AoError(f"{self.path}: the queue cannot be read ({exc}); move it aside to start an empty one") \
                from None

    def save(self, entries: list[Entry]) -> None:
        self._write([e.to_dict() for e in entries])

    def _write(self, rows: list[dict[str, Any]]) -> None:
        atomic_write(self.path, json.dumps({"version": 1, "entries": rows}, separators=(",", ":")) + "\n")

    @contextlib.contextmanager
    def edit(self) -> Iterator[list[Entry]]:
        """The entries, to change in place; written back (atomically, under the lock) when the block ends."""
        with file_lock(self.lock):
            entries = self.load()
            before = [e.to_dict() for e in entries]
            yield entries
            after = [e.to_dict() for e in entries]
            if after != before:
                self._write(after)

    def add(self, project: str, issues: list[str], *, priority: int = 0, now: float, source: str = "manual",
            titles: dict[str, str] | None = None) -> tuple[list[Entry], list[Entry]]:
        """Queue issues (in the order given: the first is the oldest). Returns (added, already there). An
        issue already queued gets the new priority; one admitted or failed is queued again only by hand."""
        added, present = [], []
        with self.edit() as entries:
            index = {e.key: e for e in entries}
            for n, raw in enumerate(issues):
                issue = normalize(raw)
                old = index.get((project, issue))
                if old is not None and (old.state in ("queued", "admitting", "admitted") or source != "manual"):
                    if source == "manual" and old.state == "queued":
                        old.priority = priority
                    present.append(old)
                    continue
                if old is not None:
                    entries.remove(old)  # a failed entry, queued again by hand: a fresh start
                entry = Entry(project=project, issue=issue, priority=priority, added_at=now + n * 1e-6,
                              source=source, title=(titles or {}).get(issue, ""))
                entries.append(entry)
                index[entry.key] = entry
                added.append(entry)
        return added, present

    def remove(self, project: str | None, issues: list[str]) -> list[Entry]:
        wanted = {normalize(i) for i in issues}
        with self.edit() as entries:
            gone = [e for e in entries if e.issue in wanted and (project is None or e.project == project)]
            for e in gone:
                entries.remove(e)
        return gone
