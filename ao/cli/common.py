"""Options and helpers shared by the command modules."""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path
from typing import Annotated, Any, Iterator, Optional

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


class _Quiet:
    def update(self, message: str) -> None:
        pass


@contextlib.contextmanager
def progress_console(title: str) -> Iterator[Any]:
    """A spinner on stderr showing the latest step of long work; nothing when stderr is not a terminal."""
    if not sys.stderr.isatty():
        yield _Quiet()
        return
    from rich.console import Console
    from rich.markup import escape

    console = Console(stderr=True)
    with console.status(escape(title)) as status:
        class _Steps:
            def update(self, message: str) -> None:
                console.print(f"[dim]{escape(message)}[/]")
                status.update(escape(message))

        yield _Steps()
