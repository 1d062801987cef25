"""The GitHub issues tracker against the strict fake GitHub on 127.0.0.1."""

from __future__ import annotations

import pytest
from fake_github import TOKEN, FakeGitHub

from ao.errors import AoError
from ao.plugins import tracker
from ao.plugins.scm.github import GitHubClient, GitHubError
from ao.plugins.tracker import IssueNotFound
from ao.plugins.tracker import github as github_tracker


@pytest.fixture
def fake(monkeypatch):
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    f = FakeGitHub().start()
    yield f
    f.stop()
    assert f.rejected == [] and f.violations == []  # held to GitHub's published descriptions


def make(fake: FakeGitHub, tmp_path, **settings):
    return tracker.get("github", project_path=tmp_path,
                       settings={"plugin": "github", "repo": "acme/app", "baseUrl": fake.url, **settings})


def test_get_an_issue(fake, tmp_path):
    issue = fake.add_issue("Add a login page", body="Details\n", labels=["feature"])
    t = make(fake, tmp_path)
    got = t.get(str(issue.number))
    assert (got.id, got.title, got.body, got.state, got.labels) == (
        str(issue.number), "Add a login page", "Details\n", "open", ["feature"])
    assert got.url == f"https://github.com/acme/app/issues/{issue.number}"
    assert t.get(f"#{issue.number}") == got
    assert [r.path for r in fake.log] == [f"/repos/acme/app/issues/{issue.number}"] * 2


def test_missing_issue_and_pull_requests_are_not_found(fake, tmp_path):
    pr = fake.add_pr("feat-a")
    t = make(fake, tmp_path)
    with pytest.raises(IssueNotFound, match="no issue #99 in acme/app"):
        t.get("99")
    with pytest.raises(IssueNotFound, match="is a pull request, not an issue"):
        t.get(str(pr.number))
    with pytest.raises(AoError, match="not a GitHub issue number"):
        t.get("login-page")


def test_looks_like_id(fake, tmp_path):
    t = make(fake, tmp_path)
    assert t.looks_like_id("12") and t.looks_like_id("#12") and t.looks_like_id(" 7 ")
    assert not t.looks_like_id("fix the login page") and not t.looks_like_id("ABC-12") and not t.looks_like_id("")
    assert fake.log == []  # building the tracker and checking ids cost nothing


def test_list_by_state_skips_pull_requests_and_follows_pages(fake, tmp_path):
    opened = [fake.add_issue(f"issue {i}") for i in range(120)]
    fake.add_pr("feat-a")
    closed = fake.add_issue("old", state="closed")
    t = make(fake, tmp_path)
    listed = t.list()
    assert sorted(int(i.id) for i in listed) == [i.number for i in opened]
    assert len(fake.log) == 2 and all(r.status == 200 for r in fake.log)  # two pages of 100
    assert [i.id for i in t.list("closed")] == [str(closed.number)]
    assert len(t.list("all")) == 121
    with pytest.raises(AoError, match="unknown issue state 'opne'"):
        t.list("opne")


def test_list_filters_by_configured_labels(fake, tmp_path):
    fake.add_issue("bug one", labels=["bug", "agent"])
    fake.add_issue("bug two", labels=["bug"])
    t = make(fake, tmp_path, labels=["agent", "bug"])
    assert [i.title for i in t.list()] == ["bug one"]
    assert "labels=agent%2Cbug" in fake.log[0].path


def test_comment_and_close(fake, tmp_path):
    issue = fake.add_issue("Add a login page")
    t = make(fake, tmp_path)
    t.comment(f"#{issue.number}", "Working on it in app-3")
    assert issue.comments == ["Working on it in app-3"]
    t.close(str(issue.number))
    assert (issue.state, issue.state_reason) == ("closed", "completed")
    assert t.get(str(issue.number)).state == "closed"
    t.close(str(issue.number))  # twice is fine
    with pytest.raises(IssueNotFound):
        t.comment("404", "x")
    with pytest.raises(IssueNotFound):
        t.close("404")


def test_settings_and_errors(fake, tmp_path, monkeypatch):
    with pytest.raises(AoError, match="needs `repo: owner/name`"):
        tracker.get("github", project_path=tmp_path, settings={"plugin": "github"})
    issue = fake.add_issue("x")
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_notTheRightOne")
    with pytest.raises(GitHubError, match="rejected the token") as err:
        make(fake, tmp_path).get(str(issue.number))
    assert "ghp_notTheRightOne" not in str(err.value)
    sleeps: list[float] = []
    client = GitHubClient(TOKEN, fake.url, sleep=sleeps.append)
    t = github_tracker.plugin(project_path=tmp_path, settings={"repo": "acme/app", "baseUrl": fake.url}, client=client)
    fake.fail(1, status=500)
    assert t.get(str(issue.number)).title == "x" and sleeps == [1.0]  # retried after a backoff


def test_a_transferred_issue_is_followed_to_its_new_repository(fake, tmp_path):
    """GitHub answers a transferred issue's old URL with a 301 to the repository it went to (same host)."""
    issue = fake.add_issue("Moved away", body="Details")
    number = fake.transfer(issue, to="acme/other")
    t = make(fake, tmp_path)
    got = t.get(str(issue.number))
    assert (got.title, got.body, got.url) == ("Moved away", "Details", f"https://github.com/acme/other/issues/{number}")
    assert [r.status for r in fake.log] == [301, 200] and all(r.auth for r in fake.log)
    t.close(str(issue.number))
    assert fake.elsewhere[777][1][number].state == "closed"
    assert [(r.method, r.status) for r in fake.log[2:]] == [("PATCH", 301), ("PATCH", 200)]


def test_blocked_by_dependencies_hold_an_issue_while_a_blocker_is_open(fake, tmp_path):
    done = fake.add_issue("Shipped", state="closed", labels=["ao"])
    base = fake.add_issue("Base work", labels=["ao"])
    blocked = fake.add_issue("Needs the base", labels=["ao"], blocked_by=[base.number, done.number])
    only_done = fake.add_issue("Needed what shipped", labels=["ao"], blocked_by=[done.number])
    free = fake.add_issue("Free", labels=["ao"])
    t = make(fake, tmp_path)
    t.pickup({"label": "ao"})  # the issue objects carry issue_dependencies_summary: open blockers counted
    fake.clear_log()
    ids = [str(i.number) for i in (blocked, only_done, free)]
    got = t.status(ids)
    assert {i: s.blocked_by for i, s in got.items()} == {ids[0]: [f"#{base.number}"], ids[1]: [], ids[2]: []}
    # the list is asked for only where the summary counted an open blocker
    assert [r.path.split("?")[0] for r in fake.log if not r.graphql] == [
        f"/repos/acme/app/issues/{blocked.number}/dependencies/blocked_by"]
    base.state = "closed"
    assert t.status([ids[0]])[ids[0]].blocked_by == []
    # an issue never read through REST (queued by hand): its summary is unknown, so the list is asked
    fresh = github_tracker.plugin(project_path=tmp_path, settings={"repo": "acme/app", "baseUrl": fake.url})
    base.state = "open"
    assert fresh.status([ids[0]])[ids[0]].blocked_by == [f"#{base.number}"]


def test_an_issue_with_more_sub_issues_than_one_page_waits_for_an_open_one_past_it(fake, tmp_path):
    """The batched query reads 20 sub-issues per issue: an open 25th must still hold it (read by paging on)."""
    parts = [fake.add_issue(f"Part {i}", state="closed") for i in range(24)] + [fake.add_issue("Part 24")]
    parent = fake.add_issue("Needs its parts", labels=["ao"], sub_issues=[p.number for p in parts])
    t = make(fake, tmp_path)
    t.pickup({"label": "ao"})
    assert t.status([str(parent.number)])[str(parent.number)].blocked_by == [f"#{parts[-1].number}"]
    parts[-1].state = "closed"
    assert t.status([str(parent.number)])[str(parent.number)].blocked_by == []
    # reconciling asks for states only: no follow-up page
    fake.clear_log()
    t.status([str(parent.number)], blockers=False)
    assert len([r for r in fake.log if r.graphql]) == 1
    # a follow-up page answered with an error (a partial answer) leaves the issue waiting, not unblocked
    parts[-1].state = "open"
    client, real = t._client(), t._client().graphql

    def forbidden(query, variables=None):
        if "AoMoreLinks" not in query:
            return real(query, variables)
        return {"repository": {"issue": {"subIssues": None}}}, [{"type": "FORBIDDEN", "message": "not accessible"}]

    client.graphql = forbidden
    waits = t.status([str(parent.number)])[str(parent.number)].blocked_by
    assert waits == ["(subIssues unread: not accessible)"], waits


def test_reconciling_reads_no_dependencies_and_one_unreadable_list_holds_only_its_issue(fake, tmp_path):
    base = fake.add_issue("Base work", labels=["ao"])
    blocked = fake.add_issue("Needs the base", labels=["ao"], blocked_by=[base.number])
    free = fake.add_issue("Free", labels=["ao"])
    t = github_tracker.plugin(project_path=tmp_path, settings={"repo": "acme/app", "baseUrl": fake.url})
    ids = [str(blocked.number), str(free.number)]  # never read through REST: their summaries are unknown
    fake.clear_log()
    assert {i: s.state for i, s in t.status(ids, blockers=False).items()} == dict.fromkeys(ids, "open")
    assert [r.path for r in fake.log if not r.graphql] == []  # the state alone costs one GraphQL query
    fake.fail(count=10, status=502, match=f"/issues/{blocked.number}/dependencies")  # past the retries
    got = t.status(ids)  # one issue's list fails: that issue waits, the batch and the other issue are read
    assert got[ids[0]].state == "open" and got[ids[0]].blocked_by[0].startswith("(dependencies unread: ")
    assert got[ids[1]].blocked_by == []
