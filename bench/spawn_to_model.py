"""Benchmark: from `ao spawn` to "the model has the prompt", for each real agent CLI.

Each run builds a fresh throwaway setup, as the real-CLI test tier does (tests/agentkit.py): a project with
a bare origin, a tmp HOME seeded as after the CLI's first run, the fake model API on 127.0.0.1
(tests/fake_model.py), tmux on a private socket. The clock starts when the `ao spawn app 12` process is
started (as a user runs it: Python start-up, worktree, launch, prompt delivery and its confirmation) and
stops when the fake model receives the first turn of the conversation whose user messages hold the whole
prompt. The `ao spawn` command's own duration is reported beside it: for Claude, Codex and opencode the
prompt is an argument, so the command returns before the model has it; for aider it is typed in once aider
shows its `>` prompt and confirmed by aider's input history, so the command returns after.

Everything is killed and removed after each run. The CLIs come from .ci/setup.d/20-agents.sh; a CLI that is
not installed is skipped with a note. The machine is shared: the figures move with its load.

Usage: python bench/spawn_to_model.py [--runs 5] [--agents claude-code,codex,opencode,aider]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

DEADLINE = 180.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--agents", default="claude-code,codex,opencode,aider")
    args = parser.parse_args()

    from agentkit import BIN, PROGRAMS

    print(f"{'agent':<12} {'spawn -> model has the prompt':>30} {'ao spawn returns':>18}   (median, min-max of "
          f"{args.runs} runs, seconds)")
    for agent in args.agents.split(","):
        if not (BIN / PROGRAMS[agent]).exists():
            print(f"{agent:<12} skipped: {BIN / PROGRAMS[agent]} is not installed (.ci/setup.d/20-agents.sh)")
            continue
        samples = [one_run(agent) for _ in range(args.runs)]
        to_model = [s[0] for s in samples]
        spawn = [s[1] for s in samples]
        print(f"{agent:<12} {_fmt(to_model):>30} {_fmt(spawn):>18}", flush=True)


def _fmt(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"


def one_run(agent: str) -> tuple[float, float]:
    """(seconds from the spawn's start to the model having the prompt, seconds `ao spawn` took)."""
    from agentkit import kill_all, make_real_env

    tmp = Path(tempfile.mkdtemp(prefix="ao-bench-agent-"))
    env = make_real_env(tmp, agent)
    try:
        started = time.monotonic()
        run = env.ao("spawn", "app", "12", "--json", timeout=DEADLINE)
        returned = time.monotonic()
        if run.returncode != 0:
            raise SystemExit(f"{agent}: ao spawn failed: {run.stderr}")
        prompt = env.manager().store.get("app-1").prompt.strip()
        first = prompt.splitlines()[0]

        def has_prompt(model) -> object:
            return next((c for c in model.turns() if any(first in u and len(u) >= len(prompt) - 40
                                                         for u in c.user_texts)), None)

        call = env.model.wait(has_prompt, DEADLINE, "the prompt")
        return call.at - started, returned - started
    finally:
        kill_all(env)
        env.model.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    main()
