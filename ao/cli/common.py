"""Options, arguments and helpers shared by the command modules.

For a new command: take ``config: ConfigOption = None`` and ``json: JsonOption = False``, print listings with
:func:`ao.cli.output.listing`, and give it examples::

    @app.command(epilog=examples(("ao queue ls", "what waits to be admitted"), ("ao queue ls --json", "")))
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Annotated, Any, Iterator, Optional

import typer

from ao.cli.output import print_json  # noqa: F401 - re-exported: command modules import it from here


# ------------------------------------------------------------------------------------------- completion

def _quiet_config(ctx: Any) -> Any:
    """The config for shell completion, or None: completion must never print an error or a traceback."""
    from ao import config

    chosen, node = None, ctx
    while node is not None and not chosen:
        chosen = (node.params or {}).get("config") or (node.obj or {}).get("config")
        node = node.parent
    try:
        return config.load(chosen)
    except Exception:  # noqa: BLE001 - any failure just means no suggestions
        return None


def complete_project(ctx: typer.Context, incomplete: str) -> list[str]:
    cfg = _quiet_config(ctx)
    return [p for p in (cfg.projects if cfg else []) if p.startswith(incomplete)]


def complete_session(ctx: typer.Context, incomplete: str) -> list[str]:
    cfg = _quiet_config(ctx)
    if cfg is None:
        return []
    from ao.store import SessionStore

    with contextlib.suppress(Exception):
        return [s.id for s in SessionStore(cfg.data_dir, log=False).list() if s.id.startswith(incomplete)]
    return []


def complete_issue(ctx: typer.Context, incomplete: str) -> list[str]:
    """Open local issues of the project named on the command line (or of every local-tracker project)."""
    cfg = _quiet_config(ctx)
    if cfg is None:
        return []
    wanted = (ctx.params or {}).get("project")
    out: list[str] = []
    with contextlib.suppress(Exception):
        from ao.plugins.tracker.local import plugin

        for project in cfg.projects.values():
            if (wanted and project.id != wanted) or (project.tracker or {}).get("plugin", "local") != "local":
                continue
            tracker = plugin(project_path=project.path, settings=project.tracker)
            out += [i.id for i in tracker.list("open") if i.id.startswith(incomplete)]
    return list(dict.fromkeys(out))


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
        if not isinstance(text, str):
            # as a real text stream does: click probes streams with write(b"") to find a binary one, and
            # would otherwise print bytes' repr ("b'\\n'") through this one
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
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


# ------------------------------------------------------------------------------------------- options

ConfigOption = Annotated[
    Optional[Path],
    typer.Option("--config", "-c", help="Config file (default: $AO_CONFIG_PATH, ./agent-orchestrator.yaml "
                                        "or a parent's, then ~/.config/agent-orchestrator/config.yaml).",
                 dir_okay=False, show_default=False, metavar="FILE"),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON (times in ISO 8601 UTC).")]
ProjectOption = Annotated[Optional[str], typer.Option("--project", "-p", help="Only this project.",
                                                      metavar="PROJECT", autocompletion=complete_project)]
ProjectArg = Annotated[Optional[str], typer.Argument(metavar="PROJECT", help="Only this project.",
                                                     show_default=False, autocompletion=complete_project)]
ProjectRequired = Annotated[str, typer.Argument(metavar="PROJECT", help="Project id from the config.",
                                                show_default=False, autocompletion=complete_project)]
SessionArg = Annotated[str, typer.Argument(metavar="SESSION", help="Session id, e.g. app-3.", show_default=False,
                                           autocompletion=complete_session)]


def examples(*items: tuple[str, str]) -> str:
    """An ``Examples:`` section for a command's help: (command line, what it does) pairs."""
    lines = ["[b]Examples[/b]"]
    for command, what in items:
        lines.append(f"  [cyan]$ {command}[/cyan]" + (f"   [dim]# {what}[/dim]" if what else ""))
    return "\n".join(lines)


def read_text_option(file: Path, what: str) -> str:
    """The text of a ``--file`` option: a UTF-8 file, or stdin for ``-``; an AoError naming the file otherwise."""
    from ao.errors import AoError

    try:
        return sys.stdin.read() if str(file) == "-" else file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise AoError(f"{file}: cannot read {what}: {getattr(exc, 'strerror', None) or exc}") from None


def load_config(ctx: typer.Context, explicit: Optional[Path]) -> Any:
    from ao import config

    chosen = explicit or (ctx.obj or {}).get("config")
    return config.load(chosen)


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
