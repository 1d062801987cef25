"""``ao session ls|kill|restore|attach|adopt``, ``ao attach``, ``ao send`` and ``ao cleanup``."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from ao.cli.common import ConfigOption, JsonOption, ProjectArg, SessionArg, examples, load_config, read_text_option
from ao.cli.output import Column, listing, warn
from ao.errors import AoError

app = typer.Typer(help="List, stop, restore, adopt and attach to sessions.", no_args_is_help=True)


def _manager(ctx: typer.Context, config: Any) -> Any:
    from ao.sessions import Sessions

    return Sessions(load_config(ctx, config))


def by_id(manager: Any, session_id: str, error: Exception) -> Exception:
    """``error`` with the session's runtime handle (``ao-1a2b3c-app-3``) replaced by its id (``app-3``):
    messages name sessions the way the user does."""
    from ao.store import valid_name

    found = manager.store.get(session_id) if valid_name(session_id) else None
    handle = found.runtime_handle if found else ""
    text = str(error)
    if handle and handle in text:
        text = text.replace(handle, session_id)
    return type(error)(text) if isinstance(error, AoError) and text != str(error) else error


def _attach(ctx: typer.Context, session: str, config: Any) -> None:
    manager = _manager(ctx, config)
    argv = manager.attach_argv(session)
    sys.stdout.flush()
    try:
        os.execvp(argv[0], argv)
    except OSError as exc:
        raise AoError(f"cannot run {argv[0]}: {exc.strerror or exc}") from None


LS_COLUMNS = [
    Column("session"), Column("project"),
    Column("status", style=lambda r: _status_style(r["status"])),
    Column("activity"), Column("branch"), Column("issue"), Column("agent"), Column("workspace"),
]
PROBLEM_COLUMNS = [Column("session"), Column("project"), Column("kind"), Column("terminal"), Column("workspace"),
                   Column("state"), Column("file")]


def _status_style(status: str) -> Optional[str]:
    from ao.overview import status_style

    return status_style(status)


@app.command("ls", epilog=examples(
    ("ao session ls", "live sessions"),
    ("ao session ls my-app --all", "with cleaned-up (archived) ones"),
    ("ao session ls --problems", "records set aside as corrupt, and what of them still runs"),
    ("ao session ls | cut -f1", "piped: one tab-separated line per session"),
))
def ls(
    ctx: typer.Context,
    project: ProjectArg = None,
    all: Annotated[bool, typer.Option("--all", help="Include cleaned-up (archived) sessions.")] = False,
    problems: Annotated[bool, typer.Option("--problems", help="List records set aside as corrupt, with their "
                        "terminal and workspace (adopt or kill them).")] = False,
    json: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """The session records, with the status the poller last gave them (`ao status` adds PR, CI and review)."""
    from ao import overview, quarantine

    manager = _manager(ctx, config)
    cfg = manager.config
    if project is not None:
        cfg.project(project)
    if problems:
        manager.store.list()  # sets aside a corrupt file nothing has read yet, so that it is listed too
        rows = [o.row() for o in quarantine.orphans(manager) if project is None or o.record.project == project]
        listing(rows, PROBLEM_COLUMNS, title="records set aside as corrupt", json=json,
                empty="no corrupt records: nothing is hidden")
        return
    now = time.time()
    ov = overview.overview(cfg, project, include_archived=all, store=manager.store)
    for warning in ov.warnings():
        warn(warning)
    listing([v.row(now) for v in ov.sessions], LS_COLUMNS, title="sessions", json=json,
            empty="no sessions (start one with: ao spawn PROJECT ISSUE)")


@app.command(epilog=examples(("ao session kill app-3", ""),
                             ("ao session kill app-3 && ao cleanup --confirm", "stop it and remove its worktree")))
def kill(ctx: typer.Context, session: SessionArg, config: ConfigOption = None) -> None:
    """Stop a session on purpose (status killed). Its workspace stays until `ao cleanup`.

    A session whose record was set aside as corrupt (`ao session ls --problems`) is adopted first, then
    stopped."""
    from ao import quarantine

    manager = _manager(ctx, config)
    from ao.store import valid_name

    if valid_name(session) and manager.store.get(session) is None and any(
            o.record.session == session for o in quarantine.orphans(manager)):
        quarantine.adopt(manager, session)
    try:
        killed = manager.kill(session)
    except AoError as exc:
        raise by_id(manager, session, exc) from None
    print(f"killed {killed.id}; its workspace stays at {killed.workspace or '(none)'} until "
          "`ao cleanup --confirm`")


@app.command(epilog=examples(("ao session adopt app-3", "after `ao session ls --problems` lists it")))
def adopt(ctx: typer.Context, session: SessionArg, config: ConfigOption = None) -> None:
    """Give a session whose record was set aside as corrupt a record again, rebuilt from its workspace and
    terminal, so that ao watches it again (the broken file moves to <dataDir>/quarantine/)."""
    from ao import quarantine

    adopted = quarantine.adopt(_manager(ctx, config), session)
    print(f"adopted {adopted.id} ({adopted.status}, branch {adopted.branch or '-'}); see it with `ao status`")


@app.command(epilog=examples(("ao session restore app-3", "")))
def restore(ctx: typer.Context, session: SessionArg, config: ConfigOption = None) -> None:
    """Start the agent of a session that exited or was killed again, in its workspace (resuming if it can)."""
    restored = _manager(ctx, config).restore(session)
    print(f"restored {restored.id}; attach with: ao attach {restored.id}")


@app.command("attach", epilog=examples(("ao session attach app-3", "detach again with Ctrl-b d")))
def session_attach(ctx: typer.Context, session: SessionArg, config: ConfigOption = None) -> None:
    """Attach this terminal to a session (same as `ao attach`)."""
    _attach(ctx, session, config)


def register(root: typer.Typer) -> None:
    @root.command(epilog=examples(("ao attach app-3", "detach again with Ctrl-b d")))
    def attach(ctx: typer.Context, session: SessionArg, config: ConfigOption = None) -> None:
        """Attach this terminal to a session's agent (detach from tmux with Ctrl-b d)."""
        _attach(ctx, session, config)

    @root.command(epilog=examples(
        ("ao send app-3 \"Please add a test for the empty case\"", ""),
        ("ao send app-3 -f notes.md", "a long or multi-line message from a file"),
        ("git diff | ao send app-3 -f -", "from stdin"),
        ("ao send app-3 --answer \"2\"", "answer the dialog or question the agent shows"),
    ))
    def send(
        ctx: typer.Context,
        session: SessionArg,
        message: Annotated[Optional[str], typer.Argument(metavar="MESSAGE", help="The text to type in.",
                                                         show_default=False)] = None,
        file: Annotated[Optional[Path], typer.Option("--file", "-f", metavar="FILE", help="Read the message "
                        "from a file ('-' for stdin).", show_default=False)] = None,
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
        """
        from ao.errors import UsageError
        from ao.plugins.runtime import AgentBusy, AgentWaiting

        if (message is None) == (file is None):
            raise UsageError("give the message as an argument or with --file, not both or neither")
        if file is not None:
            message = read_text_option(file, "the message")
        assert message is not None
        manager = _manager(ctx, config)
        try:
            manager.send(session, message, answer=answer, wait=max(wait, 0.0))
        except AgentBusy as exc:
            raise AoError(f"{session} is not ready for a message: {exc.waiting_for}; nothing was typed "
                          f"(waited {wait:g} s; try again later, or raise --wait)") from None
        except AgentWaiting as exc:
            what = "is blocked" if exc.state == "blocked" else "is waiting for you"
            raise AoError(f"{session} {what}: {exc.waiting_for}\nnothing was typed. If your message answers "
                          f"it, run again with --answer (or attach: ao attach {session})") from None
        except AoError as exc:
            raise by_id(manager, session, exc) from None
        print(f"sent to {session}" + (" (as an answer)" if answer else ""))

    @root.command(epilog=examples(
        ("ao cleanup", "what would be removed (nothing is removed without --confirm)"),
        ("ao cleanup my-app --confirm", "remove the finished sessions of one project"),
        ("ao cleanup --confirm --force", "also those with unpushed work"),
    ))
    def cleanup(
        ctx: typer.Context,
        project: ProjectArg = None,
        confirm: Annotated[bool, typer.Option("--confirm", help="Really remove them (otherwise only list).")] = False,
        dry_run: Annotated[bool, typer.Option("--dry-run", help="Only list what would be removed, even with "
                           "--confirm.")] = False,
        force: Annotated[bool, typer.Option("--force", help="Also remove ended sessions with uncommitted or "
                         "unpushed work.")] = False,
        json: JsonOption = False,
        config: ConfigOption = None,
    ) -> None:
        """Remove finished sessions: stop the terminal, delete the workspace, archive the record.

        Merged and done sessions go; killed, exited and closed ones go unless their workspace has work that
        was never pushed. Live sessions are never touched.
        """
        from ao import config as config_mod

        manager = _manager(ctx, config)
        plan = manager.cleanup_plan(project, force=force)
        act = confirm and not dry_run
        if act:
            config_mod.claim_data_dir(manager.config)
        done = {item.session.id: item for item in (manager.cleanup(plan) if act else [])}
        rows = []
        for i in plan:
            result = done.get(i.session.id)
            failed = result is not None and result.action == "failed"
            action = "failed" if failed else i.action
            rows.append({"session": i.session.id, "project": i.session.project, "action": action,
                         "result": {"clean": "removed" if act else "would remove", "keep": "kept",
                                    "failed": "could not remove"}[action],
                         "reason": result.reason if failed else i.reason,
                         "done": result is not None and not failed})
        listing(rows, [Column("session"), Column("result", style=lambda r: "red" if r["action"] == "failed"
                                                 else None), Column("reason")],
                title="cleanup", json=json, empty="nothing to clean up")
        if rows and not act and not json:
            print("(nothing removed: " + ("--dry-run was given" if dry_run and confirm else
                                          "add --confirm to remove them") + ")", file=sys.stderr)
        if any(row["action"] == "failed" for row in rows):
            raise typer.Exit(1)
