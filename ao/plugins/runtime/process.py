"""The process runtime (SPEC 5): for machines without tmux. The agent is a plain child process.

Layout in the session's ``run_dir``: ``input.fifo`` (the agent's stdin) and ``output.log`` (its stdout and
stderr). The child gets the fifo opened read-write, so it never reads EOF while no writer is attached, and
``ao send`` from any later ao process just opens the fifo and writes.

The handle is ``"<pid>:<starttime>:<run_dir>"``: the pid, the process start time from ``/proc/<pid>/stat``
(in clock ticks since boot; a reused pid has a different one, so a stale handle reads as dead and is never
signalled), and the run folder, so every call can find the fifo and log from the handle alone.
"""

from __future__ import annotations

import array
import errno
import fcntl
import os
import select
import signal
import subprocess
import termios
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ao.errors import AoError
from ao.plugins.runtime import LaunchSpec, Probe, SendError, Unconfirmed, procs
from ao.templates import clean

FIFO, LOG = "input.fifo", "output.log"
SEND_CAP = 100_000
PIPE_SIZE = 1 << 20    # room for any message even while the agent is busy (Linux caps unprivileged pipes at 1 MiB)
TAIL_BYTES = 1 << 20   # capture reads at most this much of the end of the log


@dataclass(frozen=True)
class _Handle:
    pid: int
    start: str
    run_dir: Path


def _parse(handle: str) -> _Handle | None:
    pid, _, rest = handle.partition(":")
    start, _, run_dir = rest.partition(":")
    if not (pid.isdigit() and start.isdigit() and run_dir):
        return None
    return _Handle(int(pid), start, Path(run_dir))


def _stat(pid: int) -> tuple[str, str] | None:
    """(state, starttime) of a process, or None when there is no such process."""
    st = procs.stat(pid)
    return (st[0], st[2]) if st is not None else None


def _alive(h: _Handle) -> bool:
    st = _stat(h.pid)
    return st is not None and st[1] == h.start and st[0] not in ("Z", "X")


@dataclass
class ProcessRuntime:
    """Options: ``bracketed_paste`` wraps multi-line text in paste markers (for agents that read them on
    stdin, like ao/scripted_agent.py; otherwise each line reaches a line-reading agent as its own message);
    ``term_timeout`` is how long ``kill`` waits after SIGTERM before SIGKILL."""

    bracketed_paste: bool = False
    term_timeout: float = 3.0
    name: str = "process"

    def check(self) -> None:
        if not os.path.exists("/proc/self/stat") or not hasattr(os, "mkfifo"):
            raise AoError("the process runtime needs Linux (/proc and named pipes); use runtime: tmux here")

    def start(self, spec: LaunchSpec) -> str:
        if spec.run_dir is None:
            raise AoError(f"cannot start session {spec.name}: the process runtime needs a run folder")
        if not spec.cwd.is_dir():
            raise AoError(f"cannot start session {spec.name}: folder {spec.cwd} does not exist")
        run_dir = spec.run_dir.resolve()
        fifo, log = run_dir / FIFO, run_dir / LOG
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
            if fifo.exists() or fifo.is_symlink():
                fifo.unlink()  # a stale fifo may still hold an old agent's unread input
            os.mkfifo(fifo, 0o600)
            # O_RDWR: opening does not wait for a writer, and the child, holding a writer itself, never sees EOF
            stdin = os.open(fifo, os.O_RDWR | os.O_CLOEXEC)
        except OSError as e:
            raise AoError(f"cannot prepare {run_dir} for session {spec.name}: {e.strerror or e}") from e
        try:
            try:
                fcntl.fcntl(stdin, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
            except OSError:
                pass  # the default 64 KiB still works; send refuses what does not fit
            with open(log, "ab") as out:
                proc = subprocess.Popen(
                    [str(spec.script)], cwd=spec.cwd, env=dict(spec.env), stdin=stdin,
                    stdout=out, stderr=subprocess.STDOUT, start_new_session=True, close_fds=True)
        except OSError as e:
            raise AoError(f"cannot start session {spec.name}: {spec.script}: {e.strerror or e}") from e
        finally:
            os.close(stdin)
        # Read the start time before anything can reap the child: until then it is at least a zombie.
        st = _stat(proc.pid)
        # ao may live for days: reap the child when it exits so no defunct processes pile up.
        threading.Thread(target=proc.wait, name=f"ao-reap-{proc.pid}", daemon=True).start()
        if st is None:
            raise AoError(f"session {spec.name}: the agent process vanished at once (see {log})")
        return f"{proc.pid}:{st[1]}:{run_dir}"

    def probe(self, handles: list[str]) -> dict[str, Probe]:
        result: dict[str, Probe] = {}
        for handle in handles:
            h = _parse(handle)
            if h is None:
                result[handle] = Probe(alive=False)
                continue
            try:
                at: float | None = (h.run_dir / LOG).stat().st_mtime
            except OSError:
                at = None
            alive = _alive(h)
            result[handle] = Probe(alive=alive, last_output_at=at, pid=h.pid if alive else None)
        return result

    def send(self, handle: str, text: str, *, confirm_timeout: float = 5.0,
             receipt: Callable[[], bool] | None = None) -> None:
        h = _parse(handle)
        if h is None:
            raise SendError(f"cannot send: '{handle}' is not a process-runtime handle")
        if not _alive(h):
            raise SendError(f"cannot send to process {h.pid}: the agent has exited")
        text = clean(text, SEND_CAP).rstrip("\n")
        if self.bracketed_paste and "\n" in text:
            text = f"\x1b[200~{text}\x1b[201~"
        data = (text + "\n").encode("utf-8")
        try:
            fd = os.open(h.run_dir / FIFO, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as e:
            why = "nobody is reading it" if e.errno == errno.ENXIO else (e.strerror or str(e))
            raise SendError(f"cannot send to process {h.pid}: input fifo {h.run_dir / FIFO}: {why}") from e
        try:
            # Refuse up front what would not fit: a half-written message is worse than none.
            queued = array.array("i", [0])
            fcntl.ioctl(fd, termios.FIONREAD, queued)
            room = fcntl.fcntl(fd, fcntl.F_GETPIPE_SZ) - queued[0]
            if len(data) > room:
                raise SendError(f"delivery to process {h.pid} not confirmed: its input is full ({queued[0]} "
                                f"bytes unread; the agent is not reading), so nothing was sent")
            deadline = time.monotonic() + confirm_timeout
            sent = 0
            while sent < len(data):
                try:
                    sent += os.write(fd, data[sent:])
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise SendError(f"delivery to process {h.pid} not confirmed: only {sent} of {len(data)} "
                                        "bytes were written before the agent stopped reading") from None
                    select.select([], [fd], [], 0.05)
                except BrokenPipeError as e:
                    raise SendError(f"cannot send to process {h.pid}: it closed its input") from e
        finally:
            os.close(fd)
        while receipt is not None and not receipt():
            if time.monotonic() >= deadline:
                raise Unconfirmed(f"delivery to process {h.pid} not confirmed: the agent recorded no receipt of it "
                                  f"within {confirm_timeout:g} s (not resent, to avoid duplicates)")
            time.sleep(0.02)

    def send_keys(self, handle: str, keys: list[str]) -> None:
        """Without a terminal, C-c is SIGINT to the agent's process group and Escape is an ESC byte on stdin."""
        h = _parse(handle)
        if h is None or not _alive(h):
            raise SendError(f"cannot press keys in {handle}: the agent has exited")
        for key in keys:
            if key == "C-c":
                self._signal(h.pid, signal.SIGINT)
                continue
            byte = {"Escape": b"\x1b", "Enter": b"\n"}.get(key)
            if byte is None:
                raise SendError(f"the process runtime cannot press {key}")
            try:
                fd = os.open(h.run_dir / FIFO, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
                try:
                    os.write(fd, byte)
                finally:
                    os.close(fd)
            except OSError as e:
                raise SendError(f"cannot press {key} in process {h.pid}: {e.strerror or e}") from e

    def capture(self, handle: str, lines: int = 200) -> str:
        h = _parse(handle)
        if h is None:
            return ""
        try:
            with open(h.run_dir / LOG, "rb") as f:
                f.seek(max(f.seek(0, os.SEEK_END) - TAIL_BYTES, 0))
                data = f.read().decode("utf-8", "replace")
        except OSError:
            return ""
        # A terminal would overwrite a line on CR (progress bars): keep what follows the last CR.
        rows = [row.rsplit("\r", 1)[-1] for row in data.replace("\r\n", "\n").split("\n")]
        rows = [row.rstrip() for row in clean("\n".join(rows), len(data) + 1).split("\n")]
        while rows and not rows[-1]:
            rows.pop()
        return "\n".join(rows[-lines:])

    def kill(self, handle: str) -> None:
        h = _parse(handle)
        if h is None:
            return
        st = _stat(h.pid)
        if st is not None and st[1] != h.start:
            return  # the pid now belongs to another process: never signal it
        # The leader is ours (or gone, and then its pid, still the group's id, cannot have been reused):
        # end the whole group, as a terminal hang-up would.
        if not self._signal(h.pid, signal.SIGTERM):
            return
        deadline = time.monotonic() + self.term_timeout
        while self._live_members(h.pid):
            if time.monotonic() >= deadline:
                self._signal(h.pid, signal.SIGKILL)
                deadline = time.monotonic() + 1.0  # SIGKILL cannot be refused; this only waits for it to land
                while self._live_members(h.pid) and time.monotonic() < deadline:
                    time.sleep(0.01)
                return
            time.sleep(0.02)

    @staticmethod
    def _signal(pgid: int, sig: int) -> bool:
        try:
            os.killpg(pgid, sig)
            return True
        except ProcessLookupError:
            return False
        except PermissionError as e:
            raise AoError(f"not allowed to stop process group {pgid}: {e.strerror}") from e

    @staticmethod
    def _live_members(pgid: int) -> bool:
        """Whether any process of the group is still running. Zombies do not count: an orphaned one waits
        for PID 1 to reap it, which in a container may take a while, and it cannot be killed anyway."""
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat", "rb") as f:
                    data = f.read().decode("ascii", "replace")
            except OSError:
                continue
            fields = data[data.rfind(")") + 2:].split()
            if len(fields) > 2 and fields[2] == str(pgid) and fields[0] not in ("Z", "X"):
                return True
        return False

    def attach_argv(self, handle: str) -> list[str]:
        h = _parse(handle)
        log = h.run_dir / LOG if h else "the session's output.log"
        raise AoError(f"the process runtime cannot attach; use `ao send`, or tail {log}")


def plugin(**options: object) -> ProcessRuntime:
    allowed = {"bracketed_paste", "term_timeout"}
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise AoError(f"unknown process runtime option(s): {', '.join(unknown)}; known: {', '.join(sorted(allowed))}")
    return ProcessRuntime(**options)  # type: ignore[arg-type]
