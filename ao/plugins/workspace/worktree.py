"""The ``worktree`` workspace (default): a ``git worktree`` of the project on a new branch (SPEC 5).

``create`` fetches first, branches from ``origin/<default>`` (local ``<default>`` when there is no such ref),
links the project's ``symlinks`` in and runs ``postCreate``; on any failure after the worktree exists it
removes the worktree and the branch again, so a failed spawn leaves the project as it found it.

Decisions worth knowing:

- A failed fetch (offline, flaky network, expired credentials) is not fatal when an earlier fetch left
  ``origin/<default>``: the workspace is based on that ref and a warning is recorded in ``warnings`` (and
  logged). Without any usable base it is an error.
- A tracked file or folder in the way of a symlink is replaced by the link, and marked ``skip-worktree`` in
  the workspace's own index so the agent's ``git add -A`` does not commit the symlink in its place.
- ``remove`` deletes the local branch only, and only when origin does not have it; nothing on origin is
  ever touched.

The helpers below (symlinks, postCreate, path checks) are shared with the ``clone`` plugin.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ao import git
from ao.errors import AoError
from ao.git import BranchExists, GitError
from ao.plugins.workspace import WorkspaceSpec

__all__ = ["BranchExists", "WorktreeWorkspace", "plugin"]

log = logging.getLogger("ao.workspace")

OUTPUT_TAIL_LINES = 20  # lines of a failed postCreate command's output quoted in the error
_TAIL_BYTES = 64 * 1024  # read at most this much from the end of that output (npm install can be huge)


def plugin(**options: Any) -> WorktreeWorkspace:
    return WorktreeWorkspace(**check_options("worktree", options, {"fetch_timeout"}))


@dataclass
class WorktreeWorkspace:
    name: str = "worktree"
    fetch_timeout: float = git.DEFAULT_TIMEOUT
    # What the last create/remove had to work around (a failed fetch, a branch it could not delete).
    warnings: list[str] = field(default_factory=list)

    def create(self, spec: WorkspaceSpec) -> Path:
        self.warnings = []
        repo, path = Path(spec.repo).expanduser(), Path(spec.path).expanduser().absolute()
        check_repo(repo)
        check_branch_names(repo, spec)
        links = check_symlinks(spec.symlinks)
        refuse_project_paths(repo, path)
        self._clear_orphan(repo, path)
        base = self._fetch_base(repo, spec.default_branch, spec.branch)
        check_branch_free(repo, spec.branch)

        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            # --no-track: the new branch must not track origin/<default>, or the agent's plain `git push`
            # would be refused (push.default=simple) and `git pull` would pull the default branch.
            git.run(["worktree", "add", "--quiet", "--no-track", "-b", spec.branch, str(path), base], repo)
            link_files(repo, path, links)
            run_post_create(path, spec)
        except BaseException as exc:  # KeyboardInterrupt too: never leave half a workspace behind
            problems = self._undo(repo, path, spec.branch)
            if problems and isinstance(exc, AoError):
                raise AoError(f"{exc}\n(undo incomplete: {'; '.join(problems)})") from exc
            raise
        return path

    def remove(self, repo: Path, path: Path, branch: str | None = None) -> None:
        self.warnings = []
        repo, path = Path(repo).expanduser(), Path(path).expanduser().absolute()
        refuse_project_paths(repo, path)
        if not git.is_repo(repo):
            # The project checkout is gone or moved: all we can still do is drop the folder.
            _delete_tree(path)
            return
        self._remove_worktree(repo, path)
        if branch and git.branch_exists(repo, branch):
            # Local branch only, and only when origin does not have it: nothing on origin is ever deleted,
            # and a branch that reached origin (a PR's branch) is the user's to delete, not ours.
            if git.remote_branch_exists(repo, branch):
                return
            try:
                git.run(["branch", "-D", "--", branch], repo)  # -D: unmerged commits are exactly the case
            except GitError as exc:  # e.g. the user checked it out somewhere else meanwhile
                self._warn(f"kept branch '{branch}': {exc}")

    def exists(self, path: Path) -> bool:
        return Path(path).expanduser().is_dir()

    # -- steps ---------------------------------------------------------------------------------------------

    def _clear_orphan(self, repo: Path, path: Path) -> None:
        """Drop what an earlier, interrupted run left at ``path``; refuse anything else that is there."""
        git.run(["worktree", "prune"], repo)  # forgets worktrees whose folder was deleted by hand
        if git.is_registered_worktree(repo, path):
            self._remove_worktree(repo, path)
            return
        check_path_free(path)

    def _fetch_base(self, repo: Path, default: str, branch: str) -> str:
        """Fetch the default branch (and any origin branch named like ours), then pick the base ref."""
        fetch_error: GitError | None = None
        if git.has_remote(repo, "origin"):
            # Explicit refspecs update origin/<default> whatever remote.origin.fetch says (single-branch
            # clones); the glob one brings origin/<branch>* up to date in the same round trip so the
            # BranchExists check sees branches pushed since the last fetch (and --prune drops deleted ones).
            refspecs = [
                f"+refs/heads/{default}:refs/remotes/origin/{default}",
                f"+refs/heads/{branch}*:refs/remotes/origin/{branch}*",
            ]
            try:
                git.fetch(repo, *refspecs, prune=True, timeout=self.fetch_timeout)
            except GitError as exc:
                fetch_error = exc
        if git.remote_branch_exists(repo, default):
            base = f"origin/{default}"
        elif git.branch_exists(repo, default):
            base = default
        else:
            why = f" (fetching it from origin failed: {fetch_error.detail})" if fetch_error else ""
            raise AoError(
                f"default branch '{default}' not found in {repo}: neither origin/{default} nor a local "
                f"'{default}' exists{why}; set `defaultBranch:` for this project in the config"
            )
        if fetch_error:
            self._warn(f"could not fetch from origin ({fetch_error.detail}); {base} as last fetched may be out of date")
        return base

    def _remove_worktree(self, repo: Path, path: Path) -> None:
        if git.is_registered_worktree(repo, path):
            try:
                # Twice --force: also removes a locked worktree and one with uncommitted changes.
                git.run(["worktree", "remove", "--force", "--force", str(path)], repo)
            except GitError as exc:
                log.debug("git worktree remove failed, deleting the folder instead: %s", exc)
        _delete_tree(path)
        git.run(["worktree", "prune"], repo)

    def _undo(self, repo: Path, path: Path, branch: str) -> list[str]:
        """Roll back a create: the worktree and the branch we made. Returns what could not be undone."""
        problems: list[str] = []
        try:
            self._remove_worktree(repo, path)
        except (OSError, GitError) as exc:
            problems.append(f"remove {path} by hand: {exc}")
        try:
            if git.branch_exists(repo, branch):
                git.run(["branch", "-D", "--", branch], repo)
        except GitError as exc:
            problems.append(str(exc))
        for p in problems:
            log.warning("workspace rollback: %s", p)
        return problems

    def _warn(self, message: str) -> None:
        self.warnings.append(message)
        log.warning("%s", message)


# -- shared with the clone plugin ------------------------------------------------------------------------


def check_options(name: str, options: dict[str, Any], allowed: set[str]) -> dict[str, Any]:
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise AoError(f"workspace plugin '{name}' has no option {', '.join(repr(u) for u in unknown)}")
    return options


def check_repo(repo: Path) -> None:
    if not git.is_repo(repo):
        raise AoError(f"{repo} is not a git repository (project 'path' must point at a git checkout)")


def check_branch_names(repo: Path, spec: WorkspaceSpec) -> None:
    if not git.valid_branch_name(repo, spec.branch):
        raise AoError(f"'{spec.branch}' is not a valid git branch name")
    if not git.valid_branch_name(repo, spec.default_branch):
        raise AoError(f"defaultBranch '{spec.default_branch}' is not a valid git branch name")


def check_branch_free(repo: Path, branch: str) -> None:
    """Strict: any existing branch of that name, local or on origin, is the caller's problem to rename."""
    if git.branch_exists(repo, branch):
        raise BranchExists(branch, f"in {repo}")
    if git.remote_branch_exists(repo, branch):
        raise BranchExists(branch, "on origin")


def refuse_project_paths(repo: Path, path: Path) -> None:
    """Guard every delete: the workspace can never be the project checkout or a folder that contains it."""
    real_repo, real_path = os.path.realpath(repo), os.path.realpath(path)
    if real_repo == real_path or real_repo.startswith(real_path.rstrip(os.sep) + os.sep):
        raise AoError(f"workspace path {path} is (or contains) the project checkout {repo}; use another path")


def check_path_free(path: Path) -> None:
    """Nothing may be at ``path`` but an empty folder: ao never deletes a folder it did not create."""
    if not os.path.lexists(path):
        return
    if path.is_dir() and not path.is_symlink() and not any(path.iterdir()):
        return
    raise AoError(
        f"workspace path {path} already exists and was not created by ao; move or delete it yourself "
        f"(ao never deletes a folder it did not create)"
    )


def check_symlinks(items: list[str]) -> list[str]:
    """Validate ``symlinks`` entries up front (before anything is created); returns them normalised."""
    out: list[str] = []
    for rel in items:
        if not isinstance(rel, str) or not rel.strip():
            raise AoError(f"symlinks: {rel!r} is not a path")
        norm = os.path.normpath(rel)
        if os.path.isabs(rel):
            raise AoError(f"symlinks: '{rel}' is absolute; use a path relative to the project folder")
        if norm in (".", "..") or norm.startswith(".." + os.sep):
            raise AoError(f"symlinks: '{rel}' points outside the project folder; use a path inside it")
        if norm == ".git" or norm.startswith(".git" + os.sep):
            raise AoError(f"symlinks: '{rel}' is inside .git, which a workspace must not share")
        out.append(norm)
    return out


def link_files(repo: Path, workspace: Path, links: list[str], *, exclude_untracked: bool = False) -> None:
    """Link each ``repo/<rel>`` into ``workspace/<rel>`` with a relative target, replacing what is there.

    ``exclude_untracked`` also lists untracked links in the workspace's ``info/exclude``, so ``git status``
    and ``git add -A`` ignore them (a ``node_modules/`` ignore pattern does not match a symlink). Only for a
    clone: a worktree shares ``info/exclude`` with the project checkout, which we do not edit."""
    real_repo, real_ws = os.path.realpath(repo), os.path.realpath(workspace)
    untracked: list[str] = []
    for rel in links:
        source = os.path.join(real_repo, rel)
        if not os.path.exists(source):
            raise AoError(f"symlinks: '{rel}' does not exist in {repo}")
        target = workspace / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        parent = os.path.realpath(target.parent)
        # An earlier entry may have linked a parent folder ("a" then "a/b"): writing through it would
        # change the project checkout itself.
        if parent != real_ws and not parent.startswith(real_ws + os.sep):
            raise AoError(f"symlinks: '{rel}' lies inside another linked folder; list only one of them")
        tracked = os.path.lexists(target) and _hide_tracked(workspace, rel)
        if os.path.lexists(target):
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            else:
                target.unlink()
        if not tracked:
            untracked.append(rel)
        # Relative, so the link keeps working when the data dir and the project move together (a restored
        # home directory, a container mounting both elsewhere).
        os.symlink(os.path.relpath(source, parent), target)
    if exclude_untracked and untracked:
        exclude = Path(workspace, git.run(["rev-parse", "--git-path", "info/exclude"], workspace))
        exclude.parent.mkdir(parents=True, exist_ok=True)
        with exclude.open("a", encoding="utf-8") as fh:
            fh.write("# symlinks made by ao\n" + "".join(f"/{_escape_pattern(rel)}\n" for rel in untracked))


def _hide_tracked(workspace: Path, rel: str) -> bool:
    """Mark tracked files we are about to replace as skip-worktree, so the symlink is never committed.
    Returns whether anything at ``rel`` was tracked."""
    tracked = git.run(["ls-files", "-z", "--", f":(literal){rel}"], workspace)
    if tracked:
        git.run(["update-index", "--skip-worktree", "-z", "--stdin"], workspace, input=tracked)
    return bool(tracked)


def _escape_pattern(rel: str) -> str:
    """``rel`` as a literal gitignore pattern: wildcards and a trailing space escaped (we prefix '/', so a
    leading '#' or '!' means nothing special)."""
    out = "".join("\\" + c if c in "*?[]\\" else c for c in rel.replace(os.sep, "/"))
    if out.endswith(" "):
        out = out[:-1] + "\\ "
    return out


def run_post_create(workspace: Path, spec: WorkspaceSpec) -> None:
    """Run each postCreate command with /bin/sh in the workspace; each gets ``post_create_timeout`` seconds."""
    # the complete environment (ao.environment.agent_environment): postCreate runs the repository's code
    env = dict(spec.env) if spec.env else git.clean_env()
    for cmd in spec.post_create:
        _run_one(cmd, workspace, env, spec.post_create_timeout)


def _run_one(cmd: str, cwd: Path, env: dict[str, str], timeout: float) -> None:
    # Output goes to a file, not a pipe: a command that leaves a background process behind (a dev server)
    # would otherwise keep the pipe open and make us wait for it.
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen(
            ["/bin/sh", "-c", cmd],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so a timeout kills its children too
        )
        try:
            code = proc.wait(timeout=timeout)
        except BaseException as exc:
            _kill_group(proc)
            if isinstance(exc, subprocess.TimeoutExpired):
                message = f"postCreate command timed out after {timeout:g}s: {cmd}\n{_tail(out)}"
                raise AoError(message.rstrip()) from None
            raise
        if code != 0:
            how = f"exit {code}" if code > 0 else f"killed by signal {-code}"
            raise AoError(f"postCreate command failed ({how}): {cmd}\n{_tail(out)}".rstrip())


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


def _tail(out: Any, lines: int = OUTPUT_TAIL_LINES) -> str:
    size = out.seek(0, os.SEEK_END)
    out.seek(max(0, size - _TAIL_BYTES))
    text = out.read().decode("utf-8", errors="replace")
    return "\n".join(text.rstrip().splitlines()[-lines:])


def _delete_tree(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)
