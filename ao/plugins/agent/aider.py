"""aider (``aider``). The prompt is typed in once it is up: ``--message`` would make aider exit after one
reply. Activity: the terminal, plus the chat history file aider appends to as the conversation goes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ao.activity import combine, terminal_activity
from ao.plugins.agent import Activity, LaunchContext, Observation
from ao.plugins.agent.command import join, model_flags, permission_flags

HISTORY = ".aider.chat.history.md"
PERMISSION_FLAGS = {"skip": ["--yes-always"]}  # aider edits files without asking anyway; it has no plan mode


@dataclass
class Aider:
    name: str = "aider"

    def prompt_delivery(self, settings: dict[str, Any]) -> str:
        return "send"

    def launch_command(self, ctx: LaunchContext) -> str:
        argv = ["aider", *permission_flags(self.name, ctx.settings, PERMISSION_FLAGS), *model_flags(ctx.settings)]
        if ctx.resume:
            argv.append("--restore-chat-history")
        return join(argv)

    def interrupt_keys(self) -> list[str]:
        return ["C-c"]  # Ctrl-C stops aider's reply; a second one would exit it

    def activity(self, obs: Observation) -> Activity:
        base = terminal_activity(obs)
        try:
            written = (obs.workspace / HISTORY).stat().st_mtime
        except OSError:
            return base
        return combine(obs, base, written, "chat history updated")


def plugin(**options: Any) -> Aider:
    return Aider(**options)
