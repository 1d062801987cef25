"""The one server-side watcher of the event log and the session store, and the hub that feeds every browser.

One :class:`Watcher` per server looks at the disk (a tick every ``TICK`` seconds while any browser listens,
and before a page is rendered): it reads the new tail of ``events.jsonl`` from the offset it reached,
``stat``s the session files and reads only those whose (inode, mtime, size) changed (writes are atomic
renames, so a new inode is a new version), and checks every few seconds whether a poller runs and which
records the store set aside as corrupt (:mod:`ao.quarantine`). A record nobody can read is never hidden in
silence: it and every quarantined one are a ``problems`` message, a banner on every page. Each change
becomes one message, numbered, rendered and encoded once, and kept in a ring. Browsers never cause reads:
each open stream only waits to be woken and copies the new messages out of the ring, so ten tabs cost the
disk exactly what one does (``Watcher.reads`` counts it; the browser tests check it).

A stream that resumes (``since=<boot>-<n>``, or SSE's ``Last-Event-ID``) is sent the messages after ``n``
from the ring; when ``n`` is older than the ring, or from another server run, it is told to reload
(``reset``). Pages follow the stream over a WebSocket; scripts may read the same as server-sent events.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import os
import secrets
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from ao import events as events_mod
from ao import quarantine
from ao.store import PROJECTS, SESSIONS, Session

TICK = 0.2                 # seconds between looks while someone listens: a status change shows within ~0.3 s
POLLER_CHECK = 2.0         # seconds between checks for a running poller
RING = 1000                # messages kept for streams that resume (a session page's detail can be ~10 kB)
EVENTS_KEPT = 5000         # events kept in memory (timelines, the events page)
TAIL_BYTES = 2 * 1024 * 1024  # at start, how much of a long event log is read (its end)


@dataclass
class Message:
    seq: int
    kind: str
    session: str | None          # detail messages go only to streams watching this session
    text: str                    # the message as JSON, with its ``cursor`` (sent as it is over a WebSocket)
    sse: bytes                   # the same as a server-sent event record


@dataclass
class Snapshot:
    """What a page is rendered from: the sessions and events as of message ``seq``."""

    boot: str
    seq: int
    sessions: dict[str, Session]
    events: list[dict[str, Any]]
    poller: dict[str, Any]
    problems: list[str]

    @property
    def cursor(self) -> str:
        return f"{self.boot}-{self.seq}"


@dataclass
class Reads:
    """Disk work done by the watcher, for tests and benchmarks."""

    scans: int = 0               # looks at the disk
    stats: int = 0               # session files stat'ed
    session_reads: int = 0       # session files read
    event_reads: int = 0         # reads of the event log's new tail
    poller_checks: int = 0
    problem_checks: int = 0      # looks for records set aside as corrupt (with the poller check)

    def total(self) -> int:
        return (self.scans + self.stats + self.session_reads + self.event_reads + self.poller_checks
                + self.problem_checks)


Render = Callable[[str, Any], list[tuple[str, str | None, dict[str, Any]]]]


@dataclass
class Watcher:
    """Watches one data dir. ``render(kind, item)`` turns a change into messages (kind, session, payload):
    a session change (item: the Session, or its id when removed), an event (item: the event), the
    poller's state (item: a dict) or the problem records (item: a list of lines, each naming one)."""

    data_dir: Path
    render: Render
    clock: Callable[[], float] = time.time
    reads: Reads = field(default_factory=Reads)

    def __post_init__(self) -> None:
        self.boot = secrets.token_hex(4)
        self.seq = 0
        self.ring: collections.deque[Message] = collections.deque(maxlen=RING)
        self.sessions: dict[str, Session] = {}
        self.events: collections.deque[dict[str, Any]] = collections.deque(maxlen=EVENTS_KEPT)
        self.poller: dict[str, Any] = {"running": False, "pid": None}
        self.problems: list[str] = []
        self._unreadable: dict[Path, str] = {}  # session files that cannot be read (until the store sets them aside)
        self._quarantined: list[str] = []
        self._files: dict[Path, tuple[int, int, int]] = {}
        self._by_file: dict[Path, str] = {}
        self._offset: int | None = None
        self._partial = b""
        self._poller_at = -POLLER_CHECK
        self._lock = threading.RLock()
        self._listeners: list[Callable[[], None]] = []

    def reads_now(self) -> dict[str, int]:
        """The read counters between two looks, never in the middle of one (a look counts its scan first, then
        a stat per file: a copy taken meanwhile would not add up)."""
        with self._lock:
            return asdict(self.reads)

    # -- looking at the disk ------------------------------------------------------------------------

    def scan(self) -> int:
        """Look once; record and announce what changed. Returns how many messages it made. Thread-safe."""
        with self._lock:
            self.reads.scans += 1
            made = self._scan_events() + self._scan_sessions() + self._scan_poller()
            made += self._scan_problems()
        if made:
            for wake in list(self._listeners):
                wake()
        return made

    def _scan_events(self) -> int:
        path = self.data_dir / events_mod.EVENTS_FILE
        try:
            size = path.stat().st_size
        except OSError:
            return 0
        if self._offset is None:  # first look: only the end of a long log
            self._offset = max(0, size - TAIL_BYTES)
            skip_partial = self._offset > 0
        else:
            skip_partial = False
            if size < self._offset:  # truncated or replaced: start again from its beginning
                self._offset, self._partial = 0, b""
        if size <= self._offset:
            return 0
        with open(path, "rb") as fh:
            fh.seek(self._offset)
            chunk = fh.read(size - self._offset)
        self.reads.event_reads += 1
        self._offset += len(chunk)
        data = self._partial + chunk
        cut = data.rfind(b"\n") + 1
        self._partial = data[cut:]
        lines = data[:cut].splitlines()
        if skip_partial and lines:
            lines = lines[1:]  # the first line was cut by the seek
        made = 0
        for line in lines:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if not isinstance(event, dict):
                continue
            self.events.append(event)
            made += self._emit("event", event)
        return made

    def _session_files(self) -> list[tuple[Path, str]]:
        out = []
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):
            for project in os.scandir(self.data_dir / PROJECTS):
                if not project.is_dir():
                    continue
                with contextlib.suppress(FileNotFoundError, NotADirectoryError):
                    for entry in os.scandir(Path(project.path) / SESSIONS):
                        if entry.name.endswith(".json") and not entry.name.startswith("."):
                            out.append((Path(entry.path), project.name))
        return out

    def _scan_sessions(self) -> int:
        made = 0
        present = set()
        for path, project in self._session_files():
            present.add(path)
            try:
                info = path.stat()
            except FileNotFoundError:
                continue
            self.reads.stats += 1
            key = (info.st_ino, info.st_mtime_ns, info.st_size)
            if self._files.get(path) == key:
                continue
            self._files[path] = key
            session = self._read_session(path, project)
            self.reads.session_reads += 1
            if session is None:
                self._unreadable[path] = path.stem
                continue
            self._unreadable.pop(path, None)
            old = self.sessions.get(session.id)
            self.sessions[session.id] = session
            self._by_file[path] = session.id
            if old is None or old.to_dict() != session.to_dict():
                made += self._emit("session", session)
        for path in [p for p in self._files if p not in present]:
            del self._files[path]
            self._unreadable.pop(path, None)
            sid = self._by_file.pop(path, None)
            if sid is not None and self.sessions.pop(sid, None) is not None:
                made += self._emit("session", sid)  # archived (cleaned up) or a spawn rolled back
        return made

    @staticmethod
    def _read_session(path: Path, project: str) -> Session | None:
        """The record, or None when it is unreadable (the store quarantines it; not the watcher's job)."""
        try:
            session = Session.from_dict(json.loads(path.read_bytes()))
        except (OSError, ValueError, TypeError, RecursionError):
            return None
        return session if session.project == project and session.id == path.stem else None

    def _scan_poller(self) -> int:
        now = time.monotonic()
        if now - self._poller_at < POLLER_CHECK:
            return 0
        self._poller_at = now
        self.reads.poller_checks += 1
        self.reads.problem_checks += 1
        self._quarantined = [_problem_line(q) for q in quarantine.quarantined(self.data_dir)]
        pid = _poller_pid(self.data_dir)
        state = {"running": pid is not None, "pid": pid}
        if state == self.poller:
            return 0
        self.poller = state
        return self._emit("poller", state)

    def _scan_problems(self) -> int:
        problems = [f"{sid} (unreadable record)" for sid in sorted(self._unreadable.values())] + self._quarantined
        if problems == self.problems:
            return 0
        self.problems = problems
        return self._emit("problems", problems)

    # -- messages -----------------------------------------------------------------------------------

    def _emit(self, kind: str, item: Any) -> int:
        made = 0
        for name, session, payload in self.render(kind, item):
            self.seq += 1
            ident = f"{self.boot}-{self.seq}"
            text = json.dumps({"kind": name, "cursor": ident, **payload}, ensure_ascii=False, default=str)
            self.ring.append(Message(self.seq, name, session, text, f"id: {ident}\ndata: {text}\n\n".encode()))
            made += 1
        return made

    def snapshot(self) -> Snapshot:
        """The current state, freshly scanned (a page is rendered from it)."""
        self.scan()
        with self._lock:
            return Snapshot(self.boot, self.seq, dict(self.sessions), list(self.events), dict(self.poller),
                            list(self.problems))

    def since(self, cursor: str | None, session: str | None = None) -> tuple[list[Message], int] | None:
        """Messages after ``cursor`` for a stream (detail messages only of ``session``), and the new position;
        None when the cursor cannot be resumed from (another server run, or older than the ring)."""
        with self._lock:
            if not cursor:
                return [], self.seq
            boot, _, n = cursor.rpartition("-")
            if boot != self.boot or not n.isdigit() or int(n) > self.seq:
                return None
            after = int(n)
            if after < self.seq and (not self.ring or self.ring[0].seq > after + 1):
                return None
            out = [m for m in self.ring if m.seq > after and (m.session is None or m.session == session)]
            return out, self.seq

    def listen(self, wake: Callable[[], None]) -> Callable[[], None]:
        """Call ``wake`` (from any thread) after each scan that made messages; returns the unsubscriber."""
        self._listeners.append(wake)
        return lambda: self._listeners.remove(wake)


def _problem_line(q: Any) -> str:
    """One record set aside as corrupt, named by the session it was for (or the project file it was)."""
    if q.session:
        return f"{q.session} ({'archived, ' if q.kind == 'archived session' else ''}set aside as corrupt)"
    return f"{q.project}'s {q.kind} (set aside as corrupt)"


def _poller_pid(data_dir: Path) -> int | None:
    """The pid in the poller's pid file when that process lives. Not ``ao.poller.running_pid``: that takes
    the poller lock for a moment, and an ``ao start`` starting in that moment would think another runs."""
    from ao.poller import PID_FILE

    try:
        pid = int((data_dir / PID_FILE).read_text().strip())
        os.kill(pid, 0)
    except PermissionError:
        return pid
    except (OSError, ValueError):
        return None
    return pid


class Hub:
    """Runs the watcher while browsers listen and wakes their streams. Lives in the server's event loop."""

    def __init__(self, watcher: Watcher, tick: float = TICK) -> None:
        self.watcher = watcher
        self.tick = tick
        self.streams = 0
        self._waiters: set[asyncio.Event] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task | None = None
        self._someone = asyncio.Event()

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.watcher.listen(lambda: self._loop.call_soon_threadsafe(self._wake_all) if self._loop else None)
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def _wake_all(self) -> None:
        for event in self._waiters:
            event.set()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._waiters:
                self._someone.clear()
                await self._someone.wait()  # nobody listens: the disk is left alone
            try:
                await loop.run_in_executor(None, self.watcher.scan)
            except Exception as exc:  # a scan that fails (disk trouble) must not end the watching
                with contextlib.suppress(Exception):
                    events_mod.log(self.watcher.data_dir, f"dashboard watcher: {type(exc).__name__}: {exc}",
                                   console=None)
            await asyncio.sleep(self.tick)

    async def follow(self, cursor: str | None, session: str | None, idle: float = 15.0) -> Any:
        """The messages of one browser: those after ``cursor``, then each new batch as it comes. Yields a list
        of :class:`Message` per batch, an empty list after ``idle`` quiet seconds (time for a keep-alive),
        and None when the stream cannot resume (the browser reloads)."""
        wake = asyncio.Event()
        self._waiters.add(wake)
        self._someone.set()
        self.streams += 1
        try:
            while True:
                got = self.watcher.since(cursor, session)
                if got is None:
                    yield None
                    return
                messages, seq = got
                cursor = f"{self.watcher.boot}-{seq}"
                if messages:
                    yield messages
                wake.clear()
                try:
                    await asyncio.wait_for(wake.wait(), timeout=idle)
                except asyncio.TimeoutError:
                    yield []
        finally:
            self.streams -= 1
            self._waiters.discard(wake)

    async def sse(self, cursor: str | None, session: str | None) -> Any:
        """The stream as server-sent events (for scripts: ``curl -N``; pages use the WebSocket)."""
        yield b"retry: 1000\n\n"
        async for batch in self.follow(cursor, session):
            if batch is None:
                yield b'event: reset\ndata: {"kind": "reset"}\n\n'
                return
            yield b"".join(m.sse for m in batch) if batch else b": keep-alive\n\n"

    async def websocket(self, websocket: Any, cursor: str | None, session: str | None) -> None:
        """The stream over one WebSocket: a browser tab's. (Browsers allow six HTTP/1.1 connections per host,
        so a long-lived EventSource per tab would stall the seventh tab; WebSockets are not counted there.)"""
        async for batch in self.follow(cursor, session):
            if batch is None:
                await websocket.send_text('{"kind": "reset"}')
                return
            for m in batch:
                await websocket.send_text(m.text)
