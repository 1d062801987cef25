"""The local tracker: markdown files as issues."""

from __future__ import annotations

from pathlib import Path

import pytest

from ao.errors import AoError
from ao.plugins import tracker
from ao.plugins.tracker import IssueNotFound


def make(tmp_path: Path, files: dict[str, str] | None = None, settings: dict | None = None):
    folder = tmp_path / (settings or {}).get("dir", "issues")
    for name, text in (files or {}).items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return tracker.get("local", project_path=tmp_path, settings=settings or {"plugin": "local"})


def test_get_reads_title_body_and_url(tmp_path):
    t = make(tmp_path, {"12.md": "Some intro\n\n## Add a login page ##\n\nDetails here.\n"})
    issue = t.get("12")
    assert (issue.id, issue.title, issue.state) == ("12", "Add a login page", "open")
    assert issue.body == "Some intro\n\n## Add a login page ##\n\nDetails here.\n"
    assert issue.url == (tmp_path / "issues" / "12.md").resolve().as_uri() and issue.url.startswith("file://")
    assert t.get("#12").id == "12"


def test_title_falls_back_to_the_first_line_then_the_id(tmp_path):
    t = make(tmp_path, {"a.md": "\n\n  Plain first line  \nmore\n", "b.md": "\n   \n"})
    assert t.get("a").title == "Plain first line"
    assert t.get("b").title == "b"


def test_custom_dir(tmp_path):
    t = make(tmp_path, {"x-1.md": "# X"}, {"plugin": "local", "dir": "docs/tasks"})
    assert t.get("x-1").title == "X"


def test_list_sorts_naturally_and_skips_other_files(tmp_path):
    t = make(tmp_path, {"10.md": "# ten", "2.md": "# two", "1.md": "# one", "issue-10.md": "# i10",
                        "issue-9.md": "# i9", "notes.txt": "no", ".hidden.md": "no", "closed/3.md": "# three"})
    assert [i.id for i in t.list()] == ["1", "2", "10", "issue-9", "issue-10"]
    assert [(i.id, i.state) for i in t.list("closed")] == [("3", "closed")]
    assert [i.id for i in t.list("all")] == ["1", "2", "3", "10", "issue-9", "issue-10"]
    with pytest.raises(AoError, match="unknown issue state 'opne'"):
        t.list("opne")


def test_missing_folder(tmp_path):
    t = make(tmp_path)
    assert t.list() == []
    with pytest.raises(IssueNotFound, match=r"issues folder .* does not exist; create .*issues/7\.md"):
        t.get("7")


def test_missing_issue_names_existing_ones(tmp_path):
    t = make(tmp_path, {f"{n}.md": f"# issue {n}" for n in range(1, 31)} | {"login-page.md": "# Login"})
    with pytest.raises(IssueNotFound) as e:
        t.get("login-pag")
    message = str(e.value)
    assert "did you mean 'login-page'?" in message
    assert "1, 2, 3" in message and "(and 11 more)" in message


def test_close_moves_the_file_and_is_idempotent(tmp_path):
    t = make(tmp_path, {"5.md": "# five"})
    t.close("5")
    assert not (tmp_path / "issues" / "5.md").exists()
    issue = t.get("5")
    assert issue.state == "closed" and issue.url.endswith("/issues/closed/5.md")
    t.close("5")
    assert t.list() == [] and [i.id for i in t.list("closed")] == ["5"]
    with pytest.raises(IssueNotFound):
        t.close("6")


def test_comment_appends_a_block(tmp_path):
    t = make(tmp_path, {"5.md": "# five\nno newline at end"})
    t.comment("5", "PR: file:///repo (branch feat/issue-5)\n")
    t.comment("5", "second")
    assert t.get("5").body == ("# five\nno newline at end\n\n---\n\n## Comment\n\nPR: file:///repo (branch feat/issue-5)\n"
                               "\n---\n\n## Comment\n\nsecond\n")


@pytest.mark.parametrize("bad", ["../secret", "a/b", "..", "a\\b", ".hidden", ""])
def test_path_traversal_is_rejected(tmp_path, bad):
    (tmp_path / "secret.md").write_text("# secret")
    t = make(tmp_path, {"1.md": "# one"})
    for call in (t.get, t.close, lambda i: t.comment(i, "x")):
        with pytest.raises(AoError, match="not a valid local issue id"):
            call(bad)
    assert t.looks_like_id(bad) is False


def test_looks_like_id(tmp_path):
    t = make(tmp_path, {"login-page.md": "# Login", "fix the typo.md": "# typo"})
    for text in ("12", "#12", "ABC-123", "login-page", "fix the typo"):
        assert t.looks_like_id(text), text
    for text in ("Add a login page", "12 13", "fix-the-typo", "x" * 5000, "line\nbreak", "#", "ABC-"):
        assert not t.looks_like_id(text), text


def test_bad_bytes_are_a_clear_error(tmp_path):
    t = make(tmp_path)
    (tmp_path / "issues").mkdir()
    (tmp_path / "issues" / "9.md").write_bytes(b"# caf\xe9\n")
    with pytest.raises(AoError, match=r"9\.md is not UTF-8 text \(byte 0xe9"):
        t.get("9")
