"""opencode (``opencode``).

Launch: ``opencode --port N [--auto] [--model provider/model] --prompt "$(cat prompt)"``. ``skip`` is
``--auto`` (auto-approve permissions that are not explicitly denied); a ``--model`` without ``provider/`` is
silently ignored by opencode, so ao refuses it up front. The TUI embeds an HTTP server on 127.0.0.1:N, which
ao protects with a random password per session (``OPENCODE_SERVER_PASSWORD``; port and password live in the
run folder, mode 0600) and uses:

* ``GET /session/status`` -> busy / retry (a rate limit: ``blocked``) / idle, per session of the folder;
* ``GET /permission`` -> pending permission requests: ``waiting_input`` with the command asked for;
* ``POST /session/{id}/prompt_async`` -> delivers a message without typing; the receipt is the user
  message appearing in ``GET /session/{id}/message``.

When the server does not answer (an older or newer opencode), the screen decides and messages are typed.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ao.activity import Screen, Signals, merge, pattern, terminal_activity
from ao.agentfiles import open_regular
from ao.errors import AoError
from ao.ledger import atomic_write
from ao.plugins.agent import Activity, BaseAgent, LaunchContext, Observation
from ao.plugins.agent.command import join, model_flags, permission_flags, prompt_argument, same_text

PERMISSION_FLAGS = {"skip": ["--auto"]}
SERVER = "opencode-server.json"   # {"port": N, "password": "..."} in the run folder
CHECKED = "1.18.33"          # the version these signals were checked against (ao doctor compares it)
TIMEOUT = 2.0


def _input_box(lines: list[str]) -> bool:
    """opencode's input box ends with a ``╹▀▀▀`` line just above its footer."""
    return any(line.lstrip().startswith("╹▀") for line in lines[-3:])


SCREEN = Screen(
    agent="opencode",
    dialogs=(pattern("permission prompt", r"^△ Permission required\b"),
             pattern("permission prompt", r"\bAllow once\s+Allow always\s+Reject\b", 4)),
    limits=(pattern("rate limit", r"\brate limit\b[^\n]*\[retrying in\b", 3, re.IGNORECASE),),
    input_box=_input_box,
)


def newest_stored_session(workspace: Path, own: Path | None = None) -> str | None:
    """The newest session of ``workspace`` in opencode's SQLite store (``$XDG_DATA_HOME/opencode/opencode.db``,
    in the session's own home when it has one), or None (no store, no session, or a schema this version of ao
    does not know)."""
    import sqlite3

    from ao.agentfiles import query_store

    if own is not None:
        data = own / ".local" / "share"
    else:
        data = Path(os.environ["XDG_DATA_HOME"]) if os.environ.get("XDG_DATA_HOME") else \
            Path.home() / ".local" / "share"
    dirs = list(dict.fromkeys([str(workspace), str(workspace.resolve())]))
    try:
        rows = query_store(data / "opencode" / "opencode.db",
                           f"SELECT id FROM session WHERE directory IN ({','.join('?' * len(dirs))}) "
                           "AND parent_id IS NULL ORDER BY time_updated DESC LIMIT 1", dirs, agents_own=own is not None)
    except (sqlite3.Error, OSError):
        return None
    return str(rows[0][0]) if rows and rows[0][0] else None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerError(Exception):
    """The embedded server did not answer as expected (not up yet, gone, or another API version)."""


class MaybeDelivered(ServerError):
    """A request reached the server but its answer did not come back (a read timeout, a dropped connection):
    the server may have acted on it. For a prompt that means it must not be typed in as well."""


@dataclass
class Server:
    """The TUI's embedded server for one session's folder."""

    port: int
    password: str
    directory: Path

    def get(self, path: str) -> Any:
        return self._call("GET", path)

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        import httpx

        try:
            response = httpx.request(method, f"http://127.0.0.1:{self.port}{path}",
                                     params={"directory": str(self.directory)}, json=body,
                                     auth=("opencode", self.password), timeout=TIMEOUT)
            response.raise_for_status()
            return response.json() if response.content else None
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.HTTPStatusError, ValueError) as exc:
            # nothing was sent, or the server answered and refused: it did not act on the request
            raise ServerError(f"opencode's server on port {self.port}: {exc}") from None
        except httpx.HTTPError as exc:
            # sent, but no answer came back (a server busy restoring a session answers slowly)
            raise MaybeDelivered(f"opencode's server on port {self.port} did not answer: {exc}") from None

    def session(self) -> str | None:
        """The folder's newest session."""
        sessions = self.get("/session")
        if not isinstance(sessions, list):
            return None
        known = [s for s in sessions if isinstance(s, dict) and isinstance(s.get("id"), str)]
        known.sort(key=lambda s: (s.get("time") or {}).get("updated", 0) if isinstance(s.get("time"), dict) else 0)
        return known[-1]["id"] if known else None

    def prompt(self, session: str, text: str) -> None:
        self._call("POST", f"/session/{session}/prompt_async", {"parts": [{"type": "text", "text": text}]})

    def user_texts(self, session: str, since: float = 0.0) -> list[str]:
        """The user messages of a session (created at or after ``since``, epoch s), oldest first."""
        messages = self.get(f"/session/{session}/message")
        out = []
        for m in messages if isinstance(messages, list) else []:
            info = m.get("info") if isinstance(m, dict) else None
            created = (info.get("time") or {}).get("created") if isinstance(info, dict) and isinstance(
                info.get("time"), dict) else None
            if isinstance(info, dict) and info.get("role") == "user" and (
                    not since or not isinstance(created, (int, float)) or created >= since * 1000 - 1000):
                out.append("".join(p.get("text", "") for p in m.get("parts", [])
                                   if isinstance(p, dict) and p.get("type") == "text"))
        return out


@dataclass
class OpenCode(BaseAgent):
    name: str = "opencode"

    @property
    def screen(self) -> Screen:
        return SCREEN

    def prompt_delivery(self, settings: dict[str, Any]) -> str:
        return "argument"

    def prepare(self, ctx: LaunchContext) -> None:
        model = ctx.settings.get("model")
        if model and "/" not in str(model).strip("/"):
            raise AoError(f"agentConfig.model '{model}': opencode needs 'provider/model' (e.g. "
                          "'anthropic/claude-sonnet-4'); without the provider it silently uses its default model")
        if ctx.run_dir is not None:
            server = {"port": free_port(), "password": secrets.token_urlsafe(24)}
            known = self._stored_session(ctx.run_dir)
            if known:  # a relaunch keeps the conversation a later restore continues
                server["session"] = known
            atomic_write(ctx.run_dir / SERVER, json.dumps(server), 0o600)
            ctx.env["OPENCODE_SERVER_PASSWORD"] = server["password"]

    def can_resume(self, ctx: LaunchContext) -> bool:
        return self._stored_session(ctx.run_dir, ctx.workspace, ctx.home) is not None

    def launch_command(self, ctx: LaunchContext) -> str:
        argv = ["opencode", *permission_flags(self.name, ctx.settings, PERMISSION_FLAGS), *model_flags(ctx.settings)]
        server = self._server_file(ctx.run_dir)
        if server:
            argv += ["--port", str(server["port"])]
        # a restore is a resume only when can_resume found a session; no session: a fresh launch with the prompt
        if ctx.resume and (session := self._stored_session(ctx.run_dir, ctx.workspace, ctx.home)):
            return join([*argv, "--session", session])
        return f"{join(argv)} --prompt {prompt_argument(ctx.prompt_file, ctx.workspace)}"

    @staticmethod
    def _server_file(run_dir: Path | None) -> dict[str, Any] | None:
        if run_dir is None:
            return None
        try:
            with open_regular(run_dir / SERVER) as f:
                data = json.loads(f.read(1 << 16))
        except (OSError, ValueError):
            return None
        if isinstance(data, dict) and isinstance(data.get("port"), int) and isinstance(data.get("password"), str):
            return data
        return None

    def _stored_session(self, run_dir: Path | None, workspace: Path | None = None,
                        own: Path | None = None) -> str | None:
        """The session a restore continues: the one ao saw through the server, else (the agent exited before
        ao observed it) the folder's newest session in opencode's own store."""
        data = self._server_file(run_dir)
        session = data.get("session") if data else None
        if isinstance(session, str):
            return session
        return newest_stored_session(workspace, own) if workspace is not None else None

    def server(self, obs: Observation) -> Server | None:
        data = self._server_file(obs.run_dir)
        return Server(data["port"], data["password"], obs.workspace) if data else None

    def _remember(self, obs: Observation, session: str) -> None:
        """Keep the session id for a restore (``--session``)."""
        data = self._server_file(obs.run_dir)
        if obs.run_dir is None or data is None or data.get("session") == session:
            return
        data["session"] = session
        atomic_write(obs.run_dir / SERVER, json.dumps(data), 0o600)

    def interrupt_keys(self) -> list[str]:
        return ["Escape", "Escape"]  # opencode asks for Esc twice ("esc again to interrupt")

    def activity(self, obs: Observation) -> Activity:
        term = terminal_activity(obs, SCREEN)
        if term.state == "exited":
            return term
        server = self.server(obs)
        sig = Signals()
        if server is not None:
            try:
                pending = server.get("/permission")
                status = server.get("/session/status")
                if self._stored_session(obs.run_dir) is None and (session := server.session()):
                    self._remember(obs, session)  # a restore continues it (`--session`), not a fresh launch
            except ServerError:  # not up yet, gone, or a different API: the screen decides
                return term
            if isinstance(pending, list) and pending:
                first = pending[0] if isinstance(pending[0], dict) else {}
                patterns = first.get("patterns") if isinstance(first.get("patterns"), list) else []
                what = f"{first.get('permission', 'a tool')}: {' '.join(str(p) for p in patterns)[:100]}"
                sig.state, sig.detail = "waiting_input", f"opencode permission prompt: {what}"
            elif isinstance(status, dict):
                states = [v for v in status.values() if isinstance(v, dict)]
                retry = next((v for v in states if v.get("type") == "retry"), None)
                if retry is not None and "rate" in str(retry.get("message", "")).lower():
                    sig.state, sig.detail = "blocked", f"opencode: {retry.get('message')} (retrying)"
                elif any(v.get("type") in ("busy", "retry") for v in states):
                    sig.state, sig.detail = "active", "turn in progress"
                else:
                    sig.state, sig.detail = "ready", "turn finished"
                sig.at = term.at
        return merge(obs, term, sig)

    # -- delivery -----------------------------------------------------------------------------------

    def deliver(self, obs: Observation, text: str) -> bool:
        """Through the server, never typed: it cannot answer a dialog by accident."""
        server = self.server(obs)
        if server is None or text.lstrip().startswith("/"):
            return False  # a slash command is the TUI's own, so it is typed
        try:
            session = server.session()
        except ServerError:
            return False
        if session is None:
            return False
        try:
            server.prompt(session, text)
        except MaybeDelivered:
            pass  # it may have arrived: never type it as well; the receipt decides
        except ServerError:
            return False
        self._remember(obs, session)
        return True

    def receipt(self, obs: Observation, text: str) -> Callable[[], bool] | None:
        server = self.server(obs)
        if server is None or text.lstrip().startswith("/"):
            return None
        try:
            session = server.session()
            before = len(server.user_texts(session)) if session else 0
        except ServerError:
            return None
        if session is None:
            return None

        def received() -> bool:
            try:
                texts = server.user_texts(session)
            except ServerError:
                return False
            return any(same_text(t, text) for t in texts[before:])

        return received

    def received_since(self, workspace: Path, run_dir: Path, text: str, since: float,
                       home: Path | None = None) -> bool | None:
        """After a crash while typing: whether the session has ``text`` as a user message from ``since`` on."""
        data = self._server_file(run_dir)
        if data is None:
            return None
        server = Server(data["port"], data["password"], workspace)
        try:
            session = server.session()
            return session is not None and any(same_text(t, text) for t in server.user_texts(session, since))
        except ServerError:
            return None


def plugin(**options: Any) -> OpenCode:
    return OpenCode(**options)
