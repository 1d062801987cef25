"""Benchmark: the dashboard with 100 sessions, served by a real `ao dashboard` and watched by Debian's Chromium.

Set-up (a temp folder, removed afterwards): a throwaway project (tests/sessionkit.py) and 100 session records
in the store, a realistic mix of every board group, a third of them with a PR, failing CI with a log tail and
a review thread. No agents run: the board is what is measured. `ao dashboard --port 0 --no-open` runs as a
subprocess; Chromium is Debian's (/usr/bin/chromium) driven by Playwright.

Reported (medians):

- board first load: the server's time for ``GET /`` (httpx on loopback, ``--runs`` requests after a warm-up),
  and the first contentful paint in Chromium (a fresh browser context per load);
- a status change on disk (a session file rewritten as the poller does) to the card in its new column of an
  open board: the browser stamps the moment with a MutationObserver, on the same clock (median and p95);
- the server's CPU (user + system, from /proc) over a quiet minute with 1 and with 10 open board tabs.

Usage: python bench/dashboard.py [--runs 20] [--changes 40] [--quiet 60]
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

SESSIONS = 100
STATES = [  # (status, fact) cycling over the 100 sessions
    ("working", {"activity": "active"}),
    ("needs_input", {"activity": "waiting_input"}),
    ("ci_failed", {"pr_state": "open", "ci": "failing"}),
    ("review_pending", {"pr_state": "open", "ci": "passing", "review": "pending"}),
    ("changes_requested", {"pr_state": "open", "ci": "passing", "review": "changes_requested"}),
    ("mergeable", {"pr_state": "open", "ci": "passing", "review": "approved"}),
    ("working", {"activity": "ready"}),
    ("merged", {"pr_state": "merged", "ci": "passing", "review": "approved"}),
]
LOG = "\n".join(f"tests/test_{n}.py::test_case FAILED: expected {n}, got {n + 1}" for n in range(40))


def seed(data: Path) -> list[str]:
    from ao.store import SessionStore

    store = SessionStore(data)
    ids = []
    for n in range(SESSIONS):
        status, fact = STATES[n % len(STATES)]
        pr = {"pr_number": n + 1, "pr_url": f"local:app#{n + 1}", "head_sha": f"{n:040x}"} if "pr_state" in fact else {}
        meta = {"pr": {"head_sha": pr.get("head_sha", ""),
                       "checks": [{"name": "ci", "state": fact.get("ci", "none"), "url": "", "log_tail": LOG}],
                       "comments": [{"id": f"c{n}", "author": "reviewer", "body": "Please rename x.", "path": "a.py",
                                     "line": 3, "url": "", "trusted": True, "bot": False}]}} if pr else {}
        s = store.create("app", "app", status=status, branch=f"feat/issue-{n}", issue=str(n), task=f"Issue {n}",
                         fact={"status": status, **fact, **pr}, meta=meta)
        ids.append(s.id)
    return ids


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


OBSERVE = """([id, group]) => { window.aoSeen = new Promise((resolve) => {
  const done = () => document.querySelector(`#group-${group} #card-${id}`);
  if (done()) { resolve(Date.now()); return; }
  const seen = new MutationObserver(() => { if (done()) { seen.disconnect(); resolve(Date.now()); } });
  seen.observe(document.getElementById('board'), {childList: true, subtree: true});
}); }"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--changes", type=int, default=40)
    parser.add_argument("--quiet", type=float, default=60.0, help="seconds of each quiet CPU window")
    args = parser.parse_args()

    import httpx
    from dashkit import launch_chromium, start_dashboard
    from playwright.sync_api import sync_playwright
    from sessionkit import make_env

    from ao.store import SessionStore

    tmp = Path(tempfile.mkdtemp(prefix="ao-bench-dash-"))
    env = make_env(tmp)
    ids = seed(env.data)
    dash = start_dashboard(env)
    try:
        client = dash.client()
        client.get("/")
        server = []
        for _ in range(args.runs):
            t0 = time.perf_counter()
            assert client.get("/").status_code == 200
            server.append((time.perf_counter() - t0) * 1000)
        print(f"board GET / with {SESSIONS} sessions (server, loopback): median {statistics.median(server):.1f} ms")

        with sync_playwright() as p:
            browser = launch_chromium(p)
            paints = []
            for i in range(max(3, args.runs // 2)):
                context = browser.new_context(viewport={"width": 1600, "height": 1000})
                page = context.new_page()
                page.goto(dash.url)
                page.wait_for_selector("#live.on")
                fcp = page.evaluate("performance.getEntriesByName('first-contentful-paint')[0].startTime")
                paints.append(fcp)
                context.close()
            print(f"board first contentful paint in Chromium: median {statistics.median(paints):.0f} ms "
                  f"(min {min(paints):.0f}, max {max(paints):.0f})")

            context = browser.new_context(viewport={"width": 1600, "height": 1000})
            page = context.new_page()
            page.goto(dash.url)
            page.wait_for_selector("#live.on")
            store = SessionStore(env.data)
            latencies = []
            for n in range(args.changes):
                sid = ids[(n // 2) % 8 * 8]  # a "working" session: out to "CI failing", then back
                status, group = (("ci_failed", "ci") if n % 2 == 0 else ("working", "working"))
                page.evaluate(OBSERVE, [sid, group])  # installs the observer; returns at once
                t0 = time.time()
                store.update(sid, status=status, fact={"status": status, "activity": "active",
                                                       **({"pr_state": "open", "ci": "failing"} if n % 2 == 0 else {})})
                seen = page.evaluate("window.aoSeen")
                latencies.append(seen - t0 * 1000)
                time.sleep(0.1)
            print(f"status change on disk -> the browser: median {statistics.median(latencies):.0f} ms, "
                  f"p95 {pct(latencies, 0.95):.0f} ms, max {max(latencies):.0f} ms ({len(latencies)} changes)")

            tabs = [page]
            for tabs_wanted in (1, 10):
                while len(tabs) < tabs_wanted:
                    extra = context.new_page()
                    extra.goto(dash.base + "/")
                    extra.wait_for_selector("#live.on")
                    tabs.append(extra)
                assert httpx.get(dash.base + "/api/stats", cookies=client.cookies).json()["streams"] == tabs_wanted
                time.sleep(2)
                before = cpu_seconds(dash.proc.pid)
                time.sleep(args.quiet)
                used = cpu_seconds(dash.proc.pid) - before
                print(f"server CPU, {tabs_wanted} open tab{'s' if tabs_wanted > 1 else ''}, quiet "
                      f"{args.quiet:.0f} s: {used:.2f} s ({100 * used / args.quiet:.2f} % of one core)")
            browser.close()
    finally:
        dash.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
