"""Reading the files in folders an agent can write: its workspace, its run folder, its home (transcripts,
histories, rollouts, receipts, the state files ao shares with it).

A sandboxed agent can put a link there, to make ao read a file of the user's, or a fifo, to make ao wait for
ever. So these files are opened without following a link and without blocking, and only a regular file is
read. (Writes into such folders go through :func:`ao.ledger.atomic_write`, which never writes through a link.)
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import BinaryIO


def open_regular(path: Path | str) -> BinaryIO:
    """``path`` open for reading when it is a regular file, itself not a link; OSError otherwise, as for a
    missing file, so callers treat a planted link or fifo as unreadable."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", str(path))
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_regular(path: Path | str) -> bytes:
    """A regular file's bytes; b"" when there is no file (OSError for a link, a fifo or a folder)."""
    try:
        with open_regular(path) as f:
            return f.read()
    except FileNotFoundError:
        return b""


def read_small(path: Path | str, limit: int) -> tuple[str, float] | None:
    """(text, mtime) of at most ``limit`` bytes of a regular file an agent writes; None when there is none."""
    try:
        with open_regular(path) as f:
            return f.read(limit).decode("utf-8", "replace"), os.fstat(f.fileno()).st_mtime
    except OSError:
        return None


def within(root: Path, path: Path) -> bool:
    """Whether ``path``'s folder really is ``root`` or inside it, no link on the way leading out: checked
    before ao writes into a folder an agent can change (a session's own home)."""
    real, parent = os.path.realpath(root), os.path.realpath(Path(path).parent)
    return parent == real or parent.startswith(real + os.sep)
