"""The Jinja template layer: placeholders, validation, sandboxing, untrusted text and the built-in templates."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ao import templates
from ao.errors import AoError
from ao.paths import data_folder

BUILTIN = data_folder("templates")
# spawn/ templates take the spawn prompt's own variables (ao.prompts.VARIABLES): tests/test_prompts.py checks them
BUILTIN_FILES = sorted(str(p.relative_to(BUILTIN)) for p in BUILTIN.rglob("*.j2")
                       if p.relative_to(BUILTIN).parts[0] != "spawn")
REACTIONS = ["ci-failed", "changes-requested", "bugbot-comments", "merge-conflicts", "approved-and-green",
             "pr-closed", "agent-idle", "agent-stuck", "agent-needs-input", "agent-exited", "all-complete"]
AGENT_REACTIONS = ["ci-failed", "changes-requested", "bugbot-comments", "merge-conflicts", "agent-idle"]

FULL = {
    "session_id": "app-3", "project_id": "app", "pr_url": "https://github.com/o/r/pull/7", "pr_number": 7,
    "branch": "feat/issue-12", "base_branch": "main", "issue": "#12 Add a login page",
    "failed_checks": [
        {"name": "test", "url": "https://ci.example/1", "log_tail": "FAILED tests/test_a.py::test_x\nAssertionError"},
        {"name": "lint", "url": "", "log_tail": "E501 line too long"},
    ],
    "review_comments": [
        {"author": "alice", "path": "src/a.py", "line": 10, "body": "Rename this.", "url": "https://gh/c1"},
        {"author": "bob", "path": "", "line": None, "body": "Add tests.", "url": ""},
    ],
    "bot_comments": [{"author": "cursor[bot]", "path": "src/b.py", "line": 3, "body": "Possible null dereference", "url": ""}],
    "bot_name": "cursor[bot]", "duration": 750, "attempts": 2, "retries": 2, "reason": "retries used up",
    "reaction": "ci-failed", "priority": "urgent", "action": "send-to-agent", "auto_off": True,
    "summary": [
        {"session_id": "app-1", "issue": "#1", "pr_url": "https://github.com/o/r/pull/5", "status": "merged",
         "duration": 3600},
        {"session_id": "app-2", "issue": "a|b", "pr_url": "", "status": "done", "duration": "5m"},
    ],
}


# ------------------------------------------------------------------------------------- single braces

def test_single_braces_of_known_variables_are_converted():
    assert templates.convert_single_braces("logs: {ci_logs} at {prUrl}") == "logs: {{ ci_logs }} at {{ prUrl }}"


def test_other_braces_survive():
    source = '{"event": "done", "n": {count}} {{x}} {{ pr_url }} {% if a %}{b}{% endif %} {# {issue} #}'
    assert templates.convert_single_braces(source) == source
    raw = "{% raw %}{pr_url}{% endraw %}"
    assert templates.convert_single_braces(raw) == raw


def test_json_in_a_message_renders_intact():
    out = templates.render('{"session": "{session_id}", "ok": true}', {"session_id": "app-3"})
    assert out == '{"session": "app-3", "ok": true}'


@pytest.mark.parametrize("source", ["{{prUrl}}", "{prUrl}", "{{ pr_url }}", "{pr_url}"])
def test_camel_case_aliases_render(source):
    assert templates.render(source, {"pr_url": "https://gh/pull/7"}) == "https://gh/pull/7"


def test_camel_case_input_is_accepted():
    assert templates.render("{{ session_id }} {{ sessionId }}", {"sessionId": "app-1"}) == "app-1 app-1"


# ------------------------------------------------------------------------------------------- check

def test_check_accepts_known_variables():
    assert templates.check("CI failed on {{ prUrl }}:\n{ci_logs}\n{% for c in failed_checks %}{{ c.name }}"
                           "{{ loop.index }}{% endfor %}{{ range(2) | list }}") == []


def test_check_reports_unknown_variable_with_line_and_hint():
    problems = templates.check("Hello\n\nPR: {{ pr_ulr }}\n")
    assert problems == [("unknown template variable 'pr_ulr' (did you mean 'pr_url'?)", 2)]


def test_check_prefers_the_use_in_a_tag_over_prose():
    [(message, line)] = templates.check("the word nonsense\n{{ nonsense }}")
    assert message == "unknown template variable 'nonsense'" and line == 1


def test_check_finds_unknown_single_brace_placeholder_only_when_known():
    assert templates.check("{sesion_id} stays literal") == []
    assert templates.check("x\n{{ sesionId }}")[0] == ("unknown template variable 'sesionId' (did you mean 'sessionId'?)", 1)


def test_check_reports_syntax_error_with_line():
    [(message, line)] = templates.check("one\ntwo\n{% if pr_url %}\nthree\n")
    assert "syntax error" in message and line == 3
    [(message, line)] = templates.check("one\n{{ pr_url | nosuchfilter }}")
    assert "nosuchfilter" in message and line == 1


def test_render_of_unknown_variable_is_an_ao_error():
    with pytest.raises(AoError, match="nope"):
        templates.render("{{ nope }}", {})


def test_render_of_syntax_error_is_an_ao_error():
    with pytest.raises(AoError, match="line 2"):
        templates.render("ok\n{% for %}", {})


@pytest.mark.parametrize("source", [
    "{{ ''.__class__.__mro__ }}",
    "{{ pr_url.__class__.__base__.__subclasses__() }}",
    "{{ cycler.__init__.__globals__ }}",
    "{{ review_comments._heading }}",
])
def test_sandbox_blocks_attribute_tricks(source):
    with pytest.raises(AoError):
        templates.render(source, {})


def test_runtime_errors_are_ao_errors():
    with pytest.raises(AoError, match="ZeroDivisionError"):
        templates.render("{{ 1 / 0 }}", {})


# -------------------------------------------------------------------------------- untrusted text

def test_clean_strips_escapes_and_controls():
    dirty = "\x1b[31mred\x1b[0m \x1b]0;title\x07\x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\ a\x00b\x07c\r\nd\re\tf\x1b(B\u202eg"
    assert templates.clean(dirty, 1000) == "red link abc\nde\tfg"


def test_clean_caps_keeping_head_or_tail_with_marker():
    text = "".join(f"line {i}\n" for i in range(1000))
    head = templates.clean(text, 100)
    assert head.startswith("line 0\n") and head.endswith(f"[... {len(text) - 100} characters cut ...]")
    tail = templates.clean(text, 100, tail=True)
    assert tail.startswith(f"[... {len(text) - 100} characters cut ...]\n") and tail.endswith("line 999\n")
    assert templates.clean("short", 100) == "short"


def test_fence_cannot_be_closed_by_the_text():
    text = "before\n```\nescaped?\n``````\nafter"
    fenced = templates.fence(text)
    ticks = fenced.split("\n", 1)[0]
    assert set(ticks) == {"`"} and len(ticks) == 7 and fenced.endswith("\n" + ticks)
    inner = fenced[len(ticks) + 1:-len(ticks) - 1]
    assert inner == text and all(not line.startswith(ticks) for line in inner.splitlines())
    assert templates.fence("plain") == "```\nplain\n```"


def test_untrusted_text_is_never_evaluated():
    raw = {"issue": "{{ 7*7 }} {% if true %}x{% endif %} {ci_logs}",
           "review_comments": [{"author": "{{ 7*7 }}", "body": "{{ 7*7 }}"}]}
    out = templates.render("{{ issue }}\n{{ review_comments }}", raw)
    assert "49" not in out and out.count("{{ 7*7 }}") == 3 and "{ci_logs}" in out


def test_build_context_cleans_caps_and_fences_lists():
    ctx = templates.build_context({
        "failed_checks": [{"name": "te\nst\x1b[1m", "log_tail": "x" * 5000 + "\x1b[31mEND"}],
        "review_comments": [{"author": "eve", "body": "```\ninjected\n```\n" + "y" * 3000}],
    })
    check = ctx["failed_checks"][0]
    assert check["name"] == "te st" and check["url"] == ""
    assert check["log_tail"].endswith("END") and "[... 1003 characters cut ...]" in check["log_tail"]
    body = ctx["review_comments"][0]["body"]
    assert body.startswith("```\ninjected") and "characters cut" in body
    assert str(ctx["review_comments"]).startswith("eve:\n````\n")
    assert ctx["ci_logs"] == str(ctx["failed_checks"]) and "te st failed:\n```" in ctx["ci_logs"]
    assert ctx["ciLogs"] == ctx["ci_logs"] and ctx["reviewComments"] is ctx["review_comments"]


def test_build_context_defaults_and_derivations():
    ctx = templates.build_context({"pr_url": "https://github.com/o/r/pull/42", "duration": 90,
                                   "summary": [{"session_id": "a-1"}], "ci_logs": "\x1b[2Kraw ``` log"})
    assert ctx["pr_number"] == 42 and ctx["prNumber"] == 42 and ctx["duration"] == "1m30s"
    assert ctx["session_count"] == 1 and ctx["summary"][0]["status"] == ""
    assert ctx["ci_logs"] == "````\nraw ``` log\n````"
    empty = templates.build_context({})
    assert all(name in empty for name in [*templates.VARIABLES, *templates.ALIASES])
    assert empty["attempts"] == 0 and empty["auto_off"] is False and str(empty["review_comments"]) == ""


def test_build_context_is_idempotent():
    once = templates.build_context(FULL)
    assert templates.build_context(once) == once
    assert templates.render("{{ ci_logs }}", once) == templates.render("{{ ci_logs }}", FULL)


def test_lists_iterate_in_templates():
    out = templates.render("{% for c in review_comments %}{{ c.author }}@{{ c.path }}:{{ c.line }};{% endfor %}", FULL)
    assert out == "alice@src/a.py:10;bob@:;"


# ----------------------------------------------------------------------------- built-in templates

def test_builtin_template_set_is_complete():
    for key in REACTIONS:
        assert f"notify/{key}.md.j2" in BUILTIN_FILES
    for key in AGENT_REACTIONS:
        assert f"agent/{key}.md.j2" in BUILTIN_FILES
    assert {"escalate.md.j2", "summary.md.j2"} <= set(BUILTIN_FILES)


@pytest.mark.parametrize("name", BUILTIN_FILES)
def test_builtin_templates_pass_check(name):
    assert templates.check(templates.load_source(name)) == []


@pytest.mark.parametrize("name", BUILTIN_FILES)
@pytest.mark.parametrize("variables", [{}, FULL], ids=["empty", "full"])
def test_builtin_templates_render(name, variables):
    out = templates.render_named(name, variables)
    assert "None" not in out and "{{" not in out
    assert name.startswith("_") or not out.startswith("\n")  # a partial may open with a separating blank line


@pytest.mark.parametrize("key", REACTIONS)
def test_notify_templates_have_a_title_naming_the_session_and_the_pr_link(key):
    title, body = templates.split_title(templates.render_named(f"notify/{key}", FULL))
    assert title.startswith("app: " if key == "all-complete" else "app-3: ")
    assert "ao did not act because auto is false for this reaction" in body
    if key != "all-complete":
        assert "https://github.com/o/r/pull/7" in body


def test_agent_ci_failed_carries_the_fenced_logs():
    out = templates.render_named("agent/ci-failed", FULL)
    assert "test failed (https://ci.example/1):\n```\nFAILED tests/test_a.py::test_x\nAssertionError\n```" in out
    assert "push" in out


def test_agent_changes_requested_lists_comments_with_location():
    out = templates.render_named("agent/changes-requested", FULL)
    assert "alice on src/a.py:10 (https://gh/c1):\n```\nRename this.\n```" in out


def test_all_complete_table():
    out = templates.render_named("notify/all-complete", FULL)
    assert out.startswith("app: all 2 sessions finished")
    assert "| session | issue | PR | status | duration |" in out
    assert "| app-1 | #1 | https://github.com/o/r/pull/5 | merged | 1h |" in out
    assert r"| app-2 | a\|b | - | done | 5m |" in out
    assert "| session |" not in templates.render_named("notify/all-complete", {"session_count": 3})


def test_escalate_says_why():
    title, body = templates.split_title(templates.render_named("escalate", FULL))
    assert title == "app-3: ci-failed needs a human"
    for part in ("retries used up", "2 of 2", "12m30s", "https://github.com/o/r/pull/7"):
        assert part in body


# ----------------------------------------------------------------------------------- names, files

def test_split_title():
    assert templates.split_title("\n\n## app-3: CI failing  \n\nbody line\nmore\n\n") == \
        ("app-3: CI failing", "body line\nmore")
    assert templates.split_title("only a title") == ("only a title", "")
    assert templates.split_title("  \n") == ("", "")


def test_render_named_and_exists_on_a_relative_file(tmp_path: Path):
    (tmp_path / "msgs").mkdir()
    (tmp_path / "msgs" / "ci.md.j2").write_text("Fix {ci_logs} on {{ prUrl }}\n\n", encoding="utf-8")
    assert templates.exists("msgs/ci.md.j2", tmp_path) and templates.exists("msgs/ci.md", tmp_path)
    out = templates.render_named("msgs/ci.md.j2", {"pr_url": "u", "ci_logs": "boom"}, base=tmp_path)
    assert out == "Fix ```\nboom\n``` on u"


def test_exists_for_builtin_names_with_or_without_suffix(tmp_path: Path):
    assert templates.exists("notify/ci-failed.md.j2", tmp_path)
    assert templates.exists("notify/ci-failed.md", tmp_path)
    assert templates.exists("notify/ci-failed", tmp_path)
    assert not templates.exists("notify/nope", tmp_path)
    assert not templates.exists("", tmp_path)


def test_load_source_of_missing_template_is_an_ao_error(tmp_path: Path):
    with pytest.raises(AoError, match="template 'missing' not found"):
        templates.load_source("missing", tmp_path)
    with pytest.raises(AoError, match="not found"):
        templates.render_named("missing", {})


def test_render_named_errors_name_the_template(tmp_path: Path):
    (tmp_path / "bad.j2").write_text("{{ nope }}", encoding="utf-8")
    with pytest.raises(AoError, match="template 'bad.j2'.*nope"):
        templates.render_named("bad.j2", {}, tmp_path)


def test_every_variable_is_documented_and_aliases_point_at_variables():
    assert all(isinstance(text, str) and text for text in templates.VARIABLES.values())
    assert set(templates.ALIASES.values()) <= set(templates.VARIABLES)
    assert templates.UNTRUSTED <= set(templates.VARIABLES)


def test_importing_does_not_import_jinja():
    code = "import sys, ao.templates; sys.exit('jinja2' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
