"""``ao rules show|explain|test``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from ao.cli.common import ConfigOption, JsonOption, ProjectOption, complete_session, examples, load_config, print_json
from ao.cli.output import Column, listing, warn, with_iso_times
from ao.errors import AoError, UsageError, did_you_mean
from ao.explain import explain as explain_fact, trigger_text

app = typer.Typer(help="Inspect, explain and test the compiled reaction rules.", no_args_is_help=True)


@app.command(epilog=examples(
    ("ao rules show", "every project's triggers, thresholds, escalation budgets and routing"),
    ("ao rules show -p my-app | grep ci-failed", "piped: one plain line per trigger"),
    ("ao rules show --json | jq '.[\"my-app\"].durable_rules'", "the durable_rules rulesets themselves"),
))
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
    for pid in chosen:
        cp = compiled[pid]
        rows = []
        for ct in cp.triggers:
            r = ct.reaction
            budget = []
            if r.limit is not None:
                budget.append(f"after {r.limit} attempt{'s' if r.limit != 1 else ''}")
            if r.escalate_seconds is not None:
                budget.append(f"after {format_duration(r.escalate_seconds)}")
            rows.append({"project": pid, "reaction": r.key, "trigger": trigger_text(ct.when),
                         "occurrence": ct.trigger.occurrence,
                         "action": r.action if r.auto else f"notify (auto off; {r.action})",
                         "priority": r.priority, "escalation": " or ".join(budget) or "never"})
        listing(rows, [Column("project"), Column("reaction"), Column("trigger"), Column("occurrence"),
                       Column("action"), Column("priority"), Column("escalation")], title=f"project {pid}")
        routing = [{"project": pid, "what": "routing", "priority": p, "notifiers": list(n)}
                   for p, n in cp.routing.items()]
        listing(routing, [Column("project"), Column("what"), Column("priority"), Column("notifiers")],
                title=f"routing of {pid}")


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


@app.command(epilog=examples(
    ("ao rules explain app-3", "why each reaction did or did not fire for the last observation"),
    ("ao rules explain app-3 --fact fact.yaml", "for a fact of your own (fields of `ao rules explain --json`)"),
))
def explain(
    ctx: typer.Context,
    session: Annotated[str, typer.Argument(metavar="SESSION", help="Session id, e.g. app-3.",
                                           autocompletion=complete_session)],
    fact_file: Annotated[Optional[Path], typer.Option("--fact", metavar="FILE", help="Read the fact from this "
                         "YAML/JSON file instead of the session's last observed one.")] = None,
    now: Annotated[Optional[int], typer.Option(metavar="EPOCH", help="Evaluate at this epoch second "
                                               "(default: now).")] = None,
    json: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """For a session's last observation (the one `ao status` shows), every reaction: matched or not, which
    condition failed, and its ledger."""
    import time

    from ao import engine, facts, overview
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
    at = time.time() if now is None else now
    fact = facts.complete(partial, int(at), compiled.stuck_threshold)
    ledgers = stored.ledger_entries() if stored is not None else {}
    for problem in store.problems:
        warn(problem)
    from ao import merging

    merge = [] if fact.get("pr_state") != "open" else (
        merging.for_session(stored, fact) if stored is not None and fact_file is None
        else merging.criteria_for_fact(fact))
    report = explain_fact(compiled, fact, ledgers, merge)
    seen = overview.view(stored, overview.poller_state(cfg.data_dir).last_cycle_at) \
        if stored is not None and fact_file is None else None
    status = seen.status if seen else fact["status"]
    if json:
        observed = seen.row(at) if seen else {}
        # The fact keeps the types of the fact contract (last_activity_at in epoch seconds), so that it can be
        # fed back with --fact; everything else has ISO times.
        print_json({"session": session, "status": status, "observed_at": observed.get("observed_at"),
                    "fact": fact, "reactions": with_iso_times(report), "merge": [c.to_dict() for c in merge]})
        return
    title = f"{session}  status={status}  activity={fact['activity']}  pr={fact['pr_state']}"
    if seen is not None:
        from ao.durations import ago

        title += f"  observed {ago(None if seen.observed_at is None else at - seen.observed_at)}"
    rows = [{**row, "why not": row["failed"] or "",
             "ledger text": (f"attempts {row['ledger']['attempts']}, occurrence {row['ledger']['occurrence']}"
                             + (", escalated" if row["ledger"]["escalated"] else "")) if row["ledger"] else ""}
            for row in report]
    listing(rows, [Column("reaction"), Column("matched", style=lambda r: "green" if r["matched"] else None),
                   Column("why not"), Column("occurrence"), Column("ledger text", "ledger")], title=title)
    if merge:
        listing([{"what": "merge", **c.to_dict()} for c in merge],
                [Column("what"), Column("name", "criterion"),
                 Column("ok", style=lambda r: "green" if r["ok"] else "bold red"), Column("detail")],
                title=f"merge criteria (head {str(fact.get('head_sha') or '?')[:7]})")


def shipped_examples() -> dict[str, Path]:
    """The rule tests that ship with ao (``examples/rules-tests``), by name."""
    from ao import paths

    folder = paths.data_folder("examples") / "rules-tests"
    return {p.stem: p for p in sorted(folder.glob("*.yaml"))} if folder.is_dir() else {}


@app.command("test", epilog=examples(
    ("ao rules test --examples", "run every rule test shipped with ao"),
    ("ao rules test --example retry-escalation", "one of them (a wrong name lists them all)"),
    ("ao rules test my-tests/ci-retries.yaml", "your own, written like the shipped examples"),
    ("ao rules test --replay ~/.local/state/ao/facts --config new.yaml", "how a config change would have acted "
     "on recorded history"),
))
def test_cmd(
    ctx: typer.Context,
    files: Annotated[Optional[list[Path]], typer.Argument(metavar="FILE...", help="Rule test files (written like "
                     "the shipped examples: `ao rules test --examples`).", show_default=False)] = None,
    example: Annotated[Optional[list[str]], typer.Option("--example", metavar="NAME", help="Run a rule test "
                       "shipped with ao, by name (repeatable).", show_default=False)] = None,
    all_examples: Annotated[bool, typer.Option("--examples", help="Run every rule test shipped with ao.")] = False,
    replay: Annotated[Optional[list[Path]], typer.Option(
        "--replay", metavar="FILE|DIR", help="Re-run the facts the poller recorded (a file or folder of <dataDir>/facts/) and print "
                         "how the actions would differ. Repeatable.", show_default=False)] = None,
    new_config: Annotated[Optional[Path], typer.Option(
        "--config", metavar="FILE", help="With --replay: the changed config to compare with the current one (default: compare "
                         "the current config with what ao actually did).", dir_okay=False, show_default=False)] = None,
    json: JsonOption = False,
) -> None:
    """Run rule tests: timelines of facts with the actions expected at each step. Exit 1 if any fails.
    With --replay, re-run recorded facts and show how the actions would differ."""
    from ao import ruletest

    if replay:
        _replay(ctx, replay, new_config, json)
        return
    if new_config is not None:
        raise UsageError("--config goes with --replay (a rule test file names its own config)")
    chosen = list(files or [])
    shipped = shipped_examples()
    names = list(example or []) + (list(shipped) if all_examples else [])
    for name in names:
        if name not in shipped:
            raise UsageError(f"no shipped example '{name}'{did_you_mean(name, shipped)}; examples: "
                             f"{', '.join(shipped)}")
        chosen.append(shipped[name])
    if not chosen:
        raise UsageError("give rule test files, or --example NAME (examples: " + ", ".join(shipped) + ")")
    results = []
    for path in chosen:
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
