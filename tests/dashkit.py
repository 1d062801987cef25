"""A real ``ao dashboard`` for tests: the CLI in a subprocess on port 0 over an :class:`sessionkit.AoEnv`, an
authenticated HTTP client for it, and Chromium (Debian's, through Playwright, never a downloaded one)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from sessionkit import AoEnv, wait_for

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
INSTALL = "install it with .ci/setup.d/40-chromium.sh (apt-get install chromium)"


@dataclass
class Dashboard:
    env: AoEnv
    proc: subprocess.Popen
    url: str                      # the login URL, token included
    log: Path
    _client: httpx.Client | None = field(default=None, repr=False)

    @property
    def base(self) -> str:
        return self.url.split("?", 1)[0].rstrip("/")

    @property
    def token(self) -> str:
        return self.url.split("token=", 1)[1]

    @property
    def host(self) -> str:
        return self.base.split("://", 1)[1]

    def client(self) -> httpx.Client:
        """Logged in (cookie), with the page's CSRF token in ``client.csrf``."""
        if self._client is None:
            c = httpx.Client(base_url=self.base, timeout=10)
            r = c.get(self.url)
            assert r.status_code == 303, r.text
            page = c.get("/")
            c.csrf = re.search(r'name="ao-csrf" content="([^"]+)"', page.text).group(1)  # type: ignore[attr-defined]
            self._client = c
        return self._client

    def post(self, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
        c = self.client()
        return c.post(path, json=body or {}, headers={"X-CSRF-Token": c.csrf, "Origin": self.base})  # type: ignore

    def stats(self) -> dict[str, Any]:
        return self.client().get("/api/stats").json()

    def stop(self) -> None:
        if self._client is not None:
            self._client.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_dashboard(env: AoEnv, *args: str) -> Dashboard:
    """``ao dashboard --port 0 --no-open`` in a subprocess; returns once it has printed its URL (to stderr)."""
    log = env.root / "dashboard.log"
    out = env.root / "dashboard.out"
    run_env = {k: v for k, v in env.env.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    with open(out, "w") as stdout, open(log, "w") as stderr:
        proc = subprocess.Popen([sys.executable, "-m", "ao", "dashboard", "--port", "0", "--no-open", *args],
                                cwd=env.root, env=run_env, stdout=stdout, stderr=stderr, text=True)
    try:
        line = wait_for(lambda: _url(log) or proc.poll() is not None, timeout=30, what="the dashboard's URL")
        if line is True:
            raise AssertionError(f"ao dashboard exited ({proc.returncode}): {log.read_text()}")
        board = Dashboard(env, proc, line, log)
        wait_for(lambda: _answers(board.base), timeout=15, what="the dashboard to answer")
        return board
    except BaseException:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        raise


def _url(log: Path) -> str | None:
    m = re.search(r"ao dashboard: (\S+)", log.read_text()) if log.exists() else None
    return m.group(1) if m else None


def _answers(base: str) -> bool:
    try:
        return httpx.get(base + "/", timeout=2, verify=False).status_code == 401
    except httpx.HTTPError:
        return False


def launch_chromium(playwright: Any) -> Any:
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)


def artifacts_dir(tmp_path_factory: Any) -> Path:
    """Where page screenshots go: $AO_TEST_ARTIFACTS, else ``dashboard-screenshots`` in pytest's base temp."""
    chosen = os.environ.get("AO_TEST_ARTIFACTS")
    folder = Path(chosen) if chosen else tmp_path_factory.getbasetemp() / "dashboard-screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    return folder
