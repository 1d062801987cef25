"""``ao rules show|explain|test``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from ao.cli.common import ConfigOption, JsonOption, ProjectOption, load_config, print_json
from ao.errors import AoError, UsageError
from ao.explain import explain as explain_fact, trigger_text

app = typer.Typer(help="Inspect, explain and test the compiled reaction rules.", no_args_is_help=True)


@app.command()
def show(ctx: typer.Context, project: ProjectOption = None, json: JsonOption = False,
         config: ConfigOption = None) -> None:
    """Print what the configuration compiles to: each reaction's trigger, settings and routing."""
    from ao import engine
    from ao.durations import format_duration

    cfg = load_config(ctx, config)
    compiled = engine.compile_config(cfg)
    chosen = [cfg.project(project).id] if project else list(compiled)
    if json:
        print_json({pid: {
            "reactions": {k: r.to_config() for k, r in sorted(compiled[pid].reactions.items())},
            "triggers": [{"rule": ct.name, "reaction": ct.reaction.key, "when": trigger_text(ct.when),
                          "occurrence": ct.trigger.occurrence, "scope": ct.trigger.scope, "source": ct.trigger.origin}
                         for ct in compiled[pid].triggers],
            "routing": {p: list(n) for p, n in compiled[pid].routing.items()},
            "durable_rules": compiled[pid].definition(),
        } for pid in chosen})
        return
    from ao.cli.common import cell, console
    from rich.table import Table

    out = console()
    for pid in chosen:
        cp = compiled[pid]
        table = Table(title=f"project {pid}", title_justify="left", show_lines=False)
        for column in ("reaction", "trigger", "occurrence", "action", "priority", "escalation"):
            table.add_column(column, overflow="fold")
        for ct in cp.triggers:
            r = ct.reaction
            action = r.action if r.auto else f"notify (auto off; {r.action})"
            budget = []
            if r.limit is not None:
                budget.append(f"after {r.limit} attempt{'s' if r.limit != 1 else ''}")
            if r.escalate_seconds is not None:
                budget.append(f"after {format_duration(r.escalate_seconds)}")
            table.add_row(ct.reaction.key, cell(trigger_text(ct.when)), ct.trigger.occurrence, action,
                          r.priority or "-", " or ".join(budget) or "never")
        out.print(table)
        routing = Table(title="routing", title_justify="left")
        routing.add_column("priority")
        routing.add_column("notifiers")
        for priority, names in cp.routing.items():
            routing.add_row(priority, cell(", ".join(names)))
        out.print(routing)


def _load_fact(cfg: Any, session: str, stored: Any, fact_file: Optional[Path]) -> dict[str, Any]:
    """The fact to explain: from ``--fact FILE``, else the last one stored with the session."""
    from ao import yamlsrc

    if fact_file is not None:
        data = yamlsrc.load_file(fact_file).data
        if not isinstance(data, dict):
            raise AoError(f"{fact_file}: a fact file holds one mapping of fact fields")
        return data
    if stored is None:
        raise AoError(f"unknown session '{session}' in {cfg.data_dir}; pass --fact FILE to explain a fact from a file")
    if not stored.fact:
        raise AoError(f"session {session} has no observation stored yet; run `ao poll` or pass --fact FILE")
    return dict(stored.fact)


@app.command()
def explain(
    ctx: typer.Context,
    session: Annotated[str, typer.Argument(help="Session id, e.g. app-3.")],
    fact_file: Annotated[Optional[Path], typer.Option("--fact", help="Read the fact from this YAML/JSON file "
                                                      "instead of the session's last stored one.")] = None,
    now: Annotated[Optional[int], typer.Option(help="Evaluate at this epoch second (default: now).")] = None,
    json: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """For a session's latest fact, show every reaction: matched or not, which condition failed, and its ledger."""
    import time

    import sys

    from ao import engine, facts
    from ao.store import SessionStore, valid_name

    cfg = load_config(ctx, config)
    store = SessionStore(cfg.data_dir, log=False)
    stored = store.get(session, include_archived=True) if valid_name(session) or fact_file is None else None
    if stored is None and fact_file is None:
        try:
            store.find(session)
        except AoError as exc:
            raise AoError(f"{exc}; pass --fact FILE to explain a fact from a file") from None
    partial = _load_fact(cfg, session, stored, fact_file)
    partial.setdefault("session", session)
    if stored is not None:
        partial.setdefault("project", stored.project)
    problems = facts.type_problems(partial)
    if problems:
        raise AoError("\n".join(f"{fact_file or session}: {p}" for p in problems))
    project = cfg.project(partial["project"]) if partial.get("project") else cfg.project_for_session(session)
    partial.setdefault("project", project.id)
    compiled = engine.compile_config(cfg)[project.id]
    fact = facts.complete(partial, int(now if now is not None else time.time()), compiled.stuck_threshold)
    ledgers = stored.ledger_entries() if stored is not None else {}
    for problem in store.problems:
        print(f"ao: warning: {problem}", file=sys.stderr)
    from ao import merging

    merge = [] if fact.get("pr_state") != "open" else (
        merging.for_session(stored, fact) if stored is not None and fact_file is None
        else merging.criteria_for_fact(fact))
    report = explain_fact(compiled, fact, ledgers, merge)
    if json:
        print_json({"session": session, "fact": fact, "reactions": report,
                    "merge": [c.to_dict() for c in merge]})
        return
    from ao.cli.common import cell, console
    from rich.table import Table

    table = Table(title=f"{session}  status={fact['status']}  activity={fact['activity']}  pr={fact['pr_state']}",
                  title_justify="left")
    for column in ("reaction", "matched", "why not", "occurrence", "ledger"):
        table.add_column(column, overflow="fold")
    for row in report:
        ledger = row["ledger"]
        ledger_text = (f"attempts {ledger['attempts']}, occurrence {ledger['occurrence']}"
                       + (", escalated" if ledger["escalated"] else "")) if ledger else "-"
        table.add_row(row["rule"], "yes" if row["matched"] else "no", cell(row["failed"] or ""),
                      cell(row["occurrence"]), ledger_text)
    console().print(table)
    if merge:
        print(f"merge criteria (head {str(fact.get('head_sha') or '?')[:7]}):")
        for c in merge:
            print(f"  {'ok ' if c.ok else 'NO '} {c.name:<11} {c.detail}")


@app.command("test")
def test_cmd(
    ctx: typer.Context,
    files: Annotated[Optional[list[Path]], typer.Argument(help="Rule test files (SPEC 4.4 format).",
                                                          exists=False, show_default=False)] = None,
    replay: Annotated[Optional[list[Path]], typer.Option(
        "--replay", help="Re-run the facts the poller recorded (a file or folder of <dataDir>/facts/) and print "
                         "how the actions would differ. Repeatable.", show_default=False)] = None,
    new_config: Annotated[Optional[Path], typer.Option(
        "--config", help="With --replay: the changed config to compare with the current one (default: compare "
                         "the current config with what ao actually did).", dir_okay=False, show_default=False)] = None,
    json: JsonOption = False,
) -> None:
    """Run rule tests: timelines of facts with the actions expected at each step. Exit 1 if any fails.

    Examples:

      ao rules test examples/rules-tests/*.yaml

      ao rules test --replay ~/.agent-orchestrator/facts --config ./agent-orchestrator.new.yaml
    """
    from ao import ruletest

    if replay:
        _replay(ctx, replay, new_config, json)
        return
    if not files:
        raise UsageError("give rule test files, or --replay FILE")
    if new_config is not None:
        raise UsageError("--config goes with --replay (a rule test file names its own config)")
    results = []
    for path in files:
        if not path.is_file():
            raise AoError(f"{path}: rule test file not found")
        results.extend(ruletest.run_file(path))
    passed = sum(r.ok for r in results)
    failed = len(results) - passed
    if json:
        print_json([{"file": r.file, "name": r.name, "ok": r.ok,
                     "failures": [s.__dict__ for s in r.steps if not s.ok]} for r in results])
    else:
        for r in results:
            print(ruletest.format_result(r))
        print(f"{passed} passed, {failed} failed")
    if failed:
        raise typer.Exit(1)


def _replay(ctx: typer.Context, paths: list[Path], new_config: Optional[Path], json: bool) -> None:
    from ao import config as config_mod
    from ao import replay

    current = load_config(ctx, None)
    cycles = replay.read(paths)
    if not cycles:
        raise AoError(f"{', '.join(map(str, paths))}: no recorded cycles to replay")
    if new_config is None:
        before, after = replay.recorded(cycles), replay.run(current, cycles)
        labels = ("what ao did", f"the current config ({current.file})")
    else:
        candidate = config_mod.load(new_config)
        before, after = replay.run(current, cycles), replay.run(candidate, cycles)
        labels = (f"the current config ({current.file})", f"{new_config}")
    diff = replay.compare(before, after)
    if json:
        rows = lambda items: [{"at": at, "project": p, **a} for at, p, a in items]  # noqa: E731
        print_json({"cycles": len(cycles), "before": labels[0], "after": labels[1],
                    "only_before": rows(diff.only_before), "only_after": rows(diff.only_after),
                    "verdict": replay.verdict(diff)})
        return
    print(replay.report(diff, labels, len(cycles)))
