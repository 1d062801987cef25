"""``ao spawn`` and ``ao batch-spawn``."""

from __future__ import annotations

from typing import Annotated, Any, Optional

import typer

from ao.cli.common import ConfigOption, JsonOption, load_config, print_json, progress_console
from ao.errors import AoError

AgentOption = Annotated[Optional[str], typer.Option("--agent", "-a", help="Agent plugin for this session "
                                                    "(claude-code, codex, aider, opencode, command).",
                                                    show_default=False)]


def _manager(ctx: typer.Context, config: Any, status: Any) -> Any:
    from ao.sessions import Sessions

    return Sessions(load_config(ctx, config), progress=lambda message: status.update(message))


def _summary(session: Any) -> dict[str, Any]:
    return {"session": session.id, "project": session.project, "status": session.status, "branch": session.branch,
            "issue": session.issue, "task": session.task, "workspace": session.workspace,
            "runtime": session.runtime, "handle": session.runtime_handle, "agent": session.agent}


def register(app: typer.Typer) -> None:
    @app.command()
    def spawn(
        ctx: typer.Context,
        project: Annotated[str, typer.Argument(help="Project id from the config.", show_default=False)],
        target: Annotated[Optional[str], typer.Argument(metavar="[ISSUE|TASK]", help="An issue id (e.g. 123, "
                          "ENG-42), or a free-form task in quotes.", show_default=False)] = None,
        extra: Annotated[Optional[str], typer.Argument(metavar="[PROMPT]", help="Extra instructions for the "
                         "agent, e.g. \"Step 1: add the schema\".", show_default=False)] = None,
        agent: AgentOption = None,
        branch: Annotated[Optional[str], typer.Option("--branch", "-b", help="Branch name (must not exist). "
                          "Default: feat/issue-<n>, or a slug of the task.", show_default=False)] = None,
        prompt: Annotated[Optional[str], typer.Option("--prompt", help="Extra instructions (same as PROMPT).",
                          show_default=False)] = None,
        json: JsonOption = False,
        config: ConfigOption = None,
    ) -> None:
        """Start one agent session: workspace on a new branch, terminal, agent with its prompt."""
        from ao.sessions import SpawnRequest

        if extra and prompt:
            raise AoError("give the extra instructions once: as PROMPT or with --prompt, not both")
        with progress_console(f"spawning a session of {project}") as status:
            session = _manager(ctx, config, status).spawn(SpawnRequest(
                project=project, target=target, prompt=extra or prompt, agent=agent, branch=branch))
        if json:
            print_json(_summary(session))
        else:
            what = f"issue {session.issue}" if session.issue else (f"task: {session.task}" if session.task else "no task")
            print(f"spawned {session.id} ({what}) on branch {session.branch}\n"
                  f"  workspace: {session.workspace}\n  attach:    ao attach {session.id}")

    @app.command("batch-spawn")
    def batch_spawn(
        ctx: typer.Context,
        project: Annotated[str, typer.Argument(help="Project id from the config.", show_default=False)],
        issues: Annotated[list[str], typer.Argument(metavar="ISSUE...", help="Issue ids.", show_default=False)],
        agent: AgentOption = None,
        json: JsonOption = False,
        config: ConfigOption = None,
    ) -> None:
        """Spawn one session per issue, skipping issues that already have a live session (exit 1 if any failed)."""
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
                if key in busy or issue in busy:
                    rows.append({"issue": issue, "result": "skipped", "session": busy.get(key) or busy[issue],
                                 "detail": "already has a live session"})
                    continue
                try:
                    session = manager.spawn(SpawnRequest(project=project, target=issue, agent=agent))
                except AoError as exc:
                    rows.append({"issue": issue, "result": "failed", "session": None, "detail": str(exc)})
                    continue
                busy[session.issue] = session.id
                rows.append({"issue": issue, "result": "spawned", "session": session.id, "detail": session.branch})
        if json:
            print_json(rows)
        else:
            for row in rows:
                print(f"{row['issue']}: {row['result']} {row['session'] or ''} {row['detail']}".rstrip())
        if any(row["result"] == "failed" for row in rows):
            raise typer.Exit(1)
