"""``ao demo``: the seed workflow end to end, with nothing but git and tmux.

It builds a throwaway project (a bare ``origin``, three issues as markdown files, a CI command), configures
the local SCM and tracker and scripted ``command`` agents, spawns three sessions and runs the real poller
until all three are merged:

- issue 1: the agent pushes a bug; CI fails; the ci-failed reaction sends the log to the agent, which fixes
  it; CI passes; the human approves; auto-merge merges it.
- issue 2: CI passes; the human requests changes; the changes-requested reaction forwards the comment; the
  agent addresses it; the human approves; auto-merge.
- issue 3: CI passes, the human approves, auto-merge.

The "human" is this module (it reviews through the local SCM, as ``ao review`` does). Everything else is
the product: spawn, tmux, the send protocol, the engine, the executors, events, cleanup. At the end every
tmux session (a private tmux server) and the temp folder are removed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ao.errors import AoError

DEADLINE = float(os.environ.get("AO_DEMO_DEADLINE", 110))
CYCLE_PAUSE = 0.5
GIT = "git -c user.name=demo-agent -c user.email=agent@localhost"
PUSH = f"git add -A && {GIT} commit -q -m \"$MSG\" && git push -q -u origin HEAD 2>&1"

CHECK_PY = '''"""The demo project's CI: every feature module's selftest must pass."""
import importlib
import pathlib
import sys

failed = 0
for path in sorted(pathlib.Path(".").glob("feature_*.py")):
    module = importlib.import_module(path.stem)
    try:
        module.selftest()
        print(f"ok   {path.stem}")
    except AssertionError as exc:
        print(f"FAIL {path.stem}: {exc}")
        failed += 1
sys.exit(1 if failed else 0)
'''

ISSUES = {
    "1": "# Add a greeting\n\n`greet(name)` returns `Hello, <name>!`.\n",
    "2": "# Count words\n\n`count_words(text)` returns the number of words in `text`.\n",
    "3": "# Slugify titles\n\n`slugify(title)` lower-cases and joins words with `-`.\n",
}

FEATURE_1_BUGGY = '''def greet(name):
    return "Hello " + name


def selftest():
    got = greet("Ada")
    assert got == "Hello, Ada!", f"greet('Ada') returned {got!r}, expected 'Hello, Ada!'"
'''
FEATURE_1_FIXED = FEATURE_1_BUGGY.replace('return "Hello " + name', 'return f"Hello, {name}!"')
FEATURE_2 = '''def count_words(text):
    return len(text.split())


def selftest():
    assert count_words("one two  three") == 3
'''
FEATURE_2_DOCUMENTED = FEATURE_2.replace("def count_words(text):\n",
                                         'def count_words(text):\n    """How many words `text` has."""\n')
FEATURE_3 = '''def slugify(title):
    return "-".join(title.lower().split())


def selftest():
    assert slugify("Hello Big World") == "hello-big-world"
'''


def _write(path: str, text: str, message: str) -> str:
    """A shell command that writes ``text`` to ``path`` in the worktree, commits and pushes."""
    return f"cat > {path} <<'AO_DEMO_EOF'\n{text}AO_DEMO_EOF\nMSG={json.dumps(message)} && {PUSH}"


SCRIPTS = {  # per branch: what the scripted agent does on the prompt and on ao's messages
    "feat-issue-1": [
        {"name": "implement (with a bug)", "when": "Your task", "once": True,
         "run": _write("feature_1.py", FEATURE_1_BUGGY, "Add greet()")},
        {"name": "fix the failing check", "when": "(?i)ci|check|fail", "once": True,
         "run": _write("feature_1.py", FEATURE_1_FIXED, "Fix greet() punctuation")},
    ],
    "feat-issue-2": [
        {"name": "implement", "when": "Your task", "once": True,
         "run": _write("feature_2.py", FEATURE_2, "Add count_words()")},
        {"name": "address the review", "when": "(?i)review|change", "once": True,
         "run": _write("feature_2.py", FEATURE_2_DOCUMENTED, "Document count_words()")},
    ],
    "feat-issue-3": [
        {"name": "implement", "when": "Your task", "once": True,
         "run": _write("feature_3.py", FEATURE_3, "Add slugify()")},
    ],
}
REVIEW_TEXT = "Please add a docstring to count_words()."


@dataclass
class Demo:
    root: Path
    socket: str
    started: float = field(default_factory=time.monotonic)
    timeline: list[dict[str, Any]] = field(default_factory=list)
    say: Callable[[str], None] = print

    def note(self, session: str, what: str, detail: str = "") -> None:
        entry = {"t": round(time.monotonic() - self.started, 1), "session": session, "what": what,
                 "detail": detail}
        self.timeline.append(entry)
        self.say(f"+{entry['t']:5.1f}s  {session:<8} {what:<28} {detail}".rstrip())


def build_project(root: Path) -> tuple[Path, Path]:
    """A bare origin and a checkout with the CI script and three issues; returns (project, config file)."""
    origin, project = root / "origin.git", root / "demo"
    env = {**os.environ, "GIT_AUTHOR_NAME": "demo", "GIT_AUTHOR_EMAIL": "demo@localhost",
           "GIT_COMMITTER_NAME": "demo", "GIT_COMMITTER_EMAIL": "demo@localhost", "GIT_TERMINAL_PROMPT": "0"}

    def git(*args: str, cwd: Path | None = None) -> None:
        subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True)

    git("init", "-q", "--bare", "-b", "main", str(origin))
    git("clone", "-q", str(origin), str(project))
    (project / "check.py").write_text(CHECK_PY)
    (project / "README.md").write_text("# demo\n\nA throwaway project made by `ao demo`.\n")
    (project / "issues").mkdir()
    for number, text in ISSUES.items():
        (project / "issues" / f"{number}.md").write_text(text)
    git("add", "-A", cwd=project)
    git("commit", "-q", "-m", "demo project", cwd=project)
    git("push", "-q", "origin", "HEAD:main", cwd=project)

    scripts = root / "scripts"
    scripts.mkdir()
    for branch, rules in SCRIPTS.items():
        (scripts / f"{branch}.json").write_text(json.dumps(rules, indent=1))
    agent = (f'{sys.executable} -m ao.scripted_agent --log "$AO_HOME/$AO_SESSION.agent.jsonl" '
             f'--script "{scripts}/$(git rev-parse --abbrev-ref HEAD | tr / -).json"')
    config = {
        "dataDir": str(root / "data"),
        "pollInterval": 1,
        "defaults": {"notifiers": ["log"]},
        "lifecycle": {"autoCleanupOnMerge": True, "mergeCleanupIdleGrace": "5s"},
        "projects": {"demo": {
            "path": str(project), "defaultBranch": "main", "sessionPrefix": "demo",
            "scm": {"plugin": "local", "ci": f"{sys.executable} check.py", "mergeMethod": "merge"},
            "tracker": {"plugin": "local", "dir": "issues"},
            "agent": "command", "agentConfig": {"command": agent, "promptDelivery": "send"},
        }},
        "reactions": {"ci-failed": {"retries": 2}, "changes-requested": {"auto": True},
                      "approved-and-green": {"auto": True, "action": "auto-merge"}},
    }
    path = root / "agent-orchestrator.yaml"
    import yaml

    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return project, path


def run(json_output: bool = False, keep: bool = False, say: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the demo; returns the timeline and the sessions' final states. Raises AoError if it fails."""
    if not shutil.which("tmux") or not shutil.which("git"):
        raise AoError("ao demo needs git and tmux on PATH")
    root = Path(tempfile.mkdtemp(prefix="ao-demo-"))
    demo = Demo(root=root, socket=f"ao-demo-{uuid.uuid4().hex[:8]}", say=(lambda s: None) if json_output else say)
    saved = {k: os.environ.get(k) for k in ("AO_TMUX_SOCKET", "AO_HOME", "AO_CONFIG_PATH")}
    try:
        project, config_path = build_project(root)
        os.environ.update({"AO_TMUX_SOCKET": demo.socket, "AO_HOME": str(root / "data"),
                           "AO_CONFIG_PATH": str(config_path)})
        demo.say(f"ao demo in {root} (tmux -L {demo.socket})")
        result = _drive(demo, config_path)
        if keep:
            result["folder"] = str(root)
    finally:
        subprocess.run(["tmux", "-L", demo.socket, "kill-server"], capture_output=True)
        socket_dir = Path(os.environ.get("TMUX_TMPDIR", "/tmp")) / f"tmux-{os.getuid()}"
        (socket_dir / demo.socket).unlink(missing_ok=True)  # tmux leaves its socket file behind
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        if not keep:
            _wait_for_ci_jobs(root)
            shutil.rmtree(root, ignore_errors=True)
    return result


def _drive(demo: Demo, config_path: Path) -> dict[str, Any]:
    from ao import config as config_mod
    from ao.poller import Poller
    from ao.sessions import SpawnRequest

    cfg = config_mod.load(config_path)
    poller = Poller(cfg, console=None)
    try:
        ids: dict[str, str] = {}
        for issue in ISSUES:
            s = poller.manager.spawn(SpawnRequest(project="demo", target=issue))
            ids[s.id] = issue
            demo.note(s.id, "spawned", f"issue #{issue} on {s.branch}")
        human = _Human(poller, demo)
        deadline = time.monotonic() + DEADLINE
        merged: set[str] = set()
        while time.monotonic() < deadline:
            report = poller.cycle()
            for e in report.events:
                if e["type"] in _SHOWN:
                    demo.note(e.get("session") or e.get("project", ""), e["type"], _detail(e))
            for sid in report.cleaned:
                demo.note(sid, "cleaned up")
            for error in report.errors:
                demo.note("", "error", error)
            merged |= {e["session"] for e in report.events if e["type"] == "merge.completed"}
            if merged >= set(ids) and not poller.store.list("demo"):
                break
            human.review(report)
            time.sleep(CYCLE_PAUSE)  # the demo's own poll period
        else:
            raise AoError(f"ao demo did not finish within {DEADLINE:.0f} s; merged: {sorted(merged) or 'none'}")
        sessions = [{"session": s.id, "issue": s.issue, "status": s.meta.get("ended_as", s.status)}
                    for s in poller.store.list("demo", include_archived=True)]
        seconds = round(time.monotonic() - demo.started, 1)
        demo.say(f"done in {seconds} s: " + ", ".join(f"{s['session']} {s['status']}" for s in sessions))
        return {"seconds": seconds, "timeline": demo.timeline, "sessions": sessions}
    finally:
        poller.close()


_SHOWN = {"pr.created", "ci.failing", "ci.passing", "ci.fix_sent", "review.changes_requested",
          "review.comments_sent", "review.approved", "merge.ready", "merge.completed", "reaction.triggered",
          "reaction.escalated", "session.exited", "summary.all_complete", "notification.sent"}


def _detail(event: dict[str, Any]) -> str:
    if event["type"] == "reaction.triggered":
        outcome = "" if event.get("ok") else f" (failed: {event.get('error', '')})"
        return f"{event.get('reaction')} → {event.get('action')}{outcome}"
    return ""


class _Human:
    """The reviewer: requests changes on issue 2 once, approves whatever is green and not yet approved."""

    def __init__(self, poller: Any, demo: Demo) -> None:
        self.poller, self.demo = poller, demo
        self.requested: dict[str, str] = {}  # session -> head sha the changes were requested on
        self.approved: set[tuple[str, str]] = set()

    def review(self, report: Any) -> None:
        scm = self.poller.scm("demo")
        for s in self.poller.store.list("demo"):
            f = s.fact
            if f.get("pr_state") != "open" or f.get("ci") != "passing" or f.get("conflicts"):
                continue
            sha = f.get("head_sha", "")
            if s.issue == "2" and s.id not in self.requested:
                scm.review(s.branch, "request_changes", REVIEW_TEXT, author="demo-reviewer")
                self.requested[s.id] = sha
                self.demo.note(s.id, "human: changes requested", REVIEW_TEXT)
            elif s.id in self.requested and self.requested[s.id] == sha:
                continue  # waiting for the agent to push its fix
            elif (s.id, sha) not in self.approved and f.get("review") != "approved":
                scm.review(s.branch, "approve", author="demo-reviewer")
                self.approved.add((s.id, sha))
                self.demo.note(s.id, "human: approved")


def _wait_for_ci_jobs(root: Path, timeout: float = 15.0) -> None:
    """CI runs detached; let any still running finish before their folder goes (nothing left behind)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if shutil.which("pgrep") is None:
            return
        found = subprocess.run(["pgrep", "-f", str(root)], capture_output=True, text=True).stdout.split()
        if not [p for p in found if int(p) != os.getpid()]:
            return
        time.sleep(0.1)
