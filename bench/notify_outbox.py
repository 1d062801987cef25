"""Benchmark: N notifications through the durable outbox to a webhook receiver on 127.0.0.1.

Usage: python bench/notify_outbox.py [--n 1000] [--runs 5] [--notifiers 1]

Each run starts from an empty data dir: enqueue N notifications (one fsynced file each), then one
``deliver_due`` pass posts them concurrently to a loopback HTTP receiver (a separate process, keep-alive,
answering 200), marking
each delivery on disk as it completes (one fsynced write each) and appending a ``notification.sent`` event.
Every run checks that the receiver got each notification exactly once, that every record ended in
``outbox/sent/``, and that there is one event per delivery. Reported: medians over the runs of the enqueue
rate, the delivery rate, and the end-to-end throughput (N deliveries / (enqueue + deliver) seconds).
"""

from __future__ import annotations

import argparse
import collections
import io
import json
import multiprocessing
import statistics
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from ao import events
from ao.notify import Notification, Notifier
from ao.outbox import Outbox

NOW = 1_767_258_000.0


def _serve(port_pipe: Any) -> None:
    """The receiver, in its own process so that it does not share the GIL with the outbox. POST /hook
    counts (id, notifier); GET /seen answers the counts; anything else is a 404."""
    seen: collections.Counter = collections.Counter()
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _answer(self, code: int, body: bytes = b"") -> None:
            self.send_response(code)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.path != "/hook":
                return self._answer(404)
            with lock:
                seen[json.loads(body)["id"] + " " + self.headers.get("X-Notifier", "")] += 1
            self._answer(200)

        def do_GET(self) -> None:
            if self.path != "/seen":
                return self._answer(404)
            with lock:
                self._answer(200, json.dumps(seen).encode())

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    port_pipe.send(server.server_address[1])
    server.serve_forever()


def start_receiver() -> tuple[multiprocessing.Process, int]:
    parent, child = multiprocessing.Pipe()
    process = multiprocessing.Process(target=_serve, args=(child,), daemon=True)
    process.start()
    return process, parent.recv()


def one_run(n: int, notifiers: int) -> tuple[float, float]:
    process, port = start_receiver()
    url = f"http://127.0.0.1:{port}/hook"
    names = [f"hook{i}" for i in range(notifiers)]
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        box = Outbox(data, {name: Notifier(name, "webhook", {"url": url, "headers": {"X-Notifier": name}}, timeout=10)
                            for name in names}, console=io.StringIO())
        notes = [Notification(id=f"bench-{i:05d}", type="agent-stuck", priority="urgent", session=f"app-{i}",
                              project="app", title=f"app-{i}: agent is stuck", body="The agent has been idle.",
                              pr_url=None, timestamp=NOW, notifiers=tuple(names)) for i in range(n)]
        t0 = time.perf_counter()
        for note in notes:
            box.enqueue(note, NOW)
        t1 = time.perf_counter()
        results = box.deliver_due(NOW)
        t2 = time.perf_counter()
        box.close()
        import httpx

        seen = httpx.get(f"http://127.0.0.1:{port}/seen").json()
        expected = {f"{note.id} {name}" for note in notes for name in names}
        problems = []
        if set(seen) != expected:
            problems.append(f"lost {len(expected - set(seen))}, unexpected {len(set(seen) - expected)}")
        if any(count != 1 for count in seen.values()):
            problems.append(f"duplicated {sum(1 for c in seen.values() if c != 1)}")
        if not all(r.ok for r in results) or len(results) != len(expected):
            problems.append(f"{sum(not r.ok for r in results)} failed, {len(results)} results")
        if len(list((data / "outbox" / "sent").glob("*.json"))) != n or list((data / "outbox").glob("*.json")):
            problems.append("records not all in outbox/sent/")
        if sum(e["type"] == "notification.sent" for e in events.read(data)) != len(expected):
            problems.append("events missing")
    process.terminate()
    process.join()
    if problems:
        raise SystemExit("FAILED: " + "; ".join(problems))
    return t1 - t0, t2 - t1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--notifiers", type=int, default=1, help="webhook notifiers per notification")
    args = parser.parse_args()
    runs = [one_run(args.n, args.notifiers) for _ in range(args.runs)]
    deliveries = args.n * args.notifiers
    enqueue = statistics.median(args.n / e for e, _ in runs)
    deliver = statistics.median(deliveries / d for _, d in runs)
    total = statistics.median(deliveries / (e + d) for e, d in runs)
    print(f"{args.n} notifications x {args.notifiers} notifier(s), median of {args.runs} runs; "
          "nothing lost, nothing duplicated")
    print(f"  enqueue  {enqueue:8.0f} notifications/s")
    print(f"  deliver  {deliver:8.0f} deliveries/s")
    print(f"  overall  {total:8.0f} deliveries/s (enqueue + deliver)")


if __name__ == "__main__":
    sys.exit(main())
