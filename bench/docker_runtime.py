"""Benchmark: the docker runtime against tmux on the host, with a private dockerd (tests/dockerkit.py).

Needs root, Debian's docker.io and the test image's root filesystem (.ci/setup.d/30-docker.sh). Builds a
throwaway project (git with a bare origin, tests/sessionkit.py) in a temp folder; everything (containers,
tmux server, dockerd, its tmpfs) is removed afterwards.

- spawn: wall time of ``ao spawn`` (the whole CLI process) until it returns with the agent running and its
  prompt typed in and confirmed, then until the scripted agent has logged the prompt ("delivered"). tmux on
  the host and docker alternate, ``--spawns`` each, in one run; the figure is the ratio of the medians.
- poll cycle: ``--sessions`` (default 50) docker sessions live (scripted agents, quiet after their prompt);
  ``Poller.cycle()`` in-process: the first cycle (every pane captured, one ``docker exec`` each), then the
  median of ``--runs`` steady cycles (one ``docker ps``, the activity files, no capture). The same for as
  many tmux sessions on the host, for comparison.
- memory: proportional set size (PSS, /proc/PID/smaps_rollup) of everything a session adds. docker: the
  container's processes (docker-init, the watcher, tmux, the agent), its containerd shim, and the growth of
  dockerd and containerd from 0 to N sessions, divided by N. tmux: the tmux server and the agents, divided by
  N. Added per container session = docker - tmux (the agent itself costs the same in both). The containers'
  memory cgroups (which also count kernel memory and page cache) are reported beside it.

Usage: python bench/docker_runtime.py [--sessions 50] [--spawns 5] [--runs 5]
"""

from __future__ import annotations

import argparse
import json
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
    parser.add_argument("--sessions", type=int, default=50)
    parser.add_argument("--spawns", type=int, default=5)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    from dockerkit import AGENT, IMAGE, require_docker, started_engine
    from sessionkit import FAKE_AGENT, kill_tmux_server, make_env

    try:
        require_docker()
    except BaseException as exc:  # pytest's skip/fail outcomes
        raise SystemExit(f"cannot run: {exc}") from None
    with tempfile.TemporaryDirectory(prefix="ao-bench-docker-") as tmp:
        root = Path(tmp)
        engine = started_engine(root / "dockerd")
        env = make_env(root / "w")
        os.environ.update(env.env)
        logs = env.root / "agentlogs"
        logs.mkdir()
        configs = {}
        for name in ("tmux", "docker"):
            env.write_config(
                runtime={"plugin": "docker", "image": IMAGE, "host": engine.url, "network": "none",
                         "mounts": [f"{logs}:{logs}:rw"]} if name == "docker" else "tmux",
                agentConfig={"command": (f"python3 {AGENT}" if name == "docker" else f"{sys.executable} {FAKE_AGENT}")
                             + f' --log "{logs}/$AO_SESSION.agent.jsonl"'})
            configs[name] = env.config.read_text()
        try:
            spawn = bench_spawn(env, configs, args.spawns)
            cycles = {name: bench_cycles(env, configs[name], args.sessions, args.runs, engine if name == "docker"
                                         else None) for name in ("docker", "tmux")}
        finally:
            kill_tmux_server(env.socket)
            engine.stop()

    t, d = statistics.median(spawn["tmux"]), statistics.median(spawn["docker"])
    td, dd = statistics.median(spawn["tmux_delivered"]), statistics.median(spawn["docker_delivered"])
    print(f"ao spawn until it returns (median of {args.spawns}): tmux {t:.0f} ms, docker {d:.0f} ms: x{d / t:.1f}")
    print(f"ao spawn until the agent logged its prompt: tmux {td:.0f} ms, docker {dd:.0f} ms: x{dd / td:.1f}")
    for name, c in cycles.items():
        print(f"poll cycle, {args.sessions} {name} sessions: first {c['first_ms']:.0f} ms, steady {c['steady_ms']:.0f} ms"
              f" (median of {args.runs}; max {c['steady_max_ms']:.0f} ms), all panes new {c['busy_ms']:.0f} ms")
    dm, tm = cycles["docker"]["memory"], cycles["tmux"]["memory"]
    print(f"memory per session (PSS): docker {dm['per_session_mb']:.1f} MB (container processes {dm['inside_mb']:.1f}, "
          f"shim {dm['shim_mb']:.1f}, dockerd+containerd growth {dm['daemons_mb']:.1f}); tmux on the host "
          f"{tm['per_session_mb']:.1f} MB; added per container session {dm['per_session_mb'] - tm['per_session_mb']:.1f} MB")
    if dm.get("cgroup_mb"):
        print(f"  container memory cgroup (kernel memory and page cache included): {dm['cgroup_mb']:.1f} MB median")


def _delivered(env, sid: str) -> bool:
    path = env.root / "agentlogs" / f"{sid}.agent.jsonl"
    return path.exists() and path.stat().st_size > 0


def bench_spawn(env, configs: dict[str, str], runs: int) -> dict[str, list[float]]:
    samples: dict[str, list[float]] = {k: [] for k in ("tmux", "docker", "tmux_delivered", "docker_delivered")}
    for i in range(runs):
        for name in ("tmux", "docker"):
            env.config.write_text(configs[name])
            t0 = time.perf_counter()
            run = env.ao("spawn", "app", f"{name} spawn {i}", "--json")
            returned = time.perf_counter()
            if run.returncode != 0:
                raise SystemExit(f"{name} spawn failed: {run.stderr}")
            sid = json.loads(run.stdout)["session"]
            while not _delivered(env, sid):
                time.sleep(0.005)
            samples[name].append((returned - t0) * 1000)
            samples[f"{name}_delivered"].append((time.perf_counter() - t0) * 1000)
            subprocess.run([sys.executable, "-m", "ao", "session", "kill", sid], env=env.env, capture_output=True)
    subprocess.run([sys.executable, "-m", "ao", "cleanup", "--confirm", "--force"], env=env.env, capture_output=True)
    return samples


def bench_cycles(env, config_text: str, n: int, runs: int, engine) -> dict:
    from ao import config as config_mod
    from ao.poller import Poller
    from ao.sessions import SpawnRequest

    env.config.write_text(config_text)
    poller = Poller(config_mod.load(env.config), console=None)
    daemons_before = _pss(_daemon_pids(engine)) if engine else 0.0
    spawned = [poller.manager.spawn(SpawnRequest(project="app", target=f"cycle task {i}")) for i in range(n)]
    for s in spawned:
        while not _delivered(env, s.id):
            time.sleep(0.01)
    time.sleep(2)  # let the agents draw their prompt and the watchers write their first activity stamps
    t0 = time.perf_counter()
    poller.cycle()
    first = (time.perf_counter() - t0) * 1000
    poller.cycle()
    steady = []
    for _ in range(runs):
        t0 = time.perf_counter()
        poller.cycle()
        steady.append((time.perf_counter() - t0) * 1000)
    for s in poller.store.list():  # every pane as if it had printed since the last capture
        poller.store.update(s.id, "app", meta={**s.meta, "activity": {**s.meta.get("activity", {}), "captured_at": 0}})
    t0 = time.perf_counter()
    poller.cycle()
    busy = (time.perf_counter() - t0) * 1000
    memory = _memory(env, engine, spawned, daemons_before)
    for s in spawned:
        poller.manager.kill(s.id)
    poller.close()
    subprocess.run([sys.executable, "-m", "ao", "cleanup", "--confirm", "--force"], env=env.env, capture_output=True)
    return {"first_ms": first, "steady_ms": statistics.median(steady), "steady_max_ms": max(steady),
            "busy_ms": busy, "memory": memory}


def _pss(pids: list[int]) -> float:
    """Summed PSS of ``pids`` in MB (processes that are gone count nothing)."""
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


def _pids_where(predicate) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if cmdline and cmdline[0] and predicate(int(entry), cmdline):
                out.append(int(entry))
    return out


def _daemon_pids(engine) -> list[int]:
    root = str(engine.root).encode()
    return _pids_where(lambda pid, cmd: cmd[0].endswith((b"dockerd", b"containerd")) and any(root in c for c in cmd))


def _memory(env, engine, spawned, daemons_before: float) -> dict:
    n = len(spawned)
    if engine is None:  # tmux on the host: its server and the agents
        server = subprocess.run(["tmux", "-L", env.socket, "display-message", "-p", "#{pid}"], capture_output=True,
                                text=True).stdout.split()
        panes = subprocess.run(["tmux", "-L", env.socket, "list-panes", "-a", "-F", "#{pane_pid}"],
                               capture_output=True, text=True).stdout.split()
        return {"per_session_mb": _pss([int(p) for p in server + panes if p.isdigit()]) / n}
    root = str(engine.root).encode()
    shims = _pids_where(lambda pid, cmd: b"containerd-shim" in cmd[0] and any(root in c for c in cmd))
    inside, cgroups = [], []
    for s in spawned:
        name = s.runtime_handle.split("@")[0]
        cid = engine.docker("inspect", "--format", "{{.Id}}", name).stdout.decode().strip()
        top = engine.docker("top", name, "-eo", "pid").stdout.decode().split()[1:]
        inside += [int(p) for p in top if p.isdigit()]
        usage = Path(f"/sys/fs/cgroup/memory/docker/{cid}/memory.usage_in_bytes")
        if usage.exists():
            cgroups.append(int(usage.read_text()) / 2**20)
    inside_mb, shim_mb = _pss(inside) / n, _pss(shims) / n
    daemons_mb = max(0.0, _pss(_daemon_pids(engine)) - daemons_before) / n
    return {"per_session_mb": inside_mb + shim_mb + daemons_mb, "inside_mb": inside_mb, "shim_mb": shim_mb,
            "daemons_mb": daemons_mb, "cgroup_mb": statistics.median(cgroups) if cgroups else 0.0}


if __name__ == "__main__":
    main()
