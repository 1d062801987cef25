"""The webhook receiver served by ``ao start`` (SPEC 10: "webhooks were accepted unsigned" — not here).

Each project whose ``scm.webhook`` is configured gets a path (default ``/webhooks/<project>``). A delivery
must carry GitHub's ``X-Hub-Signature-256`` (HMAC-SHA256 of the raw body with the secret read from the
environment variable named by ``secretEnv``); anything else is refused before the body is parsed. Bodies
over ``maxBodyBytes`` are refused unread, and a body nested too deeply to parse is a 400. Delivery ids
(``X-GitHub-Delivery``) are deduplicated across restarts (``<dataDir>/webhooks/deliveries``), but only once
the signature and the body have been accepted: a forged or broken request cannot burn a real id. A good
delivery wakes the poller with the branches it concerns, so the affected sessions are observed at once.

Every connection has an overall deadline (``REQUEST_DEADLINE``), so a client drip-feeding its request a byte
at a time cannot hold a thread; a client hanging up mid-request is dropped quietly (no traceback).

Binds to the config's ``host`` (127.0.0.1 by default).
"""

from __future__ import annotations

import collections
import contextlib
import errno
import hashlib
import hmac
import json
import os
import socket
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

from ao.errors import AoError

DEFAULT_MAX_BODY = 1024 * 1024
SEEN_DELIVERIES = 10_000
REQUEST_DEADLINE = 30.0  # seconds for a whole request, however slowly it arrives
SEEN_FILE = Path("webhooks") / "deliveries"


class _Seen:
    """Delivery ids already accepted: the last SEEN_DELIVERIES, in memory and, when a file is given, on disk
    (one id per line, appended; compacted when it has grown to twice the limit), so a restart still knows."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.ids: collections.OrderedDict[str, None] = collections.OrderedDict()
        self.lines = 0
        if path is not None:
            try:
                for line in path.read_bytes().decode("utf-8", "replace").splitlines():
                    if line.strip():
                        self._remember(line.strip())
                        self.lines += 1
            except OSError:
                pass

    def __contains__(self, delivery: str) -> bool:
        return delivery in self.ids

    def _remember(self, delivery: str) -> None:
        self.ids[delivery] = None
        self.ids.move_to_end(delivery)
        while len(self.ids) > SEEN_DELIVERIES:
            self.ids.popitem(last=False)

    def add(self, delivery: str) -> None:
        self._remember(delivery)
        if self.path is None:
            return
        from ao import events
        from ao.ledger import atomic_write

        if self.lines >= 2 * SEEN_DELIVERIES:
            try:
                atomic_write(self.path, "".join(f"{d}\n" for d in self.ids))
                self.lines = len(self.ids)
            except AoError:
                pass
            return
        if events._append_line(self.path, delivery + "\n"):
            self.lines += 1


@dataclass
class Hook:
    project: str
    path: str
    secret: bytes
    max_body: int


def hooks_from_config(config: Any, env: dict[str, str] | None = None) -> list[Hook]:
    """The configured webhooks; AoError when a secret's environment variable is missing (no unsigned hooks)."""
    env = os.environ if env is None else env
    out = []
    for project in config.projects.values():
        settings = project.scm.get("webhook")
        if settings is None:
            continue
        var = settings.get("secretEnv")
        if not var:
            raise AoError(f"project '{project.id}': scm.webhook needs secretEnv, the environment variable holding "
                          "the webhook secret (unsigned webhooks are never accepted)")
        if not env.get(var):
            raise AoError(f"project '{project.id}': the webhook secret variable {var} is not set")
        out.append(Hook(project.id, settings.get("path") or f"/webhooks/{project.id}", env[var].encode(),
                        int(settings.get("maxBodyBytes") or DEFAULT_MAX_BODY)))
    paths = [h.path for h in out]
    if len(set(paths)) != len(paths):
        raise AoError("two projects use the same scm.webhook.path; give each its own")
    return out


def signature_ok(secret: bytes, body: bytes, header: str | None) -> bool:
    if not header or not header.startswith("sha256="):
        return False
    expected = "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode(), header.strip().encode("utf-8", "replace"))


def branches_of(event: str, payload: Any) -> list[str]:
    """The head branches a GitHub event is about (empty when it names none: the whole project is observed)."""
    if not isinstance(payload, dict):
        return []
    found = []
    pr = payload.get("pull_request")
    if isinstance(pr, dict) and isinstance(pr.get("head"), dict):
        found.append(pr["head"].get("ref"))
    for key in ("check_suite", "workflow_run"):
        item = payload.get(key)
        if isinstance(item, dict):
            found.append(item.get("head_branch"))
    run = payload.get("check_run")
    if isinstance(run, dict) and isinstance(run.get("check_suite"), dict):
        found.append(run["check_suite"].get("head_branch"))
    if event == "push" and isinstance(payload.get("ref"), str) and payload["ref"].startswith("refs/heads/"):
        found.append(payload["ref"][len("refs/heads/"):])
    return sorted({b for b in found if isinstance(b, str) and b})


class WebhookReceiver:
    """Checks and dispatches deliveries: ``on_delivery(project, event, branches)`` is called for each good
    one. Served by :class:`WebhookServer`, or on the dashboard's port when ``ao start`` serves both."""

    def __init__(self, hooks: list[Hook], on_delivery: Callable[[str, str, list[str]], None],
                 data_dir: Path | None = None) -> None:
        self.hooks = {h.path: h for h in hooks}
        self.on_delivery = on_delivery
        self._seen = _Seen(Path(data_dir) / SEEN_FILE if data_dir is not None else None)
        self._lock = threading.Lock()

    def hook_for(self, path: str) -> Hook | None:
        return self.hooks.get(path.split("?", 1)[0])

    def handle(self, path: str, headers: Any, stream: Any) -> tuple[int, str] | None:
        """(status, text) for one POST; None when the client went away before sending its whole body. The
        body is read only after the size check, parsed only when signed, its id marked only once parsed."""
        hook = self.hook_for(path)
        if hook is None:
            return 404, "no webhook here"
        try:
            length = int(headers.get("Content-Length", ""))
        except ValueError:
            return 411, "Content-Length required"
        if length < 0 or length > hook.max_body:
            return 413, f"body over {hook.max_body} bytes"
        try:
            body = stream.read(length)
        except OSError:
            return None
        if len(body) < length:
            return None
        if not signature_ok(hook.secret, body, headers.get("X-Hub-Signature-256")):
            return 401, "bad or missing X-Hub-Signature-256"
        event = headers.get("X-GitHub-Event") or ""
        try:
            payload = json.loads(body) if body else {}
        except RecursionError:
            return 400, "body is nested too deeply"
        except ValueError:
            return 400, "body is not JSON"
        delivery = headers.get("X-GitHub-Delivery") or ""
        with self._lock:
            if delivery and delivery in self._seen:
                return 200, "duplicate delivery ignored"
            if delivery:
                self._seen.add(delivery)
        if event == "ping":
            return 200, "pong"
        self.on_delivery(hook.project, event, branches_of(event, payload))
        return 202, "accepted"


class WebhookServer(WebhookReceiver):
    """A small threaded HTTP server for the receiver."""

    def __init__(self, hooks: list[Hook], on_delivery: Callable[[str, str, list[str]], None],
                 host: str = "127.0.0.1", port: int = 3000, data_dir: Path | None = None) -> None:
        super().__init__(hooks, on_delivery, data_dir)
        server = self

        class Handler(BaseHTTPRequestHandler):
            timeout = 10  # one read that stalls this long ends the request

            def setup(self) -> None:
                super().setup()
                # The whole request has a deadline too: a drip-feeding client is cut off when it passes.
                self._deadline = threading.Timer(REQUEST_DEADLINE, self._expire)
                self._deadline.daemon = True
                self._deadline.start()

            def _expire(self) -> None:
                with contextlib.suppress(OSError):
                    self.connection.shutdown(socket.SHUT_RDWR)

            def finish(self) -> None:
                self._deadline.cancel()
                with contextlib.suppress(OSError):
                    super().finish()

            def log_message(self, *args: Any) -> None:  # no per-request stderr noise
                pass

            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                answer = server.handle(self.path, self.headers, self.rfile)
                if answer is None:  # the client hung up (or ran out of time) mid-request: nobody to answer
                    self.close_connection = True
                    return
                code, text = answer
                body = (text + "\n").encode()
                self.send_response(code)
                self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:  # noqa: N802
                self.send_response(405)
                self.send_header("Content-Length", "0")
                self.end_headers()

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                """A client that hangs up or stalls is routine: no traceback on `ao start`'s console."""
                exc = sys.exc_info()[1]
                if isinstance(exc, (ConnectionError, TimeoutError, OSError)):
                    return
                sys.stderr.write(f"ao: webhook request failed: {type(exc).__name__}: {exc}\n")

        try:
            self.httpd = Server((host, port), Handler)
        except OSError as exc:
            # Never a free port instead: webhook senders are pointed at this one.
            hint = (": webhook senders are pointed at this port, so it never moves. Stop what serves on it, or "
                    "set `port:` in the config to a free port and point the senders there"
                    if exc.errno == errno.EADDRINUSE else "")
            raise AoError(f"cannot serve webhooks on {host}:{port}: {exc.strerror or exc}{hint}") from None
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.httpd.server_address[:2]
        return str(host), int(port)

    def start(self) -> "WebhookServer":
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="ao-webhooks", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
