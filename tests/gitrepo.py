"""Real git repositories for tests: a bare ``origin`` and a project cloned from it, on ``main``.

Plain functions (no fixtures) so any test module can use them. They run git directly, not through ao.git,
so a bug in ao.git cannot hide behind its own fixture. Every call pins identity and ignores the user's and
the system's git config, so they behave the same on a laptop and on a CI machine with no git identity.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

IDENTITY = {
    "GIT_AUTHOR_NAME": "Test Author",
    "GIT_AUTHOR_EMAIL": "author@example.com",
    "GIT_COMMITTER_NAME": "Test Committer",
    "GIT_COMMITTER_EMAIL": "committer@example.com",
}


def git_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(IDENTITY)
    env.update({"GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull, "LC_ALL": "C", "GIT_TERMINAL_PROMPT": "0"})
    return env


def git(cwd: Path | str, *args: str) -> str:
    """Run git in ``cwd``; return stdout stripped; fail the test with git's stderr on error."""
    proc = subprocess.run(["git", *args], cwd=cwd, env=git_env(), capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} (in {cwd}) failed: {proc.stderr.strip()}")
    return proc.stdout.strip()


def commit(repo: Path | str, files: dict[str, str], message: str = "change") -> str:
    """Write ``files`` (relative path -> text), commit them all, return the new commit id."""
    for rel, text in files.items():
        p = Path(repo, rel)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    git(repo, "add", "--all")
    git(repo, "commit", "--quiet", "--no-verify", "-m", message)
    return git(repo, "rev-parse", "HEAD")


def make_origin(tmp_path: Path, name: str = "app") -> Path:
    origin = tmp_path / f"{name}-origin.git"
    git(tmp_path, "init", "--quiet", "--bare", "--initial-branch=main", str(origin))
    return origin


def clone(origin: Path | str, dest: Path) -> Path:
    git(dest.parent, "clone", "--quiet", str(origin), str(dest))
    return dest


def make_project(tmp_path: Path, name: str = "app", files: dict[str, str] | None = None) -> tuple[Path, Path]:
    """A bare origin ``<tmp>/<name>-origin.git`` and a project clone ``<tmp>/<name>`` with one commit on
    ``main``, pushed (so ``origin/main`` exists). Returns (project_path, origin_path)."""
    origin = make_origin(tmp_path, name)
    project = tmp_path / name
    git(tmp_path, "init", "--quiet", "--initial-branch=main", str(project))
    git(project, "remote", "add", "origin", str(origin))
    commit(project, files or {"README.md": f"# {name}\n"}, "initial commit")
    git(project, "push", "--quiet", "--set-upstream", "origin", "main")
    git(origin, "symbolic-ref", "HEAD", "refs/heads/main")
    return project, origin


def push_from_elsewhere(
    origin: Path, tmp_path: Path, files: dict[str, str], branch: str = "main", message: str = "upstream change"
) -> str:
    """Another developer's clone commits ``files`` on ``branch`` and pushes it; returns the commit id."""
    other = tmp_path / f"other-{len(list(tmp_path.glob('other-*')))}"
    clone(origin, other)
    if branch != "main":
        git(other, "checkout", "--quiet", "-b", branch)
    sha = commit(other, files, message)
    git(other, "push", "--quiet", "origin", branch)
    return sha
