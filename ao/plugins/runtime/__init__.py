"""Runtimes: where an agent's terminal lives (SPEC 5). ``tmux`` (default), ``process`` and ``docker``."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

from ao import plugins
from ao.errors import AoError

MODULES = {"tmux": "tmux", "process": "process", "docker": "docker"}


class SendError(AoError):
    """Text could not be delivered, or delivery could not be confirmed. Never retried blindly (no duplicates)."""


class Unconfirmed(SendError):
    """The text was typed in and Enter pressed, but the agent showed no sign of it: it probably arrived, so
    it must not be typed in again."""


class AgentWaiting(SendError):
    """Nothing was typed: the agent is waiting for a human (a dialog, question, login or trust screen, or
    a screen ao cannot classify) or is blocked by a limit. ``waiting_for`` says what it waits for. A
    reaction's message is held until the agent is ready; ``ao send --answer`` types anyway."""

    def __init__(self, message: str, waiting_for: str, state: str = "waiting_input") -> None:
        super().__init__(message)
        self.waiting_for = waiting_for
        self.state = state


class AgentBusy(AgentWaiting):
    """Nothing was typed: no human is needed, but the agent cannot take a message now (it reads input only
    at its prompt, or records a message only once its turn ends). Held like a waiting agent's."""

    def __init__(self, message: str, waiting_for: str) -> None:
        super().__init__(message, waiting_for, state="busy")


@dataclass
class LaunchSpec:
    name: str                 # unique, safe handle name, e.g. "ao-1a2b3c-app-3"
    cwd: Path                 # the workspace
    script: Path              # an executable launch script (written by ao.sessions); the runtime runs it
    # The complete environment of the agent (ao.environment.agent_environment): a runtime must not let the
    # agent inherit ao's own (or, for tmux, the server's global environment).
    env: dict[str, str] = field(default_factory=dict)
    run_dir: Path | None = None  # a private folder the runtime may use (fifos, output logs)
    repo: Path | None = None     # the project's checkout (trusted): where a worktree's git data and origin live


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

    def send(self, handle: str, text: str, *, confirm_timeout: float = 5.0,
             receipt: Callable[[], bool] | None = None) -> None:
        """Deliver ``text`` followed by Enter; raise SendError when not confirmed. ``receipt``, when given, is
        the agent's own confirmation (it received the text): nothing else counts then."""

    def send_keys(self, handle: str, keys: list[str]) -> None:
        """Press keys (tmux names: Escape, C-c); raise SendError when the session is gone."""

    def capture(self, handle: str, lines: int = 200) -> str:
        """The last ``lines`` lines of the terminal, plain text ("" when gone)."""

    def kill(self, handle: str) -> None:
        """End the session. Idempotent: a handle that is already gone is fine."""

    def attach_argv(self, handle: str) -> list[str]:
        """The command line that attaches the user's terminal (AoError when the runtime cannot attach)."""

    # Optional, for runtimes that need them (docker): ``location(handle)`` names where a session runs (ao status);
    # ``bind(state_dir, on_event)`` gives a folder for locks and a way to record events; ``agent_in_image``
    # True means the agent CLI lives with the runtime (in an image), not on this machine's PATH;
    # ``agent_home(run_dir)`` is the agent's own $HOME when each session has one (see :func:`agent_home`), and
    # ``prepare_home(run_dir)`` makes it before the agent's launch files are written.


def agent_home(runtime: Any, run_dir: Path) -> Path | None:
    """Where a session's agent keeps its own files (transcripts, rollouts, its store), as a path on this
    machine, when ``runtime`` gives each session a home of its own (docker: ``<run_dir>/home``); None when
    the agent runs with ao's own home. No I/O."""
    own = getattr(type(runtime), "agent_home", None)  # the class: docker's __getattr__ forwards to tmux's
    return own(runtime, run_dir) if callable(own) else None


def prepare_home(runtime: Any, run_dir: Path, repo: Path | None = None) -> Path | None:
    """:func:`agent_home`, made ready for a launch (created, seeded with what the runtime copies in and the
    user's git identity as the project's checkout ``repo`` sees it)."""
    prepare = getattr(type(runtime), "prepare_home", None)
    return prepare(runtime, run_dir, repo) if callable(prepare) else None


def get(name: str, **options: Any) -> Runtime:
    return plugins.load("runtime", name, MODULES, **options)


def shared_options(name: str, settings: list[dict[str, Any]]) -> dict[str, Any]:
    """Options for a runtime ``name`` that observes sessions of every project using it (one probe per
    runtime, not per project), given each such project's settings; {} for runtimes without settings."""
    if name not in MODULES or not any(settings):
        return {}
    import importlib

    module = importlib.import_module(f"ao.plugins.runtime.{MODULES[name]}")
    shared = getattr(module, "shared_options", None)
    return shared(settings) if shared else {}
