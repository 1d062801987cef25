"""Rule tests (SPEC 4.4) through the real command line: ``python -m ao rules test FILE...``."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from ao import ruletest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples" / "rules-tests"
EXAMPLE_TESTS = sorted(EXAMPLES.glob("*.yaml"))  # the configs they use live in configs/
INLINE = """
config:
  projects:
    app: {path: ./app}
"""


def ao_rules_test(*args: object, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AO_", "SLACK_"))}
    return subprocess.run([sys.executable, "-m", "ao", "rules", "test", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd or ROOT, env=env, timeout=120)


def inline(text: str) -> str:
    """A test file with the one-project inline config and these tests."""
    return INLINE + textwrap.dedent(text)


def pos(path: Path, needle: str, after: str = "") -> str:
    """``FILE:LINE:COL`` of the first ``needle`` (after the first ``after``) in a file, as problems print it."""
    text = path.read_text(encoding="utf-8")
    index = text.index(needle, text.index(after) if after else 0)
    line = text.count("\n", 0, index) + 1
    return f"{path}:{line}:{index - (text.rfind(chr(10), 0, index) + 1) + 1}"


def write(tmp_path: Path, text: str, name: str = "test.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def test_examples_exist():
    names = {p.name for p in EXAMPLE_TESTS}
    assert {"spec-example.yaml", "retry-escalation.yaml", "time-escalation.yaml", "mixed-escalation.yaml",
            "per-project-auto-merge.yaml"} <= names


@pytest.mark.parametrize("path", EXAMPLE_TESTS, ids=[p.name for p in EXAMPLE_TESTS])
def test_example_passes(path):
    count = len(yaml.safe_load(path.read_text(encoding="utf-8"))["tests"])
    done = ao_rules_test(path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip().endswith(f"{count} passed, 0 failed"), done.stdout
    assert done.stdout.count("PASS  ") == count and "Traceback" not in done.stderr


def test_all_examples_at_once_from_another_folder(tmp_path):
    total = sum(len(yaml.safe_load(p.read_text(encoding="utf-8"))["tests"]) for p in EXAMPLE_TESTS)
    done = ao_rules_test(*EXAMPLE_TESTS, cwd=tmp_path)  # config paths are relative to each test file
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip().endswith(f"{total} passed, 0 failed")


def test_spec_example_is_the_spec_text():
    spec = Path(__file__).resolve().parents[2] / "shared" / "SPEC.md"
    if not spec.is_file():
        pytest.skip("SPEC.md is not beside this checkout")
    block = spec.read_text(encoding="utf-8").split("### 4.4", 1)[1].split("```yaml", 1)[1].split("```", 1)[0]
    ours = (EXAMPLES / "spec-example.yaml").read_text(encoding="utf-8")
    assert yaml.safe_load(block)["tests"] == yaml.safe_load(ours)["tests"]


# ------------------------------------------------------------------------------------------ failures

FAILING = INLINE + """
tests:
  - name: the agent is paged, says the test
    steps:
      - at: 0s
        sessions: {app-1: {pr_state: open, review: pending, ci: failing, head_sha: a1}}
        expect: [{session: app-1, reaction: ci-failed, action: send-to-agent}]
      - at: 10m
        sessions: {app-1: {head_sha: a2}}
        expect: [{session: app-1, reaction: ci-failed, action: escalate, priority: urgent}]
  - name: a passing neighbour
    steps:
      - {at: 0s, sessions: {app-1: {}}, expect: []}
"""


def test_failing_test_gives_a_readable_diff(tmp_path):
    done = ao_rules_test(write(tmp_path, FAILING))
    assert done.returncode == 1
    out = done.stdout
    assert "FAIL  the agent is paged, says the test" in out and "PASS  a passing neighbour" in out
    assert "step 2 (at 10m):" in out and "step 1" not in out
    missing = re.search(r"- missing: +(.*)", out).group(1)
    unexpected = re.search(r"\+ unexpected: +(.*)", out).group(1)
    assert "action: escalate" in missing and "priority: urgent" in missing
    assert "action: send-to-agent" in unexpected and "reaction: ci-failed" in unexpected and "app-1" in unexpected
    assert out.strip().endswith("1 passed, 1 failed")
    assert "Traceback" not in done.stderr


def test_failing_test_as_json(tmp_path):
    done = ao_rules_test(write(tmp_path, FAILING), "--json")
    assert done.returncode == 1
    results = json.loads(done.stdout)
    assert [r["ok"] for r in results] == [False, True]
    (failure,) = results[0]["failures"]
    assert failure["index"] == 2 and failure["at"] == "10m"
    assert failure["missing"] == [{"session": "app-1", "reaction": "ci-failed", "action": "escalate",
                                   "priority": "urgent"}]
    assert [u["action"] for u in failure["unexpected"]] == ["send-to-agent"]


def test_every_fired_action_must_be_expected(tmp_path):
    done = ao_rules_test(write(tmp_path, inline("""
        tests:
          - name: two things happen, one is expected
            steps:
              - at: 0s
                sessions:
                  app-1: {activity: waiting_input}
                  app-2: {runtime_alive: false}
                expect: [{reaction: agent-needs-input}]
        """)))
    assert done.returncode == 1
    assert "+ unexpected:" in done.stdout and "agent-exited" in done.stdout.split("+ unexpected:")[1]
    assert "missing" not in done.stdout


def test_fields_left_out_are_not_compared_but_given_ones_are(tmp_path):
    text = INLINE + """  notificationRouting: {urgent: [desktop, log]}
tests:
  - name: partial entries
    steps:
      - at: 0s
        sessions: {app-1: {activity: waiting_input}}
        expect: [{action: notify}]
  - name: notifiers and message
    steps:
      - at: 0s
        sessions: {app-1: {activity: waiting_input}}
        expect: [{session: app-1, priority: urgent, notifiers: [desktop, log], message_contains: "app-1"}]
  - name: wrong notifiers
    steps:
      - at: 0s
        sessions: {app-1: {activity: waiting_input}}
        expect: [{reaction: agent-needs-input, notifiers: [log]}]
  - name: wrong text
    steps:
      - at: 0s
        sessions: {app-1: {activity: waiting_input}}
        expect: [{reaction: agent-needs-input, message_contains: "no such words"}]
  - name: a step without expect is not checked
    steps:
      - {at: 0s, sessions: {app-1: {activity: waiting_input}}}
      - {at: 1m, expect: []}
"""
    done = ao_rules_test(write(tmp_path, text))
    assert done.returncode == 1
    assert re.findall(r"^(PASS|FAIL)  (.*?)(?:  \(|$)", done.stdout, re.M) == [
        ("PASS", "partial entries"), ("PASS", "notifiers and message"), ("FAIL", "wrong notifiers"),
        ("FAIL", "wrong text"), ("PASS", "a step without expect is not checked")]


# ------------------------------------------------------------------------------------- malformed tests

def test_unknown_session_field_names_test_step_and_position(tmp_path):
    path = write(tmp_path, inline("""
        tests:
          - name: typo in a fact
            steps:
              - at: 0s
                sessions: {app-1: {pr_state: open}}
              - at: 1m
                sessions:
                  app-1: {pr_sate: open}
        """))
    done = ao_rules_test(path)
    assert done.returncode == 1 and done.stdout == ""
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith(f"{pos(path, 'pr_sate')}: test 'typo in a fact' step 2, session app-1: "
                           "unknown fact field 'pr_sate' (did you mean 'pr_state'?)"), line


@pytest.mark.parametrize("fields,value,message", [
    ("{idle_seconds: 10m}", "10m", "fact field 'idle_seconds' must be int, got '10m'"),
    ("{conflicts: 1}", "1", "fact field 'conflicts' must be bool, got 1"),
    ("{ci: failng}", "failng", "fact field 'ci' must be one of none, pending, passing, failing, got 'failng'"),
    ("{pr_number: '7'}", "'7'", "fact field 'pr_number' must be int, got '7'"),
])
def test_wrongly_typed_value_names_test_step_and_position(tmp_path, fields, value, message):
    path = write(tmp_path, inline(f"""
        tests:
          - name: bad value
            steps:
              - at: 0s
                sessions:
                  app-1: {fields}
        """))
    done = ao_rules_test(path)
    assert done.returncode == 1
    assert done.stderr.strip() == (f"{pos(path, value, fields[1:].split(':')[0])}: test 'bad value' step 1, session app-1: {message} "
                                   f"(at tests[0].steps[0].sessions.app-1.{fields[1:].split(':')[0]})")


def test_every_problem_in_a_file_at_once(tmp_path):
    path = write(tmp_path, inline("""
        tests:
          - name: many mistakes
            when: never
            start: next tuesday
            steps:
              - at: 10m
                sessions: {app-1: {ci: failing}}
                expect: [{action: explode, prio: urgent}]
              - at: 5m
                expect: {reaction: ci-failed}
              - at: soon
          - name: 3
        """))
    done = ao_rules_test(path)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    expected = [
        ("when", "test 'many mistakes': unknown key 'when'"),
        ("next tuesday", "test 'many mistakes': start must be a timestamp"),
        ("explode", "test 'many mistakes' step 1: action must be one of send-to-agent, notify, auto-merge, pause, kill, "
                    "escalate"),
        ("prio", "test 'many mistakes' step 1: unknown expect key 'prio'"),
        ("5m", "test 'many mistakes' step 2: `at` goes back in time"),
        ("{reaction: ci-failed}", "test 'many mistakes' step 2: expect must be a list"),
        ("soon", "test 'many mistakes' step 3: invalid duration 'soon'"),
        ("name: 3", "a test needs `name:` and `steps:`"),
    ]
    for needle, message in expected:
        where = pos(path, needle, "many mistakes")
        if needle == "name: 3":
            where = where.rsplit(":", 1)[0] + ":5"  # the test's mapping starts at its `-` item
        assert any(l.startswith(f"{where}: {message}") for l in lines), (where, message, lines)
    assert len(lines) == len(expected)


def test_bad_inline_config_points_into_the_test_file(tmp_path):
    path = write(tmp_path, """
        config:
          projects:
            app: {path: ./app}
          reactions:
            ci-failed: {retries: three}
        tests:
          - {name: x, steps: [{at: 0s}]}
        """)
    done = ao_rules_test(path)
    assert done.returncode == 1
    assert done.stderr.startswith(f"{path}:5:26: ") and "reactions.ci-failed.retries" in done.stderr


@pytest.mark.parametrize("text,message", [
    ("config: nowhere.yaml\ntests: [{name: x, steps: []}]\n", "not found"),
    ("tests: [{name: x, steps: []}]\n", "needs `config:`"),
    ("config: {projects: {app: {path: ./a}}}\ntests: []\n", "tests must be a non-empty list"),
    ("config: {projects: {app: {path: ./a}, web: {path: ./w}}}\ntests: [{name: x, steps: []}]\n",
     "test 'x': several projects are configured; set project: to one of app, web"),
    ("config: {projects: {app: {path: ./a}}}\ntests: [{name: x, project: ap, steps: []}]\n", "unknown project 'ap'"),
    ("config: {projects: {app: {path: ./a}}}\ntests: [{name: x, steps: [}\n", "invalid YAML"),
])
def test_malformed_files(tmp_path, text, message):
    path = write(tmp_path, text)
    done = ao_rules_test(path)
    assert done.returncode == 1
    assert done.stderr.startswith(str(path)) and message in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_missing_file_and_no_file():
    done = ao_rules_test("no-such-test.yaml")
    assert done.returncode == 1 and "no-such-test.yaml: rule test file not found" in done.stderr
    assert ao_rules_test().returncode == 2


# ------------------------------------------------------------------------------------------- semantics

def test_inline_config_mapping(tmp_path):
    path = write(tmp_path, """
        config:
          projects:
            shop: {path: ./shop}
          reactions:
            ci-failed: {retries: 0, priority: warning}
        tests:
          - name: inline config is used
            steps:
              - at: 0s
                sessions: {shop-1: {pr_state: open, ci: failing, head_sha: s1}}
                expect: [{session: shop-1, reaction: ci-failed, action: escalate, priority: warning, notifiers: [log]}]
        """)
    done = ao_rules_test(path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip().endswith("1 passed, 0 failed")


def test_config_file_relative_to_the_test_file(tmp_path):
    (tmp_path / "conf").mkdir()
    write(tmp_path / "conf", "projects:\n  app: {path: ./app}\nreactions:\n  ci-failed: {auto: false}\n",
          "agent-orchestrator.yaml")
    (tmp_path / "tests").mkdir()
    path = write(tmp_path / "tests", """
        config: ../conf/agent-orchestrator.yaml
        tests:
          - name: relative config
            steps:
              - at: 0s
                sessions: {app-1: {pr_state: open, ci: failing, head_sha: a1}}
                expect: [{session: app-1, reaction: ci-failed, action: notify, priority: action}]
        """)
    done = ao_rules_test(path, cwd=tmp_path / "conf")
    assert done.returncode == 0, done.stdout + done.stderr


def test_time_passing_keeps_last_activity(tmp_path):
    path = write(tmp_path, inline("""
        tests:
          - name: stuck is reported once while time passes
            start: 2026-03-01T12:00:00Z
            steps:
              - at: 0s
                sessions: {app-1: {pr_state: open, ci: pending, activity: blocked, idle_seconds: 540}}
                expect: []
              - at: 1m
                expect: [{session: app-1, reaction: agent-stuck, action: notify, priority: urgent}]
              - at: 2m
                expect: []
              - at: 1h
                sessions: {app-1: {ci: failing, head_sha: a1}}
                expect: [{session: app-1, reaction: ci-failed, action: send-to-agent}]
              - at: 2h
                expect: []
              - at: 2h1m   # new activity: a new occurrence once it is quiet for 10 minutes again
                sessions: {app-1: {idle_seconds: 0}}
                expect: []
              - at: 2h10m
                expect: []
              - at: 2h11m
                expect: [{session: app-1, reaction: agent-stuck, action: notify, priority: urgent}]
        """))
    done = ao_rules_test(path)
    assert done.returncode == 0, done.stdout + done.stderr


def test_project_entries_and_defaults(tmp_path):
    path = write(tmp_path, inline("""
        tests:
          - name: all-complete belongs to the project
            steps:
              - at: 0s
                sessions: {app-1: {pr_state: open, review: pending}, app-2: {pr_state: merged}}
                expect: []
              - at: 1h
                sessions: {app-1: {pr_state: merged}}
                expect: [{reaction: all-complete, action: notify, priority: info, session: null,
                          message_contains: "app-2"}]
              - at: 2h
                expect: []
        """))
    done = ao_rules_test(path)
    assert done.returncode == 0, done.stdout + done.stderr


def test_run_file_in_process(tmp_path):
    """The library entry point gives the same verdicts as the command line."""
    results = ruletest.run_file(write(tmp_path, FAILING))
    assert [r.ok for r in results] == [False, True]
    step = results[0].steps[1]
    assert (step.index, step.at, len(step.missing), len(step.unexpected)) == (2, "10m", 1, 1)
    assert "step 2 (at 10m)" in ruletest.format_result(results[0])
    assert ruletest.format_result(results[1]) == "PASS  a passing neighbour"
