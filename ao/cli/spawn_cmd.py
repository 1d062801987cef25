"""``ao spawn`` and ``ao batch-spawn``."""

from __future__ import annotations

from typing import Annotated, Any, Optional

import typer

from ao.cli.common import (ConfigOption, JsonOption, ProjectRequired, complete_issue, examples, load_config, print_json,
                           progress_console)
from ao.cli.output import Column, listing
from ao.errors import AoError

AgentOption = Annotated[Optional[str], typer.Option("--agent", "-a", metavar="AGENT", help="Agent plugin for this session "
                                                    "(claude-code, codex, aider, opencode, command).",
                                                    show_default=False)]


ForceOption = Annotated[bool, typer.Option("--force", help="Spawn even on a closed issue, or one that already has "
                                           "a live session.")]


def _manager(ctx: typer.Context, config: Any, status: Any) -> Any:
    from ao import config as config_mod
    from ao.sessions import Sessions

    cfg = load_config(ctx, config)
    config_mod.claim_data_dir(cfg)
    return Sessions(cfg, progress=lambda message: status.update(message))


def _summary(session: Any) -> dict[str, Any]:
    from ao.cli.output import iso

    return {"session": session.id, "project": session.project, "status": session.status, "branch": session.branch,
            "issue": session.issue, "task": session.task, "workspace": session.workspace,
            "runtime": session.runtime, "handle": session.runtime_handle, "agent": session.agent,
            "created_at": iso(session.created_at)}


def register(app: typer.Typer) -> None:
    @app.command(epilog=examples(
        ("ao spawn my-app 123", "an agent on issue 123 (local: issues/123.md), branch feat/issue-123"),
        ("ao spawn my-app 123 \"Step 2: the API endpoints\"", "with extra instructions"),
        ("ao spawn my-app \"Explore performance optimisation\"", "a free-form task (ends done, not merged)"),
        ("ao spawn my-app 123 --agent codex --force", "another agent, on an issue that is closed or busy"),
    ))
    def spawn(
        ctx: typer.Context,
        project: ProjectRequired,
        target: Annotated[Optional[str], typer.Argument(metavar="ISSUE|TASK", help="An issue id (e.g. 123, "
                          "ENG-42), or a free-form task in quotes.", show_default=False,
                          autocompletion=complete_issue)] = None,
        extra: Annotated[Optional[str], typer.Argument(metavar="PROMPT", help="Extra instructions for the "
                         "agent, e.g. \"Step 1: add the schema\".", show_default=False)] = None,
        agent: AgentOption = None,
        branch: Annotated[Optional[str], typer.Option("--branch", "-b", metavar="BRANCH", help="Branch name (must not exist). "
                          "Default: feat/issue-<n>, or a slug of the task.", show_default=False)] = None,
        prompt: Annotated[Optional[str], typer.Option("--prompt", metavar="TEXT", help="Extra instructions "
                          "(same as PROMPT).", show_default=False)] = None,
        force: ForceOption = False,
        json: JsonOption = False,
        config: ConfigOption = None,
    ) -> None:
        """Start one agent session: workspace on a new branch, terminal, agent with its prompt."""
        from ao.issues import check_spawn
        from ao.sessions import SpawnRequest

        if extra and prompt:
            raise AoError("give the extra instructions once: as PROMPT or with --prompt, not both")
        with progress_console(f"spawning a session of {project}") as status:
            manager = _manager(ctx, config, status)
            check = check_spawn(manager, project, target)
            if check is not None and check.reasons and not force:
                raise check.error()
            session = manager.spawn(SpawnRequest(
                project=project, target=target, prompt=extra or prompt, agent=agent, branch=branch))
        if json:
            print_json(_summary(session))
        else:
            what = (f"issue {session.issue}" if session.issue
                    else f"task: {session.task}" if session.task else "no task")
            print(f"spawned {session.id} ({what}) on branch {session.branch}\n"
                  f"  workspace: {session.workspace}\n  attach:    ao attach {session.id}")

    @app.command("batch-spawn", epilog=examples(
        ("ao batch-spawn my-app 120 121 122", "one agent per issue, in parallel"),
        ("ao batch-spawn my-app $(ao issue ls my-app | cut -f1)", "every open local issue"),
    ))
    def batch_spawn(
        ctx: typer.Context,
        project: ProjectRequired,
        issues: Annotated[list[str], typer.Argument(metavar="ISSUE...", help="Issue ids.", show_default=False,
                                                    autocompletion=complete_issue)],
        agent: AgentOption = None,
        force: ForceOption = False,
        json: JsonOption = False,
        config: ConfigOption = None,
    ) -> None:
        """Spawn one session per issue, skipping closed issues and issues that already have a live session
        (unless --force). Exit 1 if any failed."""
        from ao.issues import check_spawn
        from ao.sessions import SpawnRequest

        rows: list[dict[str, Any]] = []
        with progress_console(f"spawning {len(issues)} sessions of {project}") as status:
            manager = _manager(ctx, config, status)
            manager.config.project(project)  # an unknown project fails once, not once per issue
            busy = {s.issue: s.id for s in manager.store.list(project) if not s.terminal and s.issue}
            tracker = manager.tracker(manager.config.project(project))
            for issue in dict.fromkeys(issues):
                if not tracker.looks_like_id(issue):
                    rows.append({"issue": issue, "result": "failed", "session": None,
                                 "detail": "not an issue id (batch-spawn takes issues; use ao spawn for a task)"})
                    continue
                key = issue.lstrip("#")
                if (key in busy or issue in busy) and not force:
                    rows.append({"issue": issue, "result": "skipped", "session": busy.get(key) or busy[issue],
                                 "detail": "already has a live session (--force spawns anyway)"})
                    continue
                try:
                    check = check_spawn(manager, project, issue)
                    if check is not None and "is closed" in check.reasons and not force:
                        rows.append({"issue": issue, "result": "skipped", "session": None,
                                     "detail": "the issue is closed (--force spawns anyway)"})
                        continue
                    session = manager.spawn(SpawnRequest(project=project, target=issue, agent=agent))
                except AoError as exc:
                    rows.append({"issue": issue, "result": "failed", "session": None, "detail": str(exc)})
                    continue
                busy[session.issue] = session.id
                rows.append({"issue": issue, "result": "spawned", "session": session.id, "detail": session.branch})
        listing(rows, [Column("issue"), Column("result", style=lambda r: "bold red" if r["result"] == "failed"
                                              else None), Column("session"), Column("detail")],
                title=f"batch-spawn {project}", json=json)
        if any(row["result"] == "failed" for row in rows):
            raise typer.Exit(1)
