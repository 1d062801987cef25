"""Benchmark: from a reaction's message to the agent's own receipt of it.

What is timed is :meth:`ao.executors.AgentExecutor.execute` for a ``send-to-agent`` action, as the poller runs
it: the journal entry, the agent's state read first (one tmux probe and capture, the agent's signals), the
text typed in (or handed to opencode's server), and the wait for the agent's receipt. ``execute`` returns
only once the receipt is there, so its duration is the figure:

* ``command``: the scripted agent (ao/scripted_agent.py) in tmux; no receipt of its own, so the pane
  changing after Enter confirms, and its message log is checked afterwards;
* ``claude-code``: the UserPromptSubmit hook with the exact text (``<run>/claude-events.jsonl``);
* ``codex``: the UserMessage item in its rollout;
* ``aider``: the new entry in its input history;
* ``opencode``: the user message in ``GET /session/{id}/message`` after ``prompt_async``.

Real CLIs run against the fake model API of the real-CLI test tier (tests/fake_model.py, tests/agentkit.py;
installed by .ci/setup.d/20-agents.sh); each is skipped with a note when it is not installed. Before each run
the agent finishes its previous turn (the benchmark waits until ao reads it as ready), so every message
meets a ready agent.

Usage: python bench/delivery_receipt.py [--runs 7] [--agents command,claude-code,codex,aider,opencode]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

READY_DEADLINE = 120.0
RECEIPTS = {"command": "pane change", "claude-code": "UserPromptSubmit hook", "codex": "rollout UserMessage",
            "aider": "input history", "opencode": "server message list"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--agents", default="command,claude-code,codex,aider,opencode")
    args = parser.parse_args()
    print(f"reaction -> the agent's receipt ({args.runs} runs each, tmux, the agent ready):")
    for name in args.agents.split(","):
        try:
            samples = run(name, args.runs)
        except Unavailable as exc:
            print(f"  {name:12} skipped: {exc}")
            continue
        ms = sorted(s * 1000 for s in samples)
        print(f"  {name:12} median {statistics.median(ms):6.0f} ms  min {ms[0]:6.0f}  max {ms[-1]:6.0f}  "
              f"({RECEIPTS[name]})")


class Unavailable(Exception):
    pass


def run(name: str, runs: int) -> list[float]:
    tmp = Path(tempfile.mkdtemp(prefix=f"ao-bench-receipt-{name}-"))
    saved = dict(os.environ)
    env = None
    try:
        env = make(name, tmp)
        os.environ.update(env.env)
        return measure(env, name, runs)
    finally:
        os.environ.clear()
        os.environ.update(saved)
        if env is not None:
            from sessionkit import kill_tmux_server

            kill_tmux_server(env.socket)
            model = getattr(env, "model", None)
            if model is not None:
                model.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def make(name: str, tmp: Path):
    from sessionkit import make_env

    if name == "command":
        env = make_env(tmp)
        env.socket = f"ao-bench-{uuid.uuid4().hex[:10]}"
        return env
    try:
        import agentkit
    except ImportError as exc:
        raise Unavailable(f"the real-CLI tier's kit is not here ({exc})") from None
    if not (agentkit.BIN / agentkit.PROGRAMS[name]).exists():
        raise Unavailable(f"{agentkit.PROGRAMS[name]} is not installed ({agentkit.INSTALL})")
    env = agentkit.make_real_env(tmp, name)
    env.socket = f"ao-bench-{uuid.uuid4().hex[:10]}"
    return env


def measure(env, name: str, runs: int) -> list[float]:
    from ao.executors import AgentExecutor, Journal
    from ao.sessions import SpawnRequest

    manager = env.manager()
    session = manager.spawn(SpawnRequest(project="app", target="12"))
    project = manager.config.projects["app"]
    agent, runtime = manager.agent(session.agent), manager.runtime(project.runtime)
    run_dir = manager.run_dir("app", session.id)
    executor = AgentExecutor(manager, Journal(env.data))
    memo: dict = {}

    def ready() -> bool:
        obs, act = manager._observe_now(agent, runtime, session.runtime_handle, Path(session.workspace), run_dir,
                                        session.created_at, memo)
        still = memo.get("pane_hash") == act.memo.get("pane_hash")
        memo.clear()
        memo.update(act.memo)
        if act.state in ("waiting_input", "blocked", "exited") or agent.not_ready(obs, act):
            return False
        return act.state in ("ready", "idle") or (name in ("command", "aider") and still)

    samples = []
    try:
        return _runs(env, name, runs, session, executor, ready, samples)
    finally:
        manager.kill(session.id)  # ends every process of the agent (opencode outlives a tmux kill-server)


def _runs(env, name: str, runs: int, session, executor, ready, samples: list[float]) -> list[float]:
    from sessionkit import wait_for

    from ao.actions import Action

    for i in range(runs):
        wait_for(ready, timeout=READY_DEADLINE, what=f"{name} to be ready")
        text = f"Please address review comment {i + 1}: rename x to y."
        action = Action(project="app", session=session.id, reaction="changes-requested", action="send-to-agent",
                        priority=None, notifiers=(), title="", text=text, occurrence=f"c{i}", reason="", attempt=1,
                        budget=i)
        t0 = time.perf_counter()
        outcome = executor.execute(action)
        elapsed = time.perf_counter() - t0
        if not outcome.ok:
            raise SystemExit(f"{name}: run {i + 1} was not delivered: {outcome.error}")
        samples.append(elapsed)
        if name == "command":
            wait_for(lambda: any(m["text"] == text for m in env.received(session.id)), what="the message")
    return samples


if __name__ == "__main__":
    main()
