"""Agent plugins: launch commands, prompt delivery, and activity from the terminal and from session files."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from pathlib import Path

import pytest

from ao import activity
from ao.errors import AoError
from ao.plugins import agent
from ao.plugins.agent import Activity, LaunchContext, Observation
from ao.plugins.agent.claude_code import ClaudeCode, project_key

T0 = 1_700_000_000.0
READY = 300.0


def ctx(tmp_path: Path, resume: bool = False, **settings) -> LaunchContext:
    return LaunchContext(session_id="app-1", workspace=tmp_path, prompt_file=tmp_path / "my prompts" / "app 1.md",
                         settings=settings, resume=resume)


def obs(now: float, *, pane: str | None = None, alive: bool = True, memo: dict | None = None,
        workspace: Path = Path("/nonexistent/ws"), last_output_at: float | None = None) -> Observation:
    return Observation(now=now, alive=alive, workspace=workspace, started_at=T0, ready_threshold=READY,
                       pane=pane, last_output_at=last_output_at, memo=dict(memo or {}))


def prompt_arg(c: LaunchContext) -> str:
    """How shlex (like the shell) sees the prompt argument: one word, the command substitution."""
    return f"$(cat {shlex.quote(str(c.prompt_file))})"


# ------------------------------------------------------------------------------------------- launching

@pytest.mark.parametrize("mode, flags", [
    ("default", []), (None, []), ("skip", ["--dangerously-skip-permissions"]),
    ("auto-edit", ["--permission-mode", "acceptEdits"]), ("plan", ["--permission-mode", "plan"]),
])
def test_claude_launch(tmp_path, mode, flags):
    c = ctx(tmp_path, permissions=mode, model="opus")
    a = agent.get("claude-code")
    assert a.prompt_delivery(c.settings) == "argument"
    assert shlex.split(a.launch_command(c)) == ["claude", *flags, "--model", "opus", prompt_arg(c)]


def test_claude_resume_continues_with_the_same_permissions(tmp_path):
    c = ctx(tmp_path, resume=True, permissions="skip")
    assert shlex.split(agent.get("claude-code").launch_command(c)) == \
        ["claude", "--dangerously-skip-permissions", "--continue"]


@pytest.mark.parametrize("mode, flags", [
    ("default", []), ("skip", ["--dangerously-bypass-approvals-and-sandbox"]),
    ("auto-edit", ["--sandbox", "workspace-write", "--ask-for-approval", "on-request"]),  # --full-auto is gone
    ("plan", ["--sandbox", "read-only", "--ask-for-approval", "on-request"]),
])
def test_codex_launch(tmp_path, monkeypatch, mode, flags):
    monkeypatch.setattr("ao.plugins.agent.codex.installed_version", lambda program: "0.171.0")
    c = ctx(tmp_path, permissions=mode, model="o3")
    a = agent.get("codex", home_dir=tmp_path / "codex-home")
    assert a.prompt_delivery(c.settings) == "argument"
    # --no-daemon: Codex's shared background server would outlive the session
    assert shlex.split(a.launch_command(c)) == ["codex", "--no-daemon", *flags, "-m", "o3", prompt_arg(c)]


@pytest.mark.parametrize("name", ["claude-code", "codex", "opencode"])
def test_a_prompt_too_large_for_an_argument_is_passed_as_a_file(tmp_path, monkeypatch, name):
    """Linux refuses one argument over 128 KiB (E2BIG): the agent is told to read the prompt from a file in
    the workspace, which git ignores (info/exclude), so the agent never commits it."""
    from ao.plugins.agent.command import ARG_LIMIT, LARGE_PROMPT

    monkeypatch.setattr("ao.plugins.agent.codex.installed_version", lambda program: "0.171.0")
    ws = tmp_path / "ws"
    subprocess.run(["git", "init", "-q", str(ws)], check=True)
    c = ctx(ws)
    c.prompt_file = tmp_path / "prompt.md"
    c.prompt_file.write_text("fits")
    a = agent.get(name, **({"home_dir": tmp_path / "codex"} if name == "codex" else {}))
    assert shlex.split(a.launch_command(c))[-1] == prompt_arg(c) and not (ws / LARGE_PROMPT).exists()

    big = "Fix the bug.\n" + "x" * ARG_LIMIT + "\nThe end."
    c.prompt_file.write_text(big)
    note = shlex.split(a.launch_command(c))[-1]
    assert str(ws / LARGE_PROMPT) in note and len(note) < 500
    assert (ws / LARGE_PROMPT).read_text() == big
    status = subprocess.run(["git", "status", "--porcelain", "--ignored=no"], cwd=ws, capture_output=True,
                            text=True, check=True)
    assert LARGE_PROMPT not in status.stdout
    assert LARGE_PROMPT in (ws / ".git" / "info" / "exclude").read_text().splitlines()


def test_exclude_writes_only_into_the_workspaces_own_repository(tmp_path):
    """A workspace's ``.git`` is the agent's to rewrite: pointed at another repository on this machine, ao
    must not add its patterns there. A worktree's repository (whose record names the worktree back) is fine."""
    from ao.plugins.agent.command import exclude

    def run(*args, cwd):
        subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)

    project, other = tmp_path / "project", tmp_path / "other"
    for repo in (project, other):
        run("init", "-q", str(repo), cwd=tmp_path)
        run("-c", "user.name=a", "-c", "user.email=a@b", "commit", "-q", "--allow-empty", "-m", "x", cwd=repo)
    run("worktree", "add", "-q", str(tmp_path / "ws"), cwd=project)
    exclude(tmp_path / "ws", ".aider*")
    assert ".aider*" in (project / ".git" / "info" / "exclude").read_text().splitlines()

    before = (other / ".git" / "info" / "exclude").read_text()
    record = project / ".git" / "worktrees" / "ws"
    (record / "commondir").write_text(f"{other / '.git'}\n")  # the record's pointer, rewritten (docker: rw)
    exclude(tmp_path / "ws", ".ao-prompt.md")
    assert (other / ".git" / "info" / "exclude").read_text() == before
    (record / "commondir").write_text("../..\n")
    (tmp_path / "ws" / ".git").write_text(f"gitdir: {other / '.git'}\n")  # the agent points it elsewhere
    exclude(tmp_path / "ws", ".ao-prompt.md")
    assert (other / ".git" / "info" / "exclude").read_text() == before


@pytest.mark.parametrize("version", ["0.170.2", None])
def test_codex_gets_no_daemon_only_when_it_is_known_to_have_it(tmp_path, monkeypatch, version):
    """An older Codex exits at once on a flag it does not know, and so might one whose version ao cannot
    read: those launch without --no-daemon (``ao doctor`` warns about the version)."""
    monkeypatch.setattr("ao.plugins.agent.codex.installed_version", lambda program: version)
    c = ctx(tmp_path, permissions="auto-edit")
    argv = shlex.split(agent.get("codex", home_dir=tmp_path / "codex-home").launch_command(c))
    assert argv[:2] == ["codex", "--sandbox"] and "--no-daemon" not in argv


def test_doctor_compares_with_the_version_each_plugin_was_checked_with(monkeypatch):
    from ao import doctor
    from ao.plugins.agent import aider, claude_code, codex, opencode

    assert {a: doctor.checked_with(a) for a in doctor.AGENT_PROGRAMS} == {
        "claude-code": claude_code.CHECKED, "codex": codex.CHECKED, "opencode": opencode.CHECKED,
        "aider": aider.CHECKED}
    assert doctor.checked_with("command") is None
    monkeypatch.setattr(doctor.shutil, "which", lambda program: f"/usr/bin/{program}")
    monkeypatch.setattr(doctor, "_run", lambda argv: (0, "codex-cli 0.180.1"))
    check = doctor.check_agent("codex", ["app"])
    assert (check.result, check.detail) == (doctor.WARN, f"codex 0.180.1; ao was checked with {codex.CHECKED}")
    monkeypatch.setattr(doctor, "_run", lambda argv: (0, f"codex-cli {codex.CHECKED}"))
    assert doctor.check_agent("codex", ["app"]).result == doctor.OK


def test_aider_launch(tmp_path):
    a = agent.get("aider")
    always = ["--no-show-model-warnings", "--no-gitignore"]
    assert a.prompt_delivery({}) == "send"  # --message would exit after one reply
    assert shlex.split(a.launch_command(ctx(tmp_path, permissions="skip", model="sonnet"))) == \
        ["aider", *always, "--yes-always", "--model", "sonnet"]
    c = ctx(tmp_path, resume=True)
    c.run_dir = tmp_path / "run"
    assert shlex.split(a.launch_command(c)) == [
        "aider", *always, "--input-history-file", str(c.run_dir / "aider.input.history"),
        "--chat-history-file", str(c.run_dir / "aider.chat.history.md"), "--restore-chat-history"]


def test_opencode_launch(tmp_path):
    a = agent.get("opencode")
    c = ctx(tmp_path, model="anthropic/claude-sonnet-4")
    assert a.prompt_delivery({}) == "argument"
    assert shlex.split(a.launch_command(c)) == ["opencode", "--model", "anthropic/claude-sonnet-4", "--prompt",
                                                prompt_arg(c)]
    # nothing stored to continue (can_resume said no, or the store changed since): a fresh launch with the prompt
    c = ctx(tmp_path, resume=True)
    assert shlex.split(a.launch_command(c)) == ["opencode", "--prompt", prompt_arg(c)]


def test_codex_restore_without_a_rollout_launches_afresh(tmp_path, monkeypatch):
    monkeypatch.setattr("ao.plugins.agent.codex.installed_version", lambda program: "0.171.0")
    c = ctx(tmp_path, resume=True)
    argv = shlex.split(agent.get("codex", home_dir=tmp_path / "codex-home").launch_command(c))
    assert argv == ["codex", "--no-daemon", prompt_arg(c)]  # `resume --last` would open an empty session


def test_command_agent_runs_the_line_verbatim(tmp_path):
    a = agent.get("command")
    line = "python agent.py --flag 'a b' | tee log.txt"
    assert a.launch_command(ctx(tmp_path, command=line)) == line
    assert a.launch_command(ctx(tmp_path, resume=True, command=line)) == line
    assert a.prompt_delivery({}) == "send"
    assert a.prompt_delivery({"promptDelivery": "none"}) == "none"
    with pytest.raises(AoError, match="agentConfig.command"):
        a.launch_command(ctx(tmp_path))
    with pytest.raises(AoError, match="promptDelivery"):
        a.prompt_delivery({"promptDelivery": "argument"})


def test_unknown_permission_mode_is_a_user_error(tmp_path):
    with pytest.raises(AoError, match="permissions 'yolo'"):
        agent.get("claude-code").launch_command(ctx(tmp_path, permissions="yolo"))


def test_unknown_agent_suggests_a_name():
    with pytest.raises(AoError, match="did you mean 'codex'"):
        agent.get("codec")


def test_the_shell_passes_the_prompt_file_as_one_argument(tmp_path):
    """Run the launch line the way the launch script does, with a fake `claude` that prints its arguments."""
    c = ctx(tmp_path, permissions="skip")
    c.prompt_file.parent.mkdir()
    prompt = "Fix it: `rm -rf /` $(whoami) \"quoted\" 'single'\nsecond line"
    c.prompt_file.write_text(prompt, encoding="utf-8")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "claude"
    fake.write_text("#!/bin/sh\nfor a in \"$@\"; do printf '%s\\0' \"$a\"; done\n")
    fake.chmod(0o755)
    out = subprocess.run(["bash", "-c", agent.get("claude-code").launch_command(c)], cwd=tmp_path, check=True,
                         capture_output=True, text=True, env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"})
    assert out.stdout.split("\0")[:-1] == ["--dangerously-skip-permissions", prompt]


# ----------------------------------------------------------------------------------- terminal activity

def test_exited_when_the_terminal_is_gone():
    a = activity.terminal_activity(obs(T0 + 100, alive=False, memo={"last_activity_at": T0 + 40}))
    assert (a.state, a.at) == ("exited", T0 + 40)


@pytest.mark.parametrize("bottom", [
    "Overwrite existing file? (y/n) ",
    "Install dependencies? [y/N]",
    "Proceed? [Y/n]:",
    "Add src/app.py to the chat? (Y)es/(N)o/(D)on't ask again [Yes]: ",
    "Press Enter to continue",
    "Continue? ",
    "│ Do you want to proceed?                      │\n│ ❯ 1. Yes                                      │\n│   2. No   │",
    "Do you want to make this edit to app.py?\n❯ 1. Yes\n  2. Yes, allow all edits during this session\n  3. No",
    "Allow command?\n  $ npm install\n  Yes (y)   No (n)",
    "Would you like to run the following command?\n  › 1. Yes, proceed\n    2. No",
])
def test_waiting_input_patterns(bottom):
    pane = "some earlier output\n" * 30 + bottom + "\n\n\n"
    a = activity.terminal_activity(obs(T0 + 1000, pane=pane))
    assert a.state == "waiting_input", bottom
    assert a.detail


def test_answered_line_prompts_further_up_do_not_count():
    pane = "Add src/app.py to the chat? (Y)es/(N)o [Yes]: y\nApplied edit to src/app.py\nCommit 1a2b3c\nRunning tests\nok"
    assert activity.terminal_activity(obs(T0 + 10, pane=pane)).state == "active"
    typed = "Overwrite existing file? (y/n) y"
    assert activity.terminal_activity(obs(T0 + 10, pane=typed)).state == "active"


def test_active_ready_idle_as_time_passes_and_a_change_resets():
    pane = "Working on it...\n> "
    a = activity.terminal_activity(obs(T0 + 5, pane=pane))
    assert (a.state, a.at, a.detail) == ("active", T0 + 5, "pane changed")
    states = []
    for dt in (20, 60, 200, 400):
        a = activity.terminal_activity(obs(T0 + 5 + dt, pane=pane + "   \n\n", memo=a.memo))  # whitespace only
        states.append(a.state)
        assert a.at == T0 + 5
    assert states == ["active", "ready", "ready", "idle"]
    a = activity.terminal_activity(obs(T0 + 1000, pane=pane + "\nmore output", memo=a.memo))
    assert (a.state, a.at) == ("active", T0 + 1000)


def test_fresh_session_without_a_capture_counts_from_its_start():
    assert activity.terminal_activity(obs(T0 + 10)).state == "active"
    a = activity.terminal_activity(obs(T0 + 100))
    assert (a.state, a.at) == ("ready", T0)
    assert activity.terminal_activity(obs(T0 + 1000)).state == "idle"


def test_runtime_output_time_counts_when_newer():
    a = activity.terminal_activity(obs(T0 + 500, last_output_at=T0 + 490, memo={"last_activity_at": T0 + 100}))
    assert (a.state, a.at) == ("active", T0 + 490)
    b = activity.terminal_activity(obs(T0 + 500, last_output_at=T0 + 50, memo={"last_activity_at": T0 + 400}))
    assert (b.state, b.at) == ("ready", T0 + 400)


def test_memo_round_trips_through_json():
    a = activity.terminal_activity(obs(T0 + 5, pane="hello"))
    memo = json.loads(json.dumps(a.memo))  # it is stored in the session's metadata
    assert set(memo) == {"pane_hash", "last_activity_at"}
    b = activity.terminal_activity(obs(T0 + 100, pane="hello", memo=memo))
    assert (b.state, b.at, b.memo) == ("ready", T0 + 5, memo)


def test_blocked_on_a_usage_limit_only_when_quiet():
    pane = "Working...\nClaude usage limit reached. Your limit will reset at 3pm.\n> "
    a = activity.terminal_activity(obs(T0 + 5, pane=pane))
    assert a.state == "active"
    a = activity.terminal_activity(obs(T0 + 100, pane=pane, memo=a.memo))
    assert a.state == "blocked" and "usage limit" in a.detail
    assert activity.terminal_activity(obs(T0 + 100, pane="429 Too Many Requests", memo=a.memo)).state == "active"


def test_writing_about_rate_limits_is_not_blocked():
    pane = "def rate_limit(requests):\n    pass\n" + "x\n" * 10
    a = activity.terminal_activity(obs(T0 + 5, pane=pane))
    assert activity.terminal_activity(obs(T0 + 100, pane=pane, memo=a.memo)).state == "ready"


def test_combine_keeps_exited_and_waiting():
    o = obs(T0 + 100)
    for state in ("exited", "waiting_input"):
        assert activity.combine(o, Activity(state, T0, {}), T0 + 90, "file").state == state
    newer = activity.combine(o, Activity("ready", T0, {}), T0 + 90, "file")
    assert (newer.state, newer.at, newer.detail) == ("active", T0 + 90, "file")


# ------------------------------------------------------------------------------ agent-specific activity

def test_aider_chat_history_is_a_sign_of_life(tmp_path):
    history = tmp_path / ".aider.chat.history.md"
    history.write_text("# aider chat\n")
    os.utime(history, (T0 + 580, T0 + 580))
    a = agent.get("aider").activity(obs(T0 + 600, workspace=tmp_path, memo={"last_activity_at": T0 + 10,
                                                                           "pane_hash": "x"}))
    assert (a.state, a.at) == ("active", T0 + 580)


class ClaudeEnv:
    def __init__(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.config = tmp_path / "claude-config"
        self.workspace = tmp_path / "work trees" / "app_1.x"
        self.workspace.mkdir(parents=True)
        monkeypatch.setenv("CLAUDE_CONFIG_DIR", str(self.config))
        self.folder = self.config / "projects" / project_key(self.workspace)

    def log(self, lines: list, mtime: float, name: str = "s1.jsonl") -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / name
        path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))
        os.utime(path, (mtime, mtime))
        return path

    def activity(self, now: float, **kw) -> Activity:
        return agent.get("claude-code").activity(obs(now, workspace=self.workspace, memo={"pane_hash": "p",
                                                 "last_activity_at": T0}, **kw))


USER = {"type": "user", "message": {"role": "user", "content": "Fix the bug"}}
TOOL = {"type": "assistant", "message": {"role": "assistant", "content": [
    {"type": "text", "text": "Running tests"}, {"type": "tool_use", "id": "t1", "name": "Bash", "input": {}}]}}
RESULT = {"type": "user", "message": {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1"}]}}
DONE = {"type": "assistant", "message": {"role": "assistant", "stop_reason": "end_turn",
                                         "content": [{"type": "text", "text": "All done: PR opened."}]}}


def test_claude_project_key():
    # Expected names computed with Claude Code 2.1.197's own sanitising function (its cli, run under node)
    assert project_key("/home/me/.ao/app_1.x") == "-home-me--ao-app-1-x"
    assert project_key("/tmp/é🚀/x") == "-tmp-----x"  # JavaScript counts an emoji as two characters
    long = "/home/me/.local/share/ao/worktrees/" + "very-long-project-name-" * 8 + "/app-12"
    assert project_key(long) == ("-home-me--local-share-ao-worktrees-" + "very-long-project-name-" * 7
                                 + "very-ob7q90")
    assert project_key("/srv/wörk/🚀/" + "x" * 190 + "/app") == "-srv-w-rk----" + "x" * 187 + "-67dji"


def test_claude_transcripts_of_a_long_workspace_path_are_found(tmp_path, monkeypatch):
    """A folder name past 200 characters is cut and hashed; a build whose hash differs is found by prefix."""
    env = ClaudeEnv(tmp_path, monkeypatch)
    env.workspace = tmp_path / ("a" * 120) / ("b" * 120)
    env.workspace.mkdir(parents=True)
    env.folder = env.config / "projects" / project_key(env.workspace)
    assert len(env.folder.name) > 200
    env.log([{**USER, "cwd": str(env.workspace)}, TOOL], T0 + 100)
    assert env.activity(T0 + 101).state == "active"
    assert agent.get("claude-code").session_file(env.workspace)[0] == env.folder / "s1.jsonl"
    other = env.folder.with_name(env.folder.name[:200] + "-otherhash")
    env.folder.rename(other)
    # another workspace under the same deep folder shares the cut prefix: its newer transcript is not ours
    env.folder = env.folder.with_name(env.folder.name[:200] + "-siblinghash")
    env.log([{**USER, "cwd": str(env.workspace) + "-2"}, TOOL], T0 + 150)
    assert agent.get("claude-code").session_file(env.workspace)[0] == other / "s1.jsonl"


def test_claude_finished_turn_is_ready_then_idle(tmp_path, monkeypatch):
    env = ClaudeEnv(tmp_path, monkeypatch)
    env.log([USER, TOOL, RESULT, DONE, "{not json", '{"type": "summary", "summary": "x"}', "[1, 2]"], T0 + 100)
    assert env.activity(T0 + 105).state == "active"  # settling: another block may follow
    a = env.activity(T0 + 140)
    assert (a.state, a.at) == ("ready", T0 + 100) and "turn finished" in a.detail
    assert env.activity(T0 + 100 + READY + 1).state == "idle"


def test_claude_turn_in_progress_stays_active_while_a_tool_runs(tmp_path, monkeypatch):
    env = ClaudeEnv(tmp_path, monkeypatch)
    env.log([USER, TOOL], T0 + 100)
    assert env.activity(T0 + 200).state == "active"  # past the 30 s window, but the tool is still running
    assert env.activity(T0 + 100 + READY + 1).state == "idle"
    env.log([USER, TOOL, RESULT], T0 + 100)
    assert env.activity(T0 + 200).state == "active"


def test_claude_newest_session_file_wins(tmp_path, monkeypatch):
    env = ClaudeEnv(tmp_path, monkeypatch)
    env.log([USER, TOOL], T0 + 50, "old.jsonl")
    env.log([DONE], T0 + 100, "new.jsonl")
    a = env.activity(T0 + 150)
    assert (a.state, a.at, a.memo["claude_file"].endswith("new.jsonl")) == ("ready", T0 + 100, True)


def test_claude_usage_limit_in_the_log_is_blocked(tmp_path, monkeypatch):
    env = ClaudeEnv(tmp_path, monkeypatch)
    limit = {"type": "assistant", "isApiErrorMessage": True, "message": {
        "role": "assistant", "content": [{"type": "text", "text": "Claude AI usage limit reached|1700003600"}]}}
    env.log([USER, limit], T0 + 100)
    assert env.activity(T0 + 200).state == "blocked"


def test_claude_pane_and_liveness_win_over_the_log(tmp_path, monkeypatch):
    env = ClaudeEnv(tmp_path, monkeypatch)
    env.log([USER, TOOL], T0 + 100)
    waiting = env.activity(T0 + 110, pane="Bash command\n  npm test\nDo you want to proceed?\n❯ 1. Yes\n  2. No")
    assert waiting.state == "waiting_input"
    assert env.activity(T0 + 110, alive=False).state == "exited"


def test_claude_without_a_log_falls_back_to_the_terminal(tmp_path, monkeypatch):
    env = ClaudeEnv(tmp_path, monkeypatch)
    a = env.activity(T0 + 100)
    assert (a.state, a.at) == ("ready", T0)


def test_claude_only_malformed_lines_use_the_mtime(tmp_path, monkeypatch):
    env = ClaudeEnv(tmp_path, monkeypatch)
    env.log(["{", "nonsense", '{"type": "assistant"}'], T0 + 100)
    a = env.activity(T0 + 110)
    assert (a.state, a.at) == ("active", T0 + 100)
    assert env.activity(T0 + 200).state == "ready"


def test_claude_config_dir_option(tmp_path):
    a = ClaudeCode(config_dir=tmp_path / "cfg")
    assert a.projects_dir() == tmp_path / "cfg" / "projects"


# ------------------------------------------------------------------- one question pages once (issue 11)

def test_a_question_keeps_the_time_it_was_asked_however_the_pane_redraws():
    """agent-needs-input's occurrence is last_activity_at: one question must keep one time."""
    question = "Bash command\n  npm test\nDo you want to proceed?\n❯ 1. Yes\n  2. No\nEsc to cancel"
    a = activity.terminal_activity(obs(T0 + 10, pane="output\n" + question))
    assert (a.state, a.at) == ("waiting_input", T0 + 10)
    for n, now in enumerate((T0 + 20, T0 + 600, T0 + 3600)):  # the TUI redraws above the dialog
        a = activity.terminal_activity(obs(now, pane=f"output {n}\n" + question, memo=a.memo))
        assert (a.state, a.at) == ("waiting_input", T0 + 10)
    other = question.replace("npm test", "rm -rf build")
    b = activity.terminal_activity(obs(T0 + 4000, pane="output\n" + other, memo=a.memo))
    assert (b.state, b.at) == ("waiting_input", T0 + 4000)  # a new question is a new occurrence


def test_an_answered_question_with_new_output_below_is_not_waiting():
    """The issue's case: a y/n question answered, then the agent prints on: no longer a question."""
    pane = "Do you want to proceed? (y/n) y\nreceived 3: 1 bytes\nproceeding\nrunning tests\nagent> "
    a = activity.terminal_activity(obs(T0 + 10, pane=pane))
    assert a.state == "active" and activity.MEMO_WAIT not in a.memo
    a = activity.terminal_activity(obs(T0 + 20, pane=pane + "\nmore output", memo=a.memo))
    assert a.state == "active"


def test_a_screen_without_the_agents_input_box_waits_once_it_is_still():
    """A dialog ao cannot classify: for an agent whose input box ao knows, a still screen without it."""
    pane = "Some new onboarding question we have never seen\n  Pick a colour: [red] blue green"
    plugin = agent.get("aider")
    fresh = plugin.activity(obs(T0 + 10, pane=pane))
    assert fresh.state == "active"  # it may still be drawing
    still = plugin.activity(obs(T0 + 20, pane=pane, memo=fresh.memo))
    assert still.state == "waiting_input" and "unrecognised" in still.detail
    assert plugin.activity(obs(T0 + 30, pane=pane + "\n> ", memo=still.memo)).state == "active"


def test_answers_that_mention_429_are_not_blocked():
    answer = ("╭─── Claude Code ───╮\n❯ Handle HTTP 429\n● I added retries: a 429 Too Many Requests (rate limit) "
              "now backs off.\n✻ Brewed for 3s\n" + "─" * 40 + "\n❯ \n" + "─" * 40 + "\n  ? for shortcuts")
    for name in ("claude-code", "codex", "aider", "opencode", "command"):
        memo = {"pane_hash": activity.pane_hash(answer), "last_activity_at": T0}
        state = agent.get(name).activity(obs(T0 + 1000, pane=answer, memo=memo)).state
        assert state != "blocked", name
