"""``ao status``: what every session is doing now."""

from __future__ import annotations

import time
from typing import Annotated, Any, Optional

import typer

from ao.cli.common import ConfigOption, JsonOption, load_config, print_json

COLUMNS = ["session", "status", "activity", "branch", "pr", "ci", "review", "age", "tokens", "cost"]


def _age(seconds: float) -> str:
    seconds = int(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _tokens(tokens_in: int, tokens_out: int) -> str:
    """``1.2M in, 40k out``: tokens the agent read and wrote (SPEC 12)."""
    def short(n: int) -> str:
        for unit, size in (("M", 1_000_000), ("k", 1000)):
            if n >= size:
                return f"{n / size:.1f}".rstrip("0").rstrip(".") + unit
        return str(n)
    return f"{short(tokens_in)} in, {short(tokens_out)} out"


def rows_for(manager: Any, project: Optional[str], now: float) -> list[dict[str, Any]]:
    from ao import observe

    seen = observe.observe(manager, manager.store.list(project), now)
    rows = []
    for item in seen:
        s, f = item.session, item.fact
        rows.append({"session": s.id, "project": s.project, "status": f["status"], "activity": f["activity"],
                     "last_activity_at": f["last_activity_at"], "alive": f["runtime_alive"], "branch": s.branch,
                     "issue": s.issue, "pr": f["pr_number"] or None, "pr_url": f["pr_url"], "ci": f["ci"],
                     "review": f["review"], "age_seconds": f["age_seconds"], "age": _age(f["age_seconds"]),
                     "tokens_in": f["tokens_in"], "tokens_out": f["tokens_out"], "cost_usd": f["cost_usd"],
                     "tokens": _tokens(f["tokens_in"], f["tokens_out"]) if f["tokens_in"] or f["tokens_out"] else None,
                     "cost": f"${f['cost_usd']:.2f}" if f["cost_usd"] else None, "paused": f["paused"],
                     "host": manager.host_of(s)})
    return rows


def columns_for(rows: list[dict[str, Any]]) -> list[str]:
    """The table's columns; ``host`` only when some session runs somewhere other than here (docker)."""
    return COLUMNS + ["host"] if any(r["host"] for r in rows) else COLUMNS


def print_rows(rows: list[dict[str, Any]], columns: list[str], title: str) -> None:
    from ao.cli.common import console

    console().print(_table(rows, columns, title))


def _table(rows: list[dict[str, Any]], columns: list[str], title: str) -> Any:
    from rich.table import Table

    from ao.cli.common import cell

    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*(cell(str(row[c])) if row[c] not in (None, "", "none") else "-" for c in columns))
    if not rows:
        table.caption = "no sessions (start one with: ao spawn PROJECT ISSUE)"
    return table


def register(app: typer.Typer) -> None:
    @app.command()
    def status(
        ctx: typer.Context,
        project: Annotated[Optional[str], typer.Argument(metavar="[PROJECT]", help="Only this project.",
                                                         show_default=False)] = None,
        watch: Annotated[bool, typer.Option("--watch", "-w", help="Refresh every 2 seconds until Ctrl-C.")] = False,
        json: JsonOption = False,
        config: ConfigOption = None,
    ) -> None:
        """A table of sessions: status, activity, branch, PR, CI, review and age."""
        from ao.sessions import Sessions

        cfg = load_config(ctx, config)
        if project is not None:
            cfg.project(project)
        manager = Sessions(cfg)
        if json:
            print_json(rows_for(manager, project, time.time()))
            return
        if not watch:
            rows = rows_for(manager, project, time.time())
            print_rows(rows, columns_for(rows), "sessions")
            return
        from rich.live import Live

        from ao.cli.common import console

        with Live(auto_refresh=False, console=console()) as live:
            try:
                while True:
                    rows = rows_for(manager, project, time.time())
                    live.update(_table(rows, columns_for(rows), "sessions"), refresh=True)
                    time.sleep(2)  # a display refresh period, not synchronisation
            except KeyboardInterrupt:
                pass
