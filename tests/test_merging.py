"""Merge criteria from positive evidence (ao/merging.py), and the executor and ledger rules around them."""

from __future__ import annotations

import pytest

from ao import ledger
from ao.actions import Action
from ao.executors import MergeExecutor
from ao.ledger import ACT, NOTHING, Entry
from ao.merging import NotMergeable, criteria, criteria_for_fact, merge_view, review_verdict
from ao.plugins.scm import PRView, Review
from ao.reactions import Reaction

HEAD, OLD = "a" * 40, "b" * 40


def review(author: str, state: str = "approved", commit: str = HEAD, trusted: bool = True) -> Review:
    return Review(id=f"r-{author}-{state}", author=author, state=state, commit=commit, trusted=trusted)


@pytest.mark.parametrize("reviews, decision, expected", [
    ([], "", "none"),
    ([], "REVIEW_REQUIRED", "pending"),
    ([review("alice")], "", "approved"),
    ([review("alice", commit=OLD)], "", "pending"),                                   # not the head
    ([review("alice"), review("bob", "changes_requested")], "", "changes_requested"),  # whatever else
    ([review("alice"), review("bob", "changes_requested")], "APPROVED", "changes_requested"),
    ([review("alice")], "CHANGES_REQUESTED", "changes_requested"),
    ([review("mallory", trusted=False)], "", "pending"),
    ([review("mallory", trusted=False)], "APPROVED", "approved"),                      # GitHub counted it
    ([review("alice"), review("mallory", "changes_requested", trusted=False)], "", "pending"),
    ([review("alice")], "REVIEW_REQUIRED", "pending"),
])
def test_review_verdict(reviews, decision, expected):
    assert review_verdict(reviews, HEAD, decision=decision)[0] == expected


def test_stale_approvals_count_only_when_asked():
    assert review_verdict([review("alice", commit=OLD)], HEAD, accept_stale=True)[0] == "approved"
    assert review_verdict([], HEAD, required=True) == ("pending", "no approving review yet")


def green(**kw) -> PRView:
    base = dict(branch="feat", state="open", number=7, head_sha=HEAD, base_branch="main", ci="passing",
                review="approved", mergeability="mergeable")
    return PRView(**{**base, **kw})


@pytest.mark.parametrize("changes, missing", [
    ({}, []),
    ({"state": "merged"}, ["open"]),
    ({"head_sha": ""}, ["open"]),
    ({"draft": True}, ["ready"]),
    ({"review": "none"}, ["review"]),
    ({"ci": "pending", "ci_note": "no check has reported on aaaaaaa yet"}, ["ci"]),
    ({"ci": "none"}, []),
    ({"mergeability": "unknown"}, ["conflicts"]),
    ({"mergeability": "conflicting", "conflicts": True}, ["conflicts"]),
    ({"behind": True}, ["up-to-date"]),
    ({"blocked": True}, ["protection"]),
])
def test_every_criterion_needs_its_own_evidence(changes, missing):
    view = green(**changes)
    assert [c.name for c in criteria(view) if not c.ok] == missing
    assert view.mergeable is (not missing) and view.fact_fields()["mergeable"] is (not missing)


def test_criteria_from_a_fact_alone():
    fact = {"pr_state": "open", "ci": "passing", "review": "approved"}
    assert all(c.ok for c in criteria_for_fact(fact))
    assert [c.name for c in criteria_for_fact({**fact, "review": "none"}) if not c.ok] == ["review"]
    assert [c.name for c in criteria_for_fact({**fact, "conflicts": True, "behind": True}) if not c.ok] == [
        "conflicts", "up-to-date"]


class FakeScm:
    def __init__(self) -> None:
        self.merged: list[str] = []

    def merge(self, view: PRView, method: str | None = None) -> str:
        self.merged.append(view.head_sha)
        return "m" * 40


def test_merge_view_refuses_without_evidence_and_names_what_is_missing():
    scm = FakeScm()
    with pytest.raises(NotMergeable, match="PR #7 .feat. is not mergeable: ci: no check has reported") as err:
        merge_view(scm, green(ci="pending", ci_note="no check has reported on aaaaaaa yet"))
    assert [c.name for c in err.value.missing] == ["ci"] and scm.merged == []
    assert merge_view(scm, green()) == "m" * 40 and scm.merged == [HEAD]


def test_the_auto_merge_executor_refuses_whatever_rule_asked():
    """A user rule may trigger auto-merge on anything (``review: approved`` alone, say): the executor still
    merges only what meets every criterion."""
    scm = FakeScm()
    views = {"s1": green(ci="failing"), "s2": green()}
    executor = MergeExecutor(scm_for=lambda p: scm, view_for=views.get, method_for=lambda p: None)
    action = Action(project="app", session="s1", reaction="approved-and-green", action="auto-merge", priority="info",
                    notifiers=(), title="", text="", occurrence=HEAD, reason="", attempt=1, budget=0, fact={})
    outcome = executor.execute(action)
    assert not outcome.ok and "not mergeable: ci:" in outcome.error and scm.merged == []
    action.session = "s2"
    assert executor.execute(action).ok and scm.merged == [HEAD]


def test_an_occurrence_handled_under_another_action_is_handled_again():
    notify = Reaction(key="approved-and-green", auto=False, action="notify")
    merge = Reaction(key="approved-and-green", auto=True, action="auto-merge")
    entry, _ = ledger.delivered(Entry(first_at=0), HEAD, True, handled_as=ledger.handling(notify))
    assert entry.handled_as == "notify"
    assert ledger.step(entry, True, HEAD, 10, notify).decision == NOTHING   # handled: nothing new
    assert ledger.step(entry, True, HEAD, 10, merge).decision == ACT        # auto-merge turned on: act now
    entry, _ = ledger.delivered(entry, HEAD, True, handled_as=ledger.handling(merge))
    assert ledger.step(entry, True, HEAD, 20, merge).decision == NOTHING
    # A ledger written before handled_as existed: an approved-and-green occurrence that still holds was not
    # merged (a merge ends it), so it was a notification; auto-merge turned on after the upgrade acts on it once.
    old = Entry(attempts=1, occurrence=HEAD, first_at=0)
    assert ledger.step(old, True, HEAD, 10, notify).decision == NOTHING
    step = ledger.step(old, True, HEAD, 10, merge)
    assert step.decision == ACT
    entry, _ = ledger.delivered(step.entry, HEAD, True, handled_as=ledger.handling(merge))
    assert ledger.step(entry, True, HEAD, 20, merge).decision == NOTHING  # once
    # any other reaction's old entry is left as it was: an upgrade never repeats a message to an agent
    for reaction in (Reaction(key="ci-failed", auto=True, action="send-to-agent"),
                     Reaction(key="ci-failed", auto=False, action="send-to-agent")):
        assert ledger.step(old, True, HEAD, 10, reaction).decision == NOTHING


def test_without_an_open_pr_nothing_but_open_is_claimed():
    """No PR (or a closed one): no "CI passed" or "merges cleanly" about it, in ao status, explain or ao merge."""
    for view in (PRView(branch="feat"), green(state="closed"), green(head_sha="")):
        assert [(c.name, c.ok) for c in criteria(view)] == [("open", False)]
    assert [(c.name, c.ok, c.detail) for c in criteria_for_fact({"pr_state": "none"})] == [
        ("open", False, "no PR for the branch")]


def test_merge_session_says_there_is_no_open_pr_before_comparing_heads(monkeypatch):
    """The dashboard pins the head a person confirmed; when the PR is gone the answer is "no open PR", not
    "feat is at ? now"."""
    from types import SimpleNamespace

    from ao import merging, store
    from ao.plugins import scm as scm_plugins

    views = {"feat": PRView(branch="feat")}

    class Scm(FakeScm):
        def observe(self, branches):
            return {b: views[b] for b in branches}

    scm = Scm()
    session = SimpleNamespace(id="app-1", branch="feat", project="app")
    monkeypatch.setattr(store.SessionStore, "__init__", lambda self, *a, **kw: None)
    monkeypatch.setattr(store.SessionStore, "find", lambda self, sid: session)
    monkeypatch.setattr(scm_plugins, "for_project", lambda config, project, clock: scm)
    config = SimpleNamespace(data_dir="/nonexistent", projects={"app": SimpleNamespace(scm={})})
    for pinned in (HEAD, None):
        with pytest.raises(NotMergeable, match="open: no PR for the branch") as err:
            merging.merge_session(config, "app-1", expected_sha=pinned)
        assert "is at" not in str(err.value) and [c.name for c in err.value.missing] == ["open"]
    assert [c.name for c in merging.merge_session(config, "app-1", dry_run=True).criteria] == ["open"]
    views["feat"] = green(branch="feat", head_sha=OLD)
    with pytest.raises(merging.AoError, match=f"feat is at {OLD[:7]} now, not the {HEAD[:7]} you confirmed"):
        merging.merge_session(config, "app-1", expected_sha=HEAD)
    assert merging.merge_session(config, "app-1", expected_sha=OLD).merged and scm.merged == [OLD]
