"""SCMs: what happened to each session's PR (SPEC 8). ``github`` and ``local`` (the embedded default).

One :meth:`SCM.observe` call sees every session of a project at once (GitHub: one batched GraphQL query for
many PRs, behind a cheap conditional request), and returns a :class:`PRView` per branch. A view becomes the
SCM half of the session fact (:meth:`PRView.fact_fields`, SPEC 4.1) plus the rich data templates need
(:meth:`PRView.details`: failed checks with log tails, trusted review comments).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

from ao import plugins
from ao.errors import AoError

MODULES = {"github": "github", "local": "local"}
CI_STATES = ("none", "pending", "passing", "failing")
REVIEW_STATES = ("none", "pending", "approved", "changes_requested")
PR_STATES = ("none", "open", "merged", "closed")
TRUSTED_ASSOCIATIONS = ("OWNER", "MEMBER", "COLLABORATOR")


class MergeError(AoError):
    """The PR was not merged (changed since it was observed, not mergeable, refused); the message says why."""


@dataclass
class Check:
    name: str                  # not unique: two workflows may both have a "test" job
    state: str                 # passing | failing | pending
    url: str = ""
    log_tail: str = ""         # failing checks only: the end of the log, ANSI stripped, capped (untrusted)
    id: str = ""               # unique per head commit: GitHub's check run id, or the status context's name
    conclusion: str = ""       # what the host said (GitHub: SUCCESS, FAILURE, STALE, ...), for humans


@dataclass
class Review:
    """A reviewer's latest opinion (approving or requesting changes) on the PR."""

    id: str
    author: str                # "ghost" for a deleted account
    state: str                 # approved | changes_requested
    commit: str = ""           # the head SHA the review was given on
    trusted: bool = False      # by association or login (scm.trustedAssociations, scm.trustedLogins)
    association: str = ""
    bot: bool = False
    url: str = ""


@dataclass
class Comment:
    id: str
    author: str
    body: str                  # untrusted text
    association: str = ""      # GitHub author association (OWNER, MEMBER, ...)
    trusted: bool = False      # association in the configured trusted list
    bot: bool = False          # a bot account (linters, scanners)
    path: str = ""
    line: int | None = None
    url: str = ""


@dataclass
class PRView:
    """One branch's PR as observed now. ``state == "none"``: no PR for the branch (yet)."""

    branch: str
    state: str = "none"        # PR_STATES
    number: int = 0
    url: str = ""
    head_sha: str = ""
    base_branch: str = ""
    draft: bool = False
    conflicts: bool = False
    behind: bool = False
    ci: str = "none"           # CI_STATES
    review: str = "none"       # REVIEW_STATES
    checks: list[Check] = field(default_factory=list)
    comments: list[Comment] = field(default_factory=list)  # unresolved review threads (first comment each)
    # the merge evidence (ao.merging): why ci and review read as they do, what the host computed
    reviews: list[Review] = field(default_factory=list)   # the latest opinion of each reviewer
    review_note: str = ""
    ci_note: str = ""
    mergeability: str = ""     # mergeable | conflicting | unknown ("" = from ``conflicts``)
    blocked: bool = False      # the host reports the merge as blocked (GitHub's mergeStateStatus BLOCKED)

    @property
    def human_comments(self) -> list[Comment]:
        """Unresolved comments by trusted people: the only ones ever forwarded to an agent."""
        return [c for c in self.comments if c.trusted and not c.bot]

    @property
    def bot_comments(self) -> list[Comment]:
        return [c for c in self.comments if c.bot]

    @property
    def untrusted_comments(self) -> list[Comment]:
        """Comments by people outside the trusted associations: reported to humans, never sent to agents."""
        return [c for c in self.comments if not c.trusted and not c.bot]

    def fact_fields(self) -> dict[str, Any]:
        """The SCM fields of the session fact (SPEC 4.1)."""
        return {
            "pr_state": self.state, "pr_number": self.number, "pr_url": self.url, "head_sha": self.head_sha,
            "base_branch": self.base_branch, "ci": self.ci, "review": self.review,
            "human_comments": len(self.human_comments), "bot_comments": len(self.bot_comments),
            "comments_fingerprint": fingerprint(c.id for c in self.human_comments),
            "bot_fingerprint": fingerprint(c.id for c in self.bot_comments),
            "untrusted_comments": len(self.untrusted_comments),
            "untrusted_fingerprint": fingerprint(c.id for c in self.untrusted_comments),
            "conflicts": self.conflicts, "behind": self.behind, "draft": self.draft,
            "mergeable": self.mergeable,
        }

    @property
    def mergeable(self) -> bool:
        """Every merge criterion holds (:func:`ao.merging.criteria`)."""
        from ao.merging import criteria

        return all(c.ok for c in criteria(self))

    def details(self) -> dict[str, Any]:
        """Template variables (SPEC 6) beyond the fact: failed checks with logs, trusted comments, bot comments."""
        failed = [c for c in self.checks if c.state == "failing"]
        bots = self.bot_comments
        return {
            "failed_checks": [{"name": c.name, "url": c.url, "log_tail": c.log_tail} for c in failed],
            "ci_logs": "\n\n".join(f"{c.name}:\n{c.log_tail}" for c in failed if c.log_tail),
            "review_comments": [_comment(c) for c in self.human_comments],
            "bot_comments": [_comment(c) for c in bots],
            "bot_name": bots[0].author if bots else "",
            "untrusted_comments": [_comment(c) for c in self.untrusted_comments],  # for humans only
        }


def _comment(c: Comment) -> dict[str, Any]:
    return {"author": c.author, "path": c.path, "line": c.line, "body": c.body, "url": c.url}


def fingerprint(ids: Any) -> str:
    """A stable short hash of a set of ids ("" for none): changes exactly when the set changes."""
    items = sorted(str(i) for i in ids)
    return hashlib.sha256("\n".join(items).encode()).hexdigest()[:16] if items else ""


@dataclass
class ScmContext:
    """What an SCM plugin is built with, per project."""

    project: str
    project_path: Path
    repo: str | None               # owner/name (github)
    default_branch: str
    settings: dict[str, Any]       # the project's scm: mapping without "plugin"
    state_dir: Path                # private, persistent folder: ETags, CI results, reviews, counters
    clock: Callable[[], float]     # the one injectable clock (rate-limit windows, cache ages)
    pass_env: tuple[str, ...] = ()  # names the config adds to CI's environment (ao.environment)


class SCM(Protocol):
    name: str

    def observe(self, branches: list[str]) -> dict[str, PRView]:
        """Every branch's PR, in as few requests as possible. Branches with no PR map to ``PRView(branch)``."""

    def invalidate(self, branches: list[str] | None = None) -> None:
        """A webhook said these branches (None: all) changed: the next observe re-reads them even where the
        cheap guard says nothing changed."""

    def merge(self, view: PRView, method: str | None = None) -> str:
        """Merge the PR with ``view.head_sha`` pinned (a newer push is never merged unseen); returns the merge
        commit sha. Raises MergeError."""

    def comment(self, view: PRView, text: str) -> None:
        """Post ``text`` on the PR (notify actions, when configured)."""


def context_for(config: Any, project: Any, clock: Callable[[], float] | None = None) -> ScmContext:
    """The ScmContext of ``project`` (an :class:`ao.config.Project`): its private state under the data dir."""
    import time

    from ao.environment import pass_names

    settings = {k: v for k, v in (project.scm or {}).items() if k != "plugin"}
    return ScmContext(project=project.id, project_path=Path(project.path), repo=project.repo,
                      default_branch=project.default_branch, settings=settings,
                      state_dir=Path(config.data_dir) / "projects" / project.id / "scm", clock=clock or time.time,
                      pass_env=tuple(pass_names(config, project)))


def for_project(config: Any, project: Any, clock: Callable[[], float] | None = None) -> SCM:
    """The project's SCM plugin, ready to use."""
    return get((project.scm or {}).get("plugin", "local"), context_for(config, project, clock))


def get(name: str, ctx: ScmContext) -> SCM:
    return plugins.load("scm", name, MODULES, ctx=ctx)
