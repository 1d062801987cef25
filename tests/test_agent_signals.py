"""The agents' own signals (issue 11), with the files and APIs in the formats the real CLIs were seen to
write (notes in docs/sessions.md): Claude Code's hooks, status file and transcript; Codex's rollouts;
opencode's embedded server; aider's input history. Each one falls back to the screen when it is missing."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import threading
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
from httpkit import start_server, stop_server

from ao.errors import AoError
from ao.plugins import agent
from ao.plugins.agent import LaunchContext, Observation
from ao.plugins.agent import claude_code as cc
from ao.plugins.agent import codex as cx
from ao.plugins.agent import opencode as oc
from ao.plugins.agent.aider import history_entries

T0 = 1_700_000_000.0
CLAUDE_IDLE = ("╭─── Claude Code v2.1.197 ───╮\n❯ Fix it\n● Done.\n✻ Brewed for 1s\n" + "─" * 60 + "\n❯ \n"
               + "─" * 60 + "\n  ? for shortcuts · ← for agents")


def obs(tmp_path: Path, now: float = T0 + 100, pane: str | None = CLAUDE_IDLE, memo: dict | None = None,
        pid: int | None = None, alive: bool = True) -> Observation:
    return Observation(now=now, alive=alive, workspace=tmp_path / "ws", started_at=T0, ready_threshold=300,
                       pane=pane, memo=memo or {}, run_dir=tmp_path / "run", pid=pid)


def launch_ctx(tmp_path: Path, resume: bool = False, **settings) -> LaunchContext:
    (tmp_path / "run").mkdir(exist_ok=True)
    (tmp_path / "ws").mkdir(exist_ok=True)
    prompt = tmp_path / "run" / "prompt.md"
    prompt.write_text("Fix the bug")
    return LaunchContext(session_id="app-1", workspace=tmp_path / "ws", prompt_file=prompt, settings=settings,
                         resume=resume, run_dir=tmp_path / "run")


# --------------------------------------------------------------------------------------------- Claude

def claude(tmp_path: Path) -> cc.ClaudeCode:
    return agent.get("claude-code", config_dir=tmp_path / "claude")


def hook(tmp_path: Path, event: dict) -> None:
    """Run the hook command exactly as Claude Code does: the event JSON on stdin, no trailing newline."""
    command = cc.hook_command(tmp_path / "run" / cc.EVENTS)
    subprocess.run(["sh", "-c", command], input=json.dumps(event).encode(), check=True)


def status_file(tmp_path: Path, pid: int, status: str, at: float, **extra) -> None:
    folder = tmp_path / "claude" / "sessions"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{pid}.json").write_text(json.dumps({"pid": pid, "sessionId": "s1", "status": status,
                                                    "statusUpdatedAt": int(at * 1000), **extra}))


def test_claude_launch_injects_this_launchs_hooks_and_leaves_user_settings_alone(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    c = launch_ctx(tmp_path, permissions="auto-edit")
    plugin = claude(tmp_path)
    plugin.prepare(c)
    argv = shlex.split(plugin.launch_command(c))
    assert argv[:4] == ["claude", "--permission-mode", "acceptEdits", "--settings"]
    settings = json.loads(Path(argv[4]).read_text())
    assert set(settings["hooks"]) == set(cc.HOOKS) and "skipDangerousModePermissionPrompt" not in settings
    assert settings["hooks"]["Stop"][0]["hooks"][0]["command"].startswith("cat >> ")
    assert c.env == {} and not (tmp_path / "claude" / "settings.json").exists()


def test_claude_skip_as_root_is_sandboxed_and_skips_the_bypass_warning(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    c = launch_ctx(tmp_path, permissions="skip")
    plugin = claude(tmp_path)
    plugin.prepare(c)
    assert c.env == {"IS_SANDBOX": "1"}  # else Claude Code exits at once as root
    assert json.loads((c.run_dir / cc.SETTINGS).read_text())["skipDangerousModePermissionPrompt"] is True
    assert "--dangerously-skip-permissions" in shlex.split(plugin.launch_command(c))


def test_the_hook_command_appends_one_line_per_event(tmp_path):
    (tmp_path / "run").mkdir()
    hook(tmp_path, {"hook_event_name": "UserPromptSubmit", "prompt": "line 1\nline 2 'quoted' $HOME"})
    hook(tmp_path, {"hook_event_name": "Stop"})
    lines = (tmp_path / "run" / cc.EVENTS).read_text().splitlines()
    assert [json.loads(x)["hook_event_name"] for x in lines] == ["UserPromptSubmit", "Stop"]


def test_claude_hooks_say_working_waiting_finished_and_rate_limited(tmp_path):
    (tmp_path / "run").mkdir()
    plugin = claude(tmp_path)
    hook(tmp_path, {"hook_event_name": "SessionStart", "session_id": "s1"})
    hook(tmp_path, {"hook_event_name": "UserPromptSubmit", "prompt": "Fix it"})
    a = plugin.activity(obs(tmp_path, now=T0 + 200, memo={"pane_hash": "x", "last_activity_at": T0}))
    assert (a.state, a.detail) == ("active", "turn in progress")  # though the screen is still
    hook(tmp_path, {"hook_event_name": "PermissionRequest", "tool_name": "Bash",
                    "tool_input": {"command": "curl -s http://example.invalid/ > out.txt"}})
    a = plugin.activity(obs(tmp_path, now=T0 + 200, memo=a.memo))
    assert a.state == "waiting_input" and a.detail == "Claude permission prompt: Bash(curl -s http://example.invalid/ > out.txt)"
    hook(tmp_path, {"hook_event_name": "Stop", "last_assistant_message": "done"})
    a = plugin.activity(obs(tmp_path, now=T0 + 200, memo=a.memo))
    assert (a.state, a.detail) == ("ready", "turn finished")
    hook(tmp_path, {"hook_event_name": "UserPromptSubmit", "prompt": "LIMIT429"})
    hook(tmp_path, {"hook_event_name": "StopFailure", "error": "rate_limit"})
    a = plugin.activity(obs(tmp_path, now=T0 + 200, memo=a.memo))
    assert a.state == "blocked" and "rate_limit" in a.detail
    hook(tmp_path, {"hook_event_name": "StopFailure", "error": "authentication_failed"})
    assert plugin.activity(obs(tmp_path, now=T0 + 200, memo=a.memo)).state == "waiting_input"


def test_claude_session_end_reads_as_exited_before_the_pane_closes(tmp_path):
    import dataclasses
    import time

    (tmp_path / "run").mkdir()
    plugin = claude(tmp_path)
    status_file(tmp_path, 4242, "idle", T0 + 50)  # the status file may outlive the exit a moment
    hook(tmp_path, {"hook_event_name": "SessionStart", "session_id": "s1"})
    for reason in ("clear", "resume"):  # /clear, /resume: the same process goes on in another session
        hook(tmp_path, {"hook_event_name": "SessionEnd", "reason": reason})
        a = plugin.activity(obs(tmp_path, pid=4242))
        assert a.state == "ready"
        hook(tmp_path, {"hook_event_name": "SessionStart", "session_id": "s2", "source": reason})
    hook(tmp_path, {"hook_event_name": "SessionEnd", "reason": "prompt_input_exit"})
    a = plugin.activity(obs(tmp_path, pid=4242, memo=a.memo))
    assert (a.state, a.detail) == ("exited", "Claude session ended (prompt_input_exit)")
    # after a restore the log still ends with the old process's SessionEnd until the new one starts
    later = dataclasses.replace(obs(tmp_path, pid=4242), started_at=time.time() + 60, now=time.time() + 70)
    assert plugin.activity(later).state != "exited"


def test_claude_status_file_is_the_truth_about_now(tmp_path):
    """A rejected permission dialog fires no hook: only the status file says the agent is idle again."""
    (tmp_path / "run").mkdir()
    plugin = claude(tmp_path)
    hook(tmp_path, {"hook_event_name": "PermissionRequest", "tool_name": "Bash", "tool_input": {"command": "ls"}})
    status_file(tmp_path, 4242, "waiting", T0 + 50, waitingFor="permission prompt")
    a = plugin.activity(obs(tmp_path, pid=4242))
    assert (a.state, a.at, a.detail) == ("waiting_input", T0 + 50, "Claude permission prompt: Bash(ls)")
    status_file(tmp_path, 4242, "idle", T0 + 60)
    assert plugin.activity(obs(tmp_path, pid=4242, memo=a.memo)).state == "ready"
    status_file(tmp_path, 4242, "busy", T0 + 70)
    assert plugin.activity(obs(tmp_path, now=T0 + 250, pid=4242, memo=a.memo)).state == "active"
    # another process's file, or one we do not understand, is not used
    status_file(tmp_path, 4243, "weird", T0 + 80)
    assert plugin.status(4243) is None and plugin.status(999) is None


def test_claude_dialogs_on_screen_win_over_a_busy_status(tmp_path):
    (tmp_path / "run").mkdir()
    status_file(tmp_path, 7, "busy", T0 + 50)
    trust = ("Accessing workspace:\n/ws\nQuick safety check: Is this a project you trust?\n"
             "❯ 1. Yes, I trust this folder\n  2. No, exit\nEnter to confirm · Esc to cancel")
    a = claude(tmp_path).activity(obs(tmp_path, pane=trust, pid=7))
    assert a.state == "waiting_input" and "trust" in a.detail


def test_claude_receipt_is_the_exact_prompt_or_the_queued_message(tmp_path):
    (tmp_path / "run").mkdir()
    plugin = claude(tmp_path)
    o = obs(tmp_path)
    assert plugin.receipt(o, "hello") is None  # no hook ever ran: the pane has to do
    hook(tmp_path, {"hook_event_name": "SessionStart"})
    received = plugin.receipt(o, "Fix the\nfailing test ")
    assert received is not None and not received()
    hook(tmp_path, {"hook_event_name": "UserPromptSubmit", "prompt": "something else"})
    assert not received()
    hook(tmp_path, {"hook_event_name": "UserPromptSubmit", "prompt": "Fix the\r\nfailing test"})
    assert received()
    # typed while a turn runs: queued, recorded in the transcript at once
    transcript = tmp_path / "claude" / "projects" / cc.project_key(tmp_path / "ws") / "s1.jsonl"
    transcript.parent.mkdir(parents=True)
    transcript.write_text(json.dumps({"type": "user", "message": {"content": "x"}}) + "\n")
    queued = plugin.receipt(o, "please rebase")
    with transcript.open("a") as f:
        f.write(json.dumps({"type": "queue-operation", "operation": "enqueue", "content": "please rebase"}) + "\n")
    assert queued()


def test_claude_restore_resumes_the_conversation_or_starts_afresh(tmp_path):
    plugin = claude(tmp_path)
    c = launch_ctx(tmp_path, resume=True)
    assert not plugin.can_resume(c)  # no transcript: `claude --continue` would exit at once
    c.resume = False
    assert shlex.split(plugin.launch_command(c))[-1] == "$(cat {})".format(shlex.quote(str(c.prompt_file)))
    transcript = tmp_path / "claude" / "projects" / cc.project_key(tmp_path / "ws") / "abc.jsonl"
    transcript.parent.mkdir(parents=True)
    transcript.write_text("{}\n")
    hook(tmp_path, {"hook_event_name": "SessionStart", "session_id": "0b9c1d2e-aaaa-bbbb-cccc-123456789abc"})
    c.resume = plugin.can_resume(c)
    assert c.resume and shlex.split(plugin.launch_command(c))[-2:] == ["--resume", "0b9c1d2e-aaaa-bbbb-cccc-123456789abc"]


def test_claude_trust_option_preseeds_only_the_workspace(tmp_path):
    state = tmp_path / "claude" / ".claude.json"
    state.parent.mkdir(parents=True)
    state.write_text(json.dumps({"hasCompletedOnboarding": True, "projects": {"/other": {"x": 1}}}))
    os.chmod(state, 0o600)
    plugin = claude(tmp_path)
    plugin.prepare(launch_ctx(tmp_path))  # off by default
    assert json.loads(state.read_text())["projects"] == {"/other": {"x": 1}}
    plugin.prepare(launch_ctx(tmp_path, trustWorkspace=True))
    data = json.loads(state.read_text())
    assert data["projects"][str(tmp_path / "ws")] == {"hasTrustDialogAccepted": True}
    assert data["projects"]["/other"] == {"x": 1} and data["hasCompletedOnboarding"] is True
    assert state.stat().st_mode & 0o777 == 0o600
    state.write_text("{not json")
    with pytest.raises(AoError, match="not changing it"):
        plugin.prepare(launch_ctx(tmp_path, trustWorkspace=True))


# ---------------------------------------------------------------------------------------------- Codex

def rollout(tmp_path: Path, cwd: Path, *events: dict, name: str = "rollout-2026-12-03T06-47-29-abc.jsonl") -> Path:
    path = tmp_path / "codex" / "sessions" / "2026" / "12" / "03" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"type": "session_meta", "payload": {"id": "01a23aa8-7a80", "cwd": str(cwd)}}
    path.write_text("".join(json.dumps(e) + "\n" for e in (meta, *events)))
    return path


def ev(kind: str, **payload) -> dict:
    return {"type": "event_msg", "payload": {"type": kind, **payload}}


def user_item(text: str) -> dict:
    return ev("item_completed", item={"type": "UserMessage", "content": [{"type": "text", "text": text}]})


CODEX_IDLE = "  >_ OpenAI Codex (v0.171.0)\n› Fix it\n• Done.\n› Ask Codex to do anything\n  fake-model default\n  ← for agents"


def test_codex_rollout_says_working_finished_and_usage_limited(tmp_path):
    plugin = agent.get("codex", home_dir=tmp_path / "codex")
    ws = tmp_path / "ws"
    ws.mkdir()
    rollout(tmp_path, ws, ev("task_started"))
    a = plugin.activity(obs(tmp_path, now=T0 + 200, pane=CODEX_IDLE, memo={"pane_hash": "x", "last_activity_at": T0}))
    assert (a.state, a.detail) == ("active", "turn in progress")
    assert plugin.not_ready(obs(tmp_path, pane=CODEX_IDLE), a) == "Codex is in the middle of a turn"
    rollout(tmp_path, ws, ev("task_started"), ev("task_complete", last_agent_message="done"))
    a = plugin.activity(obs(tmp_path, now=T0 + 200, pane=CODEX_IDLE))
    assert (a.state, a.detail) == ("ready", "turn finished")
    rollout(tmp_path, ws, ev("task_started"), ev("task_complete", error={
        "message": "You’ve hit your usage limit.", "codex_error_info": "usage_limit_exceeded"}))
    a = plugin.activity(obs(tmp_path, now=T0 + 200, pane=CODEX_IDLE))
    assert a.state == "blocked" and "usage_limit_exceeded" in a.detail


def test_codex_receipt_resume_and_trust(tmp_path, monkeypatch):
    monkeypatch.setattr(cx, "installed_version", lambda program: "0.171.0")
    plugin = agent.get("codex", home_dir=tmp_path / "codex")
    c = launch_ctx(tmp_path, resume=True, trustWorkspace=True)
    assert not plugin.can_resume(c)  # `codex resume --last` would open an empty session: launch afresh
    path = rollout(tmp_path, c.workspace, ev("task_complete"))
    assert plugin.can_resume(c)
    argv = shlex.split(plugin.launch_command(c))
    assert argv[:3] == ["codex", "resume", "--no-daemon"] and argv[-1] == "01a23aa8-7a80"
    received = plugin.receipt(obs(tmp_path, pane=CODEX_IDLE), "Fix the test")
    with path.open("a") as f:
        f.write(json.dumps(user_item("Fix the test")) + "\n")
    assert received()
    (tmp_path / "codex" / "config.toml").write_text('model = "x"\n[projects."/elsewhere"]\ntrust_level = "untrusted"\n')
    plugin.prepare(c)
    plugin.prepare(c)  # once only
    import tomllib

    projects = tomllib.loads((tmp_path / "codex" / "config.toml").read_text())["projects"]
    assert projects == {"/elsewhere": {"trust_level": "untrusted"}, str(c.workspace): {"trust_level": "trusted"}}


# -------------------------------------------------------------------------------------------- opencode

class FakeOpencode:
    """opencode's embedded server as seen in 1.18.33: basic auth, directory-scoped, JSON."""

    def __init__(self, password: str) -> None:
        self.password, self.status, self.permissions, self.messages = password, {}, [], []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a): pass

            def _send(self, code, body=None):
                data = b"" if body is None else json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _auth(self) -> bool:
                import base64

                want = "Basic " + base64.b64encode(f"opencode:{fake.password}".encode()).decode()
                if self.headers.get("Authorization") != want:
                    self._send(401, {"error": "unauthorized"})
                    return False
                return True

            def do_GET(self):
                if not self._auth():
                    return
                path = self.path.split("?")[0]
                if path == "/session":
                    return self._send(200, [{"id": "ses_1", "time": {"updated": 1}}])
                if path == "/session/status":
                    return self._send(200, fake.status)
                if path == "/permission":
                    return self._send(200, fake.permissions)
                if path == "/session/ses_1/message":
                    return self._send(200, fake.messages)
                self._send(404, {})

            def do_POST(self):
                if not self._auth():
                    return
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.messages.append({"info": {"role": "user"}, "parts": body["parts"]})
                if fake.slow.is_set():  # took the prompt, answers after the client gave up
                    fake.release.wait(10)
                self._send(204)

        self.slow, self.release = threading.Event(), threading.Event()
        self.server = start_server(Handler)

    def close(self) -> None:
        self.release.set()
        stop_server(self.server)


def test_opencode_launch_validates_the_model_and_maps_skip(tmp_path):
    plugin = agent.get("opencode")
    with pytest.raises(AoError, match="provider/model"):
        plugin.prepare(launch_ctx(tmp_path, model="claude-sonnet-4"))
    c = launch_ctx(tmp_path, permissions="skip", model="anthropic/claude-sonnet-4")
    plugin.prepare(c)
    server = json.loads((c.run_dir / oc.SERVER).read_text())
    assert (c.run_dir / oc.SERVER).stat().st_mode & 0o777 == 0o600
    assert c.env == {"OPENCODE_SERVER_PASSWORD": server["password"]}
    argv = shlex.split(plugin.launch_command(c))
    assert argv[:6] == ["opencode", "--auto", "--model", "anthropic/claude-sonnet-4", "--port", str(server["port"])]


def test_opencode_server_gives_state_and_delivers_without_typing(tmp_path):
    plugin = agent.get("opencode")
    c = launch_ctx(tmp_path)
    plugin.prepare(c)
    data = json.loads((c.run_dir / oc.SERVER).read_text())
    fake = FakeOpencode(data["password"])
    data["port"] = fake.server.server_address[1]
    (c.run_dir / oc.SERVER).write_text(json.dumps(data))
    try:
        fake.status = {"ses_1": {"type": "busy"}}
        assert plugin.activity(obs(tmp_path, pane="x")).state == "active"
        # the prompt went in as an argument, so only observing learns the session a restore continues
        assert shlex.split(plugin.launch_command(launch_ctx(tmp_path, resume=True)))[-2:] == ["--session", "ses_1"]
        fake.permissions = [{"id": "per_1", "permission": "bash", "patterns": ["curl -s x > out.txt"]}]
        a = plugin.activity(obs(tmp_path, pane="x"))
        assert a.state == "waiting_input" and "bash: curl -s x > out.txt" in a.detail
        fake.permissions, fake.status = [], {"ses_1": {"type": "retry", "message": "Rate limit reached for requests"}}
        assert plugin.activity(obs(tmp_path, pane="x")).state == "blocked"
        fake.status = {}
        assert plugin.activity(obs(tmp_path, pane="x")).state == "ready"
        received = plugin.receipt(obs(tmp_path), "Fix it")
        assert plugin.deliver(obs(tmp_path), "Fix it") and received()
        assert json.loads((c.run_dir / oc.SERVER).read_text())["session"] == "ses_1"  # for a restore
        assert shlex.split(plugin.launch_command(launch_ctx(tmp_path, resume=True)))[-2:] == ["--session", "ses_1"]
        # The server took the prompt but its answer is late (it was busy restoring a session): the prompt may
        # have arrived, so ao must not type it as well; the receipt decides.
        fake.slow.set()
        received = plugin.receipt(obs(tmp_path), "Second message")
        assert plugin.deliver(obs(tmp_path), "Second message") and received()
        fake.slow.clear()
        fake.release.set()
        data["password"] = "wrong"
        (c.run_dir / oc.SERVER).write_text(json.dumps(data))
        assert not plugin.deliver(obs(tmp_path), "x")  # refused: ao types instead
    finally:
        fake.close()
    assert plugin.activity(obs(tmp_path, pane="x")).state in ("active", "ready")  # server gone: the screen


# ----------------------------------------------------------------------------------------------- aider

def test_aider_input_history_is_the_receipt(tmp_path):
    plugin = agent.get("aider")
    history = tmp_path / "run" / "aider.input.history"
    history.parent.mkdir()
    history.write_text("\n# 2026-12-03 06:40:00.1\n+old message\n")
    received = plugin.receipt(obs(tmp_path), "line 1\nline 2")
    assert not received()
    with history.open("a") as f:
        f.write("\n# 2026-12-03 06:41:00.2\n+line 1\n+line 2\n")
    assert received()
    assert history_entries(history.read_text()) == ["old message", "line 1\nline 2"]


def test_aider_takes_text_only_at_its_prompt(tmp_path):
    plugin = agent.get("aider")
    busy = "> Fix it\n   ░█    Waiting for gpt-4o"
    o = obs(tmp_path, pane=busy)
    assert plugin.not_ready(o, plugin.activity(o)) == "aider is not at its > prompt (busy)"
    o = obs(tmp_path, pane="Tokens: 2.6k sent\n" + "─" * 40 + "\nREADME.md\n> ")
    assert plugin.not_ready(o, plugin.activity(o)) is None


def test_installed_version_reads_the_package_without_running_it(tmp_path, monkeypatch):
    from ao.plugins.agent.command import installed_version, version_at_least

    pkg = tmp_path / "node_modules" / "@openai" / "codex"
    (pkg / "bin").mkdir(parents=True)
    (pkg / "package.json").write_text('{"name": "@openai/codex", "version": "0.171.0"}')
    exe = pkg / "bin" / "codex.js"
    exe.write_text("#!/bin/sh\nexit 99\n")
    exe.chmod(0o755)
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "codex").symlink_to(exe)
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    assert installed_version("codex") == "0.171.0"
    assert version_at_least("0.171.0", (0, 171)) and not version_at_least("0.170.9", (0, 171))
    assert version_at_least(None, (9, 9))  # unknown: signals are used and checked as they are read
    assert not version_at_least(None, (9, 9), unknown=False)  # ...but not a flag an old CLI would refuse


# ------------------------------------------------------------- after a crash while typing (ao.executors)

def test_each_agent_says_whether_a_message_arrived_since_a_time(tmp_path):
    """``received_since``: what the journal asks about a message ao was typing in when it died."""
    import time as _time
    from datetime import datetime, timezone

    ws, run = tmp_path / "ws", tmp_path / "run"
    ws.mkdir()
    run.mkdir()
    now = _time.time()
    iso = datetime.fromtimestamp(now, timezone.utc).isoformat().replace("+00:00", "Z")
    # Claude: the transcript's user entry (or a queued one) with its timestamp
    plugin = claude(tmp_path)
    assert plugin.received_since(ws, run, "Fix it", now) is None  # no transcript to ask
    transcript = tmp_path / "claude" / "projects" / cc.project_key(ws) / "s.jsonl"
    transcript.parent.mkdir(parents=True)
    transcript.write_text(json.dumps({"type": "user", "timestamp": iso, "message": {"content": "Fix it"}}) + "\n")
    assert plugin.received_since(ws, run, "Fix it", now - 5) is True
    assert plugin.received_since(ws, run, "Fix it", now + 60) is False  # older than the crash
    assert plugin.received_since(ws, run, "other", now - 5) is False
    # Codex: the rollout's UserMessage item
    codex = agent.get("codex", home_dir=tmp_path / "codex")
    rollout(tmp_path, ws, {**user_item("Fix it"), "timestamp": iso})
    assert codex.received_since(ws, run, "Fix it", now - 5) is True
    assert codex.received_since(ws, run, "Fix it", now + 60) is False
    # aider: the input history's entry under its local-time line
    aider = agent.get("aider")
    assert aider.received_since(ws, run, "Fix it", now) is None
    stamp = datetime.fromtimestamp(now).strftime("%Y-%m-%d %H:%M:%S.%f")
    (run / "aider.input.history").write_text(f"\n# {stamp}\n+Fix it\n")
    assert aider.received_since(ws, run, "Fix it", now - 5) is True
    assert aider.received_since(ws, run, "Fix it", now + 60) is False


def test_a_usage_limit_menu_is_blocked_though_claude_reports_a_dialog(tmp_path):
    (tmp_path / "run").mkdir()
    status_file(tmp_path, 9, "waiting", T0 + 50, waitingFor="dialog open")
    menu = ("❯ Fix it\n● You've hit your session limit · resets 3pm\n\n What do you want to do?\n"
            " ❯ 1. Stop and wait for limit to reset\n   2. Upgrade your plan\n Enter to confirm · Esc to cancel")
    a = claude(tmp_path).activity(obs(tmp_path, pane=menu, pid=9))
    assert a.state == "blocked" and "session limit" in a.detail


def test_opencode_restore_finds_the_conversation_in_its_store_when_ao_never_saw_it(tmp_path, monkeypatch):
    """The agent exited before ao observed it through its server: opencode's own store names the session."""
    import sqlite3

    plugin = agent.get("opencode")
    c = launch_ctx(tmp_path, resume=True)
    plugin.prepare(c)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert not plugin.can_resume(c)  # no store at all: a fresh launch with the prompt
    (tmp_path / "data" / "opencode").mkdir(parents=True)
    db = sqlite3.connect(tmp_path / "data" / "opencode" / "opencode.db")
    db.execute("CREATE TABLE session (id text PRIMARY KEY, parent_id text, directory text NOT NULL, "
               "time_updated integer NOT NULL)")
    db.executemany("INSERT INTO session VALUES (?, ?, ?, ?)", [
        ("ses_old", None, str(c.workspace), 1), ("ses_new", None, str(c.workspace), 3),
        ("ses_child", "ses_new", str(c.workspace), 4), ("ses_elsewhere", None, "/elsewhere", 9)])
    db.commit()
    db.close()
    assert plugin.can_resume(c)
    assert shlex.split(plugin.launch_command(c))[-2:] == ["--session", "ses_new"]


# ------------------------------------------------------------------------------ files an agent can write

def plant_link(path: Path, target: Path) -> None:
    """What a sandboxed agent can do in its folders: put a link where ao writes, and at ao's temp file name."""
    path.symlink_to(target)
    path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp").symlink_to(target)


def test_ao_never_writes_through_a_link_an_agent_planted(tmp_path):
    from ao.plugins.agent.command import LARGE_PROMPT
    from ao.sessions import prompt_message

    outside = tmp_path / "outside"
    outside.write_text("the user's own file\n")
    c = launch_ctx(tmp_path)
    plugin = agent.get("opencode")
    plant_link(c.run_dir / oc.SERVER, outside)
    plugin.prepare(c)
    server = c.run_dir / oc.SERVER
    assert not server.is_symlink() and server.stat().st_mode & 0o777 == 0o600
    assert "password" in json.loads(server.read_text())
    server.with_name(f".{oc.SERVER}.{os.getpid()}.{threading.get_ident()}.tmp").symlink_to(outside)
    plugin._remember(obs(tmp_path), "ses_9")
    assert json.loads(server.read_text())["session"] == "ses_9"

    plant_link(c.workspace / LARGE_PROMPT, outside)
    note = prompt_message("x" * 200_000, c.workspace)
    assert str(c.workspace / LARGE_PROMPT) in note and (c.workspace / LARGE_PROMPT).read_text() == "x" * 200_000

    # The user's own agent configs may be dotfiles links: followed, but only a file that parses is changed.
    (tmp_path / "codex").mkdir()
    (tmp_path / "codex" / "config.toml").symlink_to(outside)
    agent.get("codex", home_dir=tmp_path / "codex").prepare(launch_ctx(tmp_path, trustWorkspace=True))
    assert (tmp_path / "codex" / "config.toml").is_symlink()

    (tmp_path / "claude").mkdir()
    (tmp_path / "claude" / ".claude.json").symlink_to(outside)
    with pytest.raises(AoError, match="not changing it"):
        claude(tmp_path).prepare(launch_ctx(tmp_path, trustWorkspace=True))
    assert outside.read_text() == "the user's own file\n"


def test_trust_follows_a_dotfiles_link_to_the_users_own_agent_config(tmp_path):
    dotfiles = tmp_path / "dotfiles"
    dotfiles.mkdir()
    (dotfiles / "config.toml").write_text('model = "o3"\n')
    (dotfiles / "config.toml").chmod(0o600)
    (dotfiles / "claude.json").write_text('{"theme": "dark"}\n')
    (tmp_path / "codex").mkdir()
    (tmp_path / "codex" / "config.toml").symlink_to(dotfiles / "config.toml")
    (tmp_path / "claude").mkdir()
    (tmp_path / "claude" / ".claude.json").symlink_to(dotfiles / "claude.json")
    ctx = launch_ctx(tmp_path, trustWorkspace=True)
    agent.get("codex", home_dir=tmp_path / "codex").prepare(ctx)
    claude(tmp_path).prepare(ctx)
    assert (tmp_path / "codex" / "config.toml").is_symlink() and (tmp_path / "claude" / ".claude.json").is_symlink()
    assert 'trust_level = "trusted"' in (dotfiles / "config.toml").read_text()
    assert 'model = "o3"' in (dotfiles / "config.toml").read_text()
    assert (dotfiles / "config.toml").stat().st_mode & 0o777 == 0o600  # MCP tokens stay private
    data = json.loads((dotfiles / "claude.json").read_text())
    assert data["theme"] == "dark" and data["projects"][str(ctx.workspace)]["hasTrustDialogAccepted"] is True


def test_a_fifo_in_place_of_an_agents_file_never_blocks_ao(tmp_path):
    """A fifo with no writer blocks whoever opens it for reading: ao would hang in `ao start`."""
    from ao.plugins.agent import aider
    from ao.plugins.agent.command import read_new_lines

    c = launch_ctx(tmp_path, trustWorkspace=True)
    fifo = tmp_path / "fifo"
    reads = {
        fifo: [lambda: cc.last_turn(fifo), lambda: aider.last_turn(fifo), lambda: read_new_lines(fifo, 0),
               lambda: cx._first_line(fifo)],
        tmp_path / "claude" / "sessions" / "42.json": [lambda: claude(tmp_path).status(42)],
        tmp_path / "codex" / "config.toml": [lambda: agent.get("codex", home_dir=tmp_path / "codex").prepare(c)],
        c.run_dir / oc.SERVER: [lambda: oc.OpenCode._server_file(c.run_dir)],
    }
    for path, calls in reads.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        os.mkfifo(path)
        for read in calls:
            got: list = []
            thread = threading.Thread(target=lambda: got.append(read()), daemon=True)
            thread.start()
            thread.join(5)
            if thread.is_alive():
                os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))  # let the reader go, to fail cleanly
                pytest.fail(f"reading the fifo {path.name} blocked")
            assert got in ([None], [([], 0)]), got  # unreadable, as a missing file is


# ------------------------------------------------------------- an agent with a home of its own (docker)

def test_an_agent_with_its_own_home_is_read_and_trusted_there_and_not_in_aos(tmp_path, monkeypatch):
    """A container's agent keeps its transcripts, status files, rollouts and store in the session's home
    (``Observation.home``, ``LaunchContext.home``): ao reads them there, writes trust there, and leaves its own
    home (and the settings naming it) alone."""
    import sqlite3

    monkeypatch.setattr(cx, "installed_version", lambda program: "0.171.0")
    own = tmp_path / "run" / "home"
    own.mkdir(parents=True)
    ws = tmp_path / "ws"
    ws.mkdir()
    c = launch_ctx(tmp_path, resume=True, trustWorkspace=True)
    c.home = own
    seen = Observation(now=T0 + 100, alive=True, workspace=ws, started_at=T0, ready_threshold=300,
                       pane=CLAUDE_IDLE, run_dir=tmp_path / "run", pid=42, home=own)

    # Claude Code: ao's configured folder holds nothing of this session; the session's home does
    plugin = claude(tmp_path)
    (own / ".claude" / "sessions").mkdir(parents=True)
    (own / ".claude" / "sessions" / "42.json").write_text(json.dumps(
        {"pid": 42, "sessionId": "s1", "status": "waiting", "waitingFor": "permission prompt",
         "statusUpdatedAt": int((T0 + 90) * 1000)}))
    assert plugin.activity(seen).state == "waiting_input"
    assert plugin.activity(obs(tmp_path, pid=42)).state != "waiting_input"  # ao's own folder: no such file
    assert not plugin.can_resume(c)
    transcript = own / ".claude" / "projects" / cc.project_key(ws) / "abc.jsonl"
    transcript.parent.mkdir(parents=True)
    transcript.write_text(json.dumps({"type": "user", "message": {"content": "Fix it"}}) + "\n")
    assert plugin.can_resume(c) and plugin.session_file(ws) is None
    plugin.prepare(c)
    assert json.loads((own / ".claude.json").read_text())["projects"][str(ws)] == {"hasTrustDialogAccepted": True}
    assert not (tmp_path / "claude" / ".claude.json").exists()

    # Codex: the rollout in the session's $CODEX_HOME is the receipt, the turn state and the resume
    codex = agent.get("codex", home_dir=tmp_path / "codex")
    assert not codex.can_resume(c)
    found = rollout(tmp_path / "run" / "home" / "x", ws, ev("task_started"), ev("task_complete"))
    (own / ".codex").mkdir()
    (found.parents[3]).rename(own / ".codex" / "sessions")
    assert codex.can_resume(c) and codex.rollout(ws) is None
    assert (codex.activity(Observation(**{**seen.__dict__, "pane": CODEX_IDLE})).detail == "turn finished")
    codex.prepare(c)
    assert 'trust_level = "trusted"' in (own / ".codex" / "config.toml").read_text()
    assert not (tmp_path / "codex" / "config.toml").exists()

    # opencode: its store under the session's ~/.local/share
    store = own / ".local" / "share" / "opencode"
    store.mkdir(parents=True)
    db = sqlite3.connect(store / "opencode.db")
    db.execute("CREATE TABLE session (id text, parent_id text, directory text, time_updated integer)")
    db.execute("INSERT INTO session VALUES ('ses_1', NULL, ?, 1)", (str(ws),))
    db.commit()
    db.close()
    assert oc.newest_stored_session(ws, own) == "ses_1"

    # a link the agent left in its home never leads ao's writes out of it
    outside = tmp_path / "outside"
    outside.mkdir()
    (own / ".codex" / "config.toml").unlink()
    (own / ".codex").rename(own / ".codex-old")
    (own / ".codex").symlink_to(outside)
    with pytest.raises(AoError, match="leads out of the session's home"):
        codex.prepare(c)
    assert list(outside.iterdir()) == []


def test_what_an_agent_plants_in_its_own_home_never_hangs_crashes_or_redirects_ao(tmp_path):
    """A container's agent owns its home: a sparse 100 GB status file, a status file of an earlier process
    with the same pid, an opencode store that is a fifo or whose schema loops for ever, or the home itself
    swapped for a link to the user's home."""
    import sqlite3
    import time as _time

    own = tmp_path / "run" / "home"
    (own / ".claude" / "sessions").mkdir(parents=True)
    (tmp_path / "ws").mkdir()
    plugin = claude(tmp_path)
    seen = Observation(now=T0 + 100, alive=True, workspace=tmp_path / "ws", started_at=T0, ready_threshold=300,
                       pane=CLAUDE_IDLE, run_dir=tmp_path / "run", pid=42, home=own)
    status = own / ".claude" / "sessions" / "42.json"
    with open(status, "wb") as f:
        f.truncate(100 << 30)
    assert plugin.status(42, own) is None and plugin.activity(seen).state != "waiting_input"
    status.write_text(json.dumps({"pid": 42, "status": "waiting", "statusUpdatedAt": int((T0 - 600) * 1000)}))
    assert plugin.status(42, own) is not None  # there, but an earlier process's: not this launch's state
    assert plugin.activity(seen).state != "waiting_input"

    store = own / ".local" / "share" / "opencode"
    store.mkdir(parents=True)
    os.mkfifo(store / "opencode.db")
    started = _time.monotonic()
    assert oc.newest_stored_session(tmp_path / "ws", own) is None
    (store / "opencode.db").unlink()
    db = sqlite3.connect(store / "opencode.db")
    db.execute("CREATE VIEW session AS WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n) "
               "SELECT x AS id, NULL AS parent_id, 'd' AS directory, x AS time_updated FROM n")
    db.commit()
    db.close()
    assert oc.newest_stored_session(tmp_path / "ws", own) is None  # stopped by the deadline
    assert _time.monotonic() - started < 10

    user_home = tmp_path / "me"
    user_home.mkdir()
    own.rename(tmp_path / "run" / "home.old")
    own.symlink_to(user_home)  # the agent swaps its home for a link to the user's
    c = launch_ctx(tmp_path, trustWorkspace=True)
    c.home = own
    with pytest.raises(AoError, match="leads out of the session's home"):
        plugin.prepare(c)
    assert list(user_home.iterdir()) == []
