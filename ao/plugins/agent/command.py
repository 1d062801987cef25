"""The generic agent (SPEC 8): ``agentConfig.command`` is run as written, and the prompt is typed in once it
is up (``promptDelivery: send``, the default) or not at all (``none``). Tests and demos use it.

Also home to the small command-line helpers the specific agents share.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ao.activity import terminal_activity
from ao.errors import AoError
from ao.plugins.agent import Activity, LaunchContext, Observation

PERMISSIONS = ("default", "skip", "auto-edit", "plan")
DELIVERIES = ("send", "none")


def prompt_argument(prompt_file: Path) -> str:
    """``"$(cat '/path/prompt.md')"``: the launch script's shell reads the prompt file into one argument, so
    the prompt (issue text included) never becomes part of a command line ao writes."""
    return f'"$(cat {shlex.quote(str(prompt_file))})"'


def join(argv: Sequence[str]) -> str:
    return " ".join(shlex.quote(a) for a in argv)


def permission_flags(agent: str, settings: Mapping[str, Any], flags: Mapping[str, Sequence[str]]) -> list[str]:
    """The flags for ``agentConfig.permissions``; a mode the agent has no flag for adds nothing."""
    mode = settings.get("permissions") or "default"
    if mode not in PERMISSIONS:
        raise AoError(f"agentConfig.permissions '{mode}' is not one of {', '.join(PERMISSIONS)} (agent {agent})")
    return list(flags.get(mode, ()))


def model_flags(settings: Mapping[str, Any], flag: str = "--model") -> list[str]:
    model = settings.get("model")
    return [flag, str(model)] if model else []


@dataclass
class CommandAgent:
    name: str = "command"

    def prompt_delivery(self, settings: dict[str, Any]) -> str:
        delivery = settings.get("promptDelivery") or "send"
        if delivery not in DELIVERIES:
            raise AoError(f"agentConfig.promptDelivery '{delivery}' is not one of {', '.join(DELIVERIES)}")
        return delivery

    def launch_command(self, ctx: LaunchContext) -> str:
        command = ctx.settings.get("command")
        if not isinstance(command, str) or not command.strip():
            raise AoError("agent 'command' needs agentConfig.command: the shell command line that starts the agent")
        # The user's own shell line, run as written; resuming runs it again (it has no conversation to continue).
        return command

    def activity(self, obs: Observation) -> Activity:
        return terminal_activity(obs)


def plugin(**options: Any) -> CommandAgent:
    return CommandAgent(**options)
