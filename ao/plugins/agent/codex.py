"""OpenAI Codex CLI (``codex``).

Launch: ``codex --no-daemon [permission flags] [-m M] "$(cat prompt)"``. ``--no-daemon``: by default Codex
starts a shared background app-server that outlives the tmux session (and a stale one made later sessions
hang). It is passed to 0.171 and newer only, not when the installed version cannot be read: a Codex that
does not know the flag exits at once ("unexpected argument", as ``--full-auto`` did), so ``ao doctor``'s
warning about the unreadable version is what is left. ``auto-edit`` is ``--sandbox workspace-write
--ask-for-approval on-request`` (``--full-auto`` is gone); ``plan`` is the read-only sandbox; ``skip``
bypasses approvals and the sandbox.

Activity and receipts come from Codex's rollout, ``$CODEX_HOME/sessions/YYYY/MM/DD/rollout-*.jsonl``, whose
first line (``session_meta``) names the working folder: ``task_started`` (a turn runs), ``task_complete``
(done; with ``codex_error_info: usage_limit_exceeded`` -> ``blocked``), ``turn_aborted``, and
``item_completed`` UserMessage items, the receipt of a message. Approval and trust dialogs are not in the
rollout: the screen shows them. A restore resumes that rollout's session by id (``codex resume ID``), or
launches afresh with the prompt when the workspace has none (``resume --last`` would open an empty session).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ao.activity import Screen, Signals, merge, pattern, shows_input_box, terminal_activity
from ao.agentfiles import open_regular, own_file, read_regular
from ao.plugins.agent import Activity, BaseAgent, LaunchContext, Observation
from ao.plugins.agent.command import (
    installed_version, iso_time, join, model_flags, permission_flags, prompt_argument,
    read_new_lines, same_text, version_at_least,
)

PERMISSION_FLAGS = {
    "skip": ["--dangerously-bypass-approvals-and-sandbox"],
    "auto-edit": ["--sandbox", "workspace-write", "--ask-for-approval", "on-request"],
    "plan": ["--sandbox", "read-only", "--ask-for-approval", "on-request"],
}
CHECKED = "0.171.0"          # the version these signals were checked against (ao doctor compares it)
NO_DAEMON_SINCE = (0, 171)   # not for an unknown version: a flag it may not know would end every launch
ROLLOUT_DAYS = 3          # day folders searched for a session's rollout (newest first)
LIMIT_ERRORS = {"usage_limit_exceeded": "usage limit"}


def _input_box(lines: list[str]) -> bool:
    """Codex's composer: the last ``›`` line, near the bottom, that is not a menu's cursor."""
    for line in reversed(lines[-5:]):
        if line.startswith("›"):
            return not re.match(r"^›\s*\d{1,2}[.)]\s", line)
    return False


SCREEN = Screen(
    agent="Codex",
    limits=(pattern("usage limit", r"\bYou['’]ve hit your usage limit\b", 6),),
    input_box=_input_box,
    generic_limits=(),
)


def fold(state: dict[str, Any], entry: dict[str, Any]) -> dict[str, Any]:
    payload = entry.get("payload")
    if entry.get("type") != "event_msg" or not isinstance(payload, dict):
        return state
    kind = payload.get("type")
    state = dict(state)
    if kind == "task_started":
        state.update(turn="running", error=None)
    elif kind == "task_complete":
        error = payload.get("error")
        info = error.get("codex_error_info") if isinstance(error, dict) else None
        state.update(turn="done", error=info if isinstance(info, str) else ("error" if error else None))
    elif kind == "turn_aborted":
        state.update(turn="aborted", error=None)
    return state


def _user_text(entry: dict[str, Any]) -> str | None:
    payload = entry.get("payload")
    if entry.get("type") != "event_msg" or not isinstance(payload, dict) or payload.get("type") != "item_completed":
        return None
    item = payload.get("item")
    if not isinstance(item, dict) or item.get("type") != "UserMessage" or not isinstance(item.get("content"), list):
        return None
    return "".join(c.get("text", "") for c in item["content"] if isinstance(c, dict) and isinstance(c.get("text"), str))


@dataclass
class Codex(BaseAgent):
    home_dir: Path | str | None = None
    name: str = "codex"
    program: str = "codex"

    @property
    def screen(self) -> Screen:
        return SCREEN

    def prompt_delivery(self, settings: dict[str, Any]) -> str:
        return "argument"

    def home(self, own: Path | None = None) -> Path:
        """$CODEX_HOME: in the session's own home when it has one (a container's), else ao's."""
        if own is not None:
            return own / ".codex"
        return Path(self.home_dir or os.environ.get("CODEX_HOME") or Path.home() / ".codex").expanduser()

    # -- launching ----------------------------------------------------------------------------------

    def prepare(self, ctx: LaunchContext) -> None:
        if ctx.settings.get("trustWorkspace") and ctx.created_workspace:
            self.trust(ctx.workspace, ctx.home)

    def trust(self, workspace: Path, own: Path | None = None) -> None:
        """Mark a workspace ao created as trusted in ``$CODEX_HOME/config.toml`` (``trustWorkspace``): a
        section is added when the file has none for this folder; an existing choice is left alone. A
        config.toml that links elsewhere (dotfiles) is updated where it points; one that does not parse as
        TOML (or is a fifo) is not read or written."""
        import tomllib

        from ao.ledger import atomic_write

        # The user's own file: follow a dotfiles link to the file itself, and replace that. In the session's
        # own home (the agent's) no link is followed: read_regular reads none, atomic_write writes none.
        path = own_file(own, self.home(own) / "config.toml") if own is not None else \
            (self.home() / "config.toml").resolve()
        try:
            text = read_regular(path).decode("utf-8")
            projects = tomllib.loads(text).get("projects", {})
        except (OSError, ValueError):
            return  # unreadable: never rewrite a user's config we cannot parse
        if str(workspace) in projects:
            return
        section = f'\n[projects.{json.dumps(str(workspace))}]\ntrust_level = "trusted"\n'
        try:
            mode = path.stat().st_mode & 0o777  # it may hold tokens (MCP servers' env): keep it private
        except FileNotFoundError:
            mode = 0o600
        atomic_write(path, text + ("\n" if text and not text.endswith("\n") else "") + section, mode)

    def can_resume(self, ctx: LaunchContext) -> bool:
        return self.rollout(ctx.workspace, own=ctx.home) is not None

    def launch_command(self, ctx: LaunchContext) -> str:
        flags = permission_flags(self.name, ctx.settings, PERMISSION_FLAGS) + model_flags(ctx.settings, "-m")
        if version_at_least(installed_version(self.program), NO_DAEMON_SINCE, unknown=False):
            flags = ["--no-daemon", *flags]
        # a restore is a resume only when can_resume found a rollout (`resume --last` would open an empty
        # session); the resumed conversation keeps its history, but approvals and model are per process
        if ctx.resume and (found := self.rollout(ctx.workspace, own=ctx.home)):
            return join(["codex", "resume", *flags, found[2]])
        return f"{join(['codex', *flags])} {prompt_argument(ctx.prompt_file, ctx.workspace)}"

    # -- observing ----------------------------------------------------------------------------------

    def rollout(self, workspace: Path, since: float = 0.0, own: Path | None = None) -> tuple[Path, float, str] | None:
        """(path, mtime, session id) of the newest rollout whose session works in ``workspace``."""
        root = self.home(own) / "sessions"
        wanted = {str(workspace), str(workspace.resolve())}
        try:
            days = sorted(root.glob("*/*/*"), reverse=True)[:ROLLOUT_DAYS]
        except OSError:
            return None
        best: tuple[Path, float, str] | None = None
        for day in days:
            for path in day.glob("rollout-*.jsonl"):
                try:
                    mtime = path.stat().st_mtime
                except OSError:
                    continue
                if mtime < since or (best is not None and mtime <= best[1]):
                    continue
                meta = _first_line(path)
                payload = meta.get("payload") if isinstance(meta, dict) else None
                if isinstance(payload, dict) and payload.get("cwd") in wanted and isinstance(payload.get("id"), str):
                    best = (path, mtime, payload["id"])
        return best

    def _rollout_for(self, obs: Observation) -> tuple[Path, float] | None:
        known = obs.memo.get("codex_rollout")
        if isinstance(known, str):
            try:
                return Path(known), Path(known).stat().st_mtime
            except OSError:
                pass
        found = self.rollout(obs.workspace, since=obs.started_at - 60, own=obs.home)
        return (found[0], found[1]) if found else None

    def interrupt_keys(self) -> list[str]:
        return ["Escape"]  # Esc interrupts Codex's turn ("esc to interrupt")

    def activity(self, obs: Observation) -> Activity:
        term = terminal_activity(obs, SCREEN)
        if term.state == "exited":
            return term
        found = self._rollout_for(obs)
        if found is None:
            return term
        path, mtime = found
        memo = obs.memo.get("codex") if isinstance(obs.memo.get("codex"), dict) else {}
        state = dict(memo) if memo.get("file") == str(path) else {"file": str(path), "offset": 0}
        entries, state["offset"] = read_new_lines(path, int(state.get("offset") or 0))
        for entry in entries:
            state = fold(state, entry)
        sig = Signals(memo={"codex_rollout": str(path), "codex": state})
        turn, error = state.get("turn"), state.get("error")
        if turn == "running":
            sig.state, sig.at, sig.detail = "active", mtime, "turn in progress"
        elif turn == "done" and error in LIMIT_ERRORS:
            sig.state, sig.at, sig.detail = "blocked", mtime, f"Codex: {LIMIT_ERRORS[error]} ({error})"
        elif turn in ("done", "aborted"):
            sig.state, sig.at = "ready", mtime
            sig.detail = "turn interrupted" if turn == "aborted" else ("turn failed" if error else "turn finished")
        return merge(obs, term, sig)

    def not_ready(self, obs: Observation, activity: Activity) -> str | None:
        """Codex queues a message typed during a turn and records it only once that turn ends, so a message
        waits for the turn to finish (its receipt then comes at once)."""
        if activity.detail == "turn in progress":
            return "Codex is in the middle of a turn"
        if obs.pane is not None and shows_input_box(obs.pane, SCREEN) is False:
            return "Codex does not show its input box"
        return None

    # -- delivery -----------------------------------------------------------------------------------

    def receipt(self, obs: Observation, text: str) -> Callable[[], bool] | None:
        found = self._rollout_for(obs)
        if found is None or text.lstrip().startswith("/"):
            return None  # a slash command runs in the TUI, not as a message (and /exit ends it): the pane
        path = found[0]
        pos = {"offset": path.stat().st_size if path.exists() else 0}

        def received() -> bool:
            entries, pos["offset"] = read_new_lines(path, pos["offset"])
            return any(same_text(_user_text(e), text) for e in entries)

        return received

    def received_since(self, workspace: Path, run_dir: Path, text: str, since: float,
                       home: Path | None = None) -> bool | None:
        """After a crash while typing: whether the rollout has ``text`` as a UserMessage from ``since`` on."""
        found = self.rollout(workspace, since=since - 60, own=home)
        if found is None:
            return None
        entries, _ = read_new_lines(found[0], 0)
        return any(same_text(_user_text(e), text) and (iso_time(e.get("timestamp")) or 0) >= since - 1
                   for e in entries)


def _first_line(path: Path) -> dict[str, Any] | None:
    try:
        with open_regular(path) as f:
            line = f.readline(1 << 20)
        value = json.loads(line)
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def plugin(**options: Any) -> Codex:
    return Codex(**options)
