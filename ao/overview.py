"""What every session is doing, as the poller last observed it: the one source behind ``ao status``,
``ao session ls``, ``ao rules explain`` and the dashboard, so that they can never disagree.

Nothing here observes anything. Statuses are the poller's (SPEC 5, ``needs_input`` and ``stuck`` included),
read from the session records it persists; what the agent waits for is ``meta["activity"]["detail"]``;
escalations in flight come from the reaction ledgers. Each cycle of a poller (``ao start``, ``ao poll``,
``ao status --refresh``) leaves a stamp (:func:`record_cycle`), which dates every observation: "observed 12s
ago" is the truth about how fresh a row is.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from ao.facts import TERMINAL
from ao.quarantine import Quarantined, quarantined, warning
from ao.store import Session, SessionStore

CYCLE_FILE = "last-cycle.json"

# What colour a status gets on a terminal: failures red, "a human is needed" yellow, done green.
FAILING = frozenset({"ci_failed", "changes_requested", "exited", "errored", "pr_closed"})
NEEDS_HUMAN = frozenset({"needs_input", "stuck", "mergeable", "approved"})
FINISHED = frozenset({"merged", "done"})
ENDED = frozenset({"killed", "cleanup"})


def status_style(status: str) -> Optional[str]:
    if status in FAILING:
        return "bold red"
    if status in NEEDS_HUMAN:
        return "bold yellow"
    if status in FINISHED:
        return "green"
    if status in ENDED:
        return "dim"
    return None


# ------------------------------------------------------------------------------------- poller stamps

@dataclass
class PollerState:
    pid: Optional[int]               # the running `ao start`, if any
    last_cycle_at: Optional[float]   # when a poller last finished a cycle on this data dir

    def seconds_ago(self, now: float) -> Optional[float]:
        return None if self.last_cycle_at is None else max(0.0, now - self.last_cycle_at)


def record_cycle(data_dir: Path, at: float, sessions: int, config: Path | str = "") -> None:
    """Stamp a finished poll cycle (one small atomic write; a failure to stamp never fails the cycle)."""
    from ao.errors import AoError
    from ao.ledger import atomic_write

    body = {"at": at, "sessions": sessions, "pid": os.getpid(), "config": str(config)}
    with contextlib.suppress(AoError):
        atomic_write(Path(data_dir) / CYCLE_FILE, json.dumps(body) + "\n")


def poller_state(data_dir: Path) -> PollerState:
    from ao.poller import running_pid

    at = None
    with contextlib.suppress(OSError, ValueError, TypeError, KeyError):  # no stamp yet, or a damaged one
        at = float(json.loads((Path(data_dir) / CYCLE_FILE).read_text(encoding="utf-8"))["at"])
    return PollerState(running_pid(Path(data_dir)), at)


# ------------------------------------------------------------------------------------------ rows

@dataclass
class Escalation:
    reaction: str
    attempts: int
    since: Optional[int]
    reason: str = ""


@dataclass
class SessionView:
    """One session as last observed. ``status`` is the poller's (or the stored one before any poll)."""

    id: str
    project: str
    role: str
    status: str
    activity: str
    waiting_for: str
    branch: str
    issue: str
    task: str
    agent: str
    pr_state: str
    pr_number: int
    pr_url: str
    ci: str
    review: str
    conflicts: bool
    mergeable: bool
    escalations: list[Escalation]
    created_at: float
    observed_at: Optional[float]
    workspace: str
    merge: list[Any] = field(default_factory=list)  # merge criteria of an open PR (ao.merging.Criterion)
    archived: bool = False
    fact: dict[str, Any] = field(default_factory=dict, repr=False)
    session: Optional[Session] = field(default=None, repr=False)  # the record it was read from

    def needs(self) -> str:
        """What a human should know at a glance: the question waiting, conflicts, escalations, a ready PR."""
        out = []
        if self.status == "needs_input" or self.activity == "waiting_input":
            out.append(f"input: {self.waiting_for}" if self.waiting_for else "input")
        elif self.activity == "blocked":
            out.append(f"blocked: {self.waiting_for}" if self.waiting_for else "blocked")
        if self.conflicts and self.pr_state == "open":
            out.append("conflicts")
        if self.escalations:
            out.append("escalated: " + ",".join(e.reaction for e in self.escalations))
        if self.status == "stuck":
            out.append("stuck")
        if self.status == "mergeable":
            out.append("ready to merge")
        return "; ".join(out)

    def row(self, now: float) -> dict[str, Any]:
        """A plain dict for listings and JSON (times as ISO 8601 UTC)."""
        from ao.events import iso

        observed = None if self.observed_at is None else max(0, int(now - self.observed_at))
        return {
            "session": self.id, "project": self.project, "role": self.role, "status": self.status,
            "activity": self.activity, "waiting_for": self.waiting_for,
            "alive": bool(self.fact.get("runtime_alive", self.status not in TERMINAL)),
            "branch": self.branch,
            "issue": self.issue, "task": self.task, "agent": self.agent,
            "pr_state": self.pr_state, "pr": self.pr_number or None, "pr_url": self.pr_url, "ci": self.ci,
            "review": self.review, "conflicts": self.conflicts, "mergeable": self.mergeable,
            "merge": [c.to_dict() for c in self.merge],
            "merge_missing": [c.name for c in self.merge if not c.ok],
            "escalations": [{"reaction": e.reaction, "attempts": e.attempts,
                             "since": iso(e.since) if e.since is not None else None, "reason": e.reason}
                            for e in self.escalations],
            "needs": self.needs(),
            "observed_at": iso(self.observed_at) if self.observed_at is not None else None,
            "observed_seconds_ago": observed,
            "created_at": iso(self.created_at) if self.created_at else None,
            "age_seconds": max(0, int(now - self.created_at)) if self.created_at else 0,
            "workspace": self.workspace, "archived": self.archived,
            "tokens_in": int(self.fact.get("tokens_in") or 0), "tokens_out": int(self.fact.get("tokens_out") or 0),
            "cost_usd": float(self.fact.get("cost_usd") or 0.0), "paused": bool(self.fact.get("paused")),
        }


def short_count(n: int) -> str:
    """``1.2M``, ``40k``, ``512``: a token count at a glance."""
    for unit, size in (("M", 1_000_000), ("k", 1000)):
        if n >= size:
            return f"{n / size:.1f}".rstrip("0").rstrip(".") + unit
    return str(n)


def tokens_text(tokens_in: int, tokens_out: int) -> str:
    """``1.2M in, 40k out``: tokens the agent read and wrote ("" before any use was read)."""
    return f"{short_count(tokens_in)} in, {short_count(tokens_out)} out" if tokens_in or tokens_out else ""


def totals_lines(projects: list[dict[str, Any]]) -> list[str]:
    """Each project's totals (``ao.usage.project_rows``: every session it had, what ``budget.project`` is
    checked against), then the date of the prices behind every cost ("" when there is no project)."""
    out = []
    for p in projects:
        text = f"{p['project']}: {tokens_text(p['tokens_in'], p['tokens_out']) or 'no tokens'}, ${p['cost_usd']:.2f}"
        text += "" if p["budget_usd"] is None else f" of a ${p['budget_usd']:g} budget"
        out.append(text + (f" (no price for {', '.join(p['unpriced'])})" if p["unpriced"] else ""))
    return out + [f"costs at prices as of {projects[0]['prices_as_of']}"] if projects else []


def view(session: Session, cycle_at: Optional[float], archived: bool = False) -> SessionView:
    fact = session.fact or {}
    memo = session.meta.get("activity") if isinstance(session.meta.get("activity"), dict) else {}
    activity = str(fact.get("activity") or ("exited" if session.terminal else "unknown"))
    escalations = []
    for key, entry in sorted(session.ledger_entries().items()):
        if entry.escalated:
            escalations.append(Escalation(key, entry.attempts, entry.first_at, entry.last_error))
    merge: list[Any] = []
    if fact.get("pr_state") == "open":
        from ao import merging

        merge = merging.for_session(session, fact)
    observed = None
    if fact:
        # The poller observes every session of its config each cycle; a record it wrote after the last
        # stamp (or with no stamp at all) was observed when it was written.
        observed = cycle_at if cycle_at is not None and cycle_at >= session.updated_at - 1 else session.updated_at
    return SessionView(
        id=session.id, project=session.project, role=session.role, status=session.status, activity=activity,
        waiting_for=str(memo.get("detail") or "") if activity in ("waiting_input", "blocked") else "",
        branch=session.branch, issue=session.issue, task=session.task, agent=session.agent,
        pr_state=str(fact.get("pr_state") or ("open" if session.pr_url else "none")),
        pr_number=int(fact.get("pr_number") or session.pr_number or 0),
        pr_url=str(fact.get("pr_url") or session.pr_url or ""),
        ci=str(fact.get("ci") or "none"), review=str(fact.get("review") or "none"),
        conflicts=bool(fact.get("conflicts")), mergeable=bool(fact.get("mergeable")),
        escalations=escalations, created_at=session.created_at, observed_at=observed,
        workspace=session.workspace, merge=merge, archived=archived, fact=dict(fact), session=session)


@dataclass
class Overview:
    sessions: list[SessionView]
    poller: PollerState
    quarantined: list[Quarantined]
    other_projects: dict[str, int]      # sessions stored for projects this config does not have
    problems: list[str]                 # corrupt files found (and set aside) while reading

    def warnings(self) -> list[str]:
        out = list(dict.fromkeys(self.problems))
        text = warning(self.quarantined)
        if text:
            out.append(text)
        if self.other_projects:
            names = ", ".join(f"{p} ({n})" for p, n in sorted(self.other_projects.items()))
            out.append(f"sessions of projects not in this config are not shown: {names}")
        return out


def overview(config: Any, project: Optional[str] = None, include_archived: bool = False,
             store: Optional[SessionStore] = None) -> Overview:
    """Every session of ``config`` (one project with ``project``) as last observed; reads only files."""
    store = store or SessionStore(config.data_dir, log=False)
    poller = poller_state(config.data_dir)
    sessions, others = [], {}
    for s in store.list(project, include_archived=include_archived):
        if s.project not in config.projects:
            others[s.project] = others.get(s.project, 0) + 1
            continue
        archived = include_archived and s.status == "cleanup" and store.is_archived(s.id, s.project)
        sessions.append(view(s, poller.last_cycle_at, archived))
    return Overview(sessions, poller, quarantined(config.data_dir), others, list(store.problems))


def header(ov: Overview, now: Optional[float] = None) -> str:
    """One line on how fresh the data is: is a poller running, when did it last look."""
    from ao.durations import ago

    now = time.time() if now is None else now
    seconds = ov.poller.seconds_ago(now)
    if ov.poller.pid is not None:
        return f"ao start is running (pid {ov.poller.pid}); last observed {ago(seconds)}"
    if seconds is None:
        return "no poller has run yet: `ao status --refresh` observes once, `ao start` keeps watching"
    return f"no poller running; last observed {ago(seconds)} (`ao status --refresh` observes now)"
