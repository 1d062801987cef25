"""``ao session ls|kill|restore|attach``, ``ao attach``, ``ao send`` and ``ao cleanup``."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from ao.cli.common import ConfigOption, JsonOption, load_config, print_json
from ao.errors import AoError

app = typer.Typer(help="List, stop, restore and attach to sessions.", no_args_is_help=True)
SessionArg = Annotated[str, typer.Argument(metavar="SESSION", help="Session id, e.g. app-3.", show_default=False)]
ProjectArg = Annotated[Optional[str], typer.Argument(metavar="[PROJECT]", help="Only this project.",
                                                     show_default=False)]


def _manager(ctx: typer.Context, config: Any) -> Any:
    from ao.sessions import Sessions

    return Sessions(load_config(ctx, config))


def _attach(ctx: typer.Context, session: str, config: Any) -> None:
    argv = _manager(ctx, config).attach_argv(session)
    sys.stdout.flush()
    try:
        os.execvp(argv[0], argv)
    except OSError as exc:
        raise AoError(f"cannot run {argv[0]}: {exc.strerror or exc}") from None


@app.command("ls")
def ls(
    ctx: typer.Context,
    project: ProjectArg = None,
    all: Annotated[bool, typer.Option("--all", help="Include cleaned-up (archived) sessions.")] = False,
    json: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """The stored session records (no probing: `ao status` shows what is happening now)."""
    from ao.cli.status_cmd import print_rows

    manager = _manager(ctx, config)
    if project is not None:
        manager.config.project(project)
    sessions = manager.store.list(project, include_archived=all)
    rows = [{"session": s.id, "project": s.project, "status": s.status, "branch": s.branch, "issue": s.issue,
             "task": s.task, "agent": s.agent, "created_at": s.created_at, "workspace": s.workspace,
             "archived": all and manager.store.is_archived(s.id, s.project)} for s in sessions]
    if json:
        print_json(rows)
    else:
        print_rows(rows, ["session", "status", "branch", "issue", "agent", "workspace"], "sessions")


@app.command()
def kill(ctx: typer.Context, session: SessionArg, config: ConfigOption = None) -> None:
    """Stop a session on purpose (status killed). Its workspace stays until `ao cleanup`."""
    killed = _manager(ctx, config).kill(session)
    print(f"killed {killed.id}; its workspace stays at {killed.workspace} until `ao cleanup --confirm`")


@app.command()
def restore(ctx: typer.Context, session: SessionArg, config: ConfigOption = None) -> None:
    """Start the agent of a session that exited or was killed again, in its workspace (resuming if it can)."""
    restored = _manager(ctx, config).restore(session)
    print(f"restored {restored.id}; attach with: ao attach {restored.id}")


@app.command("attach")
def session_attach(ctx: typer.Context, session: SessionArg, config: ConfigOption = None) -> None:
    """Attach this terminal to a session (same as `ao attach`)."""
    _attach(ctx, session, config)


def register(root: typer.Typer) -> None:
    @root.command()
    def attach(ctx: typer.Context, session: SessionArg, config: ConfigOption = None) -> None:
        """Attach this terminal to a session's agent (detach from tmux with Ctrl-b d)."""
        _attach(ctx, session, config)

    @root.command()
    def send(
        ctx: typer.Context,
        session: SessionArg,
        message: Annotated[Optional[str], typer.Argument(help="The text to type in.", show_default=False)] = None,
        file: Annotated[Optional[Path], typer.Option("--file", "-f", help="Read the message from a file "
                        "('-' for stdin).", show_default=False)] = None,
        answer: Annotated[bool, typer.Option("--answer", help="The agent is showing a dialog or question and "
                          "this message answers it: type it in anyway.")] = False,
        wait: Annotated[float, typer.Option("--wait", metavar="SECONDS", help="How long to wait for a busy "
                        "agent to be ready for a message.")] = 30.0,
        config: ConfigOption = None,
    ) -> None:
        """Type a message into a session's agent and press Enter; fails (exit 1) if delivery is not confirmed.

        Nothing is typed into an agent that waits for a human (a permission dialog, a question, a login or
        trust screen, a screen ao does not recognise) or is blocked by a usage limit: ao send says what it
        waits for and exits 1. If your message is the answer, say so with --answer.

        Examples:
          ao send app-3 "Please rebase on main"
          ao send app-3 -f review-notes.md
          ao send app-3 --answer "2"
        """
        from ao.errors import UsageError
        from ao.plugins.runtime import AgentBusy, AgentWaiting

        if (message is None) == (file is None):
            raise UsageError("give the message as an argument or with --file, not both or neither")
        if file is not None:
            try:
                message = sys.stdin.read() if str(file) == "-" else file.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise AoError(f"{file}: cannot read the message: {getattr(exc, 'strerror', None) or exc}") from None
        assert message is not None
        try:
            _manager(ctx, config).send(session, message, answer=answer, wait=max(wait, 0.0))
        except AgentBusy as exc:
            raise AoError(f"{session} is not ready for a message: {exc.waiting_for}; nothing was typed "
                          f"(waited {wait:g} s; try again later, or raise --wait)") from None
        except AgentWaiting as exc:
            what = "is blocked" if exc.state == "blocked" else "is waiting for you"
            raise AoError(f"{session} {what}: {exc.waiting_for}\nnothing was typed. If your message answers "
                          f"it, run again with --answer (or attach: ao attach {session})") from None
        print(f"sent to {session}" + (" (as an answer)" if answer else ""))

    @root.command()
    def cleanup(
        ctx: typer.Context,
        project: ProjectArg = None,
        confirm: Annotated[bool, typer.Option("--confirm", help="Really remove them (otherwise only list).")] = False,
        dry_run: Annotated[bool, typer.Option("--dry-run", help="Only list what would be removed.")] = False,
        force: Annotated[bool, typer.Option("--force", help="Also remove ended sessions with uncommitted or "
                         "unpushed work.")] = False,
        json: JsonOption = False,
        config: ConfigOption = None,
    ) -> None:
        """Remove finished sessions: stop the terminal, delete the workspace, archive the record.

        Merged and done sessions go; killed, exited and closed ones go unless their workspace has work that
        was never pushed. Live sessions are never touched.
        """
        manager = _manager(ctx, config)
        plan = manager.cleanup_plan(project, force=force)
        act = confirm and not dry_run
        done = {item.session.id: item for item in (manager.cleanup(plan) if act else [])}
        rows = []
        for i in plan:
            result = done.get(i.session.id)
            failed = result is not None and result.action == "failed"
            rows.append({"session": i.session.id, "project": i.session.project,
                         "action": "failed" if failed else i.action,
                         "reason": result.reason if failed else i.reason,
                         "done": result is not None and not failed})
        if json:
            print_json(rows)
        else:
            verb = "removed" if act else "would remove"
            for row in rows:
                what = {"clean": verb, "keep": "keeping", "failed": "could not remove"}[row["action"]]
                print(f"{row['session']}: {what} ({row['reason']})")
            if not rows:
                print("nothing to clean up")
            elif not act:
                print("(nothing removed: add --confirm to remove them)")
        if any(row["action"] == "failed" for row in rows):
            raise typer.Exit(1)
