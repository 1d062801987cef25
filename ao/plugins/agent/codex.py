"""OpenAI Codex CLI (``codex``). Activity comes from the terminal: its TUI redraws an elapsed-time counter
while it works and shows an approval dialog when it needs one, both of which the generic rules read."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ao.activity import terminal_activity
from ao.plugins.agent import Activity, LaunchContext, Observation
from ao.plugins.agent.command import join, model_flags, permission_flags, prompt_argument

PERMISSION_FLAGS = {"skip": ["--dangerously-bypass-approvals-and-sandbox"], "auto-edit": ["--full-auto"]}


@dataclass
class Codex:
    name: str = "codex"

    def prompt_delivery(self, settings: dict[str, Any]) -> str:
        return "argument"

    def launch_command(self, ctx: LaunchContext) -> str:
        flags = permission_flags(self.name, ctx.settings, PERMISSION_FLAGS) + model_flags(ctx.settings, "-m")
        if ctx.resume:
            # The resumed conversation keeps its history, but approvals and model are per process: pass them again.
            return join(["codex", "resume", "--last", *flags])
        return f"{join(['codex', *flags])} {prompt_argument(ctx.prompt_file)}"

    def interrupt_keys(self) -> list[str]:
        return ["Escape"]  # Esc interrupts Codex's turn ("esc to interrupt")

    def activity(self, obs: Observation) -> Activity:
        return terminal_activity(obs)


def plugin(**options: Any) -> Codex:
    return Codex(**options)
