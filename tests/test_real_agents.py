"""The real-CLI tier: Claude Code, Codex, opencode and aider, installed from npm and PyPI at pinned versions
(.ci/setup.d/20-agents.sh), each run by ao in tmux against the fake model API (tests/fake_model.py), driven
only through the CLI a user runs: ``ao spawn``, ``ao send``, ``ao status``, ``ao poll``, ``ao session
kill|restore``. Issue 11's contract, for every agent:

* the prompt reaches the model once and whole;
* active -> ready -> idle (readyThreshold is short here);
* a permission dialog gives ``needs_input``; ``ao send`` types nothing into it; a reaction's message decided
  meanwhile is held with the dialog untouched, and delivered once after the human answers;
* a rate limit gives ``blocked``;
* an exit gives ``exited``, and restore resumes the conversation;
* kill leaves no process behind (checked after every test that reaches its end, too);
* every permission mode launches and reaches the model, and ``trustWorkspace`` lets Claude Code and Codex
  start in a clone workspace (a clone, unlike a worktree, inherits no trust).

Locally a CLI that is not installed skips its tests; under CI (``CI`` set) they fail.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from agentkit import AGENTS, READY_THRESHOLD, RealEnv, kill_all, leftovers, make_real_env, processes_of, \
    push_failing_ci, write_config
from fake_model import REPLY
from sessionkit import wait_for

REACTION_TEXT = "CI is failing on your pull request"
START_TIMEOUT = 120     # opencode needs ~10 s to its first turn on a quiet 2-core machine, over 40 s on a busy one


@pytest.fixture(params=AGENTS)
def real(request, tmp_path, receiver):
    rx = receiver()
    env = make_real_env(tmp_path, request.param, notify_url=rx.url())
    env.receiver = rx
    try:
        yield env
    finally:
        kill_all(env)
        env.model.stop()
        # Codex copies its 424 MB app-server into every fresh CODEX_HOME; pytest keeps three runs of tmp dirs
        shutil.rmtree(env.home / ".codex" / "packages", ignore_errors=True)


# ------------------------------------------------------------------------------------------ helpers

def _lines(text: str) -> list[str]:
    return [line.rstrip() for line in text.strip().splitlines()]


def told_once_and_whole(env: RealEnv, text: str) -> str:
    """The one user message of the conversation that holds ``text``; fails when there is none, when the
    text is cut, or when any of its lines reached the model in more than one message."""
    messages = env.model.user_messages()
    marks = [line for line in _lines(text) if len(line.strip()) >= 12]
    holding = [m for m in messages if any(mark in m for mark in marks)]
    assert len(holding) == 1, (f"expected the text in one user message, found it in {len(holding)}:\n"
                               + "\n---\n".join(holding or messages))
    assert "\n".join(_lines(text)) in "\n".join(_lines(holding[0])), \
        f"the model got the text cut or changed:\n{holding[0]}\n--- expected ---\n{text}"
    return holding[0]


def answered(env: RealEnv, kind: str = "text", after: int = 0) -> bool:
    return any(c.answer == kind for c in env.model.turns()[after:])


def finish(env: RealEnv, sid: str) -> None:
    """``ao session kill``, then nothing of the test may still run (Codex's app-server included); and the
    fake API refused no request of the CLI's (a changed request shape must not pass unnoticed)."""
    assert env.model.rejected == [], [(c.path, c.error) for c in env.model.rejected]
    run = env.ao("session", "kill", sid)
    assert run.returncode == 0, run.stderr
    left = leftovers(env)
    assert not left, f"processes left after `ao session kill {sid}`:\n" + "\n".join(
        f"  {pid} {cmd}" for pid, cmd in left.items())


def spawn(env: RealEnv, *args: str) -> str:
    """``ao spawn app 12 ...`` (issue 12 of the local tracker): the session id."""
    return env.spawn("12", *args)["session"]


# -------------------------------------------------------------------------------------------- tests

def test_the_prompt_reaches_the_model_once_and_whole_then_active_ready_idle(real):
    real.model.hold.set()  # the model "thinks" until the test has seen the agent active
    sid = spawn(real)
    prompt = real.record(sid).prompt
    real.model.wait(lambda m: m.turns(), START_TIMEOUT, "the first turn")
    told_once_and_whole(real, prompt)

    real.wait_status(sid, lambda r: r["activity"] == "active", 15, "active while the model answers")
    real.model.hold.clear()
    real.model.wait(lambda m: answered(real), 15, "the answer")
    real.wait_status(sid, lambda r: r["activity"] == "ready", 20, "ready once the turn is done")
    real.wait_status(sid, lambda r: r["activity"] == "idle", READY_THRESHOLD + 20, "idle after readyThreshold")
    told_once_and_whole(real, prompt)  # and still once: nothing typed it again
    finish(real, sid)


def test_a_permission_dialog_needs_input_and_holds_messages_until_answered(real):
    write_config(real, notify_url=real.receiver.url(), agentConfig=_agent_config(real),
                 scm={"plugin": "local", "ci": "sh ci.sh"})
    sid = spawn(real, "--prompt", "Then please RUNTOOL now.")
    workspace = Path(real.record(sid).workspace)
    real.model.wait(lambda m: answered(real, "tool"), START_TIMEOUT, "the model's tool call")
    real.wait_status(sid, lambda r: r["status"] == "needs_input", 30, "needs_input at the permission dialog")
    turns = len(real.model.turns())
    dialog = real.pane(sid)

    # ao send to an agent that waits for a human: it says so, and types nothing
    run = real.ao("send", sid, "Hey, the build is red: fix the failing test.")
    assert run.returncode != 0, f"ao send typed into the dialog:\n{run.stdout}{run.stderr}"
    assert "waiting" in (run.stdout + run.stderr).lower(), run.stderr

    # a reaction's message decided meanwhile is held: the dialog stays as it is
    push_failing_ci(real, str(workspace))

    def fired() -> list[dict]:
        return [a for a in real.poll()["actions"] if a["reaction"] == "ci-failed"]

    held = wait_for(fired, timeout=30, what="the ci-failed reaction")
    assert not held[0]["ok"], "the ci-failed message was reported delivered while the agent was in its dialog"
    assert not (workspace / "out.txt").exists(), "the dialog was answered: the command ran"
    assert len(real.model.turns()) == turns, "the dialog was answered: the model got a new request"
    assert real.status(sid)["status"] == "needs_input"
    assert _dialog_lines(real.pane(sid)) == _dialog_lines(dialog), "the dialog changed"
    assert real.record(sid).ledgers.get("ci-failed", {}).get("attempts", 0) == 0, "a held message counted"

    # the human answers the dialog in the terminal (Enter: the default, "Yes"); the command runs and its result
    # goes back to the model (aider has no tool results: a command that printed nothing is not sent at all)
    real.keys(sid, "Enter")
    wait_for(lambda: (workspace / "out.txt").exists(), timeout=60, what="the approved command to run")
    if real.agent != "aider":
        real.model.wait(lambda m: answered(real, "after_tool", turns), 60, "the tool's result")

    # the held message goes in once the agent is ready again, exactly once
    def delivered() -> bool:
        real.poll()
        return any(REACTION_TEXT in m for m in real.model.user_messages())

    wait_for(delivered, timeout=60, what="the held message to reach the model")
    for _ in range(2):
        real.poll()
    told_once_and_whole(real, real.model.user_messages()[-1])
    assert sum(REACTION_TEXT in m for m in real.model.user_messages()) == 1
    finish(real, sid)


def test_a_rate_limit_reads_as_blocked(real):
    sid = spawn(real, "--prompt", "LIMIT429")
    real.model.wait(lambda m: any(c.status == 429 for c in m.calls), START_TIMEOUT, "the 429")
    real.wait_status(sid, lambda r: r["activity"] == "blocked", 30, "blocked")
    finish(real, sid)


def test_an_exit_reads_as_exited_and_restore_resumes_the_conversation(real):
    sid = spawn(real)
    prompt = real.record(sid).prompt
    real.model.wait(lambda m: answered(real), START_TIMEOUT, "the first answer")
    _wait_drawn(real, sid, REPLY)

    real.keys(sid, "-l", "/exit")  # the user quits the agent in its terminal
    _wait_drawn(real, sid, "/exit")
    real.keys(sid, "Enter")
    real.wait_status(sid, lambda r: r["status"] == "exited", 30, "exited")

    run = real.ao("session", "restore", sid)
    assert run.returncode == 0, run.stderr
    turns = len(real.model.turns())
    # the user's next message, given the time a restarting agent needs before it reads input
    run = real.ao("send", sid, "--wait", str(START_TIMEOUT), "Second message, after the restore.",
                  timeout=START_TIMEOUT + 30)
    assert run.returncode == 0, run.stderr
    real.model.wait_for_user_message("Second message, after the restore.", 60)
    told_once_and_whole(real, "Second message, after the restore.")
    told_once_and_whole(real, prompt)  # the same conversation: the prompt is in it, once
    again = [c for c in real.model.turns()[turns:] if prompt.splitlines()[0] in c.user_texts[-1]]
    assert not again, ("restore sent the prompt again instead of resuming the conversation; the turn's user "
                       f"messages began: {[u[:60] for u in again[0].user_texts]}" if again else "")
    finish(real, sid)


@pytest.mark.parametrize("real", ["claude-code", "codex"], indirect=True)
def test_restore_with_nothing_to_resume_starts_afresh_with_the_prompt(real):
    """The first launch stopped at the CLI's own first-run screens (no login yet), so there is no
    conversation; once the user has set the CLI up, restore must start it with the prompt."""
    from agentkit import seed_home

    seeds = {"claude-code": real.home / ".claude.json", "codex": real.home / ".codex" / "config.toml"}
    seeds[real.agent].unlink()
    sid = spawn(real)
    prompt = real.record(sid).prompt
    first_run = {"claude-code": r"Unable to connect to Anthropic|Choose the text style", "codex": r"Sign in"}
    wait_for(lambda: re.search(first_run[real.agent], real.pane(sid)), timeout=START_TIMEOUT,
             what="the CLI's first-run screen")
    assert real.model.turns() == []
    assert real.ao("session", "kill", sid).returncode == 0

    seed_home(real.agent, real.home, real.model, real.project)  # the user logs in
    run = real.ao("session", "restore", sid)
    assert run.returncode == 0, run.stderr
    real.model.wait(lambda m: answered(real), START_TIMEOUT, "the prompt, after the restore")
    told_once_and_whole(real, prompt)
    finish(real, sid)


# opencode has a flag for skip only (--auto), and is slow to start: that one mode
PERMISSION_MODES = [(agent, mode) for agent in ("claude-code", "codex", "aider")
                    for mode in ("skip", "auto-edit", "plan")] + [("opencode", "skip")]


@pytest.mark.parametrize("real, mode", PERMISSION_MODES, indirect=["real"])
def test_every_permission_mode_starts_and_reaches_the_model(real, mode):
    """Each mode's launch flags work with the installed CLI (Codex's old --full-auto exited 2; Claude's bypass
    flag as root exited at once, and its first use asks a question): the prompt reaches the model and is
    answered. The default mode is what every other test runs."""
    write_config(real, agentConfig={**_agent_config(real), "permissions": mode})
    sid = spawn(real)
    prompt = real.record(sid).prompt
    real.model.wait(lambda m: answered(real), START_TIMEOUT, f"the first answer with permissions: {mode}")
    told_once_and_whole(real, prompt)
    row = real.status(sid)
    assert (row["status"], row["activity"]) != ("needs_input", "waiting_input"), row
    finish(real, sid)


@pytest.mark.parametrize("trust", [True, False], ids=["trustWorkspace", "untrusted"])
@pytest.mark.parametrize("real", ["claude-code", "codex"], indirect=True)
def test_trust_workspace_lets_the_agent_start_in_a_clone(real, trust):
    """A clone workspace is a new folder the CLI has never trusted (a worktree inherits the project's trust):
    without ``trustWorkspace`` the trust dialog holds the prompt and reads as needs_input; with it the prompt
    reaches the model."""
    write_config(real, workspace="clone", agentConfig={**_agent_config(real), "trustWorkspace": trust})
    sid = spawn(real)
    prompt = real.record(sid).prompt
    if trust:
        real.model.wait(lambda m: answered(real), START_TIMEOUT, "the first answer in a trusted clone")
        told_once_and_whole(real, prompt)
    else:
        real.wait_status(sid, lambda r: r["status"] == "needs_input", START_TIMEOUT, "the trust dialog")
        assert re.search(r"trust", real.pane(sid), re.IGNORECASE), real.pane(sid)
        assert real.model.turns() == []
    finish(real, sid)


def test_the_pause_keys_stop_a_turn_and_keep_the_agent(real):
    """The `pause` action (a budget exceeded) presses the agent plugin's interrupt keys in the middle of a turn:
    the turn stops, the agent stays, and it takes the next message, alone (Claude Code puts an interrupted
    prompt back into its input box; opencode wants two separate presses of Esc)."""
    real.model.hold.set()  # the model "thinks" until the keys are pressed
    sid = spawn(real)
    real.model.wait(lambda m: m.turns(), START_TIMEOUT, "the first turn")
    real.wait_status(sid, lambda r: r["activity"] == "active", 30, "active while the model answers")
    from ao.plugins.runtime.tmux import TmuxRuntime

    keys = real.manager().agent(real.agent).interrupt_keys()
    TmuxRuntime(socket=real.socket).send_keys(real.handle(sid), keys)  # as the pause action presses them
    row = real.wait_status(sid, lambda r: r["activity"] in ("ready", "idle") or r["status"] == "exited", 60,
                           f"the turn stopped by {keys}")
    assert row["status"] != "exited", f"{keys} ended the agent instead of its turn:\n{real.pane(sid)}"
    real.model.hold.clear()
    run = real.ao("send", sid, "--wait", "60", "After the pause, a new message.", timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    call = real.model.wait_for_user_message("After the pause, a new message.", 60)
    first_line = real.record(sid).prompt.splitlines()[0]
    assert first_line not in call.user_texts[-1], "the message was typed after the interrupted prompt"
    finish(real, sid)


def test_kill_leaves_no_process_behind(real):
    sid = spawn(real)
    real.model.wait(lambda m: answered(real), START_TIMEOUT, "the first answer")
    assert processes_of(str(real.home)), "the test cannot see the agent's processes"
    finish(real, sid)


# ------------------------------------------------------------------------------------- local helpers

def _agent_config(env: RealEnv) -> dict:
    import yaml

    return yaml.safe_load(env.config.read_text())["projects"]["app"]["agentConfig"]


def _wait_drawn(env: RealEnv, sid: str, text: str, timeout: float = START_TIMEOUT) -> None:
    try:
        wait_for(lambda: text in env.pane(sid), timeout=timeout, what=f"{text!r} on screen")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\npane:\n{env.pane(sid)}") from None


_SPINNER = re.compile(r"\d+s|[⠁-⣿✻✢✳✶✽·•◐◓◑◒]")


def _dialog_lines(pane: str) -> list[str]:
    """The pane's text without what moves by itself (timers, spinners)."""
    return [_SPINNER.sub("", line).strip() for line in pane.splitlines() if line.strip()]

