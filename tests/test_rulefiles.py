"""Rule files (SPEC 4.2): parsing into condition trees, and every mistake reported as FILE:LINE:COL."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from ao import config as config_mod
from ao import rulefiles
from ao.errors import AoError
from ao.rulefiles import All, AnyOf, Cond, Not, Ref


def load(tmp_path: Path, text: str, name: str = "rules.yaml") -> tuple[list, list]:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return rulefiles.load_path(path)


def problems_text(tmp_path: Path, text: str) -> list[str]:
    triggers, problems = load(tmp_path, text)
    assert problems, "expected problems"
    assert triggers == []
    return [str(p) for p in problems]


def at(tmp_path: Path, line: int, col: int, name: str = "rules.yaml") -> str:
    return f"{tmp_path / name}:{line}:{col}: "


# ------------------------------------------------------------------------------------------------ parsing

def test_builtin_rules_parse_and_cover_the_builtin_reactions():
    from ao.reactions import BUILTIN

    found = {}
    for path in rulefiles.builtin_files():
        triggers, problems = rulefiles.load_path(path)
        assert problems == []
        for t in triggers:
            found[t.reaction] = t
    assert set(found) == set(BUILTIN)
    assert found["all-complete"].scope == "project"
    assert found["ci-failed"].occurrence == "head_sha"
    assert found["agent-idle"].references() == {"threshold"}
    assert found["ci-failed"].origin.endswith("builtin.yaml:6")


def test_parse_tree(tmp_path):
    triggers, problems = load(tmp_path, """
        rules:
          - reaction: hotfix-ci-failed
            description: red hotfix
            when:
              ci: failing
              branch: {matches: "^hotfix/"}
              idle_seconds: {gte: $threshold, lt: 9000}
              any:
                - {review: {in: [pending, none]}}
                - {draft: true}
              not: {pr_state: {ne: open}}
            occurrence: head_sha
        """)
    assert problems == []
    (t,) = triggers
    assert (t.reaction, t.occurrence, t.scope, t.description, t.line) == ("hotfix-ci-failed", "head_sha", "session",
                                                                          "red hotfix", 2)
    assert t.when == All((
        Cond("ci", "eq", "failing"),
        Cond("branch", "matches", "^hotfix/"),
        Cond("idle_seconds", "gte", Ref("threshold")),
        Cond("idle_seconds", "lt", 9000),
        AnyOf((All((Cond("review", "in", ("pending", "none")),)), All((Cond("draft", "eq", True),)))),
        Not(All((Cond("pr_state", "ne", "open"),))),
    ))
    assert t.references() == {"threshold"}
    assert str(Cond("idle_seconds", "gte", Ref("threshold"))) == "idle_seconds >= $threshold"


# ----------------------------------------------------------------------------------------------- problems

def test_yaml_that_does_not_parse(tmp_path):
    (problem,) = problems_text(tmp_path, """
        rules:
          - reaction: x
            when: {ci: failing
            occurrence: head_sha
        """)
    assert re.match(re.escape(str(tmp_path / "rules.yaml")) + r":\d+:\d+: invalid YAML", problem)


def test_missing_occurrence_and_unknown_key(tmp_path):
    problems = problems_text(tmp_path, """
        rules:
          - reaction: x
            when: {ci: failing}
            ocurrence: head_sha
        """)
    assert at(tmp_path, 2, 5) + "'occurrence' is required (at rules[0])" in problems
    assert at(tmp_path, 4, 5) + "unknown key 'ocurrence' (did you mean 'occurrence'?) (at rules[0].ocurrence)" in problems


def test_schema_violations(tmp_path):
    problems = problems_text(tmp_path, """
        rules:
          - reaction: Bad_Name
            when: {ci: {approx: failing}}
            occurrence: head_sha
        """)
    assert any(p.startswith(at(tmp_path, 2, 15)) and "Bad_Name" in p for p in problems), problems
    assert any(p.startswith(at(tmp_path, 3, 16)) and "approx" in p for p in problems), problems


def test_file_without_rules(tmp_path):
    problems = problems_text(tmp_path, "rule: []\n")
    assert at(tmp_path, 1, 1) + "'rules' is required" in problems
    assert at(tmp_path, 1, 1) + "unknown key 'rule' (did you mean 'rules'?) (at rule)" in problems


RULE_WITH_EVERY_MISTAKE = """
rules:
  - reaction: x
    when:
      ci: failng
      pr_sate: open
      branch: {matches: "([a-"}
      head_sha: {gt: 3}
      idle_seconds: {gte: $thresold}
      conflicts: 1
      pr_number: {in: [7, "8"]}
      human_comments: "many"
      any:
        - {review: aproved}
      not: {activty: idle}
    occurrence: head_shaa
"""


@pytest.mark.parametrize("line,col,message", [
    (4, 11, "'failng' is not a value of 'ci' (did you mean 'failing'?); one of: none, pending, passing, failing "
            "(at rules[0].when.ci)"),
    (5, 7, "unknown session fact field 'pr_sate' (did you mean 'pr_state'?) (at rules[0].when.pr_sate)"),
    (6, 25, "invalid regex '([a-': missing ]: [a- (at rules[0].when.branch.matches)"),
    (7, 22, "gt needs a number field; 'head_sha' is str (at rules[0].when.head_sha.gt)"),
    (8, 27, "unknown reaction setting $thresold; use one of $auto"),
    (9, 18, "'conflicts' is bool; 1 can never match (at rules[0].when.conflicts)"),
    (10, 23, "'pr_number' is int; '8' can never match (at rules[0].when.pr_number.in)"),
    (11, 23, "'human_comments' is int; 'many' can never match"),
    (13, 20, "'aproved' is not a value of 'review' (did you mean 'approved'?)"),
    (14, 13, "unknown session fact field 'activty' (did you mean 'activity'?) (at rules[0].when.not.activty)"),
    (15, 17, "unknown session fact field 'head_shaa' (did you mean 'head_sha'?) (at rules[0].occurrence)"),
])
def test_every_problem_at_once_with_position(tmp_path, line, col, message):
    problems = problems_text(tmp_path, RULE_WITH_EVERY_MISTAKE)
    assert len(problems) == 11, problems
    assert any(p.startswith(at(tmp_path, line, col) + message) for p in problems), (line, col, problems)


def test_ordered_operator_on_a_text_field_with_a_reference(tmp_path):
    (problem,) = problems_text(tmp_path, """
        rules:
          - {reaction: x, when: {branch: {lte: $threshold}}, occurrence: head_sha}
        """)
    assert problem.startswith(at(tmp_path, 2, 40) + "lte needs a number field; 'branch' is str")


def test_matches_needs_a_text_field(tmp_path):
    (problem,) = problems_text(tmp_path, """
        rules:
          - {reaction: x, when: {idle_seconds: {matches: "^1"}}, occurrence: head_sha}
        """)
    assert "matches needs a text field; 'idle_seconds' is int" in problem


def test_project_scope_uses_project_fields(tmp_path):
    problems = problems_text(tmp_path, """
        rules:
          - reaction: x
            scope: project
            when: {ci: failing, all_terminal: true}
            occurrence: session_sett
        """)
    assert any("unknown project fact field 'ci'" in p for p in problems)
    assert any("unknown project fact field 'session_sett' (did you mean 'session_set'?)" in p for p in problems)


# ------------------------------------------------------------------------------------ through the config

def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def config_problems(path: Path) -> list[str]:
    with pytest.raises(AoError) as err:
        config_mod.load(path)
    return str(err.value).splitlines()


def test_reaction_without_a_trigger(tmp_path):
    cfg = write(tmp_path, "agent-orchestrator.yaml", """
        projects:
          app: {path: ./app}
        reactions:
          my-thing: {action: notify}
        """)
    (problem,) = config_problems(cfg)
    assert problem.startswith(f"{cfg}:4:3: reaction 'my-thing' has no trigger rule"), problem


def test_misspelt_builtin_reaction(tmp_path):
    cfg = write(tmp_path, "agent-orchestrator.yaml", """
        projects:
          app: {path: ./app}
        reactions:
          ci-faild: {retries: 3}
        """)
    (problem,) = config_problems(cfg)
    assert problem.startswith(f"{cfg}:4:3: ") and "'ci-faild'" in problem and "did you mean 'ci-failed'?" in problem


def test_project_reaction_without_a_trigger(tmp_path):
    cfg = write(tmp_path, "agent-orchestrator.yaml", """
        projects:
          app:
            path: ./app
            reactions:
              nightly: {action: notify}
        """)
    (problem,) = config_problems(cfg)
    assert problem.startswith(f"{cfg}:5:7: reaction 'nightly' has no trigger rule")
    assert "projects.app.reactions.nightly" in problem


def test_rule_for_a_reaction_that_is_not_configured(tmp_path):
    rules = write(tmp_path, "extra.yaml", """
        rules:
          - reaction: orphan
            when: {ci: failing}
            occurrence: head_sha
        """)
    cfg = write(tmp_path, "agent-orchestrator.yaml", "projects:\n  app: {path: ./app}\nrules: [extra.yaml]\n")
    (problem,) = config_problems(cfg)
    assert problem.startswith(f"{rules}:2:") and "rule for reaction 'orphan', which is not configured" in problem


def test_rule_file_problems_are_reported_through_the_config(tmp_path):
    rules = write(tmp_path, "extra.yaml", """
        rules:
          - reaction: hotfix
            when: {ci: failng}
            occurrence: head_sha
        """)
    cfg = write(tmp_path, "agent-orchestrator.yaml", """
        projects:
          app: {path: ./app}
        rules: [extra.yaml]
        reactions:
          hotfix: {action: notify}
        """)
    problems = config_problems(cfg)
    assert any(p.startswith(f"{rules}:3:16: 'failng' is not a value of 'ci'") for p in problems), problems


def test_missing_rule_file(tmp_path):
    cfg = write(tmp_path, "agent-orchestrator.yaml", "projects:\n  app: {path: ./app}\nrules: [nope.yaml]\n")
    problems = config_problems(cfg)
    assert any("nope.yaml" in p for p in problems), problems


def test_reference_to_a_setting_the_reaction_does_not_set(tmp_path):
    write(tmp_path, "extra.yaml", """
        rules:
          - reaction: slow
            when: {idle_seconds: {gte: $threshold}}
            occurrence: last_activity_at
        """)
    cfg = write(tmp_path, "agent-orchestrator.yaml", """
        projects:
          app: {path: ./app}
        rules: [extra.yaml]
        reactions:
          slow: {action: notify}
        """)
    problems = config_problems(cfg)
    assert any("reads $threshold, which reaction 'slow' does not set" in p for p in problems), problems


def test_layers_replace_triggers_per_reaction(tmp_path):
    write(tmp_path, "global.yaml", """
        rules:
          - {reaction: ci-failed, when: {ci: failing}, occurrence: head_sha}
        """)
    write(tmp_path, "mine.yaml", """
        rules:
          - {reaction: ci-failed, when: {ci: failing, draft: false}, occurrence: head_sha}
          - {reaction: ci-failed, when: {ci: failing, branch: {matches: "^release/"}}, occurrence: head_sha}
        """)
    cfg = config_mod.load(write(tmp_path, "agent-orchestrator.yaml", """
        projects:
          app: {path: ./app, rules: [mine.yaml]}
          web: {path: ./web}
        rules: [global.yaml]
        """))
    book, problems = rulefiles.load_rulebook(cfg)
    assert problems == []
    app, web = book.triggers_for("app"), book.triggers_for("web")
    assert [t.file for t in app["ci-failed"]] == [str(tmp_path / "mine.yaml")] * 2
    assert [t.when for t in web["ci-failed"]] == [All((Cond("ci", "eq", "failing"),))]
    assert app["merge-conflicts"] == web["merge-conflicts"] == book.builtin["merge-conflicts"]
