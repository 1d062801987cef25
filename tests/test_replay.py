"""The fact record and `ao rules test --replay`: what a config change would have done to recorded history."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from ao import facts, replay
from ao.replay import FactLog

START = 1_780_000_000  # a fixed moment; nothing here reads the clock


def _fact(sid: str, now: int, **fields) -> dict:
    return facts.complete({"session": sid, "project": "app", **fields}, now)


def _record(root: Path) -> Path:
    """Two hours of one project: app-1 goes quiet (stuck) for 30 minutes, app-2's CI fails on three heads."""
    log = FactLog(root, retention=7 * 86400)
    quiet_since = START + 600
    for minute in range(0, 120, 1):
        now = START + minute * 60
        app1 = {"activity": "active", "last_activity_at": now} if minute < 10 or minute >= 40 else \
            {"activity": "idle", "last_activity_at": quiet_since}
        head = "a1" if minute < 30 else "a2" if minute < 60 else "a3"
        app2 = {"pr_state": "open", "pr_number": 7, "ci": "failing", "head_sha": head,
                "last_activity_at": now}
        log.record("app", now, [_fact("app-1", now, age_seconds=3600 + minute * 60, **app1),
                                _fact("app-2", now, age_seconds=3600 + minute * 60, **app2)], [])
    return root / "facts"


def _config(tmp_path: Path, name: str, **reactions) -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump({"dataDir": str(tmp_path / "data"), "projects": {"app": {"path": str(tmp_path)}},
                                    "reactions": reactions}))
    return path


def test_the_record_holds_only_what_changed_and_replay_rebuilds_every_cycle(tmp_path):
    folder = _record(tmp_path)
    (day,) = folder.glob("*.jsonl")
    lines = [json.loads(line) for line in day.read_text().splitlines()]
    assert len(lines) == 120
    assert set(lines[0]["facts"]) == {"app-1", "app-2"}
    assert lines[15]["facts"] == {"app-2": {"last_activity_at": START + 900}}  # only what changed
    assert len(json.dumps(lines[15])) < 120
    assert set(lines[30]["facts"]) == {"app-2"}  # a new head
    cycles = replay.read([folder])
    at_20 = {f["session"]: f for f in cycles[20].facts}
    assert at_20["app-1"]["idle_seconds"] == 600 and at_20["app-1"]["age_seconds"] == 3600 + 1200


def test_replay_with_the_same_config_reproduces_what_the_poller_decided(tmp_path):
    from ao import config as config_mod

    cfg = config_mod.load(_config(tmp_path, "a.yaml"))
    cycles = replay.read([_record(tmp_path)])
    done = replay.run(cfg, cycles)
    kinds = [(a["session"], a["reaction"], a["action"]) for _, _, a in done]
    assert kinds.count(("app-2", "ci-failed", "send-to-agent")) == 2
    assert ("app-2", "ci-failed", "escalate") in kinds
    assert kinds.count(("app-1", "agent-stuck", "notify")) == 1
    diff = replay.compare(done, replay.run(cfg, cycles))
    assert not diff.only_before and not diff.only_after
    assert replay.verdict(diff).startswith("no difference")


def _ao(*args, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AO_")}
    return subprocess.run([sys.executable, "-m", "ao", *map(str, args)], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=120)


def test_rules_test_replay_shows_how_a_config_change_would_differ(tmp_path):
    folder = _record(tmp_path)
    current = _config(tmp_path, "current.yaml")
    calmer = _config(tmp_path, "calmer.yaml", **{"agent-stuck": {"threshold": "45m"}, "ci-failed": {"retries": 5}})
    run = _ao("--config", current, "rules", "test", "--replay", folder, "--config", calmer, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert "replayed 120 cycles" in run.stdout
    assert "agent-stuck notify (urgent)" in run.stdout
    assert "ci-failed escalate (urgent)" in run.stdout
    # the stuck agent (quiet for 30 min) and the third failing head no longer page anyone; app-2 hears once more
    assert "this change would have paged you 2 fewer times, sent agents 1 more message" in run.stdout
    data = json.loads(_ao("--config", current, "rules", "test", "--replay", folder, "--config", calmer, "--json",
                          cwd=tmp_path).stdout)
    assert sorted(a["reaction"] for a in data["only_before"]) == ["agent-stuck", "ci-failed"]
    assert [a["action"] for a in data["only_after"]] == ["send-to-agent"]


def test_replay_without_a_new_config_compares_with_what_ao_did(tmp_path):
    log = FactLog(tmp_path, retention=86400)
    from ao.actions import Action

    fired = Action(project="app", session="app-1", reaction="agent-needs-input", action="notify", priority="urgent",
                   notifiers=("log",), title="", text="", occurrence="", reason="")
    log.record("app", START, [_fact("app-1", START, activity="waiting_input")], [fired])
    current = _config(tmp_path, "current.yaml", **{"agent-needs-input": {"priority": "action"}})
    run = _ao("--config", current, "rules", "test", "--replay", tmp_path / "facts", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert "what ao did vs the current config" in run.stdout
    assert "paged you 1 fewer time, sent 1 more other notification" in run.stdout


def test_replay_errors_are_clear(tmp_path):
    current = _config(tmp_path, "current.yaml")
    missing = _ao("--config", current, "rules", "test", "--replay", tmp_path / "nope", cwd=tmp_path)
    assert missing.returncode == 1 and "no such fact record" in missing.stderr
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"at": 1, "project": "app"}\nnot json\n')
    run = _ao("--config", current, "rules", "test", "--replay", bad, cwd=tmp_path)
    assert run.returncode == 1 and f"{bad}:2:1: not a fact record line" in run.stderr
    assert _ao("rules", "test", cwd=tmp_path).returncode == 2


def test_retention_prunes_old_days_and_zero_records_nothing(tmp_path):
    log = FactLog(tmp_path, retention=2 * 86400)
    for day in range(5):
        log.record("app", START + day * 86400, [_fact("app-1", START)], [])
    log.prune(START + 4 * 86400)
    assert len(list((tmp_path / "facts").glob("*.jsonl"))) == 3
    off = FactLog(tmp_path / "off", retention=0)
    off.record("app", START, [_fact("app-1", START)], [])
    assert not (tmp_path / "off").exists()
