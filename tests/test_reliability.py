"""Issue 13's reliability list, item by item: a full disk, races between commands, lock waits, crash leftovers."""

from __future__ import annotations

import contextlib
import errno
import io
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from sessionkit import wait_for

from ao import events
from ao.errors import AoError
from ao.sessions import SpawnRequest


def spawn(env, target="12"):
    s = env.manager().spawn(SpawnRequest(project="app", target=target))
    wait_for(lambda: env.received(s.id), what="the prompt")
    return s


@contextlib.contextmanager
def full_disk(monkeypatch, root: Path):
    """Every write under ``root`` fails with ENOSPC (file data, fsync, rename into place), as on a full disk."""
    root = str(root.resolve())
    real_write, real_fsync, real_replace = os.write, os.fsync, os.replace

    def under(fd_or_path) -> bool:
        path = os.readlink(f"/proc/self/fd/{fd_or_path}") if isinstance(fd_or_path, int) else os.fspath(fd_or_path)
        return os.path.abspath(path).startswith(root)

    def enospc():
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "write", lambda fd, data: enospc() if under(fd) else real_write(fd, data))
    monkeypatch.setattr(os, "fsync", lambda fd: enospc() if under(fd) else real_fsync(fd))
    monkeypatch.setattr(os, "replace", lambda a, b, **kw: enospc() if under(b) else real_replace(a, b, **kw))
    try:
        yield
    finally:
        monkeypatch.setattr(os, "write", real_write)
        monkeypatch.setattr(os, "fsync", real_fsync)
        monkeypatch.setattr(os, "replace", real_replace)
        events._unwritable.clear()


def run_cli(*args: str) -> tuple[int, str, str]:
    """The real CLI in this process (so the full disk applies to it); no exception may escape."""
    from ao.cli import main

    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(list(args))
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 1
    return code, out.getvalue(), err.getvalue()


# ------------------------------------------------------------------------------------------ full disk

def test_send_on_a_full_disk_reports_a_delivered_message_as_delivered(aoenv, monkeypatch):
    s = spawn(aoenv)
    with full_disk(monkeypatch, aoenv.data):
        code, out, err = run_cli("send", s.id, "hello on a full disk")
    assert code == 0 and f"sent to {s.id}" in out, err
    assert "No space left on device" in err and "Traceback" not in err
    wait_for(lambda: len(aoenv.received(s.id)) >= 2, what="the message")
    assert [m["text"] for m in aoenv.received(s.id)[1:]] == ["hello on a full disk"]


def test_poll_on_a_full_disk_is_an_error_not_a_crash(aoenv, monkeypatch):
    s = spawn(aoenv)
    aoenv.tmux("kill-session", "-t", f"={s.runtime_handle}")  # something to record
    before = (aoenv.data / "projects" / "app" / "sessions" / f"{s.id}.json").read_bytes()
    with full_disk(monkeypatch, aoenv.data):
        code, out, err = run_cli("poll")
    assert "Traceback" not in err and "No space left on device" in out + err
    assert (aoenv.data / "projects" / "app" / "sessions" / f"{s.id}.json").read_bytes() == before  # nothing half-written
    assert not list(aoenv.data.rglob(".*.tmp"))
    code, out, err = run_cli("poll")
    assert code == 0, err


def test_ao_start_says_loudly_it_cannot_write_and_recovers_when_space_returns(aoenv, monkeypatch):
    from ao.poller import Loop, Poller

    s = spawn(aoenv)
    console = io.StringIO()
    poller = Poller(aoenv.load(), console=console)
    loop = Loop(poller, interval=0.05)
    thread = threading.Thread(target=loop.run, daemon=True)
    try:
        with full_disk(monkeypatch, aoenv.data):
            thread.start()
            aoenv.tmux("kill-session", "-t", f"={s.runtime_handle}")  # the next cycles must record it
            wait_for(lambda: "cannot record what it observes" in console.getvalue()
                     or "poll cycle failed" in console.getvalue(), what="the loud message")
            said = console.getvalue()
            assert "No space left on device" in said and "keeps trying" in said
        wait_for(lambda: "cycles succeed again" in console.getvalue(), what="the recovery")
        wait_for(lambda: poller.store.get(s.id).status == "exited", what="the exit to be recorded")
    finally:
        loop.stop()
        thread.join(10)
        poller.close()
    assert console.getvalue().count("keeps trying") == 1  # once, not every cycle


# ---------------------------------------------------------------------------------------------- races

def test_cleanup_acting_on_an_earlier_plan_leaves_a_restored_session_alone(aoenv):
    s = spawn(aoenv)
    manager = aoenv.manager()
    manager.kill(s.id)
    plan = manager.cleanup_plan()
    assert [(i.session.id, i.action) for i in plan] == [(s.id, "clean")]
    restored = aoenv.manager().restore(s.id)  # another terminal, between the plan and --confirm
    done = manager.cleanup(plan)
    assert [(d.action, "restored" in d.reason) for d in done] == [("keep", True)]
    assert manager.store.get(s.id).status == "working"
    assert aoenv.tmux("has-session", "-t", f"={restored.runtime_handle}").returncode == 0
    assert Path(restored.workspace).is_dir()


def test_concurrent_cleanups_are_idempotent(aoenv):
    sessions = [spawn(aoenv) for _ in range(2)]
    for s in sessions:
        aoenv.manager().kill(s.id)
    plans = [aoenv.manager().cleanup_plan() for _ in range(3)]
    results: list = []

    def clean(plan):
        results.append(aoenv.manager().cleanup(plan))

    threads = [threading.Thread(target=clean, args=(p,)) for p in plans]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    outcomes = [(d.session.id, d.action) for done in results for d in done]
    assert sorted(outcomes) == sorted([(s.id, "clean") for s in sessions] * 3)  # no "failed", no branch errors
    assert [s.id for s in aoenv.manager().store.list("app", include_archived=True)] == [s.id for s in sessions]
    assert aoenv.manager().store.list("app") == []


def test_a_session_killed_while_it_is_being_spawned_is_not_marked_working(aoenv, monkeypatch):
    from ao import sessions as sessions_mod

    manager = aoenv.manager()
    real = sessions_mod.Sessions._launch

    def launch_then_killed(self, project, agent, runtime, sid, *args):
        out = real(self, project, agent, runtime, sid, *args)
        aoenv.manager().kill(sid)  # `ao session kill` from another terminal, mid-spawn
        return out

    monkeypatch.setattr(sessions_mod.Sessions, "_launch", launch_then_killed)
    with pytest.raises(AoError, match="stopped while it was being spawned"):
        manager.spawn(SpawnRequest(project="app", target="12"))
    assert manager.store.list("app") == []
    assert aoenv.tmux("list-sessions").stdout == ""


def test_waiting_for_a_lock_says_what_for_and_gives_up_after_a_bound(aoenv, monkeypatch):
    from ao import store as store_mod

    holder = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, os, sys, time\n"
        "p = sys.argv[1]; os.makedirs(os.path.dirname(p), exist_ok=True)\n"
        "fd = os.open(p, os.O_RDWR | os.O_CREAT); fcntl.flock(fd, fcntl.LOCK_EX)\n"
        "print('held', flush=True); time.sleep(60)\n"), str(aoenv.data / "projects" / "app" / ".lock")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        monkeypatch.setattr(store_mod, "LOCK_TIMEOUT", 0.5)
        err = io.StringIO()
        started = time.monotonic()
        with contextlib.redirect_stderr(err), pytest.raises(AoError) as exc:
            aoenv.manager().store.create("app", "app")
        assert time.monotonic() - started < 5
        assert "waiting for the session store of project 'app'" in err.getvalue()
        assert "gave up after 0.5 s waiting for the session store" in str(exc.value)
    finally:
        holder.kill()
        holder.wait()


# ------------------------------------------------------------------------------------- crash leftovers

def test_a_restarted_poller_does_not_repeat_events_or_keep_temp_files(aoenv, monkeypatch):
    from ao import poller as poller_mod
    from ao.poller import Poller

    s = spawn(aoenv)
    sessions_dir = aoenv.data / "projects" / "app" / "sessions"
    leftover = sessions_dir / f".{s.id}.json.{2 ** 22 + 7}.1.tmp"  # from a process that is gone
    leftover.write_text("{half")
    aoenv.tmux("kill-session", "-t", f"={s.runtime_handle}")
    aoenv.manager().store.update(s.id, "app", meta={**aoenv.manager().store.get(s.id).meta, "probe_misses": 1})

    def die(self, item, now, report):  # the events are appended; ao dies before the fact is saved
        raise KeyboardInterrupt

    monkeypatch.setattr(poller_mod.Poller, "_persist", die)
    with pytest.raises(KeyboardInterrupt):
        Poller(aoenv.load(), console=None).cycle()
    monkeypatch.undo()
    for key, value in aoenv.env.items():
        monkeypatch.setenv(key, value)
    restarted = Poller(aoenv.load(), console=None)
    restarted.cycle()
    restarted.close()
    kinds = [e["type"] for e in events.read(aoenv.data) if e.get("session") == s.id]
    assert kinds.count("session.exited") == 1
    assert not leftover.exists()


def test_the_fixture_ends_process_agents_whatever_the_outcome(tmp_path):
    """A failing test must not leave a process-runtime agent running: the aoenv fixture's teardown finds them
    in the data dir and ends them."""
    from sessionkit import kill_process_agents, make_env

    env = make_env(tmp_path)
    env.write_config(runtime="process")
    import os as _os

    saved = dict(_os.environ)
    _os.environ.update(env.env)
    try:
        s = env.manager().spawn(SpawnRequest(project="app", target="12"))
        pid = int(s.runtime_handle.split(":")[0])
        assert Path(f"/proc/{pid}").exists()
        assert kill_process_agents(env.data) == [s.runtime_handle]
        wait_for(lambda: not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2],
                 what="the agent to end")
    finally:
        _os.environ.clear()
        _os.environ.update(saved)
        kill_process_agents(env.data)
