"""A strict, scripted fake of the model APIs the real agent CLIs speak, on 127.0.0.1, for the real-CLI tier.

Three wire protocols, each streamed as SSE the way the real service streams it (and as one JSON body when
``stream`` is false):

* Anthropic Messages: ``POST /v1/messages`` (Claude Code), plus ``POST /v1/messages/count_tokens``;
* OpenAI Chat Completions: ``POST /v1/chat/completions`` (aider through litellm, opencode through
  ``@ai-sdk/openai-compatible``);
* OpenAI Responses: ``POST /v1/responses`` (Codex);
* and ``GET /v1/models`` (model listings), ``HEAD``/``GET /`` (connectivity checks).

Scripted by the last user message of a turn:

* it contains ``RUNTOOL`` -> the model calls the CLI's shell tool with ``curl -s http://example.invalid/ >
  out.txt`` (so the CLI shows its permission dialog); aider has no tools, so it gets the command in a
  ```bash block, which aider offers to run. After the tool's result comes back the model says
  ``The command ran; all done.``;
* it contains ``LIMIT429`` -> HTTP 429 with the API's own rate-limit error body;
* anything else -> :attr:`FakeModel.reply` (``Done. Nothing else to change.``).

Strict like the real APIs: a request without the API key, with a malformed body, a missing or mistyped
required field, an unknown role or content block, or a tool result that answers no tool call gets the API's
400/401 error (and is recorded, with the reason, in :attr:`FakeModel.rejected`), so a CLI change that breaks
the request shape fails loudly instead of passing against a lenient fake.

Every request is recorded (:attr:`FakeModel.calls`); :meth:`FakeModel.turns` are the main-conversation
requests (side requests, such as Claude's title and quota calls, are told apart by ``side``), and
:meth:`FakeModel.user_messages` the user messages of the newest turn: what the model has been told, once
each. Run standalone (``python tests/fake_model.py``) it prints its URL and serves until Ctrl-C.
"""

from __future__ import annotations

import json
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Iterator

from httpkit import start_server, stop_server

API_KEY = "sk-fake-0123456789abcdef0123456789abcdef"
MODEL = "fake-model"
TOOL_MARKER = "RUNTOOL"
LIMIT_MARKER = "LIMIT429"
TOOL_COMMAND = "curl -s http://example.invalid/ > out.txt"
TOOL_REASON = "Fetch a page into out.txt"
AFTER_TOOL = "The command ran; all done."
REPLY = "Done. Nothing else to change."

# The shell tools of the CLIs, by name (the model picks the first one the request offers).
SHELL_TOOLS = ("Bash", "bash", "shell", "exec_command", "shell_command", "local_shell")


def monotonic() -> float:
    """A real clock even while freezegun freezes time.monotonic."""
    return time.clock_gettime(time.CLOCK_MONOTONIC)


class Rejected(Exception):
    """A request the real API would refuse: ``status`` and the API's error ``kind``."""

    def __init__(self, status: int, message: str, kind: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.status, self.kind = status, kind


@dataclass
class Call:
    """One request as the fake saw it."""

    api: str                    # "messages" | "count_tokens" | "chat" | "responses" | "models" | "other"
    method: str
    path: str
    headers: dict[str, str]
    body: Any                   # parsed JSON (None when there was none)
    status: int = 200
    at: float = field(default_factory=monotonic)
    side: bool = False          # not a turn of the main conversation (titles, quota checks, ...)
    answer: str = ""            # "text" | "tool" | "after_tool" | "429" | "" (not a turn)
    error: str = ""             # why it was rejected

    @property
    def user_texts(self) -> list[str]:
        return user_texts(self.api, self.body) if isinstance(self.body, dict) else []


# ------------------------------------------------------------------------------------------- reading

def _block_text(block: Any) -> str:
    if isinstance(block, str):
        return block
    if isinstance(block, dict) and block.get("type") in ("text", "input_text", "output_text"):
        text = block.get("text")
        return text if isinstance(text, str) else ""
    return ""


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(t for t in (_block_text(b) for b in content) if t)
    return ""


def user_texts(api: str, body: dict[str, Any]) -> list[str]:
    """The text of each user message in a request, oldest first (tool results are not user messages)."""
    if api in ("messages", "count_tokens", "chat"):
        out = []
        for m in body.get("messages") or []:
            if not isinstance(m, dict) or m.get("role") != "user":
                continue
            content = m.get("content")
            if isinstance(content, list) and content and all(
                    isinstance(b, dict) and b.get("type") == "tool_result" for b in content):
                continue
            text = _content_text(content)
            if text:
                out.append(text)
        return out
    if api == "responses":
        items = body.get("input")
        if isinstance(items, str):
            return [items]
        return [_content_text(i.get("content")) for i in items or []
                if isinstance(i, dict) and i.get("type", "message") == "message" and i.get("role") == "user"
                and _content_text(i.get("content"))]
    return []


# ---------------------------------------------------------------------------------------- validation

def _need(cond: bool, message: str) -> None:
    if not cond:
        raise Rejected(400, message)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


ANTHROPIC_BLOCKS = {"text", "image", "document", "tool_use", "tool_result", "thinking", "redacted_thinking",
                    "server_tool_use", "web_search_tool_result", "search_result", "container_upload"}


def validate_messages(body: Any, count_tokens: bool = False, betas: str = "") -> None:
    """The Messages API's own checks (the ones a client can get wrong). ``betas``: the anthropic-beta header
    (``mid-conversation-system-*`` allows system messages between the turns, which Claude Code 2.1 sends)."""
    roles = ("user", "assistant", "system") if "mid-conversation-system-" in betas else ("user", "assistant")
    _need(isinstance(body, dict), "body: expected an object")
    _need(isinstance(body.get("model"), str) and body["model"] != "", "model: Field required")
    if not count_tokens:
        _need(_is_int(body.get("max_tokens")) and body["max_tokens"] > 0, "max_tokens: Field required")
    messages = body.get("messages")
    _need(isinstance(messages, list) and messages != [], "messages: Field required")
    system = body.get("system")
    _need(system is None or isinstance(system, str) or (
        isinstance(system, list) and all(isinstance(b, dict) and b.get("type") == "text"
                                         and isinstance(b.get("text"), str) for b in system)),
          "system: Input should be a valid string or a list of text blocks")
    open_calls: set[str] = set()
    for i, m in enumerate(messages):
        where = f"messages.{i}"
        _need(isinstance(m, dict), f"{where}: expected an object")
        _need(m.get("role") in roles, f"{where}.role: Input should be {' or '.join(repr(r) for r in roles)}")
        content = m.get("content")
        if m["role"] == "system":
            _need(isinstance(content, str) and content != "", f"{where}.content: a system message needs text")
            continue
        _need(isinstance(content, str) or isinstance(content, list), f"{where}.content: Field required")
        blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content
        _need(m["role"] == "assistant" and i == len(messages) - 1 or blocks != [],
              f"{where}: all messages must have non-empty content except for the optional final assistant message")
        answered: set[str] = set()
        for j, b in enumerate(blocks):
            _need(isinstance(b, dict) and b.get("type") in ANTHROPIC_BLOCKS,
                  f"{where}.content.{j}: unknown content block type {b.get('type') if isinstance(b, dict) else b!r}")
            kind = b["type"]
            if kind == "text":
                _need(isinstance(b.get("text"), str), f"{where}.content.{j}.text: Field required")
            elif kind == "tool_use":
                _need(m["role"] == "assistant", f"{where}.content.{j}: tool_use blocks belong to assistant messages")
                _need(isinstance(b.get("id"), str) and isinstance(b.get("name"), str)
                      and isinstance(b.get("input"), dict), f"{where}.content.{j}: tool_use needs id, name, input")
            elif kind == "tool_result":
                _need(m["role"] == "user", f"{where}.content.{j}: tool_result blocks belong to user messages")
                tid = b.get("tool_use_id")
                _need(tid in open_calls, f"{where}.content.{j}: unexpected `tool_use_id` found in `tool_result` "
                                         f"blocks: {tid}. Each `tool_result` block must have a corresponding "
                                         "`tool_use` block in the previous message.")
                answered.add(tid)
        if m["role"] == "user" and open_calls:
            missing = open_calls - answered
            _need(not missing, f"{where}: `tool_use` ids were found without `tool_result` blocks immediately "
                               f"after: {', '.join(sorted(missing))}")
        open_calls = {b["id"] for b in blocks if b.get("type") == "tool_use"} if m["role"] == "assistant" else set()
    tools = body.get("tools")
    _need(tools is None or isinstance(tools, list), "tools: Input should be a valid list")
    for k, t in enumerate(tools or []):
        _need(isinstance(t, dict) and isinstance(t.get("name"), str), f"tools.{k}.name: Field required")
        if "type" not in t or t.get("type") == "custom":
            _need(isinstance(t.get("input_schema"), dict), f"tools.{k}.input_schema: Field required")
    _need(body.get("stream") in (None, True, False), "stream: Input should be a valid boolean")


OPENAI_ROLES = {"system", "developer", "user", "assistant", "tool", "function"}


def validate_chat(body: Any) -> None:
    """Chat Completions' own checks."""
    _need(isinstance(body, dict), "body: expected an object")
    _need(isinstance(body.get("model"), str) and body["model"] != "", "you must provide a model parameter")
    messages = body.get("messages")
    _need(isinstance(messages, list) and messages != [], "[] is too short - 'messages'")
    open_calls: set[str] = set()
    for i, m in enumerate(messages):
        _need(isinstance(m, dict) and m.get("role") in OPENAI_ROLES,
              f"Invalid value for 'messages[{i}].role': expected one of {', '.join(sorted(OPENAI_ROLES))}")
        role, content = m["role"], m.get("content")
        if role == "tool":
            _need(m.get("tool_call_id") in open_calls,
                  f"Invalid parameter: messages with role 'tool' must be a response to a preceeding message "
                  f"with 'tool_calls' (messages[{i}])")
            _need(isinstance(content, (str, list)), f"Missing required parameter: 'messages[{i}].content'")
            continue
        if role == "assistant":
            calls = m.get("tool_calls") or []
            _need(isinstance(calls, list), f"Invalid type for 'messages[{i}].tool_calls'")
            for c in calls:
                _need(isinstance(c, dict) and isinstance(c.get("id"), str) and c.get("type") == "function"
                      and isinstance((c.get("function") or {}).get("name"), str)
                      and isinstance((c.get("function") or {}).get("arguments"), str),
                      f"Invalid 'messages[{i}].tool_calls': each needs id, type 'function', function.name/arguments")
            _need(content is not None or calls, f"Missing required parameter: 'messages[{i}].content'")
            open_calls = {c["id"] for c in calls}
            continue
        _need(isinstance(content, str) or (isinstance(content, list) and all(
            isinstance(p, dict) and p.get("type") in ("text", "image_url", "input_audio", "file") for p in content)),
              f"Invalid type for 'messages[{i}].content'")
        open_calls = set()
    for k, t in enumerate(body.get("tools") or []):
        _need(isinstance(t, dict) and t.get("type") == "function"
              and isinstance((t.get("function") or {}).get("name"), str),
              f"Missing required parameter: 'tools[{k}].function'")
    _need(body.get("stream") in (None, True, False), "Invalid type for 'stream'")


RESPONSE_ITEMS = {"message", "function_call", "function_call_output", "reasoning", "local_shell_call",
                  "local_shell_call_output", "custom_tool_call", "custom_tool_call_output", "web_search_call",
                  "compaction", "item_reference"}


def validate_responses(body: Any) -> None:
    """The Responses API's own checks."""
    _need(isinstance(body, dict), "body: expected an object")
    _need(isinstance(body.get("model"), str) and body["model"] != "", "Missing required parameter: 'model'.")
    items = body.get("input")
    _need(isinstance(items, (str, list)), "Missing required parameter: 'input'.")
    _need(body.get("instructions") is None or isinstance(body["instructions"], str),
          "Invalid type for 'instructions': expected a string.")
    calls: set[str] = set()
    for i, item in enumerate(items if isinstance(items, list) else []):
        _need(isinstance(item, dict), f"Invalid type for 'input[{i}]': expected an object.")
        kind = item.get("type", "message")
        _need(kind in RESPONSE_ITEMS,
              f"Invalid value: '{kind}'. Supported values are: {', '.join(sorted(RESPONSE_ITEMS))}.")
        if kind == "message":
            _need(item.get("role") in ("user", "assistant", "system", "developer"),
                  f"Invalid value for 'input[{i}].role'.")
            content = item.get("content")
            _need(isinstance(content, str) or (isinstance(content, list) and all(
                isinstance(p, dict) and p.get("type") in ("input_text", "output_text", "input_image", "input_file",
                                                         "refusal") for p in content)),
                  f"Invalid value for 'input[{i}].content'.")
        elif kind in ("function_call", "custom_tool_call", "local_shell_call"):
            _need(isinstance(item.get("call_id"), str), f"Missing required parameter: 'input[{i}].call_id'.")
            calls.add(item["call_id"])
        elif kind in ("function_call_output", "custom_tool_call_output", "local_shell_call_output"):
            _need(item.get("call_id") in calls,
                  f"No tool call found for function call output with call_id {item.get('call_id')}.")
    for k, t in enumerate(body.get("tools") or []):
        _need(isinstance(t, dict) and isinstance(t.get("type"), str), f"Missing required parameter: 'tools[{k}].type'.")
        if t["type"] == "function":
            _need(isinstance(t.get("name"), str), f"Missing required parameter: 'tools[{k}].name'.")
    _need(body.get("stream") in (None, True, False), "Invalid type for 'stream'.")


# ------------------------------------------------------------------------------------------ scripting

def _last_turn(api: str, body: dict[str, Any]) -> tuple[str, bool]:
    """(text of the newest user message, whether the newest item is a tool result to answer)."""
    if api in ("messages", "chat"):
        messages = body["messages"]
        last = messages[-1]
        if api == "messages" and isinstance(last.get("content"), list) and any(
                isinstance(b, dict) and b.get("type") == "tool_result" for b in last["content"]):
            return "", True
        if api == "chat" and last.get("role") == "tool":
            return "", True
        texts = user_texts(api, body)
        return (texts[-1] if texts else ""), False
    items = body["input"]
    if isinstance(items, str):
        return items, False
    for item in reversed(items):
        kind = item.get("type", "message")
        if kind.endswith("_output"):
            return "", True
        if kind == "message" and item.get("role") == "user":
            return _content_text(item.get("content")), False
    return "", False


def _tool_schema(api: str, tool: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(name, JSON schema of the arguments) of a tool definition in any of the three APIs."""
    if api == "messages":
        return tool.get("name", ""), tool.get("input_schema") or {}
    if api == "chat":
        fn = tool.get("function") or {}
        return fn.get("name", ""), fn.get("parameters") or {}
    return tool.get("name", ""), tool.get("parameters") or {}


def shell_call(api: str, tools: list[dict[str, Any]]) -> tuple[str, dict[str, Any]] | None:
    """The shell tool to call and its arguments, shaped by the tool's own schema; None when there is none."""
    offered = {name: schema for name, schema in (_tool_schema(api, t) for t in tools or [] if isinstance(t, dict))}
    for name in SHELL_TOOLS:
        if name in offered:
            props = (offered[name] or {}).get("properties") or {}
            command = props.get("command") or props.get("cmd") or {}
            args: dict[str, Any] = {}
            key = "cmd" if "cmd" in props and "command" not in props else "command"
            args[key] = ["bash", "-lc", TOOL_COMMAND] if command.get("type") == "array" else TOOL_COMMAND
            if "description" in props:
                args["description"] = TOOL_REASON
            if "justification" in props:
                args["justification"] = TOOL_REASON
            if "sandbox_permissions" in props:  # Codex: ask to run outside the sandbox, which needs approval
                args["sandbox_permissions"] = "require_escalated"
            if "with_escalated_permissions" in props:
                args["with_escalated_permissions"] = True
            return name, args
    return None


@dataclass
class Answer:
    kind: str                                   # "text" | "tool" | "after_tool" | "429"
    text: str = ""
    tool: tuple[str, dict[str, Any]] | None = None


# ------------------------------------------------------------------------------------------- the server

class FakeModel:
    """The fake API. ``start()`` binds 127.0.0.1 port 0; ``url`` is its base (without ``/v1``)."""

    def __init__(self, reply: str = REPLY, api_key: str = API_KEY, delay: float = 0.0) -> None:
        self.reply = reply
        self.api_key = api_key
        self.delay = delay                      # seconds before a turn's answer starts (a "thinking" model)
        self.calls: list[Call] = []
        self.rejected: list[Call] = []
        self.hold = threading.Event()           # set: turns wait until it is cleared (a slow model)
        self._cond = threading.Condition()
        self._server: ThreadingHTTPServer | None = None
        self.port = 0

    # -- life ---------------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "FakeModel":
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                fake._handle(self)

            do_GET = do_HEAD = do_POST

            def log_message(self, *args: Any) -> None:
                pass

        self._server = start_server(Handler)
        self.port = self._server.server_address[1]
        return self

    def stop(self) -> None:
        self.hold.clear()
        stop_server(self._server)
        self._server = None

    def __enter__(self) -> "FakeModel":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -- what tests read -----------------------------------------------------------------------------

    def turns(self) -> list[Call]:
        """Accepted requests of the main conversation, oldest first."""
        with self._cond:
            return [c for c in self.calls if c.answer and not c.side and c.status != 400]

    def user_messages(self) -> list[str]:
        """The user messages of the newest turn: everything the model has been told, each once."""
        turns = self.turns()
        return turns[-1].user_texts if turns else []

    def wait(self, check: Callable[["FakeModel"], Any], timeout: float = 30.0, what: str = "the model") -> Any:
        """Wait until ``check(self)`` is truthy (re-checked at every request); its value, or AssertionError."""
        deadline = monotonic() + timeout
        with self._cond:
            while True:
                value = check(self)
                if value:
                    return value
                left = deadline - monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out after {timeout} s waiting for {what}; the model saw "
                                         f"{[(c.api, c.answer, c.status, c.user_texts[-1:]) for c in self.calls]}")
                self._cond.wait(min(left, 0.25))

    def wait_for_user_message(self, needle: str, timeout: float = 30.0) -> Call:
        """The first turn whose newest user message contains ``needle``."""
        def seen(fake: "FakeModel") -> Call | None:
            return next((c for c in fake.turns() if c.user_texts and needle in c.user_texts[-1]), None)
        return self.wait(seen, timeout, f"a user message containing {needle!r}")

    # -- serving -------------------------------------------------------------------------------------

    def _record(self, call: Call) -> None:
        with self._cond:
            self.calls.append(call)
            if call.status >= 400 and call.error:
                self.rejected.append(call)
            self._cond.notify_all()

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        path = h.path.split("?")[0]
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in h.headers.items()}
        api = {"/v1/messages": "messages", "/v1/messages/count_tokens": "count_tokens",
               "/v1/chat/completions": "chat", "/chat/completions": "chat", "/v1/responses": "responses",
               "/responses": "responses", "/v1/models": "models", "/models": "models"}.get(path, "other")
        call = Call(api, h.command, h.path, headers, None)
        try:
            if raw:
                try:
                    call.body = json.loads(raw)
                except ValueError:
                    raise Rejected(400, "There was an error parsing the body") from None
            if api == "other":
                if h.command in ("GET", "HEAD") and path in ("/", "/v1", "/v1/"):
                    call.status = 200
                    self._record(call)
                    return _send(h, 200, b"ok", "text/plain")
                raise Rejected(404, f"Not found: {h.command} {path}", "not_found_error")
            self._authorise(api, headers)
            if api == "models":
                self._record(call)
                return _send_json(h, 200, self._models(headers))
            if h.command != "POST":
                raise Rejected(405, f"Method not allowed: {h.command} {path}", "invalid_request_error")
            if api in ("messages", "count_tokens"):
                validate_messages(call.body, api == "count_tokens", headers.get("anthropic-beta", ""))
            else:
                {"chat": validate_chat, "responses": validate_responses}[api](call.body)
            if api == "count_tokens":
                self._record(call)
                return _send_json(h, 200, {"input_tokens": _tokens(call.body)})
            call.side = _is_side(api, call.body)
            answer = self._script(api, call.body, call.side)
            call.answer = answer.kind
            self._record(call)
            if self.delay:
                time.sleep(self.delay)
            while self.hold.is_set() and not call.side and self._server is not None:
                time.sleep(0.02)
            if answer.kind == "429":
                call.status = 429
                return _rate_limited(h, api)
            stream = bool(call.body.get("stream"))
            writer = {"messages": _messages_answer, "chat": _chat_answer, "responses": _responses_answer}[api]
            writer(h, call.body, answer, stream)
        except Rejected as exc:
            call.status, call.error = exc.status, str(exc)
            self._record(call)
            _error(h, api, exc.status, str(exc), exc.kind)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the CLI hung up (Ctrl-C, Esc): nothing to answer

    def _authorise(self, api: str, headers: dict[str, str]) -> None:
        key = headers.get("x-api-key") or ""
        bearer = headers.get("authorization", "")
        if bearer.lower().startswith("bearer "):
            key = key or bearer[7:].strip()
        if key != self.api_key:
            raise Rejected(401, "invalid x-api-key" if api in ("messages", "count_tokens") else
                           "Incorrect API key provided.", "authentication_error")
        if api in ("messages", "count_tokens") and not headers.get("anthropic-version"):
            raise Rejected(400, "anthropic-version: header is required")

    def _models(self, headers: dict[str, str]) -> dict[str, Any]:
        if headers.get("anthropic-version"):
            return {"data": [{"type": "model", "id": MODEL, "display_name": "Fake Model",
                              "created_at": "2026-01-01T00:00:00Z"}], "has_more": False,
                    "first_id": MODEL, "last_id": MODEL}
        return {"object": "list", "data": [{"id": MODEL, "object": "model", "created": 1767225600,
                                            "owned_by": "fake"}]}

    def _script(self, api: str, body: dict[str, Any], side: bool) -> Answer:
        schema = _json_schema(api, body)
        if schema is not None:  # structured output (the CLIs' session titles): an object that fits the schema
            return Answer("text", json.dumps(_fitting(schema)))
        if side:  # a title or quota request: plain text, whatever markers the conversation holds
            return Answer("text", "Fake title")
        text, after_tool = _last_turn(api, body)
        if after_tool:
            return Answer("after_tool", AFTER_TOOL)
        if LIMIT_MARKER in text:
            return Answer("429")
        if TOOL_MARKER in text:
            if api == "chat" and not body.get("tools"):  # aider: commands come in a fenced block it offers to run
                return Answer("tool", f"I'll run a command.\n\n```bash\n{TOOL_COMMAND}\n```\n")
            call = shell_call(api, body.get("tools") or [])
            if call is not None:
                return Answer("tool", "I'll run a command.", call)
        return Answer("text", self.reply)


def _json_schema(api: str, body: dict[str, Any]) -> dict[str, Any] | None:
    """The JSON schema the answer must follow, when the request asks for structured output."""
    if api == "messages":
        fmt = (body.get("output_config") or {}).get("format") or {}
        return fmt.get("schema") if fmt.get("type") == "json_schema" else None
    if api == "chat":
        fmt = body.get("response_format") or {}
        return (fmt.get("json_schema") or {}).get("schema") if fmt.get("type") == "json_schema" else None
    if api == "responses":
        fmt = (body.get("text") or {}).get("format") or {}
        return fmt.get("schema") if fmt.get("type") == "json_schema" else None
    return None


def _fitting(schema: dict[str, Any]) -> Any:
    """A small value that validates against a (simple) JSON schema."""
    kind = schema.get("type")
    if "enum" in schema:
        return schema["enum"][0]
    if kind == "object":
        return {k: _fitting(v) for k, v in (schema.get("properties") or {}).items()}
    if kind == "array":
        return []
    if kind in ("integer", "number"):
        return 0
    if kind == "boolean":
        return False
    return "Fake title"


def _is_side(api: str, body: dict[str, Any]) -> bool:
    """Requests that are not a turn of the conversation: Claude's quota check and title/summary calls."""
    if _json_schema(api, body) is not None:
        return True
    if body.get("tools"):
        return False
    if api == "messages":
        if body.get("max_tokens") == 1:
            return True
        system = _content_text(body.get("system"))
    elif api == "chat":  # opencode's title agent: "You are a title generator..."
        system = "\n".join(_content_text(m.get("content")) for m in body["messages"] if m.get("role") == "system")
    else:
        system = body.get("instructions") or ""
    return bool(re.search(r"\btitle\b|\bsummar", system, re.I))


def _tokens(body: dict[str, Any]) -> int:
    return max(1, len(json.dumps(body)) // 4)


# ---------------------------------------------------------------------------------------------- writing

def _send(h: BaseHTTPRequestHandler, status: int, data: bytes, ctype: str, extra: dict[str, str] | None = None) -> None:
    h.send_response(status)
    h.send_header("Content-Type", ctype)
    h.send_header("Content-Length", str(len(data)))
    for k, v in (extra or {}).items():
        h.send_header(k, v)
    h.end_headers()
    if h.command != "HEAD":
        h.wfile.write(data)


def _send_json(h: BaseHTTPRequestHandler, status: int, obj: Any, extra: dict[str, str] | None = None) -> None:
    _send(h, status, json.dumps(obj).encode(), "application/json", extra)


def _error(h: BaseHTTPRequestHandler, api: str, status: int, message: str, kind: str) -> None:
    if api in ("messages", "count_tokens"):
        body = {"type": "error", "error": {"type": kind, "message": message}, "request_id": _id("req_")}
    else:
        body = {"error": {"message": message, "type": kind, "param": None, "code": None}}
    _send_json(h, status, body)


def _rate_limited(h: BaseHTTPRequestHandler, api: str) -> None:
    if api == "messages":
        body = {"type": "error", "error": {"type": "rate_limit_error", "message": "Rate limited (fake)"},
                "request_id": _id("req_")}
        return _send_json(h, 429, body, {"retry-after": "3600", "x-should-retry": "false"})
    if api == "responses":  # what Codex reads as a usage limit
        body = {"error": {"type": "usage_limit_reached", "message": "The usage limit has been reached",
                          "plan_type": "plus", "resets_in_seconds": 3600}}
        return _send_json(h, 429, body, {"retry-after": "3600"})
    body = {"error": {"message": "Rate limit reached for requests", "type": "requests", "param": None,
                      "code": "rate_limit_exceeded"}}
    return _send_json(h, 429, body, {"retry-after": "3600"})


def _id(prefix: str) -> str:
    return prefix + secrets.token_hex(12)


class _SSE:
    """Server-sent events on a connection that closes when the stream ends."""

    def __init__(self, h: BaseHTTPRequestHandler) -> None:
        self.h = h
        h.send_response(200)
        h.send_header("Content-Type", "text/event-stream")
        h.send_header("Cache-Control", "no-cache")
        h.send_header("Connection", "close")
        h.end_headers()
        h.close_connection = True

    def event(self, data: Any, name: str | None = None) -> None:
        payload = data if isinstance(data, str) else json.dumps(data)
        self.h.wfile.write(((f"event: {name}\n" if name else "") + f"data: {payload}\n\n").encode())
        self.h.wfile.flush()


def _chunks(text: str, size: int = 12) -> Iterator[str]:
    for i in range(0, len(text), size):
        yield text[i:i + size]


def _messages_answer(h: BaseHTTPRequestHandler, body: dict[str, Any], answer: Answer, stream: bool) -> None:
    model, msg_id = body["model"], _id("msg_")
    blocks: list[dict[str, Any]] = [{"type": "text", "text": answer.text}] if answer.text else []
    if answer.tool:
        blocks.append({"type": "tool_use", "id": _id("toolu_"), "name": answer.tool[0], "input": answer.tool[1]})
    stop = "tool_use" if answer.tool else "end_turn"
    usage = {"input_tokens": _tokens(body), "output_tokens": 12, "cache_creation_input_tokens": 0,
             "cache_read_input_tokens": 0}
    message = {"id": msg_id, "type": "message", "role": "assistant", "model": model, "content": blocks,
               "stop_reason": stop, "stop_sequence": None, "usage": usage}
    if not stream:
        return _send_json(h, 200, message)
    sse = _SSE(h)
    sse.event({"type": "message_start", "message": {**message, "content": [], "stop_reason": None,
                                                    "usage": {**usage, "output_tokens": 1}}}, "message_start")
    for i, block in enumerate(blocks):
        if block["type"] == "text":
            sse.event({"type": "content_block_start", "index": i, "content_block": {"type": "text", "text": ""}},
                      "content_block_start")
            sse.event({"type": "ping"}, "ping")
            for piece in _chunks(block["text"]):
                sse.event({"type": "content_block_delta", "index": i,
                           "delta": {"type": "text_delta", "text": piece}}, "content_block_delta")
        else:
            sse.event({"type": "content_block_start", "index": i,
                       "content_block": {**block, "input": {}}}, "content_block_start")
            for piece in _chunks(json.dumps(block["input"]), 20):
                sse.event({"type": "content_block_delta", "index": i,
                           "delta": {"type": "input_json_delta", "partial_json": piece}}, "content_block_delta")
        sse.event({"type": "content_block_stop", "index": i}, "content_block_stop")
    sse.event({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None},
               "usage": {"output_tokens": 12}}, "message_delta")
    sse.event({"type": "message_stop"}, "message_stop")


def _chat_answer(h: BaseHTTPRequestHandler, body: dict[str, Any], answer: Answer, stream: bool) -> None:
    model, cid, created = body["model"], _id("chatcmpl-"), int(time.time())
    calls = []
    if answer.tool:
        calls = [{"id": _id("call_"), "type": "function",
                  "function": {"name": answer.tool[0], "arguments": json.dumps(answer.tool[1])}}]
    finish = "tool_calls" if calls else "stop"
    prompt_tokens = _tokens(body)
    usage = {"prompt_tokens": prompt_tokens, "completion_tokens": 12, "total_tokens": prompt_tokens + 12}
    if not stream:
        message = {"role": "assistant", "content": answer.text or None, "refusal": None,
                   **({"tool_calls": calls} if calls else {})}
        return _send_json(h, 200, {"id": cid, "object": "chat.completion", "created": created, "model": model,
                                   "choices": [{"index": 0, "message": message, "logprobs": None,
                                                "finish_reason": finish}], "usage": usage})
    sse = _SSE(h)

    def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> None:
        sse.event({"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                   "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}]})

    chunk({"role": "assistant", "content": ""})
    for piece in _chunks(answer.text):
        chunk({"content": piece})
    for i, c in enumerate(calls):
        chunk({"tool_calls": [{"index": i, "id": c["id"], "type": "function",
                               "function": {"name": c["function"]["name"], "arguments": ""}}]})
        for piece in _chunks(c["function"]["arguments"], 20):
            chunk({"tool_calls": [{"index": i, "function": {"arguments": piece}}]})
    chunk({}, finish)
    if (body.get("stream_options") or {}).get("include_usage"):
        sse.event({"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                   "choices": [], "usage": usage})
    sse.event("[DONE]")


def _responses_answer(h: BaseHTTPRequestHandler, body: dict[str, Any], answer: Answer, stream: bool) -> None:
    rid, created = _id("resp_"), int(time.time())
    output: list[dict[str, Any]] = []
    if answer.text:
        output.append({"id": _id("msg_"), "type": "message", "status": "completed", "role": "assistant",
                       "content": [{"type": "output_text", "text": answer.text, "annotations": []}]})
    if answer.tool:
        output.append({"id": _id("fc_"), "type": "function_call", "status": "completed", "call_id": _id("call_"),
                       "name": answer.tool[0], "arguments": json.dumps(answer.tool[1])})
    tokens = _tokens(body)
    usage = {"input_tokens": tokens, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": 12,
             "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": tokens + 12}
    response = {"id": rid, "object": "response", "created_at": created, "status": "completed", "error": None,
                "incomplete_details": None, "model": body["model"], "output": output, "usage": usage,
                "parallel_tool_calls": bool(body.get("parallel_tool_calls", True)), "tool_choice": "auto",
                "tools": body.get("tools") or []}
    if not stream:
        return _send_json(h, 200, response)
    sse = _SSE(h)
    seq = iter(range(1_000_000))

    def event(name: str, **data: Any) -> None:
        sse.event({"type": name, "sequence_number": next(seq), **data}, name)

    event("response.created", response={**response, "status": "in_progress", "output": [], "usage": None})
    event("response.in_progress", response={**response, "status": "in_progress", "output": [], "usage": None})
    for index, item in enumerate(output):
        if item["type"] == "message":
            event("response.output_item.added", output_index=index,
                  item={**item, "status": "in_progress", "content": []})
            part = {"type": "output_text", "text": "", "annotations": []}
            event("response.content_part.added", item_id=item["id"], output_index=index, content_index=0, part=part)
            for piece in _chunks(answer.text):
                event("response.output_text.delta", item_id=item["id"], output_index=index, content_index=0,
                      delta=piece, logprobs=[])
            event("response.output_text.done", item_id=item["id"], output_index=index, content_index=0,
                  text=answer.text, logprobs=[])
            event("response.content_part.done", item_id=item["id"], output_index=index, content_index=0,
                  part={**part, "text": answer.text})
        else:
            event("response.output_item.added", output_index=index,
                  item={**item, "status": "in_progress", "arguments": ""})
            for piece in _chunks(item["arguments"], 20):
                event("response.function_call_arguments.delta", item_id=item["id"], output_index=index, delta=piece)
            event("response.function_call_arguments.done", item_id=item["id"], output_index=index,
                  arguments=item["arguments"])
        event("response.output_item.done", output_index=index, item=item)
    event("response.completed", response=response)


def serve() -> None:
    """Serve until Ctrl-C, printing each request (``-v``: with the start of its body)."""
    import sys

    fake = FakeModel().start()
    print(f"{fake.url} (key {fake.api_key})", flush=True)
    shown = 0
    try:
        while True:
            fake.wait(lambda f, n=shown: len(f.calls) > n, timeout=3600, what="a request")
            for c in fake.calls[shown:]:
                body = json.dumps(c.body)[:300] if "-v" in sys.argv else ""
                print(c.method, c.path, c.status, c.answer or "-", "side" if c.side else "", c.error, body, flush=True)
            shown = len(fake.calls)
    except KeyboardInterrupt:
        fake.stop()


if __name__ == "__main__":
    serve()
