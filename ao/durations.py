"""Durations: ``45s``, ``10m``, ``1h``, ``1h30m``, ``2d``, or an integer number of seconds."""

from __future__ import annotations

import re

_UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}
_DURATION = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")
HINT = "use e.g. 45s, 10m, 1h, 1h30m, 2d, or a whole number of seconds"
MAX_SECONDS = 366 * 86400  # a year: longer is a typo, and would overflow timers (`110000d`)


class DurationError(ValueError):
    pass


def parse_duration(value: object) -> int:
    """Return whole seconds, or raise :class:`DurationError` (never silently "never")."""
    if isinstance(value, bool):
        raise DurationError(f"invalid duration {value!r}; {HINT}")
    if isinstance(value, int):
        if value < 0:
            raise DurationError(f"invalid duration {value}: must not be negative")
        return _bounded(value, value)
    if isinstance(value, str) and len(value) <= 64:
        text = value.strip()
        if text.isdigit():
            return _bounded(int(text), value)
        match = _DURATION.match(text)
        if match and text:
            return _bounded(sum(int(n) * _UNITS[u] for n, u in zip(match.groups(), "dhms") if n), value)
    shown = value if not isinstance(value, str) or len(value) <= 64 else value[:64] + "..."
    raise DurationError(f"invalid duration {shown!r}; {HINT}")


def _bounded(seconds: int, value: object) -> int:
    if seconds > MAX_SECONDS:
        raise DurationError(f"duration {value!r} is too long: at most {MAX_SECONDS // 86400}d")
    return seconds


def format_duration(seconds: int | float) -> str:
    """Human form: ``1h30m``, ``45s``, ``0s``."""
    seconds = int(seconds)
    if seconds <= 0:
        return "0s"
    out = ""
    for unit, size in _UNITS.items():
        n, seconds = divmod(seconds, size)
        if n:
            out += f"{n}{unit}"
    return out
