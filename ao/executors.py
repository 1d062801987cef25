"""The real executors: what carries out the engine's actions (send-to-agent, notify, escalate, auto-merge,
pause, kill).

Exactly once, by design (``docs/lifecycle.md``): the poller makes every decision of a cycle, in every project,
durable before it executes any (:meth:`Executors.prepare`): notifications are queued in the outbox (for them
that *is* the execution), agent messages, pauses and kills are written to the journal as ``decided``. Then they
are executed (:meth:`Executors.finish`), one after another: messages typed in, pauses and kills done and their
notice queued, PR comments posted. A restarted poller finishes what the journal says was decided
(:meth:`Journal.unsettled`) before it decides anything new.

An agent message's journal entry (``<dataDir>/journal/<id>.json``, the id deterministic from the decision)
goes ``decided`` -> ``sending`` (written just before the first key is typed) -> ``sent`` once the runtime
confirms delivery, ``unconfirmed`` when the text was typed but delivery could not be confirmed, or ``failed``
when nothing could be typed (the session is gone...). What a later execution of the same decision does:

- ``sent``: "delivered", nothing typed;
- ``unconfirmed``: never typed again; it counts as a failed delivery, and three of those escalate to a human;
- ``sending`` (ao died while typing): the agent's own delivery receipt decides, where the agent gives one
  (``Sessions.delivery_receipt``): received -> ``sent``; not received -> typed again. Without a receipt
  it is treated as ``unconfirmed``: never retyped blindly;
- ``decided``, ``failed`` or ``held``: typed in (once the agent is ready).

A message for an agent that waits for a human or is busy is not typed at all (``held``, raised by
``Sessions.send`` as ``AgentWaiting`` before any key is pressed): the outcome is neither an attempt nor a
failure, so the engine decides the same action again next cycle and it goes out once the agent is ready; a
duration ``escalateAfter`` still escalates meanwhile (SPEC 3.1).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ao import failpoints
from ao.actions import Action, Outcome
from ao.errors import AoError
from ao.ledger import atomic_write

JOURNAL = "journal"
JOURNAL_KEEP = 7 * 86400
DECIDED, SENDING, SENT, UNCONFIRMED, FAILED, HELD = "decided", "sending", "sent", "unconfirmed", "failed", "held"
_LEGACY = {"pending": SENDING}  # written by ao before the decided state existed: typing may have begun
UNSETTLED = (DECIDED, SENDING)
JOURNALLED = ("send-to-agent", "pause", "kill")  # decisions the journal holds until they are executed


def action_id(action: Action) -> str:
    """Deterministic: the same decision taken again after a crash has the same id."""
    key = "\x1f".join([action.project, action.session or "", action.reaction, action.occurrence, action.action,
                       str(action.budget), str(action.attempt)])
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def action_from_dict(data: dict[str, Any], fact: dict[str, Any] | None = None) -> Action:
    """The :class:`Action` a journal entry holds (``Action.to_dict`` read back)."""
    fields = dict(data)
    fields["notifiers"] = tuple(fields.get("notifiers") or ())
    return Action(**fields, fact=dict(fact or {}))


@dataclass
class Journal:
    root: Path

    def _path(self, aid: str) -> Path:
        return self.root / JOURNAL / f"{aid}.json"

    def entry(self, aid: str) -> dict[str, Any] | None:
        try:
            data = json.loads(self._path(aid).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict):
            return None
        data["state"] = _LEGACY.get(data.get("state"), data.get("state"))
        return data

    def state(self, aid: str) -> str | None:
        entry = self.entry(aid)
        return entry.get("state") if entry else None

    def decide(self, action: Action, now: float) -> str:
        """Journal an agent message as decided (a no-op when this decision is journalled already)."""
        aid = action_id(action)
        if self.entry(aid) is None:
            self._write(aid, {"state": DECIDED, "at": now, "decided_at": now, "action": action.to_dict(),
                              "fact": action.fact})
            failpoints.hit("journal.decided")
        return aid

    def mark(self, aid: str, state: str, now: float, **extra: Any) -> None:
        """Move an entry to ``state``, keeping the decision it records."""
        entry = self.entry(aid) or {}
        entry.update(extra, state=state, at=now)
        self._write(aid, entry)

    def _write(self, aid: str, entry: dict[str, Any]) -> None:
        atomic_write(self._path(aid), json.dumps(entry, default=str) + "\n")

    def unsettled(self) -> list[tuple[str, dict[str, Any]]]:
        """Decisions a crash left unfinished (``decided`` or ``sending``), oldest first."""
        folder = self.root / JOURNAL
        out = []
        for entry in os.scandir(folder) if folder.is_dir() else []:
            if not entry.name.endswith(".json"):
                continue
            data = self.entry(entry.name[:-5])
            if data and data.get("state") in UNSETTLED and isinstance(data.get("action"), dict):
                out.append((entry.name[:-5], data))
        return sorted(out, key=lambda item: float(item[1].get("decided_at") or 0))

    def prune(self, now: float, keep: float = JOURNAL_KEEP) -> None:
        folder = self.root / JOURNAL
        for entry in os.scandir(folder) if folder.is_dir() else []:
            try:
                if now - entry.stat().st_mtime > keep:
                    os.unlink(entry.path)
            except OSError:
                continue


@dataclass
class AgentExecutor:
    """Types the message into the session's agent (``ao.sessions.Sessions.send``), journalled."""

    manager: Any
    journal: Journal
    clock: Callable[[], float] = field(default=lambda: time.time())

    def execute(self, action: Action) -> Outcome:
        if not action.session:
            return Outcome(False, "a project-wide action has no agent to send to")
        aid = action_id(action)
        entry = self.journal.entry(aid) or {}
        state = entry.get("state")
        if state == SENT:
            return Outcome(True)  # delivered before a crash; the ledger just did not hear of it
        if state == UNCONFIRMED:  # typed in once already: never again; failures escalate to a human
            return Outcome(False, "an earlier delivery of this message was not confirmed; not typing it again")
        if state == SENDING:  # ao died while typing it in: only the agent can say whether it arrived
            received = self._receipt(action, float(entry.get("at") or 0))
            if received:
                self.journal.mark(aid, SENT, self.clock(), by="receipt")
                return Outcome(True)
            if received is None:
                error = ("ao stopped while typing this message in, and the agent keeps no delivery receipt; "
                         "not typing it again")
                self.journal.mark(aid, UNCONFIRMED, self.clock(), error=error)
                return Outcome(False, error)
        try:
            self.journal.mark(aid, SENDING, self.clock(), session=action.session, reaction=action.reaction)
        except AoError as exc:  # without the journal a crash could repeat it: do not type it in
            return Outcome(False, f"cannot journal the message: {exc}")
        failpoints.hit("journal.sending")
        outcome, state = self._deliver(action)
        if outcome.ok:
            failpoints.hit("agent.typed")
        try:
            self.journal.mark(aid, state, self.clock(), error=outcome.error)
        except AoError:
            if outcome.ok:
                # Delivered: report it as delivered. The entry still says `sending`, and a restarted poller
                # asks the agent's receipt rather than typing it again.
                return outcome
            raise
        failpoints.hit("journal.sent")
        return outcome

    def _deliver(self, action: Action) -> tuple[Outcome, str]:
        """Type the message in: the outcome, and the journal state it leaves."""
        from ao.plugins.runtime import AgentWaiting, Unconfirmed

        try:
            self.manager.send(action.session, action.text)
        except AgentWaiting as exc:
            # nothing typed: held until the agent is ready (the human has the agent-needs-input notice)
            return Outcome(False, f"held: {exc.waiting_for}", held=True), HELD
        except Unconfirmed as exc:
            return Outcome(False, str(exc)), UNCONFIRMED
        except AoError as exc:
            return Outcome(False, str(exc)), FAILED
        return Outcome(True), SENT

    def _receipt(self, action: Action, since: float) -> bool | None:
        """The agent's own word on whether it received ``action.text`` since ``since``; None: it keeps none."""
        check = getattr(self.manager, "delivery_receipt", None)
        if check is None:
            return None
        try:
            return check(action.session, action.text, since)
        except AoError:
            return None


@dataclass
class MergeExecutor:
    """Merges the session's PR through its project's SCM, with the head SHA observed this cycle pinned, and only
    when every merge criterion holds on it (:func:`ao.merging.merge_view`), whatever rule asked for the merge."""

    scm_for: Callable[[str], Any]            # project id -> SCM plugin
    view_for: Callable[[str], Any]           # session id -> the PRView observed this cycle (or None)
    method_for: Callable[[str], str | None]  # project id -> configured merge method

    def execute(self, action: Action) -> Outcome:
        from ao.merging import merge_view

        view = self.view_for(action.session or "")
        if view is None or view.state != "open":
            return Outcome(False, "no open PR was observed for this session")
        try:
            merge_view(self.scm_for(action.project), view, self.method_for(action.project))
        except AoError as exc:
            return Outcome(False, str(exc))
        return Outcome(True)


@dataclass
class PauseExecutor:
    """``pause``: press the agent's interrupt keys, so its turn stops and the session stays; mark the session
    paused, so that no reaction types into it until a human resumes it (``ao send``). A project-wide pause
    (``budget.project``) pauses every live worker of the project.

    Keys go only to an agent that is working: one waiting for a human is not spending anything, and keys
    typed into its dialog would answer it; an idle one has no turn to stop (and Esc at an idle prompt opens
    menus in some agents). Both are marked paused all the same."""

    manager: Any
    clock: Callable[[], float] = field(default=lambda: time.time())

    def execute(self, action: Action) -> Outcome:
        if action.session:
            targets = [(action.session, action.fact.get("activity", "unknown"))]
        else:
            targets = [(s.id, s.fact.get("activity", "unknown")) for s in self.manager.store.list(action.project)
                       if s.role == "worker" and not s.terminal]
        errors = []
        for sid, activity in targets:
            try:
                self.pause(sid, activity, action.reaction)
            except AoError as exc:
                errors.append(f"{sid}: {exc}")
        return Outcome(not errors, "; ".join(errors))

    def pause(self, session_id: str, activity: str, reason: str) -> None:
        session, _ = self.manager.find(session_id)
        # under the session's lock: the keys (Claude's Ctrl-C empties its input box) must not land in the
        # middle of an `ao send` typing into the same agent
        with self.manager.session_lock(session):
            self._pause(session_id, activity, reason)

    def _pause(self, session_id: str, activity: str, reason: str) -> None:
        session, project = self.manager.find(session_id)
        # paused already since its last launch (by this decision, before a crash): its keys were pressed; never
        # press them twice. A mark from before a restore is stale: that agent was started afresh.
        paused = session.meta.get("paused")
        pressed = isinstance(paused, dict) and float(paused.get("at") or 0) >= session.launched_at
        if activity in ("active", "unknown") and session.runtime_handle and not pressed:
            agent = self.manager.agent(session.agent or project.agent)
            self.manager.runtime(session.runtime or project.runtime).send_keys(session.runtime_handle,
                                                                                agent.interrupt_keys())

        def mark(s: Any) -> None:
            s.meta = {**s.meta, "paused": {"at": self.clock(), "by": reason}}

        self.manager.store.modify(session_id, mark, session.project)


@dataclass
class KillExecutor:
    """``kill``: end the session on purpose (its workspace stays until cleanup), as ``ao session kill``."""

    manager: Any

    def execute(self, action: Action) -> Outcome:
        if not action.session:
            return Outcome(False, "a project-wide action has no session to kill")
        try:
            self.manager.kill(action.session)
        except AoError as exc:
            return Outcome(False, str(exc))
        return Outcome(True)


@dataclass
class Executors:
    """Dispatches each action to its executor by kind. ``comment`` (optional) also posts a notification on
    the session's PR (``scm.commentOnNotify``); a comment that fails is logged, the notification still counts."""

    agent: Any
    notify: Any
    merge: Any
    comment: Callable[[Action], None] | None = None
    pause: Any = None
    kill: Any = None

    def prepare(self, action: Action, now: float) -> Outcome | None:
        """Make a decision durable before anything slow is executed; nothing here leaves this machine.
        Notifications are queued in the outbox, which is all their execution is: their outcome is returned
        (their PR comment waits for :meth:`finish`). Agent messages, pauses and kills are journalled as
        decided (None: execute them in :meth:`finish`; a journal that cannot be written fails the action, so
        nothing is done that a crash could lose or repeat). Merges are pinned to a head SHA and decided again
        after a crash: None."""
        if action.action in ("notify", "escalate"):
            return self.notify.execute(action)
        if action.action in JOURNALLED and (action.session or action.action == "pause"):  # else: fails at once
            try:
                self.agent.journal.decide(action, now)
            except AoError as exc:
                return Outcome(False, f"cannot journal the {action.action}: {exc}")
        return None

    def finish(self, action: Action, prepared: Outcome | None) -> Outcome:
        """Execute a prepared decision (:meth:`prepare`'s outcome, when it had one already)."""
        if prepared is None:
            return self.execute(action)
        if prepared.ok and action.action in ("notify", "escalate"):
            self._comment(action)
        return prepared

    def execute(self, action: Action) -> Outcome:
        if action.action == "send-to-agent":
            return self.agent.execute(action)
        if action.action in ("notify", "escalate"):
            outcome = self.notify.execute(action)
            if outcome.ok:
                self._comment(action)
            return outcome
        if action.action == "auto-merge":
            return self.merge.execute(action)
        if action.action in ("pause", "kill"):
            return self._act(action)
        return Outcome(False, f"unknown action {action.action}")

    def _comment(self, action: Action) -> None:
        if self.comment is not None:
            self.comment(action)

    def _act(self, action: Action) -> Outcome:
        """``pause`` or ``kill``: done to the agent, then a human is told through the outbox, then the journal
        entry :meth:`prepare` wrote is settled. A restart finishes one a crash interrupted: the act again
        (both are idempotent: a killed session is killed, a paused one gets no keys again) and the notice
        (queued once: its id comes from the decision)."""
        journal, aid = self.agent.journal, action_id(action)
        if journal.state(aid) == SENT:
            return Outcome(True)  # done and told before a crash; the ledger just did not hear of it
        done = (self.pause if action.action == "pause" else self.kill).execute(action)
        if done.ok:
            # The action counts as done even if the notice could not be queued, so it is never done twice.
            told = self.notify.execute(action)
            done = Outcome(True, "" if told.ok else f"the notification could not be queued: {told.error}")
        with contextlib.suppress(AoError):  # unsettled, a restart does it again: idempotent
            journal.mark(aid, SENT if done.ok else FAILED, self.agent.clock(), error=done.error)
        return done
