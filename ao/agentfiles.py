"""Reading the files in folders an agent can write: its workspace, its run folder, its home (transcripts,
histories, rollouts, receipts, the state files ao shares with it).

A sandboxed agent can put a link there, to make ao read a file of the user's, or a fifo, to make ao wait for
ever. So these files are opened without following a link and without blocking, and only a regular file is
read. (Writes into such folders go through :func:`ao.ledger.atomic_write`, which never writes through a link.)
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import Any, BinaryIO

from ao.errors import AoError


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


READ_LIMIT = 64 << 20  # bytes: an agent's state file is far smaller; a sparse 100 GB one costs the agent nothing


def read_regular(path: Path | str, limit: int = READ_LIMIT) -> bytes:
    """A regular file's bytes; b"" when there is no file (OSError for a link, a fifo, a folder, or a file
    larger than ``limit``)."""
    try:
        with open_regular(path) as f:
            if os.fstat(f.fileno()).st_size <= limit and len(data := f.read(limit + 1)) <= limit:
                return data
            raise OSError(errno.EFBIG, f"more than the {limit} bytes ao reads", str(path))  # grown meanwhile too
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
    """Whether ``path``'s folder really is ``root`` or inside it, no link on the way leading out (``root``
    itself being a link included): checked before ao writes into a folder an agent can change (a session's
    own home)."""
    if os.path.islink(root):
        return False
    real, parent = os.path.realpath(root), os.path.realpath(Path(path).parent)
    return parent == real or parent.startswith(real + os.sep)


def own_file(home: Path, path: Path) -> Path:
    """``path``, a file in a session's own home (a container's, the agent's to change), ready for ao to
    write: its folders made, unless a link the agent left there leads out of the home (AoError)."""
    if not within(home, path):
        raise AoError(f"{path} leads out of the session's home through a link; not writing it")
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


STORE_LIMIT = 256 << 20  # bytes of an agent's SQLite store (and its write-ahead log) ao copies to read
QUERY_SECONDS = 2.0      # a query on an agent's store is stopped after this long
VALUE_LIMIT = 1 << 20    # bytes of any one string or blob such a query may make


def query_store(db: Path, sql: str, params: Sequence[Any], *, agents_own: bool) -> list[tuple[Any, ...]]:
    """The rows of a read-only query on an agent's SQLite store (opencode's). ``agents_own``: the store is in a
    folder the agent can write (a container's home), where it could be a fifo (opening it would wait for
    ever), a link to a file of the user's, or a database whose schema makes a query run for ever; so it
    is copied (a regular file, size-capped) into a private folder and queried there. Every query stops after
    :data:`QUERY_SECONDS`. Raises sqlite3.Error or OSError (FileNotFoundError: no store)."""
    import sqlite3
    import tempfile
    import threading
    import time

    with contextlib.ExitStack() as stack:
        uri = f"file:{db}?mode=ro"
        if agents_own:
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ao-store-")))
            for suffix in ("", "-wal"):
                try:
                    source = stack.enter_context(open_regular(f"{db}{suffix}"))
                except FileNotFoundError:
                    if not suffix:
                        raise
                    continue
                with open(folder / f"store.db{suffix}", "wb") as copy:  # growing while copied: the cap holds
                    copied = 0
                    while chunk := source.read(1 << 20):
                        copied += len(chunk)
                        if copied > STORE_LIMIT:
                            raise OSError(errno.EFBIG, f"more than the {STORE_LIMIT} bytes ao copies", f"{db}{suffix}")
                        copy.write(chunk)
            uri = f"file:{folder / 'store.db'}"  # read-write: the copy is ours, and SQLite replays its log
        conn = sqlite3.connect(uri, uri=True, timeout=1.0, check_same_thread=False)
        # A timer interrupts the query even inside one long step (a huge blob), which a progress handler
        # would only see after it; no string or blob may grow past VALUE_LIMIT either.
        timer = threading.Timer(QUERY_SECONDS, conn.interrupt)
        try:
            conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, VALUE_LIMIT)
            conn.execute("PRAGMA trusted_schema = OFF")  # no function a view or trigger names runs
            deadline = time.monotonic() + QUERY_SECONDS
            conn.set_progress_handler(lambda: time.monotonic() > deadline, 1_000)
            timer.start()
            return conn.execute(sql, list(params)).fetchall()
        finally:
            timer.cancel()
            conn.close()
