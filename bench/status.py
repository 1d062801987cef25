"""Benchmark: `ao status` and `ao status --refresh` over N sessions (default 100), whole processes.

Set-up as bench/poll_cycle.py: a throwaway project (git with a bare origin) in a temp folder, N stored worker
sessions each with its own branch and a live tmux session (private socket) running a quiet process, every
second branch pushed to origin with a commit of its own, so the local SCM (``ci: "true"``) has N/2 open PRs.

Figures (wall time of the whole `python -m ao ...` process, python start-up included, and its CPU time
(user + system, children included): on a machine busy with other work the wall time grows, the CPU time much
less, and on an idle machine the two are close for a process that mostly computes):

- status, piped:   `ao status` with stdout a pipe (plain lines), after the sessions were observed;
- status --json:   the same as JSON;
- refresh, first:  the first `ao status --refresh` (a poll cycle: first fetch, a merge-tree check and a CI
                   runner per PR, every fact and status written), then refreshes (not timed) until every PR's
                   CI result is in;
- refresh, steady: `ao status --refresh` when nothing changes (one tmux probe, pane captures, one git fetch,
                   N/2 PR views, the engine, no writes).

With ``--compare DIR`` (a checkout of another ao version), its `ao status --json` is timed on the same
sessions too, so that two versions can be compared under the same load.

Usage: python bench/status.py [--sessions 100] [--runs 7] [--compare DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE))

CI_DEADLINE = 150.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=100)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--compare", default=None, help="another ao checkout to time on the same sessions")
    args = parser.parse_args()

    from poll_cycle import setup
    from sessionkit import kill_tmux_server, make_env

    with tempfile.TemporaryDirectory(prefix="ao-bench-status-") as tmp:
        env = make_env(Path(tmp))
        env.socket = f"ao-bench-{uuid.uuid4().hex[:10]}"
        os.environ.update(env.env)
        try:
            pushed = setup(env, args.sessions)
            load = os.getloadavg()
            first = timed(env, "status", "--refresh", "--json")
            settle(env, pushed)
            steady = [timed(env, "status", "--refresh", "--json") for _ in range(args.runs)]
            piped = [timed(env, "status") for _ in range(args.runs)]
            as_json = [timed(env, "status", "--json") for _ in range(args.runs)]
            other = [timed(env, "status", "--json", pythonpath=args.compare) for _ in range(args.runs)] \
                if args.compare else []
        finally:
            kill_tmux_server(env.socket)
    n = args.sessions
    print(f"load average before: {load[0]:.1f}, after: {os.getloadavg()[0]:.1f} ({os.cpu_count()} cores)")
    print(f"ao status, {n} sessions, piped (median of {args.runs}):              {median(piped)}")
    print(f"ao status --json, {n} sessions (median of {args.runs}):              {median(as_json)}")
    print(f"ao status --refresh, {n} sessions ({len(pushed)} PRs), first:               {median([first])}")
    print(f"ao status --refresh, {n} sessions, steady (median of {args.runs}):     {median(steady)}")
    if other:
        print(f"{args.compare}: ao status --json, {n} sessions (median of {args.runs}): {median(other)}")


def timed(env, *args: str, pythonpath: str | None = None) -> tuple[float, float]:
    """(wall ms, CPU ms) of one whole `ao` process (of the checkout at ``pythonpath``, when given)."""
    process_env = {**env.env, "PYTHONPATH": pythonpath} if pythonpath else env.env
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    run = subprocess.run([sys.executable, "-m", "ao", *args], capture_output=True, text=True, cwd=env.root,
                         env=process_env, timeout=300)
    elapsed = (time.perf_counter() - t0) * 1000
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if run.returncode != 0:
        raise SystemExit(f"ao {' '.join(args)} failed: {run.stderr}")
    cpu = (after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime) * 1000
    return elapsed, cpu


def median(samples: list[tuple[float, float]]) -> str:
    wall = statistics.median(s[0] for s in samples)
    cpu = statistics.median(s[1] for s in samples)
    return f"{wall:7.0f} ms wall, {cpu:6.0f} ms CPU"


def settle(env, pushed: set[str]) -> None:
    """Refresh until every PR's CI result is in, then once more so that nothing is left to change."""
    deadline = time.monotonic() + CI_DEADLINE
    while time.monotonic() < deadline:
        run = subprocess.run([sys.executable, "-m", "ao", "status", "--refresh", "--json"], capture_output=True,
                             text=True, cwd=env.root, env=env.env, timeout=300)
        rows = {r["session"]: r for r in json.loads(run.stdout)}
        if all(rows[sid]["ci"] == "passing" for sid in pushed):
            subprocess.run([sys.executable, "-m", "ao", "status", "--refresh"], capture_output=True, cwd=env.root,
                           env=env.env, timeout=300)
            return
        time.sleep(0.5)
    raise SystemExit("CI did not settle")


if __name__ == "__main__":
    main()
