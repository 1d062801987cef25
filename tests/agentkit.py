"""Test homes for the real agent CLIs: a tmp HOME per test, pre-seeded the way a user's home is after the
CLI's first run (onboarding done, API key approved, the project trusted), pointed at a :class:`FakeModel`
on 127.0.0.1, and an ao project (sessionkit) whose agent is that CLI, on a private tmux socket.

Only what a user would have set up once is seeded here. What ao itself must do at launch (aider's .gitignore
and model-warning questions, Codex's background server, Claude's hooks, trust of new workspaces beyond what a
worktree inherits) is left to ao, so the tests prove it.

Everything a test starts carries the test's HOME in its environment (the tmux server, the agent, Codex's
background app-server, CI runners), which is how :func:`leftovers` finds what is still running, and how the
fixture kills it whatever the outcome.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fake_model import API_KEY, MODEL, FakeModel
from sessionkit import AoEnv, make_env, wait_for
from tools import TOOLS, require

BIN = TOOLS / "bin"     # .ci/setup.d/20-agents.sh links each CLI here
INSTALL = "run .ci/setup.d/20-agents.sh (installs the pinned agent CLIs under $AO_TOOLS)"
PROGRAMS = {"claude-code": "claude", "codex": "codex", "opencode": "opencode", "aider": "aider"}
AGENTS = tuple(PROGRAMS)
MODELS = {"claude-code": None, "codex": MODEL, "opencode": f"fake/{MODEL}", "aider": f"openai/{MODEL}"}
READY_THRESHOLD = 8     # seconds: short, so a test sees ready turn into idle


@dataclass
class RealEnv(AoEnv):
    """An :class:`AoEnv` whose agent is a real CLI talking to ``model``."""

    agent: str = ""
    model: FakeModel = field(default_factory=FakeModel)
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def home(self) -> Path:
        return self.root / "home"

    @property
    def env(self) -> dict[str, str]:
        return {**super().env, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", **self.extra_env}

    # -- ao, as a user runs it ---------------------------------------------------------------------

    def spawn(self, *args: str) -> dict[str, Any]:
        run = self.ao("spawn", "app", *args, "--json", timeout=120)
        assert run.returncode == 0, f"ao spawn failed ({run.returncode}):\n{run.stdout}\n{run.stderr}"
        return json.loads(run.stdout)

    def status(self, sid: str) -> dict[str, Any]:
        """``ao status --refresh``: no `ao start` runs in these tests, so status observes once first."""
        run = self.ao("status", "--refresh", "--json")
        assert run.returncode == 0, run.stderr
        return next(row for row in json.loads(run.stdout) if row["session"] == sid)

    def wait_status(self, sid: str, check: Any, timeout: float, what: str) -> dict[str, Any]:
        """Poll ``ao status --refresh --json`` until ``check(row)``; the row. The failure names the rows seen."""
        seen: list[tuple[str, str]] = []

        def probe() -> dict[str, Any] | None:
            row = self.status(sid)
            if not seen or seen[-1] != (row["status"], row["activity"]):
                seen.append((row["status"], row["activity"]))
            return row if check(row) else None

        try:
            return wait_for(probe, timeout=timeout, what=what)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; ao status showed (status, activity): {seen}\n"
                                 f"pane:\n{self.pane(sid)}") from None

    def poll(self) -> dict[str, Any]:
        run = self.ao("poll", "--json", timeout=120)
        assert run.returncode == 0, f"ao poll failed ({run.returncode}):\n{run.stdout}\n{run.stderr}"
        return json.loads(run.stdout)

    def record(self, sid: str) -> Any:
        return self.manager().store.get(sid)

    # -- the agent's terminal --------------------------------------------------------------------------

    def handle(self, sid: str) -> str:
        return self.record(sid).runtime_handle

    def pane(self, sid: str) -> str:
        return self.tmux("capture-pane", "-p", "-J", "-t", f"={self.handle(sid)}:").stdout

    def keys(self, sid: str, *keys: str) -> None:
        """What a human does in the attached terminal."""
        self.tmux("send-keys", "-t", f"={self.handle(sid)}:", *keys)

    def pane_pid(self, sid: str) -> int | None:
        out = self.tmux("list-panes", "-t", f"={self.handle(sid)}:", "-F", "#{pane_dead} #{pane_pid}").stdout.split()
        return int(out[1]) if len(out) == 2 and out[0] == "0" else None


# ------------------------------------------------------------------------------------------------ homes

def seed_home(agent: str, home: Path, model: FakeModel, trusted: Path) -> dict[str, str]:
    """Pre-seed ``home`` as a user's home after the CLI's first run; return extra environment variables."""
    return {"claude-code": _seed_claude, "codex": _seed_codex, "opencode": _seed_opencode,
            "aider": _seed_aider}[agent](home, model, trusted)


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def _seed_claude(home: Path, model: FakeModel, trusted: Path) -> dict[str, str]:
    # Onboarding done, this API key approved (Claude keeps the key's last 20 characters), the project
    # trusted (its worktrees inherit that). The user's settings point Claude at the fake API.
    _write(home / ".claude.json", json.dumps({
        "hasCompletedOnboarding": True, "lastOnboardingVersion": "2.1.197",
        "customApiKeyResponses": {"approved": [API_KEY[-20:]], "rejected": []},
        "projects": {str(trusted): {"hasTrustDialogAccepted": True}}}, indent=2))
    _write(home / ".claude" / "settings.json", json.dumps({"env": {
        "ANTHROPIC_BASE_URL": model.url, "ANTHROPIC_API_KEY": API_KEY,
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", "DISABLE_AUTOUPDATER": "1"}}, indent=2))
    return {}


def _seed_codex(home: Path, model: FakeModel, trusted: Path) -> dict[str, str]:
    # A custom provider on the Responses API; no retries, so a 429 shows at once; the project trusted.
    _write(home / ".codex" / "config.toml", f"""\
model = "{MODEL}"
model_provider = "fake"
check_for_update_on_startup = false

[model_providers.fake]
name = "Fake"
base_url = "{model.url}/v1"
wire_api = "responses"
experimental_bearer_token = "{API_KEY}"
request_max_retries = 0
stream_max_retries = 0

[projects."{trusted}"]
trust_level = "trusted"
""")
    return {}


def _seed_opencode(home: Path, model: FakeModel, trusted: Path) -> dict[str, str]:
    # A custom OpenAI-compatible provider; shell commands ask first. opencode installs @opencode-ai/plugin
    # into its config folder at start-up unless it is there: the setup script installed it once.
    config = home / ".config" / "opencode"
    _write(config / "opencode.json", json.dumps({
        "$schema": "https://opencode.ai/config.json",
        "provider": {"fake": {"npm": "@ai-sdk/openai-compatible", "name": "Fake",
                              "options": {"baseURL": f"{model.url}/v1", "apiKey": API_KEY},
                              "models": {MODEL: {"name": "Fake Model"}}}},
        "model": f"fake/{MODEL}", "permission": {"bash": "ask"}, "autoupdate": False, "share": "disabled"},
        indent=2))
    cached = TOOLS / "opencode"
    if (cached / "package.json").exists():  # opencode runs npm unless package.json, its lock and modules agree
        for name in ("package.json", "package-lock.json"):
            (config / name).write_text((cached / name).read_text())
        (config / "node_modules").symlink_to(cached / "node_modules")
    # Without these, each start waits ~2 s for a models catalogue it cannot reach offline.
    return {"OPENCODE_DISABLE_MODELS_FETCH": "1", "OPENCODE_DISABLE_AUTOUPDATE": "1"}


def _seed_aider(home: Path, model: FakeModel, trusted: Path) -> dict[str, str]:
    # The API and edit format in the user's config; analytics answered and this version's release notes
    # seen (both are first-run questions); litellm's price list cached (it is fetched from the internet).
    _write(home / ".aider.conf.yml", f"openai-api-base: {model.url}/v1\nopenai-api-key: {API_KEY}\n"
                                     "edit-format: diff\ncheck-update: false\n")
    _write(home / ".aider" / "analytics.json", json.dumps(
        {"uuid": "00000000-0000-4000-8000-000000000000", "permanently_disable": True, "asked_opt_in": True}))
    python = TOOLS / "aider" / "bin" / "python3"
    _write(home / ".aider" / "installs.json", json.dumps({str(("0.86.2", str(python))): True}))
    _write(home / ".aider" / "caches" / "model_prices_and_context_window.json", "{}")
    return {}


def make_real_env(tmp_path: Path, agent: str, **project: Any) -> RealEnv:
    require(BIN / PROGRAMS[agent], f"the {agent} CLI ({PROGRAMS[agent]})", INSTALL)
    base = make_env(tmp_path)
    model = FakeModel().start()
    env = RealEnv(root=base.root, project=base.project, origin=base.origin, data=base.data, config=base.config,
                  socket=base.socket, agent=agent, model=model)
    env.extra_env = seed_home(agent, env.home, model, base.project)
    agent_config = {k: v for k, v in {"model": MODELS[agent]}.items() if v}
    write_config(env, agentConfig=agent_config, **project)
    return env


def write_config(env: RealEnv, notify_url: str | None = None, **project: Any) -> None:
    import yaml

    env.write_config(agent=env.agent, **project)
    data = yaml.safe_load(env.config.read_text())
    data["projects"]["app"]["agentConfig"] = project.get("agentConfig", {})
    data["readyThreshold"] = f"{READY_THRESHOLD}s"
    if env.extra_env:  # agents get only allowlisted variables, and those the config names
        data["passEnv"] = sorted(env.extra_env)
    if notify_url:
        data["notifiers"] = {"hook": {"plugin": "webhook", "url": notify_url}}
        data["defaults"] = {"notifiers": ["hook"]}
    env.config.write_text(yaml.safe_dump(data))


# --------------------------------------------------------------------------------------------- processes

def processes_of(marker: str) -> dict[int, str]:
    """Live processes whose environment or command line holds ``marker`` (a test's unique HOME): pid ->
    command line. The caller's own process is left out."""
    found: dict[int, str] = {}
    needle = marker.encode()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as fh:
                if fh.read().rsplit(b")", 1)[-1].split()[0] == b"Z":
                    continue
            with open(f"/proc/{entry.name}/environ", "rb") as fh:
                environ = fh.read()
            with open(f"/proc/{entry.name}/cmdline", "rb") as fh:
                cmdline = fh.read()
        except OSError:
            continue
        if needle in environ or needle in cmdline:
            found[int(entry.name)] = cmdline.replace(b"\0", b" ").decode(errors="replace").strip()
    return found


def leftovers(env: RealEnv, timeout: float = 10.0) -> dict[int, str]:
    """The test's processes still running once ``timeout`` has passed (or none, as soon as there are none)."""
    deadline = time.monotonic() + timeout
    while True:
        left = processes_of(f"HOME={env.home}\0") | processes_of(str(env.home) + "/")
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(0.1)


def kill_all(env: RealEnv) -> None:
    """Kill every process of the test, whatever state it is in."""
    from sessionkit import kill_tmux_server

    kill_tmux_server(env.socket)
    for _ in range(3):
        left = processes_of(f"HOME={env.home}\0") | processes_of(str(env.home) + "/")
        if not left:
            return
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        time.sleep(0.2)


def git_identity_env() -> dict[str, str]:
    from sessionkit import GIT_IDENTITY

    return dict(GIT_IDENTITY)


def push_failing_ci(env: RealEnv, workspace: str) -> None:
    """The agent's part, done from outside: commit a CI script that fails on the session's branch, and push
    (the local SCM's pushed branch is the PR)."""
    path = Path(workspace)
    (path / "ci.sh").write_text("echo 'test_health failed: expected 200, got 404'; exit 1\n")
    for args in (["add", "ci.sh"], ["commit", "-q", "-m", "work in progress"], ["push", "-q", "-u", "origin", "HEAD"]):
        subprocess.run(["git", *args], cwd=path, check=True, capture_output=True,
                       env={**os.environ, **git_identity_env(), "HOME": str(env.home)})
