"""Options and helpers shared by the command modules."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer


ConfigOption = Annotated[
    Optional[Path],
    typer.Option("--config", "-c", help="Config file (default: $AO_CONFIG_PATH, ./agent-orchestrator.yaml "
                                        "or a parent's, then ~/.config/agent-orchestrator/config.yaml).",
                 dir_okay=False, show_default=False),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
ProjectOption = Annotated[Optional[str], typer.Option("--project", "-p", help="Only this project.")]


def load_config(ctx: typer.Context, explicit: Optional[Path]) -> Any:
    from ao import config

    chosen = explicit or (ctx.obj or {}).get("config")
    return config.load(chosen)


def print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, sort_keys=False, default=str)
    sys.stdout.write("\n")
