"""``ao status``: every session as the poller last observed it, and what needs a human."""

from __future__ import annotations

import sys
import time
from typing import Annotated, Any, Optional

import typer

from ao.cli.common import ConfigOption, JsonOption, ProjectArg, examples, load_config
from ao.cli.output import Column, listing, short_duration, warn, watch

# The id, status and branch are never split; the free text is cut to a line; on a narrow terminal the columns
# worth least go first (cost, tokens, age...: the title already says how fresh the data is).
COLUMNS = [
    Column("session", fit="keep"),
    Column("status", style=lambda r: _style(r["status"]), fit="keep"),
    Column("activity", fit="keep", drop=6),
    Column("branch", fit="keep"),
    Column("pr", "pr", text=lambda r: r["pr_url"] or (f"#{r['pr']}" if r["pr"] else None), fit="keep", drop=5),
    Column("ci", style=lambda r: "red" if r["ci"] == "failing" else None, fit="keep", drop=7),
    Column("review", style=lambda r: "red" if r["review"] == "changes_requested" else None, fit="keep", drop=8),
    Column("merge", text=lambda r: ("ok" if not r["merge_missing"] else "missing " + ",".join(r["merge_missing"]))
           if r["merge"] else None, style=lambda r: "green" if r["merge"] and not r["merge_missing"] else None,
           fit="clip", drop=4),
    Column("needs", "needs a human", style=lambda r: "bold yellow" if r["needs"] else None, fit="clip"),
    Column("observed", text=lambda r: "never" if r["observed_seconds_ago"] is None
           else f"{short_duration(r['observed_seconds_ago'])} ago", fit="keep", drop=9),
    Column("age", text=lambda r: short_duration(r["age_seconds"]), fit="keep", drop=10),
    Column("tokens", text=lambda r: _tokens_text(r["tokens_in"], r["tokens_out"]), fit="keep", drop=11),
    Column("cost", text=lambda r: f"${r['cost_usd']:.2f}" if r["cost_usd"] else None, fit="keep", drop=12),
]


PROJECT_COLUMNS = [
    Column("project"),
    Column("tokens", text=lambda r: _tokens_text(r["tokens_in"], r["tokens_out"])),
    Column("cost", text=lambda r: f"${r['cost_usd']:.2f}"),
    Column("budget_usd", "budget", text=lambda r: None if r["budget_usd"] is None else f"${r['budget_usd']:g}"),
    Column("prices_as_of", "prices as of"),
    Column("unpriced", text=lambda r: ",".join(r["unpriced"]) or None,
           style=lambda r: "bold yellow" if r["unpriced"] else None),
]


def _style(status: str) -> Optional[str]:
    from ao.overview import status_style

    return status_style(status)


def _tokens_text(tokens_in: int, tokens_out: int) -> str:
    from ao.overview import tokens_text

    return tokens_text(tokens_in, tokens_out)


def refresh(cfg: Any) -> None:
    """One observation cycle, as ``ao poll`` runs it, unless ``ao start`` is running (it observes anyway)."""
    from ao.cli.poll_cmd import run_cycle
    from ao.poller import running_pid

    pid = running_pid(cfg.data_dir)
    if pid is not None:
        print(f"ao: ao start (pid {pid}) is observing these sessions; showing its last observation",
              file=sys.stderr)
        return
    report = run_cycle(cfg)
    for line in report_lines(report):
        print(f"ao: {line}", file=sys.stderr)


def report_lines(report: Any) -> list[str]:
    """What a refresh did, beyond observing: reactions fired, errors."""
    out = []
    for a in report.actions:
        target = a["session"] or a["project"]
        out.append(f"{'fired' if a['ok'] else 'FAILED'}: {a['reaction']} ({a['action']}) for {target}"
                   + (f": {a['error']}" if a["error"] else ""))
    out += [f"error: {e}" for e in report.errors] + [f"warning: {w}" for w in report.warnings]
    return out


def collect(cfg: Any, project: Optional[str]) -> tuple[list[dict[str, Any]], str, list[str]]:
    """(rows, the freshness line, warnings). ``host`` says where a session runs when its runtime can be in
    more than one place (a Docker engine); ``prices_as_of`` dates the price table behind ``cost_usd``."""
    from ao import overview
    from ao.sessions import Sessions
    from ao.usage import PriceTable

    now = time.time()
    ov = overview.overview(cfg, project)
    manager = Sessions(cfg, store=None)
    as_of = PriceTable(cfg.prices).as_of
    rows = []
    for v in ov.sessions:
        row = v.row(now)
        row["prices_as_of"] = as_of
        row["host"] = manager.host_of(v.session) if v.session is not None and v.session.runtime not in \
            ("tmux", "process", "") else None
        rows.append(row)
    return rows, overview.header(ov, now), ov.warnings()


def columns_for(rows: list[dict[str, Any]]) -> list[Column]:
    """The table's columns; ``host`` only when some session runs somewhere other than here (docker)."""
    return COLUMNS + [Column("host", fit="keep", drop=3)] if any(r["host"] for r in rows) else COLUMNS


def register(app: typer.Typer) -> None:
    @app.command(epilog=examples(
        ("ao status", "every session: status, what the agent waits for, PR, CI, review"),
        ("ao status my-app --refresh", "observe once now (when `ao start` is not running)"),
        ("ao status | grep needs_input", "piped: one plain line per session"),
        ("ao status --json | jq '.[] | select(.needs != \"\")'", "sessions that need you"),
        ("ao status --watch", "redraw every 2 seconds until Ctrl-C"),
        ("ao status --projects --json", "each project's tokens and cost so far, its budget, the prices' date"),
    ))
    def status(
        ctx: typer.Context,
        project: ProjectArg = None,
        refresh_: Annotated[bool, typer.Option("--refresh", "-r", help="Observe once first (runtime, agent, "
                            "PR, CI, reactions: one `ao poll` cycle) when no `ao start` is running.")] = False,
        watch_: Annotated[bool, typer.Option("--watch", "-w", help="Redraw every 2 seconds until Ctrl-C "
                          "(without a terminal: a timestamped listing each time).")] = False,
        projects_: Annotated[bool, typer.Option("--projects", help="One row per project instead: tokens and "
                             "cost over every session it had (what budget.project is checked against), its "
                             "budget, the date of the prices, and models without a price.")] = False,
        json: JsonOption = False,
        config: ConfigOption = None,
    ) -> None:
        """Every session as the poller last observed it: status (needs_input, stuck, ci_failed...), what the
        agent is waiting for, the PR, CI, review, escalations, tokens and cost, and how long ago it was
        observed. Under the table: each project's totals and the date of the prices."""
        from ao.overview import totals_lines
        from ao.usage import project_rows, unpriced_warning

        cfg = load_config(ctx, config)
        if project is not None:
            cfg.project(project)
        if refresh_:
            refresh(cfg)
        names = [project] if project else list(cfg.projects)
        if watch_:
            def render() -> tuple[list[dict[str, Any]], list[Column], str]:
                rows, head, _ = collect(cfg, project)
                if projects_:
                    return project_rows(cfg, names), PROJECT_COLUMNS, head
                return rows, columns_for(rows), head

            watch(render, 2.0, json=json)
            return
        rows, head, warnings = collect(cfg, project)
        totals = project_rows(cfg, names)
        for warning in warnings + [unpriced_warning(p["project"], p["unpriced"]) for p in totals if p["unpriced"]]:
            warn(warning)
        if projects_:
            listing(totals, PROJECT_COLUMNS, title=head, json=json)
            return
        listing(rows, columns_for(rows), title=head, json=json, caption="\n".join(totals_lines(totals)),
                empty="no sessions (start one with: ao spawn PROJECT ISSUE)")
