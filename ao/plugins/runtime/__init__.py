"""Runtimes: where an agent's terminal lives (SPEC 5). ``tmux`` (default) and ``process``."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ao import plugins
from ao.errors import AoError

MODULES = {"tmux": "tmux", "process": "process"}


class SendError(AoError):
    """Text could not be delivered, or delivery could not be confirmed. Never retried blindly (no duplicates)."""


class Unconfirmed(SendError):
    """The text was typed in and Enter pressed, but the agent showed no sign of it: it probably arrived, so
    it must not be typed in again."""


@dataclass
class LaunchSpec:
    name: str                 # unique, safe handle name, e.g. "ao-1a2b3c-app-3"
    cwd: Path                 # the workspace
    script: Path              # an executable launch script (written by ao.sessions); the runtime runs it
    env: dict[str, str] = field(default_factory=dict)  # added to the inherited environment
    run_dir: Path | None = None  # a private folder the runtime may use (fifos, output logs)


@dataclass
class Probe:
    """One runtime's view of one session, from a single batched probe."""

    alive: bool
    last_output_at: float | None = None  # epoch s of the terminal's last output, when the runtime knows it
    pid: int | None = None


class Runtime(Protocol):
    name: str

    def check(self) -> None:
        """Raise AoError with a clear message when the runtime cannot work here (e.g. tmux not installed)."""

    def start(self, spec: LaunchSpec) -> str:
        """Start the session; return the handle used by every other call. Raises AoError on failure."""

    def probe(self, handles: list[str]) -> dict[str, Probe]:
        """Liveness of many sessions in one call (tmux: one list-panes for all). Missing handle -> alive False."""

    def send(self, handle: str, text: str, *, confirm_timeout: float = 5.0) -> None:
        """Deliver ``text`` (already cleaned) followed by Enter; raise SendError when not confirmed."""

    def send_keys(self, handle: str, keys: list[str]) -> None:
        """Press keys (tmux names: Escape, C-c); raise SendError when the session is gone."""

    def capture(self, handle: str, lines: int = 200) -> str:
        """The last ``lines`` lines of the terminal, plain text ("" when gone)."""

    def kill(self, handle: str) -> None:
        """End the session. Idempotent: a handle that is already gone is fine."""

    def attach_argv(self, handle: str) -> list[str]:
        """The command line that attaches the user's terminal (AoError when the runtime cannot attach)."""


def get(name: str, **options: Any) -> Runtime:
    return plugins.load("runtime", name, MODULES, **options)
