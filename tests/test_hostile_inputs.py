"""Issue 13's list of inputs that gave tracebacks or hangs, each through the real CLI in a subprocess: every one
must end in a clear error (exit 1 or 2, no traceback) within a few seconds, and nothing printed may carry a
raw escape character."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import pytest
from sessionkit import git, wait_for

from ao.sessions import SpawnRequest

DEADLINE = 20.0  # seconds: generous for a loaded machine; the point is "not a hang"


def run(env, *args, input=None, extra_env=None):
    started = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "ao", *args], capture_output=True, cwd=env.root, input=input,
                       env={**env.env, **(extra_env or {})}, timeout=60)
    took = time.monotonic() - started
    out, err = r.stdout.decode("utf-8", "replace"), r.stderr.decode("utf-8", "replace")
    assert "Traceback" not in out + err, err
    assert "\x1b" not in out + err, (out, err)
    assert took < DEADLINE, f"took {took:.1f} s"
    return r.returncode, out + err


def write(env, text: str) -> None:
    env.config.write_text(textwrap.dedent(text).replace("PROJECT", str(env.project)))


CONFIGS = {
    "alias cycle": ("projects: &p\n  app: {path: PROJECT}\n  more: *p\n", "cycle"),
    "500 levels of blocks": ("".join(" " * i + "a:\n" for i in range(500)) + " " * 500 + "x\n", "nested more than"),
    "30,000 levels of brackets": ("projects: " + "[" * 30_000 + "]" * 30_000 + "\n", "nested more than"),
    "NUL in a path": ('projects:\n  app: {path: "PROJECT\\0x"}\n', "NUL byte"),
    "110000d": ("pollInterval: 110000d\nprojects:\n  app: {path: PROJECT}\n", "too long"),
    "escape in a key": ("projects:\n  app: {path: PROJECT}\n\"\\e[31mred\": 1\n", "unknown key"),
    "backtracking regex": None,  # a rule file, below
}


@pytest.mark.parametrize("case", [c for c in CONFIGS if CONFIGS[c]])
def test_hostile_configs_are_clear_errors(aoenv, case):
    text, words = CONFIGS[case]
    write(aoenv, text)
    code, said = run(aoenv, "config", "validate")
    assert code == 1 and words in said, said


def test_400_nested_nots_and_a_backtracking_regex_in_rule_files(aoenv):
    deep = aoenv.root / "deep.yaml"
    when = "{ci: failing}"
    for _ in range(400):
        when = "{not: " + when + "}"
    deep.write_text(f"rules:\n  - reaction: ci-failed\n    when: {when}\n    occurrence: head_sha\n")
    write(aoenv, f"projects:\n  app: {{path: PROJECT}}\nrules: [{deep}]\n")
    code, said = run(aoenv, "config", "validate")
    assert code == 1 and "nested more than" in said

    slow = aoenv.root / "slow.yaml"
    slow.write_text("rules:\n  - reaction: ci-failed\n    when: {branch: {matches: '^hotfix/(a|aa)+$'}}\n"
                    "    occurrence: head_sha\n")
    write(aoenv, f"projects:\n  app: {{path: PROJECT}}\nrules: [{slow}]\n")
    assert run(aoenv, "config", "validate")[0] == 0  # RE2 bounds it: accepted, and fast below
    test = aoenv.root / "t.yaml"
    test.write_text(textwrap.dedent(f"""\
        config: {aoenv.config}
        tests:
          - name: a long branch
            steps:
              - at: 0s
                sessions:
                  app-1: {{branch: "hotfix/{'a' * 50}b", pr_state: open, ci: failing, head_sha: a1}}
                expect: []
        """))
    code, said = run(aoenv, "rules", "test", str(test))
    assert code == 0, said
    backref = aoenv.root / "backref.yaml"
    backref.write_text("rules:\n  - reaction: ci-failed\n    when: {branch: {matches: '(a)\\1'}}\n"
                       "    occurrence: head_sha\n")
    write(aoenv, f"projects:\n  app: {{path: PROJECT}}\nrules: [{backref}]\n")
    code, said = run(aoenv, "config", "validate")
    assert code == 1 and "backreferences and lookarounds are not supported" in said


@pytest.mark.parametrize("special", ["/dev/zero", "fifo"])
def test_rule_files_must_be_regular_files(aoenv, special):
    path = special
    if special == "fifo":
        path = str(aoenv.root / "rules.fifo")
        os.mkfifo(path)
    write(aoenv, f"projects:\n  app: {{path: PROJECT}}\nrules: [{path}]\n")
    code, said = run(aoenv, "config", "validate")
    assert code == 1 and "not a regular file" in said


def test_a_rule_test_naming_a_project_by_a_list(aoenv):
    test = aoenv.root / "t.yaml"
    test.write_text(f"config: {aoenv.config}\ntests:\n  - name: x\n    project: [1]\n    steps: []\n")
    code, said = run(aoenv, "rules", "test", str(test))
    assert code == 1 and "project is named by its id" in said


def test_invalid_utf8_in_the_event_log_and_in_arguments(aoenv):
    (aoenv.data).mkdir(exist_ok=True)
    (aoenv.data / "events.jsonl").write_bytes(b'{"ts": "x", "type": "a.b"}\n\xff\xfe broken\n{"type": "c.d"}\n')
    code, said = run(aoenv, "events")
    assert code == 0 and "a.b" in said and "c.d" in said
    r = subprocess.run([os.fsencode(sys.executable), b"-m", b"ao", b"spawn", b"app", b"task \xff\xfe"],
                       capture_output=True, cwd=aoenv.root, env=aoenv.env, timeout=60)
    assert r.returncode == 2 and b"not valid UTF-8" in r.stderr and b"Traceback" not in r.stderr


def test_an_unwritable_event_log_does_not_stop_a_command(aoenv):
    s = aoenv.manager().spawn(SpawnRequest(project="app", target="12"))
    wait_for(lambda: aoenv.received(s.id), what="the prompt")
    log = aoenv.data / "events.jsonl"
    log.unlink()
    log.mkdir()  # unwritable whoever we are (root ignores file modes)
    code, said = run(aoenv, "session", "kill", s.id)
    assert code == 0 and "cannot write" in said and f"killed {s.id}" in said


def test_escapes_in_review_comments_and_events_never_reach_the_terminal(aoenv):
    s = aoenv.manager().spawn(SpawnRequest(project="app", target="12"))
    git("commit", "-q", "--allow-empty", "-m", "work", cwd=__import__("pathlib").Path(s.workspace))
    git("push", "-q", "-u", "origin", "HEAD", cwd=__import__("pathlib").Path(s.workspace))
    from ao.plugins.scm import for_project

    cfg = aoenv.load()
    scm = for_project(cfg, cfg.projects["app"])
    scm.view(s.branch)
    scm.review(s.branch, "comment", "look \x1b]0;pwned\x07 here \x1b[2J", author="someone")
    code, said = run(aoenv, "review", s.id, "--list")
    assert code == 0 and "\\x1b" in said  # shown, harmless
    from ao import events

    events.append(aoenv.data, "x.y", session=s.id, note="\x1b[31mred")
    code, said = run(aoenv, "events")
    assert code == 0 and "31mred" in said  # shown without its escape character (run() checks there is none)


def test_the_safe_stream_is_a_text_stream():
    """click probes for a binary writer by writing b"": a text stream must refuse bytes, or completion and
    help print "b''" garbage."""
    import io

    from ao.cli.common import SafeStream

    out = io.StringIO()
    stream = SafeStream(out)
    with pytest.raises(TypeError):
        stream.write(b"")
    stream.write("a\x1b[2Jb\n")
    assert out.getvalue() == "a\\x1b[2Jb\n"
