"""What the dashboard shows, as plain data built from session records and events (no I/O, no web framework).

The board groups sessions by what they need from a human, first match wins:

=============  ==========================================================================
``done``       merged, done, killed, cleaned up, PR closed: nothing more to do
``input``      the agent waits for a person (a question, a permission dialog, a login)
``escalated``  a reaction escalated to a human, or the agent is stuck, crashed or errored
``merge``      ready to merge
``ci``         CI failing (the agent has been told; a human steps in if it escalates)
``changes``    changes requested (likewise)
``working``    everything else: working, PR open, review pending, approved but not yet green
=============  ==========================================================================

The first three groups are what "needs attention" counts (title and favicon).
"""

from __future__ import annotations

import time
from typing import Any, Iterable, Mapping

from ao.store import Session

GROUPS: tuple[tuple[str, str], ...] = (
    ("input", "Waiting for input"), ("escalated", "Escalated"), ("merge", "Ready to merge"),
    ("ci", "CI failing"), ("changes", "Changes requested"), ("working", "Working"), ("done", "Done"),
)
ATTENTION = ("input", "escalated", "merge")
_DONE = ("merged", "done", "killed", "cleanup", "pr_closed")
_TROUBLE = ("stuck", "exited", "errored")


def escalated(session: Session) -> list[str]:
    """Reactions whose ledger says they escalated to a human."""
    return sorted(k for k, v in session.ledgers.items() if isinstance(v, dict) and v.get("escalated"))


def group_of(session: Session) -> str:
    status = session.status
    if status in _DONE:
        return "done"
    if status == "needs_input" or (session.fact or {}).get("activity") == "waiting_input":
        return "input"
    if escalated(session) or status in _TROUBLE:
        return "escalated"
    return {"mergeable": "merge", "ci_failed": "ci", "changes_requested": "changes"}.get(status, "working")


def waiting_for(session: Session) -> str:
    """What the agent waits for, as its plugin described it (``meta.activity.detail``), when it waits."""
    activity = session.meta.get("activity") if isinstance(session.meta.get("activity"), dict) else {}
    detail = activity.get("detail") if activity else ""
    return str(detail) if detail and group_of(session) in ("input", "escalated") else ""


def age(seconds: float) -> str:
    seconds = max(0, int(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def card(session: Session, now: float | None = None) -> dict[str, Any]:
    """One board card: everything the board shows of a session."""
    fact = session.fact or {}
    now = time.time() if now is None else now
    return {
        "id": session.id, "project": session.project, "role": session.role, "status": session.status,
        "group": group_of(session), "activity": fact.get("activity", ""), "waiting_for": waiting_for(session),
        "branch": session.branch, "issue": session.issue, "task": session.task, "agent": session.agent,
        "pr_number": session.pr_number or fact.get("pr_number") or 0,
        "pr_url": session.pr_url or fact.get("pr_url", ""),
        "pr_state": fact.get("pr_state", "none"), "ci": fact.get("ci", "none"), "review": fact.get("review", "none"),
        "conflicts": bool(fact.get("conflicts")), "escalated": escalated(session),
        "age": age(now - session.created_at), "created_at": session.created_at, "updated_at": session.updated_at,
        "usage": usage_text(fact), "paused": bool(fact.get("paused")),
    }


def usage_text(fact: Mapping[str, Any]) -> str:
    """``1.2M in, 40k out, $3.10``: what the agent has used so far ("" before any use was read)."""
    from ao.overview import tokens_text

    text = tokens_text(int(fact.get("tokens_in") or 0), int(fact.get("tokens_out") or 0))
    cost = float(fact.get("cost_usd") or 0.0)
    return text + (f", ${cost:.2f}" if text and cost else "")


def board(sessions: Iterable[Session], now: float | None = None) -> dict[str, Any]:
    """Cards by group, in GROUPS order, and the attention count."""
    groups: dict[str, list[dict[str, Any]]] = {key: [] for key, _ in GROUPS}
    for s in sessions:
        c = card(s, now)
        groups[c["group"]].append(c)
    return {"groups": groups, "attention": sum(len(groups[g]) for g in ATTENTION),
            "projects": sorted({c["project"] for cards in groups.values() for c in cards})}


def attention(cards: Iterable[Mapping[str, Any]]) -> int:
    return sum(1 for c in cards if c["group"] in ATTENTION)


# ------------------------------------------------------------------------------------------- session page

def ledger_rows(report: list[dict[str, Any]], timeline: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The explain report with, per reaction, its last delivery from the session's events."""
    last: dict[str, dict[str, Any]] = {}
    for event in timeline:  # oldest first: later ones win
        if event.get("reaction") and event.get("type") in ("reaction.triggered", "reaction.escalated"):
            last[event["reaction"]] = event
    rows = []
    for row in report:
        event = last.get(row["reaction"])
        rows.append({**row, "last": ({"ts": event.get("ts", ""), "ok": event.get("ok", True),
                                      "action": event.get("action", ""), "error": event.get("error") or "",
                                      "escalated": event.get("type") == "reaction.escalated"} if event else None)})
    return rows


def pr_details(session: Session) -> dict[str, Any]:
    """Checks (with log tails) and unresolved review threads as the poller last stored them."""
    pr = session.meta.get("pr") if isinstance(session.meta.get("pr"), dict) else {}
    checks = [c for c in pr.get("checks") or [] if isinstance(c, dict)]
    comments = [c for c in pr.get("comments") or [] if isinstance(c, dict)]
    return {"checks": checks, "comments": comments, "observed_at": pr.get("observed_at")}
