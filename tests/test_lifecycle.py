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


class _Act:
    """A pause or kill executor that records what it was asked to do."""

    def __init__(self) -> None:
        self.done: list[str] = []

    def execute(self, action: Action):
        from ao.actions import Outcome

        self.done.append(action.session)
        return Outcome(True)


def _executors(tmp_path, comments=None):
    from ao.executors import Executors
    from ao.outbox import NotifyExecutor, Outbox

    outbox = Outbox(tmp_path, {}, console=None)
    return Executors(agent=AgentExecutor(None, Journal(tmp_path)), notify=NotifyExecutor(outbox), merge=None,
                     comment=None if comments is None else comments.append, pause=_Act(), kill=_Act()), outbox


def test_a_kill_is_journalled_when_decided_and_finished_with_its_notice_exactly_once_after_a_crash(tmp_path):
    executors, outbox = _executors(tmp_path)
    kill = Action(project="app", session="app-1", reaction="issue-closed", action="kill", priority="warning",
                  notifiers=("log",), title="app-1: issue 12 is closed", text="The session was killed.",
                  occurrence="closed", reason="triggered", attempt=1)
    assert executors.prepare(kill, 0) is None  # decided: durable, nothing done yet
    assert Journal(tmp_path).state(action_id(kill)) == "decided" and executors.kill.done == []
    assert outbox.records() == []
    # ao dies here; a restart finds the decision unsettled and finishes it: the act, then the notice
    restarted, outbox = _executors(tmp_path)
    (aid, entry), = restarted.agent.journal.unsettled()
    assert aid == action_id(kill) and entry["action"]["action"] == "kill"
    assert restarted.execute(kill).ok and restarted.kill.done == ["app-1"]
    assert [(r.notification.type, r.notification.body) for r in outbox.records()] == [
        ("issue-closed", "The session was killed.")]
    assert restarted.agent.journal.unsettled() == []
    # the same decision again (the ledger did not hear of it before a crash): nothing is done twice
    assert restarted.execute(kill).ok and restarted.kill.done == ["app-1"] and len(outbox.records()) == 1


def test_a_notifications_pr_comment_is_posted_when_executed_not_while_deciding(tmp_path):
    comments: list[Action] = []
    executors, outbox = _executors(tmp_path, comments)
    note = Action(project="app", session="app-1", reaction="agent-exited", action="notify", priority="urgent",
                  notifiers=("log",), title="app-1 exited", text="", occurrence="x", reason="triggered", attempt=1)
    prepared = executors.prepare(note, 0)
    assert prepared.ok and len(outbox.records()) == 1 and comments == []  # queued; no network call yet
    assert executors.finish(note, prepared).ok and comments == [note]
