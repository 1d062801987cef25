"""The Linear tracker against a strict fake of Linear's GraphQL API (tests/fake_linear.py)."""

from __future__ import annotations

import pytest
from fake_linear import FakeLinear

from ao.errors import AoError
from ao.plugins import tracker
from ao.plugins.tracker import IssueNotFound


@pytest.fixture
def linear(monkeypatch):
    fake = FakeLinear().start()
    fake.add_issue("ENG-1", "Add a health endpoint", "GET /health returns 200.", labels=("backend", "api"))
    fake.add_issue("ENG-2", "Old bug", state="completed")
    fake.add_issue("ENG-3", "Dropped idea", state="canceled")
    fake.add_issue("ENG-4", "Same as ENG-1", state="duplicate")
    fake.add_issue("OPS-7", "Rotate certificates")
    monkeypatch.setenv("LINEAR_API_KEY", fake.key)
    monkeypatch.setenv("LINEAR_API_URL", fake.url)
    yield fake
    fake.stop()
    # every document ao sent was valid for Linear's schema, and the fake answered within it
    assert [r for r in fake.rejected if r[0] != 401] == [] and fake.violations == []


def make(tmp_path, **settings):
    return tracker.get("linear", project_path=tmp_path, settings={"team": "ENG", **settings})


def test_looks_like_id():
    t = tracker.get("linear", project_path=".", settings={})
    assert t.looks_like_id("ENG-123") and t.looks_like_id("eng-7") and t.looks_like_id(" A1-2 ")
    assert not t.looks_like_id("123") and not t.looks_like_id("fix the login page") and not t.looks_like_id("ENG-")


def test_get_maps_the_issue(linear, tmp_path):
    issue = make(tmp_path).get("ENG-1")
    assert (issue.id, issue.title, issue.body, issue.state) == (
        "ENG-1", "Add a health endpoint", "GET /health returns 200.", "open")
    assert issue.url == "https://linear.app/acme/issue/ENG-1" and issue.labels == ["backend", "api"]
    assert make(tmp_path).get("eng-2").state == "closed" and make(tmp_path).get("ENG-3").state == "closed"
    assert linear.requests[0] == {"operation": "AoIssue", "variables": {"id": "ENG-1"}}
    assert linear.rejected == []


def test_not_found(linear, tmp_path):
    with pytest.raises(IssueNotFound, match="no Linear issue ENG-99"):
        make(tmp_path).get("ENG-99")
    with pytest.raises(AoError, match="not a Linear issue id"):
        make(tmp_path).get("99")


def test_list_by_state_and_team(linear, tmp_path):
    t = make(tmp_path)
    assert [i.id for i in t.list()] == ["ENG-1"]
    assert sorted(i.id for i in t.list("closed")) == ["ENG-2", "ENG-3", "ENG-4"]
    assert sorted(i.id for i in t.list("all")) == ["ENG-1", "ENG-2", "ENG-3", "ENG-4"]
    by_id = tracker.get("linear", project_path=tmp_path, settings={"teamId": "team-ops"})
    assert [i.id for i in by_id.list()] == ["OPS-7"]
    assert linear.requests[0]["variables"]["first"] == 50
    with pytest.raises(AoError, match="unknown issue state"):
        t.list("done")


def test_a_duplicate_is_closed_not_work_and_never_moved_to_done(linear, tmp_path):
    t = make(tmp_path)
    assert t.get("ENG-4").state == "closed"
    assert "ENG-4" not in [i.id for i in t.list()]
    count = len(linear.requests)
    t.close("ENG-4")
    assert [r["operation"] for r in linear.requests[count:]] == ["AoIssueForClose"]  # no update
    assert linear.issues["ENG-4"]["state"]["name"] == "Duplicate"


def test_the_list_follows_linears_pages(linear, tmp_path):
    for n in range(10, 130):
        linear.add_issue(f"ENG-{n}", f"Issue {n}")
    listed = [i.id for i in make(tmp_path).list()]
    assert len(listed) == 121 and len(set(listed)) == 121 and listed[0] == "ENG-1"
    pages = [r for r in linear.requests if r["operation"] == "AoIssues"]
    assert [r["variables"]["after"] is None for r in pages] == [True, False, False]


def test_pickup_follows_linears_pages_for_filters_and_views(linear, tmp_path):
    for n in range(10, 140):
        linear.add_issue(f"ENG-{n}", f"Issue {n}", labels=("ao",), state="completed" if n == 139 else "unstarted")
    linear.views["view-1"] = [f"ENG-{n}" for n in range(10, 140)]
    t = make(tmp_path)
    picked = [i.id for i in t.pickup({"label": "ao"})]
    assert len(picked) == 129 == len(set(picked)) and "ENG-139" not in picked
    viewed = [i.id for i in t.pickup({"view": "view-1"})]
    assert viewed == [f"ENG-{n}" for n in range(10, 139)]  # the closed one is not work
    pages = [r for r in linear.requests if r["operation"] in ("AoIssues", "AoViewIssues")]
    assert [(r["operation"], r["variables"]["after"] is None) for r in pages] == [
        ("AoIssues", True), ("AoIssues", False), ("AoIssues", False),
        ("AoViewIssues", True), ("AoViewIssues", False), ("AoViewIssues", False)]


def test_comment_and_close(linear, tmp_path):
    t = make(tmp_path)
    t.comment("ENG-1", "PR merged: local:app#1")
    assert linear.comments == [{"issue": "ENG-1", "body": "PR merged: local:app#1"}]
    t.close("ENG-1")
    assert linear.issues["ENG-1"]["state"]["name"] == "Done"  # the first completed state, not "Shipped"
    assert t.get("ENG-1").state == "closed"
    count = len(linear.requests)
    t.close("ENG-1")  # already closed: one lookup, no update
    assert [r["operation"] for r in linear.requests[count:]] == ["AoIssueForClose"]
    with pytest.raises(IssueNotFound):
        t.comment("ENG-404", "x")
    assert linear.rejected == []


def test_missing_key_names_the_variable(linear, tmp_path, monkeypatch):
    monkeypatch.delenv("LINEAR_API_KEY")
    with pytest.raises(AoError, match=r"\$LINEAR_API_KEY"):
        make(tmp_path).get("ENG-1")
    monkeypatch.setenv("MY_LINEAR", linear.key)
    assert make(tmp_path, apiKeyEnv="MY_LINEAR").get("ENG-1").id == "ENG-1"
    with pytest.raises(AoError, match=r"\$OTHER_KEY"):
        make(tmp_path, apiKeyEnv="OTHER_KEY").list()
    assert linear.requests and all(r["operation"] == "AoIssue" for r in linear.requests)


def test_wrong_key_is_refused_without_showing_it(linear, tmp_path, monkeypatch):
    monkeypatch.setenv("LINEAR_API_KEY", "lin_api_wrong_secret")
    with pytest.raises(AoError) as err:
        make(tmp_path).get("ENG-1")
    assert "refused the API key in $LINEAR_API_KEY" in str(err.value)
    assert "lin_api_wrong_secret" not in str(err.value) and linear.rejected == [(401, "bad key")]


def test_server_error_is_a_clear_aoerror(linear, tmp_path):
    linear.mode = "fail"
    with pytest.raises(AoError) as err:
        make(tmp_path).get("ENG-1")
    message = str(err.value)
    assert "HTTP 500" in message and "ENG-1" in message and linear.key not in message
    assert type(err.value) is AoError  # not IssueNotFound: the issue may well exist


def test_unreachable_server(linear, tmp_path, monkeypatch):
    linear.stop()
    with pytest.raises(AoError, match="cannot reach Linear"):
        make(tmp_path).get("ENG-1")


def test_the_fake_is_held_to_linears_schema(linear):
    import httpx

    def post(body, key=linear.key):
        return httpx.post(linear.url, json=body, headers={"Authorization": key})

    answer = post({"query": "query AoIssue($id: String!) { issue(id: $id) { id nope } }", "variables": {"id": "ENG-1"}})
    assert answer.status_code == 400 and "Cannot query field 'nope' on type 'Issue'" in answer.text
    assert post({"query": "query AoIssue($id: String!) { issue(id: $id) { id } }", "variables": {}}).status_code == 400
    answer = post({"query": "query { issues(filter: {priority: {eq: 1}}) { nodes { id } } }"})
    assert answer.status_code == 200 and "does not implement the filter IssueFilter.priority" in answer.text
    assert post({"query": "query AoIssue($id: String!) { issue(id: $id) { id } }", "variables": {"id": "ENG-1"}},
                key="Bearer nope").status_code == 401
    assert [r[0] for r in linear.rejected] == [400, 400, 401] and len(linear.violations) == 1
    linear.rejected.clear()
    linear.violations.clear()


def test_an_issue_with_more_relations_than_one_page_waits_for_an_open_blocker_past_it(linear, tmp_path):
    """The batched query reads 50 relations per issue: an open blocker past them must still hold it."""
    for n in range(100, 160):
        linear.add_issue(f"ENG-{n}", f"Done part {n}", state="completed")
        linear.blocks.append((f"ENG-{n}", "ENG-1"))
    linear.add_issue("ENG-200", "The part still open")
    linear.blocks.append(("ENG-200", "ENG-1"))
    t = make(tmp_path)
    assert t.status(["ENG-1"])["ENG-1"].blocked_by == ["ENG-200"]
    assert any(r["operation"] == "AoMoreRelations" for r in linear.requests)
    linear.issues["ENG-200"]["state"] = dict(linear.issues["ENG-100"]["state"])  # finished
    assert t.status(["ENG-1"])["ENG-1"].blocked_by == []
