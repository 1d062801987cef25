"""Trackers: where issues come from (SPEC 8). ``local`` here; ``github`` and ``linear`` with the SCM work."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ao import plugins
from ao.errors import AoError

MODULES = {"local": "local", "github": "github", "linear": "linear"}


class IssueNotFound(AoError):
    """The tracker has no such issue; the message names some that exist."""


@dataclass
class Issue:
    id: str
    title: str
    body: str = ""             # untrusted text: only ever a template variable
    url: str = ""
    state: str = "open"        # open | closed
    labels: list[str] = field(default_factory=list)


@dataclass
class IssueStatus:
    """What admission and reconciliation need to know of an issue (SPEC 12)."""

    state: str = "open"                                    # open | inactive (out of the active states) | closed
    blocked_by: list[str] = field(default_factory=list)    # its blockers that are still open


class Tracker(Protocol):
    name: str

    def looks_like_id(self, text: str) -> bool:
        """Whether a lone spawn argument should be read as an issue id rather than a free-form task."""

    def get(self, issue_id: str) -> Issue:
        """Raises IssueNotFound."""

    def list(self, state: str = "open") -> list[Issue]: ...

    def comment(self, issue_id: str, text: str) -> None: ...

    def close(self, issue_id: str) -> None: ...

    def pickup(self, spec: dict[str, Any]) -> list[Issue]:
        """Open issues matching a project's ``pickup`` (label, state, view), for the queue."""

    def status(self, issue_ids: list[str], active_states: list[str] | None = None, *,
               blockers: bool = True) -> dict[str, IssueStatus]:
        """State and open blockers of many issues, in as few requests as the tracker allows. Issues that do
        not exist are left out. ``blockers=False``: only the state matters (reconciling live sessions), so a
        tracker may skip requests it makes only for blockers."""


def get(name: str, *, project_path: Path, settings: dict[str, Any]) -> Tracker:
    return plugins.load("tracker", name, MODULES, project_path=project_path, settings=settings)
