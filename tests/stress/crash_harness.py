"""Crash-consistency harness (issue 13): kill `ao start` at random and at every journal and outbox step, restart
it, and count what was lost and what was duplicated.

Each trial builds a fresh project (tests/sessionkit.py: git with a bare origin, scripted agents in tmux on a
private socket, the local SCM) with notifications going to a webhook on a local receiver, and three sessions:

- A and C push work whose CI fails: each agent must get "CI is failing" exactly once (its script then pushes a
  fix, so the situation passes: a decision lost in a crash would not be taken again);
- B's agent is gone: a human must get `agent-exited` exactly once.

The first `ao start` of a trial runs with ``AO_FAILPOINT`` (``ao/failpoints.py``: it SIGKILLs itself right
after that step; failpoint trials) or is SIGKILLed after a random delay, one to three times (random trials).
Then a clean `ao start` runs until everything expected has happened and a few cycles more, and is stopped.

Counted per expected item: delivered once (ok), delivered more than once (duplicated), never delivered but
escalated to a human ("could not deliver": a message ao died typing in is never retyped blindly), or neither
(lost). Notifications are counted as raw deliveries and per Idempotency-Key.

Usage: python tests/stress/crash_harness.py [--trials 60] [--seed N] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # tests/: sessionkit, receiver
sys.path.insert(0, str(HERE.parent.parent))  # the ao source

FAILPOINTS = ["outbox.queued", "journal.decided", "cycle.decided", "journal.sending", "agent.typed", "journal.sent",
              "outbox.delivered", "outbox.recorded"]
SETTLE_TIMEOUT = 60.0  # seconds for the clean run to reach every expected outcome
FIRST_RUN_TIMEOUT = 30.0  # seconds for the first run to reach its failpoint
EXTRA_CYCLES = 3.0  # seconds the clean run goes on after everything arrived, to catch late duplicates
FIX = "git rm -q broken && git commit -q -m fix && git push -q origin HEAD 2>&1"


@dataclass
class Trial:
    n: int
    kind: str  # the failpoint, or "random"
    kills: int = 0
    agent_messages: dict[str, int] = field(default_factory=dict)  # session -> "CI is failing" received
    escalations: dict[str, int] = field(default_factory=dict)  # session -> "could not deliver" escalations
    exited_notifications: int = 0  # raw deliveries of agent-exited for B
    exited_ids: int = 0  # distinct Idempotency-Keys among them
    lost: int = 0
    duplicated: int = 0
    duplicated_raw: int = 0
    escalated: int = 0
    seconds: float = 0.0
    error: str = ""


def run_trial(n: int, kind: str, rng: random.Random) -> Trial:
    from receiver import Receiver
    from sessionkit import git, kill_tmux_server, make_env, wait_for

    trial = Trial(n, kind)
    started = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="ao-crash-"))
    rx = Receiver().start()
    env = None
    saved = dict(os.environ)
    try:
        env = make_env(tmp)
        _configure(env, rx.url())
        os.environ.update(env.env)
        from ao.sessions import Sessions, SpawnRequest

        manager = Sessions(env.load())
        sessions = {}
        for name in ("A", "B", "C"):
            s = manager.spawn(SpawnRequest(project="app", target="12"))
            sessions[name] = s
        wait_for(lambda: all(env.received(s.id) for s in sessions.values()), timeout=30, what="the prompts")
        for name in ("A", "C"):
            ws = Path(sessions[name].workspace)
            (ws / "broken").write_text("CI fails while this file exists\n")
            git("add", "-A", cwd=ws)
            git("commit", "-q", "-m", "work", cwd=ws)
            git("push", "-q", "-u", "origin", "HEAD", cwd=ws)
        env.tmux("kill-session", "-t", f"={sessions['B'].runtime_handle}")

        if kind == "random":
            for _ in range(rng.randint(1, 3)):
                proc = _start(env)
                time.sleep(rng.uniform(0.3, 6.0))
                if proc.poll() is None:
                    proc.send_signal(signal.SIGKILL)
                    trial.kills += 1
                proc.wait(10)
        else:
            proc = _start(env, {"AO_FAILPOINT": kind})
            try:
                code = proc.wait(FIRST_RUN_TIMEOUT)
                trial.kills += code == -signal.SIGKILL
            except subprocess.TimeoutExpired:  # the step never came in this trial: stop it cleanly
                proc.send_signal(signal.SIGTERM)
                proc.wait(20)

        proc = _start(env)
        try:
            def settled() -> bool:
                counts = _count(env, rx, sessions)
                return all(counts["messages"][s] or counts["escalations"][s] for s in ("A", "C")) \
                    and counts["exited"] >= 1
            wait_for(settled, timeout=SETTLE_TIMEOUT, what="every expected outcome")
            time.sleep(EXTRA_CYCLES)  # a few cycles more: a duplicate would show now
            if proc.poll() is not None:  # the restart must really have run, or the trial proves nothing
                tail = (env.root / "ao-start.log").read_text(errors="replace")[-500:]
                raise RuntimeError(f"the restarted ao start exited early ({proc.returncode}): {tail}")
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        counts = _count(env, rx, sessions)
        trial.agent_messages = {s: counts["messages"][s] for s in ("A", "C")}
        trial.escalations = {s: counts["escalations"][s] for s in ("A", "C")}
        trial.exited_notifications, trial.exited_ids = counts["exited"], counts["exited_ids"]
        for s in ("A", "C"):
            got, escalated = counts["messages"][s], counts["escalations"][s]
            trial.duplicated += max(0, got - 1) + max(0, escalated - 1)
            trial.duplicated_raw += max(0, got - 1) + max(0, escalated - 1)
            trial.lost += got == 0 and escalated == 0
            trial.escalated += got == 0 and escalated > 0
        trial.lost += counts["exited"] == 0
        trial.duplicated += max(0, counts["exited_ids"] - 1)
        trial.duplicated_raw += max(0, counts["exited"] - 1)
    except Exception as exc:  # a harness failure is reported, and counts as a loss: nothing is hidden
        trial.error = f"{type(exc).__name__}: {exc}"
        trial.lost += 1
    finally:
        os.environ.clear()
        os.environ.update(saved)
        rx.stop()
        if env is not None:
            kill_tmux_server(env.socket)
            _wait_for_ci(tmp)
        if not os.environ.get("AO_CRASH_KEEP"):  # keep the trial's folder to look into it
            shutil.rmtree(tmp, ignore_errors=True)
        trial.seconds = round(time.monotonic() - started, 1)
    return trial


def _configure(env, url: str) -> None:
    import yaml

    script = env.root / "agent-script.json"
    script.write_text(json.dumps([{"name": "fix CI", "when": "CI is failing", "once": True, "run": FIX}]))
    env.write_config(scm={"plugin": "local", "ci": "test ! -e broken"})
    data = yaml.safe_load(env.config.read_text())
    project = data["projects"]["app"]
    project["agentConfig"]["command"] += f" --script {script}"
    data.update(pollInterval=1, notifiers={"hook": {"plugin": "webhook", "url": url}},
                defaults={"notifiers": ["hook"]})
    env.config.write_text(yaml.safe_dump(data))


def _start(env, extra: dict[str, str] | None = None) -> subprocess.Popen:
    log = open(env.root / "ao-start.log", "ab")
    try:
        return subprocess.Popen([sys.executable, "-m", "ao", "start", "--no-orchestrator", "--interval", "1"],
                                cwd=env.root, env={**env.env, **(extra or {})}, stdout=log, stderr=log,
                                stdin=subprocess.DEVNULL)
    finally:
        log.close()


def _count(env, rx, sessions) -> dict:
    messages = {name: sum("CI is failing" in m["text"] for m in env.received(s.id)) for name, s in sessions.items()}
    escalations: Counter = Counter()
    exited, keys = 0, set()
    by_id = {s.id: name for name, s in sessions.items()}
    for request in list(rx.requests):
        try:
            body = request.json
        except ValueError:
            continue
        name = by_id.get(body.get("session"))
        if body.get("type") == "agent-exited" and name == "B":
            exited += 1
            keys.add(request.headers.get("Idempotency-Key") or body.get("id"))
        elif body.get("type") == "escalation" and name in ("A", "C"):
            escalations[name] += 1
    return {"messages": messages, "escalations": escalations, "exited": exited, "exited_ids": len(keys)}


def _wait_for_ci(root: Path, timeout: float = 15.0) -> None:
    """CI runners are detached: let those of this trial end before their folder goes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and shutil.which("pgrep"):
        found = subprocess.run(["pgrep", "-f", str(root)], capture_output=True, text=True).stdout.split()
        if not [p for p in found if int(p) != os.getpid()]:
            return
        time.sleep(0.1)


def run(trials: int, seed: int, progress=print) -> dict:
    rng = random.Random(seed)
    kinds = [FAILPOINTS[i % len(FAILPOINTS)] if i < trials // 2 else "random" for i in range(trials)]
    results = []
    for n, kind in enumerate(kinds, start=1):
        trial = run_trial(n, kind, rng)
        results.append(trial)
        progress(f"trial {n:3}/{trials} {kind:<17} kills {trial.kills}  messages {trial.agent_messages}  "
                 f"escalations {dict(trial.escalations)}  agent-exited {trial.exited_notifications}"
                 f"  lost {trial.lost}  duplicated {trial.duplicated}  ({trial.seconds} s){'  ' + trial.error if trial.error else ''}")
    summary = {
        "trials": len(results), "kills": sum(t.kills for t in results),
        "expected": 3 * len(results), "lost": sum(t.lost for t in results),
        "duplicated": sum(t.duplicated for t in results), "duplicated_raw": sum(t.duplicated_raw for t in results),
        "escalated_instead": sum(t.escalated for t in results), "errors": sum(bool(t.error) for t in results),
        "seed": seed,
    }
    return {"summary": summary, "trials": [asdict(t) for t in results]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=60)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = run(args.trials, args.seed, progress=(lambda line: None) if args.json else print)
    if args.json:
        print(json.dumps(result, indent=1))
        return
    s = result["summary"]
    print(f"\n{s['trials']} trials, {s['kills']} kills of `ao start`, {s['expected']} expected deliveries: "
          f"{s['lost']} lost, {s['duplicated']} duplicated ({s['duplicated_raw']} raw deliveries before "
          f"Idempotency-Key dedupe), {s['escalated_instead']} escalated to a human instead of retyped, "
          f"{s['errors']} harness errors (seed {s['seed']})")


if __name__ == "__main__":
    main()
