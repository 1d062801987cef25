"""Benchmark: one reaction-engine cycle for N sessions, and compiling 20 projects.

Usage: python bench/engine_cycle.py [--runs 7]

A cycle is what the poller does after observing: evaluate every session fact against all 11 built-in
reactions (real durable_rules), execute the resulting actions with a recording executor, settle them and
persist the ledgers (JSON files in a temp dir). "first" is the cycle in which every situation is new (many
actions rendered from templates); "steady" is the next cycle with the same facts (nothing new to do), which
is what almost every cycle looks like.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

from ao import config, engine, facts
from ao.actions import RecordingExecutor
from ao.ledger import JsonLedgerStore

NOW = 1_767_258_000


def make_config(folder: Path, projects: int) -> Path:
    lines = ["notificationRouting:", "  urgent: [desktop, log]", "  action: [log]", "projects:"]
    for i in range(projects):
        lines += [f"  proj{i}:", f"    path: ./p{i}", f"    sessionPrefix: p{i}"]
    path = folder / "agent-orchestrator.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def make_facts(n: int, seed: int = 1) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        pr = rng.choice(["none", "open", "open", "open", "merged", "closed"])
        partial = {
            "session": f"p0-{i}", "project": "proj0", "pr_state": pr,
            "activity": rng.choice(["active", "ready", "idle", "idle", "waiting_input", "blocked"]),
            "idle_seconds": rng.choice([0, 30, 400, 700, 2000]),
        }
        if pr != "none":
            partial.update(pr_number=i, pr_url=f"https://example.test/pr/{i}", head_sha=f"sha{i}",
                           ci=rng.choice(["passing", "failing", "pending", "none"]),
                           review=rng.choice(["none", "pending", "approved", "changes_requested"]),
                           human_comments=rng.choice([0, 0, 2]), bot_comments=rng.choice([0, 0, 1]),
                           comments_fingerprint=f"c{i}", bot_fingerprint=f"b{i}", conflicts=rng.random() < 0.1)
        out.append(facts.complete(partial, NOW))
    return out


def bench_cycle(n: int, runs: int) -> tuple[float, float, int]:
    firsts, steadies, fired = [], [], 0
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as tmp:
            cfg = config.load(make_config(Path(tmp), 1))
            compiled = engine.compile_config(cfg)["proj0"]
            session_facts = make_facts(n)
            with engine.Engine(compiled, JsonLedgerStore(Path(tmp) / "data")) as eng:
                t0 = time.perf_counter()
                done = engine.run_cycle(eng, session_facts, NOW, RecordingExecutor())
                t1 = time.perf_counter()
                engine.run_cycle(eng, session_facts, NOW + 30, RecordingExecutor())
                t2 = time.perf_counter()
            firsts.append((t1 - t0) * 1000)
            steadies.append((t2 - t1) * 1000)
            fired = len(done)
    return statistics.median(firsts), statistics.median(steadies), fired


def bench_compile(projects: int, runs: int) -> float:
    times = []
    with tempfile.TemporaryDirectory() as tmp:
        cfg = config.load(make_config(Path(tmp), projects))
        for _ in range(runs):
            t0 = time.perf_counter()
            compiled = engine.compile_config(cfg)
            engines = [engine.Engine(cp) for cp in compiled.values()]
            times.append((time.perf_counter() - t0) * 1000)
            for e in engines:
                e.close()
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    print(f"median of {args.runs} runs")
    for n in (10, 100, 1000):
        first, steady, fired = bench_cycle(n, args.runs)
        print(f"cycle  N={n:>5}: first {first:8.1f} ms ({fired} actions)   steady {steady:8.1f} ms")
    print(f"compile 20 projects (rule files + durable rulesets): {bench_compile(20, args.runs):.1f} ms")


if __name__ == "__main__":
    sys.exit(main())
