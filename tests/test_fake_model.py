"""The fake model API itself (tests/fake_model.py): the wire formats it streams, the scripts its markers
trigger, and the requests it refuses as the real APIs do. The real CLIs are its real test
(tests/test_real_agents.py); these run everywhere, in a second."""

from __future__ import annotations

import json

import httpx
import pytest
from fake_model import AFTER_TOOL, API_KEY, REPLY, TOOL_COMMAND, FakeModel

ANTHROPIC = {"x-api-key": API_KEY, "anthropic-version": "2023-06-01"}
OPENAI = {"authorization": f"Bearer {API_KEY}"}
BASH = {"name": "Bash", "description": "Run a command",
        "input_schema": {"type": "object", "properties": {"command": {"type": "string"},
                                                          "description": {"type": "string"}}}}


@pytest.fixture
def fake():
    with FakeModel() as model:
        yield model


def sse(response: httpx.Response) -> list[tuple[str | None, object]]:
    """(event name, data) of each server-sent event."""
    assert response.headers["content-type"].startswith("text/event-stream")
    events = []
    for block in response.text.split("\n\n"):
        if not block.strip():
            continue
        name, data = None, None
        for line in block.split("\n"):
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                data = line[6:] if line[6:] == "[DONE]" else json.loads(line[6:])
        events.append((name, data))
    return events


def post(fake: FakeModel, path: str, body: object, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(fake.url + path, json=body, headers=headers, timeout=10)


def messages(*turns: dict, **extra: object) -> dict:
    return {"model": "claude-x", "max_tokens": 1024, "stream": True, "messages": list(turns), **extra}


# ------------------------------------------------------------------------------------- Anthropic

def test_messages_streams_a_text_answer_and_records_the_turn(fake):
    r = post(fake, "/v1/messages", messages({"role": "user", "content": "Hello"}), ANTHROPIC)
    assert r.status_code == 200
    events = sse(r)
    names = [name for name, _ in events]
    assert names[0] == "message_start" and names[-2:] == ["message_delta", "message_stop"]
    text = "".join(d["delta"]["text"] for n, d in events if n == "content_block_delta")
    assert text == REPLY
    assert events[-2][1]["delta"]["stop_reason"] == "end_turn"
    assert fake.user_messages() == ["Hello"] and fake.turns()[0].answer == "text"


def test_messages_calls_the_shell_tool_then_answers_its_result(fake):
    r = post(fake, "/v1/messages", messages({"role": "user", "content": "Please RUNTOOL now."}, tools=[BASH]),
             ANTHROPIC)
    events = sse(r)
    start = next(d for n, d in events if n == "content_block_start" and d["content_block"]["type"] == "tool_use")
    args = json.loads("".join(d["delta"]["partial_json"] for n, d in events
                              if n == "content_block_delta" and d["delta"]["type"] == "input_json_delta"))
    assert start["content_block"]["name"] == "Bash" and args["command"] == TOOL_COMMAND and args["description"]
    assert events[-2][1]["delta"]["stop_reason"] == "tool_use"

    tool_id = start["content_block"]["id"]
    follow = messages({"role": "user", "content": "Please RUNTOOL now."},
                      {"role": "assistant", "content": [{"type": "tool_use", "id": tool_id, "name": "Bash",
                                                         "input": args}]},
                      {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tool_id,
                                                    "content": "exit 6"}]}, tools=[BASH], stream=False)
    r = post(fake, "/v1/messages", follow, ANTHROPIC)
    assert r.status_code == 200 and r.json()["content"] == [{"type": "text", "text": AFTER_TOOL}]
    assert [c.answer for c in fake.turns()] == ["tool", "after_tool"]


def test_messages_answers_429_without_retry_for_the_limit_marker(fake):
    r = post(fake, "/v1/messages", messages({"role": "user", "content": "LIMIT429 please"}), ANTHROPIC)
    assert r.status_code == 429 and r.headers["x-should-retry"] == "false"
    assert r.json()["error"]["type"] == "rate_limit_error"


def test_claude_side_requests_are_answered_and_told_apart(fake):
    title = messages({"role": "user", "content": "<session>\nRUNTOOL\n</session>"}, system=[
        {"type": "text", "text": "Generate a concise title"}],
        output_config={"format": {"type": "json_schema", "schema": {
            "type": "object", "properties": {"title": {"type": "string"}}, "required": ["title"]}}}, stream=False)
    r = post(fake, "/v1/messages", title, ANTHROPIC)
    assert json.loads(r.json()["content"][0]["text"]) == {"title": "Fake title"}
    r = post(fake, "/v1/messages/count_tokens", {"model": "m", "messages": [{"role": "user", "content": "hi"}]},
             ANTHROPIC)
    assert r.json()["input_tokens"] >= 1
    assert httpx.head(fake.url + "/", timeout=5).status_code == 200  # the connectivity pre-flight
    assert fake.turns() == [] and fake.calls[0].side


@pytest.mark.parametrize("body, headers, status, fragment", [
    (messages({"role": "user", "content": "hi"}), {"anthropic-version": "2023-06-01"}, 401, "x-api-key"),
    (messages({"role": "user", "content": "hi"}), {"x-api-key": API_KEY}, 400, "anthropic-version"),
    ({"model": "m", "messages": [{"role": "user", "content": "hi"}]}, ANTHROPIC, 400, "max_tokens"),
    (messages(), ANTHROPIC, 400, "messages"),
    (messages({"role": "system", "content": "x"}), ANTHROPIC, 400, "role"),
    (messages({"role": "user", "content": [{"type": "txet", "text": "hi"}]}), ANTHROPIC, 400, "txet"),
    (messages({"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "x"}]}),
     ANTHROPIC, 400, "tool_use_id"),
    (messages({"role": "user", "content": "x"},
              {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "Bash", "input": {}}]},
              {"role": "user", "content": "no result"}), ANTHROPIC, 400, "without `tool_result`"),
])
def test_messages_refuses_what_the_real_api_refuses(fake, body, headers, status, fragment):
    r = post(fake, "/v1/messages", body, headers)
    assert r.status_code == status and fragment in r.json()["error"]["message"]
    assert r.json()["type"] == "error"
    assert fake.rejected and fake.turns() == []


def test_messages_take_system_messages_only_with_claudes_beta(fake):
    body = messages({"role": "user", "content": "hi"}, {"role": "system", "content": "agent types: ..."})
    beta = {**ANTHROPIC, "anthropic-beta": "claude-code-20250219,mid-conversation-system-2026-04-07"}
    assert post(fake, "/v1/messages", body, beta).status_code == 200
    assert post(fake, "/v1/messages", body, ANTHROPIC).status_code == 400


def test_malformed_json_and_unknown_paths_are_refused(fake):
    r = httpx.post(fake.url + "/v1/messages", content=b"{nope", headers=ANTHROPIC, timeout=5)
    assert r.status_code == 400
    assert httpx.post(fake.url + "/v1/complete", json={}, headers=ANTHROPIC, timeout=5).status_code == 404
    assert httpx.get(fake.url + "/v1/messages", headers=ANTHROPIC, timeout=5).status_code == 405


# --------------------------------------------------------------------------------- Chat Completions

def chat(*turns: dict, **extra: object) -> dict:
    return {"model": "fake-model", "stream": True, "messages": list(turns), **extra}


def test_chat_streams_chunks_then_done(fake):
    r = post(fake, "/v1/chat/completions", chat({"role": "system", "content": "Act as an expert"},
                                                {"role": "user", "content": "Hello"},
                                                stream_options={"include_usage": True}), OPENAI)
    events = sse(r)
    assert events[-1][1] == "[DONE]" and events[-2][1]["usage"]["completion_tokens"] > 0
    chunks = [d for _, d in events[:-2]]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == REPLY
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


def test_chat_tool_call_with_tools_and_a_bash_block_without(fake):
    tool = {"type": "function", "function": {"name": "bash", "parameters": {
        "type": "object", "properties": {"command": {"type": "string"}, "description": {"type": "string"}}}}}
    r = post(fake, "/v1/chat/completions", chat({"role": "user", "content": "RUNTOOL"}, tools=[tool]), OPENAI)
    deltas = [d["choices"][0]["delta"] for _, d in sse(r)[:-1]]
    calls = [c for d in deltas for c in d.get("tool_calls", [])]
    assert calls[0]["function"]["name"] == "bash"
    assert json.loads("".join(c["function"]["arguments"] for c in calls))["command"] == TOOL_COMMAND
    assert sse(r)[-2][1]["choices"][0]["finish_reason"] == "tool_calls"

    r = post(fake, "/v1/chat/completions", chat({"role": "user", "content": "RUNTOOL"}, stream=False), OPENAI)
    assert f"```bash\n{TOOL_COMMAND}\n```" in r.json()["choices"][0]["message"]["content"]  # aider's way


@pytest.mark.parametrize("body, fragment", [
    ({"messages": [{"role": "user", "content": "hi"}]}, "model"),
    (chat(), "messages"),
    (chat({"role": "robot", "content": "hi"}), "role"),
    (chat({"role": "user", "content": "hi"}, {"role": "tool", "tool_call_id": "call_1", "content": "x"}), "tool"),
])
def test_chat_refuses_what_the_real_api_refuses(fake, body, fragment):
    r = post(fake, "/v1/chat/completions", body, OPENAI)
    assert r.status_code == 400 and fragment in r.json()["error"]["message"]


def test_chat_rate_limit_and_key(fake):
    r = post(fake, "/v1/chat/completions", chat({"role": "user", "content": "LIMIT429"}), OPENAI)
    assert r.status_code == 429 and r.json()["error"]["code"] == "rate_limit_exceeded"
    r = post(fake, "/v1/chat/completions", chat({"role": "user", "content": "hi"}), {"authorization": "Bearer x"})
    assert r.status_code == 401


def test_opencode_title_request_is_a_side_request(fake):
    body = chat({"role": "system", "content": "You are a title generator. You output ONLY a thread title."},
                {"role": "user", "content": "Then please RUNTOOL now."})
    r = post(fake, "/v1/chat/completions", body, OPENAI)
    assert r.status_code == 200 and fake.calls[0].side and fake.turns() == []


# ---------------------------------------------------------------------------------------- Responses

EXEC = {"type": "function", "name": "exec_command", "parameters": {"type": "object", "properties": {
    "cmd": {"type": "string"}, "justification": {"type": "string"},
    "sandbox_permissions": {"type": "string", "enum": ["use_default", "require_escalated"]}}}}


def responses(*items: dict, **extra: object) -> dict:
    return {"model": "fake-model", "stream": True, "instructions": "You are Codex", "input": list(items), **extra}


def user(text: str) -> dict:
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}


def test_responses_stream_ends_with_completed(fake):
    events = sse(post(fake, "/v1/responses", responses(user("Hello")), OPENAI))
    names = [n for n, _ in events]
    assert names[:2] == ["response.created", "response.in_progress"] and names[-1] == "response.completed"
    assert [d["sequence_number"] for _, d in events] == list(range(len(events)))
    done = events[-1][1]["response"]
    assert done["status"] == "completed" and done["output"][0]["content"][0]["text"] == REPLY


def test_responses_ask_codex_for_an_escalated_command(fake):
    events = sse(post(fake, "/v1/responses", responses(user("RUNTOOL"), tools=[EXEC]), OPENAI))
    call = next(d["item"] for n, d in events if n == "response.output_item.done"
                and d["item"]["type"] == "function_call")
    args = json.loads(call["arguments"])
    assert call["name"] == "exec_command" and args["cmd"] == TOOL_COMMAND
    assert args["sandbox_permissions"] == "require_escalated" and args["justification"]
    follow = responses(user("RUNTOOL"), {"type": "function_call", "call_id": call["call_id"], "name": "exec_command",
                                         "arguments": call["arguments"]},
                       {"type": "function_call_output", "call_id": call["call_id"], "output": "exit 6"},
                       tools=[EXEC], stream=False)
    r = post(fake, "/v1/responses", follow, OPENAI)
    assert r.json()["output"][0]["content"][0]["text"] == AFTER_TOOL


def test_responses_refuse_an_orphan_output_and_report_usage_limits(fake):
    r = post(fake, "/v1/responses", responses(user("hi"), {"type": "function_call_output", "call_id": "c1",
                                                           "output": "x"}), OPENAI)
    assert r.status_code == 400 and "c1" in r.json()["error"]["message"]
    r = post(fake, "/v1/responses", {"model": "m"}, OPENAI)
    assert r.status_code == 400 and "input" in r.json()["error"]["message"]
    r = post(fake, "/v1/responses", responses(user("LIMIT429")), OPENAI)
    assert r.status_code == 429 and r.json()["error"]["type"] == "usage_limit_reached"


def test_models_are_listed_in_each_apis_shape(fake):
    assert httpx.get(fake.url + "/v1/models", headers=OPENAI, timeout=5).json()["object"] == "list"
    assert httpx.get(fake.url + "/v1/models", headers=ANTHROPIC, timeout=5).json()["has_more"] is False


def test_hold_keeps_a_turn_open_until_released(fake):
    import threading

    fake.hold.set()
    result: list[httpx.Response] = []
    thread = threading.Thread(target=lambda: result.append(
        post(fake, "/v1/messages", messages({"role": "user", "content": "hi"}), ANTHROPIC)))
    thread.start()
    fake.wait(lambda m: m.turns(), 5, "the held turn")
    assert result == []
    fake.hold.clear()
    thread.join(5)
    assert result[0].status_code == 200
