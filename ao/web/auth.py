"""The dashboard's security primitives, free of any web framework (so they are tested directly).

- **The token**: 32 random bytes per data dir in ``<dataDir>/dashboard.token``, mode 0600, created with
  ``O_EXCL`` so two servers starting at once agree on one. A file others can read is replaced (its token may
  have leaked). The printed URL carries it once; ``ao dashboard --print-url`` prints it again.
- **The session cookie**: ``<issued>.<nonce>.<mac>``, an HMAC under a key derived from the token, so it
  survives a server restart and dies with the token. HttpOnly, SameSite=Strict, Secure under TLS. Its name
  is derived from the token too: cookies are not scoped by port, so two data dirs served on one host must
  not overwrite each other's.
- **CSRF**: a token per session (an HMAC of the session nonce) that pages carry and every state-changing
  request sends back in a header; a custom header also forces a CORS preflight no foreign page gets past.
- **Host and Origin**: the Host header must name this machine's loopback or a configured name (DNS
  rebinding); an Origin, when sent, must be exactly this server's own.
- **Login rate limit**: failed token attempts per client in a sliding window.
"""

from __future__ import annotations

import base64
import collections
import hashlib
import hmac
import ipaddress
import os
import secrets
import threading
import time
from pathlib import Path
from typing import Callable
from urllib.parse import urlsplit

from ao.errors import AoError

TOKEN_FILE = "dashboard.token"
SESSION_MAX_AGE = 30 * 86400     # a browser logs in again after a month
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


# ----------------------------------------------------------------------------------------------- token

def token_path(data_dir: Path) -> Path:
    return Path(data_dir) / TOKEN_FILE


def load_token(data_dir: Path) -> str:
    """This data dir's dashboard token, created (0600) on first use."""
    path = token_path(data_dir)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            info = path.stat()
        except FileNotFoundError:
            info = None
        if info is not None and (info.st_mode & 0o077 or info.st_uid != os.getuid()):
            path.unlink()  # readable by others: it may have leaked, so it is never used again
            info = None
        if info is None:
            _create(path)
        token = path.read_text(encoding="ascii").strip()
    except OSError as exc:
        raise AoError(f"{path}: cannot read or create the dashboard token: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        token = ""
    if len(token) < 32:
        raise AoError(f"{path}: not a dashboard token; remove it and a new one is made")
    return token


def _create(path: Path) -> None:
    token = secrets.token_urlsafe(32)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, (token + "\n").encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)  # never over a token another server made meanwhile
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)


# ------------------------------------------------------------------------------------- cookies and CSRF

def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class Auth:
    def __init__(self, token: str, *, secure: bool = False, clock: Callable[[], float] = time.time) -> None:
        self._token = token.encode()
        self._key = hmac.new(self._token, b"ao-dashboard-session-key", hashlib.sha256).digest()
        self.secure = secure
        self.clock = clock
        self.cookie_name = "ao_" + hashlib.sha256(self._token).hexdigest()[:12]

    def token_ok(self, candidate: str | None) -> bool:
        return bool(candidate) and hmac.compare_digest(candidate.strip().encode(), self._token)

    def _mac(self, text: str) -> str:
        return _b64(hmac.new(self._key, text.encode(), hashlib.sha256).digest())

    def new_session(self) -> str:
        """A fresh cookie value."""
        body = f"{int(self.clock())}.{secrets.token_urlsafe(16)}"
        return f"{body}.{self._mac('session:' + body)}"

    def session_id(self, cookie: str | None) -> str | None:
        """The session nonce of a valid, unexpired cookie; None otherwise."""
        if not cookie or cookie.count(".") != 2:
            return None
        issued, nonce, mac = cookie.split(".")
        body = f"{issued}.{nonce}"
        if not hmac.compare_digest(mac.encode(), self._mac("session:" + body).encode()):
            return None
        if not issued.isdigit() or not 0 <= self.clock() - int(issued) < SESSION_MAX_AGE:
            return None
        return nonce

    def set_cookie(self, value: str) -> str:
        """The Set-Cookie header value for a session cookie."""
        return (f"{self.cookie_name}={value}; Path=/; Max-Age={SESSION_MAX_AGE}; HttpOnly; SameSite=Strict"
                + ("; Secure" if self.secure else ""))

    def csrf(self, session: str) -> str:
        return self._mac("csrf:" + session)

    def csrf_ok(self, session: str, candidate: str | None) -> bool:
        return bool(candidate) and hmac.compare_digest(candidate.encode(), self.csrf(session).encode())


# ------------------------------------------------------------------------------------------ Host, Origin

def split_host(value: str) -> tuple[str, str]:
    """(host name, port text) of a Host header (``[::1]:3000`` -> ``::1``, ``3000``); lower-cased name."""
    value = value.strip().lower()
    if value.startswith("["):
        name, _, rest = value[1:].partition("]")
        return name, rest[1:] if rest.startswith(":") else ""
    name, _, port = value.partition(":") if value.count(":") == 1 else (value, "", "")
    return name, port


def is_loopback(host: str) -> bool:
    if host.lower() in ("localhost",):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def allowed_host_names(bind_host: str, extra: list[str] | tuple[str, ...] = ()) -> frozenset[str]:
    """Host names a request may address: the loopback names, the bound address unless it is a wildcard,
    and names the config adds (a DNS name for a TLS-served dashboard, a reverse proxy's)."""
    names = set(LOOPBACK_NAMES)
    if bind_host not in ("0.0.0.0", "::", ""):
        names.add(bind_host.strip("[]").lower())
    names.update(n.strip().lower() for n in extra if n.strip())
    return frozenset(names)


def host_ok(header: str | None, allowed: frozenset[str]) -> bool:
    """The Host header names this server. Any port: an SSH tunnel forwards from another local port."""
    if not header:
        return False
    name, port = split_host(header)
    return name in allowed and (port == "" or port.isdigit())


def origin_ok(origin: str | None, scheme: str, host_header: str | None) -> bool:
    """An Origin header, when present, is this very server (scheme and host:port as the browser sees it)."""
    if origin is None:
        return True  # not a cross-origin request from a browser (browsers send Origin on those)
    if origin == "null" or not host_header:
        return False
    parts = urlsplit(origin)
    return parts.scheme == scheme and parts.netloc.lower() == host_header.strip().lower()


# ------------------------------------------------------------------------------------------ rate limiting

class LoginLimiter:
    """At most ``limit`` failed logins per client in ``window`` seconds; after that, refused until the oldest
    failure leaves the window. (Tokens are 256 bits: this keeps logs and CPU quiet, not the token safe.)"""

    def __init__(self, limit: int = 10, window: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit, self.window, self.clock = limit, window, clock
        self._failures: dict[str, collections.deque[float]] = {}
        self._lock = threading.Lock()

    def retry_after(self, client: str) -> float:
        """Seconds this client must wait before trying again (0: it may try now)."""
        with self._lock:
            q = self._prune(client)
            return 0.0 if len(q) < self.limit else max(0.0, q[0] + self.window - self.clock())

    def failed(self, client: str) -> None:
        with self._lock:
            self._prune(client).append(self.clock())
            if len(self._failures) > 10_000:  # many clients: forget the quiet ones
                for key in [k for k, q in self._failures.items() if not q]:
                    del self._failures[key]

    def _prune(self, client: str) -> collections.deque[float]:
        q = self._failures.setdefault(client, collections.deque())
        while q and q[0] <= self.clock() - self.window:
            q.popleft()
        return q
