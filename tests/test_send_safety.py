"""Never type into a dialog (issue 11): ``Sessions.send``, ``ao send`` and the poller's agent executor read the
agent's state first, with the scripted agent in real tmux (its ``!ask`` directive prints a y/n question)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
from sessionkit import wait_for

from ao.actions import Action
from ao.executors import AgentExecutor, Journal
from ao.plugins.runtime import AgentWaiting
from ao.sessions import SpawnRequest

needs_tmux = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
pytestmark = needs_tmux


def texts(env, sid) -> list[str]:
    return [m["text"] for m in env.received(sid)]


def asking(env):
    """A session whose agent got its prompt and now asks a y/n question."""
    manager = env.manager()
    s = manager.spawn(SpawnRequest(project="app", target="12"))
    wait_for(lambda: len(env.received(s.id)) == 1, what="the prompt")
    manager.send(s.id, "!ask")
    wait_for(lambda: "Do you want to proceed? (y/n)" in env.tmux("capture-pane", "-p", "-t",
                                                                  f"={s.runtime_handle}:").stdout, what="the question")
    return manager, s


def test_a_message_for_an_agent_that_asks_something_is_not_typed(aoenv):
    manager, s = asking(aoenv)
    with pytest.raises(AgentWaiting) as caught:
        manager.send(s.id, "Hey, the build is red: fix the failing test.")
    assert "yes/no" in caught.value.waiting_for and caught.value.state == "waiting_input"
    assert texts(aoenv, s.id)[1:] == ["!ask"]  # the question did not get the message as its answer
    manager.send(s.id, "y", answer=True)  # the caller says it answers the question
    wait_for(lambda: texts(aoenv, s.id)[1:] == ["!ask", "y"], what="the answer")
    manager.send(s.id, "now the build")  # answered: the agent takes messages again
    assert texts(aoenv, s.id)[1:] == ["!ask", "y", "now the build"]


def test_ao_send_shows_what_the_agent_waits_for_and_types_only_with_answer(aoenv):
    _, s = asking(aoenv)
    r = aoenv.ao("send", s.id, "Hey, the build is red")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert f"{s.id} is waiting for you" in r.stderr and "Do you want to proceed" in r.stderr
    assert "--answer" in r.stderr and texts(aoenv, s.id)[1:] == ["!ask"]
    r = aoenv.ao("send", s.id, "--answer", "n")
    assert r.returncode == 0 and "as an answer" in r.stdout
    wait_for(lambda: texts(aoenv, s.id)[1:] == ["!ask", "n"], what="the answer")


def test_a_reaction_for_a_waiting_agent_is_held_then_delivered_once(aoenv):
    manager, s = asking(aoenv)
    journal = Journal(aoenv.data)
    executor = AgentExecutor(manager, journal)
    action = Action(project="app", session=s.id, reaction="ci-failed", action="send-to-agent", priority=None,
                    notifiers=(), title="", text="CI failed on your PR: fix it.", occurrence="a1", reason="",
                    attempt=1, budget=1)
    held = executor.execute(action)
    assert (held.ok, held.held) == (False, True) and "yes/no" in held.error
    from ao.executors import action_id

    assert journal.state(action_id(action)) == "held"
    assert texts(aoenv, s.id)[1:] == ["!ask"]
    manager.send(s.id, "y", answer=True)  # a human answers
    wait_for(lambda: texts(aoenv, s.id)[-1] == "y", what="the answer")
    done = executor.execute(action)
    assert (done.ok, done.held) == (True, False)
    assert executor.execute(action).ok  # decided again after a crash: journalled as sent, not retyped
    assert texts(aoenv, s.id)[1:] == ["!ask", "y", "CI failed on your PR: fix it."]


def test_kill_ends_agent_processes_that_ignore_the_hangup(aoenv, tmp_path):
    """Some agents outlive tmux's SIGHUP (and their own children may ignore SIGTERM): kill ends them all."""
    pidfile = tmp_path / "child.pid"
    stubborn = (f"{sys.executable} -c \"import os, signal, time; signal.signal(signal.SIGHUP, signal.SIG_IGN); "
                f"signal.signal(signal.SIGTERM, signal.SIG_IGN); open('{pidfile}', 'w').write(str(os.getpid())); "
                "print('agent> ', flush=True); time.sleep(600)\"")
    aoenv.write_config(agentConfig={"command": stubborn, "promptDelivery": "none"})
    manager = aoenv.manager()
    s = manager.spawn(SpawnRequest(project="app", target="12"))
    pid = int(wait_for(lambda: pidfile.exists() and pidfile.read_text(), what="the agent's pid"))
    manager.runtime("tmux").term_timeout = 0.3
    assert _running(pid)
    manager.kill(s.id)
    assert not _running(pid)


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[-1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def test_a_large_prompt_goes_in_as_a_file(aoenv):
    """A prompt too big for one argument (Linux: 128 KiB) or to type is put in a git-ignored file."""
    manager = aoenv.manager()
    big = "x" * 150_000
    s = manager.spawn(SpawnRequest(project="app", target="12", prompt=big))
    got = wait_for(lambda: aoenv.received(s.id), what="the prompt")
    assert "too long for a command line" in got[0]["text"] and len(got[0]["text"]) < 1000
    from pathlib import Path

    copy = Path(s.workspace) / ".ao-prompt.md"
    assert big in copy.read_text()
    status = subprocess.run(["git", "status", "--porcelain"], cwd=s.workspace, capture_output=True, text=True)
    assert ".ao-prompt.md" not in status.stdout  # excluded: never committed by the agent


def test_the_poller_persists_what_the_agent_waits_for(aoenv):
    from ao.poller import Poller

    _, s = asking(aoenv)
    poller = Poller(aoenv.load(), console=None)
    try:
        poller.cycle()
    finally:
        poller.close()
    stored = aoenv.manager().store.get(s.id)
    assert stored.fact["activity"] == "waiting_input"
    assert "Do you want to proceed" in stored.meta["activity"]["detail"]
    json.dumps(stored.meta)  # plain data
