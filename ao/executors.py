"""The real executors: what carries out the engine's actions (send-to-agent, notify, escalate, auto-merge,
pause, kill).

``send-to-agent`` goes through a journal so that a crash never duplicates an agent message: the action's
deterministic id is written ``pending`` before the text is typed in and ``sent`` once delivery is confirmed.
After a restart the engine decides the same action again (its ledger was not saved); a ``sent`` entry
answers "delivered" without typing anything, a ``pending`` one is sent. A send that typed the text in but
could not confirm it (``unconfirmed``) is never typed again: it counts as a failed delivery, and three of those
escalate to a human. Only a crash inside the send itself (up to the confirmation timeout) could repeat one.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ao.actions import Action, Outcome
from ao.errors import AoError
from ao.ledger import atomic_write

JOURNAL = "journal"
JOURNAL_KEEP = 7 * 86400


def action_id(action: Action) -> str:
    """Deterministic: the same decision taken again after a crash has the same id."""
    key = "\x1f".join([action.project, action.session or "", action.reaction, action.occurrence, action.action,
                       str(action.budget), str(action.attempt)])
    return hashlib.sha256(key.encode()).hexdigest()[:32]


@dataclass
class Journal:
    root: Path

    def _path(self, aid: str) -> Path:
        return self.root / JOURNAL / f"{aid}.json"

    def state(self, aid: str) -> str | None:
        try:
            return json.loads(self._path(aid).read_text(encoding="utf-8")).get("state")
        except (OSError, ValueError, AttributeError):
            return None

    def mark(self, aid: str, state: str, now: float, **extra: Any) -> None:
        atomic_write(self._path(aid), json.dumps({"state": state, "at": now, **extra}) + "\n")

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
        from ao.plugins.runtime import Unconfirmed

        aid = action_id(action)
        state = self.journal.state(aid)
        if state == "sent":
            return Outcome(True)  # delivered before a crash; the ledger just did not hear of it
        if state == "unconfirmed":  # typed in once already: never again; failures escalate to a human
            return Outcome(False, "an earlier delivery of this message was not confirmed; not typing it again")
        self.journal.mark(aid, "pending", self.clock(), session=action.session, reaction=action.reaction)
        try:
            self.manager.send(action.session, action.text)
        except Unconfirmed as exc:
            self.journal.mark(aid, "unconfirmed", self.clock(), session=action.session, error=str(exc))
            return Outcome(False, str(exc))
        except AoError as exc:
            self.journal.mark(aid, "failed", self.clock(), session=action.session, error=str(exc))
            return Outcome(False, str(exc))
        self.journal.mark(aid, "sent", self.clock(), session=action.session, reaction=action.reaction)
        return Outcome(True)


@dataclass
class MergeExecutor:
    """Merges the session's PR through its project's SCM, with the head SHA observed this cycle pinned."""

    scm_for: Callable[[str], Any]            # project id -> SCM plugin
    view_for: Callable[[str], Any]           # session id -> the PRView observed this cycle (or None)
    method_for: Callable[[str], str | None]  # project id -> configured merge method

    def execute(self, action: Action) -> Outcome:
        view = self.view_for(action.session or "")
        if view is None or view.state != "open":
            return Outcome(False, "no open PR was observed for this session")
        try:
            self.scm_for(action.project).merge(view, self.method_for(action.project))
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
        from ao.plugins.agent import interrupt_keys

        session, project = self.manager.find(session_id)
        if activity in ("active", "unknown") and session.runtime_handle:
            agent = self.manager.agent(session.agent or project.agent)
            self.manager.runtime(session.runtime or project.runtime).send_keys(session.runtime_handle,
                                                                                interrupt_keys(agent))

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

    def execute(self, action: Action) -> Outcome:
        if action.action == "send-to-agent":
            return self.agent.execute(action)
        if action.action in ("notify", "escalate"):
            outcome = self.notify.execute(action)
            if outcome.ok and self.comment is not None:
                self.comment(action)
            return outcome
        if action.action == "auto-merge":
            return self.merge.execute(action)
        if action.action in ("pause", "kill"):
            done = (self.pause if action.action == "pause" else self.kill).execute(action)
            if not done.ok:
                return done
            # Done to the agent: a human is told, through the outbox. The action counts as done even if the
            # notice could not be queued, so it is never done twice.
            told = self.notify.execute(action)
            return Outcome(True, "" if told.ok else f"the notification could not be queued: {told.error}")
        return Outcome(False, f"unknown action {action.action}")
