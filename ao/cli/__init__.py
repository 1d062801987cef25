"""The ``ao`` command line. Thin: each command group lives in its own module and calls the library.

Errors a user can cause (:class:`ao.errors.AoError`) are printed without a traceback; exit codes are 0 ok,
1 failure, 2 usage.
"""


import sys
from typing import Any, Optional

from ao import __version__


def _build_app() -> Any:
    import typer

    from ao.cli import (config_cmd, dashboard_cmd, demo_cmd, merge_cmd, notify_cmd, poll_cmd, queue_cmd, review_cmd,
                        rules_cmd, session_cmd, spawn_cmd, status_cmd)
    from ao.cli.common import ConfigOption

    app = typer.Typer(
        name="ao",
        help="Run many AI coding agents in parallel and carry each one from issue to merged PR.",
        no_args_is_help=True,
        add_completion=True,
        pretty_exceptions_enable=False,
        context_settings={"help_option_names": ["-h", "--help"]},
    )

    @app.callback()
    def root(
        ctx: typer.Context,
        config: ConfigOption = None,
        version: bool = typer.Option(False, "--version", help="Print the version and exit.", is_eager=True),
    ) -> None:
        if version:
            print(f"ao {__version__}")
            raise typer.Exit()
        ctx.obj = {"config": config}

    app.add_typer(config_cmd.app, name="config")
    app.add_typer(rules_cmd.app, name="rules")
    app.add_typer(notify_cmd.app, name="notify")
    app.add_typer(session_cmd.app, name="session")
    app.add_typer(queue_cmd.app, name="queue")
    spawn_cmd.register(app)
    status_cmd.register(app)
    session_cmd.register(app)
    review_cmd.register(app)
    merge_cmd.register(app)
    poll_cmd.register(app)
    demo_cmd.register(app)
    dashboard_cmd.register(app)
    return app


def _not_utf8(arg: str) -> bool:
    """Python decodes undecodable argv bytes to lone surrogates; nothing downstream could store them."""
    try:
        arg.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def main(argv: Optional[list[str]] = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if args == ["--version"]:  # the common case, answered before importing anything heavy
        print(f"ao {__version__}")
        return
    from ao.cli.common import install_safe_streams
    from ao.errors import AoError, UsageError

    install_safe_streams()  # nothing printed reaches the terminal with raw control characters
    bad = next((i for i, a in enumerate(args) if _not_utf8(a)), None)
    if bad is not None:
        print(f"argument {bad + 1} is not valid UTF-8", file=sys.stderr)
        sys.exit(UsageError.exit_code)
    app = _build_app()
    try:
        app(args=args, prog_name="ao", standalone_mode=True)
    except AoError as exc:
        print(str(exc), file=sys.stderr)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)

