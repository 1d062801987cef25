"""The session store (SPEC 5): one JSON file per session under the data dir, written atomically under a lock.

Layout under the data dir::

    projects/<project>/.lock                 flock'ed by every writer of this project (never by readers)
    projects/<project>/ids.json              the id counter: last number handed out, per session prefix
    projects/<project>/project.json          project-scoped ledgers (session key ``*``, e.g. all-complete)
    projects/<project>/sessions/<id>.json    one session: metadata, ledgers, the last observed fact
    archive/<project>/<id>.json              a session after cleanup, moved here whole

Rules every function here keeps:

- Every write is temp file, fsync, rename, fsync of the folder (:func:`ao.ledger.atomic_write`), inside the
  project's lock, and a read-modify-write reads inside the same lock. Readers take no lock: a rename is
  atomic, so a reader sees the old file or the new one, never half of one.
- Ids are ``<prefix>-<n>`` and never reused: the counter only grows, and allocation also looks past every
  id still on disk (live, archived or quarantined), so even a lost counter cannot hand out an old id.
- A file that does not parse is never overwritten: it is renamed to ``<name>.corrupt-<UTC timestamp>``
  (never over an earlier quarantine), reported in :attr:`SessionStore.problems` and the orchestrator log,
  and a listing carries on past it.
- A disk error (full disk, permission denied) becomes an :class:`~ao.errors.AoError` naming the file; the
  old content stays intact and no temp file is left behind.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import threading
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Iterator

from ao import facts
from ao.errors import AoError, did_you_mean
from ao.ledger import PROJECT_KEY, Entry, Ledgers, atomic_write, fsync_dir

try:
    import fcntl
except ImportError:  # Windows: only the in-process lock below
    fcntl = None  # type: ignore[assignment]

VERSION = 1
SESSIONS, ARCHIVE, PROJECTS = "sessions", "archive", "projects"
LOCK_FILE, COUNTER_FILE, PROJECT_FILE = ".lock", "ids.json", "project.json"
ROLES = ("worker", "orchestrator")
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")  # project ids, prefixes and session ids: one path part
_LIST_LIMIT = 30  # ids named in an "unknown session" message
LOCK_TIMEOUT = 30.0  # seconds a store write waits for another process's (the lock is held for milliseconds)


def _check_name(kind: str, name: Any) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise AoError(f"invalid {kind} {name!r}: use letters, digits, '_', '-' or '.', not starting with '.' or '-'")
    return name


def valid_name(name: Any) -> bool:
    """Whether ``name`` can be a project id, prefix or session id here (one safe path component)."""
    return isinstance(name, str) and _NAME.match(name) is not None


def _number(session_id: str) -> int:
    """The ``<n>`` of ``<prefix>-<n>`` (-1 when the id has no number), for sorting and the counter."""
    tail = session_id.rsplit("-", 1)[-1]
    return int(tail) if "-" in session_id and tail.isdigit() else -1


def _sort_key(s: "Session") -> tuple:
    return (s.project, s.id.rsplit("-", 1)[0], _number(s.id), s.id)


class CorruptFile(AoError):
    """A store file did not parse; it has been moved aside (the message says where)."""


# ---------------------------------------------------------------------------------------------- record

_STR, _NUM, _DICT = (str,), (int, float), (dict,)


@dataclass
class Session:
    """One session record. Unknown keys read from a file (a newer ao) are kept in ``extra`` and written back."""

    id: str
    project: str
    role: str = "worker"  # worker | orchestrator
    status: str = "spawning"  # a SPEC 5 status; terminal ones end the session
    branch: str = ""
    issue: str = ""  # the tracker's issue id, "" for a free-form task
    task: str = ""  # the free-form task, or the issue title
    prompt: str = ""  # the prompt the agent was launched with
    workspace: str = ""  # the worktree or clone path
    runtime: str = ""  # the runtime plugin: tmux | process
    runtime_handle: str = ""  # what the runtime needs to find it again: the tmux session name, a pid
    agent: str = ""  # the agent plugin
    created_at: float = 0.0  # epoch seconds
    updated_at: float = 0.0
    ended_at: float | None = None  # when the status first became terminal
    pr_number: int = 0
    pr_url: str = ""
    fact: dict[str, Any] = field(default_factory=dict)  # the last observed fact (SPEC 4.1)
    ledgers: dict[str, dict[str, Any]] = field(default_factory=dict)  # reaction -> Entry.to_dict()
    meta: dict[str, Any] = field(default_factory=dict)  # plugin data (agent session file, env, ...)
    version: int = VERSION
    extra: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def terminal(self) -> bool:
        return self.status in facts.TERMINAL

    @property
    def ended_on_purpose(self) -> bool:
        """Killed, done or cleaned up: keeps its status whatever is observed later (SPEC 5)."""
        return self.status in facts.ENDED_ON_PURPOSE

    @property
    def launched_at(self) -> float:
        """When its agent last started: created, or restored since (what the agent's signals count from)."""
        restored = self.meta.get("restored_at")
        return max(self.created_at, restored) if isinstance(restored, (int, float)) else self.created_at

    @property
    def prefix(self) -> str:
        return self.id.rsplit("-", 1)[0]

    def ledger_entries(self) -> dict[str, Entry]:
        return {k: Entry.from_dict(v) for k, v in self.ledgers.items()}

    def to_dict(self) -> dict[str, Any]:
        out = dict(self.extra)
        for name in _TYPES:
            out[name] = getattr(self, name)
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, sort_keys=True, ensure_ascii=False) + "\n"

    @classmethod
    def from_dict(cls, data: Any) -> "Session":
        """Raises ValueError when ``data`` is not a session record ao could have written."""
        if not isinstance(data, dict):
            raise ValueError(f"a session file holds a JSON object, not {type(data).__name__}")
        values: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        for name, value in data.items():
            expected = _TYPES.get(name)
            if expected is None:
                extra[name] = value
            elif type(value) in expected:  # exact: JSON gives exact types, and a bool is no number here
                values[name] = value
            else:
                raise ValueError(f"'{name}' has the wrong type ({type(value).__name__})")
        for required in ("id", "project"):
            if not values.get(required):
                raise ValueError(f"'{required}' is missing or empty")
        for reaction, entry in values.get("ledgers", {}).items():
            if type(entry) is not dict:
                raise ValueError(f"ledger of '{reaction}' is not an object")
        return cls(**values, extra=extra)


_TYPES: dict[str, tuple[type, ...]] = {
    "id": _STR, "project": _STR, "role": _STR, "status": _STR, "branch": _STR, "issue": _STR, "task": _STR,
    "prompt": _STR, "workspace": _STR, "runtime": _STR, "runtime_handle": _STR, "agent": _STR,
    "created_at": _NUM, "updated_at": _NUM, "ended_at": (int, float, type(None)), "pr_number": (int,), "pr_url": _STR,
    "fact": _DICT, "ledgers": _DICT, "meta": _DICT, "version": (int,),
}
assert set(_TYPES) == {f.name for f in fields(Session)} - {"extra"}, "every session field has a type"
_FIXED = {"id", "project", "version", "created_at", "extra"}  # never changed by update()


def _check_values(changes: dict[str, Any]) -> None:
    """Programming errors (a wrong field name or value) fail loudly, before anything is written."""
    for name, value in changes.items():
        if name not in _TYPES or name in _FIXED:
            raise TypeError(f"session field '{name}' cannot be set")
        expected = _TYPES[name]
        if not isinstance(value, expected) or isinstance(value, bool) and bool not in expected:
            raise TypeError(f"session field '{name}' must be {expected[0].__name__}, got {value!r}")
    if "role" in changes and changes["role"] not in ROLES:
        raise ValueError(f"session role must be one of {', '.join(ROLES)}, got {changes['role']!r}")
    if "status" in changes and changes["status"] not in facts.STATUSES:
        raise ValueError(f"unknown session status {changes['status']!r}")


# ----------------------------------------------------------------------------------------------- store

_held = threading.local()  # projects whose lock this thread holds (the lock is reentrant per thread)


class SessionStore:
    """Sessions of every project under one data dir. Cheap to create; holds no open files between calls."""

    def __init__(self, data_dir: Path | str, clock: Callable[[], float] = time.time, log: bool = True) -> None:
        self.root = Path(data_dir)
        self.clock = clock
        self.log = log  # also write problems to logs/orchestrator.log
        self.problems: list[str] = []  # corrupt files found and set aside, newest last

    # -- paths -------------------------------------------------------------------------------------

    def project_dir(self, project: str) -> Path:
        return self.root / PROJECTS / _check_name("project", project)

    def _active(self, project: str, sid: str) -> Path:
        return self.project_dir(project) / SESSIONS / f"{_check_name('session id', sid)}.json"

    def _archived(self, project: str, sid: str) -> Path:
        return self.root / ARCHIVE / _check_name("project", project) / f"{_check_name('session id', sid)}.json"

    def projects(self) -> list[str]:
        """Projects that have anything stored (live or archived)."""
        names = set()
        for folder in (self.root / PROJECTS, self.root / ARCHIVE):
            with contextlib.suppress(FileNotFoundError, NotADirectoryError):
                names.update(e.name for e in os.scandir(folder) if e.is_dir() and _NAME.match(e.name))
        return sorted(names)

    # -- locking and disk errors -------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self, project: str) -> Iterator[None]:
        """The project's exclusive lock, across processes (flock) and threads (one descriptor per holder)."""
        held = getattr(_held, "projects", None)
        if held is None:
            held = _held.projects = set()
        key = (str(self.root.resolve()), project)
        if key in held:
            yield
            return
        folder = self.project_dir(project)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            fd = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise AoError(f"{folder / LOCK_FILE}: cannot open the session store lock: {exc.strerror or exc}") from None
        try:
            if fcntl is not None:
                from ao.locks import acquire

                acquire(fd, folder / LOCK_FILE, f"the session store of project '{project}'", LOCK_TIMEOUT)
            held.add(key)
            try:
                yield
            finally:
                held.discard(key)
        finally:
            os.close(fd)  # releases the flock

    def _write(self, path: Path, text: str) -> None:
        try:
            atomic_write(path, text)
        except OSError as exc:  # atomic_write wraps its own; this is for anything around it
            raise AoError(f"{path}: cannot write: {exc.strerror or exc}") from None

    # -- reading -----------------------------------------------------------------------------------

    def _read_json(self, path: Path) -> Any:
        """The parsed file, None when it does not exist; ValueError when it does not parse."""
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise AoError(f"{path}: cannot read: {exc.strerror or exc}") from None
        try:
            return json.loads(raw)
        except UnicodeDecodeError as exc:
            raise ValueError(f"not UTF-8 ({exc.reason})") from None
        except RecursionError:
            raise ValueError("nested too deeply") from None

    def _parse(self, path: Path, project: str, sid: str) -> Session | None:
        data = self._read_json(path)
        if data is None:
            return None
        session = Session.from_dict(data)
        if session.id != sid or session.project != project:
            raise ValueError(f"it holds session '{session.id}' of project '{session.project}'")
        return session

    def _load(self, path: Path, project: str, sid: str) -> Session | None:
        """The session in ``path``; None when absent. A corrupt file is quarantined and AoError raised."""
        try:
            return self._parse(path, project, sid)
        except ValueError:
            pass
        # Readers hold no lock: look again under it before declaring the file damaged, and move it aside
        # under it, so that no writer can be replacing the file as it is moved.
        with self._locked(project):
            try:
                return self._parse(path, project, sid)
            except ValueError as exc:
                why = f"corrupt session file ({exc})"
                moved = self._quarantine(path, why)
        raise CorruptFile(f"{path}: {why}; moved to {moved.name}")

    def _quarantine(self, path: Path, why: str) -> Path:
        """Rename ``path`` to ``<name>.corrupt-<UTC time>``, never over an earlier quarantine."""
        now = time.time()
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now)) + f"{int(now % 1 * 1e6):06d}Z"
        for n in itertools.count():
            target = path.with_name(f"{path.name}.corrupt-{stamp}" + (f"-{n}" if n else ""))
            try:
                os.link(path, target)  # fails if the target exists: nothing is ever overwritten
            except FileExistsError:
                continue
            except OSError:  # no hard links here: check, then rename
                if target.exists():
                    continue
                try:
                    os.rename(path, target)
                except OSError as exc:
                    raise AoError(f"{path}: {why}; cannot move it aside: {exc.strerror or exc}") from None
                break
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            break
        self._report(f"{path}: {why}; moved to {target.name}")
        return target

    def _report(self, message: str) -> None:
        self.problems.append(message)
        if self.log:
            from ao import events

            with contextlib.suppress(OSError):
                events.log(self.root, f"store: {message}", console=None)

    # -- ids ---------------------------------------------------------------------------------------

    def allocate_id(self, project: str, prefix: str) -> str:
        """The next ``<prefix>-<n>`` of this project. Safe across threads and processes; never reused."""
        with self._locked(project):
            return self._allocate(project, prefix)

    def _allocate(self, project: str, prefix: str) -> str:
        _check_name("session prefix", prefix)
        counter_path = self.project_dir(project) / COUNTER_FILE
        try:
            counter = self._read_json(counter_path) or {}
            last = counter.get("last", {}) if isinstance(counter, dict) else None
            if not isinstance(last, dict) or not all(isinstance(v, int) for v in last.values()):
                raise ValueError("'last' is not a mapping of prefix to number")
        except ValueError as exc:
            self._quarantine(counter_path, f"corrupt id counter ({exc}); recovered from the session files")
            counter, last = {}, {}
        n = max(last.get(prefix, 0), self._highest_on_disk(project, prefix)) + 1
        self._write(counter_path, json.dumps({**counter, "version": VERSION, "last": {**last, prefix: n}},
                                             indent=1, sort_keys=True) + "\n")
        return f"{prefix}-{n}"

    def _highest_on_disk(self, project: str, prefix: str) -> int:
        """The highest number of any ``<prefix>-<n>`` file of this project: live, archived or quarantined."""
        pattern = re.compile(re.escape(prefix) + r"-(\d+)\.json")
        best = 0
        for folder in (self.project_dir(project) / SESSIONS, self.root / ARCHIVE / project):
            with contextlib.suppress(FileNotFoundError, NotADirectoryError):
                for entry in os.scandir(folder):
                    m = pattern.match(entry.name)
                    if m:
                        best = max(best, int(m.group(1)))
        return best

    # -- sessions ----------------------------------------------------------------------------------

    def create(self, project: str, prefix: str | None = None, *, id: str | None = None, **values: Any) -> Session:
        """Write a new session. Without ``id``, allocate ``<prefix>-<n>`` under the same lock."""
        if (id is None) == (prefix is None):
            raise TypeError("create() takes a prefix to allocate an id, or an id, not both")
        _check_values({k: v for k, v in values.items() if k not in ("created_at", "updated_at")})
        with self._locked(project):
            if id is None:
                id = self._allocate(project, prefix or "")
            elif self._active(project, id).exists() or self._archived(project, id).exists():
                raise AoError(f"session '{id}' already exists in project '{project}'; ids are never reused")
            now = self.clock()
            values.setdefault("created_at", now)
            values.setdefault("updated_at", now)
            session = Session(id=id, project=project, **values)
            if session.terminal and session.ended_at is None:
                session.ended_at = now
            self._write(self._active(project, id), session.to_json())
        return session

    def get(self, sid: str, project: str | None = None, include_archived: bool = False) -> Session | None:
        """The session, or None. A corrupt file raises AoError (after setting it aside)."""
        _check_name("session id", sid)
        for pid in [project] if project else self.projects():
            found = self._load(self._active(pid, sid), pid, sid)
            if found is None and include_archived:
                found = self._load(self._archived(pid, sid), pid, sid)
            if found is not None:
                return found
        return None

    def is_archived(self, sid: str, project: str | None = None) -> bool:
        return any(self._archived(pid, sid).exists() for pid in ([project] if project else self.projects()))

    def find(self, sid: str, project: str | None = None, include_archived: bool = False) -> Session:
        """The session, or an AoError that names the sessions there are."""
        named = valid_name(sid)
        found = self.get(sid, project, include_archived) if named else None
        if found is not None:
            return found
        if named and not include_archived and self.is_archived(sid, project):
            raise AoError(f"session '{sid}' has been cleaned up (it is in {self.root / ARCHIVE})")
        ids = [s.id for s in self.list(project)]
        where = f" in project '{project}'" if project else ""
        if not ids:
            raise AoError(f"unknown session '{sid}'{where}; there are no sessions (ao spawn starts one)")
        hint = did_you_mean(sid, ids)
        shown = ", ".join(ids[:_LIST_LIMIT]) + (f", and {len(ids) - _LIST_LIMIT} more" if len(ids) > _LIST_LIMIT else "")
        raise AoError(f"unknown session '{sid}'{where}{hint}; sessions: {shown}")

    def list(self, project: str | None = None, include_archived: bool = False) -> list[Session]:
        """Sessions by project and number. Corrupt files are set aside and reported in ``problems``."""
        out: list[Session] = []
        for pid in [project] if project else self.projects():
            folders = [self.project_dir(pid) / SESSIONS]
            if include_archived:
                folders.append(self.root / ARCHIVE / pid)
            for folder in folders:
                try:
                    names = [e.name for e in os.scandir(folder)]
                except (FileNotFoundError, NotADirectoryError):
                    continue
                except OSError as exc:
                    raise AoError(f"{folder}: cannot list sessions: {exc.strerror or exc}") from None
                for name in names:
                    if not name.endswith(".json") or name.startswith(".") or not _NAME.match(name[:-5]):
                        continue
                    try:
                        session = self._load(folder / name, pid, name[:-5])
                    except CorruptFile:
                        continue  # set aside, and already in self.problems
                    except AoError as exc:  # unreadable (permissions): say so, and list the rest
                        self._report(str(exc))
                        continue
                    if session is not None:
                        out.append(session)
        out.sort(key=_sort_key)
        return out

    def update(self, sid: str, project: str | None = None, **changes: Any) -> Session:
        """Change fields of a live session: read, modify and write under the project's lock."""
        _check_values(changes)

        def change(session: Session) -> None:
            for name, value in changes.items():
                setattr(session, name, value)

        return self.modify(sid, change, project)

    def modify(self, sid: str, fn: Callable[[Session], None], project: str | None = None) -> Session:
        """Apply ``fn`` to the live session under the lock and write the result (``updated_at`` set)."""
        pid = project or self.find(sid).project
        with self._locked(pid):
            session = self._load(self._active(pid, sid), pid, sid)
            if session is None:
                self.find(sid, pid)  # raises: unknown, or archived meanwhile
            assert session is not None
            fn(session)
            self._stamp(session)
            self._write(self._active(pid, sid), session.to_json())
        return session

    def _stamp(self, session: Session) -> None:
        now = self.clock()
        session.updated_at = now
        if session.terminal and session.ended_at is None:
            session.ended_at = now
        if not session.terminal:
            session.ended_at = None

    def archive(self, sid: str, project: str | None = None, **changes: Any) -> Session:
        """Move a live session to ``archive/<project>/`` (cleanup), applying ``changes`` first.

        Two atomic steps, so a crash between them leaves a live session with the final changes, never two
        copies and never half a file.
        """
        _check_values(changes)
        pid = project or self.find(sid).project
        with self._locked(pid):
            source = self._active(pid, sid)
            session = self._load(source, pid, sid)
            if session is None:
                self.find(sid, pid)
            assert session is not None
            target = self._archived(pid, sid)
            if target.exists():
                raise AoError(f"{target}: already archived; not overwriting it")
            if changes:
                for name, value in changes.items():
                    setattr(session, name, value)
                self._stamp(session)
                self._write(source, session.to_json())
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(source, target)
                fsync_dir(target.parent)
                fsync_dir(source.parent)
            except OSError as exc:
                raise AoError(f"{target}: cannot archive session '{sid}': {exc.strerror or exc}") from None
        return session

    def delete(self, sid: str, project: str | None = None) -> None:
        """Remove a live session's record (a spawn rolled back). Its id stays used."""
        pid = project or self.find(sid).project
        with self._locked(pid):
            path = self._active(pid, sid)
            try:
                path.unlink()
            except FileNotFoundError:
                self.find(sid, pid)
            except OSError as exc:
                raise AoError(f"{path}: cannot remove session '{sid}': {exc.strerror or exc}") from None

    # -- project-scoped ledgers --------------------------------------------------------------------

    def project_ledgers(self, project: str) -> dict[str, Entry]:
        """The project-scoped ledgers; a corrupt ``project.json`` is set aside (and reported), not overwritten."""
        path = self.project_dir(project) / PROJECT_FILE
        try:
            return _project_entries(self._read_json(path))
        except ValueError:
            pass
        with self._locked(project):  # look again under the lock, as for session files
            try:
                return _project_entries(self._read_json(path))
            except ValueError as exc:
                self._quarantine(path, f"corrupt project ledgers ({exc}); they start afresh")
        return {}

    def save_project_ledgers(self, project: str, entries: dict[str, Entry]) -> None:
        path = self.project_dir(project) / PROJECT_FILE
        with self._locked(project):
            try:
                data = self._read_json(path)
                if data is not None and not isinstance(data, dict):
                    raise ValueError("not a JSON object")
            except ValueError as exc:
                self._quarantine(path, f"corrupt project ledgers ({exc})")
                data = None
            body = {**(data or {}), "version": VERSION, "project": project,
                    "ledgers": {k: e.to_dict() for k, e in sorted(entries.items())}}
            self._write(path, json.dumps(body, indent=1, sort_keys=True) + "\n")


def _project_entries(data: Any) -> dict[str, Entry]:
    if data is None:
        return {}
    ledgers = data.get("ledgers") if isinstance(data, dict) else None
    if not isinstance(ledgers, dict) or not all(isinstance(v, dict) for v in ledgers.values()):
        raise ValueError("'ledgers' is not a mapping of reaction to ledger")
    try:
        return {k: Entry.from_dict(v) for k, v in ledgers.items()}
    except TypeError as exc:
        raise ValueError(str(exc)) from None


# ------------------------------------------------------------------------------------- ledger storage

class SessionLedgerStore:
    """The engine's :class:`~ao.ledger.LedgerStore`, kept inside the session files (SPEC 3.1: "persisted
    with the session"). Project-scoped ledgers (session ``*``) live in ``projects/<project>/project.json``.

    A ledger of a session that is no longer live (cleaned up, or a spawn rolled back) between the engine's
    evaluation and its save is dropped: the session is gone, there is nothing left to react to.
    """

    def __init__(self, store: SessionStore) -> None:
        self.store = store

    def load(self, project: str) -> Ledgers:
        out: Ledgers = {}
        for session in self.store.list(project):
            if session.ledgers:
                out[session.id] = session.ledger_entries()
        shared = self.store.project_ledgers(project)
        if shared:
            out[PROJECT_KEY] = shared
        return out

    def save(self, project: str, session: str, entries: dict[str, Entry]) -> None:
        if session == PROJECT_KEY:
            self.store.save_project_ledgers(project, entries)
            return
        data = {k: e.to_dict() for k, e in sorted(entries.items())}

        def put(s: Session) -> None:
            s.ledgers = data

        with self.store._locked(project):
            if not self.store._active(project, session).exists():
                if not self.store.is_archived(session, project):
                    self.store._report(f"ledger of unknown session '{session}' of project '{project}' not saved")
                return
            self.store.modify(session, put, project)
