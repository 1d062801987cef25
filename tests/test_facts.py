"""The session fact (SPEC 4.1): defaults, derived fields, status derivation (SPEC 5) and its documentation."""

from __future__ import annotations

import json

import pytest

from ao import facts
from ao.paths import data_folder

NOW = 1_767_258_000


def status(**fields) -> str:
    return facts.derive_status(fields)


# ------------------------------------------------------------------------------------------------ status

# Each case sits on one branch of the first-match chain, with fields that would trigger later branches too.
STATUS_CASES = [
    # ended on purpose keeps its status, whatever the fact says
    ({"pr_state": "merged", "runtime_alive": False}, "killed", "killed"),
    ({"activity": "waiting_input"}, "done", "done"),
    ({"pr_state": "open", "ci": "failing"}, "cleanup", "cleanup"),
    # PR merged wins over a dead runtime
    ({"pr_state": "merged", "runtime_alive": False, "activity": "exited"}, None, "merged"),
    ({"pr_state": "merged"}, "stuck", "merged"),
    # runtime gone or agent exited wins over needs-input and the PR
    ({"runtime_alive": False, "activity": "waiting_input", "pr_state": "open", "ci": "failing"}, None, "exited"),
    ({"activity": "exited", "pr_state": "closed"}, None, "exited"),
    # waiting for input wins over the PR state
    ({"activity": "waiting_input", "pr_state": "closed"}, None, "needs_input"),
    ({"activity": "waiting_input", "pr_state": "open", "ci": "failing"}, None, "needs_input"),
    ({"pr_state": "closed", "activity": "idle", "idle_seconds": 5000}, None, "pr_closed"),
    # open PR: ci_failed, changes_requested, mergeable, approved, review_pending, pr_open in that order
    ({"pr_state": "open", "ci": "failing", "review": "changes_requested", "conflicts": True}, None, "ci_failed"),
    ({"pr_state": "open", "ci": "passing", "review": "changes_requested"}, None, "changes_requested"),
    ({"pr_state": "open", "ci": "passing", "review": "approved"}, None, "mergeable"),
    ({"pr_state": "open", "review": "approved"}, None, "mergeable"),  # approved, and the repository has no CI
    ({"pr_state": "open"}, None, "pr_open"),  # no approval: no positive evidence for the review criterion
    ({"pr_state": "open", "ci": "pending", "review": "approved"}, None, "approved"),
    ({"pr_state": "open", "ci": "passing", "review": "approved", "conflicts": True}, None, "approved"),
    ({"pr_state": "open", "ci": "passing", "review": "approved", "mergeable": False}, None, "approved"),
    ({"pr_state": "open", "ci": "pending", "review": "pending"}, None, "review_pending"),
    ({"pr_state": "open", "ci": "passing", "behind": True}, None, "review_pending"),
    ({"pr_state": "open", "ci": "pending"}, None, "pr_open"),
    ({"pr_state": "open", "draft": True}, None, "pr_open"),
    ({"pr_state": "open", "ci": "pending", "activity": "idle", "idle_seconds": 5000}, None, "pr_open"),
    # no PR: stuck past the threshold, spawning while young and silent, else working
    ({"activity": "idle", "idle_seconds": 600}, None, "stuck"),
    ({"activity": "blocked", "idle_seconds": 601}, None, "stuck"),
    ({"activity": "idle", "idle_seconds": 599}, None, "working"),
    ({"activity": "ready", "idle_seconds": 5000}, None, "working"),
    ({"activity": "unknown", "age_seconds": 59}, None, "spawning"),
    ({"age_seconds": 0}, None, "spawning"),  # no activity reported yet
    ({"activity": "unknown", "age_seconds": 60}, None, "working"),
    ({"activity": "active", "age_seconds": 0}, None, "working"),
    ({"activity": "active"}, "stuck", "working"),  # a previous non-terminal status is not kept
    ({"activity": "active"}, "errored", "working"),
]


@pytest.mark.parametrize("fields,previous,expected", STATUS_CASES)
def test_derive_status_first_match(fields, previous, expected):
    assert facts.derive_status(fields, previous=previous) == expected


def test_every_status_is_reachable_or_kept():
    reached = {c[2] for c in STATUS_CASES}
    assert reached >= set(facts.STATUSES) - {"errored"}  # errored is only ever set by ao itself


def test_stuck_threshold_is_a_parameter():
    fact = {"activity": "idle", "idle_seconds": 900}
    assert facts.derive_status(fact, stuck_threshold=1200) == "working"
    assert facts.derive_status(fact, stuck_threshold=900) == "stuck"


def test_statuses_and_terminal_sets():
    assert facts.TERMINAL == {"merged", "exited", "killed", "done", "cleanup", "errored"}
    assert facts.TERMINAL <= set(facts.STATUSES)
    assert facts.ENDED_ON_PURPOSE == {"killed", "done", "cleanup"}
    assert len(facts.STATUSES) == 17


# -------------------------------------------------------------------------------------------- mergeable

@pytest.mark.parametrize("fields,expected", [
    ({"pr_state": "open"}, False),                       # nobody approved: no evidence for "review"
    ({"pr_state": "open", "review": "approved"}, True),  # ci none: the repository provably has no CI
    ({"pr_state": "open", "ci": "passing", "review": "approved"}, True),
    ({"pr_state": "open", "ci": "none", "review": "none"}, False),
    ({"pr_state": "none", "ci": "passing", "review": "approved"}, False),
    ({"pr_state": "merged"}, False),
    ({"pr_state": "closed"}, False),
    ({"pr_state": "open", "ci": "pending"}, False),
    ({"pr_state": "open", "ci": "failing"}, False),
    ({"pr_state": "open", "review": "pending"}, False),
    ({"pr_state": "open", "review": "changes_requested"}, False),
    ({"pr_state": "open", "conflicts": True}, False),
    ({"pr_state": "open", "behind": True}, False),
    ({"pr_state": "open", "draft": True}, False),
])
def test_is_mergeable(fields, expected):
    assert facts.is_mergeable(fields) is expected


# -------------------------------------------------------------------------------------------- complete()

def test_complete_fills_the_defaults_of_spec_4_1():
    fact = facts.complete({"session": "app-1", "project": "app"}, NOW)
    assert fact == {
        "session": "app-1", "project": "app", "role": "worker", "status": "working", "activity": "active",
        "idle_seconds": 0, "last_activity_at": NOW, "runtime_alive": True, "age_seconds": 0, "branch": "",
        "issue": "", "pr_state": "none", "pr_number": 0, "pr_url": "", "head_sha": "", "base_branch": "",
        "ci": "none", "review": "none", "human_comments": 0, "bot_comments": 0, "comments_fingerprint": "",
        "bot_fingerprint": "", "conflicts": False, "behind": False, "draft": False, "mergeable": False,
        "untrusted_comments": 0, "untrusted_fingerprint": "",  # ours, beyond SPEC 4.1 (SPEC 8's trust rule)
        "tokens_in": 0, "tokens_out": 0, "cost_usd": 0.0, "paused": False, "issue_state": "none",  # SPEC 12
    }
    assert set(fact) == set(facts.FIELDS)
    assert facts.type_problems(fact) == []


def test_complete_derives_last_activity_mergeable_and_status():
    fact = facts.complete({"session": "a", "idle_seconds": 700, "activity": "idle"}, NOW)
    assert fact["last_activity_at"] == NOW - 700 and fact["status"] == "stuck"
    assert facts.complete({"session": "a", "idle_seconds": 700, "activity": "idle"}, NOW, 800)["status"] == "working"
    fact = facts.complete({"session": "a", "pr_state": "open", "ci": "passing", "review": "approved"}, NOW)
    assert fact["mergeable"] is True and fact["status"] == "mergeable"
    fact = facts.complete({"session": "a", "pr_state": "open", "ci": "passing"}, NOW)
    assert fact["mergeable"] is False and fact["status"] == "review_pending"


def test_complete_keeps_what_is_given():
    fact = facts.complete({"session": "a", "idle_seconds": 50, "last_activity_at": 123, "status": "killed",
                           "mergeable": True, "pr_state": "none"}, NOW)
    assert (fact["last_activity_at"], fact["status"], fact["mergeable"]) == (123, "killed", True)
    given = {"session": "a", "ci": "failing"}
    facts.complete(given, NOW)
    assert given == {"session": "a", "ci": "failing"}  # the partial fact is not modified


# ---------------------------------------------------------------------------------------- type_problems

@pytest.mark.parametrize("fields,needle", [
    ({"pr_sate": "open"}, "unknown fact field 'pr_sate' (did you mean 'pr_state'?)"),
    ({"zzzzzz": 1}, "unknown fact field 'zzzzzz'"),
    ({"idle_seconds": "10m"}, "fact field 'idle_seconds' must be int, got '10m'"),
    ({"idle_seconds": True}, "fact field 'idle_seconds' must be int, got True"),
    ({"conflicts": 1}, "fact field 'conflicts' must be bool, got 1"),
    ({"conflicts": "yes"}, "fact field 'conflicts' must be bool"),
    ({"pr_number": 7.0}, "fact field 'pr_number' must be int"),
    ({"branch": 12}, "fact field 'branch' must be str, got 12"),
    ({"ci": "failng"}, "fact field 'ci' must be one of none, pending, passing, failing, got 'failng'"),
    ({"role": "boss"}, "fact field 'role' must be one of worker, orchestrator"),
    ({"activity": "busy"}, "fact field 'activity' must be one of"),
    ({"status": "finished"}, "fact field 'status' must be a lifecycle status, got 'finished'"),
])
def test_type_problems(fields, needle):
    problems = facts.type_problems(fields)
    assert len(problems) == 1 and needle in problems[0], problems


def test_type_problems_reports_every_problem_and_accepts_good_facts():
    assert len(facts.type_problems({"pr_sate": "open", "ci": "bad", "draft": 0})) == 3
    assert facts.type_problems({"session": "a", "ci": "failing", "idle_seconds": 0, "draft": False,
                                "status": "ci_failed", "review": "changes_requested"}) == []


# ------------------------------------------------------------------------------------------ project fact

def test_project_fact():
    observed = [facts.complete({"session": s, **f}, NOW) for s, f in
                [("app-2", {"pr_state": "merged"}), ("app-1", {"activity": "exited"}),
                 ("app-orch", {"role": "orchestrator"})]]
    assert facts.project_fact("app", observed) == {"project": "app", "session_count": 2, "terminal_count": 2,
                                                   "all_terminal": True, "session_set": "app-1,app-2",
                                                   "tokens_in": 0, "tokens_out": 0, "cost_usd": 0.0}
    spent = [{**observed[0], "tokens_in": 10, "cost_usd": 1.25}, {**observed[1], "tokens_out": 5, "cost_usd": 0.5}]
    assert {k: facts.project_fact("app", spent)[k] for k in facts.USAGE_FIELDS} == {
        "tokens_in": 10, "tokens_out": 5, "cost_usd": 1.75}
    totals = {"tokens_in": 99, "tokens_out": 1, "cost_usd": 9.5}  # the data dir's totals, cleaned-up sessions too
    assert {k: facts.project_fact("app", spent, totals)[k] for k in facts.USAGE_FIELDS} == totals
    observed.append(facts.complete({"session": "app-3"}, NOW))
    assert facts.project_fact("app", observed)["all_terminal"] is False
    assert facts.project_fact("app", [facts.complete({"session": "o", "role": "orchestrator"}, NOW)])[
        "all_terminal"] is False  # at least one worker
    assert facts.project_fact("app", [])["all_terminal"] is False
    assert set(facts.project_fact("app", observed)) == set(facts.PROJECT_FIELDS)


# ------------------------------------------------------------------------------- schema documents fields

SCHEMA = json.loads((data_folder("schemas") / "facts.schema.json").read_text(encoding="utf-8"))
JSON_TYPES = {float: "number", str: "string", int: "integer", bool: "boolean"}


def test_schema_lists_exactly_the_fact_fields():
    assert SCHEMA["additionalProperties"] is False
    assert list(SCHEMA["properties"]) == list(facts.FIELDS)


@pytest.mark.parametrize("name", list(facts.FIELDS))
def test_schema_field_matches_code(name):
    kind, default = facts.FIELDS[name]
    prop = SCHEMA["properties"][name]
    assert prop["type"] == JSON_TYPES[kind]
    assert prop.get("description")
    allowed = facts.ENUMS.get(name) or (facts.STATUSES if name == "status" else None)
    assert tuple(prop["enum"]) == allowed if allowed else "enum" not in prop
    if default is None:
        assert "default" not in prop  # derived in complete()
    else:
        assert prop["default"] == default and type(prop["default"]) is type(default)


def test_complete_facts_validate_against_the_schema():
    import jsonschema

    for partial in ({"session": "a", "project": "p"},
                    {"session": "a", "project": "p", "pr_state": "open", "ci": "failing", "idle_seconds": 30}):
        jsonschema.validate(facts.complete(partial, NOW), SCHEMA)
