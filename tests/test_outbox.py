"""The outbox over real HTTP: strict receivers on 127.0.0.1 (ephemeral ports), exact payloads, outages and
restarts, a hanging service, duplicate routes, the retry schedule under frozen time, events and logs, the
engine end to end, and ``ao notify test`` through the real CLI."""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import httpx  # noqa: F401 - imported up front, so timing tests measure delivery, not the first import
import pytest
from freezegun import freeze_time
from receiver import Receiver, eventually, monotonic

from ao import config as config_mod
from ao import engine as engine_mod
from ao import events, facts, notify
from ao.notify import DeliveryError, Notification, Notifier
from ao.outbox import DEADLINE_GRACE, FAILED, PENDING, SENT, NotifyExecutor, Outbox, RetryPolicy, after_attempt, Delivery

NOW = 1_767_258_000.0  # 2026-01-01T09:00:00Z


def hook(name: str, r: Receiver, timeout: float = 3.0, path: str = "/hook") -> Notifier:
    return Notifier(name, "webhook", {"plugin": "webhook", "url": r.url(path)}, timeout=timeout)


def make_outbox(data_dir: Path, *notifiers: Notifier, **kwargs) -> Outbox:
    kwargs.setdefault("console", io.StringIO())
    return Outbox(data_dir, {n.name: n for n in notifiers}, **kwargs)


def note(notifiers, n: int = 1, priority: str = "urgent") -> Notification:
    return Notification(id=f"n{n:04d}", type="agent-stuck", priority=priority, session=f"app-{n}", project="app",
                        title=f"app-{n}: agent is stuck", body=f"body {n}\n\n- **markdown**", pr_url=None,
                        timestamp=NOW, notifiers=tuple(notifiers))


def kinds(data_dir: Path) -> list[tuple]:
    return [(e["type"], e["notifier"], e["attempt"], e.get("final")) for e in events.read(data_dir)]


# ------------------------------------------------------------------------------------------- the basics

def test_enqueue_writes_first_and_is_idempotent(tmp_path, receiver):
    r = receiver()
    box = make_outbox(tmp_path, hook("hook", r))
    n = note(["hook"])
    assert box.enqueue(n, NOW) is True
    on_disk = json.loads((tmp_path / "outbox" / "n0001.json").read_text())
    assert on_disk["notification"] == n.to_dict() and on_disk["deliveries"]["hook"]["state"] == PENDING
    assert r.requests == []  # queued, not sent
    assert box.enqueue(n, NOW + 1) is False  # the same id is never queued twice
    (result,) = box.deliver_due(NOW)
    assert (result.ok, result.notifier, result.attempt) == (True, "hook", 1)
    assert [q.json for q in r.requests] == [n.payload()]
    assert not (tmp_path / "outbox" / "n0001.json").exists()
    assert box.get("n0001").deliveries["hook"] == Delivery(SENT, 1, NOW, "", NOW)
    assert (tmp_path / "outbox" / "sent" / "n0001.json").is_file()
    assert box.enqueue(n, NOW + 2) is False  # not even once it has been sent
    assert box.deliver_due(NOW + 3600) == []
    assert len(r.requests) == 1
    assert kinds(tmp_path) == [("notification.sent", "hook", 1, None)]


def test_fan_out_marks_each_notifier_on_its_own(tmp_path, receiver):
    up, down = receiver(), receiver()
    down.stop()
    box = make_outbox(tmp_path, hook("up", up), hook("down", down))
    box.enqueue(note(["up", "down"]), NOW)
    results = {r.notifier: r for r in box.deliver_due(NOW)}
    assert results["up"].ok and not results["down"].ok and not results["down"].final
    assert "Connection refused" in results["down"].error and results["down"].next_attempt_at == NOW + 5
    record = box.get("n0001")
    assert record.deliveries["up"].state == SENT and record.deliveries["down"].state == PENDING
    assert (tmp_path / "outbox" / "n0001.json").is_file()  # still pending for one notifier
    failed = [e for e in events.read(tmp_path) if e["type"] == "notification.failed"]
    assert failed[0]["next_attempt_at"] == "2026-01-01T09:00:05Z" and failed[0]["final"] is False
    assert box.deliver_due(NOW + 4) == []  # not due yet, and `up` is never sent again
    assert len(up.requests) == 1


def test_outage_with_restarts_delivers_exactly_once(tmp_path, receiver):
    r, other = receiver(), receiver()
    r.stop()  # the service is down
    n = note(["hook", "other"])
    first = make_outbox(tmp_path, hook("hook", r), hook("other", other))
    first.enqueue(n, NOW)
    assert [(x.notifier, x.ok) for x in first.deliver_due(NOW)] == [("hook", False), ("other", True)]
    first.close()

    # ao restarts during the outage: new notifier and outbox objects over the same data dir
    second = make_outbox(tmp_path, hook("hook", r), hook("other", other))
    assert second.deliver_due(NOW + 1) == []  # the retry schedule survived: not due before NOW + 5
    assert [(x.notifier, x.ok, x.attempt) for x in second.deliver_due(NOW + 5)] == [("hook", False, 2)]
    assert second.get(n.id).deliveries["hook"].next_attempt_at == NOW + 5 + 10
    second.close()

    r.start()  # the service is back, on the same port; ao restarts again
    third = make_outbox(tmp_path, hook("hook", r), hook("other", other))
    assert [(x.notifier, x.ok, x.attempt) for x in third.deliver_due(NOW + 15)] == [("hook", True, 3)]
    assert third.deliver_due(NOW + 10_000) == []
    assert [q.json for q in r.requests] == [n.payload()]  # exactly once, and exactly our payload
    assert [q.json for q in other.requests] == [n.payload()]  # the healthy one was never sent again
    got = kinds(tmp_path)
    assert sorted(got[:2]) == [("notification.failed", "hook", 1, False), ("notification.sent", "other", 1, None)]
    assert got[2:] == [("notification.failed", "hook", 2, False), ("notification.sent", "hook", 3, None)]
    assert (tmp_path / "outbox" / "sent" / f"{n.id}.json").is_file()


def test_a_hanging_receiver_costs_at_most_its_timeout(tmp_path, receiver):
    fast1, fast2, slow = receiver(), receiver(), receiver()
    slow.mode = "hang"
    box = make_outbox(tmp_path, hook("fast1", fast1), hook("fast2", fast2), hook("slow", slow, timeout=1.0))
    for i in (1, 2, 3):
        box.enqueue(note(["slow", "fast1", "fast2"], i), NOW)
    start = monotonic()
    results = box.deliver_due(NOW)
    elapsed = monotonic() - start
    assert elapsed < 1.0 + DEADLINE_GRACE + 0.75, elapsed  # bounded by the slow notifier's timeout
    assert len(fast1.requests) == 3 and len(fast2.requests) == 3
    assert max(q.at for q in fast1.requests + fast2.requests) - start < 0.75  # never waited for the slow one
    slow_results = [x for x in results if x.notifier == "slow"]
    assert len(slow_results) == 3 and not any(x.ok or x.final for x in slow_results)
    assert {x.error for x in slow_results} == {"webhook: no answer within 1s"}
    assert all(box.get(f"n000{i}").deliveries["slow"].next_attempt_at == NOW + 5 for i in (1, 2, 3))
    assert all(box.get(f"n000{i}").deliveries["fast1"].state == SENT for i in (1, 2, 3))


def test_a_hanging_receiver_only_ties_up_its_own_slots(tmp_path, receiver):
    fast, slow = receiver(), receiver()
    slow.mode = "hang"
    box = make_outbox(tmp_path, hook("fast", fast), hook("slow", slow, timeout=0.3), max_workers=4, per_notifier=2)
    for i in range(6):
        box.enqueue(note(["slow", "fast"], i), NOW)
    start = monotonic()
    results = box.deliver_due(NOW)
    assert len(fast.requests) == 6 and max(q.at for q in fast.requests) - start < 0.75
    assert sorted((x.notifier, x.ok) for x in results) == [("fast", True)] * 6 + [("slow", False)] * 6
    assert monotonic() - start < 3 * (0.3 + DEADLINE_GRACE) + 0.75  # three waves of two slow attempts


def test_duplicate_names_in_a_notification_deliver_once(tmp_path, receiver):
    r = receiver()
    box = make_outbox(tmp_path, hook("hook", r))
    box.enqueue(note(["hook", "hook", "hook"]), NOW)
    assert len(box.deliver_due(NOW)) == 1
    assert len(r.requests) == 1 and list(box.get("n0001").deliveries) == ["hook"]


def test_a_rejected_request_is_not_retried(tmp_path, receiver):
    r = receiver({("POST", "/hook")})
    console = io.StringIO()
    box = make_outbox(tmp_path, hook("hook", r, path="/wrong"), console=console)
    box.enqueue(note(["hook"]), NOW)
    (result,) = box.deliver_due(NOW)
    assert not result.ok and result.final and "HTTP 404" in result.error
    assert r.rejected == [("POST", "/wrong", 404)]
    assert (tmp_path / "outbox" / "failed" / "n0001.json").is_file()
    assert "gave up sending [urgent] 'app-1: agent is stuck' to hook after 1 attempt: webhook: HTTP 404" in console.getvalue()
    assert box.deliver_due(NOW + 10_000) == []


def test_unknown_notifier_fails_for_good(tmp_path):
    box = make_outbox(tmp_path)
    box.enqueue(note(["gone"]), NOW)
    (result,) = box.deliver_due(NOW)
    assert not result.ok and result.final and result.error == "notifier 'gone' is not configured"


# ------------------------------------------------------------------------------------ retries and time

def test_backoff_schedule_under_frozen_time(tmp_path, receiver):
    r = receiver()
    r.stop()
    console = io.StringIO()
    with freeze_time("2026-01-01 09:00:00") as clock:
        box = make_outbox(tmp_path, hook("hook", r), console=console)
        box.enqueue(note(["hook"]), time.time())
        delays = []
        for attempt in range(1, 9):
            now = time.time()
            (result,) = box.deliver_due(now)
            assert result.attempt == attempt and not result.ok
            if result.final:
                break
            delays.append(result.next_attempt_at - now)
            clock.tick(dt.timedelta(seconds=result.next_attempt_at - now - 0.5))
            assert box.deliver_due(time.time()) == []  # half a second early: nothing happens
            clock.tick(dt.timedelta(seconds=0.5))
        assert delays == [5, 10, 20, 40, 80, 160, 300]  # capped at 5 minutes
        assert result.attempt == 8 and result.final and box.get("n0001").deliveries["hook"].state == FAILED
        clock.tick(dt.timedelta(hours=1))
        assert box.deliver_due(time.time()) == []
    failed = [e for e in events.read(tmp_path) if e["type"] == "notification.failed"]
    assert [e["final"] for e in failed] == [False] * 7 + [True]
    assert failed[0]["ts"].startswith("2026-01-01T09:00:00") and failed[1]["next_attempt_at"] == "2026-01-01T09:00:15Z"
    line = "gave up sending [urgent] 'app-1: agent is stuck' to hook after 8 attempts: webhook: ConnectError"
    assert console.getvalue().startswith(f"ao: {line}")
    assert line in (tmp_path / "logs" / "orchestrator.log").read_text()
    assert r.requests == []


def test_retry_policy_is_configurable_and_pure():
    policy = RetryPolicy(base=1, factor=3, cap=10, max_attempts=4)
    assert [policy.delay(n) for n in range(1, 5)] == [1, 3, 9, 10]
    d = Delivery(next_attempt_at=0)
    d = after_attempt(d, 1, False, "boom", False, 100, policy)
    assert d == Delivery(PENDING, 1, 101, "boom", None)
    d = after_attempt(d, 4, False, "boom", False, 200, policy)
    assert d.state == FAILED
    assert after_attempt(Delivery(), 1, False, "no", True, 0, policy).state == FAILED  # permanent
    assert after_attempt(Delivery(), 1, True, "", False, 7, policy) == Delivery(SENT, 1, 0.0, "", 7)


class GatedNotifier(Notifier):
    """Answers only when ``gate`` is set; ``fail`` makes it answer with an error."""

    def __init__(self, name: str, timeout: float, fail: bool = False) -> None:
        super().__init__(name, "gated", {}, timeout=timeout)
        self.gate = threading.Event()
        self.fail = fail
        self.calls = 0

    def send(self, n: Notification) -> None:
        self.calls += 1
        self.gate.wait(10)
        if self.fail:
            raise DeliveryError("late failure")


def test_an_answer_after_the_timeout_still_counts_if_nothing_was_retried(tmp_path):
    late = GatedNotifier("late", timeout=0.2)
    box = make_outbox(tmp_path, late)
    box.enqueue(note(["late"]), NOW)
    (result,) = box.deliver_due(NOW)
    assert not result.ok and result.error == "gated: no answer within 0.2s"
    late.gate.set()  # the service answers after all: it got the message, so no retry may send it again
    eventually(lambda: box.get("n0001").deliveries["late"].state == SENT)
    assert box.deliver_due(NOW + 10_000) == [] and late.calls == 1
    assert kinds(tmp_path) == [("notification.failed", "late", 1, False), ("notification.sent", "late", 1, None)]


def test_a_failure_after_the_timeout_changes_nothing(tmp_path):
    late = GatedNotifier("late", timeout=0.2, fail=True)
    box = make_outbox(tmp_path, late)
    box.enqueue(note(["late"]), NOW)
    box.deliver_due(NOW)
    late.gate.set()
    eventually(lambda: not any(t.name == "ao-notify-late" for t in threading.enumerate()))  # it has answered
    after = box.get("n0001").deliveries["late"]
    assert (after.state, after.attempts, after.last_error) == (PENDING, 1, "gated: no answer within 0.2s")
    assert len(events.read(tmp_path)) == 1


def test_two_outboxes_over_one_data_dir_never_send_a_pair_twice(tmp_path, receiver):
    r = receiver()
    boxes = [make_outbox(tmp_path, hook("hook", r)) for _ in range(2)]
    for i in range(40):
        boxes[i % 2].enqueue(note(["hook"], i), NOW)
    threads = [threading.Thread(target=b.deliver_due, args=(NOW,)) for b in boxes]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    ids = [q.json["id"] for q in r.requests]
    assert sorted(ids) == sorted(f"n{i:04d}" for i in range(40))  # every one, once


def test_a_corrupt_record_is_quarantined_not_dropped(tmp_path, receiver):
    r = receiver()
    console = io.StringIO()
    box = make_outbox(tmp_path, hook("hook", r), console=console)
    (tmp_path / "outbox").mkdir()
    (tmp_path / "outbox" / "broken.json").write_text("{not json")
    box.enqueue(note(["hook"]), NOW)
    assert [x.ok for x in box.deliver_due(NOW)] == [True]
    assert (tmp_path / "outbox" / "broken.corrupt").read_text() == "{not json"
    assert "corrupt record broken.json" in console.getvalue()


# ------------------------------------------------------------------------------------- engine end to end

ENGINE_CONFIG = """
dataDir: ./data
projects:
  app:
    path: ./app
notifiers:
  hook: {{plugin: webhook, url: "{url}"}}
notificationRouting:
  urgent: [hook, log, hook]
  info: [hook]
"""


def engine_setup(tmp_path: Path, r: Receiver):
    path = tmp_path / "agent-orchestrator.yaml"
    path.write_text(textwrap.dedent(ENGINE_CONFIG.format(url=r.url())))
    cfg = config_mod.load(path, env={})
    compiled = engine_mod.compile_config(cfg)["app"]
    box = Outbox.from_config(cfg, console=io.StringIO())
    return cfg, engine_mod.Engine(compiled), box


def cycle(engine, box: Outbox, sessions: dict, now: int) -> list:
    observed = [facts.complete({"session": s, "project": "app", **f}, now) for s, f in sessions.items()]
    done = engine_mod.run_cycle(engine, observed, now, NotifyExecutor(box, clock=lambda: float(now)))
    assert all(outcome.ok for _, outcome in done)
    return [a for a, _ in done]


def test_engine_notification_is_queued_routed_once_and_delivered_exactly(tmp_path, receiver):
    r = receiver()
    cfg, engine, box = engine_setup(tmp_path, r)
    now = int(NOW)
    (action,) = cycle(engine, box, {"app-1": {"activity": "waiting_input"}, "app-2": {}}, now)
    assert action.notifiers == ("hook", "log")  # the duplicate route is gone
    assert box.get(notify.from_action(action, now).id) is not None  # queued before anything is sent
    results = box.deliver_due(now)
    assert sorted((x.notifier, x.ok) for x in results) == [("hook", True), ("log", True)]
    (got,) = r.requests
    assert got.json == {
        "id": notify.notification_id("app", "app-1", "agent-needs-input", str(now), "notify", now),
        "type": "agent-needs-input", "priority": "urgent", "session": "app-1", "project": "app",
        "title": "app-1: agent is waiting for your input",
        "body": "The agent asked a question or needs a permission and will not continue until someone answers.\n"
                "Answer it with `ao attach app-1` or `ao send app-1 \"...\"`.",
        "pr_url": None, "timestamp": "2026-01-01T09:00:00Z",
    }
    assert cycle(engine, box, {"app-1": {"activity": "waiting_input", "last_activity_at": now}}, now + 30) == []
    # the same decision taken again (a crash before the ledger was saved) is not queued again
    assert NotifyExecutor(box, clock=lambda: NOW + 60).execute(action).ok
    assert box.deliver_due(now + 60) == [] and len(r.requests) == 1
    assert "[urgent] app-1: agent is waiting for your input" in (cfg.data_dir / "logs" / "orchestrator.log").read_text()
    engine.close()


def test_all_complete_summary_end_to_end(tmp_path, receiver):
    r = receiver()
    cfg, engine, box = engine_setup(tmp_path, r)
    now = int(NOW)
    merged = {"pr_state": "merged", "activity": "exited", "runtime_alive": False}
    sessions = {"app-1": {**merged, "issue": "#12 Add login", "pr_url": "https://github.com/o/r/pull/5",
                          "age_seconds": 5400},
                "app-2": {**merged, "issue": "#13", "pr_url": "https://github.com/o/r/pull/6", "age_seconds": 300},
                "app-3": {"activity": "exited", "runtime_alive": False, "issue": "#14", "age_seconds": 90}}
    actions = cycle(engine, box, sessions, now)
    (summary,) = [a for a in actions if a.reaction == "all-complete"]
    assert summary.notifiers == ("hook",) and summary.priority == "info"
    box.deliver_due(now)
    payloads = [q.json for q in r.requests]
    (got,) = [p for p in payloads if p["type"] == "all-complete"]
    assert got["title"] == "app: all 3 sessions finished" and got["session"] is None
    assert got["body"] == (
        "| session | issue | PR | status | duration |\n"
        "| --- | --- | --- | --- | --- |\n"
        "| app-1 | #12 Add login | https://github.com/o/r/pull/5 | merged | 1h30m |\n"
        "| app-2 | #13 | https://github.com/o/r/pull/6 | merged | 5m |\n"
        "| app-3 | #14 | - | exited | 1m30s |")
    engine.close()


# ------------------------------------------------------------------------------------ ao notify test (CLI)

CLI_CONFIG = """\
dataDir: ./data
projects:
  app:
    path: ./app
notifiers:
  hook:
    plugin: webhook
    url: "${{HOOK_URL}}"
    headers: {{Authorization: "Bearer ${{HOOK_TOKEN}}"}}
  broken:
    plugin: webhook
    url: "{broken}"
    headers: {{Authorization: "Bearer ${{HOOK_TOKEN}}"}}
notificationRouting:
  urgent: [hook, log]
  warning: [broken]
"""
TOKEN = "tok-S3CRET-4242"
PATH_SECRET = "Zq9S3CRETpath"


def run_ao(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AO_", "HOOK_"))}
    proc = subprocess.run([sys.executable, "-m", "ao", *args], capture_output=True, text=True,
                          env={**base, **env}, cwd=cwd, timeout=60)
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr
    return proc


@pytest.fixture
def cli(tmp_path, receiver):
    ok = receiver({("POST", f"/hook/{PATH_SECRET}")})
    bad = receiver({("POST", f"/hook/{PATH_SECRET}")})
    bad.mode = "fail"  # answers 500 echoing the path and the Authorization header
    (tmp_path / "agent-orchestrator.yaml").write_text(CLI_CONFIG.format(broken=bad.url(f"/hook/{PATH_SECRET}")))
    env = {"HOOK_URL": ok.url(f"/hook/{PATH_SECRET}"), "HOOK_TOKEN": TOKEN, "HOME": str(tmp_path)}
    return ok, bad, env


def assert_no_secret(*texts: str) -> None:
    for text in texts:
        assert TOKEN not in text and PATH_SECRET not in text and "S3CRET" not in text, text


def test_cli_notify_test_one_notifier(tmp_path, cli):
    ok, _, env = cli
    proc = run_ao("notify", "test", "hook", "--json", env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert [(x["notifier"], x["plugin"], x["ok"], x["error"]) for x in report["results"]] == [("hook", "webhook", True, "")]
    (got,) = ok.requests
    assert got.headers["Authorization"] == f"Bearer {TOKEN}"
    assert got.json["id"] == report["id"] and got.json["type"] == "test" and got.json["priority"] == "info"
    assert got.json["title"] == "ao: test notification (info)"
    assert (tmp_path / "data" / "outbox" / "sent" / f"{report['id']}.json").is_file()  # it went through the outbox


def test_cli_notify_test_by_priority_reports_failures_without_secrets(tmp_path, cli):
    ok, bad, env = cli
    proc = run_ao("notify", "test", "--priority", "urgent", env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "hook" in proc.stdout and "log" in proc.stdout and "sent" in proc.stdout
    assert "ao: [urgent] ao: test notification (urgent)" in proc.stderr  # the log notifier's console line
    assert len(ok.requests) == 1 and ok.requests[0].json["priority"] == "urgent"

    proc = run_ao("notify", "test", "--priority", "warning", env=env, cwd=tmp_path)
    assert proc.returncode == 1
    assert "broken" in proc.stdout and "failed" in proc.stdout and "HTTP 500" in proc.stdout
    proc_json = run_ao("notify", "test", "broken", "--json", env=env, cwd=tmp_path)
    assert proc_json.returncode == 1
    (row,) = json.loads(proc_json.stdout)["results"]
    assert row["error"].startswith("webhook: HTTP 500 Internal Server Error: boom at /hook/*** with")
    assert "'Authorization': '***'" in row["error"]  # the service echoed the secret back; ao never repeats it
    data = tmp_path / "data"
    assert_no_secret(proc.stdout, proc.stderr, proc_json.stdout, proc_json.stderr,
                     (data / "events.jsonl").read_text(), (data / "logs" / "orchestrator.log").read_text())
    for outbox_file in (data / "outbox").rglob("*.json"):
        assert_no_secret(outbox_file.read_text())
    failed = [e for e in events.read(data) if e["type"] == "notification.failed"]
    assert len(failed) == 2 and all(e["final"] for e in failed)  # a test is tried once, no retries left behind


def test_cli_notify_test_input_errors(tmp_path, cli):
    _, _, env = cli
    proc = run_ao("notify", "test", "hok", env=env, cwd=tmp_path)
    assert proc.returncode == 1 and "unknown notifier 'hok' (did you mean 'hook'?)" in proc.stderr
    proc = run_ao("notify", "test", "--priority", "critical", env=env, cwd=tmp_path)
    assert proc.returncode == 2 and "unknown priority 'critical'" in proc.stderr
