"""A corpus of invalid configurations: each names the exact line (and column) and the dotted path.

Every case lists all the problems it must produce, in the order they are reported (sorted by position);
``col=None`` where the column is not worth pinning down.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ao import config, yamlsrc
from ao.errors import AoError

FOLDER = Path("/tmp/ao-invalid-configs")


@dataclass
class Case:
    id: str
    text: str
    expect: list[tuple[int, int | None, str, str]]  # (line, col, dotted path, text in the message)
    env: dict[str, str] = field(default_factory=dict)


def P(extra: str = "") -> str:
    """A valid one-project config (3 lines), followed by ``extra`` from line 4 on.

    ``extra`` is used as written, except that a triple-quoted block (starting with a newline) is dedented.
    """
    if extra.startswith("\n"):
        extra = textwrap.dedent(extra).lstrip("\n")
    return "projects:\n  app:\n    path: /srv/app\n" + extra


CASES = [
    # ---- YAML itself
    Case("malformed-flow", "projects:\n  app: [\n    path: x\n", [(4, 1, "", "invalid YAML")]),
    Case("malformed-indent", "projects:\n  app:\n    path: x\n   name: y\n", [(4, 4, "", "invalid YAML")]),
    Case("unclosed-quote", P('    name: "oops\n'), [(5, 1, "", "invalid YAML")]),
    Case("tab-indent", "projects:\n\tapp:\n    path: x\n", [(2, 1, "", "tab characters")]),
    Case("duplicate-key", P("    path: /srv/other\n"), [(4, 5, "projects.app.path", "duplicate key 'path'")]),
    Case("merge-key", "base: &b {path: /x}\nprojects:\n  app:\n    <<: *b\n", [(4, 5, "projects.app", "merge keys")]),
    Case("custom-tag", P("    name: !secret x\n"), [(4, 11, "projects.app.name", "custom tag !secret")]),
    Case("python-tag", P("    name: !!python/object:os.system x\n"), [(4, 11, "projects.app.name", "invalid value")]),
    Case("non-string-key", "projects:\n  [a, b]:\n    path: x\n", [(2, 3, "projects", "mapping keys must be plain strings")]),
    Case("empty-file", "# nothing here\n", [(1, 1, "", "the configuration is empty")]),
    Case("top-level-list", "- projects\n", [(1, 1, "", "expected object, got a list")]),

    # ---- top level
    Case("missing-projects", "port: 3000\n", [(1, 1, "", "'projects' is required")]),
    Case("empty-projects", "projects: {}\n", [(1, 11, "projects", "must not be empty")]),
    Case("null-projects", "port: 3000\nprojects:\n", [(2, 10, "projects", "expected object, got nothing")]),
    Case("unknown-top-key", "notifier:\n  s: {plugin: desktop}\n" + P(),
         [(1, 1, "notifier", "unknown key 'notifier' (did you mean 'notifiers'?)")]),
    Case("unknown-top-key-camel", P("pollinterval: 30s\n"),
         [(4, 1, "pollinterval", "(did you mean 'pollInterval'?)")]),
    Case("port-string", 'port: "abc"\n' + P(), [(1, 7, "port", "expected integer, got a string 'abc'")]),
    Case("port-out-of-range", "port: 70000\n" + P(), [(1, 7, "port", "maximum of 65535")]),
    Case("port-from-env-not-a-number", "port: ${PORT}\n" + P(), [(1, 7, "port", "expected integer")], {"PORT": "http"}),
    Case("poll-interval-words", "pollInterval: 10 minutes\n" + P(), [(1, 15, "pollInterval", "invalid duration")]),
    Case("poll-interval-zero", "pollInterval: 0\n" + P(), [(1, 15, "pollInterval", "at least 1s")]),
    Case("poll-interval-bool", "pollInterval: true\n" + P(), [(1, 15, "pollInterval", "invalid duration")]),
    Case("ready-threshold-both", "readyThreshold: 5m\nreadyThresholdMs: 300000\n" + P(),
         [(2, 1, "readyThresholdMs", "not both")]),
    Case("ready-threshold-ms-string", "readyThresholdMs: 5m\n" + P(), [(1, 19, "readyThresholdMs", "expected integer")]),
    Case("lifecycle-grace", P("lifecycle:\n  mergeCleanupIdleGrace: 5 min\n"),
         [(5, 26, "lifecycle.mergeCleanupIdleGrace", "invalid duration")]),
    Case("defaults-agent", "defaults:\n  agent: claude\n" + P(),
         [(2, 10, "defaults.agent", "(did you mean 'claude-code'?)")]),

    # ---- projects
    Case("missing-path", "projects:\n  app:\n    repo: org/app\n", [(2, 3, "projects.app", "'path' is required")]),
    Case("empty-path", "projects:\n  app:\n    path: ''\n", [(3, 11, "projects.app.path", "non-empty")]),
    Case("null-project", "projects:\n  app:\n  web:\n    path: /w\n", [(2, 7, "projects.app", "expected object, got nothing")]),
    Case("unknown-project-key", P("    defaultbranch: main\n"),
         [(4, 5, "projects.app.defaultbranch", "unknown key 'defaultbranch' (did you mean 'defaultBranch'?)")]),
    Case("bad-project-id", "projects:\n  good:\n    path: /g\n  my app:\n    path: /m\n",
         [(4, 3, "projects.my app", "invalid name 'my app'")]),
    Case("bad-session-prefix", P("    sessionPrefix: My_App\n"), [(4, 20, "projects.app.sessionPrefix", "sessionPrefix must be")]),
    Case("bad-repo", P("    repo: just-a-name\n"), [(4, 11, "projects.app.repo", "owner/name")]),
    Case("unknown-agent", P("    agent: gpt\n"), [(4, 12, "projects.app.agent", "is not one of")]),
    Case("command-agent-without-command", P("    agent: command\n    agentConfig:\n      promptDelivery: send\n"),
         [(4, 12, "projects.app.agent", "needs agentConfig.command")]),
    Case("bad-prompt-delivery", P("    agent: command\n    agentConfig:\n      command: bash\n      promptDelivery: paste\n"),
         [(7, 23, "projects.app.agentConfig.promptDelivery", "is not one of")]),
    Case("symlink-absolute", P("    symlinks:\n      - .env\n      - /etc/passwd\n"),
         [(6, 9, "projects.app.symlinks[1]", "must be a relative path")]),
    Case("symlink-escapes", P("    symlinks: [../secrets]\n"), [(4, 16, "projects.app.symlinks[0]", "must be a relative path")]),
    Case("tracker-unknown-plugin", P("    tracker:\n      plugin: jira\n"),
         [(5, 15, "projects.app.tracker.plugin", "'jira' is not one of")]),
    Case("tracker-key-of-other-plugin", P("    tracker:\n      plugin: github\n      teamId: T1\n"),
         [(6, 7, "projects.app.tracker.teamId", "unknown key 'teamId'")]),
    Case("scm-missing-plugin", P("    scm:\n      mergeMethod: squash\n"), [(4, 5, "projects.app.scm", "'plugin' is required")]),
    Case("scm-local-bad-timeout", P("    scm:\n      plugin: local\n      ciTimeout: ''\n"),
         [(6, 18, "projects.app.scm.ciTimeout", "invalid duration")]),
    Case("duplicate-prefixes", "projects:\n  api:\n    path: /a/my-app\n  web:\n    path: /b/my-app\n",
         [(4, 3, "projects.web", "session prefix 'ma' is already used by project 'api'")]),
    Case("duplicate-explicit-prefixes", "projects:\n  a:\n    path: /a\n    sessionPrefix: x\n  b:\n    path: /b\n    sessionPrefix: x\n",
         [(7, 5, "projects.b.sessionPrefix", "sessionPrefix: x2")]),

    # ---- reactions
    Case("retries-word", P("reactions:\n  ci-failed:\n    retries: two\n"),
         [(6, 14, "reactions.ci-failed.retries", "expected integer, got a string 'two'")]),
    Case("retries-negative", P("reactions:\n  ci-failed:\n    retries: -1\n"),
         [(6, 14, "reactions.ci-failed.retries", "must be at least 0")]),
    Case("auto-quoted-string", P("reactions:\n  ci-failed:\n    auto: 'yes'\n"),
         [(6, 11, "reactions.ci-failed.auto", "expected boolean, got a string 'yes'")]),
    Case("auto-number", P("reactions:\n  ci-failed:\n    auto: 1\n"),
         [(6, 11, "reactions.ci-failed.auto", "expected boolean")]),
    Case("unknown-reaction-field", P("reactions:\n  ci-failed:\n    retires: 3\n"),
         [(6, 5, "reactions.ci-failed.retires", "unknown key 'retires' (did you mean 'retries'?)")]),
    Case("unknown-action", P("reactions:\n  ci-failed:\n    action: send-to-agnet\n"),
         [(6, 13, "reactions.ci-failed.action", "(did you mean 'send-to-agent'?)")]),
    Case("unknown-priority", P("reactions:\n  agent-stuck:\n    priority: high\n"),
         [(6, 15, "reactions.agent-stuck.priority", "'high' is not one of: urgent, action, warning, info")]),
    Case("bad-threshold", P("reactions:\n  agent-stuck:\n    threshold: 1x\n"),
         [(6, 16, "reactions.agent-stuck.threshold", "invalid duration")]),
    Case("bad-escalate-after", P("reactions:\n  changes-requested:\n    escalateAfter: half an hour\n"),
         [(6, 20, "reactions.changes-requested.escalateAfter", "invalid escalateAfter")]),
    Case("negative-escalate-after", P("reactions:\n  changes-requested:\n    escalateAfter: -2\n"),
         [(6, 20, "reactions.changes-requested.escalateAfter", "invalid escalateAfter")]),
    Case("empty-threshold-in-project", P("    reactions:\n      agent-stuck:\n        threshold: ''\n"),
         [(6, 20, "projects.app.reactions.agent-stuck.threshold", "invalid duration")]),
    Case("reaction-null", P("reactions:\n  ci-failed:\n"), [(5, 13, "reactions.ci-failed", "expected object, got nothing")]),
    Case("reaction-key-uppercase", P("reactions:\n  CI-Failed:\n    retries: 1\n"),
         [(5, 3, "reactions.CI-Failed", "invalid name 'CI-Failed'")]),
    Case("reaction-key-typo-no-action", P("reactions:\n  ci-failled:\n    retries: 1\n"),
         [(5, 3, "reactions.ci-failled", "unknown reaction 'ci-failled' (did you mean 'ci-failed'?)")]),
    Case("reaction-key-typo-with-action", P("reactions:\n  ci-failled:\n    action: notify\n"),
         [(5, 3, "reactions.ci-failled", "no trigger rule (did you mean 'ci-failed'?)")]),
    Case("project-reaction-key-typo", P("    reactions:\n      agent-stuk:\n        threshold: 5m\n"),
         [(5, 7, "projects.app.reactions.agent-stuk", "(did you mean 'agent-stuck'?)")]),
    Case("new-reaction-without-rule", P("reactions:\n  deploy-failed:\n    action: notify\n"),
         [(5, 3, "reactions.deploy-failed", "has no trigger rule")]),
    Case("new-reaction-without-action", P("reactions:\n  deploy-failed:\n    priority: urgent\n"),
         [(5, 3, "reactions.deploy-failed", "needs an action")]),
    Case("missing-template-file", P("reactions:\n  ci-failed:\n    template: no-such-template\n"),
         [(6, 15, "reactions.ci-failed.template", "template 'no-such-template' not found")]),

    # ---- message templates: the line is the line inside the message
    Case("template-syntax-in-block", P("""
        reactions:
          ci-failed:
            message: |
              CI failed on {{ pr_url }}.
              Logs: {{ ci_logs ]]
              Please fix it.
        """), [(8, 7, "reactions.ci-failed.message", "template syntax error")]),
    Case("template-unclosed-block", P("""
        reactions:
          ci-failed:
            message: |
              one
              {% if pr_url %}
              two
        """), [(9, 7, "reactions.ci-failed.message", "template syntax error")]),
    Case("template-unknown-variable", P("""
        reactions:
          approved-and-green:
            message: |
              Ready to merge.

              See {{ pr_ulr }}
        """), [(9, 7, "reactions.approved-and-green.message", "unknown template variable 'pr_ulr' (did you mean 'pr_url'?)")]),
    Case("template-unknown-variable-inline",
         P('    reactions:\n      agent-stuck:\n        message: "Agent {{ sesion_id }} is stuck"\n'), [(6, 18, "projects.app.reactions.agent-stuck.message", "unknown template variable 'sesion_id'")]),
    Case("template-unknown-filter", P("reactions:\n  ci-failed:\n    message: '{{ pr_url | shout }}'\n"),
         [(6, 14, "reactions.ci-failed.message", "template syntax error")]),
    Case("template-error-once-for-two-projects", P("  web:\n    path: /srv/web\nreactions:\n  ci-failed:\n    message: '{{ nope }}'\n"),
         [(8, 14, "reactions.ci-failed.message", "unknown template variable 'nope'")]),

    # ---- notifiers and routing
    Case("slack-without-webhook", P("notifiers:\n  team:\n    plugin: slack\n    channel: '#x'\n"),
         [(5, 3, "notifiers.team", "'webhook' is required")]),
    Case("unknown-notifier-plugin", P("notifiers:\n  pager:\n    plugin: pagerduty\n"),
         [(6, 13, "notifiers.pager.plugin", "'pagerduty' is not one of")]),
    Case("notifier-key-of-other-plugin", P("notifiers:\n  d:\n    plugin: desktop\n    webhook: https://x\n"),
         [(7, 5, "notifiers.d.webhook", "unknown key 'webhook'")]),
    Case("slack-webhook-not-a-url", P("notifiers:\n  s:\n    plugin: slack\n    webhook: hooks.slack.com\n"),
         [(7, 14, "notifiers.s.webhook", "does not match")]),
    Case("routing-undefined-notifier", P("""
        notifiers:
          slack:
            plugin: slack
            webhook: https://hooks.slack.com/services/T1/B1/X1
        notificationRouting:
          urgent: [desktop, slak]
        """), [(9, 21, "notificationRouting.urgent[1]", "unknown notifier 'slak' (did you mean 'slack'?)")]),
    Case("routing-unknown-priority", P("notificationRouting:\n  critical: [desktop]\n"),
         [(5, 3, "notificationRouting.critical", "unknown key 'critical'")]),
    Case("routing-not-a-list", P("notificationRouting:\n  urgent: desktop\n"),
         [(5, 11, "notificationRouting.urgent", "expected array")]),
    Case("defaults-notifiers-undefined", "defaults:\n  notifiers: [desktop, email]\n" + P(),
         [(2, 24, "defaults.notifiers[1]", "unknown notifier 'email'")]),

    # ---- interpolation
    Case("unset-variable", P("    repo: ${REPO_NAME}\n"),
         [(4, 11, "projects.app.repo", "environment variable REPO_NAME is not set")]),
    Case("unset-variable-in-notifier", P("notifiers:\n  s:\n    plugin: slack\n    webhook: ${SLACK_WEBHOOK_URL}\n"),
         [(7, 14, "notifiers.s.webhook", "SLACK_WEBHOOK_URL is not set")]),
    Case("bad-variable-name", P("    name: ${1ABC}\n"), [(4, 11, "projects.app.name", "invalid variable name")]),
    Case("unterminated-variable", P("    name: cost ${ABC\n"), [(4, 11, "projects.app.name", "unterminated ${")]),

    # ---- several problems at once, sorted by position
    Case("many-at-once", """\
port: abc
notifier: {}
projects:
  app:
    path: /srv/app
    agent: claude
reactions:
  ci-failed:
    retries: -2
    priority: high
""", [(1, 7, "port", "expected integer"), (2, 1, "notifier", "did you mean 'notifiers'"),
      (6, 12, "projects.app.agent", "is not one of"), (9, 14, "reactions.ci-failed.retries", "at least 0"),
      (10, 15, "reactions.ci-failed.priority", "is not one of")]),
    Case("many-semantic-at-once", """\
defaults:
  notifiers: [nope]
notificationRouting:
  urgent: [nada]
projects:
  a:
    path: /x/my-app
    symlinks: [/abs]
  b:
    path: /y/my-app
    agent: command
""", [(2, 15, "defaults.notifiers[0]", "unknown notifier 'nope'"), (4, 12, "notificationRouting.urgent[0]", "'nada'"),
      (8, 16, "projects.a.symlinks[0]", "relative path"), (9, 3, "projects.b", "already used by project 'a'"),
      (11, 12, "projects.b.agent", "needs agentConfig.command")]),
]


def _problems(case: Case) -> list:
    with pytest.raises(AoError) as info:
        src = yamlsrc.loads(case.text, "c.yaml")
        config.from_source(src, FOLDER / "c.yaml", env=case.env)
    return info.value.problems


def test_corpus_is_big_enough():
    assert len(CASES) >= 30
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_invalid_config(case):
    got = _problems(case)
    summary = "\n".join(str(p) for p in got)
    assert len(got) == len(case.expect), summary
    for problem, (line, col, path, text) in zip(got, case.expect):
        assert problem.file == "c.yaml"
        assert problem.line == line, summary
        if col is not None:
            assert problem.col == col, summary
        assert problem.path == path, summary
        assert text in problem.message, summary
    assert got == sorted(got, key=lambda p: (p.line, p.col))
    assert len(set(got)) == len(got)  # the same mistake is not reported twice


def test_several_problems_are_reported_at_once():
    [case] = [c for c in CASES if c.id == "many-at-once"]
    assert len(_problems(case)) >= 3


def test_template_problems_are_reported_beside_schema_problems():
    text = P("reactions:\n  ci-failed:\n    retries: -1\n    message: |\n      hello\n      {{ pr_ulr }}\n")
    got = _problems(Case("mixed", text, []))
    assert [(p.path, p.message.split(" (")[0]) for p in got] == [
        ("reactions.ci-failed.retries", "must be at least 0"),
        ("reactions.ci-failed.message", "unknown template variable 'pr_ulr'"),
    ]
    assert got[1].line == got[0].line + 3


def test_printed_form():
    [case] = [c for c in CASES if c.id == "unknown-reaction-field"]
    [problem] = _problems(case)
    assert str(problem) == "c.yaml:6:5: unknown key 'retires' (did you mean 'retries'?) (at reactions.ci-failed.retires)"


def test_yaml_11_yes_is_a_boolean_not_an_error():
    cfg = config.from_source(yamlsrc.loads(P("reactions:\n  ci-failed:\n    auto: no\n"), "c.yaml"), FOLDER / "c.yaml", env={})
    assert cfg.projects["app"].reactions["ci-failed"].auto is False


# ------------------------------------------------------------------------------------- file-level limits

def _load_file(path: Path) -> list:
    with pytest.raises(AoError) as info:
        config.load(path, env={})
    return info.value.problems


def test_non_utf8_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_bytes(b"projects:\n  app:\n    path: /srv/app\n    name: \xff\xfe\n")
    [problem] = _load_file(path)
    assert (problem.line, problem.col) == (4, 11) and "not valid UTF-8" in problem.message


def test_several_megabyte_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(P() + "# " + "x" * 80 + "\n" * 1 + ("# " + "y" * 98 + "\n") * 40_000)
    [problem] = _load_file(path)
    assert (problem.line, problem.col) == (1, 1) and "MiB" in problem.message


def test_alias_bomb_file(tmp_path):
    path = tmp_path / "c.yaml"
    lines = ["lol0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for i in range(1, 9):
        lines.append(f"lol{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]")
    path.write_text("\n".join(lines) + "\n" + P())
    [problem] = _load_file(path)
    assert "alias bomb" in problem.message and problem.line <= 9


def test_tabs_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("projects:\n  app:\n\t\tpath: /srv/app\n")
    [problem] = _load_file(path)
    assert problem.line == 3 and "tab" in problem.message


# --------------------------------------------------------------------------------------------- the CLI

def _cli(path: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("AO_", "SLACK_"))}
    clean.update(env or {})
    proc = subprocess.run([sys.executable, "-m", "ao", "config", "validate", "--file-only", path.name], cwd=path.parent,
                          capture_output=True, text=True, env=clean, timeout=120)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


@pytest.mark.parametrize("case_id, lines", [
    ("many-at-once", ["c.yaml:1:7: expected integer, got a string 'abc' (at port)",
                      "c.yaml:2:1: unknown key 'notifier' (did you mean 'notifiers'?) (at notifier)",
                      "c.yaml:9:14: must be at least 0 (got -2) (at reactions.ci-failed.retries)"]),
    ("template-syntax-in-block", ["c.yaml:8:7: template syntax error: unexpected ']' (at reactions.ci-failed.message)"]),
    ("unset-variable", ["c.yaml:4:11: environment variable REPO_NAME is not set (use ${REPO_NAME:-default} "
                        "for a fallback) (at projects.app.repo)"]),
    ("bad-project-id", ["c.yaml:4:3: invalid name 'my app': must match ^[A-Za-z0-9_-]+$ (at projects.my app)"]),
])
def test_cli_reports_positions_and_exits_1(tmp_path, case_id, lines):
    [case] = [c for c in CASES if c.id == case_id]
    path = tmp_path / "c.yaml"
    path.write_text(case.text)
    proc = _cli(path)
    assert proc.returncode == 1
    assert proc.stdout == ""
    for line in lines:
        assert line in proc.stderr.splitlines(), proc.stderr
    assert len(proc.stderr.splitlines()) == len(case.expect)


def test_cli_non_utf8_and_huge_files_exit_1(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_bytes(b"projects:\n  app:\n    path: /srv/\xc3\x28\n")
    proc = _cli(path)
    assert proc.returncode == 1 and proc.stderr.startswith("c.yaml:3:")
    path.write_text(P() + "#" * (2 * 1024 * 1024) + "\n")
    proc = _cli(path)
    assert proc.returncode == 1 and proc.stderr.startswith("c.yaml:1:1: file is 2.0 MiB")
