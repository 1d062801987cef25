"""Reaction configuration: the built-in table (SPEC section 3) and the three-level merge."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ao.durations import parse_duration

PRIORITIES = ("urgent", "action", "warning", "info")
ACTIONS = ("send-to-agent", "notify", "auto-merge", "pause", "kill")

# Built-in defaults, in the config file's own spelling so that merging is plain dict updates.
BUILTIN: dict[str, dict[str, Any]] = {
    "ci-failed": {"auto": True, "action": "send-to-agent", "retries": 2, "escalateAfter": 2},
    "changes-requested": {"auto": True, "action": "send-to-agent", "escalateAfter": "30m"},
    "bugbot-comments": {"auto": True, "action": "send-to-agent", "escalateAfter": "30m"},
    "merge-conflicts": {"auto": True, "action": "send-to-agent", "escalateAfter": "15m"},
    "approved-and-green": {"auto": False, "action": "notify", "priority": "action"},
    "pr-closed": {"auto": True, "action": "notify", "priority": "action"},
    "agent-idle": {"auto": True, "action": "send-to-agent", "retries": 2, "escalateAfter": "15m", "threshold": "5m"},
    "agent-stuck": {"auto": True, "action": "notify", "priority": "urgent", "threshold": "10m"},
    "agent-needs-input": {"auto": True, "action": "notify", "priority": "urgent"},
    "agent-exited": {"auto": True, "action": "notify", "priority": "urgent"},
    # new: SPEC 8's "untrusted comments are reported to humans, not forwarded to agents"
    "untrusted-comments": {"auto": True, "action": "notify", "priority": "action"},
    "all-complete": {"auto": True, "action": "notify", "priority": "info", "includeSummary": True},
    # new (SPEC 12): a session or project over its budget.session / budget.project USD
    "budget-exceeded": {"auto": True, "action": "notify", "priority": "warning"},
    # new (SPEC 12): the issue was closed or left the active states while its agent works. With auto: false
    # a human hears what would be done; with auto: true, a warning, then the kill once `threshold` has passed.
    "issue-closed": {"auto": False, "action": "kill", "priority": "action", "threshold": "10m"},
}


@dataclass(frozen=True)
class Reaction:
    """One reaction's effective settings for one project, durations in seconds."""

    key: str
    auto: bool
    action: str
    priority: str | None = None
    message: str | None = None
    template: str | None = None
    retries: int | None = None
    escalate_count: int | None = None
    escalate_seconds: int | None = None
    threshold: int | None = None
    include_summary: bool = False

    @property
    def limit(self) -> int | None:
        """How many occurrences the action may handle: min(retries, escalateAfter count); None = unlimited."""
        counts = [n for n in (self.retries, self.escalate_count) if n is not None]
        return min(counts) if counts else None

    def value(self, name: str) -> Any:
        """A config value by its YAML name, as ``$name`` in rule files reads it (durations in seconds)."""
        table = {
            "auto": self.auto, "action": self.action, "priority": self.priority, "retries": self.retries,
            "escalateAfter": self.escalate_seconds if self.escalate_seconds is not None else self.escalate_count,
            "threshold": self.threshold, "includeSummary": self.include_summary,
        }
        if name not in table:
            raise KeyError(name)
        return table[name]

    def to_config(self) -> dict[str, Any]:
        """Back to the YAML spelling (for ``ao config show``)."""
        out: dict[str, Any] = {"auto": self.auto, "action": self.action}
        for name, value in (("priority", self.priority), ("message", self.message), ("template", self.template),
                            ("retries", self.retries)):
            if value is not None:
                out[name] = value
        if self.escalate_count is not None:
            out["escalateAfter"] = self.escalate_count
        elif self.escalate_seconds is not None:
            out["escalateAfter"] = f"{self.escalate_seconds}s"
        if self.threshold is not None:
            out["threshold"] = f"{self.threshold}s"
        if self.include_summary:
            out["includeSummary"] = True
        return out


REFERENCE_NAMES = ("auto", "action", "priority", "retries", "escalateAfter", "threshold", "includeSummary",
                   "budget.session", "budget.project")  # the last two are the project's budget: settings


def merge_layers(*layers: dict[str, dict[str, Any]] | None) -> dict[str, dict[str, Any]]:
    """Merge reaction tables field by field; later layers win. The first layer is the built-in table.

    A built-in count ``escalateAfter`` only mirrors the built-in ``retries`` (ci-failed has both at 2), so
    a user who sets ``retries`` alone gets that many attempts instead of a silent cap at the old count.
    """
    merged: dict[str, dict[str, Any]] = {}
    for layer in layers:
        for key, fields in (layer or {}).items():
            merged.setdefault(key, {}).update(fields or {})
    builtin, user = layers[0] or {}, [layer or {} for layer in layers[1:]]
    for key, fields in merged.items():
        inherited = builtin.get(key, {}).get("escalateAfter")
        set_by_user = lambda name: any(name in (layer.get(key) or {}) for layer in user)  # noqa: E731
        if isinstance(inherited, int) and set_by_user("retries") and not set_by_user("escalateAfter"):
            fields.pop("escalateAfter", None)
    return merged


def build(key: str, fields: dict[str, Any]) -> Reaction:
    """A :class:`Reaction` from merged, schema-valid fields. Raises ValueError on a bad duration."""
    escalate = fields.get("escalateAfter")
    count = seconds = None
    if isinstance(escalate, int) and not isinstance(escalate, bool):
        count = escalate
    elif escalate is not None:
        seconds = parse_duration(escalate)
    threshold = fields.get("threshold")
    return Reaction(
        key=key,
        auto=bool(fields.get("auto", True)),
        action=fields["action"],
        priority=fields.get("priority"),
        message=fields.get("message"),
        template=fields.get("template"),
        retries=fields.get("retries"),
        escalate_count=count,
        escalate_seconds=seconds,
        threshold=parse_duration(threshold) if threshold is not None else None,
        include_summary=bool(fields.get("includeSummary", False)),
    )
