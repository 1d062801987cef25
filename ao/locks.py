"""An exclusive file lock across processes (flock), for short read-modify-write sections.

Waiting is never silent and never endless: when the lock is taken, :func:`file_lock` says on stderr what it
waits for (once), and gives up after ``timeout`` seconds with an :class:`~ao.errors.AoError` that names the
lock, so a wedged or forgotten process cannot make a command hang for ever.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sys
import time
from pathlib import Path
from typing import Iterator

from ao.errors import AoError

DEFAULT_TIMEOUT = 60.0
POLL = 0.05


class LockTimeout(AoError):
    """Another process held the lock for longer than we were prepared to wait."""


def acquire(fd: int, path: Path, what: str, timeout: float) -> None:
    """flock ``fd`` exclusively, saying what it waits for once, and giving up after ``timeout`` seconds."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return
    except BlockingIOError:
        pass
    _say(f"ao: waiting for {what} (another ao command holds {path}); giving up after {timeout:g} s")
    deadline = time.monotonic() + timeout
    while True:
        time.sleep(POLL)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise LockTimeout(f"gave up after {timeout:g} s waiting for {what}: another ao command still "
                                  f"holds {path} (if none is running, a stuck process holds it: check with "
                                  f"`fuser {path}`)") from None


@contextlib.contextmanager
def file_lock(path: Path, what: str | None = None, timeout: float = DEFAULT_TIMEOUT) -> Iterator[None]:
    """Hold an exclusive flock on ``path`` (created if needed). One open file description per holder, so
    threads of one process exclude each other too."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise AoError(f"{path}: cannot open the lock file: {exc.strerror or exc}") from None
    try:
        acquire(fd, path, what or f"the lock {path.name}", timeout)
        yield
    finally:
        os.close(fd)


def _say(text: str) -> None:
    try:
        sys.stderr.write(text + "\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
