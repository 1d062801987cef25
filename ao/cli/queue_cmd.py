"""``ao queue add|ls|rm``: the work queue that admission (``ao start``, ``ao poll``) spawns from."""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer

from ao.cli.common import ConfigOption, JsonOption, ProjectArg, ProjectRequired, examples, load_config
from ao.cli.output import Column, iso, listing, print_json, short_duration
from ao.errors import AoError

app = typer.Typer(help="The work queue: issues waiting for a session, spawned under the caps by `ao start` and "
                       "`ao poll`.", no_args_is_help=True)

COLUMNS = [Column("project"), Column("issue"), Column("priority"), Column("state"),
           Column("waiting", text=lambda r: short_duration(r["waiting_seconds"])), Column("session"),
           Column("blocked_by", "blocked by"), Column("title")]


def _row(e: Any, now: float) -> dict[str, Any]:
    return {"project": e.project, "issue": e.issue, "priority": e.priority, "state": e.state,
            "waiting_seconds": int(max(0.0, now - e.added_at)), "added_at": iso(e.added_at), "source": e.source,
            "session": e.session or None, "blocked_by": list(e.blocked_by), "attempts": e.attempts,
            "error": e.error or None, "title": e.title}


@app.command(epilog=examples(
    ("ao queue add my-app 12 13 14", "queue three issues, oldest first"),
    ("ao queue add my-app 99 --priority 10", "ahead of everything at priority 0"),
))
def add(
    ctx: typer.Context,
    project: ProjectRequired,
    issues: Annotated[list[str], typer.Argument(metavar="ISSUE...", help="Issue ids, oldest first.",
                                                show_default=False)],
    priority: Annotated[int, typer.Option("--priority", "-p", metavar="N",
                                          help="Higher goes first; then the oldest.")] = 0,
    json: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """Queue issues for a session; `ao start` and `ao poll` spawn them under the caps."""
    from ao.sessions import Sessions
    from ao.workqueue import WorkQueue

    cfg = load_config(ctx, config)
    tracker = Sessions(cfg).tracker(cfg.project(project))
    bad = [i for i in issues if not tracker.looks_like_id(i.strip())]
    if bad:
        raise AoError(f"not an issue id of project {project}'s {tracker.name} tracker: {', '.join(bad)}")
    added, present = WorkQueue(cfg.data_dir).add(project, issues, priority=priority, now=time.time())
    if json:
        now = time.time()
        print_json({"added": [_row(e, now) for e in added], "already": [_row(e, now) for e in present]})
        return
    for e in added:
        print(f"queued {e.project} {e.issue} (priority {e.priority})")
    for e in present:
        print(f"already {e.state}: {e.project} {e.issue}" + (f" → {e.session}" if e.session else "")
              + (f" (priority now {e.priority})" if e.state == "queued" else ""))


@app.command("ls", epilog=examples(
    ("ao queue ls", "what waits, in admission order"),
    ("ao queue ls my-app --all --json", "admitted and failed entries too, as JSON"),
))
def ls(
    ctx: typer.Context,
    project: ProjectArg = None,
    all_: Annotated[bool, typer.Option("--all", "-a", help="Also admitted and failed entries.")] = False,
    json: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """The queue in admission order: priority, then age. Plain lines when piped."""
    from ao.workqueue import WorkQueue, order_key

    cfg = load_config(ctx, config)
    if project is not None:
        cfg.project(project)
    now = time.time()
    entries = sorted((e for e in WorkQueue(cfg.data_dir).load() if project in (None, e.project)
                      and (all_ or e.state in ("queued", "admitting"))), key=order_key)
    rows = [_row(e, now) for e in entries]
    listing(rows, COLUMNS, title="queue", json=json,
            empty="the queue is empty (add with: ao queue add PROJECT ISSUE...)")


@app.command(epilog=examples(("ao queue rm my-app 13", "take issue 13 off the queue"),))
def rm(
    ctx: typer.Context,
    project: ProjectRequired,
    issues: Annotated[list[str], typer.Argument(metavar="ISSUE...", help="Issue ids.", show_default=False)],
    json: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """Take issues off the queue (a picked-up issue removed while still matching pickup comes back)."""
    from ao.workqueue import WorkQueue, normalize

    cfg = load_config(ctx, config)
    cfg.project(project)
    gone = WorkQueue(cfg.data_dir).remove(project, issues)
    if json:
        print_json([_row(e, time.time()) for e in gone])
    else:
        for e in gone:
            print(f"removed {e.project} {e.issue} ({e.state})")
    missing = sorted({normalize(i) for i in issues} - {e.issue for e in gone})
    if missing:
        raise AoError(f"not in the queue of {project}: {', '.join(missing)}")
