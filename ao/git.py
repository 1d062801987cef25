"""A small git runner for the workspace plugins and the local SCM.

Every call runs ``git -C <cwd> <args>`` with a stable environment: ``LC_ALL=C`` so messages and porcelain
output parse the same everywhere, ``GIT_TERMINAL_PROMPT=0`` plus no stdin and no controlling terminal so
git (or the ssh it starts) fails instead of waiting for a password nobody will type. Repository-location
variables inherited from a caller (``GIT_DIR`` and friends, set when ao runs inside a git hook) are dropped so
``-C`` always means what it says. In an agent's workspace (``untrusted=True``) git runs no command the
workspace's own config names through ``core.fsmonitor`` or hooks, and gets the agent environment, not ours;
:func:`private_git_dir` reads a clone an agent controls through a git folder of ao's own, so that no
config of the agent's (filter drivers) applies at all.
Nothing here needs a git identity: we never commit.

We use :mod:`subprocess` rather than the ``sh`` library: the calls are plain argv lists (no shell, no
quoting), and subprocess gives exact control over the environment, stdin, the session and the timeout,
with stderr kept whole for :class:`GitError`; ``sh``'s convenience (attribute commands, its own
exception messages that embed truncated output) buys nothing for a dozen fixed git commands.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from ao.errors import AoError

DEFAULT_TIMEOUT = 120.0  # seconds; generous for a fetch on a slow link, short enough to notice a hang
NETWORK_TIMEOUT = 600.0  # a clone of a large repository

# Variables that point git at another repository, index or object store. Inherited from a hook they would
# silently redirect every ``git -C`` we run, so they are removed unless a caller passes them explicitly.
_LOCATION_VARS = (
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_COMMON_DIR",
    "GIT_NAMESPACE",
    "GIT_PREFIX",
    "GIT_CEILING_DIRECTORIES",
)
_MESSAGE_LIMIT = 400  # characters of git's stderr kept in a GitError message
# For git in a workspace an agent controls (``untrusted=True``): its ``.git`` (a folder, or a file that may
# point anywhere), config and hooks are the agent's to write, so git there must not run what they name.
_UNTRUSTED_CONFIG = ("-c", "core.fsmonitor=false", "-c", "core.hooksPath=/dev/null")


class GitError(AoError):
    """A git command failed. The message is one line: the command and git's own error, trimmed."""

    def __init__(
        self, message: str, *, args: Sequence[str] = (), returncode: int | None = None, stderr: str = ""
    ) -> None:
        super().__init__(message)
        self.git_args = list(args)
        self.returncode = returncode
        self.stderr = stderr

    @property
    def detail(self) -> str:
        """git's own complaint, one line, without the command (for messages that name the step themselves)."""
        return _one_line(self.stderr) or str(self)


class BranchExists(AoError):
    """The branch a new workspace wants already exists locally or on origin; the caller picks another name."""

    def __init__(self, branch: str, where: str) -> None:
        super().__init__(f"branch '{branch}' already exists {where}; choose another branch name")
        self.branch = branch
        self.where = where


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for git and for commands run in a workspace: ours, minus repo-location overrides."""
    env = {k: v for k, v in os.environ.items() if k not in _LOCATION_VARS}
    if extra:
        env.update(extra)
    return env


def _git_env(extra: Mapping[str, str] | None, untrusted: bool = False) -> dict[str, str]:
    env = clean_env(extra)
    if untrusted:  # what git still runs there (a filter driver the agent defines) gets no secret of ours
        from ao.environment import allowed_environment

        env = {**allowed_environment(env=env), **(extra or {})}
    env["GIT_TERMINAL_PROMPT"] = "0"
    env["LC_ALL"] = "C"
    env.pop("LANGUAGE", None)  # gettext ignores it under LC_ALL=C anyway; drop it so nobody wonders
    return env


def _one_line(stderr: str) -> str:
    """git's stderr as one line: hints dropped, lines joined, trimmed."""
    lines = [ln.strip() for ln in stderr.splitlines()]
    lines = [ln for ln in lines if ln and not ln.startswith("hint:")]
    text = "; ".join(lines)
    if len(text) > _MESSAGE_LIMIT:
        text = text[: _MESSAGE_LIMIT - 3] + "..."
    return text


def command_line(args: Sequence[str], cwd: Path | str) -> str:
    """The command as a user could paste it into a shell."""
    return shlex.join(["git", "-C", str(cwd), *args])


def run(
    args: Sequence[str],
    cwd: Path | str,
    *,
    env: Mapping[str, str] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    input: str | None = None,
    untrusted: bool = False,
) -> str:
    """Run ``git -C cwd args`` and return its stdout without the trailing newline; raise :class:`GitError`.

    ``untrusted``: ``cwd`` is a workspace an agent controls; git runs no fsmonitor command or hook there,
    with the allowlisted environment (:mod:`ao.environment`) instead of ours."""
    cmd = command_line(args, cwd)
    if not Path(cwd).is_dir():
        raise GitError(f"{cmd} failed: no such directory {cwd}", args=args)
    try:
        proc = subprocess.run(
            ["git", *(_UNTRUSTED_CONFIG if untrusted else ()), "-C", str(cwd), *args],
            check=False,
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
            capture_output=True,
            text=True,
            errors="replace",
            env=_git_env(env, untrusted),
            timeout=timeout,
            # No controlling terminal: ssh cannot open /dev/tty to ask for a passphrase, so it fails fast.
            start_new_session=True,
        )
    except FileNotFoundError:
        raise GitError("git is not installed or not on PATH", args=args) from None
    except subprocess.TimeoutExpired:
        raise GitError(f"{cmd} timed out after {timeout:g}s", args=args) from None
    if proc.returncode != 0:
        detail = _one_line(proc.stderr) or _one_line(proc.stdout) or "no error output"
        raise GitError(
            f"{cmd} failed (exit {proc.returncode}): {detail}",
            args=args,
            returncode=proc.returncode,
            stderr=proc.stderr,
        )
    return proc.stdout.rstrip("\n")


def succeeds(args: Sequence[str], cwd: Path | str, *, timeout: float = DEFAULT_TIMEOUT,
             env: Mapping[str, str] | None = None, untrusted: bool = False) -> bool:
    """True when the git command exits 0 (for yes/no questions such as ``rev-parse --verify``)."""
    try:
        run(args, cwd, timeout=timeout, env=env, untrusted=untrusted)
    except GitError:
        return False
    return True


def toplevel(path: Path | str, *, untrusted: bool = False) -> Path | None:
    """The top folder of the work tree containing ``path``, or None."""
    if not Path(path).is_dir():
        return None
    try:
        out = run(["rev-parse", "--show-toplevel"], path, untrusted=untrusted)
    except GitError:
        return None
    return Path(out) if out else None


def is_repo(path: Path | str, *, untrusted: bool = False) -> bool:
    """True when ``path`` is the top of a git checkout (a folder merely inside one, e.g. a home directory kept
    in git, does not count: its worktrees would be of the wrong repository)."""
    top = toplevel(path, untrusted=untrusted)
    return top is not None and top.resolve() == Path(path).resolve()


def ref_exists(repo: Path | str, ref: str) -> bool:
    return succeeds(["rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"], repo)


def branch_exists(repo: Path | str, branch: str) -> bool:
    """A local branch ``branch`` exists."""
    return ref_exists(repo, f"refs/heads/{branch}")


def remote_branch_exists(repo: Path | str, branch: str, remote: str = "origin") -> bool:
    """The remote-tracking ref ``<remote>/<branch>`` exists (as of the last fetch)."""
    return ref_exists(repo, f"refs/remotes/{remote}/{branch}")


def remotes(repo: Path | str) -> list[str]:
    return run(["remote"], repo).split()


def has_remote(repo: Path | str, name: str = "origin") -> bool:
    return name in remotes(repo)


def remote_url(repo: Path | str, name: str = "origin") -> str | None:
    """The fetch URL of remote ``name``, or None when there is no such remote."""
    if not has_remote(repo, name):
        return None
    return run(["remote", "get-url", name], repo) or None


def valid_branch_name(repo: Path | str, name: str) -> bool:
    """``name`` is acceptable as a new branch name (``git check-ref-format --branch``)."""
    if not name or name.startswith("-"):
        return False
    return succeeds(["check-ref-format", "--branch", name], repo)


def fetch(
    repo: Path | str, *refspecs: str, remote: str = "origin", prune: bool = False, timeout: float = DEFAULT_TIMEOUT
) -> None:
    """``git fetch --quiet --no-tags [--prune] <remote> <refspecs>``."""
    args = ["fetch", "--quiet", "--no-tags"]
    if prune:
        args.append("--prune")
    run([*args, remote, *refspecs], repo, timeout=timeout)


def worktree_paths(repo: Path | str) -> list[Path]:
    """Every worktree registered in ``repo`` (the main checkout first), as git recorded them."""
    out = run(["worktree", "list", "--porcelain"], repo)
    return [Path(line[len("worktree ") :]) for line in out.splitlines() if line.startswith("worktree ")]


def is_registered_worktree(repo: Path | str, path: Path | str) -> bool:
    want = _real(path)
    return any(_real(p) == want for p in worktree_paths(repo))


def worktree_env(repo: Path | str, workspace: Path | str) -> dict[str, str]:
    """For git in ``workspace``, a worktree of ``repo`` that an agent controls: the variables that name its
    folder in the project's own git folder, found from there (trusted) whatever the workspace's ``.git`` file
    says now, so git reads the project's config (read-only in a container), never one the agent wrote. Empty
    when ``workspace`` is not a worktree of ``repo`` (a clone, whose config is the agent's)."""
    from ao.agentfiles import read_regular

    common = Path(repo, run(["rev-parse", "--git-common-dir"], repo))
    want = _real(Path(workspace, ".git"))
    for admin in sorted((common / "worktrees").glob("*")):
        try:
            if _real(read_regular(admin / "gitdir").decode().strip()) == want:
                return {"GIT_DIR": str(admin), "GIT_COMMON_DIR": str(common), "GIT_WORK_TREE": str(workspace)}
        except (OSError, ValueError):
            continue
    return {}


SNAPSHOT_BYTES = 512 << 20  # bytes of an agent's git folder ao copies in all (its index is most of them)
SNAPSHOT_FILES = 100_000    # files: refs, mostly
REF_BYTES = 4096            # a loose ref is one line; anything larger is not one
# harmless settings of the clone's own that change what status reports (a mode change, a line ending)
CORE_KEYS = ("filemode", "symlinks", "ignorecase", "autocrlf", "eol", "precomposeunicode", "protecthfs",
             "protectntfs")


@contextlib.contextmanager
def private_git_dir(workspace: Path | str) -> Iterator[dict[str, str]]:
    """For git in a clone an agent controls: the variables that make git read it through a private git
    folder of ao's own: a copy of the clone's HEAD, index, refs and ``info/exclude``, its objects reached
    as an alternate, and a config of ao's (the object format and a few harmless ``core`` settings copied,
    nothing else). git status runs a changed file's clean filter, and a filter is a command the clone's
    config names; with the agent rewriting that config while ao looks, no check made by another git process
    beforehand would hold. Here no config of the agent's is read by git. The copy is bounded (bytes, files,
    no link followed); GitError when the folder does not fit, or cannot be read or copied."""
    import tempfile

    from ao.agentfiles import open_regular

    out = run(["rev-parse", "--absolute-git-dir", "--show-object-format"], workspace, untrusted=True).splitlines()
    source, object_format = Path(out[0]), (out[1] if len(out) > 1 else "sha1")
    for part in ("refs", "objects", "info"):
        if os.path.islink(source / part):
            raise GitError(f"{source / part} is a link; not reading the workspace through it")
    left = SNAPSHOT_BYTES
    try:
        with tempfile.TemporaryDirectory(prefix="ao-git-") as tmp:
            own = Path(tmp)

            def copy(name: str, limit: int) -> None:
                nonlocal left
                try:
                    f = open_regular(source / name)
                except FileNotFoundError:
                    return
                with f:
                    data = f.read(min(limit, left) + 1)
                if len(data) > min(limit, left):
                    raise GitError(f"{source / name} is larger than ao copies to read the workspace")
                left -= len(data)
                (own / name).parent.mkdir(parents=True, exist_ok=True)
                (own / name).write_bytes(data)

            names = [("HEAD", REF_BYTES), ("index", SNAPSHOT_BYTES), ("packed-refs", SNAPSHOT_BYTES),
                     ("info/exclude", REF_BYTES * 256)]
            names += [(p.name, SNAPSHOT_BYTES) for p in source.glob("sharedindex.*")]  # a split index
            for root, _, files in os.walk(source / "refs"):  # links to folders are not followed
                names += [(os.path.relpath(os.path.join(root, f), source), REF_BYTES) for f in files]
                if len(names) > SNAPSHOT_FILES:
                    raise GitError(f"{source} has more than {SNAPSHOT_FILES} refs; not reading the workspace")
            for name, limit in names:
                copy(name, limit)
            (own / "refs").mkdir(exist_ok=True)
            (own / "objects" / "info").mkdir(parents=True)
            (own / "objects" / "info" / "alternates").write_text(f"{source / 'objects'}\n")  # a path may hold ':'
            (own / "config").write_text(_private_config(source, object_format))
            yield {"GIT_DIR": str(own), "GIT_WORK_TREE": str(workspace)}
    except OSError as exc:
        raise GitError(f"cannot read {workspace} through a private git folder: {exc.strerror or exc}") from None


def _private_config(source: Path, object_format: str) -> str:
    """The private git folder's config: the clone's object format and a few harmless ``core`` settings,
    read from its config file as text by ``git config --file`` (no includes, nothing run)."""
    lines = ["[core]", "\trepositoryformatversion = 1" if object_format != "sha1" else "\trepositoryformatversion = 0",
             "\tbare = false"]
    try:  # one read for all of them ("core.key\nvalue" entries; exit 1 when none is set)
        found = run(["config", "--file", str(source / "config"), "-z", "--get-regexp",
                     rf"^core\.({'|'.join(CORE_KEYS)})$"], source, untrusted=True)
    except GitError:
        found = ""
    for entry in found.split("\0"):
        key, given, value = entry.partition("\n")
        if key and value.isprintable() and '"' not in value and "\\" not in value:
            name = key.split(".", 1)[1]
            lines.append(f"\t{name} = {value}" if given else f"\t{name}")  # a bare name is "true"
    if object_format != "sha1":
        lines += ["[extensions]", f"\tobjectFormat = {object_format}"]
    return "\n".join(lines) + "\n"


def _real(path: Path | str) -> str:
    return os.path.realpath(os.path.abspath(path))
