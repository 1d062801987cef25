"""Running the dashboard: uvicorn on a socket we bind ourselves (so the port is known before anything is
served, and port 0 works), in the foreground (``ao dashboard``) or in a thread beside the poll loop
(``ao start``), with the webhook receiver on the same port when ``ao start`` has one."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import io
import json
import os
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

from ao.errors import AoError
from ao.web.settings import STATE_FILE, ServeSettings
from ao.webhook import REQUEST_DEADLINE


def bind(settings: ServeSettings, fallback: bool = False) -> socket.socket:
    """A listening socket on the settings' host and port; with ``fallback``, a free port when that one is taken."""
    host = settings.host.strip("[]")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        try:
            sock = _listen(family, host, settings.port)
        except OSError as exc:
            if not (fallback and exc.errno == errno.EADDRINUSE):
                raise
            sock = _listen(family, host, 0)
    except OSError as exc:
        hint = (" (another program, or another repository's `ao start` or `ao dashboard`, serves on it: choose "
                "another port with `port:` in the config, or `ao dashboard --port N`)"
                if exc.errno == errno.EADDRINUSE else "")
        raise AoError(f"cannot serve the dashboard on {settings.host}:{settings.port}: "
                      f"{exc.strerror or exc}{hint}") from None
    sock.set_inheritable(False)
    return sock


def _listen(family: int, host: str, port: int) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    return sock


LOCK_FILE = "dashboard.lock"  # held (flock) by the process serving this data dir's dashboard, for as long as it serves


def _held(data_dir: Path) -> bool:
    """Whether a process holds this data dir's dashboard lock now. A lock, unlike a recorded pid, cannot go
    stale: the kernel drops it when its holder dies, however it dies, and a reused pid holds nothing."""
    import fcntl

    try:
        fd = os.open(Path(data_dir) / LOCK_FILE, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except OSError:
        return True
    finally:
        os.close(fd)


def _take_lock(data_dir: Path) -> int | None:
    """This data dir's dashboard lock, held (an fd to keep open while serving), or None if another holds it."""
    import fcntl

    Path(data_dir).mkdir(parents=True, exist_ok=True)
    fd = os.open(Path(data_dir) / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return fd
    except OSError:
        os.close(fd)
        return None


def serving(data_dir: Path) -> dict[str, Any] | None:
    """The record (``url``, ``pid``) of the dashboard serving ``data_dir`` now: only while its lock is held."""
    if not _held(data_dir):
        return None
    with contextlib.suppress(OSError, ValueError, AttributeError, KeyError, TypeError):
        state = json.loads((Path(data_dir) / STATE_FILE).read_text())
        if isinstance(state["url"], str) and isinstance(state["pid"], int):
            return state
    return None


class WebhookApp:
    """The webhook receiver as an ASGI app, for ``ao start`` serving it on the dashboard's port."""

    def __init__(self, receiver: Any) -> None:
        self.receiver = receiver

    def handles(self, path: str) -> bool:
        return self.receiver.hook_for(path) is not None

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        from starlette.concurrency import run_in_threadpool
        from starlette.datastructures import Headers

        headers = Headers(scope=scope)
        if scope["method"] != "POST":
            code, text = 405, "POST only"
        else:
            hook = self.receiver.hook_for(scope["path"])
            try:
                length = int(headers.get("content-length", ""))
            except ValueError:
                length = -1
            body = b""
            if 0 <= length <= hook.max_body:  # anything else is refused by handle() without reading it
                try:
                    body = await asyncio.wait_for(_body(receive, length), timeout=REQUEST_DEADLINE)
                except asyncio.TimeoutError:
                    body = b""  # a drip-feeding client: answered as an incomplete body
            answer = await run_in_threadpool(self.receiver.handle, scope["path"], headers, io.BytesIO(body))
            code, text = answer if answer is not None else (400, "incomplete body")
        data = (text + "\n").encode()
        await send({"type": "http.response.start", "status": code,
                    "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                                (b"content-length", str(len(data)).encode())]})
        await send({"type": "http.response.body", "body": data})


async def _body(receive: Any, length: int) -> bytes:
    body, more = b"", True
    while more and len(body) < length:
        message = await receive()
        if message["type"] != "http.request":
            break
        body += message.get("body", b"")
        more = message.get("more_body", False)
    return body


def _protocol() -> type:
    """uvicorn's h11 protocol with a deadline on each request's head (request line and headers): a client
    drip-feeding them is cut off when it passes (``REQUEST_DEADLINE``), as one drip-feeding a webhook body is
    (:class:`WebhookApp`). uvicorn has none of its own: its keep-alive timeout runs only between requests,
    and any byte received stops it. A request being answered (a stream) or a WebSocket is not cut off."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class HeadDeadline(H11Protocol):
        _head_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._arm()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._arm()  # for the next request's head

        def connection_lost(self, exc: Exception | None) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
            super().connection_lost(exc)

        def _arm(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
            if not self.transport.is_closing():
                self._head_timer = self.loop.call_later(REQUEST_DEADLINE, self._expire)

        def _expire(self) -> None:
            waiting = self.cycle is None or self.cycle.response_complete  # no head received since the timer
            if waiting and self.transport.get_protocol() is self and not self.transport.is_closing():
                self.transport.close()

    return HeadDeadline


class DashboardServer:
    """One served dashboard. ``run()`` in the foreground, or ``start()``/``stop()`` around other work."""

    def __init__(self, config: Any, settings: ServeSettings, *, receiver: Any = None,
                 tick: float | None = None) -> None:
        settings.check_exposure()
        self.config, self.settings = config, settings
        # One dashboard per data dir, decided by a lock taken before binding: two starting at once cannot both pass
        self._lock = _take_lock(config.data_dir)
        if self._lock is None:
            served = serving(config.data_dir) or {}
            where = f", at {served['url']} (pid {served['pid']})" if served else ""
            raise AoError(f"this data dir's dashboard is served already{where}: "
                          "`ao dashboard --print-url` prints its login URL")
        try:
            self._setup(config, settings, receiver, tick)
        except BaseException:
            if getattr(self, "sock", None) is not None:
                self.sock.close()
            self._unlock()
            raise

    def _setup(self, config: Any, settings: ServeSettings, receiver: Any, tick: float | None) -> None:
        import uvicorn

        from ao.web.app import create_app
        from ao.web.auth import load_token

        self.token = load_token(config.data_dir)
        # Webhook senders are pointed at one port: with a receiver, the port never moves.
        self.sock = bind(settings, fallback=not settings.port_fixed and receiver is None)
        self.port = self.sock.getsockname()[1]
        self.moved = settings.port not in (0, self.port)  # the port was taken, and a free one was chosen
        self.app = create_app(config, settings, self.token, webhooks=WebhookApp(receiver) if receiver else None,
                              tick=tick)
        self.server = uvicorn.Server(uvicorn.Config(
            self.app, log_level="warning", log_config=None, access_log=False, lifespan="on", ws="websockets-sansio",
            http=_protocol(), timeout_graceful_shutdown=2, server_header=False, date_header=False,
            ssl_certfile=str(settings.cert_file) if settings.cert_file else None,
            ssl_keyfile=str(settings.key_file) if settings.key_file else None))
        self._thread: threading.Thread | None = None

    def url(self, with_token: bool = True) -> str:
        return self.settings.url(self.port, self.token if with_token else None)

    @property
    def address(self) -> tuple[str, int]:
        return self.settings.host, self.port

    @property
    def watcher(self) -> Any:
        return self.app.app.state.watcher

    def _record(self) -> None:
        from ao.ledger import atomic_write

        with contextlib.suppress(AoError):
            atomic_write(Path(self.config.data_dir) / STATE_FILE,
                         json.dumps({"url": self.url(with_token=False), "pid": os.getpid()}) + "\n")

    def _forget(self) -> None:
        path = Path(self.config.data_dir) / STATE_FILE
        with contextlib.suppress(OSError, ValueError):
            if json.loads(path.read_text()).get("pid") == os.getpid():
                path.unlink()
        self._unlock()

    def _unlock(self) -> None:
        if self._lock is not None:
            os.close(self._lock)  # closing the only fd drops the flock
            self._lock = None

    def run(self) -> None:
        """Serve until SIGINT/SIGTERM."""
        self._record()
        try:
            self.server.run(sockets=[self.sock])
        finally:
            self._forget()
            self.sock.close()

    def start(self, timeout: float = 15.0) -> "DashboardServer":
        self._record()
        self._thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]},
                                        name="ao-dashboard", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise AoError("the dashboard server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(10)
        self._forget()
        self.sock.close()


def print_url(config: Any) -> str:
    """The login URL of the dashboard serving this data dir now."""
    from ao.web.auth import load_token

    state = serving(config.data_dir)
    if state is None:
        raise AoError(f"no dashboard is serving {config.data_dir} now: start one with `ao dashboard` (or `ao start`), "
                      "which prints its login URL")
    return f"{state['url']}?token={load_token(config.data_dir)}"


def can_open_browser() -> bool:
    """Whether a graphical browser can be opened here (never a text browser taking over the terminal)."""
    if sys.platform in ("darwin", "win32"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def open_browser(url: str) -> bool:
    if not can_open_browser():
        return False
    import webbrowser

    with contextlib.suppress(Exception):
        return bool(webbrowser.open(url, new=2))
    return False
