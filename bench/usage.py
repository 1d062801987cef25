"""Benchmark: reading token use for 100 live sessions, once per poll cycle (SPEC 12).

Usage: python bench/usage.py [--runs 7] [--sessions 100] [--messages 400]

Each session has a Claude Code transcript of --messages API messages (2 to 4 content-block entries each, tool
results in between, about 2 MB per session). Measured with the real UsageTracker, in a fresh data dir:

- "first": the first cycle, which reads every transcript whole (a restart with no usage file does the same);
- "quiet": a cycle in which nothing was written (one rglob and one stat per session);
- "busy": a cycle in which every session wrote one more message (only the new bytes are read);
- "restart": a new tracker on the saved offsets, then one busy cycle (nothing is read twice).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))


def main() -> None:
    from agent_records import ClaudeTranscript

    from ao.usage import Locations, UsageTracker

    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--sessions", type=int, default=100)
    parser.add_argument("--messages", type=int, default=400)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        loc = Locations(claude=root / ".claude", codex=root / ".codex", opencode=root / "oc.db")
        sessions, transcripts = [], []
        for i in range(args.sessions):
            ws = root / "ws" / f"app-{i}"
            ws.mkdir(parents=True)
            t = ClaudeTranscript(loc.claude, ws)
            for m in range(args.messages):
                t.user("tool result " + "x" * 2000)
                t.assistant(input=3, output=200 + m, cache_read=20000 + m * 100, cache_write=500, blocks=2 + m % 3)
            transcripts.append(t)
            sessions.append(SimpleNamespace(id=f"app-{i}", project="app", agent="claude-code", workspace=str(ws),
                                            terminal=False, created_at=0.0, role="worker"))
        size = sum(t.path.stat().st_size for t in transcripts)
        firsts, quiets, busies, restarts = [], [], [], []
        for run in range(args.runs):
            cfg = SimpleNamespace(data_dir=root / f"data{run}", prices={},
                                  projects={"app": SimpleNamespace(agent="claude-code", agent_config={})})

            def cycle(tracker: UsageTracker | None = None) -> float:
                """One poller cycle's usage work (a fresh tracker: after a restart), timed."""
                started = time.perf_counter()
                tracker = tracker or UsageTracker(cfg, loc)
                tracker.observe(sessions, 0)
                tracker.save()
                return time.perf_counter() - started

            def every_session_writes() -> None:
                for t in transcripts:
                    t.assistant(input=3, output=300, cache_read=60000, blocks=3)

            tracker = UsageTracker(cfg, loc)
            firsts.append(cycle(tracker))
            quiets.append(cycle(tracker))
            every_session_writes()
            busies.append(cycle(tracker))
            every_session_writes()
            restarts.append(cycle())
        ms = lambda xs: f"{statistics.median(xs) * 1000:.1f} ms"  # noqa: E731
        print(f"{args.sessions} sessions, {size / 2**20:.0f} MiB of transcripts, median of {args.runs}: "
              f"first {ms(firsts)}, quiet cycle {ms(quiets)}, busy cycle {ms(busies)}, "
              f"after a restart {ms(restarts)}")


if __name__ == "__main__":
    main()
