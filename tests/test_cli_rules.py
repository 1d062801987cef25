"""`ao rules show` and `ao rules explain` through the real CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MULTI = ROOT / "examples" / "multi-project.yaml"


def ao(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ao", *args], capture_output=True, text=True, cwd=cwd,
                          env={"PATH": "/usr/bin:/bin", "HOME": str(cwd or ROOT)})


def test_explain_finds_the_project_from_the_session_prefix_and_names_the_failed_condition(tmp_path):
    fact = tmp_path / "fact.yaml"
    fact.write_text("pr_state: open\nci: failing\nhead_sha: abc\nactivity: idle\nidle_seconds: 30\n")
    run = ao("rules", "explain", "fe-3", "--fact", str(fact), "--now", "1767258000", "--json",
             "--config", str(MULTI), cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert report["fact"]["project"] == "frontend" and report["fact"]["status"] == "ci_failed"
    rows = {r["reaction"]: r for r in report["reactions"]}
    assert rows["ci-failed"]["matched"] is True and rows["ci-failed"]["occurrence"] == "head_sha='abc'"
    assert rows["agent-stuck"]["matched"] is False
    assert rows["agent-stuck"]["failed"].startswith("idle_seconds >= ")  # activity idle holds; the threshold not
    assert rows["pr-closed"]["failed"] == "pr_state == closed (is 'open')"


def test_explain_unknown_session_and_bad_fact(tmp_path):
    run = ao("rules", "explain", "zz-1", "--config", str(MULTI), cwd=tmp_path)
    assert run.returncode == 1 and "Traceback" not in run.stderr
    bad = tmp_path / "fact.yaml"
    bad.write_text("ci_state: failing\n")
    run = ao("rules", "explain", "fe-1", "--fact", str(bad), "--config", str(MULTI), cwd=tmp_path)
    assert run.returncode == 1 and "unknown fact field 'ci_state'" in run.stderr and "Traceback" not in run.stderr


def test_show_json_has_triggers_routing_and_durable_rules(tmp_path):
    run = ao("rules", "show", "--json", "--project", "backend", "--config", str(MULTI), cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    shown = json.loads(run.stdout)["backend"]
    assert {t["reaction"] for t in shown["triggers"]} >= {"ci-failed", "all-complete", "agent-stuck"}
    assert shown["durable_rules"]["route:urgent"]["notifiers"] == shown["routing"]["urgent"]
    assert "ci-failed#0" in shown["durable_rules"]


def test_show_table_keeps_brackets(tmp_path):
    run = ao("rules", "show", "--config", str(MULTI), "--project", "docs", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert "[working, stuck" in run.stdout.replace("\n", " ") or "[working," in run.stdout
