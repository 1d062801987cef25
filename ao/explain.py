"""Why each reaction does or does not match a session's fact: shared by ``ao rules explain`` and the
dashboard's session page, so both say the same thing."""

from __future__ import annotations

from typing import Any, Mapping


def trigger_text(when: Any) -> str:
    """A trigger as text: ``ci == failing and not (review == approved)``."""
    from ao.rulefiles import All, Cond, Not

    if isinstance(when, Cond):
        return str(when)
    if isinstance(when, Not):
        return f"not ({trigger_text(when.item)})"
    joiner = " and " if isinstance(when, All) else " or "
    inner = joiner.join(trigger_text(i) for i in when.items)
    return inner if isinstance(when, All) or len(when.items) == 1 else f"({inner})"


def first_failure(node: Any, fact: Mapping[str, Any]) -> str | None:
    """The first condition (in file order) that does not hold, as text; None when the trigger matches."""
    from ao.engine import evaluate_node
    from ao.rulefiles import All, Cond

    if evaluate_node(node, fact):
        return None
    if isinstance(node, All):
        for item in node.items:
            reason = first_failure(item, fact)
            if reason:
                return reason
    if isinstance(node, Cond):
        return f"{node} (is {fact.get(node.field)!r})"
    return trigger_text(node)


def explain(compiled: Any, fact: Mapping[str, Any], ledgers: Mapping[str, Any],
            merge: Any = ()) -> list[dict[str, Any]]:
    """One row per session-scoped trigger of a compiled project: matched, the first failing condition (for
    ``mergeable``, with the merge criteria missing from ``merge``), the occurrence value and the reaction's
    ledger (``Entry``, or None)."""
    missing = ", ".join(c.name for c in merge if not c.ok)
    report = []
    for ct in compiled.triggers:
        if ct.trigger.scope != "session":
            continue
        failed = first_failure(ct.when, fact)
        if failed and failed.startswith("mergeable ") and missing:
            failed += f"; missing: {missing}"
        entry = ledgers.get(ct.reaction.key)
        report.append({"reaction": ct.reaction.key, "rule": ct.name, "matched": failed is None,
                       "failed": failed, "occurrence": f"{ct.trigger.occurrence}={fact.get(ct.trigger.occurrence)!r}",
                       "ledger": entry.to_dict() if entry else None})
    return report
