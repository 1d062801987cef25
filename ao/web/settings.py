"""Where and how the dashboard is served: host, port, TLS, and the rule for exposing it beyond this machine.

The config's top-level ``host`` and ``port`` (SPEC 2) say where; the ``dashboard:`` mapping adds:

- ``tls: {certFile, keyFile}``: serve HTTPS (cookies become ``Secure``);
- ``allowPlainHttp: true``: the user knows a non-loopback host without TLS is exposed (also
  ``--allow-plain-http``);
- ``allowedHosts``: extra Host names requests may use (a DNS name of this machine, a reverse proxy's).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ao import paths
from ao.errors import AoError
from ao.web.auth import allowed_host_names, is_loopback

STATE_FILE = "dashboard.json"  # the URL (without its token) and pid of the dashboard serving this data dir now


@dataclass(frozen=True)
class ServeSettings:
    host: str
    port: int
    cert_file: Path | None = None
    key_file: Path | None = None
    allow_plain_http: bool = False
    allowed_hosts: tuple[str, ...] = ()
    # False when neither the config nor --port chose the port: the dashboard may then move to a free one
    port_fixed: bool = True

    @property
    def tls(self) -> bool:
        return self.cert_file is not None

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"

    @property
    def host_names(self) -> frozenset[str]:
        return allowed_host_names(self.host, self.allowed_hosts)

    def url(self, port: int | None = None, token: str | None = None, path: str = "/") -> str:
        """The URL a browser on this machine uses (a wildcard bind is reached through 127.0.0.1)."""
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else "[::1]" if self.host == "::" else self.host
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        return f"{self.scheme}://{host}:{port or self.port}{path}" + (f"?token={token}" if token else "")

    def check_exposure(self) -> None:
        """Refuse a non-loopback bind without TLS, unless the user said they know it is exposed."""
        if is_loopback(self.host) or self.tls or self.allow_plain_http:
            return
        raise AoError(
            f"refusing to serve the dashboard on {self.host}: that address is reachable from other machines and "
            "no TLS is configured, so the login token and every session would cross the network in clear text. "
            f"Reach it through an SSH tunnel instead (see {paths.doc('dashboard.md')}), configure dashboard.tls "
            "(certFile, keyFile), or, if you know this network is private, set dashboard.allowPlainHttp: true "
            "(or pass --allow-plain-http)")


def from_config(config: Any, host: str | None = None, port: int | None = None,
                allow_plain_http: bool = False) -> ServeSettings:
    raw = (config.data or {}).get("dashboard") or {}
    base = Path(config.file).resolve().parent
    tls = raw.get("tls") or {}
    cert = (base / Path(tls["certFile"]).expanduser()) if tls.get("certFile") else None
    key = (base / Path(tls["keyFile"]).expanduser()) if tls.get("keyFile") else None
    if (cert is None) != (key is None):
        raise AoError(f"{config.file}: dashboard.tls needs both certFile and keyFile")
    for path in (cert, key):
        if path is not None and not path.is_file():
            raise AoError(f"{config.file}: dashboard.tls: {path} does not exist")
    return ServeSettings(
        host=host or config.host, port=config.port if port is None else port, cert_file=cert, key_file=key,
        allow_plain_http=allow_plain_http or bool(raw.get("allowPlainHttp")),
        allowed_hosts=tuple(raw.get("allowedHosts") or ()),
        port_fixed=port is not None or "port" in (config.data or {}))
