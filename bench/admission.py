"""Benchmark: admission of 1,000 queued issues into a cap of 20 (SPEC 12), one poll cycle's share.

Usage: python bench/admission.py [--runs 7] [--queued 1000] [--cap 20] [--real]

A project with the local tracker holds --queued issues (markdown files; every tenth is blocked by an open
issue, through front matter), all queued. Measured, each in a fresh data dir:

- "first": the cycle that fills the cap: order 1,000 entries, ask the tracker about candidates until 20
  unblocked ones are found, write each decision durably (`admitting`), spawn, settle (`admitted`);
- "full": the next cycle, at the cap: nothing to admit.

Without --real a spawn only writes the session record (what admission itself costs); with --real each spawn is
the whole thing (git worktree, tmux on a private socket, the scripted agent), so the figure is dominated by 20
spawns.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))


def setup(folder: Path, queued: int, cap: int) -> Path:
    project = folder / "app"
    origin = folder / "origin.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(origin)], check=True)
    subprocess.run(["git", "clone", "-q", str(origin), str(project)], check=True, capture_output=True)
    issues = project / "issues"
    issues.mkdir()
    for n in range(1, queued + 1):
        front = f"---\nblocked_by: [{n + 1}]\n---\n" if n % 10 == 0 else ""
        (issues / f"{n}.md").write_text(f"{front}# Issue {n}\n\nDo thing {n}.\n")
    env = {"GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@x", "GIT_COMMITTER_NAME": "b", "GIT_COMMITTER_EMAIL": "b@x"}
    import os
    for cmd in (["add", "-A"], ["commit", "-q", "-m", "issues"], ["push", "-q", "origin", "HEAD:main"]):
        subprocess.run(["git", *cmd], cwd=project, check=True, env={**os.environ, **env})
    agent = f'{sys.executable} {ROOT / "ao" / "scripted_agent.py"} --log "$AO_HOME/$AO_SESSION.agent.jsonl"'
    config = {"dataDir": str(folder / "data"), "maxConcurrent": cap,
              "projects": {"app": {"path": str(project), "sessionPrefix": "app", "agent": "command",
                                   "agentConfig": {"command": agent}, "tracker": {"plugin": "local"},
                                   "scm": {"plugin": "local", "ci": "true"}}}}
    path = folder / "agent-orchestrator.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def once(queued: int, cap: int, real: bool) -> tuple[float, float, int]:
    from ao import config as config_mod
    from ao.admission import Admission
    from ao.sessions import Sessions

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        socket = f"ao-bench-{uuid.uuid4().hex[:8]}"
        import os
        os.environ["AO_TMUX_SOCKET"] = socket
        try:
            cfg = config_mod.load(setup(folder, queued, cap))
            manager = Sessions(cfg)
            if not real:
                def spawn(request):  # the record, with the token, as spawn writes it
                    s = manager.store.create("app", "app", status="spawning", issue=request.target,
                                             meta={"admission": request.admission})
                    return manager.store.update(s.id, "app", status="working", runtime_handle=f"h-{s.id}")
                manager.spawn = spawn
            adm = Admission(cfg, manager, memory=lambda: None)
            adm.queue.add("app", [str(n) for n in range(1, queued + 1)], now=0)
            started = time.perf_counter()
            rows = adm.admit(now=1)
            first = time.perf_counter() - started
            admitted = sum(r["result"] == "admitted" for r in rows)
            if admitted != cap:
                print([r for r in rows if r["result"] not in ("admitted", "blocked")][:2], file=sys.stderr)
            started = time.perf_counter()
            adm.admit(now=2)
            full = time.perf_counter() - started
            return first, full, admitted
        finally:
            from sessionkit import kill_tmux_server

            kill_tmux_server(socket)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--queued", type=int, default=1000)
    parser.add_argument("--cap", type=int, default=20)
    parser.add_argument("--real", action="store_true", help="real spawns: worktree, tmux, scripted agent")
    args = parser.parse_args()
    firsts, fulls = [], []
    for _ in range(args.runs):
        first, full, admitted = once(args.queued, args.cap, args.real)
        assert admitted == args.cap, admitted
        firsts.append(first)
        fulls.append(full)
    kind = "real spawns" if args.real else "record-only spawns"
    print(f"{args.queued} queued into a cap of {args.cap} ({kind}), median of {args.runs}: "
          f"filling cycle {statistics.median(firsts) * 1000:.0f} ms, "
          f"cycle at the cap {statistics.median(fulls) * 1000:.1f} ms")


if __name__ == "__main__":
    main()
