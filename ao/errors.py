"""Errors a user can cause, reported as ``FILE:LINE:COL: message (at dotted.path)``.

Anything raised as an :class:`AoError` is the user's to fix: the CLI prints it and exits 1 (or 2 for a
:class:`UsageError`) without a traceback. Every other exception is a bug in ao.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class Problem:
    """One thing wrong with an input file. ``line`` and ``col`` are 1-based; 0 means unknown."""

    file: str
    line: int
    col: int
    message: str
    path: str = ""

    def __str__(self) -> str:
        where = self.file
        if self.line:
            where += f":{self.line}:{self.col}"
        text = f"{where}: {self.message}"
        if self.path:
            text += f" (at {self.path})"
        return text


class AoError(Exception):
    """A failure caused by input or environment; carries one or more problems or a plain message."""

    exit_code = 1

    def __init__(self, message: str = "", problems: list[Problem] | None = None) -> None:
        self.problems = sorted(problems or [])
        super().__init__(message or "\n".join(str(p) for p in self.problems))


class UsageError(AoError):
    """The command line itself was wrong (exit code 2)."""

    exit_code = 2


def did_you_mean(word: object, choices: object) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``choices``, or nothing."""
    import difflib

    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1)  # type: ignore[attr-defined]
    return f" (did you mean '{close[0]}'?)" if close else ""


def dotted(path: tuple) -> str:
    """Render a data path as ``projects.app.reactions[0]``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def undotted(text: str) -> tuple:
    """``projects.app.reactions[0]`` back to a data path (list indexes as ints): :func:`dotted` reversed."""
    import re

    return tuple(int(part[1:-1]) if part.startswith("[") else part for part in re.findall(r"[^.\[\]]+|\[\d+\]", text))
