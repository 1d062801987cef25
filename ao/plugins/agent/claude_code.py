"""Claude Code (``claude``), the default agent.

Launch: ``claude [permission flags] [--model M] --settings <run dir>/claude-settings.json "$(cat prompt)"``.
The settings file is this launch's only (the user's own settings are untouched) and holds:

* hooks for SessionStart, UserPromptSubmit, PermissionRequest, Notification, Stop, StopFailure and
  SessionEnd. Each is ``cat >> <run dir>/claude-events.jsonl; echo >> …``: the event JSON Claude Code gives
  on stdin becomes one line, with no interpreter started per hook;
* with ``permissions: skip``, ``skipDangerousModePermissionPrompt`` (its first use would otherwise ask,
  defaulting to "No, exit"). As root, Claude Code refuses the bypass flag outright unless ``IS_SANDBOX=1``,
  which the launch script then sets.

Activity, newest knowledge first (each source is checked and skipped when missing or malformed, so a
changed CLI falls back to the screen):

* the per-process status file ``<config>/sessions/<pid>.json`` (``status``: busy, idle, waiting, shell;
  ``waitingFor``): what the agent is doing now, including a permission prompt it has open;
* the hook log: a turn started (UserPromptSubmit), a permission request (with the tool and its input, for
  the detail), a turn that ended (Stop) or failed (StopFailure: rate_limit and billing_error are
  ``blocked``, authentication_failed waits for a human), the session ended (SessionEnd, but for ``/clear``
  and ``/resume``): ``exited``, though the pane has not closed yet;
* the transcript ``<config>/projects/<cwd key>/<session>.jsonl``: API errors (``isApiErrorMessage``,
  ``error``) and, without the other two, where the last turn stands;
* the screen (:mod:`ao.activity`): dialogs drawn before any hook runs (theme, login, API key, trust, the
  bypass warning) and usage-limit messages.

Delivery receipt: a UserPromptSubmit hook whose ``prompt`` is the text sent, or (a message typed while a
turn runs is queued) a ``queue-operation`` entry in the transcript with that content.
"""

from __future__ import annotations

import json
import os
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ao.activity import Screen, Signals, merge, newest, pattern, terminal_activity
from ao.agentfiles import open_regular, own_file, read_regular
from ao.errors import AoError
from ao.plugins.agent import Activity, BaseAgent, LaunchContext, Observation
from ao.plugins.agent.command import (
    iso_time, join, model_flags, permission_flags, prompt_argument, read_new_lines, same_text, update_json,
    version_at_least,
)

PERMISSION_FLAGS = {
    "skip": ["--dangerously-skip-permissions"],
    "auto-edit": ["--permission-mode", "acceptEdits"],
    "plan": ["--permission-mode", "plan"],
}
SETTINGS, EVENTS = "claude-settings.json", "claude-events.jsonl"
HOOKS = ("SessionStart", "UserPromptSubmit", "PermissionRequest", "Notification", "Stop", "StopFailure",
         "SessionEnd")
CHECKED = "2.1.197"          # the version these signals were checked against (ao doctor compares it)
HOOKS_SINCE = (2, 1)         # StopFailure and the status file are 2.1's; older versions get the screen only
STATUS_LIMIT = 1 << 16       # bytes of a status file (a few hundred in practice)
SETTLE = 10.0                # a finished-looking turn in the transcript must stay quiet this long
TAIL_BYTES = 1 << 20         # how much of the transcript's end is read for its last entry
ERROR_TEXT_CAP = 500         # a limit message is short; a long answer that mentions rate limits is not one
BLOCKING_ERRORS = {"rate_limit": "rate limit", "billing_error": "out of credits"}
HUMAN_ERRORS = {"authentication_failed": "authentication failed: log in again"}
WAITING_NOTIFICATIONS = {"permission_prompt": "permission prompt", "elicitation_dialog": "question"}
IN_PROCESS_ENDS = ("clear", "resume")  # /clear and /resume end a session, and the same process goes on in another

DONE, WORKING, BLOCKED = "done", "working", "blocked"


def _input_box(lines: list[str]) -> bool:
    """Claude's input box: a ``❯`` line (not a menu's cursor) right under a horizontal rule."""
    for i in range(len(lines) - 1, 0, -1):
        line = lines[i]
        if re.match(r"^❯(\s|$)", line) and not re.match(r"^❯\s*\d{1,2}[.)]\s", line) \
                and re.fullmatch(r"\s*─{8,}\s*", lines[i - 1]):
            return True
    return False


APOS = "['’]"
SCREEN = Screen(
    agent="Claude",
    dialogs=(pattern("login: paste the sign-in code", r"\bPaste code here if prompted\b"),),
    limits=(
        pattern("API rate limit", r"^(?:● )?API Error:.*(?:\b429\b|rate.?limit)", 5, re.IGNORECASE),
        pattern("usage limit", rf"\bYou{APOS}ve hit your (?:\w+ )?limit\b", 10),
        pattern("usage limit", rf"\bYou{APOS}re out of (?:\w+ )?credits\b|\bYour org is out of usage\b", 10),
        pattern("usage limit", r"\bClaude AI usage limit reached\b", 5),
    ),
    input_box=_input_box,
    generic_limits=(),
)


KEY_LIMIT = 200  # Claude Code cuts longer folder names and adds a hash of the path


def project_key(path: Path | str) -> str:
    """Claude Code's folder name for a working directory, by its own rule (2.1.197): every non-alphanumeric
    character becomes '-', counted in UTF-16 code units as JavaScript does (an emoji gives two); a key longer
    than 200 is cut to 200 and gets ``-<base36 of the absolute Java-style string hash of the path>``."""
    units = str(path).encode("utf-16-le", "surrogatepass")
    codes = [int.from_bytes(units[i:i + 2], "little") for i in range(0, len(units), 2)]
    key = "".join(chr(c) if chr(c).isascii() and chr(c).isalnum() else "-" for c in codes)
    if len(key) <= KEY_LIMIT:
        return key
    h = 0
    for c in codes:  # (h << 5) - h + c, kept to a signed 32-bit int
        h = (h * 31 + c) & 0xFFFFFFFF
    h = abs(h - (1 << 32) if h >= 1 << 31 else h)
    digits = ""
    while True:
        h, d = divmod(h, 36)
        digits = "0123456789abcdefghijklmnopqrstuvwxyz"[d] + digits
        if not h:
            return f"{key[:KEY_LIMIT]}-{digits}"


def project_folders(root: Path, workspace: Path) -> list[Path]:
    """The folders under ``root`` (``<config dir>/projects``) that hold ``workspace``'s transcripts: its key,
    as given and resolved, and for a key past 200 characters any folder with the same cut prefix, as Claude
    Code itself looks them up (its hash differs between builds: Bun's runtime hash in some)."""
    keys = list(dict.fromkeys([project_key(workspace), project_key(workspace.resolve())]))
    found = [root / key for key in keys if (root / key).is_dir()]
    if found:
        return found
    # Workspaces under one deep folder share the cut prefix: a folder found by it is this workspace's only if
    # its transcripts say they ran here (else every session would count all the others' tokens).
    paths = {str(workspace), str(workspace.resolve())}
    for key in keys:
        if len(key) > KEY_LIMIT:
            prefix = key[:KEY_LIMIT] + "-"
            try:
                found += [Path(e.path) for e in os.scandir(root) if e.name.startswith(prefix) and e.is_dir()
                          and _transcript_cwd(Path(e.path)) in paths]
            except OSError:
                pass
    return list(dict.fromkeys(found))


def _transcript_cwd(folder: Path) -> str | None:
    """The working directory a transcript in ``folder`` records (its first lines that carry ``cwd``)."""
    for transcript in sorted(folder.glob("*.jsonl")):
        try:
            with open_regular(transcript) as f:
                for line in f.read(64 * 1024).splitlines()[:20]:
                    try:
                        cwd = json.loads(line).get("cwd")
                    except (ValueError, AttributeError):
                        continue
                    if isinstance(cwd, str):
                        return cwd
        except OSError:
            continue
    return None


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
        if entry.get("isApiErrorMessage") and entry.get("error") in BLOCKING_ERRORS:
            return BLOCKED
        text = _text(content)
        if (entry.get("isApiErrorMessage") or len(text) <= ERROR_TEXT_CAP) and any(
                p.regex.search(line) for p in SCREEN.limits for line in text.splitlines()):
            return BLOCKED
        return DONE
    if entry.get("isMeta"):  # bookkeeping Claude Code adds around local commands: not a prompt
        return None
    if "[Request interrupted by user" in _text(content):
        return DONE
    return WORKING  # a prompt or a tool result: the model answers next


def last_turn(path: Path) -> str | None:
    """The state the transcript's last turn entry implies; unreadable or malformed lines are skipped."""
    try:
        with open_regular(path) as f:
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


def hook_command(events: Path) -> str:
    target = shlex.quote(str(events))
    return f"cat >> {target}; echo >> {target}"


def settings_for(events: Path, skip: bool) -> dict[str, Any]:
    """This launch's ``--settings``: the hooks, and for skip the bypass warning answered in advance."""
    command = hook_command(events)
    settings: dict[str, Any] = {"hooks": {name: [{"hooks": [{"type": "command", "command": command}]}]
                                          for name in HOOKS}}
    if skip:
        settings["skipDangerousModePermissionPrompt"] = True
    return settings


def _tool_summary(event: dict[str, Any]) -> str:
    tool = event.get("tool_name")
    if not isinstance(tool, str):
        return ""
    data = event.get("tool_input")
    arg = ""
    if isinstance(data, dict):
        for key in ("command", "file_path", "path", "url", "pattern", "prompt"):
            if isinstance(data.get(key), str):
                arg = data[key]
                break
    arg = " ".join(arg.split())
    if len(arg) > 80:
        arg = arg[:79] + "…"
    return f"{tool}({arg})" if arg else tool


def fold(state: dict[str, Any], event: dict[str, Any]) -> dict[str, Any]:
    """The hook log's running summary after one more event (only what activity needs: small, JSON-safe)."""
    name = event.get("hook_event_name")
    state = dict(state)
    if isinstance(event.get("session_id"), str):
        state["session"] = event["session_id"]
    if isinstance(event.get("transcript_path"), str):
        state["transcript"] = event["transcript_path"]
    if name == "SessionStart":
        state.update(event="start", detail="session started")
    elif name == "UserPromptSubmit":
        state.update(event="prompt", detail="turn in progress", error=None)
    elif name == "PermissionRequest":
        state.update(event="waiting", detail=f"Claude permission prompt: {_tool_summary(event) or 'a tool'}")
    elif name == "Notification":
        kind = event.get("notification_type")
        if kind in WAITING_NOTIFICATIONS and state.get("event") != "waiting":
            state.update(event="waiting", detail=f"Claude {WAITING_NOTIFICATIONS[kind]}")
        elif kind == "idle_prompt":
            state.update(event="stop", detail="waiting for a message")
    elif name == "Stop":
        state.update(event="stop", detail="turn finished", error=None)
    elif name == "StopFailure":
        error = event.get("error") if isinstance(event.get("error"), str) else "unknown"
        state.update(event="failed", detail=f"turn failed: {error}", error=error)
    elif name == "SessionEnd" and event.get("reason") not in IN_PROCESS_ENDS:
        reason = event.get("reason") if isinstance(event.get("reason"), str) else "other"
        state.update(event="end", detail=f"Claude session ended ({reason})")
    return state


@dataclass
class ClaudeCode(BaseAgent):
    config_dir: Path | str | None = None
    name: str = "claude-code"
    program: str = "claude"

    @property
    def screen(self) -> Screen:
        return SCREEN

    def prompt_delivery(self, settings: dict[str, Any]) -> str:
        return "argument"

    # -- paths --------------------------------------------------------------------------------------

    def home(self, own: Path | None = None) -> Path:
        """Claude Code's folder: in the session's own home when it has one (a container's; ao's settings and
        environment name this machine's folders, which the agent does not see), else ao's."""
        if own is not None:
            return own / ".claude"
        base = self.config_dir or os.environ.get("CLAUDE_CONFIG_DIR") or Path.home() / ".claude"
        return Path(base).expanduser()

    def projects_dir(self, own: Path | None = None) -> Path:
        return self.home(own) / "projects"

    def state_file(self, own: Path | None = None) -> Path:
        """The file holding onboarding, approved keys and per-folder trust."""
        if own is not None:
            return own / ".claude.json"
        if self.config_dir or os.environ.get("CLAUDE_CONFIG_DIR"):
            return self.home() / ".claude.json"
        return Path.home() / ".claude.json"

    # -- launching ----------------------------------------------------------------------------------

    def hooks_supported(self) -> bool:
        from ao.plugins.agent.command import installed_version

        return version_at_least(installed_version(self.program), HOOKS_SINCE)

    def prepare(self, ctx: LaunchContext) -> None:
        mode = ctx.settings.get("permissions") or "default"
        skip = mode == "skip"
        if skip and os.geteuid() == 0:
            # Claude Code exits at once when the bypass flag runs as root, unless told it is sandboxed
            ctx.env["IS_SANDBOX"] = "1"
        if ctx.run_dir is not None and self.hooks_supported():
            events = ctx.run_dir / EVENTS
            from ao.ledger import atomic_write

            atomic_write(ctx.run_dir / SETTINGS, json.dumps(settings_for(events, skip), indent=2) + "\n")
        if ctx.settings.get("trustWorkspace") and ctx.created_workspace:
            self.trust(ctx.workspace, ctx.home)

    def trust(self, workspace: Path, own: Path | None = None) -> None:
        """Pre-seed Claude Code's folder trust for a workspace ao created (``agentConfig.trustWorkspace``), in
        the file the agent will read: the user's, or the session's own home's."""
        path = self.state_file(own)

        def accept(data: dict[str, Any]) -> None:
            projects = data.setdefault("projects", {})
            if not isinstance(projects, dict):
                raise AoError(f"{path}: 'projects' is not an object; not changing it")
            entry = projects.setdefault(str(workspace), {})
            if isinstance(entry, dict):
                entry["hasTrustDialogAccepted"] = True

        # The user's own file: follow a dotfiles link to the file itself, and replace that. The session's
        # home is the agent's: no link of its is followed (update_json reads no link, and writes none).
        update_json(own_file(own, path) if own is not None else path.resolve(), accept)

    def can_resume(self, ctx: LaunchContext) -> bool:
        return self.session_file(ctx.workspace, ctx.home) is not None

    def launch_command(self, ctx: LaunchContext) -> str:
        argv = ["claude", *permission_flags(self.name, ctx.settings, PERMISSION_FLAGS), *model_flags(ctx.settings)]
        if ctx.run_dir is not None and (ctx.run_dir / SETTINGS).is_file():
            argv += ["--settings", str(ctx.run_dir / SETTINGS)]
        if ctx.resume:  # the workspace's conversation, with the same permissions as before
            session = self._last_session(ctx.run_dir)
            return join([*argv, "--resume", session] if session else [*argv, "--continue"])
        return f"{join(argv)} {prompt_argument(ctx.prompt_file, ctx.workspace)}"

    def _last_session(self, run_dir: Path | None) -> str | None:
        """The conversation the previous launch of this session had (from its hook log)."""
        if run_dir is None:
            return None
        state: dict[str, Any] = {}
        for event in read_new_lines(run_dir / EVENTS, 0)[0]:
            state = fold(state, event)
        session = state.get("session")
        return session if isinstance(session, str) and re.fullmatch(r"[0-9a-fA-F-]{8,64}", session) else None

    # -- observing ----------------------------------------------------------------------------------

    def session_file(self, workspace: Path, own: Path | None = None) -> tuple[Path, float] | None:
        """The newest transcript of ``workspace`` and its mtime, if Claude Code has written one."""
        newest: tuple[Path, float] | None = None
        for folder in project_folders(self.projects_dir(own), workspace):
            try:
                candidates = list(folder.glob("*.jsonl"))
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
        # Esc stops Claude Code's turn, and when no reply had come yet puts the interrupted prompt back into
        # the input box; Ctrl-C then empties that box, or the next message would be typed after it (checked
        # against 2.1.197: Ctrl-L does not). Not a second Esc: that opens the rewind menu. On an empty box
        # Ctrl-C only arms the exit for 0.8 s, and ao never presses it twice (a paused session is marked).
        return ["Escape", "C-c"]

    def status(self, pid: int | None, own: Path | None = None) -> dict[str, Any] | None:
        """The live status file of the agent process ``pid`` (None: no such file, or not one we understand)."""
        if pid is None:
            return None
        try:
            data = json.loads(read_regular(self.home(own) / "sessions" / f"{pid}.json", STATUS_LIMIT))
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict) or data.get("pid") != pid or data.get("status") not in (
                "busy", "idle", "waiting", "shell"):
            return None
        return data

    def hooks(self, obs: Observation) -> tuple[dict[str, Any], float | None]:
        """The hook log's summary (kept in the memo, read on from where the last observation stopped)."""
        memo = obs.memo.get("claude_hooks")
        state = dict(memo) if isinstance(memo, dict) else {}
        if obs.run_dir is None:
            return state, None
        path = obs.run_dir / EVENTS
        try:
            mtime = path.stat().st_mtime
        except OSError:
            return {}, None
        offset = state.get("offset") if isinstance(state.get("offset"), int) else 0
        if _size(path) < offset:  # the log was replaced: start over
            state, offset = {}, 0
        events, offset = read_new_lines(path, offset)
        for event in events:
            state = fold(state, event)
        state["offset"] = offset
        return state, mtime

    def activity(self, obs: Observation) -> Activity:
        term = terminal_activity(obs, SCREEN)
        if term.state == "exited":
            return term
        hooks, hooks_at = self.hooks(obs)
        sig = Signals(memo={"claude_hooks": hooks} if hooks else {})
        status = self.status(obs.pid, obs.home)
        at = status.get("statusUpdatedAt") if status else None
        if isinstance(at, (int, float)) and at / 1000 < obs.started_at - 5:
            status = None  # an earlier process's, with the same pid (a container's pids start over)
        transcript = self._transcript_turn(obs, sig.memo)
        if hooks.get("event") == "end" and hooks_at is not None and hooks_at >= obs.started_at:
            # Claude Code is on its way out (the pane may linger a moment); an end logged before this launch
            # (the run folder's log outlives a restore) is the previous process's
            sig.state, sig.at, sig.detail = "exited", hooks_at, hooks["detail"]
        elif status is not None:
            at = status.get("statusUpdatedAt")
            at = at / 1000 if isinstance(at, (int, float)) else None
            if status["status"] == "waiting":
                what = status.get("waitingFor") if isinstance(status.get("waitingFor"), str) else "input"
                detail = hooks.get("detail") if hooks.get("event") == "waiting" and what == "permission prompt" \
                    else f"Claude: {what}"
                sig.state, sig.at, sig.detail = "waiting_input", at, detail
            elif status["status"] == "busy":
                sig.state, sig.at, sig.detail = "active", newest(at, hooks_at, transcript[1]), "turn in progress"
            else:
                sig.state, sig.at, sig.detail = self._after_turn(hooks, transcript, at)
        elif hooks.get("event") in ("prompt", "waiting", "stop", "failed"):
            event = hooks["event"]
            if event == "waiting" and (term.at is None or hooks_at is None or hooks_at >= term.at):
                sig.state, sig.at, sig.detail = "waiting_input", hooks_at, hooks["detail"]
            elif event == "prompt":
                sig.state, sig.at, sig.detail = "active", newest(hooks_at, transcript[1]), "turn in progress"
            elif event != "waiting":
                sig.state, sig.at, sig.detail = self._after_turn(hooks, transcript, hooks_at)
        elif transcript[1] is not None:
            sig.state, sig.at, sig.detail = self._from_transcript(obs, term, transcript)
        return merge(obs, term, sig)

    @staticmethod
    def _after_turn(hooks: dict[str, Any], transcript: tuple[str | None, float | None],
                    at: float | None) -> tuple[str, float | None, str]:
        error = hooks.get("error") if hooks.get("event") == "failed" else None
        if error in BLOCKING_ERRORS:
            return "blocked", at, f"Claude: {BLOCKING_ERRORS[error]} (StopFailure {error})"
        if error in HUMAN_ERRORS:
            return "waiting_input", at, f"Claude: {HUMAN_ERRORS[error]}"
        if transcript[0] == BLOCKED:
            return "blocked", at, "Claude: the transcript ends with a usage-limit error"
        return "ready", at, "turn finished" if not error else f"turn failed: {error}"

    def _transcript_turn(self, obs: Observation, memo: dict[str, Any]) -> tuple[str | None, float | None]:
        """(where the transcript's last turn stands, its mtime); re-read only when it changed."""
        found = self.session_file(obs.workspace, obs.home)
        if found is None:
            return None, None
        path, mtime = found
        old = obs.memo
        if old.get("claude_file") == str(path) and old.get("claude_mtime") == mtime:
            turn = old.get("claude_turn")  # unchanged since last time: no need to read it again
        else:
            turn = last_turn(path)
        memo.update(claude_file=str(path), claude_mtime=mtime, claude_turn=turn)
        return turn, mtime

    @staticmethod
    def _from_transcript(obs: Observation, term: Activity,
                         transcript: tuple[str | None, float | None]) -> tuple[str, float | None, str]:
        """Without hooks or status file (an older or newer CLI): the transcript's last turn."""
        turn, mtime = transcript
        at = newest(term.at, mtime)
        if turn == BLOCKED:
            return "blocked", at, "Claude: the transcript ends with a usage-limit error"
        if turn == WORKING:
            return "active", at, "turn in progress"
        if turn is None:
            return "seen", at, "transcript updated"  # a sign of life; time decides
        if at is not None and obs.now - at < SETTLE:
            return "active", at, "turn just finished"
        return "ready", at, "turn finished"

    # -- delivery -----------------------------------------------------------------------------------

    def receipt(self, obs: Observation, text: str) -> Callable[[], bool] | None:
        """True once Claude Code submitted ``text`` (UserPromptSubmit) or queued it behind the running turn."""
        if obs.run_dir is None or not (obs.run_dir / EVENTS).is_file():
            return None  # no hook has ever run in this launch: the pane has to do
        if text.lstrip().startswith("/"):
            return None  # a slash command runs locally: no UserPromptSubmit (and /exit ends the agent)
        events_path = obs.run_dir / EVENTS
        offset = _size(events_path)
        found = self.session_file(obs.workspace, obs.home)
        transcript = found[0] if found else None
        t_offset = _size(transcript) if transcript else 0
        pos = {"events": offset, "transcript": t_offset}

        def received() -> bool:
            events, pos["events"] = read_new_lines(events_path, pos["events"])
            if any(e.get("hook_event_name") == "UserPromptSubmit" and same_text(e.get("prompt"), text)
                   for e in events):
                return True
            if transcript is not None:
                entries, pos["transcript"] = read_new_lines(transcript, pos["transcript"])
                return any(e.get("type") == "queue-operation" and e.get("operation") == "enqueue"
                           and same_text(e.get("content"), text) for e in entries)
            return False

        return received

    def received_since(self, workspace: Path, run_dir: Path, text: str, since: float,
                       home: Path | None = None) -> bool | None:
        """After a crash while typing: whether the transcript has ``text`` as a prompt or a queued message
        from ``since`` on (None: no transcript to ask)."""
        found = self.session_file(workspace, home)
        if found is None:
            return None
        size = _size(found[0])
        entries, _ = read_new_lines(found[0], max(size - TAIL_BYTES, 0))
        return any(same_text(_transcript_text(e), text) and (iso_time(e.get("timestamp")) or 0) >= since - 1
                   for e in entries)


def _transcript_text(entry: dict[str, Any]) -> str | None:
    """The text a transcript entry says the user submitted or queued, if it is such an entry."""
    if entry.get("type") == "queue-operation" and entry.get("operation") == "enqueue":
        return entry.get("content") if isinstance(entry.get("content"), str) else None
    message = entry.get("message")
    if entry.get("type") == "user" and isinstance(message, dict) and not entry.get("isMeta"):
        return _text(message.get("content"))
    return None


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def plugin(**options: Any) -> ClaudeCode:
    return ClaudeCode(**options)
