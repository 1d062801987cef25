"""Benchmark: `ao status` over many live sessions, and `ao spawn` until the agent is running.

Builds a throwaway project (git with a bare origin) and data dir in a temp folder, uses tmux on a private
socket, and removes everything afterwards.

- status: N sessions (default 100) are stored, each with a real tmux session running a quiet agent; the
  figure is the wall time of the whole `ao status --json` process (python start-up included). `ao status`
  reads the panes that printed since ao last captured them (a dialog is only on screen): "steady" is with
  a poller running (each pane captured since its last output), "cold" with none ever (every pane is read).
- spawn: wall time of `ao spawn` with the scripted agent (ao/scripted_agent.py, prompt typed in through
  tmux), from the command's start until it returns with the agent running and its prompt delivered.

Usage: python bench/sessions.py [--sessions 100] [--runs 7] [--spawns 5]
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
    parser.add_argument("--sessions", type=int, default=100)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--spawns", type=int, default=5)
    args = parser.parse_args()

    from sessionkit import kill_tmux_server, make_env

    with tempfile.TemporaryDirectory(prefix="ao-bench-") as tmp:
        env = make_env(Path(tmp))
        os.environ.update(env.env)
        try:
            spawn_ms = bench_spawn(env, args.spawns)
            status_ms, cold_ms = bench_status(env, args.sessions, args.runs)
        finally:
            kill_tmux_server(env.socket)
    print(f"ao spawn until the agent runs (median of {args.spawns}): {spawn_ms:7.0f} ms")
    print(f"ao status --json, {args.sessions} live sessions (median of {args.runs}): {status_ms:7.0f} ms steady, "
          f"{cold_ms:.0f} ms cold")


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


def bench_status(env, count: int, runs: int) -> float:
    from ao.sessions import handle_name

    store = _store(env)
    env.tmux("new-session", "-d", "-s", "keepalive", "sleep 100000")
    for _ in range(count):
        s = store.create("app", "app", status="working", branch="feat/x", workspace=str(env.project),
                         runtime="tmux", agent="command")
        handle = handle_name(env.data, s.id)
        env.tmux("new-session", "-d", "-s", handle, "-c", str(env.project), "sleep 100000")
        store.update(s.id, "app", runtime_handle=handle)
    env.ao("status", "--json")  # warm the page cache

    def timed() -> float:
        samples = []
        for _ in range(runs):
            t0 = time.perf_counter()
            run = env.ao("status", "--json")
            samples.append((time.perf_counter() - t0) * 1000)
            if run.returncode != 0 or run.stdout.count('"session"') < count:
                raise SystemExit(f"status failed: {run.stderr}")
        return statistics.median(samples)

    cold = timed()
    captured = time.time() + 2  # what a poller leaves: every pane captured after its last output
    for s in store.list():
        store.update(s.id, "app", meta={"activity": {"at": captured - 2, "captured_at": captured}})
    return timed(), cold


def _store(env):
    from ao.store import SessionStore

    return SessionStore(env.data)


if __name__ == "__main__":
    main()
