"""Usage records in the shapes the real agent CLIs write (see the team's shared/agent-screens/CLI-FACTS.md): Claude Code
transcripts (one assistant entry per content block, each with the message's ``usage``), Codex rollouts
(``session_meta``, ``turn_context``, ``event_msg``/``token_count``), opencode's SQLite store (its own
``CREATE TABLE`` statements, as opencode 1.x ships them) and aider's chat history."""

from __future__ import annotations

import json
import sqlite3
import uuid
from pathlib import Path
from typing import Any

from ao.plugins.agent.claude_code import project_key


def _append(path: Path, entries: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as fh:
        for e in entries:
            fh.write(json.dumps(e, separators=(",", ":")) + "\n")


class ClaudeTranscript:
    """``<config>/projects/<cwd key>/<session uuid>.jsonl``, written the way Claude Code 2.x writes it."""

    def __init__(self, config_dir: Path, cwd: Path, session_id: str | None = None) -> None:
        self.cwd = cwd
        self.session_id = session_id or str(uuid.uuid4())
        self.path = config_dir / "projects" / project_key(cwd) / f"{self.session_id}.jsonl"
        self._parent: str | None = None
        self._n = 0

    def _base(self, kind: str) -> dict[str, Any]:
        self._n += 1
        entry = {"parentUuid": self._parent, "isSidechain": False, "userType": "external", "cwd": str(self.cwd),
                 "sessionId": self.session_id, "version": "2.1.197", "gitBranch": "feat/issue-12", "type": kind,
                 "uuid": str(uuid.uuid4()), "timestamp": f"2026-12-03T10:00:{self._n:02d}.000Z"}
        self._parent = entry["uuid"]
        return entry

    def user(self, text: str) -> None:
        _append(self.path, [{**self._base("user"), "message": {"role": "user", "content": text}}])

    def assistant(self, model: str = "claude-sonnet-4-5-20250929", *, input: int = 3, output: int = 120,
                  cache_read: int = 0, cache_write: int = 0, blocks: int = 2, partial_output: int = 8,
                  message_id: str | None = None) -> str:
        """One API message written as ``blocks`` entries (text, then tool_use...). The early blocks carry the
        streaming snapshot of ``output_tokens`` (``partial_output``), the last one the final count."""
        message_id = message_id or f"msg_01{uuid.uuid4().hex[:22]}"
        request = f"req_011C{uuid.uuid4().hex[:20]}"
        entries = []
        for i in range(blocks):
            content = ([{"type": "text", "text": "Let me look at the failing test."}] if i == 0 else
                       [{"type": "tool_use", "id": f"toolu_{i}", "name": "Bash", "input": {"command": "pytest -q"}}])
            last = i == blocks - 1
            entries.append({**self._base("assistant"), "requestId": request, "message": {
                "model": model, "id": message_id, "type": "message", "role": "assistant", "content": content,
                "stop_reason": "tool_use" if last and blocks > 1 else None, "stop_sequence": None,
                "usage": {"input_tokens": input, "cache_creation_input_tokens": cache_write,
                          "cache_read_input_tokens": cache_read,
                          "cache_creation": {"ephemeral_5m_input_tokens": cache_write, "ephemeral_1h_input_tokens": 0},
                          "output_tokens": output if last else partial_output, "service_tier": "standard"}}})
        _append(self.path, entries)
        return message_id

    def api_error(self) -> None:
        _append(self.path, [{**self._base("assistant"), "isApiErrorMessage": True, "error": "rate_limit",
                             "message": {"id": str(uuid.uuid4()), "model": "<synthetic>", "role": "assistant",
                                         "type": "message", "content": [{"type": "text", "text": "API Error: 429"}],
                                         "usage": {"input_tokens": 0, "output_tokens": 0,
                                                   "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}}}])

    def system(self) -> None:
        _append(self.path, [{**self._base("system"), "subtype": "turn_duration", "durationMs": 5400}])


class CodexRollout:
    """``$CODEX_HOME/sessions/YYYY/MM/DD/rollout-<time>-<thread id>.jsonl``."""

    def __init__(self, codex_home: Path, cwd: Path, day: str = "2026/12/03", model: str = "gpt-5-codex") -> None:
        thread = str(uuid.uuid4())
        stamp = day.replace("/", "-")
        self.path = codex_home / "sessions" / day / f"rollout-{stamp}T10-00-00-{thread}.jsonl"
        self.total = {"input_tokens": 0, "cached_input_tokens": 0, "output_tokens": 0, "reasoning_output_tokens": 0,
                      "total_tokens": 0}
        _append(self.path, [
            {"timestamp": f"{stamp}T10:00:00.000Z", "type": "session_meta",
             "payload": {"id": thread, "timestamp": f"{stamp}T10:00:00.000Z", "cwd": str(cwd),
                         "originator": "codex_cli_rs", "cli_version": "0.171.0", "instructions": None,
                         "source": "cli", "model_provider": "openai"}},
            self._turn_context(cwd, model)])
        self.cwd = cwd

    @staticmethod
    def _turn_context(cwd: Path, model: str) -> dict[str, Any]:
        return {"timestamp": "2026-12-03T10:00:01.000Z", "type": "turn_context",
                "payload": {"cwd": str(cwd), "approval_policy": "on-request",
                            "sandbox_policy": {"mode": "workspace-write"}, "model": model, "effort": "medium",
                            "summary": "auto"}}

    def turn(self, *, input: int, cached: int = 0, output: int, reasoning: int = 0, model: str | None = None) -> None:
        """A model call: the thread's running total grows; Codex writes a token_count event with it."""
        if model:
            _append(self.path, [self._turn_context(self.cwd, model)])
        last = {"input_tokens": input, "cached_input_tokens": cached, "output_tokens": output,
                "reasoning_output_tokens": reasoning, "total_tokens": input + output}
        for k, v in last.items():
            self.total[k] += v
        _append(self.path, [
            {"timestamp": "2026-12-03T10:00:02.000Z", "type": "event_msg",
             "payload": {"type": "agent_message", "message": "Fixed the test."}},
            {"timestamp": "2026-12-03T10:00:02.000Z", "type": "event_msg",
             "payload": {"type": "token_count", "info": {"total_token_usage": dict(self.total),
                                                         "last_token_usage": last, "model_context_window": 272000},
                         "rate_limits": {"primary": {"used_percent": 4.0, "window_minutes": 300,
                                                     "resets_in_seconds": 9000}}}}])

    def rate_limits_only(self) -> None:
        _append(self.path, [{"timestamp": "2026-12-03T10:00:03.000Z", "type": "event_msg",
                             "payload": {"type": "token_count", "info": None, "rate_limits": {}}}])


# opencode 1.x: the statements its binary carries (session with the usage columns of its later migrations)
OPENCODE_SCHEMA = """
CREATE TABLE `project` (`id` text PRIMARY KEY, `worktree` text NOT NULL, `time_created` integer NOT NULL);
CREATE TABLE `session` (
  `id` text PRIMARY KEY, `project_id` text NOT NULL, `workspace_id` text, `parent_id` text, `slug` text NOT NULL,
  `directory` text NOT NULL, `path` text, `title` text NOT NULL, `version` text NOT NULL, `share_url` text,
  `summary_additions` integer, `summary_deletions` integer, `summary_files` integer, `summary_diffs` text,
  `metadata` text, `cost` real DEFAULT 0 NOT NULL, `tokens_input` integer DEFAULT 0 NOT NULL,
  `tokens_output` integer DEFAULT 0 NOT NULL, `tokens_reasoning` integer DEFAULT 0 NOT NULL,
  `tokens_cache_read` integer DEFAULT 0 NOT NULL, `tokens_cache_write` integer DEFAULT 0 NOT NULL,
  `revert` text, `permission` text, `time_created` integer NOT NULL, `time_updated` integer NOT NULL,
  `time_compacting` integer, `time_archived` integer,
  CONSTRAINT `fk_session_project_id_project_id_fk` FOREIGN KEY (`project_id`) REFERENCES `project`(`id`) ON DELETE CASCADE);
CREATE TABLE `message` (
  `id` text PRIMARY KEY, `session_id` text NOT NULL, `time_created` integer NOT NULL, `time_updated` integer NOT NULL,
  `data` text NOT NULL,
  CONSTRAINT `fk_message_session_id_session_id_fk` FOREIGN KEY (`session_id`) REFERENCES `session`(`id`) ON DELETE CASCADE);
"""


class OpenCodeStore:
    def __init__(self, db: Path) -> None:
        db.parent.mkdir(parents=True, exist_ok=True)
        self.db = db
        with sqlite3.connect(db) as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(OPENCODE_SCHEMA)
        self._n = 0

    def session(self, directory: Path) -> str:
        sid = f"ses_{uuid.uuid4().hex[:24]}"
        with sqlite3.connect(self.db) as conn:
            conn.execute("INSERT OR IGNORE INTO project VALUES (?, ?, 0)", ("prj", str(directory)))
            conn.execute("INSERT INTO session (id, project_id, slug, directory, title, version, time_created, "
                         "time_updated) VALUES (?, 'prj', 'slug', ?, 'Fix', '1.18.33', 0, 0)", (sid, str(directory)))
        return sid

    def assistant(self, session: str, model: str, *, input: int, output: int, reasoning: int = 0, read: int = 0,
                  write: int = 0, cost: float = 0.0) -> None:
        self._n += 1
        data = {"role": "assistant", "time": {"created": self._n, "completed": self._n + 1}, "parentID": "msg_user",
                "modelID": model, "providerID": "anthropic", "mode": "build", "agent": "build",
                "path": {"cwd": "/", "root": "/"}, "cost": cost,
                "tokens": {"input": input, "output": output, "reasoning": reasoning, "cache": {"read": read, "write": write}},
                "finish": "stop"}
        with sqlite3.connect(self.db) as conn:
            conn.execute("INSERT INTO message VALUES (?, ?, ?, ?, ?)",
                         (f"msg_{uuid.uuid4().hex[:24]}", session, self._n, self._n, json.dumps(data)))
            conn.execute("INSERT INTO message VALUES (?, ?, ?, ?, ?)",
                         (f"msg_{uuid.uuid4().hex[:24]}", session, self._n, self._n,
                          json.dumps({"role": "user", "time": {"created": self._n}, "agent": "build"})))


def aider_reply(history: Path, sent: str, received: str, message: str, session: str, *, write: str = "",
                hit: str = "") -> None:
    """What aider appends after a reply: its usage report as a blockquote (the cost on its own line, unquoted,
    when both cache counts are shown, as aider does)."""
    tokens = f"Tokens: {sent} sent" + (f", {write} cache write" if write else "") + (f", {hit} cache hit" if hit else "")
    tokens += f", {received} received."
    cost = f"Cost: ${message} message, ${session} session."
    sep = "\n" if write and hit else " "
    history.parent.mkdir(parents=True, exist_ok=True)
    with history.open("a", encoding="utf-8") as fh:
        fh.write("\n#### fix the failing test\n\nI changed `app.py`.\n\n")
        fh.write("> " + tokens + sep + cost + "  \n")
