"""Agents: the coding agent a session runs (SPEC 5): how it is launched, how it gets its prompt, and what
it is doing right now (activity). ``claude-code`` (default), ``codex``, ``aider``, ``opencode``, ``command``."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

from ao import plugins

MODULES = {"claude-code": "claude_code", "codex": "codex", "aider": "aider", "opencode": "opencode",
           "command": "command"}
STATES = ("active", "ready", "idle", "waiting_input", "blocked", "exited", "unknown")


@dataclass
class LaunchContext:
    session_id: str
    workspace: Path
    prompt_file: Path           # the rendered prompt, already on disk
    settings: dict[str, Any]    # the project's agentConfig: permissions, model, command, promptDelivery, ...
    resume: bool = False        # restoring a session whose agent exited: continue its conversation
    run_dir: Path | None = None  # the session's private folder: settings, hook logs, ports the agent uses
    env: dict[str, str] = field(default_factory=dict)  # the agent's environment (launch() may add to it)
    created_workspace: bool = True  # ao made this workspace (trust may be pre-seeded for it, if asked)
    home: Path | None = None    # the agent's own $HOME on this machine when the runtime gives it one (docker)


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
    run_dir: Path | None = None          # the session's private folder (hook logs, the agent's port)
    pid: int | None = None               # the agent process, when the runtime knows it (tmux: the pane's;
                                         # docker: as the agent sees itself, in its container)
    home: Path | None = None             # the agent's own $HOME on this machine (a container's), where its
                                         # transcripts and rollouts are; None: ao's own home


@dataclass
class Activity:
    state: str                  # one of STATES
    at: float | None            # when the agent was last seen doing something (epoch s), None if never
    memo: dict[str, Any] = field(default_factory=dict)  # kept in the session's meta, given back next time
    detail: str = ""            # why: "pane asks 'Do you want to proceed?'", "session file updated", ...


class Agent(Protocol):
    name: str
    screen: Any                 # ao.activity.Screen: its dialogs, limit messages and input box

    def prompt_delivery(self, settings: dict[str, Any]) -> str:
        """'argument' (the launch command reads the prompt file), 'send' (typed in once running) or 'none'."""

    def can_resume(self, ctx: LaunchContext) -> bool:
        """Whether a restore has a conversation to continue (else it is a fresh launch with the prompt)."""

    def prepare(self, ctx: LaunchContext) -> None:
        """Write what the launch needs into ``ctx.run_dir`` (settings, hooks) and add to ``ctx.env``.
        Raises AoError, before anything starts, for a launch that cannot work."""

    def launch_command(self, ctx: LaunchContext) -> str:
        """The shell command line that starts the agent in ``ctx.workspace`` (run from a launch script)."""

    def activity(self, obs: Observation) -> Activity:
        """The agent's activity: from its own signals where they exist, else from the terminal."""

    def receipt(self, obs: Observation, text: str) -> Callable[[], bool] | None:
        """Called just before ``text`` is typed in: a check that turns true once the agent has received it
        (its own record of the message), or None when the agent offers no receipt (the pane decides)."""

    def deliver(self, obs: Observation, text: str) -> bool:
        """Hand ``text`` to the agent without typing (its own API); False when it cannot, and ao types."""

    def not_ready(self, obs: Observation, activity: Activity) -> str | None:
        """Why the agent cannot take typed text right now though no human is needed (busy, no input box),
        or None. A message then waits, like one for a waiting agent."""

    def interrupt_keys(self) -> list[str]:
        """Keys (tmux names) that stop the current turn without ending the session (the `pause` action)."""


class BaseAgent:
    """Defaults for the optional parts of :class:`Agent`."""

    name = "agent"

    @property
    def screen(self) -> Any:
        from ao.activity import GENERIC

        return GENERIC

    def can_resume(self, ctx: LaunchContext) -> bool:
        return True

    def prepare(self, ctx: LaunchContext) -> None:
        pass

    def receipt(self, obs: Observation, text: str) -> Callable[[], bool] | None:
        return None

    def deliver(self, obs: Observation, text: str) -> bool:
        return False

    def not_ready(self, obs: Observation, activity: Activity) -> str | None:
        from ao.activity import shows_input_box

        if obs.pane is not None and shows_input_box(obs.pane, self.screen) is False:
            return f"{self.screen.agent} does not show its input box (an unrecognised screen)"
        return None

    def activity(self, obs: Observation) -> Activity:
        from ao.activity import terminal_activity

        return terminal_activity(obs, self.screen)

    def interrupt_keys(self) -> list[str]:
        """Keys (tmux names) that stop the agent's current turn and keep the session: the `pause` action."""
        return ["Escape"]


def get(name: str, **options: Any) -> Agent:
    return plugins.load("agent", name, MODULES, **options)
