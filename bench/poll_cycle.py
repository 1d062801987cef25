"""Benchmark: one lifecycle poll cycle (`Poller.cycle()`) over N live sessions: wall time and memory.

For each size N (default 10, 100 and 500) a fresh child process (``--child N``) builds a throwaway project
(git with a bare origin, tests/sessionkit.py) in a temp folder and a data dir with N stored worker sessions,
each with its own branch and a real tmux session (private socket) running a quiet process (``sleep``).
Every second session's branch is pushed to origin with a commit of its own (created in one ``git
fast-import`` and pushed in one ``git push``), so the local SCM (``scm: {plugin: local, ci: "true"}``) has
N/2 open PRs to observe, each with its own head sha and so its own CI run.

In the child, in-process (config loaded, ``Poller(config, console=None)`` made, nothing cached yet):

- first:  the first ``cycle()``: cold imports, rule compilation, first SCM fetch, a merge-tree conflict
          check per PR, N/2 CI runners started, every session's fact and status written, events appended.
- then cycles run (not timed) until every PR's CI result is in (``ci: passing`` in every PR session's
  fact), plus one more, so nothing is left to change;
- steady: the median of ``--runs`` further cycles in which nothing changes (one tmux probe, N pane
  captures, one git fetch, N PR views, the engine over N facts, no writes); wall time, and CPU time (this
  process plus the tmux and git processes it ran), which the load of a shared machine disturbs far less.

Memory: the child's peak RSS (``getrusage(RUSAGE_SELF).ru_maxrss``) after all cycles, i.e. the whole
process (interpreter, ao, durable_rules, the set-up itself); "before" is the same figure just before the
first cycle. CI runners, git and tmux are other processes and not counted.

Usage: python bench/poll_cycle.py [--sizes 10,100,500] [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

REFERENCE = "reference: 672 ms p50 to list 83 sessions, 1.5 GB heap"
CI_DEADLINE = 150.0      # seconds to wait for every PR's CI result
CHILD_TIMEOUT = 600.0    # seconds per size before the parent gives up on a child
TMUX_BATCH = 100         # tmux sessions created per tmux client call


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10,100,500", help="comma-separated session counts")
    parser.add_argument("--runs", type=int, default=5, help="steady cycles per size (median reported)")
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--dir", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--socket", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child is not None:
        result = child(args.child, args.runs, Path(args.dir), args.socket)
        print(json.dumps(result), flush=True)
        return

    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    rows = []
    for n in sizes:
        rows.append((n, run_child(n, args.runs)))

    print(f"{'sessions':>8} {'PRs':>5} {'first cycle':>12} {f'steady (median of {args.runs})':>22} "
          f"{'steady max':>11} {'steady CPU':>11} {'peak RSS':>9} {'RSS before':>11}")
    for n, r in rows:
        if "error" in r:
            print(f"{n:>8} failed: {r['error']}")
            continue
        print(f"{n:>8} {r['prs']:>5} {r['first_ms']:>9.0f} ms {r['steady_ms']:>19.0f} ms {r['steady_max_ms']:>8.0f} ms "
              f"{r['steady_cpu_ms']:>8.0f} ms {r['rss_mb']:>6.0f} MB {r['rss_before_mb']:>8.0f} MB")
    print(REFERENCE)
    for n, r in rows:
        notes = []
        if r.get("errors"):
            notes.append(f"cycle errors: {r['errors']}")
        if r.get("steady_actions") or r.get("steady_events"):
            notes.append(f"steady cycles were not quiet: {r.get('steady_actions')} actions, "
                         f"{r.get('steady_events')} events")
        if "setup_s" in r:
            notes.append(f"set-up {r['setup_s']:.1f} s, CI settled {r['ci_wait_s']:.1f} s after the first cycle, "
                         f"first cycle: {r['first_events']} events, {r['first_actions']} actions")
        if notes:
            print(f"  {n}: " + "; ".join(notes))


def run_child(n: int, runs: int) -> dict:
    """One size in a fresh process; the parent owns the temp dir and the tmux socket, so it can always clean."""
    tmp = tempfile.mkdtemp(prefix="ao-bench-poll-")
    socket = f"ao-bench-{uuid.uuid4().hex[:10]}"
    try:
        proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", str(n), "--runs", str(runs),
                               "--dir", tmp, "--socket", socket],
                              capture_output=True, text=True, timeout=CHILD_TIMEOUT, check=False)
        if proc.returncode != 0:
            return {"error": f"child exited {proc.returncode}: {proc.stderr.strip()[-2000:]}"}
        return json.loads(proc.stdout.strip().splitlines()[-1])
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {CHILD_TIMEOUT:.0f} s"}
    finally:
        from sessionkit import kill_tmux_server

        kill_tmux_server(socket)  # the child kills it too; this is for a child that died or timed out
        shutil.rmtree(tmp, ignore_errors=True)


# ------------------------------------------------------------------------------------------- the child

def child(n: int, runs: int, folder: Path, socket: str) -> dict:
    from sessionkit import kill_tmux_server, make_env

    env = make_env(folder)
    env.socket = socket
    os.environ.update(env.env)
    poller = None
    try:
        t0 = time.monotonic()
        pushed = setup(env, n)
        setup_s = time.monotonic() - t0
        from ao.poller import Poller

        poller = Poller(env.load(), console=None)
        return measure(poller, pushed, runs, setup_s)
    finally:
        try:
            if poller is not None:
                stop_ci_runners(poller)
                poller.close()
        finally:
            kill_tmux_server(env.socket)


def setup(env, n: int) -> set[str]:
    """N stored sessions with branches and live tmux sessions; every second branch on origin. Returns the ids
    of the sessions with a PR."""
    from sessionkit import GIT_IDENTITY, git

    from ao.sessions import handle_name
    from ao.store import SessionStore

    store = SessionStore(env.data)
    ids = [f"app-{i}" for i in range(1, n + 1)]
    pushed = {sid for i, sid in enumerate(ids) if i % 2 == 0}

    # One commit of its own per pushed branch (a file of its own: merges cleanly), all in one fast-import.
    main_sha = git("rev-parse", "HEAD", cwd=env.project).strip()
    stream = []
    for sid in sorted(pushed):
        message = f"work of {sid}\n".encode()
        content = f"{sid} was here\n".encode()
        stream += [f"commit refs/heads/feat/{sid}\n".encode(),
                   b"committer Bench <bench@example.com> 1767258000 +0000\n",
                   f"data {len(message)}\n".encode(), message,
                   f"from {main_sha}\n".encode(),
                   f"M 100644 inline work/{sid}.txt\n".encode(),
                   f"data {len(content)}\n".encode(), content, b"\n"]
    subprocess.run(["git", "fast-import", "--quiet"], input=b"".join(stream), cwd=env.project, check=True,
                   capture_output=True, env={**os.environ, **GIT_IDENTITY})
    git("push", "-q", "origin", "refs/heads/feat/*:refs/heads/feat/*", cwd=env.project)

    handles = {}
    for sid in ids:
        handles[sid] = handle_name(env.data, sid)
        store.create("app", id=sid, status="working", branch=f"feat/{sid}", workspace=str(env.project),
                     runtime="tmux", agent="command", runtime_handle=handles[sid], task=f"benchmark task {sid}")

    env.tmux("new-session", "-d", "-s", "keepalive", "sleep 100000")
    for start in range(0, n, TMUX_BATCH):
        argv: list[str] = []
        for sid in ids[start:start + TMUX_BATCH]:
            argv += [*([";"] if argv else []), "new-session", "-d", "-s", handles[sid], "-c", str(env.project),
                     "sleep 100000"]
        r = env.tmux(*argv)
        if r.returncode != 0:
            raise SystemExit(f"tmux new-session failed: {r.stderr}")
    listed = env.tmux("list-sessions", "-F", "#{session_name}").stdout.split()
    if len(listed) != n + 1:
        raise SystemExit(f"expected {n + 1} tmux sessions, found {len(listed)}")
    return pushed


def measure(poller, pushed: set[str], runs: int, setup_s: float) -> dict:
    errors: list[str] = []
    rss_before = _rss_mb()

    t0 = time.perf_counter()
    first = poller.cycle()
    first_ms = (time.perf_counter() - t0) * 1000
    errors += first.errors

    # Let every PR's CI finish (runners are background processes) and settle what that changes.
    t1 = time.monotonic()
    while True:
        report = poller.cycle()
        errors += report.errors
        states = [s.fact.get("ci") for s in poller.store.list() if s.id in pushed]
        if len(states) == len(pushed) and all(state == "passing" for state in states):
            break
        if time.monotonic() - t1 > CI_DEADLINE:
            pending = sum(1 for state in states if state != "passing")
            raise SystemExit(f"CI not settled after {CI_DEADLINE:.0f} s: {pending} of {len(pushed)} PRs not passing")
        time.sleep(0.2)
    ci_wait_s = time.monotonic() - t1
    errors += poller.cycle().errors

    samples, cpu, actions, events = [], [], 0, 0
    for _ in range(runs):
        c0 = _cpu_s()
        t0 = time.perf_counter()
        report = poller.cycle()
        samples.append((time.perf_counter() - t0) * 1000)
        cpu.append((_cpu_s() - c0) * 1000)
        errors += report.errors
        actions += len(report.actions)
        events += len(report.events)
    return {"sessions": report.sessions, "prs": len(pushed), "first_ms": round(first_ms, 1),
            "steady_ms": round(statistics.median(samples), 1), "steady_max_ms": round(max(samples), 1),
            "steady_samples_ms": [round(s, 1) for s in samples], "steady_cpu_ms": round(statistics.median(cpu), 1),
            "rss_mb": round(_rss_mb(), 1),
            "rss_before_mb": round(rss_before, 1), "setup_s": round(setup_s, 2), "ci_wait_s": round(ci_wait_s, 2),
            "first_events": len(first.events), "first_actions": len(first.actions),
            "steady_actions": actions, "steady_events": events, "errors": sorted(set(errors))[:5]}


def _cpu_s() -> float:
    """CPU seconds used so far by this process and the children it has waited for (tmux, git): a cycle's
    cost that the load of a shared machine changes far less than its wall time."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def stop_ci_runners(poller, timeout: float = 30.0) -> None:
    """Wait for the CI runners this poller started (they are quick with `ci: true`); kill any left."""
    scm = poller._scms.get("app")
    if scm is None or not hasattr(scm, "ci_running"):
        return
    deadline = time.monotonic() + timeout
    while scm.ci_running() and time.monotonic() < deadline:
        time.sleep(0.1)
    for proc in list(getattr(scm, "_runners", [])):
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # started with start_new_session: its own group
            except (ProcessLookupError, PermissionError):
                pass
            proc.wait()


if __name__ == "__main__":
    main()
