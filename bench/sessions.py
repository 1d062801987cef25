"""Benchmark: `ao spawn` until the agent is running.

Builds a throwaway project (git with a bare origin) and data dir in a temp folder, uses tmux on a private
socket, and removes everything afterwards. The figure is the wall time of `ao spawn` with the scripted agent
(ao/scripted_agent.py, prompt typed in through tmux), from the command's start until it returns with the
agent running and its prompt delivered. (`ao status` reads only what the poller stored: bench/status.py.)

Usage: python bench/sessions.py [--spawns 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spawns", type=int, default=5)
    args = parser.parse_args()

    from sessionkit import kill_tmux_server, make_env

    with tempfile.TemporaryDirectory(prefix="ao-bench-") as tmp:
        env = make_env(Path(tmp))
        os.environ.update(env.env)
        try:
            spawn_ms = bench_spawn(env, args.spawns)
        finally:
            kill_tmux_server(env.socket)
    print(f"ao spawn until the agent runs (median of {args.spawns}): {spawn_ms:7.0f} ms")


def bench_spawn(env, runs: int) -> float:
    samples = []
    for i in range(runs):
        t0 = time.perf_counter()
        run = env.ao("spawn", "app", f"benchmark task {i}")
        samples.append((time.perf_counter() - t0) * 1000)
        if run.returncode != 0:
            raise SystemExit(f"spawn failed: {run.stderr}")
    subprocess.run([sys.executable, "-m", "ao", "cleanup", "--confirm", "--force"], env=env.env,
                   capture_output=True)
    for s in _store(env).list():
        env.tmux("kill-session", "-t", f"={s.runtime_handle}")
    return statistics.median(samples)


def _store(env):
    from ao.store import SessionStore

    return SessionStore(env.data)


if __name__ == "__main__":
    main()
