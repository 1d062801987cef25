"""Lifecycle events from consecutive facts, and the journalled agent executor with real tmux."""

from __future__ import annotations

from sessionkit import wait_for

from ao.actions import Action
from ao.executors import AgentExecutor, Journal, action_id
from ao.lifecycle import action_events, transitions
from ao.sessions import SpawnRequest


def test_transitions_report_what_changed():
    assert transitions(None, {"status": "working", "pr_state": "none"}) == ["session.working"]
    before = {"status": "working", "pr_state": "none", "ci": "none", "review": "none"}
    opened = {"status": "pr_open", "pr_state": "open", "ci": "pending", "review": "none"}
    assert transitions(before, opened) == ["pr.created", "ci.pending"]
    failing = {**opened, "status": "ci_failed", "ci": "failing"}
    assert transitions(opened, failing) == ["ci.failing"]
    assert transitions(failing, failing) == []
    ready = {**opened, "status": "mergeable", "ci": "passing", "review": "approved"}
    assert transitions(failing, ready) == ["ci.passing", "review.approved", "merge.ready"]
    assert transitions(ready, {**ready, "status": "merged", "pr_state": "merged"}) == ["merge.completed"]
    assert transitions(opened, {**opened, "conflicts": True}) == ["merge.conflicts"]
    assert transitions(opened, {**opened, "bot_fingerprint": "ab12"}) == ["automated_review.found"]
    assert transitions({"status": "working"}, {"status": "needs_input"}) == ["session.needs_input"]
    assert transitions({"status": "working"}, {"status": "exited"}) == ["session.exited"]


def test_action_events():
    assert action_events("ci-failed", "send-to-agent", True) == ["reaction.triggered", "ci.fix_sent"]
    assert action_events("ci-failed", "send-to-agent", False) == ["reaction.triggered", "ci.fix_failed"]
    assert action_events("changes-requested", "send-to-agent", True) == ["reaction.triggered", "review.comments_sent"]
    assert action_events("ci-failed", "escalate", True) == ["reaction.escalated"]
    assert action_events("all-complete", "notify", True) == ["reaction.triggered", "summary.all_complete"]


def _action(session: str, text: str) -> Action:
    return Action(project="app", session=session, reaction="ci-failed", action="send-to-agent", priority=None,
                  notifiers=(), title="", text=text, occurrence="head_sha='abc'", reason="ci failing", attempt=1)


def test_an_agent_message_is_delivered_exactly_once_across_a_crash(aoenv):
    manager = aoenv.manager()
    s = manager.spawn(SpawnRequest(project="app"))
    wait_for(lambda: aoenv.received(s.id), what="the prompt")
    journal = Journal(aoenv.data)
    action = _action(s.id, "CI failed: fix test_x")

    # Crash after the decision, before delivery: the journal says decided; the restarted poller sends it once.
    journal.decide(action, 0)
    assert journal.state(action_id(action)) == "decided"
    assert AgentExecutor(manager, journal).execute(action).ok
    # Crash after delivery, before the ledger was saved: the same decision again is not typed in again.
    assert AgentExecutor(aoenv.manager(), Journal(aoenv.data)).execute(action).ok
    wait_for(lambda: len(aoenv.received(s.id)) >= 2, what="the message")
    assert [m["text"] for m in aoenv.received(s.id)[1:]] == ["CI failed: fix test_x"]


def test_a_failed_agent_send_is_reported_and_retried_later(aoenv):
    manager = aoenv.manager()
    s = manager.spawn(SpawnRequest(project="app"))
    wait_for(lambda: aoenv.received(s.id), what="the prompt")
    aoenv.tmux("kill-session", "-t", f"={s.runtime_handle}")
    journal = Journal(aoenv.data)
    action = _action(s.id, "please fix")
    outcome = AgentExecutor(manager, journal).execute(action)
    assert not outcome.ok and "gone" in outcome.error
    assert journal.state(action_id(action)) == "failed"
    manager.store.update(s.id, "app", status="exited")
    manager.restore(s.id)
    wait_for(lambda: manager.runtime("tmux").capture(s.runtime_handle).strip(), what="the agent to draw")
    assert AgentExecutor(manager, journal).execute(action).ok
    wait_for(lambda: any(m["text"] == "please fix" for m in aoenv.received(s.id)), what="the retried message")
