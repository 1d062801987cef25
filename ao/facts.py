"""The session fact (SPEC 4.1) and lifecycle status derivation (SPEC 5), as plain functions.

A fact is a flat mapping; its field names are a public contract (rule files and rule tests use them) and
are documented in ``schemas/facts.schema.json``. The observer fills one fact per session per cycle, from
one clock; nothing here reads a clock.
"""

from __future__ import annotations

from typing import Any, Mapping

from ao.errors import did_you_mean

# Field -> (type, default in rule tests). `None` defaults are derived (see complete()).
FIELDS: dict[str, tuple[type | tuple[type, ...], Any]] = {
    "session": (str, None),
    "project": (str, None),
    "role": (str, "worker"),
    "status": (str, None),
    "activity": (str, "active"),
    "idle_seconds": (int, 0),
    "last_activity_at": (int, None),
    "runtime_alive": (bool, True),
    "age_seconds": (int, 0),
    "branch": (str, ""),
    "issue": (str, ""),
    "pr_state": (str, "none"),
    "pr_number": (int, 0),
    "pr_url": (str, ""),
    "head_sha": (str, ""),
    "base_branch": (str, ""),
    "ci": (str, "none"),
    "review": (str, "none"),
    "human_comments": (int, 0),
    "bot_comments": (int, 0),
    "untrusted_comments": (int, 0),  # beyond SPEC 4.1: SPEC 8's trust rule, reported to humans
    "untrusted_fingerprint": (str, ""),
    "comments_fingerprint": (str, ""),
    "bot_fingerprint": (str, ""),
    "conflicts": (bool, False),
    "behind": (bool, False),
    "draft": (bool, False),
    "mergeable": (bool, None),
    # Usage (ao/usage.py): from the agent's own records; cost priced with the config's price table.
    "tokens_in": (int, 0),
    "tokens_out": (int, 0),
    "cost_usd": (float, 0.0),
    "paused": (bool, False),  # the `pause` action interrupted the agent; `ao send` resumes it
    "issue_state": (str, "none"),  # the tracker's view of the session's issue (reconciliation)
}

# The project fact, one per project per cycle, for project-scoped triggers (all-complete).
PROJECT_FIELDS: dict[str, tuple[type | tuple[type, ...], Any]] = {
    "project": (str, None),
    "session_count": (int, 0),
    "terminal_count": (int, 0),
    "all_terminal": (bool, False),
    "session_set": (str, ""),
    # Usage totals of every session of the project the data dir remembers (cleaned-up ones included).
    "tokens_in": (int, 0),
    "tokens_out": (int, 0),
    "cost_usd": (float, 0.0),
}

USAGE_FIELDS = ("tokens_in", "tokens_out", "cost_usd")

ENUMS: dict[str, tuple[str, ...]] = {
    "role": ("worker", "orchestrator"),
    "activity": ("active", "ready", "idle", "waiting_input", "blocked", "exited", "unknown"),
    "pr_state": ("none", "open", "merged", "closed"),
    "ci": ("none", "pending", "passing", "failing"),
    "review": ("none", "pending", "approved", "changes_requested"),
    "issue_state": ("none", "open", "inactive", "closed"),
}

STATUSES = ("spawning", "working", "pr_open", "ci_failed", "review_pending", "changes_requested", "approved",
            "mergeable", "merged", "pr_closed", "needs_input", "stuck", "exited", "killed", "done", "cleanup",
            "errored")
TERMINAL = frozenset({"merged", "exited", "killed", "done", "cleanup", "errored"})
ENDED_ON_PURPOSE = frozenset({"killed", "done", "cleanup"})

SPAWN_GRACE_SECONDS = 60  # a session this young that has said nothing yet is still spawning


def is_mergeable(fact: Mapping[str, Any]) -> bool:
    """Every merge criterion the fact can tell (:func:`ao.merging.criteria_for_fact`): open, not a draft,
    approved, CI passing (or ``none``: provably no CI), no conflicts, not behind. The SCM observer sets
    ``mergeable`` itself from the full evidence (:attr:`ao.plugins.scm.PRView.mergeable`); this derives it
    only where no observer did (rule tests, ``--fact`` files)."""
    from ao.merging import criteria_for_fact

    return all(c.ok for c in criteria_for_fact(fact))


def derive_status(fact: Mapping[str, Any], stuck_threshold: int = 600, previous: str | None = None) -> str:
    """Lifecycle status from one fact; first match wins (SPEC 5).

    ``previous`` is the stored status: a session ended on purpose keeps it.
    """
    if previous in ENDED_ON_PURPOSE:
        return previous
    if fact.get("pr_state") == "merged":
        return "merged"
    if not fact.get("runtime_alive", True) or fact.get("activity") == "exited":
        return "exited"
    if fact.get("activity") == "waiting_input":
        return "needs_input"
    if fact.get("pr_state") == "closed":
        return "pr_closed"
    if fact.get("pr_state") == "open":
        if fact.get("ci") == "failing":
            return "ci_failed"
        if fact.get("review") == "changes_requested":
            return "changes_requested"
        if fact.get("mergeable", is_mergeable(fact)):
            return "mergeable"
        if fact.get("review") == "approved":
            return "approved"
        if fact.get("review") == "pending" or fact.get("ci") == "passing":
            return "review_pending"
        return "pr_open"
    if fact.get("activity") in ("idle", "blocked") and fact.get("idle_seconds", 0) >= stuck_threshold:
        return "stuck"
    if fact.get("age_seconds", 0) < SPAWN_GRACE_SECONDS and fact.get("activity") in ("unknown", None):
        return "spawning"
    return "working"


def complete(partial: Mapping[str, Any], now: int, stuck_threshold: int = 600) -> dict[str, Any]:
    """A full fact from a partial one: defaults of SPEC 4.1, then the derived fields."""
    fact: dict[str, Any] = {name: default for name, (_, default) in FIELDS.items() if default is not None}
    fact.update(partial)
    fact.setdefault("last_activity_at", now - int(fact.get("idle_seconds", 0)))
    if "mergeable" not in partial:
        fact["mergeable"] = is_mergeable(fact)
    if "status" not in partial:
        fact["status"] = derive_status(fact, stuck_threshold)
    return fact


def type_problems(fact: Mapping[str, Any]) -> list[str]:
    """Unknown fields and wrongly typed values, as messages (used by rule tests and the observer)."""
    out = []
    for name, value in fact.items():
        if name not in FIELDS:
            out.append(f"unknown fact field '{name}'{did_you_mean(name, FIELDS)}")
            continue
        kind = FIELDS[name][0]
        if not is_kind(value, kind):
            out.append(f"fact field '{name}' must be {kind_name(kind)}, got {value!r}")
        elif name in ENUMS and value not in ENUMS[name]:
            out.append(f"fact field '{name}' must be one of {', '.join(ENUMS[name])}, got {value!r}")
        elif name == "status" and value not in STATUSES:
            out.append(f"fact field 'status' must be a lifecycle status, got {value!r}")
    return out


def is_kind(value: Any, kind: Any) -> bool:
    """Whether ``value`` fits a fact field of type ``kind``: a bool is no number, an int is a fine float."""
    if isinstance(value, bool):
        return kind is bool
    if kind is float:
        return isinstance(value, (int, float))
    return isinstance(value, kind)


def kind_name(kind: Any) -> str:
    return "number" if kind is float else kind.__name__


def project_fact(project: str, session_facts: list[Mapping[str, Any]],
                 usage: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The project fact: how many sessions there are, whether every one has finished, and the usage totals
    (``usage``: totals over every session the data dir remembers; else the sum of ``session_facts``)."""
    workers = [f for f in session_facts if f.get("role", "worker") == "worker"]
    terminal = [f for f in workers if f.get("status") in TERMINAL]
    if usage is None:
        usage = {"tokens_in": sum(int(f.get("tokens_in", 0)) for f in session_facts),
                 "tokens_out": sum(int(f.get("tokens_out", 0)) for f in session_facts),
                 "cost_usd": round(sum(float(f.get("cost_usd", 0.0)) for f in session_facts), 4)}
    return {
        **{k: usage.get(k, 0) for k in USAGE_FIELDS},
        "project": project,
        "session_count": len(workers),
        "terminal_count": len(terminal),
        "all_terminal": bool(workers) and len(terminal) == len(workers),
        "session_set": ",".join(sorted(str(f["session"]) for f in workers)),
    }
