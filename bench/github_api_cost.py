"""Benchmark: what observing N PRs costs in GitHub API requests, counted at a fake GitHub on 127.0.0.1.

Usage: python bench/github_api_cost.py [--prs 10 50 200] [--cycles 120] [--interval 30]

For each N: a fake GitHub (tests/fake_github.py: GraphQL executed against GitHub's published schema, REST
validated against its OpenAPI description, a query's points counted with GitHub's formula) holding N open PRs
whose CI has settled (passing: no PR is re-read for pending CI, and no failing check brings a log), each with a
review required, and the github SCM with a fresh state dir and an injected clock. A first cycle reads everything (reported as "first"). Then one simulated hour (120 cycles, 30 s
apart: the default pollInterval), twice: (a) nothing changes; (b) one PR changes before every cycle (a review
comment, 15 s before the cycle). The hour includes the full refreshes (every open PR re-read every 10 min:
base-branch moves do not show on the PR list).

Per cycle (the median cycle, and the dearest one): REST requests sent and how many of them were 304s (free),
GraphQL queries and their cost in points (GitHub's formula, as the fake computes it), log downloads. Per hour:
requests sent, requests counted against a rate limit (REST 200s + GraphQL queries), GraphQL points.
The reference's published figures are calls per hour: 120 for 10 PRs and 600 for 50 (after its batching).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from fake_github import TOKEN, FakeGitHub, Logged, Run, Thread

from ao.plugins.scm import ScmContext
from ao.plugins.scm.github import BATCH, GitHubSCM

T0 = 1_767_258_000.0
REFERENCE = {10: "120", 50: "600"}


class Clock:
    def __init__(self) -> None:
        self.t = T0

    def __call__(self) -> float:
        return self.t


def cost(log: list[Logged]) -> dict[str, int]:
    rest = [r for r in log if not r.graphql and not r.path.startswith("/_logs/")]
    return {"rest": len(rest), "304": sum(r.status == 304 for r in rest), "graphql": sum(r.graphql for r in log),
            "points": sum(r.cost for r in log), "logs": sum(r.path.startswith("/_logs/") for r in log),
            "counted": sum(r.counted for r in log if not r.path.startswith("/_logs/"))}


def run(n: int, changing: bool, cycles: int, interval: float) -> tuple[dict, list[dict]]:
    clock = Clock()
    fake = FakeGitHub(clock=clock, limit=10**9, graphql_limit=10**9).start()
    try:
        prs = [fake.add_pr(f"session-{i}", checks=[Run("build"), Run("test")], decision="REVIEW_REQUIRED")
               for i in range(n)]
        branches = [p.branch for p in prs]
        with tempfile.TemporaryDirectory() as state:
            ctx = ScmContext(project="app", project_path=Path(state), repo="acme/app", default_branch="main",
                             settings={"baseUrl": fake.url}, state_dir=Path(state), clock=clock)
            scm = GitHubSCM(ctx, sleep=lambda s: None)
            clock.t += interval
            views = scm.observe(branches)
            assert len(views) == n and all(v.state == "open" and v.ci == "passing" for v in views.values())
            first = cost(fake.log)
            per_cycle = []
            for i in range(cycles):
                fake.clear_log()
                if changing:
                    clock.t += interval / 2
                    fake.add_thread(prs[i % n], Thread(f"comment {i}"))
                    clock.t += interval / 2
                else:
                    clock.t += interval
                views = scm.observe(branches)
                if changing:  # the change was seen in this very cycle
                    assert views[prs[i % n].branch].comments[-1].body == f"comment {i}"
                per_cycle.append(cost(fake.log))
            assert fake.rejected == [] and fake.violations == [], (fake.rejected, fake.violations)
            return first, per_cycle
    finally:
        fake.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--prs", type=int, nargs="+", default=[10, 50, 200])
    parser.add_argument("--cycles", type=int, default=120, help="cycles in the simulated hour")
    parser.add_argument("--interval", type=float, default=30.0, help="seconds between cycles")
    args = parser.parse_args()
    os.environ["GITHUB_TOKEN"] = TOKEN

    head = (f"{'PRs':>4}  {'case':<14} | {'REST':>4} {'304':>4} {'GQL':>4} {'pts':>4} {'logs':>4} | "
            f"{'max GQL':>7} | {'sent/h':>6} {'counted/h':>9} {'GQL/h':>5} {'pts/h':>5} | {'reference/h':>11}")
    print("Per cycle: the median cycle (REST requests sent, of them 304s, GraphQL queries, points, log downloads),")
    print(f"and the most GraphQL queries in one cycle; per hour: {args.cycles} cycles, {args.interval:g}s apart, "
          "full refreshes included.")
    print("CI is settled (passing) in every case: no re-reads for pending CI, no log downloads.\n")
    print(head)
    print("-" * len(head))
    verdicts = []
    for n in args.prs:
        for label, changing in (("(a) unchanged", False), ("(b) one change", True)):
            first, cycles = run(n, changing, args.cycles, args.interval)
            med = {k: statistics.median(c[k] for c in cycles) for k in cycles[0]}
            hour = {k: sum(c[k] for c in cycles) for k in cycles[0]}
            if not changing:
                print(f"{n:>4}  {'first cycle':<14} | {first['rest']:>4} {first['304']:>4} {first['graphql']:>4} "
                      f"{first['points']:>4} {first['logs']:>4} | {first['graphql']:>7} | {'':>6} {'':>9} {'':>5} "
                      f"{'':>5} |")
            print(f"{n:>4}  {label:<14} | {med['rest']:>4g} {med['304']:>4g} {med['graphql']:>4g} {med['points']:>4g} "
                  f"{med['logs']:>4g} | {max(c['graphql'] for c in cycles):>7} | {hour['rest'] + hour['graphql']:>6} "
                  f"{hour['counted']:>9} {hour['graphql']:>5} {hour['points']:>5} | {REFERENCE.get(n, '-'):>11}")
            limit = -(-n // BATCH)
            if changing:
                ok = med["rest"] <= 1 and med["graphql"] <= limit
                verdicts.append(f"{n} PRs, one change: median cycle {med['rest']:g} REST + {med['graphql']:g} GraphQL "
                                f"(aim: <= 1 + {limit}) {'ok' if ok else 'MISSED'}")
            else:
                ok = med["rest"] <= 1 and med["graphql"] == 0
                verdicts.append(f"{n} PRs, unchanged: median cycle {med['rest']:g} request, {med['graphql']:g} GraphQL "
                                f"(aim: <= 1, no GraphQL) {'ok' if ok else 'MISSED'}")
    print()
    for line in verdicts:
        print(line)


if __name__ == "__main__":
    main()
