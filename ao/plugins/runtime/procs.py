"""Processes a runtime started, found through ``/proc`` (Linux), so ending a session ends all of them."""

from __future__ import annotations

import os
import signal
import time


def stat(pid: int) -> tuple[str, int, str] | None:
    """(state, parent pid, start time in clock ticks) of a process, or None when there is none."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read().decode("ascii", "replace")
    except OSError:
        return None
    fields = data[data.rfind(")") + 2:].split()  # the command name in (...) may hold spaces and parens
    if len(fields) < 20 or not fields[1].isdigit():
        return None
    return fields[0], int(fields[1]), fields[19]


def tree(roots: list[int]) -> list[tuple[int, str]]:
    """``roots`` and all their descendants, each as (pid, start time): the start time tells a reused pid."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (st := stat(int(entry))) is not None:
            children.setdefault(st[1], []).append(int(entry))
    out, todo, seen = [], list(roots), set()
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        st = stat(pid)
        if st is not None:
            out.append((pid, st[2]))
        todo.extend(children.get(pid, []))
    return out


def _running(proc: tuple[int, str]) -> bool:
    st = stat(proc[0])
    return st is not None and st[2] == proc[1] and st[0] not in ("Z", "X")


def end(procs: list[tuple[int, str]], timeout: float = 3.0) -> None:
    """Wait up to ``timeout`` for ``procs`` to exit after a hang-up, then SIGTERM, then SIGKILL what is
    left. A pid now owned by another process (different start time) is never signalled."""
    deadline = time.monotonic() + timeout
    for sig in (None, signal.SIGTERM, signal.SIGKILL):
        if sig is not None:
            for proc in procs:
                if _running(proc):
                    try:
                        os.kill(proc[0], sig)
                    except (ProcessLookupError, PermissionError):
                        pass
            deadline = time.monotonic() + (timeout if sig == signal.SIGTERM else 1.0)
        while any(_running(p) for p in procs) and time.monotonic() < deadline:
            time.sleep(0.02)
        procs = [p for p in procs if _running(p)]
        if not procs:
            return
