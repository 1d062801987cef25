"""Occurrences, retries and escalation (SPEC 3.1, exact), and where ledgers are kept.

For every (session, reaction) one :class:`Entry`. :func:`step` is the whole decision procedure, pure:
given the entry, whether the trigger holds, the occurrence and the time, it says what to do and returns
the new entry. Delivery results come back through :func:`delivered`, because an action that could not be
delivered must neither count as an attempt nor mark its occurrence handled.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import threading
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Protocol

from ao.errors import AoError
from ao.reactions import Reaction

NOTHING, ACT, ESCALATE = "nothing", "act", "escalate"
MAX_DELIVERY_FAILURES = 3
PROJECT_KEY = "*"  # the ledger "session" of project-scoped reactions (all-complete)


@dataclass(frozen=True)
class Entry:
    attempts: int = 0
    occurrence: str | None = None
    first_at: int | None = None
    escalated: bool = False
    clear_streak: int = 0
    delivery_failures: int = 0
    last_error: str = ""
    handled_as: str = ""  # the reaction's action when it handled ``occurrence`` (see handling())

    @classmethod
    def from_dict(cls, data: dict) -> "Entry":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Step:
    decision: str  # NOTHING, ACT or ESCALATE
    entry: Entry  # the entry after this observation (for ACT: before delivery is known)
    reason: str = ""


def handling(reaction: Reaction) -> str:
    """What handling an occurrence means for ``reaction`` now: its action, or ``notify`` while auto is off."""
    return reaction.action if reaction.auto else "notify"


def handled_as(entry: Entry, reaction: Reaction) -> str:
    """How ``entry``'s occurrence was handled. A ledger written before ``handled_as`` existed does not say; for a
    merge reaction it can only have been a notification: a successful auto-merge ends the occurrence (the PR is
    no longer open), so one that still holds was not merged. For other reactions it stays unknown ("") and the
    occurrence is not handled again: a message is never repeated on an upgrade."""
    if entry.handled_as or entry.occurrence is None:
        return entry.handled_as
    return "notify" if reaction.action == "auto-merge" else ""


def step(entry: Entry, holds: bool, occurrence: str, now: int, reaction: Reaction) -> Step:
    """One observation of one (session, reaction). The pseudo-code of SPEC 3.1, line for line, and one rule
    more: an occurrence handled under another action than the reaction's current one (the config changed, e.g.
    ``approved-and-green`` from notify to ``auto-merge``) is handled again, as a new occurrence."""
    if not holds:
        streak = entry.clear_streak + 1
        if streak >= 2:
            return Step(NOTHING, Entry())  # stable clear: the budget resets
        return Step(NOTHING, replace(entry, clear_streak=streak))
    entry = replace(entry, clear_streak=0, first_at=entry.first_at if entry.first_at is not None else now)
    if entry.escalated:
        return Step(NOTHING, entry)
    if reaction.escalate_seconds is not None and now - entry.first_at >= reaction.escalate_seconds:
        return Step(ESCALATE, replace(entry, escalated=True), "time passed")
    handled = handled_as(entry, reaction)
    if occurrence != entry.occurrence or (handled and handled != handling(reaction)):
        limit = reaction.limit
        if limit is not None and entry.attempts >= limit:
            return Step(ESCALATE, replace(entry, escalated=True), "retries used up")
        return Step(ACT, entry)
    return Step(NOTHING, entry)


def delivered(entry: Entry, occurrence: str, ok: bool, error: str = "", handled_as: str = "") -> tuple[Entry, bool]:
    """Record the outcome of an ACT. Returns (new entry, whether to escalate now)."""
    if ok:
        return replace(entry, attempts=entry.attempts + 1, occurrence=occurrence, delivery_failures=0,
                       last_error="", handled_as=handled_as), False
    failures = entry.delivery_failures + 1
    if failures >= MAX_DELIVERY_FAILURES:
        return replace(entry, delivery_failures=failures, last_error=error, escalated=True), True
    return replace(entry, delivery_failures=failures, last_error=error), False


# --------------------------------------------------------------------------------------------- storage

Ledgers = dict[str, dict[str, Entry]]  # session -> reaction -> entry


class LedgerStore(Protocol):
    """Where ledgers live between cycles: :class:`ao.store.SessionLedgerStore` in the running system."""

    def load(self, project: str) -> Ledgers: ...

    def save(self, project: str, session: str, entries: dict[str, Entry]) -> None: ...


class MemoryLedgerStore:
    def __init__(self) -> None:
        self.data: dict[str, Ledgers] = {}

    def load(self, project: str) -> Ledgers:
        return {s: dict(e) for s, e in self.data.get(project, {}).items()}

    def save(self, project: str, session: str, entries: dict[str, Entry]) -> None:
        self.data.setdefault(project, {})[session] = dict(entries)


def atomic_write(path: Path, text: str, mode: int = 0o666) -> None:
    """Write a file so that a crash leaves either the old or the new content: temp, fsync, rename, and an
    fsync of the directory, so that the rename itself survives a power cut.

    Nothing is written through a link, so this is also how ao writes into a folder an agent can write: the
    temp file is created afresh (never opened where a planted link stands), and the rename replaces a link
    at ``path`` instead of following it. ``mode`` (less the umask) is the new file's."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.unlink(missing_ok=True)  # left by a killed writer that had our pid, or planted
        with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode), "w",
                  encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise AoError(f"{path}: cannot write: {exc.strerror or exc}") from None
    fsync_dir(path.parent)


def fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable. Best effort: the new content is in place either way, and some
    file systems cannot open or fsync a directory."""
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


_TEMP = re.compile(r"^\..+\.(\d+)\.\d+\.tmp$")
_TEMP_DEPTH = 3  # data dir / projects / <project> / sessions


def sweep_temp_files(root: Path) -> int:
    """Remove temp files that :func:`atomic_write` left when its process was killed mid-write (their pid is
    no longer running). The workspaces are not searched: they are the agents'. Returns how many."""
    removed = 0

    def walk(folder: Path, depth: int) -> None:
        nonlocal removed
        try:
            entries = list(os.scandir(folder))
        except OSError:
            return
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                if depth < _TEMP_DEPTH and entry.name not in ("workspaces", "run"):
                    walk(Path(entry.path), depth + 1)
                continue
            m = _TEMP.match(entry.name)
            if m and not _pid_alive(int(m.group(1))):
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)
                    removed += 1

    walk(Path(root), 0)
    return removed


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class JsonLedgerStore:
    """One JSON file per session under ``<data dir>/ledgers/<project>/``, written atomically."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _file(self, project: str, session: str) -> Path:
        name = "_project" if session == PROJECT_KEY else session
        return self.root / "ledgers" / project / f"{name}.json"

    def load(self, project: str) -> Ledgers:
        folder = self.root / "ledgers" / project
        out: Ledgers = {}
        for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
                session = data["session"]
                out[session] = {k: Entry.from_dict(v) for k, v in data["reactions"].items()}
            except (OSError, ValueError, KeyError, TypeError) as exc:
                # Never silently start a fresh budget over a corrupt file: set it aside and say so.
                quarantine = path.with_suffix(".corrupt")
                path.replace(quarantine)
                raise AoError(f"{path}: corrupt ledger ({exc}); moved to {quarantine.name}") from None
        return out

    def save(self, project: str, session: str, entries: dict[str, Entry]) -> None:
        body = {"session": session, "reactions": {k: e.to_dict() for k, e in sorted(entries.items())}}
        atomic_write(self._file(project, session), json.dumps(body, indent=1, sort_keys=True) + "\n")
