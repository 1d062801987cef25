"""SPEC 12 through the real poller: real git, real tmux (private socket), budgets from a transcript in Claude
Code's format, the pause action's key press, reconciliation when an issue closes, and admission by `ao poll`,
also across a crash in the middle of a spawn."""

from __future__ import annotations

import json
import sys
import time

import pytest
import yaml
from agent_records import ClaudeTranscript
from sessionkit import wait_for

from ao.poller import Poller
from ao.sessions import SpawnRequest

KEYLOG = """
import os, sys, termios, tty
fd = sys.stdin.fileno()
tty.setraw(fd)
log = open(sys.argv[1], "ab", buffering=0)
os.write(1, b"keylogger ready\\r\\n")
while True:
    data = os.read(fd, 1024)
    if not data:
        break
    log.write(data.hex().encode() + b"\\n")
    os.write(1, b"got " + data.hex().encode() + b"\\r\\n")
"""


def _configure(env, **top):
    data = yaml.safe_load(env.config.read_text())
    data.update(top)
    env.config.write_text(yaml.safe_dump(data))
    return env.load()


def _keylogger(env):
    script = env.root / "keylog.py"
    script.write_text(KEYLOG)
    return {"agent": "command", "agentConfig": {"command": f"{sys.executable} {script} {env.root / 'keys.log'}",
                                                "promptDelivery": "none", "usageFrom": "claude-code"}}


def _keys(env):
    path = env.root / "keys.log"
    return path.read_text().split() if path.exists() else []


def test_a_session_over_budget_is_paused_once_and_resumed_by_ao_send(aoenv):
    aoenv.write_config(**_keylogger(aoenv))
    cfg = _configure(aoenv, budget={"session": 1}, reactions={"budget-exceeded": {"action": "pause"}})
    poller = Poller(cfg, console=None)
    try:
        s = poller.manager.spawn(SpawnRequest(project="app", target="12"))
        wait_for(lambda: "keylogger ready" in aoenv.tmux("capture-pane", "-p", "-t", s.runtime_handle).stdout,
                 what="the agent")
        transcript = ClaudeTranscript(aoenv.root / "home" / ".claude", __import__("pathlib").Path(s.workspace))
        transcript.assistant(input=10, output=50_000, blocks=2)  # $0.75 of Sonnet
        first = poller.cycle()
        assert first.actions == [] and poller.store.get(s.id).fact["cost_usd"] == pytest.approx(0.75, abs=1e-3)
        (row,) = json.loads(aoenv.ao("status", "--json").stdout)
        assert (row["tokens_in"], row["tokens_out"], round(row["cost_usd"], 2)) == (10, 50_000, 0.75)
        transcript.assistant(input=10, output=20_000, blocks=3)  # $1.05 in all
        report = poller.cycle()
        assert [(a["reaction"], a["action"], a["priority"], a["ok"]) for a in report.actions] == [
            ("budget-exceeded", "pause", "warning", True)]
        assert wait_for(lambda: "1b" in _keys(aoenv), what="Escape at the agent")
        stored = poller.store.get(s.id)
        assert stored.meta["paused"]["by"] == "budget-exceeded"
        assert any(e["type"] == "session.paused" for e in report.events)
        assert poller.cycle().actions == [] and poller.store.get(s.id).fact["paused"] is True
        assert json.loads((aoenv.data / "usage" / "app.json").read_text())["sessions"][s.id]["agent"] == "claude-code"

        poller.manager.send(s.id, "carry on, the budget is raised")  # a human resumes it
        assert "paused" not in poller.store.get(s.id).meta
        transcript.assistant(input=10, output=1000, blocks=1)
        assert poller.cycle().actions == []  # still over budget, but the same occurrence: not paused again
        assert _keys(aoenv).count("1b") == 1
        assert poller.store.get(s.id).fact["paused"] is False
    finally:
        poller.close()


def test_an_issue_closed_while_its_agent_works_is_reconciled(aoenv):
    aoenv.write_config(reactions={"issue-closed": {"auto": True, "threshold": "1m"}})
    now = [time.time()]
    poller = Poller(aoenv.load(), console=None, clock=lambda: now[0])
    try:
        s = poller.manager.spawn(SpawnRequest(project="app", target="12"))
        assert poller.cycle().actions == []
        assert poller.store.get(s.id).fact["issue_state"] == "open"
        (aoenv.project / "issues" / "closed").mkdir()
        (aoenv.project / "issues" / "12.md").rename(aoenv.project / "issues" / "closed" / "12.md")
        warned = poller.cycle()
        assert [(a["reaction"], a["action"]) for a in warned.actions] == [("issue-closed", "notify")]
        assert poller.store.get(s.id).status == "working"
        now[0] += 30
        assert poller.cycle().actions == []
        now[0] += 31
        killed = poller.cycle()
        assert [(a["reaction"], a["action"], a["ok"]) for a in killed.actions] == [("issue-closed", "kill", True)]
        assert poller.store.get(s.id).status == "killed"
        assert aoenv.tmux("has-session", "-t", s.runtime_handle).returncode != 0
        log = (aoenv.data / "logs" / "orchestrator.log").read_text()
        assert "kill the session in 1m" in log  # the warning went out through the log notifier
        assert "The session was killed" in log  # and so did the notice of the kill
        # the poller recorded what it decided on; replaying it with the same config decides the same
        from ao import replay

        cycles = replay.read([aoenv.data / "facts"])
        assert len(cycles) == 4 and [a["action"] for _, _, a in replay.recorded(cycles)] == ["notify", "kill"]
        diff = replay.compare(replay.recorded(cycles), replay.run(aoenv.load(), cycles))
        assert (diff.only_before, diff.only_after) == ([], [])
    finally:
        poller.close()


def test_ao_poll_admits_from_the_queue(aoenv):
    (aoenv.project / "issues" / "13.md").write_text("# Second\n")
    aoenv.write_config(maxConcurrent=1)
    assert aoenv.ao("queue", "add", "app", "12", "13").returncode == 0
    run = aoenv.ao("poll", "--dry-run", "--json")
    assert run.returncode == 0, run.stderr
    assert [(r["issue"], r["result"]) for r in json.loads(run.stdout)["admissions"]] == [("12", "would admit")]
    run = aoenv.ao("poll")
    assert run.returncode == 0, run.stderr
    assert "admitted: 12→app-1" in run.stdout
    rows = json.loads(aoenv.ao("queue", "ls", "--all", "--json").stdout)
    assert [(r["issue"], r["state"], r["session"]) for r in rows] == [("12", "admitted", "app-1"),
                                                                        ("13", "queued", None)]
    assert aoenv.ao("poll").returncode == 0  # the cap is full: 13 waits
    assert len(aoenv.manager().store.list()) == 1


def test_a_crash_in_the_middle_of_a_real_spawn_never_leaves_two_agents_on_one_issue(aoenv):
    from ao import sessions

    real_launch = sessions.Sessions._launch

    def launch_then_die(self, *args, **kwargs):
        real_launch(self, *args, **kwargs)  # the tmux session and the agent are up; the record says spawning
        raise SystemExit("killed")

    assert aoenv.ao("queue", "add", "app", "12").returncode == 0
    # (a patch context of its own: undoing the fixture's monkeypatch would drop the private tmux socket)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sessions.Sessions, "_launch", launch_then_die)
        patch.setattr(sessions._Undo, "run", lambda self: [])  # a killed process undoes nothing
        poller = Poller(aoenv.load(), console=None)
        with pytest.raises(SystemExit):
            poller.cycle()
        poller.close()
    (half,) = aoenv.manager().store.list()
    assert half.status == "spawning"
    assert aoenv.tmux("list-sessions", "-F", "#{session_name}").stdout.count(half.id) == 1

    restarted = Poller(aoenv.load(), console=None)
    try:
        report = restarted.cycle()
        assert [r["result"] for r in report.admissions] == ["requeued", "admitted"]
        live = [s for s in restarted.store.list() if not s.terminal]
        assert [s.issue for s in live] == ["12"] and live[0].id != half.id and live[0].status == "working"
        assert restarted.store.get(half.id, include_archived=True).status == "errored"
        names = aoenv.tmux("list-sessions", "-F", "#{session_name}").stdout.split()
        assert [n for n in names if n.endswith(half.id)] == [] and len(names) == 1
        assert not (aoenv.data / "workspaces" / "app" / half.id).exists()
    finally:
        restarted.close()


def test_a_pause_mark_from_before_a_restore_does_not_stop_a_new_pause():
    """The guard against pressing keys twice (a pause finished after a crash) must not outlive the agent it
    paused: a restored agent is a new process, spending again, and a new pause must reach it."""
    import contextlib
    from types import SimpleNamespace

    from ao.executors import PauseExecutor

    pressed: list[str] = []

    def manager(meta: dict) -> SimpleNamespace:
        session = SimpleNamespace(meta=meta, runtime_handle="h", agent=None, runtime=None, project="app",
                                  launched_at=200.0)
        return SimpleNamespace(
            find=lambda sid: (session, SimpleNamespace(agent="claude-code", runtime="tmux")),
            agent=lambda name: SimpleNamespace(interrupt_keys=lambda: ["Escape"]),
            runtime=lambda name: SimpleNamespace(send_keys=lambda handle, keys: pressed.append(handle)),
            store=SimpleNamespace(modify=lambda sid, change, project: change(session)),
            session_lock=lambda s: contextlib.nullcontext())

    PauseExecutor(manager({"paused": {"at": 100.0, "by": "budget-exceeded"}}), clock=lambda: 300.0).pause(
        "app-1", "active", "budget-exceeded")
    assert pressed == ["h"]  # paused before the restore at 200: stale, so the keys go
    PauseExecutor(manager({"paused": {"at": 250.0, "by": "budget-exceeded"}}), clock=lambda: 300.0).pause(
        "app-1", "active", "budget-exceeded")
    assert pressed == ["h"]  # paused since this launch (a crash after the keys): never pressed twice
