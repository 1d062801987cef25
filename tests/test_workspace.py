"""Workspace plugins (SPEC 5) against real git: a bare origin, a project cloned from it, `main` with a commit."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest
from gitrepo import clone, commit, git, make_project, push_from_elsewhere

from ao import git as aogit
from ao.errors import AoError
from ao.git import BranchExists, GitError
from ao.plugins import workspace
from ao.plugins.workspace import WorkspaceSpec


@pytest.fixture(autouse=True)
def _no_git_identity(no_git_identity):
    """Every test here runs without a git identity (see conftest.no_git_identity)."""


@pytest.fixture
def project(tmp_path):
    return make_project(tmp_path)


@pytest.fixture
def wt():
    return workspace.get("worktree")


def spec(repo: Path, path: Path, branch: str = "feat/issue-1", **kw) -> WorkspaceSpec:
    return WorkspaceSpec(repo=repo, path=path, branch=branch, **kw)


def worktrees(repo: Path) -> list[str]:
    return [os.path.realpath(p) for p in aogit.worktree_paths(repo)]


def branches(repo: Path) -> list[str]:
    return git(repo, "branch", "--format=%(refname:short)").split()


# -- worktree: base, fetch, branch ---------------------------------------------------------------------------


def test_worktree_branches_from_fetched_origin_main_not_local_main(tmp_path, project, wt):
    repo, origin = project
    upstream = push_from_elsewhere(origin, tmp_path, {"upstream.txt": "new on origin\n"})
    commit(repo, {"local.txt": "only in the local main\n"}, "local work")  # local main diverged: ahead and behind

    path = wt.create(spec(repo, tmp_path / "ws" / "app-1", "feat/issue-1"))

    assert path == tmp_path / "ws" / "app-1"
    assert (path / "upstream.txt").read_text() == "new on origin\n"  # fetched first
    assert not (path / "local.txt").exists()
    assert git(path, "rev-parse", "HEAD") == upstream
    assert git(path, "symbolic-ref", "--short", "HEAD") == "feat/issue-1"
    # No upstream: the agent's `git push -u origin feat/issue-1` must not be aimed at main.
    assert git(path, "config", "--default", "", "--get", "branch.feat/issue-1.merge") == ""
    assert wt.exists(path) and wt.warnings == []
    assert os.path.realpath(path) in worktrees(repo)


def test_worktree_without_origin_uses_local_default_branch(tmp_path, project, wt):
    repo, _ = project
    git(repo, "remote", "remove", "origin")
    local = commit(repo, {"local.txt": "x\n"}, "local only")
    path = wt.create(spec(repo, tmp_path / "ws", "work"))
    assert git(path, "rev-parse", "HEAD") == local


def test_worktree_fetch_failure_falls_back_to_last_fetched_origin_ref_with_warning(tmp_path, project, wt):
    repo, _ = project
    git(repo, "remote", "set-url", "origin", str(tmp_path / "unreachable.git"))
    path = wt.create(spec(repo, tmp_path / "ws"))
    assert git(path, "rev-parse", "HEAD") == git(repo, "rev-parse", "origin/main")
    assert len(wt.warnings) == 1 and "could not fetch from origin" in wt.warnings[0]


def test_worktree_missing_default_branch_suggests_config(tmp_path, project, wt):
    repo, _ = project
    with pytest.raises(AoError, match=r"default branch 'trunk'.*defaultBranch"):
        wt.create(spec(repo, tmp_path / "ws", default_branch="trunk"))
    assert not (tmp_path / "ws").exists()


def test_branch_existing_locally_is_refused(tmp_path, project, wt):
    repo, _ = project
    git(repo, "branch", "feat/issue-1")
    with pytest.raises(BranchExists, match="'feat/issue-1' already exists"):
        wt.create(spec(repo, tmp_path / "ws", "feat/issue-1"))
    assert not (tmp_path / "ws").exists()


def test_branch_existing_only_on_origin_is_refused(tmp_path, project, wt):
    repo, origin = project
    # Pushed by someone else after the project's last fetch: only the fetch in create can see it.
    push_from_elsewhere(origin, tmp_path, {"x.txt": "x\n"}, branch="feat/issue-1")
    with pytest.raises(BranchExists, match="on origin"):
        wt.create(spec(repo, tmp_path / "ws", "feat/issue-1"))
    assert "feat/issue-1" not in branches(repo)
    assert not (tmp_path / "ws").exists()
    # A longer name sharing the prefix is fine.
    wt.create(spec(repo, tmp_path / "ws", "feat/issue-10"))


def test_invalid_branch_name_is_an_error(tmp_path, project, wt):
    repo, _ = project
    with pytest.raises(AoError, match="not a valid git branch name"):
        wt.create(spec(repo, tmp_path / "ws", "bad..name"))


def test_not_a_git_repository(tmp_path, wt):
    plain = tmp_path / "plain"
    plain.mkdir()
    with pytest.raises(AoError, match=r"plain is not a git repository \(project 'path' must point at a git checkout\)"):
        wt.create(spec(plain, tmp_path / "ws"))
    with pytest.raises(AoError, match="is not a git repository"):
        wt.create(spec(tmp_path / "missing", tmp_path / "ws"))


# -- worktree: the workspace path ----------------------------------------------------------------------------


def test_orphaned_registered_worktree_is_replaced(tmp_path, project, wt):
    repo, _ = project
    path = tmp_path / "ws"
    wt.create(spec(repo, path, "first"))
    (path / "scratch.txt").write_text("left by a dead run\n")  # uncommitted changes do not stop the cleanup
    wt.create(spec(repo, path, "second"))
    assert git(path, "symbolic-ref", "--short", "HEAD") == "second"
    assert not (path / "scratch.txt").exists()
    assert worktrees(repo).count(os.path.realpath(path)) == 1


def test_orphaned_worktree_whose_folder_was_deleted_is_pruned(tmp_path, project, wt):
    repo, _ = project
    path = tmp_path / "ws"
    wt.create(spec(repo, path, "first"))
    shutil.rmtree(path)  # registered in .git/worktrees but the folder is gone
    wt.create(spec(repo, path, "second"))
    assert git(path, "symbolic-ref", "--short", "HEAD") == "second"
    assert len(worktrees(repo)) == 2


def test_unrelated_folder_at_path_is_refused_and_untouched(tmp_path, project, wt):
    repo, _ = project
    path = tmp_path / "mine"
    path.mkdir()
    (path / "notes.txt").write_text("precious\n")
    with pytest.raises(AoError, match="already exists and was not created by ao"):
        wt.create(spec(repo, path))
    assert (path / "notes.txt").read_text() == "precious\n"
    assert sorted(p.name for p in path.iterdir()) == ["notes.txt"]
    assert "feat/issue-1" not in branches(repo)


def test_workspace_path_may_not_be_the_project(tmp_path, project, wt):
    repo, _ = project
    with pytest.raises(AoError, match="is \\(or contains\\) the project checkout"):
        wt.create(spec(repo, repo))
    with pytest.raises(AoError, match="is \\(or contains\\) the project checkout"):
        wt.remove(repo, tmp_path)
    assert (repo / "README.md").exists()


# -- symlinks ------------------------------------------------------------------------------------------------


def test_symlinks_are_relative_and_resolve(tmp_path, project, wt):
    repo, _ = project
    commit(repo, {"config/settings.json": "{tracked}\n"}, "tracked settings")
    git(repo, "push", "--quiet", "origin", "main")
    (repo / ".env").write_text("SECRET=1\n")
    (repo / "config" / "settings.json").write_text("{local}\n")  # the user's local edit, to be shared
    (repo / "data" / "cache").mkdir(parents=True)
    (repo / "data" / "cache" / "blob").write_text("cached\n")

    path = wt.create(spec(repo, tmp_path / "ws" / "app-1", symlinks=[".env", "data/cache", "config/settings.json"]))

    for rel in (".env", "data/cache", "config/settings.json"):
        link = path / rel
        assert link.is_symlink()
        target = os.readlink(link)
        assert not os.path.isabs(target), target
        assert os.path.realpath(link) == os.path.realpath(repo / rel)
    assert (path / ".env").read_text() == "SECRET=1\n"
    assert (path / "data" / "cache" / "blob").read_text() == "cached\n"
    assert (path / "config" / "settings.json").read_text() == "{local}\n"  # the tracked file was replaced
    # ...and hidden from git, so the agent cannot commit the symlink instead of the file.
    assert "config/settings.json" not in git(path, "status", "--porcelain")


@pytest.mark.parametrize("bad", ["/etc/passwd", "../outside", "a/../../outside", ".git/config", ".."])
def test_symlink_outside_the_project_is_refused_before_anything_is_created(tmp_path, project, wt, bad):
    repo, _ = project
    with pytest.raises(AoError, match="symlinks: "):
        wt.create(spec(repo, tmp_path / "ws", symlinks=[bad]))
    assert not (tmp_path / "ws").exists()
    assert "feat/issue-1" not in branches(repo)


def test_missing_symlink_source_rolls_back(tmp_path, project, wt):
    repo, _ = project
    with pytest.raises(AoError, match="symlinks: 'nope' does not exist"):
        wt.create(spec(repo, tmp_path / "ws", symlinks=["nope"]))
    assert not (tmp_path / "ws").exists()
    assert "feat/issue-1" not in branches(repo)
    assert len(worktrees(repo)) == 1


# -- postCreate ----------------------------------------------------------------------------------------------


def test_post_create_runs_in_workspace_with_env(tmp_path, project, wt):
    repo, _ = project
    path = wt.create(
        spec(
            repo,
            tmp_path / "ws",
            post_create=['printf "%s" "$AO_TEST_VALUE" > value.txt', "pwd -P > where.txt", "test -f value.txt"],
            env={"AO_TEST_VALUE": "hello world"},
        )
    )
    assert (path / "value.txt").read_text() == "hello world"
    assert (path / "where.txt").read_text().strip() == os.path.realpath(path)


def test_failing_post_create_rolls_back_everything(tmp_path, project, wt):
    repo, _ = project
    failing = "for i in $(seq 1 30); do echo line$i; done; echo oops >&2; exit 3"
    with pytest.raises(AoError) as err:
        wt.create(spec(repo, tmp_path / "ws", post_create=["echo fine", failing]))
    msg = str(err.value)
    assert msg.startswith(f"postCreate command failed (exit 3): {failing}\n")
    assert "line30" in msg and "oops" in msg and "line12" in msg
    assert "line11\n" not in msg  # only the last 20 lines
    assert not (tmp_path / "ws").exists()
    assert "feat/issue-1" not in branches(repo)
    assert worktrees(repo) == [os.path.realpath(repo)]
    assert git(repo, "worktree", "prune", "--dry-run", "--verbose") == ""


def test_post_create_timeout_kills_the_command_and_its_children(tmp_path, project, wt):
    repo, _ = project
    pidfile = tmp_path / "child.pid"
    cmd = f"echo starting; sleep 30 & echo $! > {pidfile}; wait"
    start = time.monotonic()
    with pytest.raises(AoError, match=r"postCreate command timed out after 0.5s: echo starting;.*\nstarting$"):
        wt.create(spec(repo, tmp_path / "ws", post_create=[cmd], post_create_timeout=0.5))
    assert time.monotonic() - start < 10
    assert not (tmp_path / "ws").exists()
    child = int(pidfile.read_text())
    for _ in range(50):  # killed; init reaps it shortly (or it lingers as a zombie where PID 1 does not reap)
        if not _alive(child):
            break
        time.sleep(0.05)
    else:
        pytest.fail("the postCreate command's child survived the timeout")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def test_post_create_leaving_a_background_process_does_not_block(tmp_path, project, wt):
    repo, _ = project
    start = time.monotonic()
    wt.create(spec(repo, tmp_path / "ws", post_create=["sleep 5 >/dev/null 2>&1 &"]))
    assert time.monotonic() - start < 4


# -- remove --------------------------------------------------------------------------------------------------


def test_remove_deletes_worktree_and_local_branch_and_is_idempotent(tmp_path, project, wt):
    repo, _ = project
    path = wt.create(spec(repo, tmp_path / "ws", "feat/issue-1"))
    (path / "dirty.txt").write_text("uncommitted\n")
    wt.remove(repo, path, "feat/issue-1")
    assert not path.exists()
    assert "feat/issue-1" not in branches(repo)
    assert worktrees(repo) == [os.path.realpath(repo)]
    wt.remove(repo, path, "feat/issue-1")  # already gone: fine
    wt.remove(repo, path)


def test_remove_keeps_a_branch_that_is_on_origin(tmp_path, project, wt):
    repo, _ = project
    path = wt.create(spec(repo, tmp_path / "ws", "feat/pushed"))
    git(path, "push", "--quiet", "origin", "feat/pushed")  # also updates the project's origin/feat/pushed
    wt.remove(repo, path, "feat/pushed")
    assert not path.exists()
    assert "feat/pushed" in branches(repo)


def test_remove_when_folder_already_deleted_by_hand(tmp_path, project, wt):
    repo, _ = project
    path = wt.create(spec(repo, tmp_path / "ws", "b"))
    shutil.rmtree(path)
    wt.remove(repo, path, "b")
    assert worktrees(repo) == [os.path.realpath(repo)]
    assert "b" not in branches(repo)


# -- clone ---------------------------------------------------------------------------------------------------


def test_clone_points_origin_at_the_real_origin_and_branches_from_origin_main(tmp_path, project):
    repo, origin = project
    cl = workspace.get("clone")
    upstream = push_from_elsewhere(origin, tmp_path, {"upstream.txt": "new\n"})
    (repo / ".env").write_text("S=1\n")
    path = cl.create(
        spec(repo, tmp_path / "ws" / "app-1", "feat/issue-2", symlinks=[".env"], post_create=["touch made.txt"])
    )
    assert os.path.realpath(git(path, "remote", "get-url", "origin")) == os.path.realpath(origin)
    assert git(path, "rev-parse", "HEAD") == upstream
    assert git(path, "symbolic-ref", "--short", "HEAD") == "feat/issue-2"
    assert not os.path.isabs(os.readlink(path / ".env")) and (path / ".env").read_text() == "S=1\n"
    # The untracked link is excluded in the clone's own info/exclude; postCreate's file is not.
    assert git(path, "status", "--porcelain") == "?? made.txt"
    assert (path / "made.txt").exists()
    assert "feat/issue-2" not in branches(repo)  # the project checkout is not touched
    assert cl.exists(path)
    cl.remove(repo, path, "feat/issue-2")
    assert not path.exists()
    cl.remove(repo, path, "feat/issue-2")


def test_clone_without_origin_clones_the_project(tmp_path, project):
    repo, _ = project
    git(repo, "remote", "remove", "origin")
    local = commit(repo, {"l.txt": "l\n"})
    path = workspace.get("clone").create(spec(repo, tmp_path / "ws"))
    assert git(path, "rev-parse", "HEAD") == local
    assert os.path.realpath(git(path, "remote", "get-url", "origin")) == os.path.realpath(repo)


def test_clone_failing_post_create_deletes_the_clone(tmp_path, project):
    repo, _ = project
    with pytest.raises(AoError, match=r"postCreate command failed \(exit 7\): exit 7"):
        workspace.get("clone").create(spec(repo, tmp_path / "ws", post_create=["exit 7"]))
    assert not (tmp_path / "ws").exists()


def test_clone_branch_exists_on_origin_or_locally(tmp_path, project):
    repo, origin = project
    cl = workspace.get("clone")
    push_from_elsewhere(origin, tmp_path, {"x": "x\n"}, branch="taken")
    with pytest.raises(BranchExists, match="on origin"):
        cl.create(spec(repo, tmp_path / "ws", "taken"))
    assert not (tmp_path / "ws").exists()
    git(repo, "branch", "mine")
    with pytest.raises(BranchExists, match="'mine' already exists in"):
        cl.create(spec(repo, tmp_path / "ws", "mine"))


def test_clone_orphan_is_replaced_but_a_user_folder_is_not(tmp_path, project):
    repo, origin = project
    cl = workspace.get("clone")
    path = cl.create(spec(repo, tmp_path / "ws", "one"))
    (path / "junk").write_text("x")
    cl.create(spec(repo, path, "two"))  # our own leftover clone: cleared
    assert git(path, "symbolic-ref", "--short", "HEAD") == "two" and not (path / "junk").exists()
    users = clone(origin, tmp_path / "users-clone")
    with pytest.raises(AoError, match="not created by ao"):
        cl.create(spec(repo, users, "three"))
    assert (users / "README.md").exists()


# -- plumbing ------------------------------------------------------------------------------------------------


def test_plugin_options_are_checked():
    assert workspace.get("worktree", fetch_timeout=5).fetch_timeout == 5
    with pytest.raises(AoError, match="has no option 'depth'"):
        workspace.get("clone", depth=1)
    with pytest.raises(AoError, match="unknown workspace plugin"):
        workspace.get("copy")


def test_git_error_is_one_line_with_command_and_stderr(tmp_path, project):
    repo, _ = project
    with pytest.raises(GitError) as err:
        aogit.run(["rev-parse", "--verify", "no-such-ref"], repo)
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith(f"git -C {repo} rev-parse --verify no-such-ref failed (exit 128): fatal:")
    with pytest.raises(GitError, match="no such directory"):
        aogit.run(["status"], tmp_path / "missing")


def test_git_helpers(tmp_path, project):
    repo, origin = project
    assert aogit.is_repo(repo) and not aogit.is_repo(repo / "sub") and not aogit.is_repo(tmp_path)
    (repo / "sub").mkdir()
    assert not aogit.is_repo(repo / "sub")  # inside a checkout is not a checkout
    assert aogit.has_remote(repo, "origin") and not aogit.has_remote(repo, "upstream")
    assert os.path.realpath(aogit.remote_url(repo)) == os.path.realpath(origin)
    assert aogit.remote_url(repo, "upstream") is None
    assert aogit.branch_exists(repo, "main") and not aogit.branch_exists(repo, "nope")
    assert aogit.remote_branch_exists(repo, "main") and not aogit.remote_branch_exists(repo, "nope")


def test_symlink_inside_another_linked_folder_is_refused(tmp_path, project, wt):
    repo, _ = project
    (repo / "shared" / "inner").mkdir(parents=True)
    with pytest.raises(AoError, match="inside another linked folder"):
        wt.create(spec(repo, tmp_path / "ws", symlinks=["shared", "shared/inner"]))
    assert (repo / "shared" / "inner").is_dir()  # the project's own folder was not touched
    assert not (tmp_path / "ws").exists()
