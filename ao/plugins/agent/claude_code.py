"""Claude Code (``claude``), the default agent.

Activity comes from Claude Code's own session log when there is one, combined with the terminal:

* Claude Code appends every message of a conversation to
  ``<config dir>/projects/<cwd with each non-alphanumeric character replaced by '-'>/<session uuid>.jsonl``
  (config dir: the ``config_dir`` option, else ``$CLAUDE_CONFIG_DIR``, else ``~/.claude``). The newest file
  there belongs to this workspace's agent; its mtime is the last time the agent did something.
* The last user/assistant entry tells where the turn is (malformed lines and other entry types are skipped):
  - an assistant message with no ``tool_use`` -> the turn is finished and the agent waits for its next
    instruction: ``ready`` (after a short settle, since content blocks are written one by one), then
    ``idle`` after the ready threshold;
  - an assistant ``tool_use``, or a user message / tool result -> the turn is in progress: ``active`` even
    though nothing is written while a long tool runs, until the ready threshold passes with nothing new on
    screen or in the log (``idle``: probably stuck);
  - a short API-error message about a usage/rate limit -> ``blocked``.
* The terminal still decides what the log cannot show: the process gone -> ``exited``; a permission dialog
  or question on screen -> ``waiting_input`` (permission requests are not written to the log). Screen
  changes count as activity too (the spinner's elapsed-time counter moves while a tool runs).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ao.activity import DEFAULT_BLOCKED, MEMO_AT, find, state_for, terminal_activity
from ao.plugins.agent import Activity, LaunchContext, Observation
from ao.plugins.agent.command import join, model_flags, permission_flags, prompt_argument

PERMISSION_FLAGS = {
    "skip": ["--dangerously-skip-permissions"],
    "auto-edit": ["--permission-mode", "acceptEdits"],
    "plan": ["--permission-mode", "plan"],
}
SETTLE = 10.0           # a finished-looking turn must stay quiet this long: the next block may be on its way
TAIL_BYTES = 1 << 20    # how much of the log's end is read for its last entry (tool results can be large)
ERROR_TEXT_CAP = 500    # a limit message is short; a long answer that mentions rate limits is not one

DONE, WORKING, BLOCKED = "done", "working", "blocked"


def project_key(path: Path | str) -> str:
    """Claude Code's folder name for a working directory: every non-alphanumeric character becomes '-'."""
    return re.sub(r"[^A-Za-z0-9]", "-", str(path))


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(b.get("text", "") for b in content if isinstance(b, dict) and isinstance(b.get("text"), str))
    return ""


def classify(entry: dict[str, Any]) -> str | None:
    """Where the conversation stands after ``entry``: DONE, WORKING, BLOCKED, or None (not a turn entry)."""
    kind = entry.get("type")
    message = entry.get("message")
    if kind not in ("user", "assistant") or not isinstance(message, dict):
        return None
    content = message.get("content")
    if kind == "assistant":
        blocks = content if isinstance(content, list) else []
        if message.get("stop_reason") == "tool_use" or any(
                isinstance(b, dict) and b.get("type") == "tool_use" for b in blocks):
            return WORKING
        text = _text(content)
        if (entry.get("isApiErrorMessage") or len(text) <= ERROR_TEXT_CAP) and find(text, DEFAULT_BLOCKED):
            return BLOCKED
        return DONE
    if entry.get("isMeta"):  # bookkeeping Claude Code adds around local commands: not a prompt
        return None
    if "[Request interrupted by user" in _text(content):
        return DONE
    return WORKING  # a prompt or a tool result: the model answers next


def last_turn(path: Path) -> str | None:
    """The state the log's last turn entry implies; unreadable or malformed lines are skipped."""
    try:
        with path.open("rb") as f:
            size = f.seek(0, os.SEEK_END)
            f.seek(max(size - TAIL_BYTES, 0))
            data = f.read()
    except OSError:
        return None
    lines = data.split(b"\n")
    if size > TAIL_BYTES:
        lines = lines[1:]  # the first line is cut
    for raw in reversed(lines):
        if not raw.strip():
            continue
        try:
            entry = json.loads(raw)
        except ValueError:  # a half-written last line, or garbage
            continue
        if isinstance(entry, dict) and (state := classify(entry)) is not None:
            return state
    return None


@dataclass
class ClaudeCode:
    config_dir: Path | str | None = None
    name: str = "claude-code"

    def prompt_delivery(self, settings: dict[str, Any]) -> str:
        return "argument"

    def launch_command(self, ctx: LaunchContext) -> str:
        argv = ["claude", *permission_flags(self.name, ctx.settings, PERMISSION_FLAGS), *model_flags(ctx.settings)]
        if ctx.resume:  # the newest conversation in this directory, with the same permissions as before
            return join([*argv, "--continue"])
        return f"{join(argv)} {prompt_argument(ctx.prompt_file)}"

    def projects_dir(self) -> Path:
        base = self.config_dir or os.environ.get("CLAUDE_CONFIG_DIR") or Path.home() / ".claude"
        return Path(base).expanduser() / "projects"

    def session_file(self, workspace: Path) -> tuple[Path, float] | None:
        """The newest session log of ``workspace`` and its mtime, if Claude Code has written one."""
        root = self.projects_dir()
        keys = dict.fromkeys([project_key(workspace), project_key(workspace.resolve())])
        newest: tuple[Path, float] | None = None
        for key in keys:
            try:
                candidates = list((root / key).glob("*.jsonl"))
            except OSError:
                continue
            for path in candidates:
                try:
                    mtime = path.stat().st_mtime
                except OSError:
                    continue
                if newest is None or mtime > newest[1]:
                    newest = (path, mtime)
        return newest

    def interrupt_keys(self) -> list[str]:
        return ["Escape"]  # Esc stops Claude Code's turn (a second Esc would open its rewind menu)

    def activity(self, obs: Observation) -> Activity:
        term = terminal_activity(obs)
        if term.state in ("exited", "waiting_input"):
            return term
        found = self.session_file(obs.workspace)
        if found is None:
            return term
        path, mtime = found
        memo = dict(term.memo)
        if memo.get("claude_file") == str(path) and memo.get("claude_mtime") == mtime:
            turn = memo.get("claude_turn")  # unchanged since last time: no need to read it again
        else:
            turn = last_turn(path)
            memo.update(claude_file=str(path), claude_mtime=mtime, claude_turn=turn)
        at = max(term.at, mtime) if term.at is not None else mtime
        memo[MEMO_AT] = at
        quiet = obs.now - at
        if turn == BLOCKED:
            return Activity("blocked", at, memo, "session log ends with a usage-limit message")
        if term.state == "blocked" and state_for(obs.now, at, obs.ready_threshold) != "active":
            return Activity("blocked", at, memo, term.detail)
        if turn == WORKING:
            if quiet < obs.ready_threshold:
                return Activity("active", at, memo, "turn in progress")
            return Activity("idle", at, memo, f"turn in progress but nothing new for {quiet:.0f}s")
        if turn == DONE:
            if quiet < SETTLE:
                return Activity("active", at, memo, "turn just finished")
            state = "ready" if quiet < obs.ready_threshold else "idle"
            return Activity(state, at, memo, f"turn finished {quiet:.0f}s ago")
        state = state_for(obs.now, at, obs.ready_threshold)
        return Activity(state, at, memo, "session log updated" if state == "active" else f"quiet for {quiet:.0f}s")


def plugin(**options: Any) -> ClaudeCode:
    return ClaudeCode(**options)
