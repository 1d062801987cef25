"""Sessions end to end with real parts: git (bare origin), tmux (private socket), the scripted agent."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from concurrent.futures import ThreadPoolExecutor

import pytest
from sessionkit import git, wait_for

from ao.errors import AoError
from ao.sessions import SpawnRequest, default_branch_name, slug


def spawn(env, target=None, **kw):
    return env.manager().spawn(SpawnRequest(project="app", target=target, **kw))


def alive(env, session) -> bool:
    return env.tmux("has-session", "-t", f"={session.runtime_handle}").returncode == 0


# ------------------------------------------------------------------------------------------- spawn

def test_spawn_an_issue_creates_worktree_branch_terminal_and_delivers_the_prompt_once(aoenv):
    s = spawn(aoenv, "12")
    assert s.id == "app-1" and s.status == "working" and s.issue == "12" and s.branch == "feat/issue-12"
    assert git("rev-parse", "--abbrev-ref", "HEAD", cwd=aoenv.project.parent / s.workspace).strip() == "feat/issue-12"
    assert alive(aoenv, s)
    got = wait_for(lambda: aoenv.received(s.id), what="the prompt")
    assert len(got) == 1
    assert "Add a health endpoint" in got[0]["text"] and "feat/issue-12" in got[0]["text"]
    kinds = [e["type"] for e in _events(aoenv) if e.get("session") == s.id]
    assert kinds == ["session.spawned", "session.working"]
    stored = aoenv.manager().store.get(s.id)
    assert stored.runtime_handle == s.runtime_handle and stored.workspace == s.workspace


def test_a_task_gets_a_slug_branch_and_a_second_spawn_of_one_issue_a_fresh_branch(aoenv):
    task = spawn(aoenv, "Explore performance optimisation opportunities")
    assert task.issue == "" and task.branch == "feat/explore-performance-optimisation"
    again = [spawn(aoenv, "12"), spawn(aoenv, "12")]
    assert [s.branch for s in again] == ["feat/issue-12", "feat/issue-12-2"]


def test_branch_names():
    assert default_branch_name("app-3", issue="#41") == "feat/issue-41"
    assert default_branch_name("app-3", issue="ENG-7") == "feat/issue-ENG-7"
    assert default_branch_name("app-3", task="!!!") == "feat/app-3"
    assert slug("Fix: the `login` page's CSS (again)") == "fix-the-login-page-s-css-again"


def test_unknown_issue_lists_the_existing_ones_and_creates_nothing(aoenv):
    with pytest.raises(AoError, match="12"):
        spawn(aoenv, "13")
    assert aoenv.manager().store.list() == [] and not (aoenv.data / "workspaces").exists()


# ------------------------------------------------------------------------------------- send

def test_send_multiline_and_5kb_messages_arrive_intact_exactly_once(aoenv):
    s = spawn(aoenv)
    wait_for(lambda: aoenv.received(s.id), what="the prompt")
    multi = "Please fix the tests.\n\n  - step one\n  - step two\nThanks"
    big = ("0123456789abcdef" * 320)[:5000]
    big_multi = "\n".join(f"line {i}: " + "x" * 90 for i in range(50))
    manager = aoenv.manager()
    for text in (multi, big, big_multi, "short one"):
        manager.send(s.id, text)
    got = wait_for(lambda: len(aoenv.received(s.id)) >= 5 and aoenv.received(s.id), what="4 messages")
    assert [m["text"] for m in got[1:]] == [multi, big, big_multi, "short one"]


def test_control_characters_and_escape_sequences_are_stripped(aoenv):
    s = spawn(aoenv)
    wait_for(lambda: aoenv.received(s.id), what="the prompt")
    aoenv.manager().send(s.id, "red \x1b[31mALERT\x1b[0m\x1b]0;pwned\x07 bell\x07 nul\x00 end")
    got = wait_for(lambda: len(aoenv.received(s.id)) >= 2 and aoenv.received(s.id), what="the message")
    assert got[1]["text"] == "red ALERT bell nul end"


def test_send_through_the_cli_from_a_file_and_unreadable_files(aoenv, tmp_path):
    s = spawn(aoenv)
    wait_for(lambda: aoenv.received(s.id), what="the prompt")
    message = tmp_path / "msg.txt"
    message.write_text("from a file\nsecond line")
    run = aoenv.ao("send", s.id, "-f", str(message))
    assert run.returncode == 0, run.stderr
    wait_for(lambda: len(aoenv.received(s.id)) >= 2, what="the message")
    assert aoenv.received(s.id)[1]["text"] == "from a file\nsecond line"
    run = aoenv.ao("send", s.id, "-f", str(tmp_path / "missing.txt"))
    assert run.returncode == 1 and "cannot read the message" in run.stderr and "Traceback" not in run.stderr
    run = aoenv.ao("send", "app-99", "hello")
    assert run.returncode == 1 and "unknown session 'app-99'" in run.stderr and "app-1" in run.stderr
    run = aoenv.ao("send", s.id)
    assert run.returncode == 2


# ------------------------------------------------------------------------------- liveness, restore

def test_a_killed_tmux_session_is_detected_by_status_refresh(aoenv):
    s = spawn(aoenv, "12")
    aoenv.tmux("kill-session", "-t", f"={s.runtime_handle}")
    run = aoenv.ao("status", "--json")  # no observation since the kill: status shows the last one, and says so
    row = json.loads(run.stdout)[0]
    assert row["session"] == s.id and row["status"] == "working" and row["observed_at"] is None
    for _ in range(2):  # a runtime is gone after two failed probes in a row (one flaky probe ends nothing)
        run = aoenv.ao("status", "--refresh", "--json")
        assert run.returncode == 0, run.stderr
    row = json.loads(run.stdout)[0]
    assert row["alive"] is False and row["status"] == "exited" and row["observed_seconds_ago"] <= 5
    explained = json.loads(aoenv.ao("rules", "explain", s.id, "--json").stdout)
    listed = json.loads(aoenv.ao("session", "ls", "--json").stdout)[0]
    assert explained["status"] == listed["status"] == "exited"  # every view tells the same story


def test_restore_after_the_agent_exits(aoenv):
    s = spawn(aoenv)
    wait_for(lambda: aoenv.received(s.id), what="the prompt")
    manager = aoenv.manager()
    manager.send(s.id, "!exit 0")
    wait_for(lambda: not manager.runtime("tmux").probe([s.runtime_handle])[s.runtime_handle].alive,
             what="the agent to exit")
    run = aoenv.ao("session", "restore", s.id)
    assert run.returncode == 0, run.stderr
    wait_for(lambda: manager.runtime("tmux").probe([s.runtime_handle])[s.runtime_handle].alive, what="restart")
    # the scripted agent drops what was typed before it reads input (raw mode is set with TCSAFLUSH), and the
    # generic agent has no input box for ao to wait for: wait for its prompt, as a user would
    wait_for(lambda: "ready (pid" in aoenv.tmux("capture-pane", "-p", "-t", f"={s.runtime_handle}:").stdout,
             what="the restarted agent's prompt")
    restored = manager.store.get(s.id)
    assert restored.status == "working" and "restored_at" in restored.meta
    manager.send(s.id, "after restore")
    wait_for(lambda: any(m["text"] == "after restore" for m in aoenv.received(s.id)), what="the message")
    run = aoenv.ao("session", "restore", s.id)
    assert run.returncode == 1 and "still running" in run.stderr


def test_restore_waits_a_moment_for_the_terminal_of_an_agent_seen_exiting():
    """Claude's SessionEnd hook says "exited" while its pane (or a container, up to 2 s) is still closing: a
    restore right then waits for it instead of saying the session is still running. Only then."""
    from types import SimpleNamespace

    from ao.plugins.runtime import Probe
    from ao.sessions import Sessions

    class Closing:
        def __init__(self, looks: int) -> None:
            self.looks = looks

        def probe(self, handles):
            self.looks -= 1
            return {h: Probe(alive=self.looks >= 0) for h in handles}

    exited = SimpleNamespace(runtime_handle="h", status="exited")
    assert Sessions._still_running(Closing(3), exited) is False
    assert Sessions._still_running(Closing(3), SimpleNamespace(runtime_handle="h", status="working")) is True


# --------------------------------------------------------------------------------- rollbacks

def test_a_failing_post_create_rolls_the_whole_spawn_back(aoenv):
    aoenv.write_config(postCreate=["echo preparing", "echo broken >&2; exit 3"])
    with pytest.raises(AoError, match="exit 3") as caught:
        spawn(aoenv, "12")
    assert "broken" in str(caught.value)
    manager = aoenv.manager()
    assert manager.store.list() == []
    assert not (aoenv.data / "workspaces" / "app" / "app-1").exists()
    assert "feat/issue-12" not in git("branch", "--list", cwd=aoenv.project)
    assert "workspaces" not in git("worktree", "list", cwd=aoenv.project)
    assert aoenv.tmux("list-sessions").stdout == ""
    aoenv.write_config()
    assert spawn(aoenv, "12").id == "app-2"  # ids are never reused


def test_concurrent_spawns_get_distinct_ids(aoenv):
    with ThreadPoolExecutor(4) as pool:
        runs = list(pool.map(lambda i: aoenv.ao("spawn", "app", f"task number {i}", "--json"), range(4)))
    assert all(r.returncode == 0 for r in runs), [r.stderr for r in runs]
    ids = sorted(json.loads(r.stdout)["session"] for r in runs)
    assert ids == ["app-1", "app-2", "app-3", "app-4"]
    assert len({s.runtime_handle for s in aoenv.manager().store.list()}) == 4


# ------------------------------------------------------------------------------------- cleanup

def test_cleanup_archives_ended_sessions_and_keeps_live_ones_and_unpushed_work(aoenv):
    live, ended, dirty = spawn(aoenv, "a live one"), spawn(aoenv, "an ended one"), spawn(aoenv, "unsaved work")
    manager = aoenv.manager()
    manager.kill(ended.id)
    manager.kill(dirty.id)
    (aoenv.project.parent / dirty.workspace / "notes.txt").write_text("not committed")

    dry = aoenv.ao("cleanup", "--json")
    assert dry.returncode == 0, dry.stderr
    assert {r["session"]: r["action"] for r in json.loads(dry.stdout)} == {ended.id: "clean", dirty.id: "keep"}
    assert manager.store.get(ended.id) is not None  # listing only

    run = aoenv.ao("cleanup", "--confirm")
    assert run.returncode == 0, run.stderr
    assert manager.store.get(ended.id) is None and manager.store.is_archived(ended.id)
    archived = manager.store.get(ended.id, include_archived=True)
    assert archived.status == "cleanup" and archived.meta["ended_as"] == "killed"
    assert not os.path.exists(ended.workspace) and not alive(aoenv, ended)
    assert manager.store.get(dirty.id).status == "killed" and os.path.exists(dirty.workspace)
    assert manager.store.get(live.id).status == "working" and alive(aoenv, live)
    assert any(e["type"] == "session.cleaned" and e["session"] == ended.id for e in _events(aoenv))

    run = aoenv.ao("cleanup", "--confirm", "--force")
    assert run.returncode == 0 and not os.path.exists(dirty.workspace)


def test_cleanup_keeps_a_finished_task_with_unpushed_commits_and_skips_the_orchestrators_checkout(aoenv):
    manager = aoenv.manager()
    task = spawn(aoenv, "explore something")
    git("commit", "-q", "--allow-empty", "-m", "the only copy of this work", cwd=Path(task.workspace))
    manager.kill(task.id)
    manager.store.update(task.id, "app", status="done")
    orchestrator = manager.spawn_orchestrator()
    manager.kill(orchestrator.id)
    (aoenv.project / "scratch.txt").write_text("the user's own uncommitted file")
    plan = {i.session.id: i for i in manager.cleanup_plan()}
    assert plan[task.id].action == "keep" and "1 unpushed commit" in plan[task.id].reason
    assert plan[orchestrator.id].action == "clean"
    done = manager.cleanup(list(plan.values()))
    assert [(d.session.id, d.action) for d in done] == [(orchestrator.id, "clean")]
    assert (aoenv.project / "scratch.txt").exists() and aoenv.project.is_dir()  # the checkout is untouched
    assert manager.store.get(task.id).status == "done" and os.path.isdir(task.workspace)


def test_cleanup_runs_no_command_an_agent_planted_in_its_workspaces_git(aoenv):
    """A sandboxed agent owns its workspace, .git included: it can point .git at a repository of its own
    whose config names an fsmonitor command, hooks and a filter driver (which `git status` runs on a file
    whose index entry is stale). ao's git there must run none of them."""
    import shutil

    manager = aoenv.manager()
    task = spawn(aoenv, "plant a command")
    manager.kill(task.id)
    ws, marks = Path(task.workspace), aoenv.root / "marks"
    marks.mkdir()
    own = ws / ".agent-git"
    shutil.copytree(aoenv.project / ".git", own)  # its index describes the project's checkout: stale here
    (ws / ".git").write_text(f"gitdir: {own}\n")
    hook = ws / "hook.sh"
    hook.write_text(f"#!/bin/sh\necho \"$0\" >> {marks}/ran\ncat\n")
    hook.chmod(0o755)
    git("config", "core.fsmonitor", str(hook), cwd=ws)
    git("config", "core.hooksPath", str(ws / "hooks"), cwd=ws)
    git("config", "filter.spy.clean", str(hook), cwd=ws)
    (ws / "hooks").mkdir()
    shutil.copy(hook, ws / "hooks" / "post-index-change")
    (ws / ".gitattributes").write_text("README.md filter=spy\n")
    (ws / "notes.txt").write_text("not committed")
    index = (own / "index").read_bytes()
    git("status", "--porcelain", cwd=ws)  # the plant works: the user's own git runs it
    assert len((marks / "ran").read_text().splitlines()) >= 2
    (marks / "ran").unlink()
    (own / "index").write_bytes(index)

    plan = {i.session.id: i for i in manager.cleanup_plan()}
    assert plan[task.id].action == "keep" and "uncommitted" in plan[task.id].reason
    assert not (marks / "ran").exists()


def test_cleanup_reads_a_clone_through_a_git_folder_of_its_own(aoenv):
    """A clone's config is all the agent's, and it may rewrite it while ao looks: cleanup reads the clone
    through a private git folder (its index, refs and excludes copied, its objects borrowed), so the filter
    driver and fsmonitor command the agent configured never run, and the counts still come out right."""
    import os

    from ao.plugins.agent.command import LARGE_PROMPT, exclude

    aoenv.write_config(workspace="clone")
    manager = aoenv.manager()
    task = spawn(aoenv, "plant a filter")
    manager.kill(task.id)
    ws, marks = Path(task.workspace), aoenv.root / "marks"
    marks.mkdir()
    git("-c", "user.name=a", "-c", "user.email=a@b", "commit", "-q", "--allow-empty", "-m", "local", cwd=ws)
    exclude(ws, LARGE_PROMPT)
    (ws / LARGE_PROMPT).write_text("ao's own, excluded")
    hook = marks / "hook.sh"
    hook.write_text(f"#!/bin/sh\necho \"$0\" >> {marks}/ran\ncat\n")
    hook.chmod(0o755)
    git("config", "core.fsmonitor", str(hook), cwd=ws)
    git("config", "filter.spy.clean", str(hook), cwd=ws)
    (ws / ".git" / "info" / "attributes").write_text("README.md filter=spy\n")
    readme = ws / "README.md"
    readme.write_text(readme.read_text().swapcase())  # same size, other content and time: git must read it
    os.utime(readme, (1_600_000_000, 1_600_000_000))

    plan = {i.session.id: i for i in manager.cleanup_plan()}
    assert plan[task.id].action == "keep"
    assert "but 1 uncommitted file and 1 unpushed commit;" in plan[task.id].reason, plan[task.id].reason
    assert not (marks / "ran").exists()
    git("status", "--porcelain", cwd=ws)  # the plants work: the user's own git runs them
    assert (marks / "ran").exists()


@pytest.mark.parametrize("object_format", ["sha1", "sha256"])
def test_unsaved_work_in_a_clone_counts_every_branch_the_stash_and_untracked_files(tmp_path, monkeypatch,
                                                                                   object_format):
    """What cleanup would lose in a clone: commits on any local branch (not only HEAD's), a stash, untracked
    files even when the user's own config hides them; and a clone whose git folder would not fit, or leads
    elsewhere through a link, is never called clean."""
    from types import SimpleNamespace

    from ao.sessions import _unsaved_work

    home = tmp_path / "home"
    home.mkdir()
    (home / ".gitconfig").write_text("[status]\n\tshowUntrackedFiles = no\n[user]\n\tname = a\n\temail = a@b\n")
    monkeypatch.setenv("HOME", str(home))
    origin, ws = tmp_path / "origin.git", tmp_path / "ws"
    git("init", "-q", "--bare", f"--object-format={object_format}", str(origin), cwd=tmp_path)
    git("init", "-q", f"--object-format={object_format}", str(ws), cwd=tmp_path)  # as a clone of it is
    git("remote", "add", "origin", str(origin), cwd=ws)
    (ws / "linked.txt").write_text("the project's own, linked in\n")
    git("add", "linked.txt", cwd=ws)
    git("commit", "-q", "-m", "base", cwd=ws)
    git("push", "-q", "origin", "HEAD:main", cwd=ws)
    git("fetch", "-q", cwd=ws)
    assert _unsaved_work(str(ws), None) == ""
    (ws / "linked.txt").write_text("changed\n")  # " M linked.txt": the project's symlinks do not count
    assert _unsaved_work(str(ws), SimpleNamespace(symlinks=["linked.txt"], path=origin)) == ""
    git("checkout", "-q", "--", "linked.txt", cwd=ws)
    git("config", "core.filemode", "false", cwd=ws)  # the clone's own harmless settings still apply
    (ws / "linked.txt").chmod(0o755)
    assert _unsaved_work(str(ws), None) == ""
    (ws / "linked.txt").chmod(0o644)
    git("checkout", "-q", "-b", "side", cwd=ws)
    git("commit", "-q", "--allow-empty", "-m", "on a side branch", cwd=ws)
    git("checkout", "-q", "-", cwd=ws)
    assert _unsaved_work(str(ws), None) == "1 unpushed commit"
    (ws / "new.txt").write_text("untracked")
    assert _unsaved_work(str(ws), None) == "1 uncommitted file and 1 unpushed commit"
    git("stash", "-q", "-u", cwd=ws)
    assert _unsaved_work(str(ws), None) == "1 unpushed commit and stashed changes"

    with open(ws / ".git" / "refs" / "heads" / "huge", "wb") as f:  # sparse: costs the agent nothing
        f.truncate(1 << 30)
    assert "could not be checked" in _unsaved_work(str(ws), None)
    (ws / ".git" / "refs" / "heads" / "huge").unlink()
    (ws / ".git" / "refs").rename(ws / ".git" / "refs.real")
    (ws / ".git" / "refs").symlink_to(ws / ".git" / "refs.real")
    assert "could not be checked" in _unsaved_work(str(ws), None)


def test_the_launch_script_is_made_executable_without_following_a_link(aoenv, monkeypatch, tmp_path):
    """The run folder is a sandboxed agent's to write: a link it swaps in for restore.sh just after ao wrote
    it must not make ao change the mode of the file it points at."""
    from types import SimpleNamespace

    from ao import ledger
    from ao.plugins.agent import LaunchContext

    outside = tmp_path / "outside"
    outside.write_text("the user's own file\n")
    outside.chmod(0o600)
    write = ledger.atomic_write

    def write_then_swap(path, text, *args):
        write(path, text, *args)
        if path.name == "restore.sh":  # the agent wins the race
            path.unlink()
            path.symlink_to(outside)

    monkeypatch.setattr(ledger, "atomic_write", write_then_swap)
    run_dir = tmp_path / "run"
    ctx = LaunchContext(session_id="app-1", workspace=tmp_path, prompt_file=run_dir / "prompt.md", settings={},
                        resume=True, run_dir=run_dir)
    stub = SimpleNamespace(prepare=lambda ctx: None, launch_command=lambda ctx: "true")
    aoenv.manager()._write_launch(run_dir, tmp_path, stub, ctx, "Fix it")
    assert outside.stat().st_mode & 0o777 == 0o600


# ------------------------------------------------------------------------------------- bad input

def test_unknown_project_lists_the_configured_ones(aoenv):
    run = aoenv.ao("spawn", "ap", "12")
    assert run.returncode == 1 and "unknown project 'ap'" in run.stderr and "app" in run.stderr


def test_a_project_path_that_is_not_a_git_repository(aoenv, tmp_path):
    plain = tmp_path / "plain"
    plain.mkdir()
    aoenv.write_config(path=str(plain))
    run = aoenv.ao("spawn", "app", "some task")
    assert run.returncode == 1 and "not a git repository" in run.stderr and "Traceback" not in run.stderr
    assert aoenv.manager().store.list() == []


def test_an_explicit_branch_that_already_exists(aoenv):
    git("branch", "taken", cwd=aoenv.project)
    run = aoenv.ao("spawn", "app", "some task", "--branch", "taken")
    assert run.returncode == 1 and "taken" in run.stderr and "Traceback" not in run.stderr
    assert aoenv.manager().store.list() == [] and aoenv.tmux("list-sessions").stdout == ""
    run = aoenv.ao("spawn", "app", "some task", "--branch", "bad..name")
    assert run.returncode == 1 and "not a valid git branch name" in run.stderr


def test_tmux_missing(aoenv, tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("git", "bash", "sh", "python3"):
        found = subprocess.run(["which", tool], capture_output=True, text=True).stdout.strip()
        if found:
            (bin_dir / tool).symlink_to(found)
    run = aoenv.ao("spawn", "app", "some task", env={**aoenv.env, "PATH": str(bin_dir)})
    assert run.returncode == 1 and "tmux is not installed" in run.stderr
    assert aoenv.manager().store.list() == [] and not (aoenv.data / "workspaces").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file permissions")
def test_a_store_that_cannot_be_written_leaves_nothing_behind(aoenv):
    sessions = aoenv.data / "projects" / "app" / "sessions"
    sessions.mkdir(parents=True)
    sessions.chmod(0o500)
    try:
        run = aoenv.ao("spawn", "app", "12")
        assert run.returncode == 1 and "Permission denied" in run.stderr and "Traceback" not in run.stderr
        assert not (aoenv.data / "workspaces" / "app").exists() or not any((aoenv.data / "workspaces" / "app").iterdir())
        assert aoenv.tmux("list-sessions").stdout == ""
    finally:
        sessions.chmod(0o700)


def _events(env):
    from ao import events

    return events.read(env.data)


def test_a_full_disk_while_recording_the_started_session_rolls_everything_back(aoenv, monkeypatch):
    """The store write that would mark the session working fails (ENOSPC) after the agent has started."""
    import errno

    real_replace, writes = os.replace, []

    def replace(src, dst, *a, **kw):
        if str(dst).endswith(os.path.join("sessions", "app-1.json")):
            writes.append(dst)
            if len(writes) == 2:
                raise OSError(errno.ENOSPC, "No space left on device")
        return real_replace(src, dst, *a, **kw)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(AoError, match="No space left on device"):
        spawn(aoenv, "12")
    assert len(writes) == 2
    assert aoenv.manager().store.list() == []
    assert aoenv.tmux("list-sessions").stdout == ""
    assert not (aoenv.data / "workspaces" / "app" / "app-1").exists()
    assert "feat/issue-12" not in git("branch", "--list", cwd=aoenv.project)
    assert not list((aoenv.data / "projects" / "app" / "sessions").glob(".*.tmp"))


def test_the_process_runtime_spawns_sends_and_kills_without_tmux(aoenv):
    aoenv.write_config(runtime="process")
    s = spawn(aoenv, "12")
    manager = aoenv.manager()
    assert s.runtime == "process" and manager.runtime("process").probe([s.runtime_handle])[s.runtime_handle].alive
    wait_for(lambda: aoenv.received(s.id), what="the prompt")
    manager.send(s.id, "one line")
    wait_for(lambda: any(m["text"] == "one line" for m in aoenv.received(s.id)), what="the message")
    run = aoenv.ao("status", "--refresh", "--json")
    assert json.loads(run.stdout)[0]["alive"] is True
    manager.kill(s.id)
    wait_for(lambda: not manager.runtime("process").probe([s.runtime_handle])[s.runtime_handle].alive, what="kill")
    assert aoenv.tmux("list-sessions").stdout == ""


def test_an_agent_cli_that_is_not_installed_is_refused_up_front(aoenv):
    aoenv.write_config(agent="codex", agentConfig={})
    run = aoenv.ao("spawn", "app", "12", env={**aoenv.env, "PATH": "/usr/bin:/bin"})
    assert run.returncode == 1 and "needs `codex` on PATH" in run.stderr
    assert aoenv.manager().store.list() == [] and aoenv.tmux("list-sessions").stdout == ""


def test_the_orchestrator_session_runs_in_the_project_checkout_and_is_reused(aoenv):
    manager = aoenv.manager()
    first = manager.spawn_orchestrator()
    assert first.role == "orchestrator" and first.workspace == str(aoenv.project) and first.branch == ""
    got = wait_for(lambda: aoenv.received(first.id), what="the orchestrator prompt")
    assert "ao status --json" in got[0]["text"] and "ao spawn" in got[0]["text"]
    assert manager.spawn_orchestrator().id == first.id


def test_spawn_and_batch_spawn_take_issues_from_github(aoenv, monkeypatch):
    from fake_github import TOKEN, FakeGitHub

    fake = FakeGitHub().start()
    try:
        issue = fake.add_issue("Fix the login redirect", body="Users land on /404 after login.")
        monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
        aoenv.write_config(repo="acme/app", tracker={"plugin": "github"},
                           scm={"plugin": "github", "baseUrl": fake.url})
        s = spawn(aoenv, str(issue.number))
        assert s.issue == str(issue.number) and s.branch == f"feat/issue-{issue.number}"
        got = wait_for(lambda: aoenv.received(s.id), what="the prompt")
        assert "Fix the login redirect" in got[0]["text"] and "Users land on /404" in got[0]["text"]
        assert f"Closes #{issue.number}" in got[0]["text"]
        run = aoenv.ao("batch-spawn", "app", str(issue.number), "9999", "--json",
                       env={**aoenv.env, "GITHUB_TOKEN": TOKEN})
        rows = {r["issue"]: r for r in json.loads(run.stdout)}
        assert run.returncode == 1 and rows[str(issue.number)]["result"] == "skipped"
        assert rows["9999"]["result"] == "failed"
    finally:
        fake.stop()


def test_spawn_takes_issues_from_linear(aoenv, monkeypatch):
    from fake_linear import FakeLinear

    fake = FakeLinear().start()
    try:
        fake.add_issue("ENG-42", "Rate-limit the search API", description="Cap at 10 requests a second.")
        monkeypatch.setenv("LINEAR_API_KEY", fake.key)
        monkeypatch.setenv("LINEAR_API_URL", fake.url)
        aoenv.write_config(tracker={"plugin": "linear", "team": "ENG"})
        s = spawn(aoenv, "ENG-42")
        assert s.issue == "ENG-42" and s.branch == "feat/issue-ENG-42"
        got = wait_for(lambda: aoenv.received(s.id), what="the prompt")
        assert "Rate-limit the search API" in got[0]["text"] and "Cap at 10 requests" in got[0]["text"]
    finally:
        fake.stop()
