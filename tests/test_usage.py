"""Usage per session from the agents' own records, read incrementally, priced from the price table."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from agent_records import ClaudeTranscript, CodexRollout, OpenCodeStore, aider_reply

from ao import usage
from ao.usage import Locations, PriceTable, UsageTracker, read_aider, read_claude, read_codex, read_opencode

SONNET = usage.BUILTIN_PRICES["claude-sonnet-4*"]


def _cost(state, prices=None):
    return usage.summarize(state["models"], prices or PriceTable())


def test_claude_blocks_of_one_message_are_counted_once_by_their_final_usage(tmp_path):
    t = ClaudeTranscript(tmp_path / ".claude", tmp_path / "ws")
    t.user("fix the test")
    t.assistant(input=3, output=180, partial_output=8, cache_read=12040, cache_write=5210, blocks=3)
    t.system()
    t.api_error()  # a synthetic turn with zero usage: not a model call
    state: dict = {}
    assert read_claude(t.path, state)
    got = _cost(state)
    assert (got.tokens_in, got.tokens_out) == (3 + 12040 + 5210, 180)
    expected = (3 * 3 + 180 * 15 + 12040 * 0.30 + 5210 * 3.75) / 1e6
    assert got.cost_usd == pytest.approx(expected)
    assert list(state["models"]) == ["claude-sonnet-4-5-20250929"]


def test_claude_reads_only_what_was_appended_and_waits_for_a_half_written_line(tmp_path):
    t = ClaudeTranscript(tmp_path / ".claude", tmp_path / "ws")
    mid = t.assistant(output=50, blocks=1)
    state: dict = {}
    read_claude(t.path, state)
    size = t.path.stat().st_size
    assert state["offset"] == size
    assert read_claude(t.path, state) is False  # nothing new: nothing read
    # the next block of the same message arrives in a later cycle, half written at first
    import json
    line = json.dumps({"type": "assistant", "requestId": "r", "message": {
        "id": mid, "model": "claude-sonnet-4-5-20250929", "role": "assistant", "content": [],
        "usage": {"input_tokens": 3, "output_tokens": 90, "cache_read_input_tokens": 0,
                  "cache_creation_input_tokens": 0}}})
    with t.path.open("a") as fh:
        fh.write(line[:40])
    assert read_claude(t.path, state) is False and state["offset"] == size
    with t.path.open("a") as fh:
        fh.write(line[40:] + "\n")
    assert read_claude(t.path, state)
    got = _cost(state)
    assert (got.tokens_in, got.tokens_out) == (3, 90)  # the same message: its larger count, not 50 + 90


def test_claude_opus_and_unknown_models(tmp_path):
    t = ClaudeTranscript(tmp_path / ".claude", tmp_path / "ws")
    t.assistant("claude-opus-4-5-20251101", input=1000, output=1000, blocks=1)
    t.assistant("claude-opus-4-1-20250805", input=1000, output=1000, blocks=1)
    t.assistant("some-local-model", input=1000, output=1000, blocks=1)
    state: dict = {}
    read_claude(t.path, state)
    got = _cost(state)
    assert got.cost_usd == pytest.approx((1000 * 5 + 1000 * 25 + 1000 * 15 + 1000 * 75) / 1e6)
    assert got.unpriced == ["some-local-model"]
    mine = PriceTable({"models": {"some-local-*": {"input": 1, "output": 2}, "claude-opus-4-5*": {"input": 0, "output": 0}}})
    assert _cost(state, mine).cost_usd == pytest.approx((1000 * 15 + 1000 * 75 + 1000 * 1 + 1000 * 2) / 1e6)


def test_codex_counts_differences_of_the_running_total_under_each_turns_model(tmp_path):
    r = CodexRollout(tmp_path / ".codex", tmp_path / "ws", model="gpt-5-codex")
    r.turn(input=12000, cached=8000, output=900, reasoning=400)
    r.rate_limits_only()
    state: dict = {}
    read_codex(r.path, state)
    r.turn(input=20000, cached=15000, output=300)
    r.turn(input=1000, cached=0, output=100, model="gpt-5-mini")
    read_codex(r.path, state)
    gpt5, mini = state["models"]["gpt-5-codex"], state["models"]["gpt-5-mini"]
    assert gpt5[:4] == [4000 + 5000, 1200, 8000 + 15000, 0]
    assert mini[:4] == [1000, 100, 0, 0]
    got = _cost(state)
    assert got.tokens_in == 12000 + 20000 + 1000 and got.tokens_out == 1300
    assert got.cost_usd == pytest.approx((9000 * 1.25 + 1200 * 10 + 23000 * 0.125) / 1e6 + (1000 * 0.25 + 100 * 2) / 1e6)


def test_codex_index_matches_rollouts_to_workspaces_by_cwd(tmp_path):
    import time
    from datetime import date

    day = date.today().strftime("%Y/%m/%d")
    mine = CodexRollout(tmp_path / ".codex", tmp_path / "ws", day=day)
    CodexRollout(tmp_path / ".codex", tmp_path / "other", day=day)
    index = usage.CodexIndex(tmp_path / ".codex")
    index.refresh(time.time() - 60, time.time())
    assert index.files(tmp_path / "ws") == [mine.path]


def test_opencode_store_sums_the_workspaces_assistant_messages_and_is_queried_only_when_it_changed(tmp_path):
    store = OpenCodeStore(tmp_path / "opencode.db")
    mine, other = store.session(tmp_path / "ws"), store.session(tmp_path / "other")
    store.assistant(mine, "claude-sonnet-4-5", input=100, output=200, reasoning=50, read=5000, write=1000, cost=0.9)
    store.assistant(mine, "my-vllm-model", input=1000, output=1000, cost=0.02)
    store.assistant(other, "claude-sonnet-4-5", input=99999, output=99999)
    state: dict = {}
    assert read_opencode(store.db, tmp_path / "ws", state)
    assert read_opencode(store.db, tmp_path / "ws", state) is False  # unchanged file: no query
    got = _cost(state)
    assert got.tokens_in == 100 + 5000 + 1000 + 1000 and got.tokens_out == 250 + 1000
    # a model the table knows is priced from it; one it does not know costs what opencode reported
    assert got.cost_usd == pytest.approx((100 * 3 + 250 * 15 + 5000 * 0.3 + 1000 * 3.75) / 1e6 + 0.02)
    store.assistant(mine, "claude-sonnet-4-5", input=100, output=0)
    assert read_opencode(store.db, tmp_path / "ws", state)
    assert _cost(state).tokens_in == 7200


def test_an_opencode_store_its_agent_wrote_cannot_break_or_stall_the_cycle(tmp_path):
    """In a container the store is the agent's to write: absurd counts are no counts, and a schema that
    makes huge values or loops is stopped."""
    import sqlite3
    import time

    store = OpenCodeStore(tmp_path / "opencode.db")
    mine = store.session(tmp_path / "ws")
    store.assistant(mine, "m", input=100, output=10)
    for _ in range(2):  # SQLite sums two of these to inf
        store.assistant(mine, "m", input=0, output=0, cost=1e308)
    state: dict = {}
    assert read_opencode(store.db, tmp_path / "ws", state, agents_own=True)
    assert _cost(state).tokens_in == 100 and _cost(state).cost_usd == 0.0

    hostile = tmp_path / "hostile.db"
    db = sqlite3.connect(hostile)
    db.execute("CREATE VIEW session AS SELECT zeroblob(250000000) || x AS id, NULL AS parent_id, 'd' AS directory, "
               "x AS time_updated FROM (WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n) "
               "SELECT x FROM n LIMIT 40)")
    db.commit()
    db.close()
    started = time.monotonic()
    with pytest.raises(sqlite3.Error):
        usage.query_store(hostile, "SELECT id FROM session ORDER BY time_updated DESC LIMIT 1", [], agents_own=True)
    assert time.monotonic() - started < 5


def test_aider_reported_cost_survives_a_restart_of_aider(tmp_path):
    history = tmp_path / "ws" / usage.AIDER_HISTORY
    aider_reply(history, "2.4k", "187", "0.01", "0.01")
    aider_reply(history, "12k", "1.2k", "0.05", "0.06", write="1.0k", hit="9.0k")  # cost on its own line
    state: dict = {}
    read_aider(history, state)
    aider_reply(history, "3.0k", "200", "0.02", "0.02")  # aider started again (--restore-chat-history)
    read_aider(history, state)
    got = _cost(state)
    assert got.cost_usd == pytest.approx(0.06 + 0.02)
    assert got.tokens_out == 187 + 1200 + 200
    assert got.tokens_in == 2400 + 12000 + 9000 + 3000


def _config(tmp_path, agent="claude-code", **extra):
    project = SimpleNamespace(agent=agent, agent_config={})
    return SimpleNamespace(data_dir=tmp_path / "data", prices=extra.get("prices", {}), projects={"app": project})


def _session(sid, ws, agent="claude-code", terminal=False):
    return SimpleNamespace(id=sid, project="app", agent=agent, workspace=str(ws), terminal=terminal, created_at=0.0,
                           role="worker")


def test_tracker_keeps_offsets_across_restarts_and_totals_include_sessions_gone_from_the_store(tmp_path):
    loc = Locations(claude=tmp_path / ".claude", codex=tmp_path / ".codex", opencode=tmp_path / "oc.db")
    ws1, ws2 = tmp_path / "ws1", tmp_path / "ws2"
    t1 = ClaudeTranscript(loc.claude, ws1)
    t2 = ClaudeTranscript(loc.claude, ws2)
    t1.assistant(input=1_000_000, output=0, blocks=1)
    t2.assistant(input=0, output=100_000, blocks=1)
    tracker = UsageTracker(_config(tmp_path), loc)
    got = tracker.observe([_session("app-1", ws1), _session("app-2", ws2)], now=0)
    assert got["app-1"] == {"tokens_in": 1_000_000, "tokens_out": 0, "cost_usd": 3.0}
    assert got["app-2"]["cost_usd"] == 1.5
    tracker.save()

    t1.assistant(input=0, output=1000, blocks=1)
    restarted = UsageTracker(_config(tmp_path), loc)
    got = restarted.observe([_session("app-1", ws1)], now=0)  # app-2 was cleaned up meanwhile
    assert got["app-1"] == {"tokens_in": 1_000_000, "tokens_out": 1000, "cost_usd": 3.015}
    assert restarted.totals("app") == {"tokens_in": 1_000_000, "tokens_out": 101_000, "cost_usd": 4.515}


def test_sessions_with_a_home_of_their_own_are_read_there(tmp_path):
    """A container's agent keeps its records in the session's home (Sessions.agent_home), not the user's."""
    from datetime import datetime

    loc = Locations(claude=tmp_path / ".claude", codex=tmp_path / ".codex", opencode=tmp_path / "oc.db")
    homes = {"app-1": tmp_path / "run1" / "home", "app-2": tmp_path / "run2" / "home"}
    ClaudeTranscript(homes["app-1"] / ".claude", tmp_path / "ws1").assistant(output=10, blocks=1)
    ClaudeTranscript(loc.claude, tmp_path / "ws1").assistant(output=1000, blocks=1)  # not this session's records
    rollout = CodexRollout(homes["app-2"] / ".codex", tmp_path / "ws2", day="2026/12/03")
    rollout.turn(input=100, output=20)
    now = datetime(2026, 12, 3, 12).timestamp()
    sessions = [_session("app-1", tmp_path / "ws1"), _session("app-2", tmp_path / "ws2", agent="codex"),
                _session("app-3", tmp_path / "ws1")]
    for s in sessions:
        s.created_at = now
    tracker = UsageTracker(_config(tmp_path), loc, home_of=lambda s: homes.get(s.id))
    got = tracker.observe(sessions, now)
    assert got["app-1"]["tokens_out"] == 10 and got["app-3"]["tokens_out"] == 1000  # app-3 runs on the host
    assert (got["app-2"]["tokens_in"], got["app-2"]["tokens_out"]) == (100, 20)

    # ao restarts; meanwhile the Codex session made one more call and ended: its last read still finds it
    rollout.turn(input=1000, output=100)
    sessions[1].terminal = True
    tracker.save()
    restarted = UsageTracker(_config(tmp_path), loc, home_of=lambda s: homes.get(s.id))
    got = restarted.observe(sessions, now)
    assert (got["app-2"]["tokens_in"], got["app-2"]["tokens_out"]) == (1100, 120)


def test_tracker_reads_the_transcripts_of_a_workspace_past_claudes_folder_name_limit(tmp_path):
    loc = Locations(claude=tmp_path / ".claude", codex=tmp_path / ".codex", opencode=tmp_path / "oc.db")
    ws = tmp_path / ("a" * 120) / ("b" * 120)
    t = ClaudeTranscript(loc.claude, ws)
    t.assistant(input=1_000_000, output=0, blocks=1)
    assert len(t.path.parent.name) == 200 + 1 + len(t.path.parent.name.rsplit("-", 1)[1])
    tracker = UsageTracker(_config(tmp_path), loc)
    assert tracker.observe([_session("app-1", ws)], now=0)["app-1"]["cost_usd"] == 3.0


def test_tracker_reads_an_ended_session_once_more_then_never_again(tmp_path, monkeypatch):
    loc = Locations(claude=tmp_path / ".claude", codex=tmp_path / ".codex", opencode=tmp_path / "oc.db")
    t = ClaudeTranscript(loc.claude, tmp_path / "ws")
    t.assistant(output=10, blocks=1)
    tracker = UsageTracker(_config(tmp_path), loc)
    tracker.observe([_session("app-1", tmp_path / "ws")], 0)
    t.assistant(output=10, blocks=1)
    ended = _session("app-1", tmp_path / "ws", terminal=True)
    assert tracker.observe([ended], 0)["app-1"]["tokens_out"] == 20
    calls = []
    monkeypatch.setattr(usage, "read_claude", lambda *a: calls.append(a))
    assert tracker.observe([ended], 0)["app-1"]["tokens_out"] == 20 and calls == []


def test_command_agents_read_the_records_named_by_usage_from(tmp_path):
    loc = Locations(claude=tmp_path / ".claude", codex=tmp_path / ".codex", opencode=tmp_path / "oc.db")
    cfg = _config(tmp_path, agent="command")
    cfg.projects["app"].agent_config = {"usageFrom": "claude-code"}
    ClaudeTranscript(loc.claude, tmp_path / "ws").assistant(output=10, blocks=1)
    got = UsageTracker(cfg, loc).observe([_session("app-1", tmp_path / "ws", agent="command")], 0)
    assert got["app-1"]["tokens_out"] == 10
    cfg.projects["app"].agent_config = {}
    assert UsageTracker(cfg, loc).observe([_session("app-1", tmp_path / "ws", agent="command")], 0) == {}


def test_a_damaged_usage_file_is_set_aside_and_counts_are_rebuilt_from_the_records(tmp_path):
    loc = Locations(claude=tmp_path / ".claude", codex=tmp_path / ".codex", opencode=tmp_path / "oc.db")
    ClaudeTranscript(loc.claude, tmp_path / "ws").assistant(output=10, blocks=1)
    (tmp_path / "data" / "usage").mkdir(parents=True)
    (tmp_path / "data" / "usage" / "app.json").write_text("{not json")
    got = UsageTracker(_config(tmp_path), loc).observe([_session("app-1", tmp_path / "ws")], 0)
    assert got["app-1"]["tokens_out"] == 10
    assert [p.name.startswith("app.json.corrupt-") for p in (tmp_path / "data" / "usage").iterdir()] == [True]


def test_price_patterns_prefer_the_most_specific_and_ignore_provider_prefixes():
    table = PriceTable()
    assert table.price("anthropic/claude-sonnet-4-5") == SONNET
    assert table.price("openai/gpt-5.1-codex-mini").input == 0.25
    assert table.price("gpt-5-codex").input == 1.25
    assert table.price("gpt-4.1-mini-2025-04-14").input == 0.40
    assert table.price("us.anthropic.claude-haiku-4-5-20251001-v1:0").output == 5
    assert table.price("llama3") is None
    assert PriceTable({"asOf": "2026-01-01"}).as_of == "2026-01-01" and PriceTable().as_of == usage.PRICES_AS_OF
