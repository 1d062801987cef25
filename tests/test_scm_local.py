"""The local SCM (SPEC 8) against real git: a bare origin, a project cloned from it, real CI runner processes,
and ``ao review`` through the real command line."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from gitrepo import clone, commit, git, make_project, push_from_elsewhere
from sessionkit import wait_for

from ao.errors import AoError
from ao.plugins import scm as scm_slot
from ao.plugins.scm import MergeError, ScmContext, context_for
from ao.plugins.scm import local as local_scm


@pytest.fixture(autouse=True)
def _no_git_identity(no_git_identity):
    """Every test here runs without a git identity (see conftest.no_git_identity)."""


class Repo:
    """A project with a bare origin, and the local SCM over it."""

    def __init__(self, tmp_path: Path, **settings):
        self.tmp = tmp_path
        self.project, self.origin = make_project(tmp_path, files={"README.md": "line one\nline two\n"})
        self.state = tmp_path / "scm-state"
        self.settings = settings

    def scm(self, **settings) -> local_scm.LocalScm:
        ctx = ScmContext(project="app", project_path=self.project, repo=None, default_branch="main",
                         settings={**self.settings, **settings}, state_dir=self.state, clock=time.time)
        return scm_slot.get("local", ctx)

    def push(self, branch: str, files: dict[str, str], message: str = "work") -> str:
        """Commit ``files`` on ``branch`` (created from origin/main the first time) and push it."""
        if git(self.project, "branch", "--list", branch):
            git(self.project, "checkout", "--quiet", branch)
        else:
            git(self.project, "fetch", "--quiet", "origin")
            git(self.project, "checkout", "--quiet", "-b", branch, "origin/main")
        sha = commit(self.project, files, message)
        git(self.project, "push", "--quiet", "origin", branch)
        return sha

    def origin_main(self) -> str:
        return git(self.origin, "rev-parse", "main")


def ci_done(scm, branch: str, timeout: float = 15.0):
    """Observe until the branch's CI has a result."""
    return wait_for(lambda: (v := scm.observe([branch])[branch]).ci in ("passing", "failing") and v,
                    timeout=timeout, what=f"CI of {branch}")


# ------------------------------------------------------------------------------------------ PRs

def test_no_branch_then_open_prs_numbered_per_branch_and_stable(tmp_path):
    r = Repo(tmp_path)
    scm = r.scm()
    assert scm.observe(["feat/a"])["feat/a"].state == "none"
    sha = r.push("feat/a", {"a.txt": "a\n"})
    view = scm.observe(["feat/a"])["feat/a"]
    assert (view.state, view.number, view.head_sha, view.base_branch) == ("open", 1, sha, "main")
    assert view.url == "local:app#1" and view.ci == "none" and view.review == "pending" and not view.conflicts
    r.push("feat/b", {"b.txt": "b\n"})
    views = r.scm().observe(["feat/b", "feat/a", "feat/c"])  # a fresh instance: numbers live in the state dir
    assert (views["feat/a"].number, views["feat/b"].number, views["feat/c"].state) == (1, 2, "none")
    assert views["feat/a"].behind is False and views["feat/a"].fact_fields()["pr_state"] == "open"


def test_a_branch_with_no_commits_of_its_own_is_open_not_merged(tmp_path):
    r = Repo(tmp_path)
    git(r.project, "push", "--quiet", "origin", "main:feat/empty")
    assert r.scm().observe(["feat/empty"])["feat/empty"].state == "open"


def test_deleted_branch_closes_the_pr_and_a_new_push_reopens_it(tmp_path):
    r = Repo(tmp_path)
    scm = r.scm()
    r.push("feat/a", {"a.txt": "a\n"})
    assert scm.observe(["feat/a"])["feat/a"].state == "open"
    git(r.project, "push", "--quiet", "origin", "--delete", "feat/a")
    view = scm.observe(["feat/a"])["feat/a"]
    assert (view.state, view.number) == ("closed", 1)
    r.push("feat/a", {"a.txt": "again\n"})
    assert scm.observe(["feat/a"])["feat/a"].state == "open"


def test_merged_by_someone_else_reads_merged(tmp_path):
    r = Repo(tmp_path)
    scm = r.scm()
    sha = r.push("feat/a", {"a.txt": "a\n"})
    scm.observe(["feat/a"])
    git(r.project, "push", "--quiet", "origin", f"{sha}:main")  # a fast-forward by hand
    view = scm.observe(["feat/a"])["feat/a"]
    assert (view.state, view.head_sha) == ("merged", sha)


# ------------------------------------------------------------------------------------------ CI

def test_ci_passing_and_failing_with_a_clean_log_tail(tmp_path):
    r = Repo(tmp_path, ci="test -f ok.txt && echo all good || { printf 'boom \\033[31mred\\033[0m\\n'; exit 3; }")
    scm = r.scm()
    r.push("feat/good", {"ok.txt": "yes\n"})
    r.push("feat/bad", {"other.txt": "no\n"})
    first = scm.observe(["feat/good", "feat/bad"])
    assert {v.ci for v in first.values()} <= {"pending", "passing", "failing"}
    good, bad = ci_done(scm, "feat/good"), ci_done(scm, "feat/bad")
    assert good.ci == "passing" and good.checks[0].name == "ci" and good.checks[0].log_tail == ""
    assert bad.ci == "failing"
    check = bad.checks[0]
    assert check.state == "failing" and "boom red" in check.log_tail and "\x1b" not in check.log_tail
    assert Path(check.url).read_bytes().count(b"\x1b") == 2  # the full log keeps what the command printed
    assert bad.details()["failed_checks"][0]["log_tail"] == check.log_tail


def test_ci_is_pending_while_running_runs_once_per_sha_even_with_concurrent_observers(tmp_path):
    go, counter = tmp_path / "go", tmp_path / "runs"
    r = Repo(tmp_path, ci=f"echo run >> {counter}; while [ ! -e {go} ]; do sleep 0.02; done; echo done")
    r.push("feat/a", {"a.txt": "a\n"})
    scms = [r.scm() for _ in range(4)]
    results: list = []

    def look(s):
        results.append(s.observe(["feat/a"])["feat/a"].ci)

    threads = [threading.Thread(target=look, args=(s,)) for s in scms for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == ["pending"] * 8
    wait_for(counter.exists, what="the CI command to start")
    assert scms[0].observe(["feat/a"])["feat/a"].ci == "pending"
    go.write_text("")
    assert ci_done(scms[1], "feat/a").ci == "passing"
    assert r.scm().observe(["feat/a"])["feat/a"].ci == "passing"  # a new instance reads the cached result
    assert counter.read_text() == "run\n"
    r.push("feat/a", {"a.txt": "b\n"})  # a new sha is a new run
    assert ci_done(scms[2], "feat/a").ci == "passing" and counter.read_text() == "run\nrun\n"


def test_no_ci_command_means_ci_none(tmp_path):
    r = Repo(tmp_path)
    r.push("feat/a", {"a.txt": "a\n"})
    view = r.scm().observe(["feat/a"])["feat/a"]
    assert view.ci == "none" and view.checks == [] and not (r.state / "ci").exists()


def test_ci_timeout_kills_it_and_fails(tmp_path):
    r = Repo(tmp_path, ci="echo started; sleep 30", ciTimeout=1)
    r.push("feat/a", {"a.txt": "a\n"})
    started = time.monotonic()
    view = ci_done(r.scm(), "feat/a")
    assert view.ci == "failing" and "timed out after 1s" in view.checks[0].log_tail
    assert "started" in view.checks[0].log_tail and time.monotonic() - started < 10


def test_ci_runs_in_a_throwaway_checkout_of_the_head_commit(tmp_path):
    seen = tmp_path / "seen"
    r = Repo(tmp_path, ci=f"pwd > {seen}; cat a.txt >> {seen}; git rev-parse HEAD >> {seen}")
    sha = r.push("feat/a", {"a.txt": "content of a\n"})
    (r.project / "a.txt").write_text("uncommitted\n")  # the user's checkout is not what CI tests
    assert ci_done(r.scm(), "feat/a").ci == "passing"
    where, content, head = seen.read_text().splitlines()
    assert content == "content of a" and head == sha
    assert not Path(where).exists() and not where.startswith(str(r.project))
    assert git(r.project, "worktree", "list").count("\n") == 0  # nothing registered in the user's repo


def test_bad_settings_are_reported_when_the_plugin_is_made(tmp_path):
    r = Repo(tmp_path)
    with pytest.raises(AoError, match="ciTimeout"):
        r.scm(ciTimeout="soon")
    with pytest.raises(AoError, match="mergeMethod"):
        r.scm(mergeMethod="octopus")


# ------------------------------------------------------------------------------------------ conflicts and merge

def test_conflicts_detected_when_both_sides_edit_one_line_and_not_otherwise(tmp_path):
    r = Repo(tmp_path)
    r.push("feat/clash", {"README.md": "line one CHANGED HERE\nline two\n"})
    r.push("feat/clean", {"new.txt": "x\n"})
    push_from_elsewhere(r.origin, tmp_path, {"README.md": "line one changed upstream\nline two\n"})
    views = r.scm().observe(["feat/clash", "feat/clean"])
    assert views["feat/clash"].conflicts is True and views["feat/clean"].conflicts is False
    with pytest.raises(MergeError, match="conflicts"):
        r.scm().merge(views["feat/clash"])


def test_trial_merge_fallback_for_old_git_agrees(tmp_path):
    r = Repo(tmp_path)
    clash = r.push("feat/clash", {"README.md": "mine\nline two\n"})
    clean = r.push("feat/clean", {"new.txt": "x\n"})
    base = push_from_elsewhere(r.origin, tmp_path, {"README.md": "theirs\nline two\n"})
    git(r.project, "fetch", "--quiet", "origin")
    scm = r.scm()
    assert scm._trial_merge_conflicts(base, clash) is True and scm._trial_merge_conflicts(base, clean) is False
    assert scm._merge_tree_conflicts(base, clash) is True and scm._merge_tree_conflicts(base, clean) is False


@pytest.mark.parametrize("method", ["merge", "squash", "rebase"])
def test_merge_lands_on_origin_main_and_reads_merged(tmp_path, method):
    r = Repo(tmp_path, mergeMethod=method)
    head = r.push("feat/a", {"a.txt": "a\n"}, "add a")
    upstream = push_from_elsewhere(r.origin, tmp_path, {"up.txt": "up\n"})  # main moved on meanwhile
    scm = r.scm()
    view = scm.observe(["feat/a"])["feat/a"]
    merged = scm.merge(view)
    assert r.origin_main() == merged
    assert git(r.origin, "show", f"{merged}:a.txt") == "a" and git(r.origin, "show", f"{merged}:up.txt") == "up"
    assert git(r.project, "rev-parse", "origin/main") == merged  # the user's checkout sees it at once
    log = git(r.origin, "log", "-1", "--format=%cn <%ce>|%an|%P|%s", merged).split("|")
    assert log[0] == "ao <ao@localhost>"
    parents = log[2].split()
    if method == "merge":
        assert len(parents) == 2 and head in parents and log[1] == "ao"
    elif method == "squash":
        assert len(parents) == 1 and log[1] == "Test Author" and "local PR #1" in log[3]
    else:
        assert parents == [upstream] and log[1] == "Test Author" and log[3] == "add a"
    after = r.scm().observe(["feat/a"])["feat/a"]
    assert (after.state, after.number, after.head_sha) == ("merged", 1, head)
    with pytest.raises(MergeError, match="merged already"):
        scm.merge(after)


def test_merge_refused_when_pushed_to_after_observation(tmp_path):
    r = Repo(tmp_path)
    r.push("feat/a", {"a.txt": "a\n"})
    scm = r.scm()
    view = scm.observe(["feat/a"])["feat/a"]
    before = r.origin_main()
    r.push("feat/a", {"a.txt": "late\n"})
    with pytest.raises(MergeError, match="pushed to since it was observed"):
        scm.merge(view)
    assert r.origin_main() == before and scm.observe(["feat/a"])["feat/a"].state == "open"


def test_merge_refused_when_main_moves_during_the_merge(tmp_path, monkeypatch):
    r = Repo(tmp_path)
    r.push("feat/a", {"a.txt": "a\n"})
    scm = r.scm()
    view = scm.observe(["feat/a"])["feat/a"]
    moved = []

    def conflicts_then_main_moves(base, head):
        moved.append(push_from_elsewhere(r.origin, tmp_path, {"other.txt": "x\n"}))
        return False

    monkeypatch.setattr(scm, "conflicts", conflicts_then_main_moves)
    with pytest.raises(MergeError, match="moved while"):
        scm.merge(view)
    assert r.origin_main() == moved[0]
    assert r.scm().observe(["feat/a"])["feat/a"].state == "open"


# ------------------------------------------------------------------------------------------ ao review

@pytest.fixture
def reviewing(aoenv):
    """A session app-1 on feat/x (pushed) and app-2 on feat/y (never pushed)."""
    from ao.store import SessionStore

    store = SessionStore(aoenv.data)
    store.create("app", "app", status="working", branch="feat/x", agent="command", runtime="tmux")
    store.create("app", "app", status="working", branch="feat/y", agent="command", runtime="tmux")
    work = aoenv.root / "work"
    clone(aoenv.origin, work)
    git(work, "checkout", "--quiet", "-b", "feat/x")
    commit(work, {"x.txt": "x\n"})
    git(work, "push", "--quiet", "origin", "feat/x")
    aoenv.work = work
    return aoenv


def _scm_of(env):
    config = env.load()
    return local_scm.plugin(context_for(config, config.projects["app"]))


def test_review_cli_approve_then_request_changes_then_approval_resolves(reviewing):
    env = reviewing
    scm = _scm_of(env)
    assert scm.view("feat/x").review == "pending"
    done = env.ao("review", "app-1", "--approve")
    assert done.returncode == 0, done.stderr
    assert "approved local PR #1" in done.stdout
    assert scm.view("feat/x").review == "approved"
    done = env.ao("review", "app-1", "--request-changes", "Please add tests", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["kind"] == "request_changes"
    view = scm.view("feat/x")
    assert view.review == "changes_requested"
    [c] = view.human_comments
    assert (c.body, c.association, c.trusted, c.bot) == ("Please add tests", "OWNER", True, False)
    first = view.fact_fields()["comments_fingerprint"]
    assert env.ao("review", "app-1", "--comment", "and docs").returncode == 0
    view = scm.view("feat/x")
    assert view.fact_fields()["human_comments"] == 2 and view.fact_fields()["comments_fingerprint"] != first
    fingerprint_two = view.fact_fields()["comments_fingerprint"]
    commit(env.work, {"x.txt": "fixed\n"})
    git(env.work, "push", "--quiet", "origin", "feat/x")
    view = scm.view("feat/x")  # a push alone leaves the threads open (outdated, not resolved)
    assert view.fact_fields()["comments_fingerprint"] == fingerprint_two and view.review == "changes_requested"
    assert env.ao("review", "app-1", "--approve").returncode == 0
    view = scm.view("feat/x")
    assert view.comments == [] and view.review == "approved"
    listing = env.ao("review", "app-1", "--list")
    assert listing.returncode == 0 and "Please add tests" in listing.stdout and "request changes" in listing.stdout


def test_review_cli_close(reviewing):
    done = reviewing.ao("review", "app-1", "--close")
    assert done.returncode == 0, done.stderr
    assert "closed local PR #1" in done.stdout
    assert _scm_of(reviewing).view("feat/x").state == "closed"
    again = reviewing.ao("review", "app-1", "--approve")
    assert again.returncode == 1 and "closed" in again.stderr


def test_review_cli_bad_input(reviewing):
    env = reviewing
    unknown = env.ao("review", "app-9", "--approve")
    assert unknown.returncode == 1 and "unknown session 'app-9'" in unknown.stderr and "app-1" in unknown.stderr
    unpushed = env.ao("review", "app-2", "--approve")
    assert unpushed.returncode == 1 and "has no PR yet: its branch is not on origin" in unpushed.stderr
    both = env.ao("review", "app-1", "--approve", "--request-changes", "no")
    assert both.returncode == 2 and "exactly one" in both.stderr
    none = env.ao("review", "app-1")
    assert none.returncode == 2
    for result in (unknown, unpushed, both, none):
        assert "Traceback" not in result.stderr


def test_review_refuses_projects_on_github(reviewing):
    reviewing.write_config(scm={"plugin": "github"}, repo="someone/app")
    done = reviewing.ao("review", "app-1", "--approve")
    assert done.returncode == 1 and "ao review is for the local SCM" in done.stderr


# ------------------------------------------------------------------------------------------ speed

def test_observing_ten_quiet_branches_is_cheap(tmp_path):
    r = Repo(tmp_path)
    branches = [f"feat/b{i}" for i in range(10)]
    for b in branches:
        r.push(b, {f"{b.replace('/', '-')}.txt": "x\n"})
    scm = r.scm()
    scm.observe(branches)
    started = time.monotonic()
    views = scm.observe(branches)
    elapsed = time.monotonic() - started
    assert sorted(v.number for v in views.values()) == list(range(1, 11))
    assert elapsed < 1.0, f"observe of 10 unchanged branches took {elapsed:.2f}s"


def test_the_runner_entry_point_rejects_bad_arguments():
    done = subprocess.run([sys.executable, "-m", "ao.plugins.scm.local"], check=False, capture_output=True, text=True)
    assert done.returncode == 2 and "usage" in done.stderr


def test_merged_on_origin_then_deleted_reads_merged(tmp_path):
    r = Repo(tmp_path)
    scm = r.scm()
    sha = r.push("feat/a", {"a.txt": "a\n"})
    scm.observe(["feat/a"])
    git(r.project, "push", "--quiet", "origin", f"{sha}:main", ":feat/a")  # merge by hand, delete the branch
    view = scm.observe(["feat/a"])["feat/a"]
    assert (view.state, view.head_sha) == ("merged", sha)


def test_unrelated_history_counts_as_conflicting_without_breaking_observe(tmp_path):
    r = Repo(tmp_path)
    git(r.project, "checkout", "--quiet", "--orphan", "feat/orphan")
    commit(r.project, {"README.md": "something else\n"}, "unrelated")
    git(r.project, "push", "--quiet", "origin", "feat/orphan")
    r.push("feat/fine", {"f.txt": "f\n"})
    views = r.scm().observe(["feat/orphan", "feat/fine"])
    assert views["feat/orphan"].conflicts is True and views["feat/fine"].conflicts is False


def test_a_runner_that_died_is_started_again_then_given_up_on(tmp_path):
    r = Repo(tmp_path, ci="echo ok")
    sha = r.push("feat/a", {"a.txt": "a\n"})
    (r.state / "ci").mkdir(parents=True)
    (r.state / "ci" / f"{sha}.run").write_text("1")  # a claim nobody holds: its runner died (a reboot)
    assert ci_done(r.scm(), "feat/a").ci == "passing"
    sha = r.push("feat/a", {"a.txt": "b\n"})
    (r.state / "ci" / f"{sha}.run").write_text(str(local_scm.CI_ATTEMPTS))
    view = r.scm().observe(["feat/a"])["feat/a"]
    assert view.ci == "failing" and "stopped 3 times" in view.checks[0].log_tail


# ------------------------------------------------------------------------------------------ merge criteria


def test_the_review_is_the_latest_opinion_of_each_reviewer_on_the_head(tmp_path):
    from ao.merging import criteria

    repo = Repo(tmp_path)
    repo.push("feat/a", {"a.txt": "a\n"})
    scm = repo.scm()
    scm.review("feat/a", "approve", author="alice")
    scm.review("feat/a", "request_changes", "not like this", author="bob")
    view = scm.view("feat/a")
    assert view.review == "changes_requested" and "bob requested changes" in view.review_note
    assert [c.name for c in criteria(view) if not c.ok] == ["review"]
    scm.review("feat/a", "approve", author="bob")
    view = scm.view("feat/a")
    assert view.review == "approved" and view.ci == "none" and view.mergeable
    assert "no CI (scm.ci is not set)" in next(c.detail for c in criteria(view) if c.name == "ci")
    repo.push("feat/a", {"a.txt": "changed after the approvals\n"})
    view = scm.view("feat/a")
    assert view.review == "pending" and "earlier commit" in view.review_note and not view.mergeable
    assert repo.scm(staleApprovals=True).view("feat/a").review == "approved"  # the GitHub-default choice


def test_ao_merge_on_the_local_scm(reviewing):
    env = reviewing
    refused = env.ao("merge", "app-1")
    assert refused.returncode == 1 and "not mergeable" in refused.stderr and "review:" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert env.ao("review", "app-1", "--approve").returncode == 0
    scm = _scm_of(env)
    assert ci_done(scm, "feat/x").ci == "passing"
    head = git(env.origin, "rev-parse", "feat/x")
    dry = env.ao("merge", "app-1", "--dry-run")
    assert dry.returncode == 0 and "mergeable: yes" in dry.stdout and git(env.origin, "rev-parse", "main") != head
    done = env.ao("merge", "app-1", "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["merged"] and result["head_sha"] == head and result["pr_number"] == 1
    assert git(env.origin, "merge-base", "--is-ancestor", head, "main") == ""  # head is in origin/main now
    again = env.ao("merge", "app-1")
    assert again.returncode == 1 and "open: PR #1 is merged" in again.stderr
    missing = env.ao("merge", "app-9")
    assert missing.returncode == 1 and "app-9" in missing.stderr and "Traceback" not in missing.stderr
