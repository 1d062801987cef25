"""Rule tests (SPEC 4.4): check a configuration against a timeline, like ``promtool test rules``.

Each test runs a fresh engine with an in-memory ledger. At each step ``now = start + at``; the sessions
given are merged over their previous step, completed with the defaults of SPEC 4.1, and evaluated; the
actions that fire are compared with ``expect``.

Time passes between steps as it would for a real observer: once a session's ``last_activity_at`` is
known (given, or ``now - idle_seconds``), it is kept, and ``idle_seconds`` grows with the clock until a
step gives ``idle_seconds`` or ``last_activity_at`` again. ``age_seconds`` grows the same way.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ao import config as config_mod
from ao import engine as engine_mod
from ao import facts
from ao.actions import KINDS, Action, RecordingExecutor
from ao.durations import DurationError, parse_duration
from ao.errors import AoError, Problem
from ao.yamlsrc import Source, load_file

EXPECT_KEYS = ("session", "reaction", "action", "priority", "notifiers", "message_contains")
TEST_KEYS = ("name", "project", "start", "steps")
STEP_KEYS = ("at", "sessions", "expect")
DEFAULT_START = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


@dataclass
class StepResult:
    index: int
    at: str
    expected: list[dict[str, Any]]
    got: list[dict[str, Any]]
    missing: list[dict[str, Any]]
    unexpected: list[dict[str, Any]]

    @property
    def ok(self) -> bool:
        return not self.missing and not self.unexpected


@dataclass
class TestResult:
    file: str
    name: str
    steps: list[StepResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(s.ok for s in self.steps)


def run_file(path: Path) -> list[TestResult]:
    """Run every test in one file. Raises :class:`AoError` for a malformed file (all problems at once)."""
    src = load_file(path)
    problems = _check_file(src)
    if problems:
        raise AoError(problems=problems)
    cfg = _config(src, path)
    compiled = engine_mod.compile_config(cfg)
    results = []
    for i, test in enumerate(src.data["tests"]):
        results.append(_run_test(src, cfg, compiled, test, ("tests", i)))
    return results


def _config(src: Source, path: Path) -> config_mod.Config:
    ref = src.data["config"]
    if isinstance(ref, dict):
        return config_mod.from_source(src.sub(("config",)), path)
    target = (path.parent / ref).resolve()
    if not target.is_file():
        raise AoError(problems=[src.problem(("config",), f"config file {target} not found")])
    return config_mod.load(target)


def _check_file(src: Source) -> list[Problem]:
    data = src.data
    if not isinstance(data, dict) or "tests" not in data or "config" not in data:
        return [src.problem((), "a rule test file needs `config:` (a path or a mapping) and `tests:` (a list)")]
    problems = [src.problem((k,), f"unknown key '{k}'", key=True) for k in data if k not in ("config", "tests")]
    if not isinstance(data["config"], (str, dict)):
        problems.append(src.problem(("config",), "config must be a path or a mapping"))
    if not isinstance(data["tests"], list) or not data["tests"]:
        return problems + [src.problem(("tests",), "tests must be a non-empty list")]
    for i, test in enumerate(data["tests"]):
        problems += _check_test(src, test, ("tests", i))
    return problems


def _check_test(src: Source, test: Any, at: tuple) -> list[Problem]:
    if not isinstance(test, dict) or not isinstance(test.get("name"), str) or not isinstance(test.get("steps"), list):
        return [src.problem(at, "a test needs `name:` and `steps:` (a list)")]
    label = f"test '{test['name']}'"
    problems = [src.problem(at + (k,), f"{label}: unknown key '{k}'", key=True) for k in test if k not in TEST_KEYS]
    if "start" in test:
        try:
            _start(test)
        except (TypeError, ValueError, AttributeError):
            problems.append(src.problem(at + ("start",), f"{label}: start must be a timestamp like 2026-01-01T09:00:00Z"))
    last = -1
    for n, step in enumerate(test["steps"], start=1):
        here = at + ("steps", n - 1)
        where = f"{label} step {n}"
        if not isinstance(step, dict):
            problems.append(src.problem(here, f"{where}: a step must be a mapping"))
            continue
        problems += [src.problem(here + (k,), f"{where}: unknown key '{k}'", key=True) for k in step if k not in STEP_KEYS]
        try:
            offset = parse_duration(step.get("at", 0))
            if offset < last:
                problems.append(src.problem(here + ("at",), f"{where}: `at` goes back in time"))
            last = offset
        except DurationError as exc:
            problems.append(src.problem(here + ("at",), f"{where}: {exc}"))
        sessions = step.get("sessions") or {}
        if not isinstance(sessions, dict):
            problems.append(src.problem(here + ("sessions",), f"{where}: sessions must map session ids to facts"))
            sessions = {}
        for sid, fields in sessions.items():
            if not isinstance(fields, dict):
                problems.append(src.problem(here + ("sessions", sid), f"{where}: session {sid} must be a mapping"))
                continue
            for message in facts.type_problems(fields):
                name = message.split("'")[1] if "'" in message else ""
                path = here + ("sessions", sid, name) if name in fields else here + ("sessions", sid)
                problems.append(src.problem(path, f"{where}, session {sid}: {message}", key=name not in facts.FIELDS))
        expect = step.get("expect")
        if expect is not None and not isinstance(expect, list):
            problems.append(src.problem(here + ("expect",), f"{where}: expect must be a list ([] = nothing fires)"))
        for e, entry in enumerate(expect if isinstance(expect, list) else []):
            epath = here + ("expect", e)
            if not isinstance(entry, dict):
                problems.append(src.problem(epath, f"{where}: each expected action is a mapping"))
                continue
            for k in entry:
                if k not in EXPECT_KEYS:
                    problems.append(src.problem(epath + (k,), f"{where}: unknown expect key '{k}'; "
                                                              f"use {', '.join(EXPECT_KEYS)}", key=True))
            if "action" in entry and entry["action"] not in KINDS:
                problems.append(src.problem(epath + ("action",), f"{where}: action must be one of {', '.join(KINDS)}"))
    return problems


def _start(test: dict[str, Any]) -> int:
    start = test.get("start", DEFAULT_START)
    if isinstance(start, str):
        start = dt.datetime.fromisoformat(start.replace("Z", "+00:00"))
    if isinstance(start, dt.date) and not isinstance(start, dt.datetime):
        start = dt.datetime(start.year, start.month, start.day, tzinfo=dt.timezone.utc)
    if start.tzinfo is None:
        start = start.replace(tzinfo=dt.timezone.utc)
    return int(start.timestamp())


def _run_test(src: Source, cfg: config_mod.Config, compiled: dict[str, engine_mod.CompiledProject],
              test: dict[str, Any], at: tuple) -> TestResult:
    label = f"test '{test['name']}'"
    try:
        project = cfg.project(test.get("project"))
    except AoError as exc:
        message = str(exc) if "project" in test else f"several projects are configured; set project: to one of " \
                                                     f"{', '.join(cfg.projects)}"
        raise AoError(problems=[src.problem(at + ("project",), f"{label}: {message}")]) from None
    result = TestResult(src.file, test["name"])
    start = _start(test)
    state: dict[str, dict[str, Any]] = {}
    with engine_mod.Engine(compiled[project.id]) as engine:
        for n, step in enumerate(test["steps"], start=1):
            now = start + parse_duration(step.get("at", 0))
            for sid, fields in (step.get("sessions") or {}).items():
                merged = state.setdefault(str(sid), {"session": str(sid), "project": project.id})
                if "idle_seconds" in fields and "last_activity_at" not in fields:
                    merged.pop("last_activity_at", None)
                merged.update(fields)
                merged.setdefault("last_activity_at", now - merged.get("idle_seconds", 0))
                if "age_seconds" in fields or "_spawned_at" not in merged:
                    merged["_spawned_at"] = now - merged.get("age_seconds", 0)
            session_facts = []
            for sid, merged in state.items():
                partial = {k: v for k, v in merged.items() if not k.startswith("_")}
                partial["idle_seconds"] = max(0, now - partial["last_activity_at"])
                partial["age_seconds"] = max(0, now - merged["_spawned_at"])
                session_facts.append(facts.complete(partial, now, compiled[project.id].stuck_threshold))
            executor = RecordingExecutor()
            fired = [a for a, _ in engine_mod.run_cycle(engine, session_facts, now, executor)]
            if "expect" in step:
                result.steps.append(_compare(n, step.get("at", 0), step["expect"] or [], fired))
    return result


def _summary(action: Action) -> dict[str, Any]:
    return {"session": action.session, "reaction": action.reaction, "action": action.action,
            "priority": action.priority, "notifiers": list(action.notifiers)}


def _matches(expected: dict[str, Any], action: Action) -> bool:
    got = _summary(action)
    for key, value in expected.items():
        if key == "message_contains":
            if str(value) not in f"{action.title}\n{action.text}":
                return False
        elif key == "notifiers":
            if list(value or []) != got["notifiers"]:
                return False
        elif got.get(key) != value:
            return False
    return True


def _compare(index: int, at: Any, expected: list[dict[str, Any]], fired: list[Action]) -> StepResult:
    remaining = list(fired)
    missing = []
    for entry in sorted(expected, key=len, reverse=True):  # most specific first
        hit = next((a for a in remaining if _matches(entry, a)), None)
        if hit is None:
            missing.append(entry)
        else:
            remaining.remove(hit)
    return StepResult(index, str(at), expected, [_summary(a) for a in fired], missing,
                      [_summary(a) for a in remaining])


def format_result(result: TestResult) -> str:
    """A readable report; for each failing step, what was expected and what fired."""
    import yaml

    def flow(items: list[dict[str, Any]]) -> str:
        if not items:
            return " []"
        return "".join("\n        - " + yaml.safe_dump(i, default_flow_style=True, width=200).strip() for i in items)

    if result.ok:
        return f"PASS  {result.name}"
    lines = [f"FAIL  {result.name}  ({result.file})"]
    for step in result.steps:
        if step.ok:
            continue
        lines.append(f"    step {step.index} (at {step.at}):")
        lines.append(f"      expected:{flow(step.expected)}")
        lines.append(f"      fired:{flow(step.got)}")
        for item in step.missing:
            lines.append(f"      - missing:    {yaml.safe_dump(item, default_flow_style=True, width=200).strip()}")
        for item in step.unexpected:
            lines.append(f"      + unexpected: {yaml.safe_dump(item, default_flow_style=True, width=200).strip()}")
    return "\n".join(lines)
