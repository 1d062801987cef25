"""Notifiers: Apprise URLs per plugin, validation of their keys, the webhook payload, real sends to a
loopback receiver, and secrets kept out of everything ao prints or writes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ao import config as config_mod
from ao import events, notify
from ao.actions import Action
from ao.notify import DeliveryError, Notification, Notifier, NotifierConfigError, apprise_url

ROOT = Path(__file__).resolve().parent.parent
NOW = 1_767_258_000.0  # 2026-01-01T09:00:00Z
SLACK = "https://hooks.slack.com/services/T0SECRET/B0SECRET/s3cr3tT0k3n"
TEAMS = ("https://prod-12.westeurope.logic.azure.com:443/workflows/4f1c2e/triggers/manual/paths/invoke"
         "?api-version=2016-06-01&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig=AbC123xyz")


def run_ao(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AO_", "SLACK_", "HOOK_"))}
    base.update(env or {})
    proc = subprocess.run([sys.executable, "-m", "ao", *args], capture_output=True, text=True, env=base, cwd=cwd,
                          timeout=60)
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr
    return proc


# ------------------------------------------------------------------------------------------ Apprise URLs

URLS = [
    ("slack", {"webhook": SLACK}, "slack://T0SECRET/B0SECRET/s3cr3tT0k3n"),
    ("slack", {"webhook": SLACK + "/", "channel": "#agents", "username": "ao bot"},
     "slack://ao%20bot@T0SECRET/B0SECRET/s3cr3tT0k3n/%23agents"),
    ("slack", {"webhook": "https://hooks.slack.com/triggers/T01/123/abc"}, "https://hooks.slack.com/triggers/T01/123/abc"),
    ("discord", {"webhook": "https://discord.com/api/webhooks/1234567/tok_en-x"}, "discord://1234567/tok_en-x"),
    ("discord", {"webhook": "https://discordapp.com/api/webhooks/1234567/tok", "username": "ao"}, "discord://ao@1234567/tok"),
    ("teams", {"webhook": TEAMS}, TEAMS),
    ("webhook", {"url": "https://ops.example.com/hooks/ao?x=1"}, "jsons://ops.example.com/hooks/ao?x=1"),
    ("webhook", {"url": "http://127.0.0.1:8080/hook"}, "json://127.0.0.1:8080/hook"),
    ("email", {"to": "ops@example.com", "smtp": "smtp.example.com", "from": "ao@example.com"},
     "mailtos://smtp.example.com:587?to=ops@example.com&from=ao@example.com&mode=starttls&smtp=smtp.example.com"),
    ("email", {"to": ["a@example.com", "b@example.org"], "smtp": "mail.example.com:465", "secure": "ssl",
               "username": "me@example.com", "password": "p@ss/w:rd"},
     "mailtos://me%40example.com:p%40ss%2Fw%3Ard@mail.example.com:465?to=a@example.com,b@example.org"
     "&from=me@example.com&mode=ssl&smtp=mail.example.com"),
    ("email", {"to": "ops@example.com", "smtp": "localhost:2525", "from": "ao@example.com", "secure": "none"},
     "mailto://localhost:2525?to=ops@example.com&from=ao@example.com&mode=insecure&smtp=localhost"),
    ("ntfy", {"topic": "ao-alerts"}, "ntfys://ntfy.sh/ao-alerts?format=markdown"),
    ("ntfy", {"topic": "ao", "server": "http://10.0.0.5:8080", "token": "tk_abc123"},
     "ntfy://10.0.0.5:8080/ao?format=markdown&auth=token&token=tk_abc123"),
    ("telegram", {"token": "123456:ABC-def_G", "chatId": -1001234}, "tgram://123456:ABC-def_G/-1001234"),
    ("telegram", {"token": "123456:ABC", "chatId": "@ao_alerts"}, "tgram://123456:ABC/%40ao_alerts"),
    ("apprise", {"url": "pover://user@token"}, "pover://user@token"),
    ("log", {}, None),
]


@pytest.mark.parametrize("plugin,cfg,expected", URLS, ids=[f"{u[0]}-{i}" for i, u in enumerate(URLS)])
def test_apprise_url_per_plugin(plugin, cfg, expected):
    assert apprise_url("n", {"plugin": plugin, **cfg}) == expected


@pytest.mark.parametrize("plugin,cfg,expected", [u for u in URLS if u[2] and u[0] != "apprise"],
                         ids=[f"{u[0]}-{i}" for i, u in enumerate(URLS) if u[2] and u[0] != "apprise"])
def test_apprise_understands_every_url_we_build(plugin, cfg, expected):
    apprise = notify._apprise()
    service = apprise.Apprise.instantiate(expected)
    assert service is not None, expected
    if plugin == "email":
        assert [t[1] for t in service.targets] == [cfg["to"]] if isinstance(cfg["to"], str) else cfg["to"]
        assert service.smtp_host == cfg["smtp"].split(":")[0]
        if "password" in cfg:
            assert (service.user, service.password) == (cfg["username"], cfg["password"])
    if plugin == "ntfy" and "token" in cfg:
        assert service.token == cfg["token"]


def test_desktop_url_depends_on_the_platform():
    assert notify.desktop_urls("darwin") == ("macosx://",)
    assert notify.desktop_urls("win32") == ("windows://",)
    assert notify.desktop_urls("linux")[0] == "dbus://"
    assert apprise_url("desktop", {"plugin": "desktop"}) == notify.desktop_urls()[0]


def test_bad_settings_raise_without_echoing_the_value():
    with pytest.raises(NotifierConfigError) as err:
        apprise_url("s", {"plugin": "slack", "webhook": "https://hooks.slack.com/services/only-one-s3cr3t"})
    assert err.value.key == "webhook" and "s3cr3t" not in str(err.value)
    with pytest.raises(NotifierConfigError, match="retired Office 365"):
        apprise_url("t", {"plugin": "teams", "webhook": "https://acme.webhook.office.com/webhookb2/x/IncomingWebhook/y"})


BAD_NOTIFIERS = """\
projects:
  app:
    path: ./app
notifiers:
  s: {plugin: slack, webhook: "https://hooks.slack.com/services/x"}
  d: {plugin: discord, webhook: "https://discord.com/api/webhooks/abc/x", timeout: 0s}
  t: {plugin: teams, webhook: "https://example.com/teams"}
  e: {plugin: email, to: [nobody], smtp: "smtp://mail", password: pw}
  n: {plugin: ntfy, topic: "a b", server: "https://ntfy.example.com/sub"}
  g: {plugin: telegram, token: "${TG_TOKEN}", chatId: "x"}
  w: {plugin: webhook, url: "http://:80/x", headers: {"Bad Header": x}}
  ok: {plugin: email, to: ops@example.com, smtp: "smtp.example.com:587", username: me@example.com}
"""


def test_config_validate_reports_every_bad_notifier_key(tmp_path):
    path = tmp_path / "agent-orchestrator.yaml"
    path.write_text(BAD_NOTIFIERS)
    proc = run_ao("config", "validate", "--file-only", str(path), env={"TG_TOKEN": "not-a-token-s3cr3t"})
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    where = [(line.split(": ", 1)[0].split(":", 1)[1], line.rsplit("(at ", 1)[1].rstrip(")")) for line in lines]
    assert where == [
        ("5:31", "notifiers.s.webhook"),
        ("6:33", "notifiers.d.webhook"), ("6:84", "notifiers.d.timeout"),
        ("7:31", "notifiers.t.webhook"),
        ("8:6", "notifiers.e"), ("8:26", "notifiers.e.to"), ("8:42", "notifiers.e.smtp"),
        ("8:67", "notifiers.e.password"),
        ("9:28", "notifiers.n.topic"), ("9:43", "notifiers.n.server"),
        ("10:32", "notifiers.g.token"), ("10:55", "notifiers.g.chatId"),
        ("11:29", "notifiers.w.url"), ("11:54", "notifiers.w.headers"),
    ], proc.stderr
    assert "set from:" in proc.stderr and "password needs a username" in proc.stderr
    assert "s3cr3t" not in proc.stderr + proc.stdout  # a bad secret is reported, never shown


def test_every_plugin_validates(tmp_path):
    text = textwrap.dedent(f"""\
        projects:
          app:
            path: ./app
        notifiers:
          slack: {{plugin: slack, webhook: "{SLACK}", channel: "#ops"}}
          discord: {{plugin: discord, webhook: "https://discord.com/api/webhooks/1/x"}}
          teams: {{plugin: teams, webhook: "{TEAMS}"}}
          hook: {{plugin: webhook, url: "https://ops.example.com/x", headers: {{Authorization: "Bearer t"}}, timeout: 3s}}
          mail: {{plugin: email, to: [ops@example.com], from: ao@example.com, smtp: smtp.example.com, secure: ssl}}
          push: {{plugin: ntfy, topic: ao, token: tk_x}}
          tg: {{plugin: telegram, token: "1:A", chatId: 5}}
          raw: {{plugin: apprise, url: "pover://u@t"}}
          desk: {{plugin: desktop}}
          lg: {{plugin: log}}
        notificationRouting:
          urgent: [slack, discord, teams, hook, mail, push, tg, raw, desk, lg, log, desktop]
        """)
    path = tmp_path / "agent-orchestrator.yaml"
    path.write_text(text)
    cfg = config_mod.load(path, env={})
    assert set(notify.build_notifiers(cfg)) == {"slack", "discord", "teams", "hook", "mail", "push", "tg", "raw",
                                                "desk", "lg", "log", "desktop"}
    assert notify.build_notifiers(cfg)["hook"].timeout == 3.0
    assert notify.build_notifiers(cfg)["slack"].timeout == notify.DEFAULT_TIMEOUT


# ---------------------------------------------------------------------------------------- notifications

def action(**changes) -> Action:
    fields = dict(project="app", session="app-1", reaction="ci-failed", action="escalate", priority="urgent",
                  notifiers=("slack", "log", "slack"), title="app-1: ci-failed needs a human",
                  text="ao stopped handling this on its own: retries used up.", occurrence="abc", reason="retries used up",
                  fact={"pr_url": "https://github.com/o/r/pull/7"})
    fields.update(changes)
    return Action(**fields)


def test_a_situation_that_comes_back_in_a_new_budget_is_a_new_notification():
    first = notify.from_action(action(budget=1000), NOW)
    again = notify.from_action(action(budget=1000), NOW + 60)  # the same decision, taken again after a crash
    later = notify.from_action(action(budget=5000), NOW + 600)  # cleared, then the same occurrence came back
    assert first.id == again.id != later.id


def test_webhook_payload_is_exact():
    n = notify.from_action(action(), NOW)
    assert n.notifiers == ("slack", "log")  # a name routed twice is sent to once
    assert n.payload() == {
        "id": notify.notification_id("app", "app-1", "ci-failed", "abc", "escalate"),
        "type": "escalation", "priority": "urgent", "session": "app-1", "project": "app",
        "title": "app-1: ci-failed needs a human", "body": "ao stopped handling this on its own: retries used up.",
        "pr_url": "https://github.com/o/r/pull/7", "timestamp": "2026-01-01T09:00:00Z",
    }
    project_wide = notify.from_action(action(session=None, reaction="all-complete", action="notify", priority=None,
                                             notifiers=(), fact={}), NOW + 0.5)
    assert (project_wide.type, project_wide.priority, project_wide.session, project_wide.pr_url,
            project_wide.notifiers) == ("all-complete", "info", None, None, ("log",))  # never nowhere
    assert project_wide.payload()["timestamp"] == "2026-01-01T09:00:00.500Z"


def test_notification_ids_are_deterministic_per_decision():
    one = notify.from_action(action(), NOW)
    assert notify.from_action(action(), NOW + 99).id == one.id  # the same decision, taken again
    assert notify.from_action(action(occurrence="def"), NOW).id != one.id
    assert notify.from_action(action(action="notify"), NOW).id != one.id
    assert notify.from_action(action(session="app-2"), NOW).id != one.id
    assert Notification.from_dict(json.loads(json.dumps(one.to_dict()))) == one


def test_test_notification_is_rendered_from_its_template():
    n = notify.build_test_notification("warning", ["log", "log", "hook"], NOW)
    assert n.title == "ao: test notification (warning)" and "priority **warning**" in n.body
    assert n.type == "test" and n.notifiers == ("log", "hook")
    assert notify.build_test_notification("info", [], NOW).id != notify.build_test_notification("info", [], NOW).id


# ------------------------------------------------------------------------------------------------ sending

def sample(**changes) -> Notification:
    return notify.from_action(action(**changes), NOW)


def test_webhook_posts_exactly_our_payload_with_configured_headers(receiver):
    r = receiver()
    hook = Notifier("hook", "webhook", {"plugin": "webhook", "url": r.url(), "headers": {"X-Team": "ops"}}, timeout=3)
    n = sample()
    hook.send(n)
    (got,) = r.wait_for(1)
    assert (got.method, got.path) == ("POST", "/hook")
    assert got.json == n.payload()
    assert got.headers["Content-Type"] == "application/json" and got.headers["X-Team"] == "ops"
    assert got.headers["Idempotency-Key"] == n.id
    hook.close()


def test_webhook_errors_say_whether_a_retry_can_help(receiver):
    r = receiver({("POST", "/hook")})
    wrong_path = Notifier("h", "webhook", {"url": r.url("/elsewhere")}, timeout=3)
    with pytest.raises(DeliveryError) as err:
        wrong_path.send(sample())
    assert err.value.permanent and "HTTP 404" in str(err.value)
    r.mode = "fail"
    with pytest.raises(DeliveryError) as err:
        Notifier("h", "webhook", {"url": r.url()}, timeout=3).send(sample())
    assert not err.value.permanent and "HTTP 500" in str(err.value)
    r.stop()
    with pytest.raises(DeliveryError) as err:
        Notifier("h", "webhook", {"url": r.url()}, timeout=3).send(sample())
    assert not err.value.permanent and "Connection refused" in str(err.value)
    assert r.rejected == [("POST", "/elsewhere", 404)]


def test_ntfy_goes_through_apprise_with_markdown_priority_and_token(receiver):
    r = receiver({("POST", "/")})
    cfg = {"plugin": "ntfy", "topic": "ao-test", "server": r.url("").rstrip("/"), "token": "tk_S3CRETtoken"}
    Notifier("push", "ntfy", cfg, timeout=3).send(sample())
    (got,) = r.wait_for(1)
    assert got.json == {"topic": "ao-test", "title": "app-1: ci-failed needs a human",
                        "message": "ao stopped handling this on its own: retries used up."}
    assert got.headers["Authorization"] == "Bearer tk_S3CRETtoken"
    assert got.headers["X-Markdown"] == "yes" and got.headers["X-Priority"] == "max"  # urgent rings


def test_raw_apprise_url_is_used_as_written(receiver):
    r = receiver({("POST", "/apprise")})
    Notifier("raw", "apprise", {"plugin": "apprise", "url": f"json://127.0.0.1:{r.port}/apprise"}, timeout=3).send(
        sample(priority="warning"))
    (got,) = r.wait_for(1)
    assert got.json == {"version": "1.0", "title": "app-1: ci-failed needs a human", "type": "warning",
                        "message": "ao stopped handling this on its own: retries used up.", "attachments": []}


def test_apprise_failure_is_a_delivery_error_with_apprise_s_reason(receiver):
    r = receiver({("POST", "/")})
    r.stop()  # nothing listens
    with pytest.raises(DeliveryError) as err:
        Notifier("push", "ntfy", {"topic": "t", "server": r.url("").rstrip("/")}, timeout=2).send(sample())
    assert err.value.permanent is False and str(err.value).startswith("ntfy: ") and "onnection" in str(err.value)


def test_desktop_without_a_desktop_is_a_permanent_failure(monkeypatch):
    monkeypatch.setattr(notify, "desktop_urls", lambda platform=None: ("nosuchservice://",))
    with pytest.raises(DeliveryError) as err:
        Notifier("desktop", "desktop", {"plugin": "desktop"}).send(sample())
    assert err.value.permanent and "desktop notifications are not available" in str(err.value)


def test_log_notifier_writes_the_console_and_the_orchestrator_log(tmp_path, capsys):
    Notifier("log", "log", {"plugin": "log"}, data_dir=tmp_path).send(sample())
    err = capsys.readouterr().err
    assert err == "ao: [urgent] app-1: ci-failed needs a human https://github.com/o/r/pull/7\n"
    text = (tmp_path / "logs" / "orchestrator.log").read_text()
    assert "Z [urgent] app-1: ci-failed needs a human" in text
    assert "\n    ao stopped handling this on its own: retries used up.\n" in text


# ------------------------------------------------------------------------------------------------ secrets

def test_secret_fragments_cover_the_forms_a_secret_takes():
    got = notify.secret_fragments([SLACK, "p@ss/w:rd!", "123456:ABCdefGHI"])
    assert {SLACK, "T0SECRET", "B0SECRET", "s3cr3tT0k3n", "p@ss/w:rd!", "p%40ss%2Fw%3Ard%21",
            "123456:ABCdefGHI", "ABCdefGHI"} <= got
    assert not {"services", "hooks.slack.com", "https:"} & got
    slack_url = apprise_url("s", {"plugin": "slack", "webhook": SLACK})
    assert events.scrub(f"failed: {slack_url}", got) == "failed: slack://***/***/***"


def test_events_and_logs_are_scrubbed(tmp_path):
    secrets = notify.secret_fragments([SLACK])
    events.append(tmp_path, "notification.failed", secrets=secrets, error=f"bad {SLACK}", nested={"x": ["T0SECRET"]})
    events.log(tmp_path, "posting to s3cr3tT0k3n failed", secrets=secrets, console=None, detail="B0SECRET")
    (event,) = events.read(tmp_path)
    assert event["error"] == "bad ***" and event["nested"] == {"x": ["***"]}
    assert "SECRET" not in (tmp_path / "logs" / "orchestrator.log").read_text()
    assert "s3cr3t" not in (tmp_path / "events.jsonl").read_text()


def test_config_show_hides_notifier_secrets(tmp_path):
    path = tmp_path / "agent-orchestrator.yaml"
    path.write_text(textwrap.dedent("""\
        projects:
          app:
            path: ./app
        notifiers:
          hook: {plugin: webhook, url: "${HOOK_URL}", headers: {Authorization: "Bearer ${HOOK_TOKEN}"}}
          slack: {plugin: slack, webhook: "${SLACK_URL}"}
        """))
    env = {"HOOK_URL": "https://ops.example.com/hook/Zx9S3CRETpath", "HOOK_TOKEN": "tok-S3CRET-42",
           "SLACK_URL": SLACK, "HOME": str(tmp_path)}
    for flags in ([], ["--json"]):
        proc = run_ao("config", "show", "--config", str(path), *flags, env=env)
        assert proc.returncode == 0, proc.stderr
        out = proc.stdout + proc.stderr
        assert "S3CRET" not in out and "s3cr3t" not in out and "Zx9" not in out
