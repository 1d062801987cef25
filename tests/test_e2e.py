"""The lifecycle loop end to end: real git, real tmux, the local SCM, the scripted agent, the real engine,
executors and outbox, notifications over real HTTP on 127.0.0.1."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
from sessionkit import ROOT, check_demo_run, git, wait_for

from ao.poller import Poller
from ao.sessions import SpawnRequest


def test_ao_demo_runs_the_whole_workflow_and_leaves_nothing_behind(tmp_path):
    started = time.monotonic()
    run = subprocess.run([sys.executable, "-m", "ao", "demo", "--json"], capture_output=True, text=True,
                         cwd=tmp_path, timeout=180)
    assert run.returncode == 0, run.stderr
    assert time.monotonic() - started < 120
    result = json.loads(run.stdout)
    check_demo_run(result)
    assert sum(1 for e in result["timeline"] if e["what"] == "summary.all_complete") == 1
    leftovers = subprocess.run(["pgrep", "-f", "ao-demo-"], capture_output=True, text=True).stdout.split()
    assert leftovers == []
    assert not list(tmp_path.iterdir())


@pytest.fixture
def hooked(aoenv, receiver):
    """aoenv whose notifications all go to a webhook on a local receiver."""
    rx = receiver()
    aoenv.notify_url = rx.url()
    aoenv.receiver = rx
    return aoenv


def _config(env, **project):
    env.write_config(**project)
    import yaml

    data = yaml.safe_load(env.config.read_text())
    data["notifiers"] = {"hook": {"plugin": "webhook", "url": env.notify_url}}
    data["defaults"] = {"notifiers": ["hook"]}
    env.config.write_text(yaml.safe_dump(data))
    return env.load()


def _notified(rx, kind):
    return [r.json for r in rx.requests if r.json.get("type") == kind]


def test_a_killed_tmux_server_is_reported_as_agent_exited(hooked):
    cfg = _config(hooked)
    poller = Poller(cfg, console=None)
    s = poller.manager.spawn(SpawnRequest(project="app", target="12"))
    assert poller.cycle().errors == []
    hooked.tmux("kill-server")
    first = poller.cycle()  # one failed probe is not enough (SPEC 5)
    assert poller.store.get(s.id).status == "working" and not first.actions
    second = poller.cycle()
    assert poller.store.get(s.id).status == "exited"
    # the only session has ended, so the project is complete too
    assert [a["reaction"] for a in second.actions] == ["agent-exited", "all-complete"]
    assert any(e["type"] == "session.exited" for e in second.events)
    got = wait_for(lambda: _notified(hooked.receiver, "agent-exited"), what="the notification")
    assert got[0]["session"] == s.id and got[0]["priority"] == "urgent"
    poller.cycle()
    assert len(_notified(hooked.receiver, "agent-exited")) == 1  # once, not every cycle
    poller.close()


# A TUI agent at a permission dialog: the dialog stays, the timer line above it is redrawn in place.
REDRAWING_DIALOG = """\
import sys, time
sys.stdout.write("\\x1b[2J\\x1b[H\\n\\nBash command\\n  npm test\\nDo you want to proceed?\\n\\u276f 1. Yes\\n  2. No\\n\\n"
                 "Esc to cancel")
for n in range(100000):
    sys.stdout.write(f"\\x1b[s\\x1b[H* Working... {n / 10:.1f}s\\x1b[K\\x1b[u")
    sys.stdout.flush()
    time.sleep(0.1)
"""


def test_a_question_that_stays_on_screen_pages_once_however_the_pane_redraws(hooked, tmp_path):
    script = tmp_path / "dialog.py"
    script.write_text(REDRAWING_DIALOG)
    cfg = _config(hooked, agentConfig={"command": f"{sys.executable} {script}", "promptDelivery": "none"})
    poller = Poller(cfg, console=None)
    s = poller.manager.spawn(SpawnRequest(project="app", target="12"))

    def pane() -> str:
        return hooked.tmux("capture-pane", "-p", "-t", f"={s.runtime_handle}:").stdout

    wait_for(lambda: "Do you want to proceed?" in pane() and "Working" in pane(), what="the dialog")
    fired = []
    for _ in range(4):
        before = pane()
        wait_for(lambda: pane() != before, what="a redraw")  # every cycle sees a pane that changed
        report = poller.cycle()
        fired += [a for a in report.actions if a["reaction"] == "agent-needs-input"]
        assert poller.store.get(s.id).status == "needs_input"
    assert len(fired) == 1 and fired[0]["ok"], fired
    assert len(_notified(hooked.receiver, "agent-needs-input")) == 1
    poller.close()


def _push_failing_work(env, session):
    """The agent's part, done from outside: commit a failing CI script on the session's branch and push."""
    ws = session.workspace
    (env.root / "ws").write_text(ws)
    import pathlib

    path = pathlib.Path(ws)
    (path / "ci.sh").write_text("echo 'test_x failed: expected 2, got 3'; exit 1\n")
    git("add", "-A", cwd=path)
    git("commit", "-q", "-m", "work", cwd=path)
    git("push", "-q", "-u", "origin", "HEAD", cwd=path)


def _wait_ci(poller, sid, state):
    def seen():
        poller.cycle()
        return poller.store.get(sid).fact.get("ci") == state
    wait_for(seen, timeout=20, what=f"ci {state}")


def test_a_poller_killed_between_decision_and_delivery_sends_exactly_once_after_restart(hooked, monkeypatch):
    cfg = _config(hooked, scm={"plugin": "local", "ci": "sh ci.sh"})
    poller = Poller(cfg, console=None)
    s = poller.manager.spawn(SpawnRequest(project="app", target="12"))
    wait_for(lambda: hooked.received(s.id), what="the prompt")
    _push_failing_work(hooked, s)

    from ao import executors

    real_execute = executors.AgentExecutor.execute

    def killed(self, action):  # the process dies once the decision is durable, before it is executed
        raise KeyboardInterrupt

    monkeypatch.setattr(executors.AgentExecutor, "execute", killed)
    with pytest.raises(KeyboardInterrupt):
        _wait_ci(poller, s.id, "failing")
    monkeypatch.setattr(executors.AgentExecutor, "execute", real_execute)
    assert len(hooked.received(s.id)) == 1  # only the prompt
    assert [e["state"] for _, e in executors.Journal(hooked.data).unsettled()] == ["decided"]

    restarted = Poller(hooked.load(), console=None, clock=lambda: time.time() + 7)  # restarted seconds later
    report = restarted.cycle()
    assert [(a["reaction"], a["ok"], a["error"]) for a in report.actions] == [("ci-failed", True, "")]
    for _ in range(3):
        assert restarted.cycle().actions == []
    messages = wait_for(lambda: len(hooked.received(s.id)) >= 2 and hooked.received(s.id), what="the fix request")
    assert len(messages) == 2 and "CI is failing" in messages[1]["text"] and "test_x failed" in messages[1]["text"]
    restarted.close()


def test_a_poller_killed_after_delivery_before_saving_does_not_send_again(hooked, monkeypatch):
    cfg = _config(hooked, scm={"plugin": "local", "ci": "sh ci.sh"})
    poller = Poller(cfg, console=None)
    s = poller.manager.spawn(SpawnRequest(project="app", target="12"))
    wait_for(lambda: hooked.received(s.id), what="the prompt")
    _push_failing_work(hooked, s)

    from ao import engine

    real_save = engine.Engine.save

    def killed(self):
        if any("CI is failing" in m["text"] for m in hooked.received(s.id)):
            raise KeyboardInterrupt  # dies after the message went out, before the ledger is written
        real_save(self)

    monkeypatch.setattr(engine.Engine, "save", killed)
    with pytest.raises(KeyboardInterrupt):
        _wait_ci(poller, s.id, "failing")
    monkeypatch.undo()
    wait_for(lambda: len(hooked.received(s.id)) >= 2, what="the fix request")

    restarted = Poller(hooked.load(), console=None, clock=lambda: time.time() + 7)  # restarted seconds later
    for _ in range(3):
        restarted.cycle()
    assert len(hooked.received(s.id)) == 2
    ledger = restarted.store.get(s.id).ledgers["ci-failed"]
    assert ledger["attempts"] == 1
    restarted.close()


def test_a_notifier_that_is_down_gets_the_notification_once_it_is_back(hooked):
    cfg = _config(hooked)
    now = [time.time()]
    poller = Poller(cfg, console=None, clock=lambda: now[0])
    s = poller.manager.spawn(SpawnRequest(project="app", target="12"))
    poller.cycle()
    hooked.receiver.mode = "fail"
    hooked.tmux("kill-server")
    poller.cycle()
    poller.cycle()  # agent-exited decided, queued, the first attempt fails
    assert poller.store.get(s.id).status == "exited" and _notified(hooked.receiver, "agent-exited") == []
    hooked.receiver.mode = "ok"
    now[0] += 6  # past the first retry delay (5 s)
    poller.cycle()
    got = wait_for(lambda: _notified(hooked.receiver, "agent-exited"), what="the retried notification")
    now[0] += 600
    poller.cycle()
    assert len(got) == 1 and len(_notified(hooked.receiver, "agent-exited")) == 1
    poller.close()


def test_poll_dry_run_prints_what_would_fire_and_writes_nothing(hooked):
    _config(hooked)
    s = hooked.manager().spawn(SpawnRequest(project="app", target="12"))
    hooked.tmux("kill-server")
    hooked.manager().store.update(s.id, "app", meta={**s.meta, "probe_misses": 1})
    before = (hooked.data / "events.jsonl").read_text()
    run = hooked.ao("poll", "--dry-run", "--json")
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert [(a["reaction"], a["would"]) for a in report["actions"]] == [("agent-exited", True), ("all-complete", True)]
    assert (hooked.data / "events.jsonl").read_text() == before
    assert hooked.manager().store.get(s.id).status == "working"
    assert hooked.receiver.requests == []
    run = hooked.ao("poll")
    assert run.returncode == 0 and "agent-exited" in run.stdout
    assert hooked.manager().store.get(s.id).status == "exited"


def test_start_runs_until_stop_and_one_poller_per_data_dir(hooked):
    _config(hooked)
    proc = subprocess.Popen([sys.executable, "-m", "ao", "start", "--no-orchestrator", "--no-dashboard", "--interval", "1"],
                            cwd=hooked.root, env=hooked.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: (hooked.data / "poller.pid").exists(), timeout=15, what="ao start")
        second = hooked.ao("poll")
        assert second.returncode == 1 and "ao start is already running for" in second.stderr
        assert "ao stop" in second.stderr
        wait_for(lambda: "cycle:" in (hooked.data / "logs" / "orchestrator.log").read_text(), timeout=15,
                 what="a cycle")
        stop = hooked.ao("stop")
        assert stop.returncode == 0, stop.stderr
        assert proc.wait(timeout=15) == 0
        assert not (hooked.data / "poller.pid").exists()
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
    assert hooked.ao("stop").returncode == 1
    # a pid file left by a killed poller is not trusted: its pid may be someone else's process by now
    bystander = subprocess.Popen(["sleep", "60"])
    try:
        (hooked.data / "poller.pid").write_text(f"{bystander.pid}\n")
        stale = hooked.ao("stop")
        assert stale.returncode == 1 and "ao start is not running" in stale.stderr
        assert bystander.poll() is None and not (hooked.data / "poller.pid").exists()
    finally:
        bystander.kill()
        bystander.wait()


def test_events_lists_and_filters(hooked):
    _config(hooked)
    s = hooked.manager().spawn(SpawnRequest(project="app", target="12"))
    run = hooked.ao("events", "--json", "--session", s.id)
    assert run.returncode == 0, run.stderr
    assert [e["type"] for e in json.loads(run.stdout)] == ["session.spawned", "session.working"]
    run = hooked.ao("events", "--session", "nope")
    assert run.returncode == 0 and run.stdout == ""


assert ROOT.is_dir()


def test_a_signed_webhook_wakes_ao_start_at_once(hooked):
    """`ao start` with a 1 h poll interval: only the webhook can make it observe the new review this soon."""
    import hashlib
    import hmac

    import httpx
    import yaml

    _config(hooked, scm={"plugin": "local", "ci": "true", "webhook": {"secretEnv": "AO_TEST_HOOK"}})
    data = yaml.safe_load(hooked.config.read_text())
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    data.update(port=port, pollInterval="1h")
    hooked.config.write_text(yaml.safe_dump(data))
    s = hooked.manager().spawn(SpawnRequest(project="app", target="12"))
    wait_for(lambda: hooked.received(s.id), what="the prompt")
    git("commit", "-q", "--allow-empty", "-m", "work", cwd=__import__("pathlib").Path(s.workspace))
    git("push", "-q", "-u", "origin", "HEAD", cwd=__import__("pathlib").Path(s.workspace))
    env = {**hooked.env, "AO_TEST_HOOK": "hook-secret-for-tests"}
    proc = subprocess.Popen([sys.executable, "-m", "ao", "start", "--no-orchestrator"], cwd=hooked.root, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        log = hooked.data / "logs" / "orchestrator.log"
        wait_for(lambda: log.exists() and "webhooks: listening" in log.read_text() and "cycle:" in log.read_text(),
                 timeout=20, what="ao start's first cycle")
        from ao.plugins.scm import for_project

        scm = for_project(hooked.load(), hooked.load().projects["app"])
        wait_for(lambda: scm.view(s.branch).ci == "passing", timeout=20, what="CI")
        scm.review(s.branch, "request_changes", "Please rename x.", author="reviewer")
        body = json.dumps({"action": "submitted", "pull_request": {"head": {"ref": s.branch}}}).encode()
        signature = "sha256=" + hmac.new(b"hook-secret-for-tests", body, hashlib.sha256).hexdigest()
        sent = time.monotonic()
        r = httpx.post(f"http://127.0.0.1:{port}/webhooks/app", content=body, timeout=5,
                       headers={"X-Hub-Signature-256": signature, "X-GitHub-Event": "pull_request_review",
                                "X-GitHub-Delivery": "d-1", "Content-Type": "application/json"})
        assert r.status_code == 202
        got = wait_for(lambda: [m for m in hooked.received(s.id) if "Please rename x." in m["text"]], timeout=10,
                       what="the review to reach the agent")
        assert len(got) == 1 and time.monotonic() - sent < 5
        unsigned = httpx.post(f"http://127.0.0.1:{port}/webhooks/app", content=body, timeout=5)
        assert unsigned.status_code == 401
    finally:
        proc.terminate()
        proc.communicate(timeout=20)
    assert proc.returncode == 0


def _decide_both_in_one_cycle(env, poller, b_project="app", b_target="12"):
    """Session A's CI fails (a message for its agent) and session B's agent is gone (a notification for a
    human), so that one cycle decides both."""
    from ao.plugins.scm import for_project

    a = poller.manager.spawn(SpawnRequest(project="app", target="12"))
    b = poller.manager.spawn(SpawnRequest(project=b_project, target=b_target))  # an issue: exited, not done
    wait_for(lambda: env.received(a.id) and env.received(b.id), what="the prompts")
    poller.cycle()
    _push_failing_work(env, a)
    scm = for_project(env.load(), env.load().projects["app"])
    wait_for(lambda: scm.view(a.branch).ci == "failing", timeout=20, what="CI to fail")
    env.tmux("kill-session", "-t", f"={b.runtime_handle}")
    poller.store.update(b.id, b_project, meta={**poller.store.get(b.id, b_project).meta, "probe_misses": 1})
    return a, b


def _cycle_dying_while_typing(env, poller, monkeypatch):
    """A cycle in which ao dies while typing an agent message in; what it left in the outbox."""
    from ao import executors
    from ao.outbox import Outbox

    real = executors.AgentExecutor._deliver
    monkeypatch.setattr(executors.AgentExecutor, "_deliver", lambda self, action: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        poller.cycle()
    monkeypatch.setattr(executors.AgentExecutor, "_deliver", real)
    return [r.notification for r in Outbox.from_config(env.load(), console=None).records()]


def test_a_notification_decided_beside_an_agent_message_survives_a_crash_while_typing(hooked, monkeypatch):
    """The reported loss: ao dies while typing one message in; a notification decided in the same cycle was
    already in the outbox, and goes out after the restart although the engine would not decide it again."""
    cfg = _config(hooked, scm={"plugin": "local", "ci": "sh ci.sh"})
    hooked.receiver.mode = "fail"  # nothing is delivered before the crash: only the outbox can have it
    poller = Poller(cfg, console=None)
    a, b = _decide_both_in_one_cycle(hooked, poller)
    queued = _cycle_dying_while_typing(hooked, poller, monkeypatch)
    assert [(n.type, n.session) for n in queued] == [("agent-exited", b.id)]
    # the situation passes before the restart: B is cleaned up, so nothing would decide agent-exited again
    poller.store.archive(b.id, "app", status="cleanup")
    hooked.receiver.mode = "ok"
    restarted = Poller(hooked.load(), console=None, clock=lambda: time.time() + 10)
    reports = [restarted.cycle() for _ in range(3)]
    wait_for(lambda: _notified(hooked.receiver, "agent-exited"), what="the notification after the restart")
    # the half-typed message: no receipt from this agent, so it is never typed again; after three failed
    # deliveries a human hears of it
    assert all("CI is failing" not in m["text"] for m in hooked.received(a.id))
    errors = [x["error"] for r in reports for x in r.actions if x["reaction"] == "ci-failed" and x["action"] != "escalate"]
    assert len(errors) == 3 and "not typing it again" in errors[0]
    assert [x["action"] for r in reports for x in r.actions][-1] == "escalate"
    assert len(_notified(hooked.receiver, "agent-exited")) == 1
    restarted.close()


def _second_project(env, name="beta"):
    """Another project in the config, with a repository and origin of its own; sorted after "app", so its
    decisions come after app's."""
    import yaml

    origin, path = env.root / f"{name}.git", env.root / name
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(origin)], check=True)
    subprocess.run(["git", "clone", "-q", str(origin), str(path)], check=True, capture_output=True)
    (path / "issues").mkdir()
    (path / "issues" / "7.md").write_text("# Fix the logo\n")
    git("add", "-A", cwd=path)
    git("commit", "-q", "-m", "initial", cwd=path)
    git("push", "-q", "origin", "HEAD:main", cwd=path)
    data = yaml.safe_load(env.config.read_text())
    data["projects"][name] = {**data["projects"]["app"], "path": str(path), "sessionPrefix": name,
                              "scm": {"plugin": "local", "ci": "true"}}
    env.config.write_text(yaml.safe_dump(data))
    return env.load()


def test_a_notification_decided_in_another_project_survives_a_crash_while_typing(hooked, monkeypatch):
    """Exactly once across projects: every project's decisions are durable before any project's are executed.
    App's agent message is being typed in when ao dies; beta's notification, decided in the same cycle, is
    already in the outbox (before: beta was not even evaluated), and goes out once after the restart although
    the situation has passed by then."""
    _config(hooked, scm={"plugin": "local", "ci": "sh ci.sh"})
    cfg = _second_project(hooked)
    hooked.receiver.mode = "fail"  # nothing is delivered before the crash: only the outbox can have it
    poller = Poller(cfg, console=None)
    a, b = _decide_both_in_one_cycle(hooked, poller, "beta", "7")
    queued = _cycle_dying_while_typing(hooked, poller, monkeypatch)
    # beta's only session has ended, so beta is complete too
    assert sorted((n.type, n.project, n.session or "") for n in queued) == [("agent-exited", "beta", b.id),
                                                                             ("all-complete", "beta", "")]
    poller.store.archive(b.id, "beta", status="cleanup")  # the situation passes before the restart
    hooked.receiver.mode = "ok"
    restarted = Poller(hooked.load(), console=None, clock=lambda: time.time() + 10)
    restarted.cycle()
    got = wait_for(lambda: _notified(hooked.receiver, "agent-exited"), what="the notification after the restart")
    assert [n["session"] for n in got] == [b.id]
    restarted.cycle()
    assert len(_notified(hooked.receiver, "agent-exited")) == 1
    restarted.close()


@pytest.mark.parametrize("received", [True, False])
def test_a_message_half_typed_when_ao_died_is_resolved_by_the_agents_receipt(hooked, monkeypatch, received):
    from ao import executors, sessions

    cfg = _config(hooked, scm={"plugin": "local", "ci": "sh ci.sh"})
    poller = Poller(cfg, console=None)
    s = poller.manager.spawn(SpawnRequest(project="app", target="12"))
    wait_for(lambda: hooked.received(s.id), what="the prompt")
    _push_failing_work(hooked, s)
    real = executors.AgentExecutor._deliver
    monkeypatch.setattr(executors.AgentExecutor, "_deliver", lambda self, action: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        _wait_ci(poller, s.id, "failing")
    monkeypatch.setattr(executors.AgentExecutor, "_deliver", real)
    asked = []

    def receipt(self, sid, text, since):
        asked.append((sid, "CI is failing" in text, since > 0))
        return received

    monkeypatch.setattr(sessions.Sessions, "delivery_receipt", receipt, raising=False)
    restarted = Poller(hooked.load(), console=None, clock=lambda: time.time() + 7)
    report = restarted.cycle()
    assert asked == [(s.id, True, True)]
    assert [(a["reaction"], a["ok"]) for a in report.actions] == [("ci-failed", True)]
    for _ in range(2):
        assert restarted.cycle().actions == []
    fixes = lambda: [m for m in hooked.received(s.id) if "CI is failing" in m["text"]]  # noqa: E731
    if received:  # the agent had it: nothing is typed
        assert fixes() == []
    else:  # the agent says it never arrived: typed in once
        wait_for(fixes, what="the message")
        assert len(fixes()) == 1
    assert restarted.store.get(s.id).ledgers["ci-failed"]["attempts"] == 1
    restarted.close()
