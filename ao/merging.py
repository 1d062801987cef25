"""When a PR may be merged, from first principles, and the one safe way ao merges (SPEC 4.1 ``mergeable``, SPEC 8).

A PR is mergeable only when ao has positive evidence for every criterion, observed on the head SHA it will
pin for the merge (``PRView.head_sha``; a later push is never merged unseen):

``open``        the PR is open;
``ready``       it is not a draft;
``review``      it is approved (an approving review on the head commit, by a trusted reviewer or counted by
                GitHub's own review decision), and no reviewer's latest review requests changes, whatever GitHub's
                ``reviewDecision`` says (it is null in repositories that do not require reviews);
``ci``          CI passed on the head commit, or the repository provably has no CI (no active workflow and no
                check on its recent commits, and still no check a grace period after the push); "nothing
                reported yet" is pending, not green;
``conflicts``   the host has computed that it merges cleanly (GitHub's ``UNKNOWN`` is not "no conflicts");
``up-to-date``  the branch is not behind its base when the base requires up-to-date branches;
``protection``  the host does not report the merge as blocked (GitHub's ``mergeStateStatus: BLOCKED``).

Without an open PR the list is ``open`` alone: nothing else about a PR was observed, so nothing is claimed.

The SCM plugins gather the evidence into a :class:`ao.plugins.scm.PRView` (``review`` and ``ci`` with a sentence
saying why, from :func:`review_verdict` and the plugin's CI rules); :func:`criteria` reads it. The session
fact's ``mergeable`` is ``all(criteria(view))``, ``approved-and-green`` triggers on it, the ``auto-merge``
executor and ``ao merge`` (:func:`merge_session`) refuse without it, and ``ao rules explain`` shows the list.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping

from ao.errors import AoError

if TYPE_CHECKING:
    from ao.plugins.scm import PRView, Review

NAMES = ("open", "ready", "review", "ci", "conflicts", "up-to-date", "protection")


@dataclass(frozen=True)
class Criterion:
    name: str        # one of NAMES
    ok: bool
    detail: str      # what the evidence is, or what is missing

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class NotMergeable(AoError):
    """The PR lacks evidence for at least one criterion; ``missing`` names them."""

    def __init__(self, message: str, missing: list[Criterion]) -> None:
        super().__init__(message)
        self.missing = missing


def _short(sha: str) -> str:
    return sha[:7] if sha else "?"


def _names(reviews: Iterable[Review]) -> str:
    return ", ".join(sorted({r.author for r in reviews}))


def review_verdict(reviews: list[Review], head_sha: str, *, decision: str = "", required: bool = False,
                   accept_stale: bool = False) -> tuple[str, str]:
    """The ``review`` fact value and why, from the latest opinion of each reviewer.

    ``reviews``: one per reviewer, their latest approving or changes-requesting review; ``decision``: GitHub's
    ``reviewDecision`` ("" when null); ``required``: a review is awaited even without one (the local SCM);
    ``accept_stale``: an approval of an earlier commit counts (``scm.staleApprovals``).
    """
    blocking = [r for r in reviews if r.state == "changes_requested"]
    trusted_blocking = [r for r in blocking if r.trusted]
    if trusted_blocking:
        return "changes_requested", f"{_names(trusted_blocking)} requested changes (their latest review)"
    if decision == "CHANGES_REQUESTED":
        return "changes_requested", "GitHub's review decision is CHANGES_REQUESTED"
    if blocking:
        # never forwarded to the agent (untrusted), but a request for changes all the same: a human decides
        return "pending", (f"{_names(blocking)} (not trusted) requested changes; a maintainer must dismiss that "
                           "review or approve after it")
    approvals = [r for r in reviews if r.state == "approved" and (r.trusted or decision == "APPROVED")]
    current = [r for r in approvals if accept_stale or (head_sha and r.commit == head_sha)]
    if decision == "REVIEW_REQUIRED":
        return "pending", "branch protection requires more approving reviews"
    if current:
        on = "" if accept_stale else f" on {_short(head_sha)}"
        return "approved", f"approved by {_names(current)}{on}"
    if approvals:
        older = ", ".join(sorted(f"{r.author} ({_short(r.commit)})" for r in approvals))
        return "pending", f"approved on an earlier commit only: {older}; the head is {_short(head_sha)}"
    untrusted = [r for r in reviews if r.state == "approved"]
    if untrusted:
        return "pending", f"approved only by reviewers who are not trusted: {_names(untrusted)}"
    if required or decision:
        return "pending", "no approving review yet"
    return "none", "no review yet"


def criteria(view: PRView) -> list[Criterion]:
    """Every merge criterion for the PR as observed in ``view`` (see the module's docstring)."""
    number = f"PR #{view.number}" if view.number else "the PR"
    head = _short(view.head_sha)
    opened = Criterion("open", view.state == "open" and bool(view.head_sha),
                       f"{number} is open at {head}" if view.state == "open" and view.head_sha
                       else "no PR for the branch" if view.state == "none" else f"{number} is {view.state}")
    if not opened.ok:  # nothing else was observed: claim no "ci ok" or "merges cleanly" about a PR that isn't
        return [opened]
    out = [opened, Criterion("ready", not view.draft, "a draft" if view.draft else "not a draft")]
    out.append(Criterion("review", view.review == "approved",
                         view.review_note or {"approved": "approved", "none": "no review yet",
                                              "pending": "waiting for an approving review",
                                              "changes_requested": "changes requested"}.get(view.review, view.review)))
    ci_default = {"passing": f"CI passed on {head}", "none": "the repository has no CI",
                  "pending": f"CI has not finished on {head}", "failing": f"CI failed on {head}"}
    out.append(Criterion("ci", view.ci in ("passing", "none"), view.ci_note or ci_default.get(view.ci, view.ci)))
    base = view.base_branch or "the base branch"
    mergeability = view.mergeability or ("conflicting" if view.conflicts else "mergeable")
    out.append(Criterion("conflicts", mergeability == "mergeable" and not view.conflicts,
                         {"mergeable": f"merges cleanly into {base}", "conflicting": f"conflicts with {base}",
                          }.get(mergeability, "mergeability not computed yet")))
    out.append(Criterion("up-to-date", not view.behind,
                         f"behind {base}, which requires branches to be up to date" if view.behind
                         else f"up to date with {base} (or {base} does not require it)"))
    out.append(Criterion("protection", not view.blocked,
                         "GitHub reports the merge as blocked by the base branch's protection" if view.blocked
                         else "not blocked"))
    return out


def criteria_for_fact(fact: Mapping[str, Any]) -> list[Criterion]:
    """The criteria as far as a session fact tells them (rule tests, ``--fact`` files, stored facts)."""
    from ao.plugins.scm import PRView

    view = PRView(branch=str(fact.get("branch", "")), state=str(fact.get("pr_state", "none")),
                  number=int(fact.get("pr_number") or 0), head_sha=str(fact.get("head_sha", "") or "?"),
                  base_branch=str(fact.get("base_branch", "")), draft=bool(fact.get("draft")),
                  conflicts=bool(fact.get("conflicts")), behind=bool(fact.get("behind")),
                  ci=str(fact.get("ci", "none")), review=str(fact.get("review", "none")))
    return criteria(view)


def missing(items: Iterable[Criterion]) -> list[Criterion]:
    return [c for c in items if not c.ok]


def describe(items: Iterable[Criterion]) -> str:
    """``review: alice requested changes; ci: ...``: the missing criteria as one line."""
    return "; ".join(f"{c.name}: {c.detail}" for c in missing(items))


def stored(session: Any) -> list[Criterion] | None:
    """The criteria the poller saved with the session's last observation (``meta["merge"]``), if any."""
    saved = (getattr(session, "meta", None) or {}).get("merge")
    if not isinstance(saved, dict) or not isinstance(saved.get("criteria"), list):
        return None
    try:
        return [Criterion(str(c["name"]), bool(c["ok"]), str(c["detail"])) for c in saved["criteria"]]
    except (KeyError, TypeError):
        return None


def for_session(session: Any, fact: Mapping[str, Any] | None = None) -> list[Criterion]:
    """What ``rules explain``, ``status`` and the dashboard show: the stored criteria of the session's PR, or
    those its fact implies."""
    saved = stored(session)
    if saved is not None and (fact is None or (session.meta.get("merge") or {}).get("head_sha")
                              == fact.get("head_sha")):
        return saved
    return criteria_for_fact(fact if fact is not None else (getattr(session, "fact", None) or {}))


# ------------------------------------------------------------------------------------------------ merging


def merge_view(scm: Any, view: PRView, method: str | None = None) -> str:
    """Merge the PR of ``view`` if every criterion holds, with its head SHA pinned; the merge commit's sha.

    Raises :class:`NotMergeable` (nothing was attempted) or :class:`ao.plugins.scm.MergeError`."""
    found = criteria(view)
    if missing(found):
        where = f"PR #{view.number} ({view.branch})" if view.number else view.branch
        raise NotMergeable(f"not merged: {where} is not mergeable: {describe(found)}", missing(found))
    return scm.merge(view, method)


@dataclass
class MergeResult:
    session: str
    pr_number: int
    pr_url: str
    head_sha: str
    merged: bool
    sha: str
    criteria: list[Criterion]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["criteria"] = [c.to_dict() for c in self.criteria]
        return data


def merge_session(config: Any, session_id: str, *, method: str | None = None, dry_run: bool = False,
                  clock: Callable[[], float] | None = None, expected_sha: str | None = None) -> MergeResult:
    """``ao merge SESSION``: observe the session's PR afresh, check every criterion, merge with the head pinned.

    The same rules as ``auto-merge``, for every SCM. Raises :class:`NotMergeable` naming the missing criteria,
    :class:`ao.plugins.scm.MergeError` when the host refuses, or :class:`AoError` for an unknown session, or
    when the head is no longer ``expected_sha`` (the commit a person confirmed, in the dashboard)."""
    from ao.plugins import scm as scm_plugins
    from ao.store import SessionStore

    session = SessionStore(config.data_dir, log=False).find(session_id)
    if not session.branch:
        raise AoError(f"session {session.id} has no branch, so no PR to merge")
    project = config.projects.get(session.project)
    if project is None:
        raise AoError(f"session {session.id} belongs to project '{session.project}', which the config does not have")
    scm = scm_plugins.for_project(config, project, clock)
    if hasattr(scm, "invalidate"):
        scm.invalidate([session.branch])  # read it now, whatever the cheap guard says
    view = scm.observe([session.branch])[session.branch]
    found = criteria(view)
    if expected_sha is not None and not found[0].ok:  # no open PR: there is no head to compare
        raise NotMergeable(f"not merged: {session.branch}: {describe(found)}", missing(found))
    if expected_sha is not None and view.head_sha != expected_sha:
        raise AoError(f"not merged: {session.branch} is at {_short(view.head_sha)} now, not the "
                      f"{_short(expected_sha)} you confirmed; look at it again")
    result = MergeResult(session.id, view.number, view.url, view.head_sha, False, "", found)
    if dry_run:
        return result
    result.sha = merge_view(scm, view, method or (project.scm or {}).get("mergeMethod"))
    result.merged = True
    return result
