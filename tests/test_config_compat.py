"""Configs written for the reference load in ao (aliases with deprecation notes), reference keys ao does not use
are named with the reason, and schema and semantic problems are reported together."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ao import config
from ao.errors import AoError


def load(tmp_path: Path, text: str, env: dict | None = None) -> config.Config:
    path = tmp_path / "agent-orchestrator.yaml"
    path.write_text(textwrap.dedent(text))
    return config.load(path, env=env or {})


def problems(tmp_path: Path, text: str, env: dict | None = None) -> list[str]:
    with pytest.raises(AoError) as caught:
        load(tmp_path, text, env)
    return str(caught.value).splitlines()


def test_reference_spellings_load_with_deprecation_notes(tmp_path):
    cfg = load(tmp_path, """\
        defaults:
          orchestrator: {agent: codex}
        projects:
          app:
            path: ./app
            agentConfig: {permissions: permissionless, orchestratorModel: opus}
            worker:
              agentConfig: {permissions: suggest, model: sonnet}
            scm:
              plugin: github
              webhook:
                path: /hooks/app
                secretEnvVar: APP_WEBHOOK_SECRET
                signatureHeader: x-hub-signature-256
                eventHeader: X-GitHub-Event
          other:
            path: ./other
            sessionPrefix: oth
            orchestrator:
              agent: aider
              agentConfig: {permissions: skip}
        lifecycle:
          mergeCleanupIdleGraceMs: 120000
        notifiers:
          team: {plugin: slack, webhookUrl: "https://hooks.slack.com/services/T0/B0/XX"}
          chat: {plugin: discord, webhookUrl: "https://discord.com/api/webhooks/1/abc"}
        """)
    app = cfg.projects["app"]
    assert app.agent_config == {"permissions": "default", "model": "sonnet"}  # worker: wins for workers
    assert app.orchestrator_agent == "codex" and app.orchestrator_agent_config["model"] == "opus"
    assert app.orchestrator_agent_config["permissions"] == "skip"  # permissionless is skip
    assert app.scm["webhook"] == {"path": "/hooks/app", "secretEnv": "APP_WEBHOOK_SECRET"}
    assert cfg.projects["other"].orchestrator_agent == "aider"
    assert cfg.merge_cleanup_idle_grace == 120
    assert cfg.notifiers["team"]["webhook"].startswith("https://hooks.slack.com/")
    assert cfg.notifiers["chat"]["webhook"].startswith("https://discord.com/")
    notes = [str(n) for n in cfg.notes]
    assert any(":13:9: secretEnvVar is the reference's spelling; ao's is secretEnv" in n for n in notes), notes
    assert any("write mergeCleanupIdleGrace: 2m" in n for n in notes)
    assert any("permissions: permissionless is the reference's spelling; ao's is skip" in n for n in notes)
    assert sum("webhookUrl is the reference's spelling" in n for n in notes) == 2


def test_reference_keys_ao_does_not_use_are_named_with_the_reason(tmp_path):
    found = problems(tmp_path, """\
        dataDir: ~/.agent-orchestrator
        worktreeDir: ~/.worktrees
        power: {preventIdleSleep: true}
        projects:
          app:
            path: ./app
            orchestratorSessionStrategy: reuse
            agentConfig: {reasoningEffort: high}
            reactions:
              ci-failed: {cooldown: 5m}
            agnet: codex
        """)
    text = "\n".join(found)
    assert ":2:1: `worktreeDir` is a reference setting ao does not use: ao keeps each session's worktree under " \
           "its data dir" in text
    assert "`power` is a reference setting ao does not use" in text
    assert "`orchestratorSessionStrategy` is a reference setting ao does not use" in text
    assert "`reasoningEffort` is a reference setting" in text and "`cooldown` is a reference setting" in text
    assert "unknown key 'agnet' (did you mean 'agent'?)" in text  # a typo is still a typo


def test_webhook_headers_other_than_githubs_are_refused_by_name(tmp_path):
    found = problems(tmp_path, """\
        projects:
          app:
            path: ./app
            scm:
              plugin: local
              webhook: {path: /h, secretEnv: S, signatureHeader: X-Gitlab-Token}
        """)
    assert any("ao reads GitHub's own header here (X-Hub-Signature-256)" in p and "remove signatureHeader" in p
               for p in found), found


def test_a_notifier_without_a_plugin_is_one_clear_line(tmp_path):
    found = problems(tmp_path, """\
        projects:
          app: {path: ./app}
        notifiers:
          slack:
            webhook: https://hooks.slack.com/services/T0/B0/XX
        """)
    assert len(found) == 1, found
    assert found[0].endswith(":4:3: 'plugin' is required (one of: desktop, slack, discord, webhook, email, ntfy, "
                             "telegram, teams, apprise, log) (at notifiers.slack)")


def test_a_quoted_number_for_escalate_after_is_refused_not_read_as_seconds(tmp_path):
    found = problems(tmp_path, """\
        projects:
          app: {path: ./app}
        reactions:
          ci-failed: {escalateAfter: "3"}
        """)
    assert len(found) == 1 and "a quoted number is ambiguous" in found[0] and ":4:30:" in found[0], found
    cfg = load(tmp_path, """\
        projects:
          app: {path: ./app}
        reactions:
          ci-failed: {escalateAfter: 3}
          changes-requested: {escalateAfter: "3m"}
        """)
    reactions = cfg.projects["app"].reactions
    assert reactions["ci-failed"].limit == 2 and reactions["changes-requested"].escalate_seconds == 180


def test_schema_and_semantic_problems_are_reported_together(tmp_path):
    found = problems(tmp_path, """\
        projects:
          app:
            path: ./app
            agent: claude
          web:
            path: ./app
        notificationRouting:
          urgent: [slak]
        notifiers:
          slack: {plugin: slack, webhook: "https://hooks.slack.com/services/T0/B0/XX"}
        reactions:
          ci-failed: {retries: -1}
        """)
    text = "\n".join(found)
    assert "'claude' is not one of" in text                              # schema
    assert "must be at least 0 (got -1)" in text                         # schema
    assert "unknown notifier 'slak' (did you mean 'slack'?)" in text      # semantic, beside them
    assert "session prefix 'app' is already used by project 'app'" in text  # semantic


def test_the_cli_prints_notes_and_problems_with_positions(tmp_path):
    path = tmp_path / "ref.yaml"
    path.write_text("projects:\n  app:\n    path: ./app\nlifecycle:\n  mergeCleanupIdleGraceMs: 300000\n")
    run = subprocess.run([sys.executable, "-m", "ao", "config", "validate", "--file-only", str(path)],
                         capture_output=True, text=True, env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert run.returncode == 0, run.stderr
    assert f"{path}:5:3: mergeCleanupIdleGraceMs is the reference's spelling" in run.stderr
    assert "ok (1 project" in run.stdout
