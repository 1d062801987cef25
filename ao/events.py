"""The event log (``<dataDir>/events.jsonl``) and the orchestrator log (``<dataDir>/logs/orchestrator.log``).

Both are append-only text files that several threads and processes write at once (the poller, its
notification workers, ``ao notify test``). Each record is one line written with a single ``write`` on a
descriptor opened with ``O_APPEND``, so concurrent writers never interleave inside a line. No fsync: losing
the last lines in a power cut is acceptable for a log, paying an fsync per event is not.

Nothing secret may reach either file: every string is scrubbed of the given secrets first (values taken from
the environment, see :func:`ao.notify.secret_fragments`).
"""

from __future__ import annotations

import json
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any, Iterable

EVENTS_FILE = "events.jsonl"
LOG_FILE = Path("logs") / "orchestrator.log"
REDACTED = "***"
STDERR = "stderr"  # the default console, resolved at call time


def iso(ts: float) -> str:
    """``2026-01-01T09:00:00Z`` (milliseconds only when there are some)."""
    moment = datetime.fromtimestamp(ts, tz=timezone.utc)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if moment.microsecond // 1000:
        text += f".{moment.microsecond // 1000:03d}"
    return text + "Z"


def scrub(value: Any, secrets: Iterable[str]) -> Any:
    """``value`` with every secret replaced by ``***``, in strings at any depth. Longest first, so a secret
    that contains another is replaced whole."""
    ordered = sorted({s for s in secrets if s}, key=len, reverse=True)
    if not ordered:
        return value

    def walk(v: Any) -> Any:
        if isinstance(v, str):
            for secret in ordered:
                if secret in v:
                    v = v.replace(secret, REDACTED)
            return v
        if isinstance(v, dict):
            return {k: walk(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [walk(x) for x in v]
        return v

    return walk(value)


_unwritable: dict[Path, str] = {}  # files that could not be written, and why (said once, until they work again)


def _append_line(path: Path, line: str) -> bool:
    """Append one line. A log that cannot be written (a full disk, no permission) never fails the work it
    records: that is said once on stderr (and again once it works again), and False returned."""
    data = line.encode("utf-8", "replace")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            written = os.write(fd, data)
            while written < len(data):  # a short write only happens on a full disk or a signal; finish it
                written += os.write(fd, data[written:])
        finally:
            os.close(fd)
    except OSError as exc:
        why = exc.strerror or str(exc)
        if _unwritable.get(path) != why:
            _unwritable[path] = why
            _warn(f"ao: cannot write {path}: {why}; carrying on without it")
        return False
    if _unwritable.pop(path, None) is not None:
        _warn(f"ao: {path} can be written again")
    return True


def unwritable() -> list[str]:
    """The logs that cannot be written right now, each with why."""
    return [f"{path}: cannot write: {why}" for path, why in _unwritable.items()]


def _warn(text: str) -> None:
    try:
        sys.stderr.write(text + "\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


def append(data_dir: Path, event_type: str, *, ts: float | None = None, secrets: Iterable[str] = (),
           **fields: Any) -> dict[str, Any]:
    """Append one event ``{"ts": ISO, "type": event_type, **fields}`` to ``<data_dir>/events.jsonl``."""
    record = scrub({"ts": iso(time.time() if ts is None else ts), "type": event_type, **fields}, secrets)
    _append_line(Path(data_dir) / EVENTS_FILE, json.dumps(record, ensure_ascii=False, default=str) + "\n")
    return record


RECENT_BYTES = 512 * 1024


def recent_ids(data_dir: Path, size: int = RECENT_BYTES) -> set[str]:
    """The ``id``s of the events in the last ``size`` bytes of the log (what a crashed poller may have
    appended just before it died)."""
    path = Path(data_dir) / EVENTS_FILE
    try:
        with open(path, "rb") as fh:
            fh.seek(max(fh.seek(0, os.SEEK_END) - size, 0))
            tail = fh.read()
    except OSError:
        return set()
    found = set()
    for line in tail.splitlines():
        if b'"id"' not in line:
            continue
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and isinstance(record.get("id"), str):
            found.add(record["id"])
    return found


def read(data_dir: Path) -> list[dict[str, Any]]:
    """Every event so far (tests, ``ao events``); a torn last line is skipped."""
    path = Path(data_dir) / EVENTS_FILE
    try:
        raw = path.read_bytes()
    except OSError:
        return []
    out = []
    for line in raw.splitlines():
        try:  # a damaged line (not UTF-8, not JSON, not an object) is skipped, never fatal
            record = json.loads(line.decode("utf-8"))
        except ValueError:
            continue
        if isinstance(record, dict):
            out.append(record)
    return out


def log(data_dir: Path, message: str, *, ts: float | None = None, secrets: Iterable[str] = (),
        console: IO[str] | None | str = STDERR, detail: str = "") -> str:
    """One line for humans: to the console (stderr unless another stream or None is given) and to
    ``<data_dir>/logs/orchestrator.log``. ``detail`` (e.g. a notification body) goes to the log file only,
    indented under the line."""
    if console == STDERR:
        console = sys.stderr  # looked up now, not at import: tests and the CLI may have replaced it
    message = scrub(" ".join(message.split("\n")), secrets)
    stamp = iso(time.time() if ts is None else ts)
    text = f"{stamp} {message}\n"
    if detail:
        text += "".join(f"    {line}\n" for line in scrub(detail, secrets).splitlines())
    if console is not None:
        try:
            console.write(f"ao: {message}\n")
            console.flush()
        except (OSError, ValueError):  # a closed or broken console must not lose the log line or the event
            pass
    _append_line(Path(data_dir) / LOG_FILE, text)
    return message
