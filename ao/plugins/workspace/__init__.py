"""Workspaces: the isolated checkout an agent works in (SPEC 5). ``worktree`` (default) and ``clone``."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ao import plugins

MODULES = {"worktree": "worktree", "clone": "clone"}


@dataclass
class WorkspaceSpec:
    repo: Path                # the project's repository (Project.path)
    path: Path                # where the workspace goes; must not exist yet (an orphan left by ao is cleared)
    branch: str               # the new branch
    default_branch: str = "main"
    symlinks: list[str] = field(default_factory=list)  # relative paths, linked from repo into the workspace
    post_create: list[str] = field(default_factory=list)  # shell commands run in the workspace, in order
    env: dict[str, str] = field(default_factory=dict)  # post_create's complete environment (ao.environment)
    post_create_timeout: float = 600.0


class Workspace(Protocol):
    name: str

    def create(self, spec: WorkspaceSpec) -> Path:
        """Fetch, branch from origin/<default>, link, run postCreate. On any failure undo everything done so
        far (workspace and branch) and raise AoError. Returns the workspace path."""

    def remove(self, repo: Path, path: Path, branch: str | None = None) -> None:
        """Remove the workspace (idempotent). Deletes ``branch`` too when given and not pushed anywhere."""

    def exists(self, path: Path) -> bool: ...


def get(name: str, **options: Any) -> Workspace:
    return plugins.load("workspace", name, MODULES, **options)
