"""``ao issue new|ls|show|close``: the local tracker's issues, which are markdown files in the project
(``issues/<id>.md`` by default; closed ones move to ``issues/closed/``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from ao.cli.common import (ConfigOption, JsonOption, ProjectOption, complete_issue, examples, load_config, print_json,
                           read_text_option)
from ao.cli.output import Column, listing
from ao.errors import UsageError

app = typer.Typer(help="Create, list, show and close the local tracker's issues (markdown files in the "
                       "project's issues/ folder).", no_args_is_help=True)
IssueArg = Annotated[str, typer.Argument(metavar="ISSUE", help="Issue id: the file name without .md, e.g. 3.",
                                         show_default=False, autocompletion=complete_issue)]


def _tracker(ctx: typer.Context, config: Any, project: Optional[str]) -> tuple[Any, Any, Any]:
    from ao.issues import local_tracker

    cfg = load_config(ctx, config)
    chosen = cfg.project(project)
    return cfg, chosen, local_tracker(cfg, chosen)


def _row(issue: Any, tracker: Any, live: dict[str, list[str]]) -> dict[str, Any]:
    folder = tracker.folder / ("closed" if issue.state == "closed" else "")
    return {"id": issue.id, "state": issue.state, "title": issue.title,
            "sessions": live.get(issue.id, []), "file": str(folder / f"{issue.id}.md")}


def _live_sessions(cfg: Any, project: str) -> dict[str, list[str]]:
    from ao.store import SessionStore

    out: dict[str, list[str]] = {}
    for s in SessionStore(cfg.data_dir, log=False).list(project):
        if s.issue and not s.terminal:
            out.setdefault(s.issue.lstrip("#"), []).append(s.id)
    return out


@app.command(epilog=examples(
    ("ao issue new \"Add a health endpoint\"", "writes issues/<n>.md and prints its id"),
    ("ao issue new \"Fix the login\" -b \"Users cannot log in with SSO.\" -p my-app", ""),
    ("ao issue new \"Refactor\" -f notes.md", "the body from a file ('-' for stdin)"),
    ("ao spawn my-app $(ao issue new \"Add a health endpoint\" -q)", "create and start an agent on it"),
))
def new(
    ctx: typer.Context,
    title: Annotated[str, typer.Argument(metavar="TITLE", help="The issue's title (its first heading).",
                                         show_default=False)],
    body: Annotated[Optional[str], typer.Option("--body", "-b", metavar="TEXT", help="The issue's text.",
                                                show_default=False)] = None,
    file: Annotated[Optional[Path], typer.Option("--file", "-f", metavar="FILE", help="Read the text from a file "
                    "('-' for stdin).", show_default=False)] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only the new issue's id.")] = False,
    project: ProjectOption = None,
    json: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """Create a local issue: a markdown file with the next free number (issues/<n>.md)."""
    if body is not None and file is not None:
        raise UsageError("give the text with --body or --file, not both")
    if file is not None:
        body = read_text_option(file, "the issue text")
    cfg, chosen, tracker = _tracker(ctx, config, project)
    issue = tracker.create(title, body or "")
    row = _row(issue, tracker, {})
    if json:
        print_json(row)
    elif quiet:
        print(issue.id)
    else:
        print(f"created issue {issue.id} ({row['file']}); start an agent on it with: ao spawn {chosen.id} {issue.id}")


@app.command("ls", epilog=examples(
    ("ao issue ls", "open issues, with the sessions working on them"),
    ("ao issue ls --state all -p my-app", ""),
    ("ao issue ls | cut -f1", "piped: one tab-separated line per issue"),
))
def ls(
    ctx: typer.Context,
    state: Annotated[str, typer.Option("--state", "-s", metavar="STATE", help="open, closed or all.")] = "open",
    project: ProjectOption = None,
    json: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """The local issues: id, state, title, and the live sessions working on each."""
    cfg, chosen, tracker = _tracker(ctx, config, project)
    live = _live_sessions(cfg, chosen.id)
    rows = [_row(i, tracker, live) for i in tracker.list(state)]
    listing(rows, [Column("id"), Column("state", style=lambda r: "dim" if r["state"] == "closed" else None),
                   Column("title"), Column("sessions")], title=f"issues of {chosen.id} ({tracker.folder})",
            json=json, empty=f"no {'' if state == 'all' else state + ' '}issues in {tracker.folder} "
                             f"(create one with: ao issue new \"TITLE\")")


@app.command(epilog=examples(("ao issue show 3", ""), ("ao issue show 3 --json | jq -r .body", "")))
def show(
    ctx: typer.Context,
    issue: IssueArg,
    project: ProjectOption = None,
    json: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """Print a local issue: its file, state, the sessions on it, and its text."""
    cfg, chosen, tracker = _tracker(ctx, config, project)
    found = tracker.get(issue)
    row = _row(found, tracker, _live_sessions(cfg, chosen.id))
    if json:
        print_json({**row, "body": found.body})
        return
    from ao.templates import clean

    print(f"issue {found.id} ({found.state}): {found.title}\nfile: {row['file']}")
    if row["sessions"]:
        print(f"sessions: {', '.join(row['sessions'])}")
    print()
    print(clean(found.body, 1_000_000).rstrip())  # the file is anyone's text: no escape sequences reach the terminal


@app.command(epilog=examples(("ao issue close 3", "moves issues/3.md to issues/closed/3.md")))
def close(
    ctx: typer.Context,
    issue: IssueArg,
    project: ProjectOption = None,
    config: ConfigOption = None,
) -> None:
    """Close a local issue (its file moves to issues/closed/). Merging a session's PR does this by itself."""
    cfg, chosen, tracker = _tracker(ctx, config, project)
    found = tracker.get(issue)
    if found.state == "closed":
        print(f"issue {found.id} is already closed")
        return
    tracker.close(found.id)
    busy = _live_sessions(cfg, chosen.id).get(found.id)
    print(f"closed issue {found.id}" + (f"; sessions still working on it: {', '.join(busy)}" if busy else ""))
