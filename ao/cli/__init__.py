"""The ``ao`` command line. Thin: each command group lives in its own module and calls the library.

Errors a user can cause (:class:`ao.errors.AoError`) are printed without a traceback; exit codes are 0 ok,
1 failure, 2 usage, 130 when interrupted (Ctrl-C), for every command.
"""


import os
import sys
from typing import Any, Optional

from ao import __version__

HELP = """Run many AI coding agents in parallel and carry each one from issue to merged PR.

Start here: `ao config init` in your repository, `ao doctor`, then `ao spawn PROJECT ISSUE` and `ao start`."""


# Top-level command -> the module that defines it (a group's module has ``app``; others ``register(app)``).
# Only the invoked command's module is registered, which keeps typer's start-up work to one command; help,
# completion and unknown names build everything. A new command group adds its line here.
COMMANDS = {
    "config": "config_cmd", "rules": "rules_cmd", "notify": "notify_cmd", "session": "session_cmd",
    "issue": "issue_cmd", "spawn": "spawn_cmd", "batch-spawn": "spawn_cmd", "status": "status_cmd",
    "attach": "session_cmd", "send": "session_cmd", "cleanup": "session_cmd", "review": "review_cmd",
    "poll": "poll_cmd", "start": "poll_cmd", "stop": "poll_cmd", "events": "poll_cmd", "logs": "logs_cmd",
    "doctor": "doctor_cmd", "demo": "demo_cmd", "merge": "merge_cmd", "dashboard": "dashboard_cmd",
    "queue": "queue_cmd",
}
GROUPS = ("config", "rules", "notify", "session", "issue", "queue")


def _build_app(only: Optional[str] = None) -> Any:
    import importlib

    import typer

    from ao.cli.common import ConfigOption

    app = typer.Typer(
        name="ao",
        help=HELP,
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

    wanted = [COMMANDS[only]] if only in COMMANDS else list(dict.fromkeys(COMMANDS.values()))
    for name in GROUPS:
        if COMMANDS[name] in wanted:
            app.add_typer(importlib.import_module(f"ao.cli.{COMMANDS[name]}").app, name=name)
    for module in wanted:
        registered = importlib.import_module(f"ao.cli.{module}")
        if hasattr(registered, "register"):
            registered.register(app)
    return app


def _command_of(args: list[str]) -> Optional[str]:
    """The top-level command named in ``args`` (past the global options), None when there is none."""
    i = 0
    while i < len(args):
        arg = args[i]
        if arg in ("--config", "-c"):
            i += 2
        elif arg.startswith("--config=") or (arg.startswith("-c") and len(arg) > 2):
            i += 1
        elif arg.startswith("-"):
            return None  # --help, --version, completion options: the whole app
        else:
            return arg
    return None


def _tidy_help(command: Any) -> None:
    """Help as people read it, for every command (those other modules add included): flags take no value,
    so they show no type (typer prints ``<bool>``); a docstring's paragraphs are reflowed (typer keeps the
    line breaks of the source code in all but the first one)."""
    import inspect
    import re

    def no_type(param: Any) -> None:
        if getattr(param, "param_type_name", "") == "argument":
            param.display_type_rich = lambda ctx: None  # the argument's name says it all: no "<str>"
            if hasattr(param, "display_name_raw"):  # SESSION, not {SESSION}; [FILE...], not [FILE...]...
                name = param.display_name_raw
                name += "..." if param.nargs != 1 and not name.endswith("...") else ""
                name = name if param.required else f"[{name}]"
                param._usage_display_name = lambda name=name: name
        elif (getattr(param, "is_flag", False) or getattr(param, "count", False)) and param.metavar is None:
            param.metavar = ""

    for param in getattr(command, "params", []):
        no_type(param)
    if hasattr(command, "get_help_option"):  # --help is made per context, not kept in params
        made = command.get_help_option

        def get_help_option(ctx: Any, made: Any = made) -> Any:
            option = made(ctx)
            if option is not None:
                no_type(option)
            return option

        command.get_help_option = get_help_option
    if getattr(command, "help", None):
        paragraphs = inspect.cleandoc(command.help).split("\n\n")
        command.help = "\n\n".join(re.sub(r"\s*\n\s*", " ", p.strip()) for p in paragraphs)
    for sub in getattr(command, "commands", {}).values():
        _tidy_help(sub)


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
    from ao.errors import UsageError

    install_safe_streams()  # nothing printed reaches the terminal with raw control characters
    bad = next((i for i, a in enumerate(args) if _not_utf8(a)), None)
    if bad is not None:
        print(f"argument {bad + 1} is not valid UTF-8", file=sys.stderr)
        sys.exit(UsageError.exit_code)
    try:
        import typer.main

        from ao.errors import AoError

        completing = any(k.endswith("_COMPLETE") for k in os.environ)
        command = typer.main.get_command(_build_app(None if completing else _command_of(args)))
        _tidy_help(command)
        try:
            command.main(args=args, prog_name="ao", standalone_mode=True)
        except AoError as exc:
            print(str(exc), file=sys.stderr)
            sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        # click turns Ctrl-C into Abort (exit 1) inside main(); anything that reaches here is an interrupt too
        print("", file=sys.stderr)
        sys.exit(130)
