"""The local SCM (SPEC 8): PRs, CI, reviews and merges with nothing but git and the project's ``origin``.

- A PR is a session branch pushed to ``origin``. Its number is allocated the first time ao sees the branch
  there (1, 2, 3, ... per project, never reused) and kept in ``<state_dir>/prs.json`` with everything else
  ao knows about it: the head shas it saw with commits of their own, reviews, notes, how it was merged or
  closed.
- CI is the ``ci`` shell command run in a throwaway checkout of the head commit by a detached runner process
  (``python -m ao.plugins.scm.local --run-ci JOB``), so :meth:`LocalScm.observe` never waits for it. The
  result is kept per sha in ``<state_dir>/ci/<sha>.json``: one sha is never tested twice.
- Reviews come from ``ao review`` (:meth:`LocalScm.review`) and are read from the state file on every
  observation, so a new review shows at once.
- Conflicts are ``git merge-tree --write-tree`` of ``origin/<default>`` and ``origin/<branch>``; merges
  happen in a throwaway repository and are pushed to ``origin/<default>`` (a rejected push changes nothing).

Throwaway checkouts are fresh repositories that borrow the project's objects through
``objects/info/alternates``: nothing is registered in the user's checkout (no ``git worktree`` entries to
leak when a runner is killed), none of its hooks run, and creating one costs one ``git init``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from ao import git
from ao.environment import ci_environment
from ao.errors import AoError
from ao.git import GitError
from ao.locks import file_lock
from ao.merging import review_verdict
from ao.plugins.scm import Check, Comment, MergeError, PRView, Review, ScmContext

STATE_FILE = "prs.json"
STATE_VERSION = 1
CI_DIR = "ci"
DEFAULT_CI_TIMEOUT = 600          # seconds (10m): SPEC's default for ciTimeout
CI_ATTEMPTS = 3                   # runner starts per sha before a runner that keeps dying counts as failing
MERGE_METHODS = ("merge", "squash", "rebase")
VERDICTS = ("approve", "request_changes")
OWN_HEADS_KEPT = 50               # head shas remembered per branch (see _Branches.update)
LOG_READ_BYTES = 64 * 1024        # only the end of a CI log is ever read back
# ao's own commits (merge, squash, rebase) get a fixed identity: a machine may have no git identity at all,
# and the user's GIT_COMMITTER_* (set in tests, in CI) must not pass ao's merges off as theirs.
AO_IDENTITY = {"GIT_COMMITTER_NAME": "ao", "GIT_COMMITTER_EMAIL": "ao@localhost",
               "GIT_AUTHOR_NAME": "ao", "GIT_AUTHOR_EMAIL": "ao@localhost"}
# Per-command config for every git call that writes: no hooks (the user's pre-push hook is not ao's
# business, and a global core.hooksPath would otherwise reach the throwaway repos), no signing prompts.
_QUIET_CONFIG = ["-c", "core.hooksPath=/dev/null", "-c", "commit.gpgSign=false", "-c", "gc.auto=0",
                 "-c", "advice.detachedHead=false"]


# ------------------------------------------------------------------------------------------ helpers

def _short(sha: str) -> str:
    return sha[:10]


@lru_cache(maxsize=1)
def git_version() -> tuple[int, ...]:
    """The installed git's version, e.g. (2, 39, 5); (0,) when it cannot be told."""
    try:
        out = subprocess.run(["git", "--version"], capture_output=True, text=True, check=False).stdout
    except OSError:
        return (0,)
    m = re.search(r"(\d+)\.(\d+)(?:\.(\d+))?", out)
    return tuple(int(g) for g in m.groups() if g is not None) if m else (0,)


def has_merge_tree_write_tree() -> bool:
    """``git merge-tree --write-tree`` (a merge without a work tree) arrived in git 2.38."""
    return git_version() >= (2, 38)


def objects_dir(repo: Path) -> Path:
    """The object store of ``repo`` (shared by all its worktrees)."""
    common = Path(git.run(["rev-parse", "--git-common-dir"], repo))
    return (common if common.is_absolute() else Path(repo) / common).resolve() / "objects"


@contextlib.contextmanager
def scratch(repo: Path, sha: str, where: Path | None = None) -> Iterator[Path]:
    """A throwaway repository with ``sha`` checked out (detached), borrowing ``repo``'s objects; removed after."""
    parent = Path(where) if where else None
    if parent:
        parent.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="ao-scratch-", dir=parent))
    try:
        git.run(["init", "--quiet", str(folder)], folder)
        (folder / ".git" / "objects" / "info" / "alternates").write_text(f"{objects_dir(repo)}\n")
        git.run([*_QUIET_CONFIG, "checkout", "--quiet", "--detach", sha], folder)
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def push_url(repo: Path) -> str:
    """Where ``git push origin`` in ``repo`` would push, usable from another folder (relative paths resolved)."""
    url = git.run(["remote", "get-url", "--push", "origin"], repo)
    if "://" not in url and not os.path.isabs(url) and (Path(repo) / url).exists():
        url = str((Path(repo) / url).resolve())
    return url


def _ci_timeout(value: Any) -> int:
    if value is None or value == "":
        return DEFAULT_CI_TIMEOUT
    from ao.durations import DurationError, parse_duration

    try:
        seconds = parse_duration(value)
    except DurationError as exc:
        raise AoError(f"scm.ciTimeout: {exc}") from None
    if seconds <= 0:
        raise AoError("scm.ciTimeout must be at least 1s")
    return seconds


# ------------------------------------------------------------------------------------------ state

@dataclass
class _Refs:
    """``origin``'s branches as last fetched: sha per branch, and which are contained in the default."""

    shas: dict[str, str]
    merged: set[str]               # branches whose tip is an ancestor of origin/<default> (or equal to it)
    fetch_error: str = ""

    def default_sha(self, default: str) -> str:
        return self.shas.get(default, "")


@dataclass
class LocalScm:
    ctx: ScmContext
    name: str = "local"
    # (origin/<default> sha, head sha) -> conflicts; the pair fully determines the answer, so it never goes stale
    _conflicts: dict[tuple[str, str], bool] = field(default_factory=dict)
    _runners: list[subprocess.Popen] = field(default_factory=list)

    # -- settings ---------------------------------------------------------------------------------

    @property
    def repo(self) -> Path:
        return Path(self.ctx.project_path)

    @property
    def default(self) -> str:
        return self.ctx.default_branch

    @property
    def ci_command(self) -> str:
        return str(self.ctx.settings.get("ci") or "").strip()

    @property
    def ci_timeout(self) -> int:
        return _ci_timeout(self.ctx.settings.get("ciTimeout"))

    @property
    def accept_stale(self) -> bool:
        """``scm.staleApprovals``: an approval of an earlier commit still counts after a push."""
        return bool(self.ctx.settings.get("staleApprovals", False))

    @property
    def merge_method(self) -> str:
        return str(self.ctx.settings.get("mergeMethod") or "merge")

    @property
    def state_dir(self) -> Path:
        return Path(self.ctx.state_dir)

    @property
    def ci_dir(self) -> Path:
        return self.state_dir / CI_DIR

    def url(self, number: int) -> str:
        return f"local:{self.ctx.project}#{number}"

    # -- the state file ---------------------------------------------------------------------------

    def _state_path(self) -> Path:
        return self.state_dir / STATE_FILE

    def _load(self) -> dict[str, Any]:
        path = self._state_path()
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {"version": STATE_VERSION, "next_number": 1, "next_id": 1, "prs": {}}
        except (OSError, ValueError) as exc:
            # Not silently replaced: starting over would hand out PR numbers again and drop every review.
            raise AoError(f"{path}: the local SCM state is unreadable ({exc}); fix it or move it aside "
                          "(PR numbers then start again at 1)") from None
        if not isinstance(data, dict) or not isinstance(data.get("prs"), dict):
            raise AoError(f"{path}: the local SCM state is not what ao wrote; fix it or move it aside")
        return data

    def _save(self, data: dict[str, Any]) -> None:
        from ao.ledger import atomic_write

        atomic_write(self._state_path(), json.dumps(data, indent=1, sort_keys=True) + "\n")

    @contextlib.contextmanager
    def _state(self) -> Iterator[dict[str, Any]]:
        """Read-modify-write of the state file under its lock; written only when something changed."""
        with file_lock(self.state_dir / ".lock"):
            data = self._load()
            before = json.dumps(data, sort_keys=True)
            yield data
            if json.dumps(data, sort_keys=True) != before:
                self._save(data)

    # -- git --------------------------------------------------------------------------------------

    def _fetch(self) -> str:
        """Fetch every branch of origin (pruning deleted ones); returns the error, "" when it worked."""
        # An explicit refspec, so a single-branch clone (remote.origin.fetch = one branch) still sees every
        # session branch. Our own lock keeps two observers from fighting over the same ref locks.
        with file_lock(self.state_dir / ".fetch.lock"):
            try:
                git.fetch(self.repo, "+refs/heads/*:refs/remotes/origin/*", prune=True)
            except GitError as exc:
                return exc.detail
        return ""

    def _refs(self, fetch: bool = True) -> _Refs:
        if not git.is_repo(self.repo):
            raise AoError(f"{self.repo}: not a git checkout (project '{self.ctx.project}' path)")
        error = self._fetch() if fetch else ""
        out = git.run(["for-each-ref", "--format=%(objectname) %(refname)", "refs/remotes/origin/"], self.repo)
        shas = {}
        for line in out.splitlines():
            sha, _, ref = line.partition(" ")
            name = ref[len("refs/remotes/origin/"):]
            if name != "HEAD":
                shas[name] = sha
        merged: set[str] = set()
        if self.default in shas:
            out = git.run(["for-each-ref", "--format=%(refname)", f"--merged={shas[self.default]}",
                           "refs/remotes/origin/"], self.repo)
            merged = {line[len("refs/remotes/origin/"):] for line in out.splitlines()}
        return _Refs(shas, merged, error)

    def conflicts(self, base_sha: str, head_sha: str) -> bool:
        """Whether merging ``head_sha`` into ``base_sha`` conflicts (cached per pair)."""
        key = (base_sha, head_sha)
        if key not in self._conflicts:
            if len(self._conflicts) > 1000:
                self._conflicts.clear()
            try:
                if has_merge_tree_write_tree():
                    found = self._merge_tree_conflicts(base_sha, head_sha)
                else:
                    found = self._trial_merge_conflicts(base_sha, head_sha)
            except GitError:
                # git cannot merge them at all (unrelated histories, say): as unmergeable as a conflict, and
                # one such branch must not stop the observation of every other one.
                found = True
            self._conflicts[key] = found
        return self._conflicts[key]

    def _merge_tree_conflicts(self, base_sha: str, head_sha: str) -> bool:
        try:
            git.run(["merge-tree", "--write-tree", "--no-messages", base_sha, head_sha], self.repo)
        except GitError as exc:
            if exc.returncode == 1:  # a clean merge exits 0, a conflicted one 1; anything else is an error
                return True
            raise
        return False

    def _trial_merge_conflicts(self, base_sha: str, head_sha: str) -> bool:
        """git < 2.38: a real merge (not committed) in a throwaway repository."""
        with scratch(self.repo, base_sha, self.state_dir / "tmp") as work:
            try:
                git.run([*_QUIET_CONFIG, "merge", "--no-commit", "--no-ff", "--quiet", head_sha], work,
                        env=AO_IDENTITY)
            except GitError:
                if git.run(["ls-files", "--unmerged"], work):
                    return True
                raise
        return False

    # -- branch records ---------------------------------------------------------------------------

    def _update(self, data: dict[str, Any], branch: str, refs: _Refs) -> dict[str, Any] | None:
        """Bring the branch's record up to date with origin; None when it has never been a PR."""
        prs = data["prs"]
        rec = prs.get(branch)
        sha = refs.shas.get(branch)
        if branch == self.default:
            return None  # the default branch is what PRs merge into, never a PR itself
        if sha:
            if rec is None:
                rec = prs[branch] = {"number": data["next_number"], "opened_at": int(self.ctx.clock()),
                                     "own_heads": [], "head_sha": sha, "merged": None, "closed": None,
                                     "reviews": [], "notes": []}
                data["next_number"] += 1
            closed = rec.get("closed")
            if closed and closed.get("reason") == "deleted":
                rec["closed"] = None  # pushed again after it was deleted: the PR reopens
            # A branch pushed with no commits of its own is contained in the default branch from the start;
            # that must not read as merged. So remember the heads seen with commits of their own, and count
            # one as merged (by someone else's git) only when such a head later becomes part of the default.
            if branch not in refs.merged and sha not in rec["own_heads"]:
                rec["own_heads"] = (rec["own_heads"] + [sha])[-OWN_HEADS_KEPT:]
            if branch in refs.merged and sha in rec["own_heads"] and not rec.get("merged") \
                    and not rec.get("closed"):
                rec["merged"] = {"by": "git", "head_sha": sha, "sha": refs.default_sha(self.default),
                                 "method": "", "at": int(self.ctx.clock())}
            rec["head_sha"] = sha
        elif rec is not None and not rec.get("merged") and not rec.get("closed") and not refs.fetch_error:
            # Gone from origin (not while the fetch failed: --prune did not run then, so the refs say nothing
            # new). Merged and then deleted, as a merge by hand on the server often goes, or just deleted:
            # closed then, and reopened if pushed again.
            head, base = rec.get("head_sha", ""), refs.default_sha(self.default)
            if head in rec["own_heads"] and base and git.succeeds(["merge-base", "--is-ancestor", head, base],
                                                                  self.repo):
                rec["merged"] = {"by": "git", "head_sha": head, "sha": base, "method": "",
                                 "at": int(self.ctx.clock())}
            else:
                rec["closed"] = {"reason": "deleted", "at": int(self.ctx.clock()), "by": ""}
        return rec

    def _next_id(self, data: dict[str, Any]) -> str:
        n = data.get("next_id", 1)
        data["next_id"] = n + 1
        return f"local-{n}"

    # -- views ------------------------------------------------------------------------------------

    def _view(self, branch: str, rec: dict[str, Any] | None, refs: _Refs, start_ci: bool = True) -> PRView:
        if rec is None:
            return PRView(branch)
        number = rec["number"]
        state = "merged" if rec.get("merged") else "closed" if rec.get("closed") else "open"
        head = rec["merged"]["head_sha"] if state == "merged" else rec.get("head_sha", "")
        view = PRView(branch=branch, state=state, number=number, url=self.url(number), head_sha=head,
                      base_branch=self.default)
        reviews = rec.get("reviews") or []
        latest: dict[str, dict[str, Any]] = {}  # the latest verdict of each reviewer
        for r in reviews:
            if r.get("kind") in VERDICTS:
                latest[str(r.get("author") or "local")] = r
        view.reviews = [Review(id=str(r["id"]), author=author, commit=str(r.get("head_sha") or ""), trusted=True,
                               state="approved" if r["kind"] == "approve" else "changes_requested",
                               association="OWNER", url=f"{self.url(number)}/{r['id']}")
                        for author, r in latest.items()]
        if state == "open":
            view.review, view.review_note = review_verdict(view.reviews, head, required=True,
                                                           accept_stale=self.accept_stale)
        elif view.reviews:
            view.review = review_verdict(view.reviews, head, accept_stale=True)[0]
        check = self._ci_check(head, branch, start=start_ci and state == "open")
        if check is not None:
            view.checks = [check]
            view.ci = check.state
        elif not self.ci_command:
            view.ci_note = "the project has no CI (scm.ci is not set)"
        if state == "open":
            base = refs.default_sha(self.default)
            view.conflicts = bool(base) and self.conflicts(base, head)
            view.mergeability = "conflicting" if view.conflicts else "mergeable" if base else "unknown"
            # A thread stays unresolved until the reviewer approves after it. A push alone does not resolve
            # it (as on GitHub, an outdated thread is still open): otherwise the comments would "change" from
            # some to none while changes are still requested, and the agent would be told twice.
            last_approval = max((i for i, r in enumerate(reviews) if r.get("kind") == "approve"), default=-1)
            view.comments = [self._comment(r, number) for i, r in enumerate(reviews)
                             if r.get("body") and i > last_approval]
        return view

    def _comment(self, r: dict[str, Any], number: int) -> Comment:
        return Comment(id=r["id"], author=r.get("author") or "local", body=r["body"], association="OWNER",
                       trusted=True, bot=False, url=f"{self.url(number)}/{r['id']}")

    def observe(self, branches: list[str]) -> dict[str, PRView]:
        self._reap()
        refs = self._refs()
        with self._state() as data:
            recs = {b: self._update(data, b, refs) for b in dict.fromkeys(branches)}
            recs = {b: json.loads(json.dumps(r)) if r else None for b, r in recs.items()}
        return {b: self._view(b, rec, refs) for b, rec in recs.items()}

    # -- CI ---------------------------------------------------------------------------------------

    def _ci_result(self, sha: str) -> dict[str, Any] | None:
        try:
            data = json.loads((self.ci_dir / f"{sha}.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) and data.get("state") in ("passing", "failing") else None

    def _ci_check(self, sha: str, branch: str, start: bool) -> Check | None:
        """The "ci" check of ``sha``: its cached result, else pending (starting the runner when asked)."""
        if not self.ci_command or not sha or not re.fullmatch(r"[0-9a-f]{7,64}", sha):
            return None
        result = self._ci_result(sha)
        if result is not None:
            log = str(self.ci_dir / f"{sha}.log")
            tail = result.get("log_tail", "") if result["state"] == "failing" else ""
            return Check("ci", result["state"], url=log, log_tail=tail)
        if not start:
            return None
        self._start_ci(sha, branch)
        result = self._ci_result(sha)  # a runner that finished between our two looks
        if result is not None:
            return self._ci_check(sha, branch, start=False)
        return Check("ci", "pending")

    def _start_ci(self, sha: str, branch: str) -> None:
        """Start the detached runner for ``sha`` unless one is running (or a result exists).

        ``<sha>.run`` is the claim: its flock is taken here and handed to the runner (an inherited open file
        description), so it is held exactly as long as the runner lives. A claim file nobody holds means the
        runner died without a result (a reboot, a kill): it is started again, at most CI_ATTEMPTS times."""
        self.ci_dir.mkdir(parents=True, exist_ok=True)
        marker = self.ci_dir / f"{sha}.run"
        try:
            fd = os.open(marker, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            fd = os.open(marker, os.O_RDWR)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return  # a runner holds it: CI is running
            if self._ci_result(sha) is not None:
                return
            raw = os.pread(fd, 32, 0).decode(errors="replace").strip()
            attempts = int(raw) if raw.isdigit() else 0
            if attempts >= CI_ATTEMPTS:
                self._write_ci_result(sha, {"state": "failing", "exit_code": None, "timed_out": False,
                                            "log_tail": f"[ao] the CI runner stopped {attempts} times without "
                                                        "a result; push a new commit to run CI again"})
                return
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(attempts + 1).encode(), 0)
            job = {"repo": str(self.repo), "sha": sha, "branch": branch, "command": self.ci_command,
                   "timeout": self.ci_timeout, "ci_dir": str(self.ci_dir), "pass_env": list(self.ctx.pass_env)}
            import ao

            with open(self.ci_dir / "runner.log", "ab") as errors:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "ao.plugins.scm.local", "--run-ci", json.dumps(job)],
                    # -m imports from the working directory first: the folder holding this ao package,
                    # so a source checkout run without installing starts the same code.
                    cwd=str(Path(ao.__file__).resolve().parent.parent),
                    stdin=subprocess.DEVNULL, stdout=errors, stderr=errors, pass_fds=(fd,),
                    env=ci_environment(self.ctx.pass_env),  # the runner holds no secret of ours either
                    start_new_session=True,  # not in our process group: a Ctrl-C of `ao start` leaves it be
                )
            self._runners.append(proc)
        finally:
            os.close(fd)  # the runner keeps its own copy (and so the lock)

    def _write_ci_result(self, sha: str, result: dict[str, Any]) -> None:
        from ao.ledger import atomic_write

        atomic_write(self.ci_dir / f"{sha}.json", json.dumps(result, indent=1) + "\n")

    def _reap(self) -> None:
        """Collect runners that have finished (they are our children until then)."""
        self._runners = [p for p in self._runners if p.poll() is None]

    def ci_running(self) -> int:
        """How many runners this instance started are still running (for tests and shutdown)."""
        self._reap()
        return len(self._runners)

    # -- merge ------------------------------------------------------------------------------------

    def merge(self, view: PRView, method: str | None = None) -> str:
        method = method or self.merge_method
        if method not in MERGE_METHODS:
            raise MergeError(f"unknown merge method '{method}'; use one of {', '.join(MERGE_METHODS)}")
        branch = view.branch
        refs = self._refs()
        if refs.fetch_error:
            raise MergeError(f"not merged: cannot fetch from origin to re-read {branch} ({refs.fetch_error})")
        with self._state() as data:
            rec = self._update(data, branch, refs)
            rec = json.loads(json.dumps(rec)) if rec else None
        if rec is None or rec.get("closed") or rec.get("merged"):
            state = "not a PR" if rec is None else "merged already" if rec.get("merged") else "closed"
            raise MergeError(f"not merged: {branch} is {state}")
        head = refs.shas[branch]
        if head != view.head_sha:
            raise MergeError(f"not merged: {branch} was pushed to since it was observed (observed "
                             f"{_short(view.head_sha) or 'nothing'}, now {_short(head)}); the next observation "
                             "sees the new commits")
        base = refs.default_sha(self.default)
        if not base:
            raise MergeError(f"not merged: origin has no branch '{self.default}' to merge into")
        if self.conflicts(base, head):
            raise MergeError(f"not merged: {branch} conflicts with {self.default}; the branch must merge "
                             f"origin/{self.default} and resolve them first")
        number = rec["number"]
        merged = self._merge_and_push(branch, number, base, head, method)
        with self._state() as data:
            data["prs"][branch]["merged"] = {"by": "ao", "head_sha": head, "sha": merged, "method": method,
                                             "at": int(self.ctx.clock())}
        # So origin/<default> in the user's checkout already shows the merge (best effort: observe fetches).
        with contextlib.suppress(GitError), file_lock(self.state_dir / ".fetch.lock"):
            git.fetch(self.repo, f"+refs/heads/{self.default}:refs/remotes/origin/{self.default}")
        return merged

    def _merge_and_push(self, branch: str, number: int, base: str, head: str, method: str) -> str:
        url = push_url(self.repo)
        title = f"{branch} (local PR #{number})"
        with scratch(self.repo, base, self.state_dir / "tmp") as work:
            try:
                if method == "merge":
                    git.run([*_QUIET_CONFIG, "merge", "--quiet", "--no-ff", "--no-edit", "-m",
                             f"Merge {title}", head], work, env=AO_IDENTITY)
                elif method == "squash":
                    subjects = git.run(["log", "--reverse", "--format=* %s", f"{base}..{head}"], work)
                    author = git.run(["log", "-1", "--format=%an%x00%ae", head], work).split("\0")
                    git.run([*_QUIET_CONFIG, "merge", "--quiet", "--squash", head], work, env=AO_IDENTITY)
                    if not git.run(["status", "--porcelain", "--untracked-files=no"], work):
                        raise MergeError(f"not merged: {branch} changes nothing on {self.default}")
                    who = {"GIT_AUTHOR_NAME": author[0], "GIT_AUTHOR_EMAIL": author[-1]} if len(author) == 2 else {}
                    git.run([*_QUIET_CONFIG, "commit", "--quiet", "-m", f"{title}\n\n{subjects}".rstrip()],
                            work, env={**AO_IDENTITY, **who})
                else:  # rebase: the branch's commits replayed on the default, which then fast-forwards
                    git.run([*_QUIET_CONFIG, "checkout", "--quiet", "--detach", head], work)
                    try:
                        git.run([*_QUIET_CONFIG, "rebase", "--quiet", base], work, env=AO_IDENTITY)
                    except GitError:
                        with contextlib.suppress(GitError):
                            git.run(["rebase", "--abort"], work)
                        raise MergeError(f"not merged: {branch} does not rebase cleanly onto {self.default}; "
                                         "use another merge method or rebase the branch") from None
            except GitError as exc:
                raise MergeError(f"not merged: merging {branch} failed ({exc.detail})") from None
            merged = git.run(["rev-parse", "HEAD"], work)
            try:
                # No --force: if origin/<default> moved since we fetched, the push is refused and nothing changed.
                git.run([*_QUIET_CONFIG, "push", "--quiet", url,
                         f"{merged}:refs/heads/{self.default}"], work, timeout=git.NETWORK_TIMEOUT)
            except GitError as exc:
                text = f"{exc.stderr}\n{exc}"
                if any(w in text for w in ("non-fast-forward", "fetch first", "[rejected]", "stale info")):
                    raise MergeError(f"not merged: origin/{self.default} moved while {branch} was being "
                                     "merged; nothing was pushed, the next observation tries again") from None
                raise MergeError(f"not merged: pushing to origin failed ({exc.detail})") from None
        return merged

    # -- comments, reviews, close -----------------------------------------------------------------

    def comment(self, view: PRView, text: str) -> None:
        """A note on the PR (ao's notify actions): kept with the PR, shown by ``ao review SESSION --list``."""
        with self._state() as data:
            rec = data["prs"].get(view.branch)
            if rec is None:
                raise AoError(f"{view.branch} has no local PR to comment on")
            rec.setdefault("notes", []).append({"id": self._next_id(data), "body": text,
                                                "author": "ao", "at": int(self.ctx.clock())})

    def _pr(self, data: dict[str, Any], branch: str, refs: _Refs, doing: str) -> dict[str, Any]:
        """The branch's open PR record for ``ao review``; AoError when there is none to act on."""
        rec = self._update(data, branch, refs)
        if rec is None or (branch not in refs.shas and not rec.get("merged")):
            why = f" (fetching from origin failed: {refs.fetch_error})" if refs.fetch_error else ""
            raise AoError(f"{branch} has no PR yet: its branch is not on origin{why}; push it first "
                          f"(git push -u origin {branch})")
        if rec.get("merged"):
            raise AoError(f"local PR #{rec['number']} ({branch}) is merged already; it cannot be {doing}")
        return rec

    def review(self, branch: str, verdict: str, text: str = "", author: str | None = None) -> dict[str, Any]:
        """Record a review on ``branch``'s PR: ``approve``, ``request_changes`` (with text) or ``comment``.

        Returns the stored review plus ``number`` and ``url``. The branch must be on origin (after a fetch)."""
        if verdict not in (*VERDICTS, "comment"):
            raise AoError(f"unknown review kind '{verdict}'")
        if verdict != "approve" and not text.strip():
            raise AoError("a review comment needs some text")
        refs = self._refs()
        with self._state() as data:
            rec = self._pr(data, branch, refs, "reviewed")
            if rec.get("closed"):
                raise AoError(f"local PR #{rec['number']} ({branch}) is closed; it cannot be reviewed")
            item = {"id": self._next_id(data), "kind": verdict, "body": text.strip(),
                    "author": author or os.environ.get("USER") or "local", "head_sha": rec["head_sha"],
                    "at": int(self.ctx.clock())}
            rec.setdefault("reviews", []).append(item)
            return {**item, "number": rec["number"], "url": self.url(rec["number"]), "branch": branch}

    def close(self, branch: str, author: str | None = None) -> dict[str, Any]:
        """Close ``branch``'s PR without merging (it stays closed, even if pushed to again)."""
        refs = self._refs()
        with self._state() as data:
            rec = self._pr(data, branch, refs, "closed")
            if not rec.get("closed") or rec["closed"].get("reason") != "closed":
                rec["closed"] = {"reason": "closed", "at": int(self.ctx.clock()),
                                 "by": author or os.environ.get("USER") or "local"}
            return {"number": rec["number"], "url": self.url(rec["number"]), "branch": branch, "state": "closed"}

    def record(self, branch: str) -> dict[str, Any] | None:
        """What is stored about ``branch``'s PR (reviews, notes, merge or close), without fetching."""
        data = self._load()
        rec = data["prs"].get(branch)
        return json.loads(json.dumps(rec)) if rec else None

    def view(self, branch: str) -> PRView:
        """One branch's PR now (fetches; starts CI like observe)."""
        return self.observe([branch])[branch]


def plugin(ctx: ScmContext) -> LocalScm:
    method = ctx.settings.get("mergeMethod")
    if method is not None and method not in MERGE_METHODS:
        raise AoError(f"scm.mergeMethod '{method}' is not one of {', '.join(MERGE_METHODS)}")
    _ci_timeout(ctx.settings.get("ciTimeout"))  # a bad duration is reported now, not at the first CI run
    return LocalScm(ctx)


# ------------------------------------------------------------------------------------------ the CI runner

def run_ci(job: dict[str, Any]) -> dict[str, Any]:
    """Run one CI job to the end and write its result (the detached runner's whole life)."""
    from ao.ledger import atomic_write
    from ao.templates import LOG_CAP, clean

    ci_dir = Path(job["ci_dir"])
    sha, command, timeout = job["sha"], job["command"], int(job["timeout"])
    log_path = ci_dir / f"{sha}.log"
    started = time.time()
    code: int | None = None
    timed_out = False
    note = ""
    try:
        with scratch(Path(job["repo"]), sha, ci_dir / "work") as work, open(log_path, "wb") as log:
            # CI runs code the agent pushed: an allowlisted environment, never ao's secrets
            env = ci_environment(job.get("pass_env") or (), {"AO_CI_SHA": sha, "AO_CI_BRANCH": job.get("branch", "")})
            proc = subprocess.Popen(["/bin/sh", "-c", command], cwd=work, env=env, stdin=subprocess.DEVNULL,
                                    stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True)  # its own group: a timeout kills its children too
            try:
                code = proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                timed_out = True
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                from ao.durations import format_duration

                note = f"[ao] CI timed out after {format_duration(timeout)} and was killed"
    except GitError as exc:
        note = f"[ao] could not check out {_short(sha)} for CI: {exc.detail}"
    tail = ""
    try:
        with open(log_path, "rb") as fh:
            size = fh.seek(0, os.SEEK_END)
            fh.seek(max(0, size - LOG_READ_BYTES))
            tail = fh.read().decode("utf-8", errors="replace")
    except OSError:
        pass
    text = "\n".join(t for t in (tail.rstrip("\n"), note) if t)
    result = {"state": "passing" if code == 0 and not timed_out else "failing", "exit_code": code,
              "timed_out": timed_out, "log_tail": clean(text, LOG_CAP, tail=True),
              "seconds": round(time.time() - started, 3), "command": command, "finished_at": int(time.time())}
    atomic_write(ci_dir / f"{sha}.json", json.dumps(result, indent=1) + "\n")
    # The claim has served its purpose: the result file now says "never again" for this sha.
    with contextlib.suppress(OSError):
        (ci_dir / f"{sha}.run").unlink()
    return result


def _main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] != "--run-ci":
        print("usage: python -m ao.plugins.scm.local --run-ci JOB_JSON", file=sys.stderr)
        return 2
    run_ci(json.loads(argv[1]))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
