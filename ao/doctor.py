"""Checks of this machine against a configuration: what ``ao doctor`` runs, and the part of ``ao config
validate`` that looks beyond the file (project folders, origin, the default branch, agent CLIs).

Every check says what it found and, when something is wrong, how to fix it. Nothing here changes anything.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Optional

from ao.errors import AoError, Problem

OK, WARN, FAIL, SKIP = "ok", "warn", "FAIL", "skip"
AGENT_PROGRAMS = {"claude-code": "claude", "codex": "codex", "aider": "aider", "opencode": "opencode"}
INSTALL_HINTS = {
    "claude-code": "npm install -g @anthropic-ai/claude-code",
    "codex": "npm install -g @openai/codex",
    "opencode": "npm install -g opencode-ai",
    "aider": "pipx install aider-chat",
}
MIN_TMUX = (3, 0)
MIN_GIT = (2, 25)        # git worktree add --no-track and friends
MERGE_TREE_GIT = (2, 38)  # conflicts without a work tree (older git: a trial merge, slower)
TIMEOUT = 10.0


@dataclass
class Check:
    name: str
    result: str          # OK | WARN | FAIL | SKIP
    detail: str
    fix: str = ""

    def row(self) -> dict[str, str]:
        return {"check": self.name, "result": self.result, "detail": self.detail, "fix": self.fix}


def _run(argv: list[str], cwd: Optional[Path] = None) -> tuple[int, str]:
    """(exit status, stdout+stderr); 127 when the program is missing. Never raises, never waits forever."""
    try:
        done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT, check=False,
                              stdin=subprocess.DEVNULL, env={**os.environ, "GIT_TERMINAL_PROMPT": "0",
                                                              "LC_ALL": "C"})
    except FileNotFoundError:
        return 127, ""
    except (OSError, subprocess.TimeoutExpired) as exc:
        return 124, f"{type(exc).__name__}"
    return done.returncode, (done.stdout + done.stderr).strip()


def version_of(text: str) -> Optional[tuple[int, ...]]:
    m = re.search(r"(\d+)\.(\d+)(?:\.(\d+))?", text)
    return tuple(int(g) for g in m.groups() if g is not None) if m else None


def _dotted(v: Iterable[int]) -> str:
    return ".".join(str(n) for n in v)


# ------------------------------------------------------------------------------------------- tools

def check_tmux(needed: bool) -> Check:
    code, out = _run(["tmux", "-V"])
    if code == 127:
        return Check("tmux", FAIL if needed else WARN, "tmux is not installed",
                     "install tmux 3.0 or newer (apt install tmux / brew install tmux), or set runtime: process")
    version = version_of(out)
    if version is None or version < MIN_TMUX:
        return Check("tmux", FAIL if needed else WARN, f"{out or 'unknown version'}: too old",
                     f"install tmux {_dotted(MIN_TMUX)} or newer")
    return Check("tmux", OK, out)


def check_git() -> Check:
    code, out = _run(["git", "--version"])
    if code == 127:
        return Check("git", FAIL, "git is not installed", "install git (apt install git / brew install git)")
    version = version_of(out)
    if version is None or version < MIN_GIT:
        return Check("git", FAIL, f"{out}: too old", f"install git {_dotted(MIN_GIT)} or newer")
    if version < MERGE_TREE_GIT:
        return Check("git", WARN, f"{out}: conflicts are checked with trial merges (slower)",
                     f"git {_dotted(MERGE_TREE_GIT)} or newer checks them without a work tree")
    return Check("git", OK, out)


def agents_in_use(config: Any) -> dict[str, list[str]]:
    """Agent plugin -> the projects that use it (for workers or the orchestrator)."""
    used: dict[str, list[str]] = {}
    for p in config.projects.values():
        for agent in dict.fromkeys([p.agent, p.orchestrator_agent or p.agent]):
            used.setdefault(agent, []).append(p.id)
    return used


def checked_with(agent: str) -> str | None:
    """The CLI version ao's screens and signals for ``agent`` were checked against: its plugin's ``CHECKED``."""
    import importlib

    from ao.plugins.agent import MODULES

    module = importlib.import_module(f"ao.plugins.agent.{MODULES[agent]}") if agent in MODULES else None
    return getattr(module, "CHECKED", None)


def check_agent(agent: str, projects: list[str]) -> Check:
    name = f"agent {agent}"
    program = AGENT_PROGRAMS.get(agent)
    if program is None:  # the command agent: whatever agentConfig.command runs
        return Check(name, OK, f"a command line of your own ({', '.join(projects)})")
    if shutil.which(program) is None:
        return Check(name, FAIL, f"`{program}` is not on PATH (used by {', '.join(projects)})",
                     f"install it ({INSTALL_HINTS[agent]}), or choose another agent: in the config")
    code, out = _run([program, "--version"])
    found = version_of(out) if code == 0 else None
    checked = checked_with(agent)
    if found is None:
        return Check(name, WARN, f"`{program} --version` did not say its version", "reinstall it")
    detail = f"{program} {_dotted(found)}"
    if checked and found[:2] != version_of(checked)[:2]:  # type: ignore[index]
        return Check(name, WARN, f"{detail}; ao was checked with {checked}",
                     "it may still work; if sessions misread the agent (needs_input, stuck), install "
                     f"{checked} or report the screen")
    return Check(name, OK, detail + (f" (checked with {checked})" if checked else ""))


# ------------------------------------------------------------------------------------------ projects

def repo_top(path: Path) -> Optional[Path]:
    code, out = _run(["git", "-C", str(path), "rev-parse", "--show-toplevel"])
    return Path(out.splitlines()[-1]).resolve() if code == 0 and out else None


def current_branch(path: Path) -> str:
    code, out = _run(["git", "-C", str(path), "symbolic-ref", "--quiet", "--short", "HEAD"])
    return out if code == 0 else ""


def origin_url(path: Path) -> str:
    code, out = _run(["git", "-C", str(path), "remote", "get-url", "origin"])
    return out.splitlines()[0] if code == 0 and out else ""


def remote_default_branch(path: Path) -> str:
    """What origin's HEAD points at, as this checkout last heard it ("" when unknown)."""
    code, out = _run(["git", "-C", str(path), "symbolic-ref", "--quiet", "--short", "refs/remotes/origin/HEAD"])
    if code == 0 and out.startswith("origin/"):
        return out[len("origin/"):]
    code, out = _run(["git", "-C", str(path), "ls-remote", "--symref", "origin", "HEAD"])
    m = re.search(r"ref: refs/heads/(\S+)\s+HEAD", out) if code == 0 else None
    return m.group(1) if m else ""


def branch_on_origin(path: Path, branch: str) -> Optional[bool]:
    """Whether origin has ``branch`` (None when origin cannot be asked)."""
    code, _ = _run(["git", "-C", str(path), "rev-parse", "--verify", "--quiet", f"refs/remotes/origin/{branch}"])
    if code == 0:
        return True
    code, out = _run(["git", "-C", str(path), "ls-remote", "--heads", "origin", branch])
    if code != 0:
        return None
    return bool(out.strip())


def project_findings(project: Any) -> list[tuple[str, str, str, str]]:
    """(result, what, fix, config key) for one project's folder, repository, origin and default branch."""
    out: list[tuple[str, str, str, str]] = []
    path = Path(project.path)
    if not path.is_dir():
        return [(FAIL, f"{path} does not exist", "fix `path:` (relative paths are relative to the config file)",
                 "path")]
    top = repo_top(path)
    if top is None:
        return [(FAIL, f"{path} is not in a git repository", "point `path:` at a git checkout (or `git init`)",
                 "path")]
    if top != path.resolve():
        return [(FAIL, f"{path} is inside the repository {top}, not its top", f"set `path: {top}`", "path")]
    scm = (project.scm or {}).get("plugin", "local")
    url = origin_url(path)
    if not url:
        fix = ("add one: `git remote add origin <url>` (for a local setup a bare repository: "
               "`git init --bare ../origin.git`); the local SCM reads PRs from origin")
        out.append((FAIL if scm == "local" else WARN, f"{path} has no `origin` remote", fix, "scm"))
        return out
    on_origin = branch_on_origin(path, project.default_branch)
    remote_head = remote_default_branch(path)
    if on_origin is False:
        better = f"set `defaultBranch: {remote_head}`" if remote_head else \
            f"push it (`git push origin HEAD:{project.default_branch}`) or fix `defaultBranch:`"
        out.append((FAIL, f"origin ({url}) has no branch '{project.default_branch}'", better, "defaultBranch"))
    elif on_origin is None:
        out.append((WARN, f"origin ({url}) could not be reached to check '{project.default_branch}'",
                    "check the network or your credentials (`git ls-remote origin`)", "defaultBranch"))
    else:
        out.append((OK, f"origin {url}, default branch {project.default_branch}", "", ""))
    return out


def environment_problems(config: Any) -> list[Problem]:
    """What spawn would hit on this machine, positioned in the config file (``ao config validate``)."""
    src = config.source
    problems: list[Problem] = []
    for pid, project in config.projects.items():
        raw = project.raw
        for result, what, fix, key in project_findings(project):
            if result != FAIL:
                continue
            where = ("projects", pid, key) if key in raw else ("projects", pid)
            problems.append(src.problem(where, f"{what}; {fix}", key=key not in raw))
        for agent in dict.fromkeys([project.agent, project.orchestrator_agent or project.agent]):
            program = AGENT_PROGRAMS.get(agent)
            if program and shutil.which(program) is None:
                where = ("projects", pid, "agent") if "agent" in raw else ("projects", pid)
                problems.append(src.problem(where, f"agent '{agent}' needs `{program}`, which is not installed "
                                                   f"here: {INSTALL_HINTS[agent]}, or choose another agent"))
    return problems


# ------------------------------------------------------------------------------------------ services

def check_github(config: Any) -> list[Check]:
    """The GitHub token of each API host the projects use, and its scopes."""
    hosts: dict[str, list[str]] = {}
    for p in config.projects.values():
        uses = (p.scm or {}).get("plugin") == "github" or (p.tracker or {}).get("plugin") == "github"
        if uses:
            base = (p.scm or {}).get("baseUrl") or (p.tracker or {}).get("baseUrl") or "https://api.github.com"
            hosts.setdefault(base.rstrip("/"), []).append(p.id)
    out = []
    for base, projects in hosts.items():
        out.append(_github_token(base, projects))
    return out


def _github_token(base: str, projects: list[str]) -> Check:
    import httpx

    from ao.plugins.scm.github import TOKEN_HINT, resolve_token

    name = f"GitHub token ({base})"
    try:
        token = resolve_token(base)
    except AoError as exc:
        return Check(name, FAIL, str(exc), TOKEN_HINT)
    try:
        response = httpx.get(f"{base}/user", headers={"Authorization": f"Bearer {token}",
                                                     "Accept": "application/vnd.github+json"}, timeout=TIMEOUT)
    except httpx.HTTPError as exc:
        return Check(name, FAIL, f"cannot reach {base}: {type(exc).__name__}", "check the network, or scm.baseUrl")
    if response.status_code == 401:
        return Check(name, FAIL, "the token was rejected (401)", f"create a new one; {TOKEN_HINT}")
    if response.status_code >= 400:
        return Check(name, FAIL, f"{base}/user answered {response.status_code}", "check the token and scm.baseUrl")
    login = ""
    try:
        login = str(response.json().get("login") or "")
    except ValueError:
        pass
    scopes_header = response.headers.get("X-OAuth-Scopes")
    who = f"as {login}" if login else "accepted"
    if scopes_header is None:
        return Check(name, OK, f"{who}; a fine-grained token (permissions are not listed): it needs "
                               "contents, pull requests, issues and checks access")
    scopes = {s.strip() for s in scopes_header.split(",") if s.strip()}
    if not scopes & {"repo", "public_repo"}:
        return Check(name, FAIL, f"{who}; scopes: {', '.join(sorted(scopes)) or 'none'}",
                     "give the token the `repo` scope (public_repo for public repositories only)")
    return Check(name, OK, f"{who}; scopes: {', '.join(sorted(scopes))}")


def check_linear(config: Any) -> list[Check]:
    out = []
    for p in config.projects.values():
        if (p.tracker or {}).get("plugin") != "linear":
            continue
        var = (p.tracker or {}).get("apiKeyEnv") or "LINEAR_API_KEY"
        if os.environ.get(var):
            out.append(Check(f"Linear key ({p.id})", OK, f"${var} is set"))
        else:
            out.append(Check(f"Linear key ({p.id})", FAIL, f"${var} is not set",
                             f"export {var}=lin_api_... (Linear → Settings → API)"))
    return out


# ------------------------------------------------------------------------------------------ state

def check_data_dir(config: Any) -> list[Check]:
    from ao import config as config_mod
    from ao import overview, quarantine

    data = Path(config.data_dir)
    why = {"AO_HOME": "from $AO_HOME", "dataDir": "from dataDir:", "default": "one per config file"}[
        config.data_dir_from]
    out = []
    probe = data if data.exists() else next((p for p in data.parents if p.exists()), Path("/"))
    if not os.access(probe, os.W_OK):
        out.append(Check("data dir", FAIL, f"{data} ({why}) is not writable", "fix its permissions, or set dataDir:"))
        return out
    owner = config_mod.data_dir_owner(data)
    mine = str(Path(config.file).resolve())
    if owner and owner != mine and Path(owner).is_file():
        out.append(Check("data dir", FAIL, f"{data} ({why}) belongs to {owner}",
                         "give this config its own: remove dataDir: (or unset $AO_HOME), or set another one"))
    else:
        out.append(Check("data dir", OK, f"{data} ({why})"))
    state = overview.poller_state(data)
    if state.pid is not None:
        out.append(Check("poller", OK, f"ao start is running (pid {state.pid})"))
    else:
        out.append(Check("poller", WARN, "ao start is not running: nothing reacts to CI, reviews or agents",
                         "run `ao start` (in tmux, or as a service)"))
    left = quarantine.quarantined(data)
    if left:
        out.append(Check("records", WARN, quarantine.warning(left), "`ao session ls --problems`, then "
                                                                      "`ao session adopt` or `ao session kill`"))
    return out


def check_port(config: Any) -> Check:
    """Whether `ao start` and `ao dashboard` can serve on host:port (a moment's bind, never kept)."""
    from ao import overview
    from ao.web import server, settings

    try:
        chosen = settings.from_config(config)
    except AoError as exc:
        return Check("port", FAIL, str(exc), "fix dashboard: in the config")
    where = f"{chosen.host}:{chosen.port}"
    hooked = any(p.scm.get("webhook") for p in config.projects.values())
    served = server.serving(config.data_dir)
    if served is not None:
        return Check("port", OK, f"this data dir's dashboard serves at {served['url']} (pid {served['pid']})")
    if overview.poller_state(config.data_dir).pid is not None:
        return Check("port", SKIP, f"ao start is running for this data dir (without its dashboard); {where} not tried")
    try:
        server.bind(chosen).close()
    except AoError as exc:
        if hooked:
            return Check("port", FAIL, f"{exc}; `ao start` cannot serve its webhooks",
                         "stop what serves on it, or set `port:` to a free port and point the webhook senders "
                         "there (webhooks never move to another port)")
        if chosen.port_fixed:
            return Check("port", WARN, f"{exc}; `ao start` would run without its dashboard",
                         "set `port:` to a free port (or remove it: the dashboard then takes a free one)")
        return Check("port", OK, f"{where} is taken: the dashboard will serve on a free port "
                                 "(`ao dashboard --print-url` prints it)")
    return Check("port", OK, f"{where} is free for the dashboard" + (" and webhooks" if hooked else ""))


def check_prices(config: Any) -> list[Check]:
    """Models the poller read usage of that the price table does not know: they cost $0, budgets miss them."""
    from ao.usage import project_rows

    out = []
    for row in project_rows(config, config.projects):
        if row["unpriced"]:
            out.append(Check(f"prices {row['project']}", WARN, f"no price for {', '.join(row['unpriced'])}: "
                             "its tokens count as $0, so budgets never see them",
                             "add it under prices.models in the config (USD per million tokens)"))
    return out


def check_config(explicit: Any) -> tuple[Check, Any]:
    """(the check, the loaded config or None)."""
    from ao import config as config_mod

    try:
        path = config_mod.discover(explicit)
    except AoError as exc:
        return Check("config", FAIL, str(exc).splitlines()[0], "create one with `ao config init` in your "
                                                              "repository"), None
    try:
        cfg = config_mod.load(path)
    except AoError as exc:
        lines = str(exc).splitlines()
        more = f" (and {len(lines) - 1} more)" if len(lines) > 1 else ""
        return Check("config", FAIL, f"{lines[0]}{more}", f"`ao config validate {path}` lists every problem"), None
    n = len(cfg.projects)
    return Check("config", OK, f"{path} ({n} project{'s' if n != 1 else ''})"), cfg


def run(explicit: Any = None, notify: bool = False) -> list[Check]:
    """Every check, in the order a user would fix things."""
    checks: list[Check] = []
    first, cfg = check_config(explicit)
    checks.append(first)
    checks.append(check_git())
    needs_tmux = cfg is None or any(p.runtime == "tmux" for p in cfg.projects.values())
    checks.append(check_tmux(needs_tmux))
    if cfg is None:
        return checks
    checks += check_data_dir(cfg)
    checks.append(check_port(cfg))
    checks += check_prices(cfg)
    for agent, projects in agents_in_use(cfg).items():
        checks.append(check_agent(agent, projects))
    for project in cfg.projects.values():
        for result, what, fix, _ in project_findings(project):
            checks.append(Check(f"project {project.id}", result, what, fix))
    checks += check_github(cfg)
    checks += check_linear(cfg)
    if notify:
        checks += check_notifiers(cfg)
    return checks


def check_notifiers(config: Any) -> list[Check]:
    """Send a test notification to every configured or routed notifier (``--notify``)."""
    from ao.outbox import send_test

    out = []
    _, rows = send_test(config)
    for row in rows:
        if row["ok"]:
            out.append(Check(f"notifier {row['notifier']}", OK, f"test sent ({row['plugin']}, {row['elapsed_ms']} ms)"))
        else:
            out.append(Check(f"notifier {row['notifier']}", FAIL, f"{row['plugin']}: {row['error']}",
                             "check its URL or token; `ao notify test NAME` tries again"))
    return out
