"""The live terminal: a read-only stream of a session's pane, shared by every browser watching it.

For tmux (and any runtime with ``view_argv``) one ``tmux attach-session -r -f ignore-size`` runs in a
pseudo-terminal per watched session, however many browsers watch it; its output bytes go to each of them
as they come, and xterm.js renders them. A browser that joins asks tmux to redraw the whole screen
(``refresh-client``), so it starts from a complete picture. The attach is read-only and never changes the
agent's window size; typing goes through the dialog-safe send path instead (:mod:`ao.web.actions`).
Runtimes without ``view_argv`` are shown by their captured text, refreshed while someone watches.

When the last browser leaves, the attach ends. When the terminal itself ends (the session was killed, its
tmux session vanished), every browser gets ``{"type": "ended", "reason": ...}`` and shows that state.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import pty
import signal
import struct
import subprocess
import termios
from typing import Any

from ao.errors import AoError

QUEUE = 512                 # chunks a slow browser may lag behind before it is dropped (it reconnects)
CAPTURE_EVERY = 1.0         # seconds between captures for runtimes without a live view


class _Stream:
    """One session's terminal output, fanned out to subscriber queues."""

    def __init__(self, sid: str) -> None:
        self.sid = sid
        self.queues: set[asyncio.Queue] = set()
        self.hello: dict[str, Any] = {}
        self.ended: str | None = None

    def publish(self, item: Any) -> None:
        for q in list(self.queues):
            try:
                q.put_nowait(item)
            except asyncio.QueueFull:  # too slow: drop what it has not read, and tell it to reconnect
                self.queues.discard(q)
                while not q.empty():
                    q.get_nowait()
                q.put_nowait(None)

    def end(self, reason: str) -> None:
        if self.ended is None:
            self.ended = reason
            self.publish({"type": "ended", "reason": reason})

    async def start(self) -> None: ...

    def joined(self) -> None: ...

    async def stop(self) -> None: ...


class _Attach(_Stream):
    """A read-only attach in a pseudo-terminal sized to the agent's window."""

    def __init__(self, sid: str, argv: list[str], cols: int, rows: int, on_exit: Any) -> None:
        super().__init__(sid)
        self.argv, self.cols, self.rows = argv, cols, rows
        self.on_exit = on_exit
        self.hello = {"type": "hello", "mode": "live", "cols": cols, "rows": rows}
        self.proc: subprocess.Popen | None = None
        self.fd: int | None = None

    async def start(self) -> None:
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", self.rows, self.cols, 0, 0))
        env = {k: v for k, v in os.environ.items() if k not in ("TMUX", "TMUX_PANE")}
        env["TERM"] = "xterm-256color"
        try:
            # its own session with the pty as its controlling terminal, so a resize reaches it (SIGWINCH)
            self.proc = subprocess.Popen(self.argv, stdin=slave, stdout=slave, stderr=slave, env=env,
                                         start_new_session=True, close_fds=True, preexec_fn=_controlling_tty)
        finally:
            os.close(slave)
        os.set_blocking(master, False)
        self.fd = master
        asyncio.get_running_loop().add_reader(master, self._readable)

    def _readable(self) -> None:
        try:
            data = os.read(self.fd, 65536) if self.fd is not None else b""
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            self.publish(data)
            return
        asyncio.get_running_loop().remove_reader(self.fd)
        self.end(self.on_exit())

    def joined(self) -> None:
        """A new browser: have the attached client redraw everything, for everyone (cheap, and nobody starts
        from half a screen). Resizing its terminal does that; the window itself keeps its size (ignore-size).
        It works through any wrapper that forwards resizes (``docker exec -t``)."""
        if self.proc is None or self.proc.poll() is not None or self.fd is None:
            return
        with contextlib.suppress(OSError):
            for cols in (self.cols + 1, self.cols):
                fcntl.ioctl(self.fd, termios.TIOCSWINSZ, struct.pack("HHHH", self.rows, cols, 0, 0))

    async def stop(self) -> None:
        if self.fd is not None:
            with contextlib.suppress(ValueError, OSError):
                asyncio.get_running_loop().remove_reader(self.fd)
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = None
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                await asyncio.get_running_loop().run_in_executor(None, self.proc.wait, 5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


class _Captured(_Stream):
    """The pane's text, captured while someone watches (runtimes with no live view)."""

    def __init__(self, sid: str, capture: Any, alive: Any) -> None:
        super().__init__(sid)
        self.capture, self.alive = capture, alive
        self.hello = {"type": "hello", "mode": "captured", "cols": 200, "rows": 50}
        self._task: asyncio.Task | None = None
        self._last = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    def joined(self) -> None:
        self._last = None  # send the whole text again

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            text, alive = await loop.run_in_executor(None, lambda: (self.capture(), self.alive()))
            if text != self._last:
                self._last = text
                self.publish(b"\x1b[H\x1b[2J" + text.replace("\n", "\r\n").encode("utf-8", "replace"))
            if not alive:
                self.end("the terminal has ended")
                return
            await asyncio.sleep(CAPTURE_EVERY)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


class Terminals:
    """Every watched session's stream, started on the first browser and stopped after the last."""

    def __init__(self, manager: Any) -> None:
        self.manager = manager            # ao.sessions.Sessions
        self.streams: dict[str, _Stream] = {}
        self._lock = asyncio.Lock()

    async def _open(self, session: Any) -> _Stream:
        project = self.manager.config.projects.get(session.project)
        runtime = self.manager.runtime(session.runtime or (project.runtime if project else "tmux"))
        handle = session.runtime_handle
        loop = asyncio.get_running_loop()
        if not handle:
            stream = _Stream(session.id)
            stream.end("this session has no terminal")
            return stream
        if hasattr(runtime, "view_argv"):
            try:
                argv, cols, rows = await loop.run_in_executor(None, runtime.view_argv, handle)
            except AoError:
                stream = _Stream(session.id)
                stream.end(_gone(session))
                return stream
            stream: _Stream = _Attach(session.id, argv, cols, rows,
                                      on_exit=lambda: _gone(self.manager.store.get(session.id) or session))
        else:
            stream = _Captured(session.id, lambda: runtime.capture(handle, 50),
                               lambda: runtime.probe([handle])[handle].alive)
        await stream.start()
        return stream

    async def watch(self, session: Any, websocket: Any) -> None:
        """Stream ``session``'s terminal to one browser until it leaves or the terminal ends."""
        queue: asyncio.Queue = asyncio.Queue(maxsize=QUEUE)
        async with self._lock:
            stream = self.streams.get(session.id)
            if stream is None or stream.ended:
                if stream is not None:
                    await stream.stop()
                stream = await self._open(session)
                self.streams[session.id] = stream
            stream.queues.add(queue)
        try:
            await websocket.send_json(stream.hello or {"type": "hello", "mode": "none", "cols": 80, "rows": 24})
            if stream.ended:
                await websocket.send_json({"type": "ended", "reason": stream.ended})
                return
            await asyncio.get_running_loop().run_in_executor(None, stream.joined)
            receiver = asyncio.create_task(_drain(websocket))
            try:
                while True:
                    getter = asyncio.create_task(queue.get())
                    done, _ = await asyncio.wait({getter, receiver}, return_when=asyncio.FIRST_COMPLETED)
                    if receiver in done:
                        getter.cancel()
                        return
                    item = getter.result()
                    if item is None:
                        await websocket.close(code=1013, reason="too slow; reconnect")
                        return
                    if isinstance(item, bytes):
                        await websocket.send_bytes(item)
                    else:
                        await websocket.send_json(item)
                        if item.get("type") == "ended":
                            return
            finally:
                receiver.cancel()
        finally:
            async with self._lock:
                stream.queues.discard(queue)
                if not stream.queues and self.streams.get(session.id) is stream:
                    del self.streams[session.id]
                    await stream.stop()

    async def close(self) -> None:
        async with self._lock:
            for stream in self.streams.values():
                await stream.stop()
            self.streams.clear()


async def _drain(websocket: Any) -> None:
    """Read (and ignore) what the browser sends, until it goes away: the view is read-only."""
    from starlette.websockets import WebSocketDisconnect

    with contextlib.suppress(WebSocketDisconnect, RuntimeError):
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return


def _controlling_tty() -> None:
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def _gone(session: Any) -> str:
    if session.status == "killed":
        return "the session was killed: its terminal is gone (restore starts its agent again)"
    return "the terminal has ended: its tmux session is gone"
