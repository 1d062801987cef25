"""A real ao setup for session tests: a git project with a bare origin, a config using the scripted agent
(ao/scripted_agent.py) in real tmux on a private socket, and a data dir, all under tmp_path."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
FAKE_AGENT = ROOT / "ao" / "scripted_agent.py"
GIT_IDENTITY = {"GIT_AUTHOR_NAME": "Test", "GIT_AUTHOR_EMAIL": "test@example.com",
                "GIT_COMMITTER_NAME": "Test", "GIT_COMMITTER_EMAIL": "test@example.com"}


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    """Poll ``predicate`` until it returns something truthy; fail the test at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


def git(*args: str, cwd: Path) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True,
                          env={**os.environ, **GIT_IDENTITY}).stdout


@dataclass
class AoEnv:
    root: Path
    project: Path
    origin: Path
    data: Path
    config: Path
    socket: str

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, **GIT_IDENTITY, "AO_TMUX_SOCKET": self.socket, "AO_CONFIG_PATH": str(self.config),
                "HOME": str(self.root / "home"), "AO_HOME": str(self.data)}

    def ao(self, *args: str, input: str | None = None, env: dict[str, str] | None = None,
           timeout: float = 60) -> subprocess.CompletedProcess:
        """The real CLI in a subprocess."""
        return subprocess.run([sys.executable, "-m", "ao", *args], capture_output=True, text=True, input=input,
                              cwd=self.root, env=env or self.env, timeout=timeout)

    def write_config(self, **project_extra: Any) -> None:
        import yaml

        project = {
            "path": str(self.project), "sessionPrefix": "app", "defaultBranch": "main",
            "scm": {"plugin": "local", "ci": "true"}, "tracker": {"plugin": "local"},
            "agent": "command",
            "agentConfig": {"command": f'{sys.executable} {FAKE_AGENT} --log "$AO_HOME/$AO_SESSION.agent.jsonl"'},
        }
        project.update(project_extra)
        self.config.write_text(yaml.safe_dump({"dataDir": str(self.data), "projects": {"app": project}}))

    def load(self) -> Any:
        from ao import config

        return config.load(self.config)

    def manager(self) -> Any:
        from ao.sessions import Sessions

        return Sessions(self.load())

    def received(self, sid: str) -> list[dict[str, Any]]:
        """Every message the scripted agent of ``sid`` has logged."""
        path = self.data / f"{sid}.agent.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def tmux(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["tmux", "-L", self.socket, *args], capture_output=True, text=True)


def make_env(tmp_path: Path) -> AoEnv:
    origin = tmp_path / "origin.git"
    project = tmp_path / "app"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(origin)], check=True)
    subprocess.run(["git", "clone", "-q", str(origin), str(project)], check=True, capture_output=True)
    (project / "README.md").write_text("# app\n")
    (project / "issues").mkdir()
    (project / "issues" / "12.md").write_text("# Add a health endpoint\n\nGET /health returns 200.\n")
    git("add", "-A", cwd=project)
    git("commit", "-q", "-m", "initial", cwd=project)
    git("push", "-q", "origin", "HEAD:main", cwd=project)
    (tmp_path / "home").mkdir()
    env = AoEnv(root=tmp_path, project=project, origin=origin, data=tmp_path / "data",
                config=tmp_path / "agent-orchestrator.yaml", socket=f"ao-test-{uuid.uuid4().hex[:10]}")
    env.write_config()
    return env


def kill_tmux_server(socket: str, timeout: float = 10.0) -> None:
    """Kill the private tmux server and wait until it and its panes' processes are gone; remove the socket."""
    def tmux(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["tmux", "-L", socket, *args], capture_output=True, text=True, check=False)

    pids = [int(p) for p in tmux("list-panes", "-a", "-F", "#{pane_pid}").stdout.split() if p.isdigit()]
    pids += [int(p) for p in tmux("display-message", "-p", "#{pid}").stdout.split() if p.isdigit()]
    tmux("kill-server")
    deadline = time.monotonic() + timeout
    for pid in pids:
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.02)
    folder = Path(os.environ.get("TMUX_TMPDIR", "/tmp")) / f"tmux-{os.getuid()}"
    (folder / socket).unlink(missing_ok=True)


def kill_process_agents(data: Path) -> list[str]:
    """End every process-runtime agent a test started under this data dir, whatever the test's outcome (a
    failing assertion must not leave one running after the test run). Returns the handles it ended."""
    from ao.plugins.runtime.process import ProcessRuntime

    ended = []
    for path in list(data.glob("projects/*/sessions/*.json")) + list(data.glob("archive/*/*.json")):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(record, dict) and record.get("runtime") == "process" and record.get("runtime_handle"):
            runtime = ProcessRuntime(term_timeout=1.0)
            if runtime.probe([record["runtime_handle"]])[record["runtime_handle"]].alive:
                runtime.kill(record["runtime_handle"])
                ended.append(record["runtime_handle"])
    return ended


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[-1].split()[0] != "Z"  # a zombie is as good as gone
    except OSError:
        return False


def check_demo_run(result: dict[str, Any]) -> dict[str, str]:
    """What every run of ao demo's workflow must show; returns the session of each issue."""
    assert sorted(s["status"] for s in result["sessions"]) == ["merged", "merged", "merged"]
    seen = [(e["session"], e["what"]) for e in result["timeline"]]
    by_issue = {s["issue"]: s["session"] for s in result["sessions"]}
    one, two = by_issue["1"], by_issue["2"]
    assert seen.index((one, "ci.failing")) < seen.index((one, "ci.fix_sent")) < seen.index((one, "ci.passing"))
    assert seen.count((two, "review.comments_sent")) == 1
    assert sum(1 for _, what in seen if what == "merge.completed") == 3
    return by_issue
