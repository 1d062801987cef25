"""Actions as data: what the engine decided, and the executors that carry it out."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

KINDS = ("send-to-agent", "notify", "auto-merge", "pause", "kill", "escalate")


@dataclass
class Action:
    """One thing to do. ``session`` is None for project-wide reactions (all-complete)."""

    project: str
    session: str | None
    reaction: str
    action: str  # one of KINDS
    priority: str | None
    notifiers: tuple[str, ...]
    title: str
    text: str
    occurrence: str
    reason: str
    attempt: int = 0
    budget: int = 0  # when this ledger budget began (first_at): a new budget is a new decision
    fact: dict[str, Any] = field(default_factory=dict, repr=False)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["notifiers"] = list(self.notifiers)
        out.pop("fact")
        return out


@dataclass(frozen=True)
class Outcome:
    """What became of an action. ``held``: not done yet and not failed either (the agent waits for a human
    or is busy): no attempt is counted, no delivery failure, and the next observation decides again."""

    ok: bool
    error: str = ""
    held: bool = False


class Executor(Protocol):
    """Carries out actions. ``send-to-agent`` and ``auto-merge`` report whether they took effect;
    notifications count as delivered once they are safely queued."""

    def execute(self, action: Action) -> Outcome: ...


class RecordingExecutor:
    """Records every action; fails the next ``fail`` deliveries (tests and dry runs)."""

    def __init__(self, fail: int = 0, error: str = "delivery failed") -> None:
        self.actions: list[Action] = []
        self.fail = fail
        self.error = error

    def execute(self, action: Action) -> Outcome:
        self.actions.append(action)
        if self.fail > 0 and action.action in ("send-to-agent", "auto-merge", "pause", "kill"):
            self.fail -= 1
            return Outcome(False, self.error)
        return Outcome(True)
