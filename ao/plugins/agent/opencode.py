"""opencode (``opencode``): the prompt goes in with ``--prompt``; permissions live in opencode's own config,
so ``agentConfig.permissions`` adds no flag. Activity comes from the terminal."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ao.activity import terminal_activity
from ao.plugins.agent import Activity, LaunchContext, Observation
from ao.plugins.agent.command import join, model_flags, permission_flags, prompt_argument


@dataclass
class OpenCode:
    name: str = "opencode"

    def prompt_delivery(self, settings: dict[str, Any]) -> str:
        return "argument"

    def launch_command(self, ctx: LaunchContext) -> str:
        permission_flags(self.name, ctx.settings, {})  # still reject a misspelt mode
        argv = ["opencode", *model_flags(ctx.settings)]
        if ctx.resume:
            return join([*argv, "--continue"])
        return f"{join(argv)} --prompt {prompt_argument(ctx.prompt_file)}"

    def interrupt_keys(self) -> list[str]:
        return ["Escape", "Escape"]  # opencode asks for Esc twice ("esc again to interrupt")

    def activity(self, obs: Observation) -> Activity:
        return terminal_activity(obs)


def plugin(**options: Any) -> OpenCode:
    return OpenCode(**options)
