"""Trackers: where issues come from (SPEC 8). ``local`` here; ``github`` and ``linear`` with the SCM work."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

from ao import plugins
from ao.errors import AoError

MODULES = {"local": "local", "github": "github", "linear": "linear"}
MORE_PAGES = 10     # follow-up pages of one issue's blockers read, at most (blockers_after)


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


def blockers_after(page: dict[str, Any], fetch: Callable[[str], dict[str, Any]],
                   pick: Callable[[list[Any]], list[str]], what: str, total: int) -> list[str]:
    """The open blockers on the pages after ``page``, a page of a connection that a batched query read
    (``{nodes, pageInfo}``): ``fetch(cursor)`` reads the next one, ``pick(nodes)`` names its open blockers.
    At most :data:`MORE_PAGES` are read. A page that cannot be read (AoError), or more pages than that,
    leave a note among the blockers, so the issue waits: unread is not "unblocked". ``total``: how many
    blockers that many pages hold, for the note."""
    out: list[str] = []
    info = page.get("pageInfo") or {}
    try:
        for _ in range(MORE_PAGES):
            if not info.get("hasNextPage") or not info.get("endCursor"):
                return out
            page = fetch(info["endCursor"])
            out += pick(page.get("nodes") or [])
            info = page.get("pageInfo") or {}
    except AoError as exc:
        return [*out, f"({what} unread: {exc})"]
    return [*out, f"(more than {total} {what} unread)"] if info.get("hasNextPage") else out


def get(name: str, *, project_path: Path, settings: dict[str, Any]) -> Tracker:
    return plugins.load("tracker", name, MODULES, project_path=project_path, settings=settings)
