"""A strict HTTP receiver on 127.0.0.1 for notification tests (and the outbox benchmark).

It accepts only the (method, path) pairs it is given, answering anything else with 405 or 404, and records
every accepted request. ``mode`` switches behaviour: ``ok`` (200), ``fail`` (500, echoing the request path and
headers, so tests can prove secrets are scrubbed from error messages), ``hang`` (no answer until
``release`` is set). ``stop()`` then ``start()`` again brings it back on the same port (an outage).
Waiting is by polling with a deadline, never a bare sleep, on a real clock even under freezegun.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

from httpkit import start_server, stop_server


def monotonic() -> float:
    """A real clock even while freezegun freezes time.monotonic (it does not touch clock_gettime)."""
    return time.clock_gettime(time.CLOCK_MONOTONIC)


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    @property
    def json(self) -> Any:
        return json.loads(self.body)


class Receiver:
    def __init__(self, routes: set[tuple[str, str]] | None = None, port: int = 0) -> None:
        self.routes = routes if routes is not None else {("POST", "/hook")}
        self.port = port
        self.mode = "ok"
        self.requests: list[Request] = []
        self.rejected: list[tuple[str, str, int]] = []
        self.release = threading.Event()
        self._cond = threading.Condition()
        self._server: ThreadingHTTPServer | None = None

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def start(self) -> "Receiver":
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as real services do

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                path = self.path
                if (self.command, path.split("?")[0]) not in receiver.routes:
                    known_path = any(p == path.split("?")[0] for _, p in receiver.routes)
                    self._reply(405 if known_path else 404, b"unexpected request")
                    with receiver._cond:
                        receiver.rejected.append((self.command, path, 405 if known_path else 404))
                    return
                if "json" in (self.headers.get("Content-Type") or ""):
                    try:
                        json.loads(body)
                    except ValueError:
                        self._reply(400, b"body is not JSON")
                        return
                mode = receiver.mode
                if mode == "hang":
                    receiver.release.wait(30)
                    return  # then drop the connection without an answer
                if mode == "fail":
                    echo = f"boom at {path} with {dict(self.headers)}".encode()
                    self._reply(500, echo)
                    return
                with receiver._cond:
                    receiver.requests.append(Request(self.command, path, dict(self.headers), body, monotonic()))
                    receiver._cond.notify_all()
                self._reply(200, b'{"ok": true}')

            def _reply(self, code: int, body: bytes) -> None:
                self.send_response(code)
                self.send_header("Content-Type", "application/json" if code == 200 else "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_DELETE = _handle

            def log_message(self, *args: Any) -> None:
                pass

        self._server = start_server(Handler, self.port)
        self.port = self._server.server_address[1]
        return self

    def stop(self) -> None:
        stop_server(self._server)
        self._server = None

    def wait_for(self, count: int, timeout: float = 5.0) -> list[Request]:
        """The requests, once there are at least ``count`` (AssertionError after ``timeout``)."""
        deadline = monotonic() + timeout
        with self._cond:
            while len(self.requests) < count:
                left = deadline - monotonic()
                if left <= 0:
                    raise AssertionError(f"expected {count} requests, got {len(self.requests)}")
                self._cond.wait(left)
            return list(self.requests)


def eventually(check: Callable[[], Any], timeout: float = 5.0, every: float = 0.02) -> Any:
    """Poll ``check`` until it returns something truthy; its value, or AssertionError at the deadline."""
    deadline = monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if monotonic() >= deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(every)
