"""The README's quick start, run as written from a fresh shell: only PATH (with `ao` on it) and HOME set.

The repository is a fresh clone with an origin; the agent CLI is a stand-in `claude` on PATH (the scripted
agent, answering `--version` like Claude Code), since no real agent may be installed here. Everything else is
the README's own lines, in order."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

from sessionkit import FAKE_AGENT, GIT_IDENTITY, ROOT, git, kill_tmux_server, wait_for


def quick_start_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", section, flags=re.S)
    project_block = next(b for b in blocks if "ao config init" in b)
    return [line.split("  #", 1)[0].strip() for line in project_block.splitlines() if line.strip()]


def test_the_readme_quick_start_works_from_a_fresh_shell(tmp_path):
    commands = quick_start_commands()
    assert commands[0] == "cd ~/src/my-app" and "ao config init" in commands and commands[-1] == "ao start"
    home = tmp_path / "home"
    repo = home / "src" / "my-app"
    origin = tmp_path / "origin.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(origin)], check=True)
    subprocess.run(["git", "clone", "-q", str(origin), str(repo)], check=True, capture_output=True)
    (repo / "README.md").write_text("# my-app\n")
    git("add", "-A", cwd=repo)
    git("commit", "-q", "-m", "initial", cwd=repo)
    git("push", "-q", "origin", "HEAD:main", cwd=repo)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    claude = bin_dir / "claude"
    claude.write_text(f"#!/bin/sh\n[ \"$1\" = --version ] && {{ echo '2.1.197 (Claude Code)'; exit 0; }}\n"
                      f"exec {sys.executable} {FAKE_AGENT} --log \"$HOME/claude.jsonl\"\n")
    claude.chmod(0o755)
    ao_bin = Path(shutil.which("ao", path=str(Path(sys.executable).parent)) or "")
    assert ao_bin.is_file(), "ao is installed beside this python"
    socket = f"ao-test-{uuid.uuid4().hex[:10]}"
    fresh = {"PATH": f"{ao_bin.parent}:{bin_dir}:/usr/bin:/bin", "HOME": str(home), "AO_TMUX_SOCKET": socket,
             **GIT_IDENTITY}
    script = "set -e\n" + "\n".join(c for c in commands if c != "ao start")
    try:
        run = subprocess.run(["bash", "-c", script], env=fresh, capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stdout + run.stderr
        assert "Traceback" not in run.stderr
        assert (repo / "agent-orchestrator.yaml").is_file() and (repo / "issues" / "1.md").is_file()
        assert "spawned ma-1 (issue 1) on branch feat/issue-1" in run.stdout
        assert re.search(r"^ma-1\tworking\t", run.stdout, flags=re.M), run.stdout  # ao status, piped
        start = subprocess.Popen(["bash", "-c", "cd ~/src/my-app && exec ao start --no-orchestrator --no-dashboard -q"],
                                 env=fresh, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            wait_for(lambda: subprocess.run(["bash", "-c", "cd ~/src/my-app && ao status --json"], env=fresh,
                                            capture_output=True, text=True).stdout.count('"observed_at": "20') == 1,
                     timeout=60, what="ao start to observe the session")
            stop = subprocess.run(["bash", "-c", "cd ~/src/my-app && ao stop"], env=fresh, capture_output=True,
                                  text=True, timeout=60)
            assert stop.returncode == 0, stop.stderr
            assert start.wait(timeout=30) == 0
        finally:
            if start.poll() is None:
                start.kill()
            start.communicate()
    finally:
        kill_tmux_server(socket)
