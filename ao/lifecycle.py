"""Lifecycle events (SPEC 5) from two consecutive facts of one session, as a pure function.

The poller compares the fact it stored last cycle with the one it just built and appends what changed to
the event log. Comparing facts (not only statuses) means a CI result is reported even when the status does
not move, e.g. CI passing while the review is still pending.
"""

from __future__ import annotations

from typing import Any, Mapping

_STATUS_EVENTS = {
    "working": "session.working", "needs_input": "session.needs_input", "stuck": "session.stuck",
    "exited": "session.exited", "merged": "merge.completed", "pr_closed": "pr.closed",
    "mergeable": "merge.ready",
}
_CI_EVENTS = {"pending": "ci.pending", "failing": "ci.failing", "passing": "ci.passing"}
_REVIEW_EVENTS = {"pending": "review.pending", "changes_requested": "review.changes_requested",
                  "approved": "review.approved"}


def transitions(previous: Mapping[str, Any] | None, fact: Mapping[str, Any]) -> list[str]:
    """Event types for what changed between ``previous`` (None: first observation) and ``fact``."""
    prev = previous or {}
    out: list[str] = []
    if fact.get("pr_state") == "open" and prev.get("pr_state", "none") == "none":
        out.append("pr.created")
    if fact.get("ci") != prev.get("ci", "none") and fact.get("ci") in _CI_EVENTS:
        out.append(_CI_EVENTS[fact["ci"]])
    if fact.get("review") != prev.get("review", "none") and fact.get("review") in _REVIEW_EVENTS:
        out.append(_REVIEW_EVENTS[fact["review"]])
    if fact.get("bot_fingerprint") and fact.get("bot_fingerprint") != prev.get("bot_fingerprint"):
        out.append("automated_review.found")
    if fact.get("conflicts") and not prev.get("conflicts"):
        out.append("merge.conflicts")
    status = fact.get("status")
    if status != prev.get("status") and status in _STATUS_EVENTS:
        event = _STATUS_EVENTS[status]
        if event not in out:
            out.append(event)
    return out


def action_events(reaction: str, kind: str, ok: bool) -> list[str]:
    """Events for one executed action: the generic reaction events plus the SPEC's named ones."""
    if kind == "escalate":
        return ["reaction.escalated"]
    out = ["reaction.triggered"]
    if reaction == "ci-failed" and kind == "send-to-agent":
        out.append("ci.fix_sent" if ok else "ci.fix_failed")
    elif reaction == "changes-requested" and kind == "send-to-agent" and ok:
        out.append("review.comments_sent")
    elif reaction == "all-complete" and ok:
        out.append("summary.all_complete")
    elif kind == "pause" and ok:
        out.append("session.paused")
    return out
