"""Options and helpers shared by the command modules."""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path
from typing import Annotated, Any, Iterator, Optional

import typer


# ------------------------------------------------------------------------------ safe terminal output

_CONTROL = None  # compiled on first use


def safe_text(text: Any) -> str:
    """``text`` with every control character but newline and tab shown as ``\\xNN``: no escape sequence that
    came from a config key, a review comment or an issue can reach the terminal raw."""
    global _CONTROL
    if _CONTROL is None:
        import re

        _CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", str(text))


def cell(text: Any) -> str:
    """A value for a rich table: control characters made visible, rich markup escaped."""
    from rich.markup import escape

    return escape(safe_text(text))


class SafeStream:
    """A text stream that makes control characters visible (:func:`safe_text`) before they reach the terminal.
    ``ao`` installs it as stdout and stderr; rich writes its own styling to the raw stream (:func:`raw`),
    with every value passed through :func:`cell`."""

    def __init__(self, stream: Any) -> None:
        self.raw = stream

    def write(self, text: str) -> int:
        self.raw.write(safe_text(text))
        return len(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.raw, name)


def install_safe_streams() -> None:
    if not isinstance(sys.stdout, SafeStream):
        sys.stdout = SafeStream(sys.stdout)  # type: ignore[assignment]
    if not isinstance(sys.stderr, SafeStream):
        sys.stderr = SafeStream(sys.stderr)  # type: ignore[assignment]


def raw(stderr: bool = False) -> Any:
    stream = sys.stderr if stderr else sys.stdout
    return stream.raw if isinstance(stream, SafeStream) else stream


def console(stderr: bool = False) -> Any:
    """A rich console on the raw stream (its own styling intact); pass every value through :func:`cell`."""
    from rich.console import Console

    return Console(file=raw(stderr))


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
    out = console(stderr=True)
    with out.status(cell(title)) as status:
        class _Steps:
            def update(self, message: str) -> None:
                out.print(f"[dim]{cell(message)}[/]")
                status.update(cell(message))

        yield _Steps()
