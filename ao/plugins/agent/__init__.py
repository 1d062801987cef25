"""Agents: the coding agent a session runs (SPEC 5): how it is launched, how it gets its prompt, and what
it is doing right now (activity). ``claude-code`` (default), ``codex``, ``aider``, ``opencode``, ``command``."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ao import plugins

MODULES = {"claude-code": "claude_code", "codex": "codex", "aider": "aider", "opencode": "opencode",
           "command": "command"}
STATES = ("active", "ready", "idle", "waiting_input", "blocked", "exited", "unknown")


@dataclass
class LaunchContext:
    session_id: str
    workspace: Path
    prompt_file: Path           # the rendered prompt, already on disk
    settings: dict[str, Any]    # the project's agentConfig: permissions, model, command, promptDelivery
    resume: bool = False        # restoring a session whose agent exited: continue its conversation if possible


@dataclass
class Observation:
    """What the observer saw of one session this cycle. Everything time-related comes in here: no clock reads."""

    now: float
    alive: bool                          # the runtime says the terminal/process is there
    workspace: Path
    started_at: float
    ready_threshold: float               # seconds a quiet agent stays "ready" before it is "idle"
    pane: str | None = None              # captured terminal text; None when not captured this cycle
    last_output_at: float | None = None  # the runtime's last-output time, when it knows it
    memo: dict[str, Any] = field(default_factory=dict)  # Activity.memo from the previous observation


@dataclass
class Activity:
    state: str                  # one of STATES
    at: float | None            # when the agent was last seen doing something (epoch s), None if never
    memo: dict[str, Any] = field(default_factory=dict)  # kept in the session's meta, given back next time
    detail: str = ""            # why: "pane asks 'Do you want to proceed?'", "session file updated", ...


class Agent(Protocol):
    name: str

    def prompt_delivery(self, settings: dict[str, Any]) -> str:
        """'argument' (the launch command reads the prompt file), 'send' (typed in once running) or 'none'."""

    def launch_command(self, ctx: LaunchContext) -> str:
        """The shell command line that starts the agent in ``ctx.workspace`` (run from a launch script)."""

    def activity(self, obs: Observation) -> Activity:
        """The agent's activity: from its own session files where they exist, else from the terminal."""

    def interrupt_keys(self) -> list[str]:
        """Keys that stop the current turn and keep the session (optional; default Escape)."""


DEFAULT_INTERRUPT = ("Escape",)


def interrupt_keys(agent: Any) -> list[str]:
    """The keys (tmux key names) that stop the agent's current turn without ending it, for the `pause` action.
    A plugin may define ``interrupt_keys()``; the default is Escape."""
    keys = getattr(agent, "interrupt_keys", None)
    return list(keys()) if callable(keys) else list(DEFAULT_INTERRUPT)


def get(name: str, **options: Any) -> Agent:
    return plugins.load("agent", name, MODULES, **options)
