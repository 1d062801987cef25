"""The ``clone`` workspace: a full, independent ``git clone`` per session (SPEC 5).

Same contract as ``worktree``, for projects where a shared object store or shared hooks are unwanted. The
clone is made from the project's ``origin`` URL (from the project checkout itself when it has no origin), so
the clone's ``origin`` is the real one: the agent's pushes land where a PR is looked for. Cloning from
origin is also the "fetch first": the base is always the current ``origin/<default>``.

Decisions: a plain clone, no ``--reference`` (the workspace must not break when the project checkout is
gc'ed or moved) and no ``--no-hardlinks`` (when origin is a local path git hardlinks immutable object files,
which is safe and much faster). A clone marks itself with ``git config ao.workspace clone`` so a later run
can tell a clone an interrupted run left behind (deleted and redone) from a user's folder (never touched).
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ao import git
from ao.errors import AoError
from ao.git import BranchExists, GitError
from ao.plugins.workspace import WorkspaceSpec
from ao.plugins.workspace.worktree import (
    _delete_tree,
    check_branch_free,
    check_branch_names,
    check_options,
    check_path_free,
    check_repo,
    check_symlinks,
    link_files,
    refuse_project_paths,
    run_post_create,
)

__all__ = ["BranchExists", "CloneWorkspace", "plugin"]

log = logging.getLogger("ao.workspace")

MARKER_KEY, MARKER_VALUE = "ao.workspace", "clone"
_SCP_LIKE = re.compile(r"^[^/:]+:")  # user@host:path or host:path (git's scp-like ssh syntax)


def plugin(**options: Any) -> CloneWorkspace:
    return CloneWorkspace(**check_options("clone", options, {"clone_timeout"}))


@dataclass
class CloneWorkspace:
    name: str = "clone"
    clone_timeout: float = git.NETWORK_TIMEOUT
    warnings: list[str] = field(default_factory=list)  # kept for the same interface as worktree; unused

    def create(self, spec: WorkspaceSpec) -> Path:
        self.warnings = []
        repo, path = Path(spec.repo).expanduser(), Path(spec.path).expanduser().absolute()
        check_repo(repo)
        check_branch_names(repo, spec)
        links = check_symlinks(spec.symlinks)
        refuse_project_paths(repo, path)
        self._clear_orphan(path)
        # What the project checkout knows: a local branch, or one it saw on origin at its last fetch.
        check_branch_free(repo, spec.branch)
        url = source_url(repo)
        push_url = _push_url(repo)

        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            # --no-checkout: the one checkout happens below, on the new branch.
            clone = ["clone", "--quiet", "--no-checkout", "--", url, str(path)]
            git.run(clone, path.parent, timeout=self.clone_timeout)
            git.run(["config", MARKER_KEY, MARKER_VALUE], path)
            if push_url:
                git.run(["remote", "set-url", "--push", "origin", push_url], path)
            # The fresh clone knows every branch on origin right now, including ones pushed since the
            # project checkout last fetched.
            if git.remote_branch_exists(path, spec.branch):
                raise BranchExists(spec.branch, "on origin")
            base = f"origin/{spec.default_branch}"
            if not git.ref_exists(path, base):
                raise AoError(
                    f"default branch '{spec.default_branch}' not found on {url}; "
                    f"set `defaultBranch:` for this project in the config"
                )
            git.run(["checkout", "--quiet", "--no-track", "-b", spec.branch, base], path)
            link_files(repo, path, links, exclude_untracked=True)  # the clone's info/exclude is its own
            run_post_create(path, spec)
        except BaseException as exc:
            try:
                _delete_tree(path)
            except OSError as undo:
                log.warning("workspace rollback: remove %s by hand: %s", path, undo)
                if isinstance(exc, AoError):
                    raise AoError(f"{exc}\n(undo incomplete: remove {path} by hand: {undo})") from exc
            raise
        return path

    def remove(self, repo: Path, path: Path, branch: str | None = None) -> None:
        """Delete the clone. Its branch lived only in the clone (and on origin if pushed, which we keep)."""
        self.warnings = []
        path = Path(path).expanduser().absolute()
        refuse_project_paths(Path(repo).expanduser(), path)
        _delete_tree(path)

    def exists(self, path: Path) -> bool:
        return Path(path).expanduser().is_dir()

    def _clear_orphan(self, path: Path) -> None:
        if path.is_dir() and not path.is_symlink() and _is_our_clone(path):
            log.info("removing a clone an earlier run left at %s", path)
            _delete_tree(path)
            return
        check_path_free(path)


def source_url(repo: Path) -> str:
    """Where to clone from: the project's origin (made absolute if it is a relative path), else the project."""
    url = git.remote_url(repo, "origin")
    if not url:
        return os.path.realpath(repo)
    is_local_path = "://" not in url and not _SCP_LIKE.match(url)
    if is_local_path and not os.path.isabs(url):
        # Relative to the project checkout, as git reads it there; we clone from elsewhere.
        return os.path.normpath(os.path.join(os.path.realpath(repo), url))
    return url


def _push_url(repo: Path) -> str | None:
    """The project's separate push URL for origin (``remote.origin.pushurl``), if it has one."""
    if not git.has_remote(repo, "origin"):
        return None
    try:
        push = git.run(["remote", "get-url", "--push", "origin"], repo)
    except GitError:
        return None
    return push if push and push != git.remote_url(repo, "origin") else None


def _is_our_clone(path: Path) -> bool:
    """The folder is a clone ao made (by then the agent's to rewrite: git there runs nothing it planted)."""
    if not git.is_repo(path, untrusted=True):
        return False
    try:
        return git.run(["config", "--get", MARKER_KEY], path, untrusted=True) == MARKER_VALUE
    except GitError:
        return False
