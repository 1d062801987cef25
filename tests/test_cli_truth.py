"""The CLI as a user runs it (issue 14): `ao status` tells the truth, listings survive pipes, two repositories
run side by side, `ao doctor`, `ao logs`, `ao issue`, `ao start` streaming, quarantined records, help texts.

Real parts throughout: git with a bare origin, tmux on a private socket, the scripted agent, the local SCM."""

from __future__ import annotations

import json
import os
import pty
import queue
import re
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Optional

import httpx
import yaml
from sessionkit import FAKE_AGENT, git, wait_for

from ao.ledger import Entry
from ao.sessions import SpawnRequest
from ao.store import SessionLedgerStore, SessionStore

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
START = ("start", "--no-orchestrator", "--no-dashboard", "--interval", "1")  # tests never serve on port 3000
LONG = 60.0  # a deadline for a process to answer: generous, since the machine may be loaded; passing never waits it


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def set_config(path: Path, **values) -> None:
    data = yaml.safe_load(path.read_text())
    data.update(values)
    path.write_text(yaml.safe_dump(data))


def spawn(env, target=None, **kw):
    return env.manager().spawn(SpawnRequest(project="app", target=target, **kw))


def run_tty(env, *args: str, columns: int = 200, timeout: float = 60) -> tuple[int, str]:
    """Run ao with stdout on a pseudo-terminal (as in a shell); returns (exit status, what it printed)."""
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "ao", *args], stdout=slave, stderr=slave, stdin=subprocess.DEVNULL,
                            cwd=env.root, env={**env.env, "COLUMNS": str(columns), "TERM": "xterm-256color"})
    os.close(slave)
    out = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.1)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # the other end closed: the process is gone
                    break
                if not chunk:
                    break
                out += chunk
            elif proc.poll() is not None:
                break
        return proc.wait(timeout=LONG), out.decode("utf-8", "replace")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)


def stop(proc: subprocess.Popen) -> None:
    """Kill ``proc`` if it still runs and collect it (every test kills what it starts, whatever happens)."""
    if proc.poll() is None:
        proc.kill()
    reader = getattr(proc, "lines", None)
    if reader is not None:  # a thread reads stdout: let it see the end, then close the other pipe
        proc.wait()
        reader.thread.join(timeout=10)
        if proc.stderr is not None:
            proc.stderr.close()
    elif not (proc.stdout is None or proc.stdout.closed):  # not collected yet
        proc.communicate()


class Lines:
    """What a long-running process prints, line by line, read by a thread, so that a test waits for a line
    with a deadline (a bare ``readline()`` on a loaded machine either blocks for ever or races a timer)."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.proc = proc
        self.queue: queue.Queue[Optional[str]] = queue.Queue()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            for line in self.proc.stdout:
                self.queue.put(line)
        except (OSError, ValueError):  # the pipe was closed under us
            pass
        self.queue.put(None)

    def next(self, timeout: float = LONG) -> str:
        try:
            line = self.queue.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no output from {self.proc.args[3:]} within {timeout} s") from None
        if line is None:
            self.proc.wait(timeout=LONG)
            raise AssertionError(f"{self.proc.args[3:]} ended (exit {self.proc.returncode}): "
                                 f"{self.proc.stderr.read() if self.proc.stderr else ''}")
        return line

    def until(self, predicate: Callable[[str], Any], what: str, timeout: float = LONG) -> str:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out after {timeout} s waiting for {what}")
            line = self.next(left)
            if predicate(line):
                return line


def run_ao(env, *args: str) -> subprocess.Popen:
    """``ao ARGS`` in the background, stdout piped and read by :class:`Lines` (``proc.lines``)."""
    proc = subprocess.Popen([sys.executable, "-m", "ao", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=env.root, env=env.env)
    proc.lines = Lines(proc)  # type: ignore[attr-defined]
    return proc


def lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line]


def poll(env) -> None:
    run = env.ao("poll")
    assert run.returncode == 0, run.stderr


# ----------------------------------------------------------------------------------------- ao status

def test_status_shows_needs_input_with_what_the_agent_waits_for_and_every_view_agrees(aoenv):
    s = spawn(aoenv, "12")
    wait_for(lambda: aoenv.received(s.id), what="the prompt")
    aoenv.manager().send(s.id, "!ask")
    pane = lambda: aoenv.tmux("capture-pane", "-p", "-t", f"={s.runtime_handle}:").stdout  # noqa: E731
    wait_for(lambda: "Do you want to proceed?" in pane(), what="the question")
    poll(aoenv)
    row = json.loads(aoenv.ao("status", "--json").stdout)[0]
    assert row["status"] == "needs_input" and row["activity"] == "waiting_input"
    assert row["waiting_for"] and row["needs"].startswith("input: ")
    assert row["observed_seconds_ago"] is not None and row["observed_seconds_ago"] <= 10
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$", row["observed_at"])
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$", row["created_at"])
    explained = json.loads(aoenv.ao("rules", "explain", s.id, "--json").stdout)
    listed = json.loads(aoenv.ao("session", "ls", "--json").stdout)[0]
    assert explained["status"] == listed["status"] == row["status"] == "needs_input"
    assert explained["fact"]["activity"] == "waiting_input"
    piped = aoenv.ao("status").stdout  # piped: one plain line per session, grep-able
    assert [line.split("\t")[:2] for line in lines(piped)] == [[s.id, "needs_input"]]
    assert "input: " in piped and "\x1b" not in piped


def test_status_shows_conflicts_escalations_the_pr_url_and_colours_on_a_terminal(aoenv):
    s = spawn(aoenv, "12")
    store = SessionStore(aoenv.data)
    long_branch = "feat/issue-12-" + "a-really-long-branch-name-" * 4
    store.update(s.id, "app", status="ci_failed", branch=long_branch, fact={
        "session": s.id, "project": "app", "status": "ci_failed", "activity": "idle", "pr_state": "open",
        "pr_number": 7, "pr_url": "local:app#7", "ci": "failing", "review": "pending", "conflicts": True})
    SessionLedgerStore(store).save("app", s.id, {"ci-failed": Entry(attempts=2, occurrence="a2", first_at=1767258000,
                                                                    escalated=True)})
    row = json.loads(aoenv.ao("status", "--json").stdout)[0]
    assert row["pr_url"] == "local:app#7" and row["conflicts"] is True
    assert row["escalations"] == [{"reaction": "ci-failed", "attempts": 2, "since": "2026-01-01T09:00:00Z",
                                   "reason": ""}]
    assert row["needs"] == "conflicts; escalated: ci-failed"
    assert {"review", "ci", "conflicts"} <= set(row["merge_missing"])  # the merge criteria, as `ao merge` has them
    # piped: never wrapped, however long the branch (rich used to fold it at 80 columns)
    piped = aoenv.ao("status", env={**aoenv.env, "COLUMNS": "80"}).stdout
    fields = piped.rstrip("\n").split("\t")
    assert len(lines(piped)) == 1 and long_branch in fields and "local:app#7" in fields
    assert subprocess.run(["grep", "-c", long_branch], input=piped, capture_output=True, text=True).stdout == "1\n"
    code, screen = run_tty(aoenv, "status", columns=200)
    assert code == 0
    assert "\x1b[" in screen and "ci_failed" in ANSI.sub("", screen)  # a table, in colour
    assert re.search(r"\x1b\[[0-9;]*31m[^\x1b]*ci_failed", screen), "a failing status is red"
    assert "no poller" in ANSI.sub("", screen)  # says how fresh the data is


def test_status_on_a_normal_terminal_never_splits_a_session_status_or_branch(aoenv):
    """At 120 and 80 columns every session is one line of the table: the id, status and branch are whole, the
    free text is cut with an ellipsis, and low-value columns give way (rich used to fold "needs_inp/ut")."""
    store = SessionStore(aoenv.data)
    sessions = [spawn(aoenv, "12"), spawn(aoenv, "Make the login page remember the user")]
    question = "Do you want to proceed with the migration of the whole database schema to the new layout?"
    store.update(sessions[0].id, "app", status="needs_input", meta={"activity": {"detail": question}}, fact={
        "session": sessions[0].id, "project": "app", "status": "needs_input", "activity": "waiting_input",
        "pr_state": "open", "pr_number": 1234, "pr_url": "https://github.com/acme/app/pull/1234", "ci": "passing",
        "review": "pending", "tokens_in": 1_234_567, "tokens_out": 45_678, "cost_usd": 12.5})
    store.update(sessions[1].id, "app", status="ci_failed", fact={
        "session": sessions[1].id, "project": "app", "status": "ci_failed", "activity": "idle", "pr_state": "open",
        "pr_number": 7, "pr_url": "https://github.com/acme/app/pull/7", "ci": "failing",
        "review": "changes_requested", "conflicts": True})
    rows = json.loads(aoenv.ao("status", "--json").stdout)
    assert [r["status"] for r in rows] == ["needs_input", "ci_failed"] and rows[0]["needs"].startswith("input: Do")
    for columns in (120, 80):
        code, screen = run_tty(aoenv, "status", columns=columns)
        assert code == 0, screen
        plain = ANSI.sub("", screen).splitlines()
        assert all(len(line) <= columns for line in plain), (columns, screen)
        [header] = [line.replace("┃", "│") for line in plain if line.startswith("┃")]  # one line: no header folds
        body = [line for line in plain if line.startswith("│")]
        names = [name.strip() for name in header.strip("│ ").split("│")]
        names = ["needs" if name.startswith("needs") else name for name in names]  # "needs a human", or cut
        assert names[:2] == ["session", "status"] and "branch" in names and "needs" in names, screen
        assert len(body) == len(rows), f"a cell was folded onto a second line at {columns} columns:\n{screen}"
        for row, line in zip(rows, body):
            cells = dict(zip(names, (c.strip() for c in line.strip("│ ").split("│"))))
            assert (cells["session"], cells["status"], cells["branch"]) == (row["session"], row["status"],
                                                                           row["branch"]), (columns, line)
        needs = dict(zip(names, (c.strip() for c in body[0].strip("│ ").split("│"))))["needs"]
        assert needs.startswith("input") and needs.endswith("…"), (columns, body[0])  # cut, not folded
        if columns == 120:
            assert len(names) > 4 and needs.startswith("input: Do you"), screen


def test_status_shows_project_totals_the_prices_date_and_models_without_a_price(aoenv):
    from agent_records import ClaudeTranscript

    from ao.poller import Poller
    from ao.usage import PRICES_AS_OF

    aoenv.write_config(budget={"project": 50}, agentConfig={
        "command": f'{sys.executable} {FAKE_AGENT} --log "$AO_HOME/$AO_SESSION.agent.jsonl"',
        "usageFrom": "claude-code"})
    s = spawn(aoenv, "12")
    transcript = ClaudeTranscript(aoenv.root / "home" / ".claude", Path(s.workspace))
    transcript.assistant(input=1_000_000, output=0, blocks=1)  # $3 of Sonnet
    transcript.assistant("my-local-model", input=500, output=100, blocks=1)  # no price: counts as $0
    polled = aoenv.ao("poll")
    assert polled.returncode == 0, polled.stderr
    assert "warning: app: no price for my-local-model: its tokens count as $0" in polled.stdout

    status = aoenv.ao("status", "--json")
    (row,) = json.loads(status.stdout)
    assert (row["cost_usd"], row["prices_as_of"]) == (3.0, PRICES_AS_OF)
    assert "ao: warning: app: no price for my-local-model" in status.stderr
    (project,) = json.loads(aoenv.ao("status", "--projects", "--json").stdout)
    assert project == {"project": "app", "tokens_in": 1_000_500, "tokens_out": 100, "cost_usd": 3.0,
                       "budget_usd": 50, "prices_as_of": PRICES_AS_OF, "unpriced": ["my-local-model"]}
    assert lines(aoenv.ao("status", "--projects").stdout) == [
        f"app\t1M in, 100 out\t$3.00\t$50\t{PRICES_AS_OF}\tmy-local-model"]
    code, screen = run_tty(aoenv, "status", columns=200)
    plain = ANSI.sub("", screen)
    assert code == 0 and "app: 1M in, 100 out, $3.00 of a $50 budget (no price for my-local-model)" in plain
    assert f"costs at prices as of {PRICES_AS_OF}" in plain
    checks = {c["check"]: c for c in json.loads(aoenv.ao("doctor", "--json").stdout)}
    assert checks["prices app"]["result"] == "warn" and "my-local-model" in checks["prices app"]["detail"]

    poller = Poller(aoenv.load(), console=None)  # `ao start`: said once, not every cycle
    try:
        assert [w for w in poller.cycle().warnings if "my-local-model" in w]
        assert poller.cycle().warnings == []
    finally:
        poller.close()


def test_watch_without_a_terminal_prints_a_timestamped_listing_each_time_and_ctrl_c_exits_130(aoenv):
    spawn(aoenv, "12")
    proc = run_ao(aoenv, "status", "--watch")
    try:
        stamps = []
        while len(stamps) < 2:
            line = proc.lines.next()
            if line.startswith("# "):
                assert re.match(r"^# \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$", line), line
                stamps.append(line)
            else:
                assert line.startswith("app-1\t")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=LONG) == 130
    finally:
        stop(proc)


def test_refresh_runs_one_observation_and_reports_what_fired(aoenv):
    s = spawn(aoenv, "12")
    wait_for(lambda: aoenv.received(s.id), what="the prompt")
    before = json.loads(aoenv.ao("status", "--json").stdout)[0]
    assert before["observed_at"] is None
    after = json.loads(aoenv.ao("status", "--refresh", "--json").stdout)[0]
    assert after["observed_at"] is not None and after["status"] == "working"


# ------------------------------------------------------------------------------------ piped listings

def test_every_listing_prints_plain_unwrapped_lines_when_piped(aoenv):
    s = spawn(aoenv, "12")
    poll(aoenv)
    narrow = {**aoenv.env, "COLUMNS": "40"}
    for args, first in [(("status",), s.id), (("session", "ls"), s.id), (("rules", "show"), "app"),
                        (("rules", "explain", s.id), "agent-idle"), (("issue", "ls"), "12"),
                        (("events",), None), (("cleanup",), None)]:
        run = aoenv.ao(*args, env=narrow)
        assert run.returncode == 0, (args, run.stderr)
        assert "\x1b" not in run.stdout and "│" not in run.stdout and "━" not in run.stdout, args
        for line in lines(run.stdout):
            if first and args[0] != "events":
                assert "\t" in line, (args, line)
        if first:
            assert any(line.split("\t")[0] == first for line in lines(run.stdout)), (args, run.stdout)
    # the event log too: time, type, session, details, one tab-separated line each (it used to pad with spaces)
    events = [line.split("\t") for line in lines(aoenv.ao("events", env=narrow).stdout)]
    assert events and all(len(fields) == 4 for fields in events), events
    assert all(re.match(r"^\d{4}-\d\d-\d\dT[\d:.]+Z$", fields[0]) for fields in events), events
    assert ["session.spawned", s.id] in [fields[1:3] for fields in events], events
    follow = run_ao(aoenv, "events", "--follow", "-n", "1")
    try:
        assert follow.lines.next().rstrip("\n").split("\t") == events[-1]
        follow.send_signal(signal.SIGINT)
        assert follow.wait(timeout=LONG) == 130
    finally:
        stop(follow)
    explain = aoenv.ao("rules", "explain", s.id).stdout
    ci = next(line for line in lines(explain) if line.startswith("ci-failed\t"))
    assert ci.split("\t")[1] == "no" and "pr_state" in ci


# ------------------------------------------------------------------------------ two repositories

def _repo_with_config(root: Path, name: str, env: dict[str, str]) -> Path:
    """A repository with a bare origin, configured by `ao config init`, using the scripted agent."""
    origin = root / f"{name}-origin.git"
    repo = root / name
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(origin)], check=True)
    subprocess.run(["git", "clone", "-q", str(origin), str(repo)], check=True, capture_output=True)
    (repo / "issues").mkdir()
    (repo / "issues" / "1.md").write_text(f"# First issue of {name}\n")
    git("add", "-A", cwd=repo)
    git("commit", "-q", "-m", "initial", cwd=repo)
    git("push", "-q", "origin", "HEAD:main", cwd=repo)
    run = subprocess.run([sys.executable, "-m", "ao", "config", "init"], cwd=repo, env=env, capture_output=True,
                         text=True)
    assert run.returncode == 0, run.stderr
    config = repo / "agent-orchestrator.yaml"
    data = yaml.safe_load(config.read_text())
    project = data["projects"][name]
    project.update(agent="command", agentConfig={"command": f"{sys.executable} {FAKE_AGENT} --log /dev/null"})
    config.write_text(yaml.safe_dump(data))
    return repo


def test_two_repositories_each_with_its_own_config_run_side_by_side(aoenv, tmp_path):
    env = {k: v for k, v in aoenv.env.items() if k not in ("AO_HOME", "AO_CONFIG_PATH")}

    def ao(repo: Path, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "ao", *args], cwd=repo, env=env, capture_output=True, text=True,
                              timeout=60)

    one = _repo_with_config(tmp_path, "alpha", env)
    two = _repo_with_config(tmp_path, "beta", env)
    for repo in (one, two):
        run = ao(repo, "spawn", repo.name, "1")
        assert run.returncode == 0, run.stderr
    shows = [json.loads(ao(repo, "config", "show", "--json").stdout)["dataDir"] for repo in (one, two)]
    home = Path(env["HOME"]) / ".agent-orchestrator"
    assert shows[0] != shows[1] and all(Path(d).parent == home for d in shows)
    for repo, other in ((one, "beta"), (two, "alpha")):
        rows = json.loads(ao(repo, "status", "--json").stdout)
        assert [r["project"] for r in rows] == [repo.name] and other not in ao(repo, "status").stdout
    # Each serves its dashboard (on a port of its own: tests never take 3000, the default), with its own sessions.
    ports = [free_port(), free_port()]
    for repo, port in zip((one, two), ports):
        set_config(repo / "agent-orchestrator.yaml", port=port)
    starts = [subprocess.Popen([sys.executable, "-m", "ao", "start", "--no-orchestrator", "--no-open", "--interval",
                                "1", "-q"], cwd=repo, env={**env, "DISPLAY": ""}, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
              for repo in (one, two)]
    try:
        for data_dir in shows:
            wait_for(lambda d=data_dir: (Path(d) / "poller.pid").exists(), timeout=20, what="both ao start")
        for repo, port in zip((one, two), ports):
            wait_for(lambda r=repo: json.loads(ao(r, "status", "--json").stdout)[0]["observed_at"], timeout=20,
                     what="an observation")
            url = wait_for(lambda r=repo: ao(r, "dashboard", "--print-url").stdout.strip(), timeout=20,
                           what="the dashboard")
            assert url.startswith(f"http://127.0.0.1:{port}/?token=")
            with httpx.Client(timeout=10) as c:
                assert c.get(url).status_code == 303  # this repository's token logs in to this one's dashboard
                board = c.get(url.split("?")[0] + "api/board").json()
            assert [card["project"] for card in board["sessions"]] == [repo.name]
            assert ao(repo, "stop").returncode == 0
        assert [p.wait(timeout=20) for p in starts] == [0, 0]
    finally:
        for p in starts:
            stop(p)
    assert [ao(repo, "dashboard", "--print-url").returncode for repo in (one, two)] == [1, 1]  # none serves now
    # A port with webhook senders pointed at it never moves: taken, `ao start` fails and says how to fix it.
    set_config(two / "agent-orchestrator.yaml", port=ports[0])
    data = yaml.safe_load((two / "agent-orchestrator.yaml").read_text())
    data["projects"]["beta"]["scm"]["webhook"] = {"secretEnv": "AO_TEST_HOOK"}
    (two / "agent-orchestrator.yaml").write_text(yaml.safe_dump(data))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", ports[0]))
        taken.listen()
        clash = subprocess.run([sys.executable, "-m", "ao", "start", "--no-orchestrator", "--no-open"], cwd=two,
                               env={**env, "AO_TEST_HOOK": "s3cret", "DISPLAY": ""}, capture_output=True,
                               text=True, timeout=60)
    assert clash.returncode == 1 and f"cannot serve webhooks on 127.0.0.1:{ports[0]}" in clash.stderr
    assert "it never moves" in clash.stderr and "set `port:`" in clash.stderr
    # Two configs pointed at one data dir collide, and the message says how to fix it.
    config = two / "agent-orchestrator.yaml"
    data = yaml.safe_load(config.read_text())
    data["dataDir"] = shows[0]
    config.write_text(yaml.safe_dump(data))
    clash = ao(two, "start", "--no-orchestrator", "--no-dashboard")
    assert clash.returncode == 1
    assert f"belongs to {(one / 'agent-orchestrator.yaml').resolve()}" in clash.stderr
    assert "remove `dataDir:`" in clash.stderr


# ------------------------------------------------------------------------------------------ doctor

def test_doctor_on_a_healthy_and_a_broken_setup(aoenv, tmp_path):
    set_config(aoenv.config, port=free_port())  # doctor tries the port: never 3000 in tests
    run = aoenv.ao("doctor", "--json")
    checks = {c["check"]: c for c in json.loads(run.stdout)}
    assert run.returncode == 0, run.stdout
    for name in ("config", "git", "tmux", "data dir", "agent command", "project app"):
        assert checks[name]["result"] == "ok", checks[name]
    assert "origin" in checks["project app"]["detail"] and "default branch main" in checks["project app"]["detail"]
    assert checks["poller"]["result"] == "warn" and "ao start" in checks["poller"]["fix"]
    piped = aoenv.ao("doctor")
    assert piped.returncode == 0 and "0 failed" in piped.stderr

    git("remote", "remove", "origin", cwd=aoenv.project)
    aoenv.write_config(agent="codex", agentConfig={}, defaultBranch="trunk")
    set_config(aoenv.config, port=free_port())
    broken = aoenv.ao("doctor", "--json", env={**aoenv.env, "PATH": "/usr/bin:/bin:/nonexistent",
                                               "GITHUB_TOKEN": "", "GH_TOKEN": ""})
    assert broken.returncode == 1
    checks = {c["check"]: c for c in json.loads(broken.stdout)}
    project = checks["project app"]
    assert project["result"] == "FAIL" and "no `origin` remote" in project["detail"]
    assert "git remote add" in project["fix"]
    if "agent codex" in checks and not subprocess.run(["which", "codex"], capture_output=True).returncode == 0:
        assert checks["agent codex"]["result"] == "FAIL" and "npm install" in checks["agent codex"]["fix"]
    elsewhere = tmp_path.parent / f"{tmp_path.name}-elsewhere"  # no config above it
    elsewhere.mkdir()
    missing = subprocess.run([sys.executable, "-m", "ao", "doctor"], cwd=elsewhere, capture_output=True, text=True,
                             env={k: v for k, v in aoenv.env.items() if k != "AO_CONFIG_PATH"})
    assert missing.returncode == 1 and "config\tFAIL" in missing.stdout and "ao config init" in missing.stdout
    assert "git\tok" in missing.stdout  # the checks that need no config still run


def test_doctor_tries_the_port_and_a_taken_webhook_port_fails(aoenv):
    def port_check() -> tuple[int, dict]:
        run = aoenv.ao("doctor", "--json", env={**aoenv.env, "AO_TEST_HOOK": "s3cret"})
        return run.returncode, next(c for c in json.loads(run.stdout) if c["check"] == "port")

    port = free_port()
    set_config(aoenv.config, port=port)
    assert port_check()[1]["result"] == "ok" and f"127.0.0.1:{port} is free" in port_check()[1]["detail"]
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        check = port_check()[1]
        assert check["result"] == "warn" and "without its dashboard" in check["detail"]
        data = yaml.safe_load(aoenv.config.read_text())
        data["projects"]["app"]["scm"]["webhook"] = {"secretEnv": "AO_TEST_HOOK"}
        aoenv.config.write_text(yaml.safe_dump(data))
        code, check = port_check()
        assert code == 1 and check["result"] == "FAIL" and "cannot serve its webhooks" in check["detail"]
        assert "point the webhook senders there" in check["fix"]


# -------------------------------------------------------------------------------------------- logs

def test_logs_prints_recent_output_and_follows_it(aoenv):
    s = spawn(aoenv, "12")
    wait_for(lambda: aoenv.received(s.id), what="the prompt")
    aoenv.manager().send(s.id, "first message")
    wait_for(lambda: len(aoenv.received(s.id)) >= 2, what="the message")
    run = aoenv.ao("logs", s.id, "-n", "5")
    assert run.returncode == 0, run.stderr
    assert "received 2" in run.stdout and len(run.stdout.splitlines()) <= 5
    proc = run_ao(aoenv, "logs", s.id, "-f", "-n", "1")
    try:
        proc.lines.next()  # the last line so far: following has begun
        aoenv.manager().send(s.id, "second message")
        proc.lines.until(lambda line: "received 3" in line, what="the new output")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=LONG) == 130
    finally:
        stop(proc)
    assert aoenv.ao("logs", "app-99").returncode == 1


# ------------------------------------------------------------------------------------ local issues

def test_issue_new_ls_show_close_and_spawn_guards(aoenv):
    made = aoenv.ao("issue", "new", "Add a metrics endpoint", "-b", "GET /metrics in Prometheus format", "-q")
    assert made.returncode == 0, made.stderr
    assert made.stdout.strip() == "13"  # after 12, the highest number there
    assert (aoenv.project / "issues" / "13.md").read_text() == ("# Add a metrics endpoint\n\n"
                                                                "GET /metrics in Prometheus format\n")
    listed = aoenv.ao("issue", "ls")
    assert [line.split("\t")[:3] for line in lines(listed.stdout)] == [
        ["12", "open", "Add a health endpoint"], ["13", "open", "Add a metrics endpoint"]]
    shown = aoenv.ao("issue", "show", "13")
    assert "GET /metrics" in shown.stdout and "open" in shown.stdout
    s = spawn(aoenv, "13")
    busy = aoenv.ao("spawn", "app", "13")
    assert busy.returncode == 1 and f"already has a live session ({s.id})" in busy.stderr and "--force" in busy.stderr
    assert json.loads(aoenv.ao("issue", "ls", "--json").stdout)[1]["sessions"] == [s.id]
    closed = aoenv.ao("issue", "close", "12")
    assert closed.returncode == 0 and (aoenv.project / "issues" / "closed" / "12.md").exists()
    refused = aoenv.ao("spawn", "app", "12")
    assert refused.returncode == 1 and "issue 12 is closed" in refused.stderr and "--force" in refused.stderr
    forced = aoenv.ao("spawn", "app", "12", "--force", "--json")
    assert forced.returncode == 0, forced.stderr
    assert json.loads(forced.stdout)["issue"] == "12"
    assert aoenv.ao("issue", "ls", "--state", "closed").stdout.startswith("12\tclosed\t")


def test_merging_a_sessions_pr_closes_its_local_issue(aoenv):
    s = spawn(aoenv, "12")
    work = aoenv.root / "work"
    subprocess.run(["git", "clone", "-q", str(aoenv.origin), str(work)], check=True, capture_output=True)
    git("checkout", "-q", "-b", s.branch, cwd=work)
    (work / "health.py").write_text("def health():\n    return 200\n")
    git("add", "-A", cwd=work)
    git("commit", "-q", "-m", "health endpoint", cwd=work)
    git("push", "-q", "origin", s.branch, cwd=work)
    poll(aoenv)  # the PR is seen open
    git("checkout", "-q", "main", cwd=work)
    git("merge", "-q", "--no-ff", "-m", "merge", s.branch, cwd=work)  # merged by hand, outside ao
    git("push", "-q", "origin", "main", cwd=work)
    run = aoenv.ao("poll")
    assert "issue.closed" in run.stdout, run.stdout + run.stderr
    # piped, each event is one line of tab-separated fields (time, type, session, details), as `ao events`
    closed = next(line for line in run.stdout.splitlines() if "\tissue.closed\t" in line).split("\t")
    assert len(closed) == 4 and closed[0].endswith("Z") and "  " not in "".join(closed[:3])
    assert (aoenv.project / "issues" / "closed" / "12.md").exists()
    assert not (aoenv.project / "issues" / "12.md").exists()


# ------------------------------------------------------------------------------------ ao start, stop

def test_start_streams_event_lines_json_and_quiet_and_ctrl_c_exits_130(aoenv):
    s = spawn(aoenv, "12")
    # Something for the poller to report for sure: a spawned session that keeps working is no news (its status
    # is already `working`), one whose terminal is gone is `session.exited` after two failed probes.
    aoenv.tmux("kill-session", "-t", f"={s.runtime_handle}")
    proc = run_ao(aoenv, *START, "--json")
    try:
        event = json.loads(proc.lines.next())  # the first event ao start saw, as `ao events --json` has it
        assert event["session"] == s.id and event["type"] in [e["type"] for e in
                                                              json.loads(aoenv.ao("events", "--json").stdout)]
        assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$", event["ts"])
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=LONG) == 130
    finally:
        stop(proc)
    quiet = subprocess.Popen([sys.executable, "-m", "ao", *START, "-q"], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, cwd=aoenv.root, env=aoenv.env)
    try:
        wait_for(lambda: (aoenv.data / "poller.pid").exists(), timeout=20, what="ao start")
        stopped = aoenv.ao("stop")
        assert stopped.returncode == 0 and "sessions keep running" in stopped.stdout
        out, err = quiet.communicate(timeout=LONG)
        assert quiet.returncode == 0 and out == "" and err == ""
    finally:
        stop(quiet)
    help_text = aoenv.ao("stop", "--help").stdout
    assert "keep running" in help_text and "finishes the cycle" in help_text


# ----------------------------------------------------------------------------------- quarantine

def test_a_corrupt_record_is_warned_about_listed_with_its_orphans_and_adopted(aoenv):
    s = spawn(aoenv, "12")
    record = aoenv.data / "projects" / "app" / "sessions" / f"{s.id}.json"
    record.write_text(record.read_text()[:40])  # torn
    status = aoenv.ao("status")
    assert status.returncode == 0 and status.stdout == ""
    assert "corrupt record" in status.stderr and s.id in status.stderr and "--problems" in status.stderr
    assert "corrupt record" in aoenv.ao("session", "ls").stderr  # every listing, until it is dealt with
    problems = aoenv.ao("session", "ls", "--problems", "--json")
    [orphan] = json.loads(problems.stdout)
    assert orphan["session"] == s.id and orphan["terminal"] == "running" and orphan["workspace"] == s.workspace
    adopted = aoenv.ao("session", "adopt", s.id)
    assert adopted.returncode == 0, adopted.stderr
    row = json.loads(aoenv.ao("status", "--json").stdout)[0]
    assert row["session"] == s.id and row["status"] == "working" and row["branch"] == s.branch
    assert "corrupt" not in aoenv.ao("status").stderr
    assert aoenv.ao("session", "kill", s.id).returncode == 0
    assert aoenv.tmux("has-session", "-t", f"={s.runtime_handle}").returncode != 0


def test_killing_an_orphan_adopts_it_first(aoenv):
    s = spawn(aoenv, "12")
    (aoenv.data / "projects" / "app" / "sessions" / f"{s.id}.json").write_text("{not json")
    aoenv.ao("session", "ls")  # the listing sets the file aside
    run = aoenv.ao("session", "kill", s.id)
    assert run.returncode == 0, run.stderr
    assert aoenv.tmux("has-session", "-t", f"={s.runtime_handle}").returncode != 0
    assert json.loads(aoenv.ao("session", "ls", "--json").stdout)[0]["status"] == "killed"


# ---------------------------------------------------------------------------------- help, messages

def _commands(env) -> list[list[str]]:
    top = env.ao("--help", env={**env.env, "COLUMNS": "200"}).stdout
    names = re.findall(r"^│ ([a-z][a-z-]+) ", top, flags=re.M)
    out = []
    for name in names:
        sub = env.ao(name, "--help", env={**env.env, "COLUMNS": "200"}).stdout
        inner = re.findall(r"^│ ([a-z][a-z-]+) ", sub.split("Commands")[-1], flags=re.M) if "Commands" in sub else []
        out += [[name, s] for s in inner] if inner else [[name]]
    return out


# typer's own placeholders when a parameter has no metavar: <str>, <int>, <file>, <list[Path]>, <int range>...
TYPER_METAVAR = re.compile(r"<(?:bool|str|int|float|file|path|directory|dir|uuid|datetime|choice|text|\w+ range"
                           r"|list\[[^\]]*\]|[a-z]+(?:[|,][a-z]+)+)>")


def test_every_command_has_examples_consistent_metavars_and_no_unshipped_references(aoenv):
    commands = _commands(aoenv)
    assert len(commands) >= 30 and ["issue", "new"] in commands and ["doctor"] in commands
    for command in commands:
        text = aoenv.ao(*command, "--help", env={**aoenv.env, "COLUMNS": "200"}).stdout
        assert "Examples" in text and re.search(r"^\s*(\$ )?ao [a-z]", text, flags=re.M), command
        assert not TYPER_METAVAR.search(text), (command, TYPER_METAVAR.findall(text))
        assert "SPEC" not in text and "docs/" not in text, command
        # arguments are named in capitals (PROJECT, SESSION, ISSUE...), an optional one in one pair of brackets
        usage = text.split("Usage:")[1].splitlines()[0].strip()
        arguments = usage.split("[OPTIONS]")[-1].split()
        assert "[[" not in usage and "..]." not in usage and all(a.strip("[].") == a.strip("[].").upper() for a in arguments), (command,
                                                                                                     usage)


def test_usage_errors_and_messages(aoenv):
    assert aoenv.ao("events", "-n", "-5").returncode == 2  # not "drop the first five"
    s = spawn(aoenv, "12")
    aoenv.tmux("kill-session", "-t", f"={s.runtime_handle}")
    sent = aoenv.ao("send", s.id, "hello")
    assert sent.returncode == 1 and s.id in sent.stderr and s.runtime_handle not in sent.stderr
    both = aoenv.ao("cleanup", "--confirm", "--dry-run")
    assert "add --confirm" not in both.stderr


def test_completion_of_session_ids_projects_and_issues(aoenv):
    spawn(aoenv, "12")

    def complete(words: str) -> list[str]:
        env = {**aoenv.env, "_AO_COMPLETE": "complete_bash", "COMP_WORDS": words,
               "COMP_CWORD": str(len(words.split()) - (0 if words.endswith(" ") else 1))}
        run = subprocess.run([sys.executable, "-m", "ao"], env=env, capture_output=True, text=True, cwd=aoenv.root)
        return run.stdout.split()

    assert complete("ao session kill app") == ["app-1"]
    assert complete("ao spawn ") == ["app"]
    assert complete("ao spawn app 1") == ["12"]
    assert complete("ao issue show ") == ["12"]


def test_rule_test_examples_ship_and_run(aoenv):
    run = aoenv.ao("rules", "test", "--examples")
    assert run.returncode == 0, run.stdout + run.stderr
    assert re.search(r"\d+ passed, 0 failed", run.stdout)
    one = aoenv.ao("rules", "test", "--example", "retry-escalation")
    assert one.returncode == 0 and "3 passed, 0 failed" in one.stdout
    wrong = aoenv.ao("rules", "test", "--example", "retry-escalaton")
    assert wrong.returncode == 2 and "did you mean 'retry-escalation'" in wrong.stderr


def test_a_comment_is_a_comment_not_a_change_request():
    from ao import templates

    base = {"session_id": "app-1", "pr_number": 7, "branch": "feat/x",
            "review_comments": [{"author": "ann", "body": "nit: naming", "path": "", "line": None, "url": ""}]}

    def render(review: str) -> str:
        context = templates.build_context({**base, "review": review})
        return templates.render_named("agent/changes-requested.md.j2", context)

    comment, change = render("pending"), render("changes_requested")
    assert "requested changes" not in comment and "no change was requested" in comment
    assert "A reviewer requested changes" in change


def test_doctor_checks_the_github_token_and_its_scopes(aoenv):
    from http.server import BaseHTTPRequestHandler

    from httpkit import start_server, stop_server

    answer = {"status": 200, "scopes": "read:org"}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            ok = self.path == "/user" and self.headers.get("Authorization") == "Bearer t0ken"
            body = json.dumps({"login": "ann"}).encode() if ok else b"{}"
            self.send_response(answer["status"] if ok else 404)
            if answer["scopes"] is not None:
                self.send_header("X-OAuth-Scopes", answer["scopes"])
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = start_server(Handler)
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        aoenv.write_config(repo="acme/app", scm={"plugin": "github", "baseUrl": base}, tracker={"plugin": "local"})
        env = {**aoenv.env, "GITHUB_TOKEN": "t0ken"}

        def check() -> dict:
            run = aoenv.ao("doctor", "--json", env=env)
            return next(c for c in json.loads(run.stdout) if c["check"].startswith("GitHub token"))

        weak = check()
        assert weak["result"] == "FAIL" and "read:org" in weak["detail"] and "`repo` scope" in weak["fix"]
        answer["scopes"] = "repo, workflow"
        assert check() == {"check": f"GitHub token ({base})", "result": "ok",
                           "detail": "as ann; scopes: repo, workflow", "fix": ""}
        answer["scopes"] = None  # a fine-grained token lists no scopes
        assert check()["result"] == "ok" and "fine-grained" in check()["detail"]
        answer["status"] = 401
        rejected = check()
        assert rejected["result"] == "FAIL" and "rejected (401)" in rejected["detail"]
        assert "t0ken" not in aoenv.ao("doctor", env=env).stdout  # never the token itself
    finally:
        stop_server(server)
