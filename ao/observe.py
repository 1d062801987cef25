"""Observing sessions: runtime liveness, agent activity, and the session fact and status (SPEC 4.1, 5).

One call observes many sessions: each runtime is probed once for all of its sessions (one tmux call, not
one per session), and the terminal is captured only when asked (the poller asks; ``ao status`` does not,
so it stays fast). Time comes in as ``now``: nothing here reads a clock.

The SCM half of the fact (PR, CI, review) is whatever was last stored in ``Session.fact``; the SCM
observer fills it in.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ao import facts
from ao.store import Session

if TYPE_CHECKING:
    from ao.plugins.agent import Activity
    from ao.plugins.runtime import Probe
    from ao.sessions import Sessions

CAPTURE_LINES = 60
CAPTURE_WORKERS = 8
CARRIED_FIELDS = ("tokens_in", "tokens_out", "cost_usd", "issue_state")
SCM_FIELDS = ("pr_state", "pr_number", "pr_url", "head_sha", "base_branch", "ci", "review", "human_comments",
              "bot_comments", "comments_fingerprint", "bot_fingerprint", "untrusted_comments", "untrusted_fingerprint", "conflicts", "behind", "draft", "mergeable")


@dataclass
class Seen:
    session: Session
    probe: "Probe | None"          # None for a session that has ended (not probed)
    activity: "Activity"
    fact: dict[str, Any]

    @property
    def status(self) -> str:
        return self.fact["status"]


def observe(manager: "Sessions", sessions: list[Session], now: float, capture: bool = False,
            scm: dict[str, dict[str, Any]] | None = None,
            fresh: dict[str, dict[str, Any]] | None = None) -> list[Seen]:
    """Observe ``sessions``: one probe per runtime, optional pane captures in parallel, then facts.

    ``scm`` maps session ids to fresh SCM fact fields (this cycle's PR views); others keep the stored ones.
    ``fresh``: other fields read this cycle (usage, the issue's state), by session id.
    """
    from ao.plugins.agent import Activity

    live = [s for s in sessions if not s.terminal and s.runtime_handle]
    live_ids = {s.id for s in live}
    probes: dict[str, Any] = {}
    by_runtime: dict[str, list[Session]] = {}
    for s in live:
        by_runtime.setdefault(s.runtime or "tmux", []).append(s)
    for name, group in by_runtime.items():
        probes.update(manager.runtime(name).probe([s.runtime_handle for s in group]))

    panes: dict[str, str] = {}
    taken: dict[str, float] = {}
    if capture:
        wanted = [s for s in live if _worth_capturing(s, probes.get(s.runtime_handle))]

        def grab(s: Session) -> tuple[str, tuple[str, float]]:
            runtime = manager.runtime(s.runtime or "tmux")
            # A runtime that keeps a recent screen (docker: the container writes it) spares a round trip per
            # pane; the screen's own time, not now, is when it was captured.
            recent = runtime.capture_recent(s.runtime_handle, CAPTURE_LINES) if hasattr(runtime, "capture_recent") \
                else None
            return s.id, recent or (runtime.capture(s.runtime_handle, CAPTURE_LINES), now)

        with ThreadPoolExecutor(max_workers=CAPTURE_WORKERS) as pool:
            for sid, (text, at) in pool.map(grab, wanted):
                panes[sid], taken[sid] = text, min(at, now)

    out = []
    for s in sessions:
        project = manager.config.projects.get(s.project)
        probe = probes.get(s.runtime_handle) if s.id in live_ids else None
        if probe is None or project is None:
            activity = Activity(state="exited" if s.terminal else "unknown",
                                at=s.meta.get("activity", {}).get("at"))
        else:
            activity = _activity(manager, s, project.agent, probe, panes.get(s.id), now)
        if s.id in panes:
            activity.memo = {**activity.memo, "captured_at": taken[s.id]}
        out.append(Seen(s, probe, activity, build_fact(s, activity, probe, now, stuck_threshold(project),
                                                       (scm or {}).get(s.id), (fresh or {}).get(s.id))))
    return out


def _worth_capturing(s: Session, probe: "Probe | None") -> bool:
    """Capture a pane only if it may show something new: output since the last capture (the runtime's
    last-output time has 1 s resolution, hence the margin), a question or limit shown last time (whose
    answer is the next output anyway, but the pattern must be seen again to keep the state), or a screen
    that lacked the agent's input box (still, it becomes an unrecognised dialog). Quiet panes, most of them
    in a large fleet, cost nothing."""
    if probe is None or not probe.alive:
        return False
    memo = s.meta.get("activity", {})
    captured = memo.get("captured_at")
    if captured is None or probe.last_output_at is None or probe.last_output_at >= captured - 1:
        return True
    # a screen without the agent's input box must be seen again once still (an unrecognised dialog)
    return s.fact.get("activity") in ("waiting_input", "blocked") or bool(memo.get("recheck"))


def _activity(manager: "Sessions", s: Session, default_agent: str, probe: "Probe", pane: str | None,
              now: float) -> "Activity":
    from ao.plugins.agent import Observation

    obs = Observation(now=now, alive=probe.alive, workspace=Path(s.workspace or "."), started_at=s.launched_at,
                      ready_threshold=manager.config.ready_threshold, pane=pane,
                      last_output_at=probe.last_output_at, memo=dict(s.meta.get("activity", {})),
                      run_dir=manager.run_dir(s.project, s.id), pid=probe.pid, home=manager.agent_home(s))
    return manager.agent(s.agent or default_agent).activity(obs)


def stuck_threshold(project: Any) -> int:
    reaction = project.reactions.get("agent-stuck") if project is not None else None
    return reaction.threshold if reaction is not None and reaction.threshold else 600


def build_fact(s: Session, activity: "Activity", probe: "Probe | None", now: float, stuck_threshold: int,
               scm: dict[str, Any] | None = None, fresh: dict[str, Any] | None = None) -> dict:
    """The SPEC 4.1 fact of one session: runtime and activity from this observation, SCM fields from
    ``scm`` (observed this cycle) or else from the store."""
    last = int(activity.at if activity.at is not None else s.created_at)
    partial: dict[str, Any] = {
        "session": s.id, "project": s.project, "role": s.role, "activity": activity.state,
        "idle_seconds": max(0, int(now) - last), "last_activity_at": last,
        "runtime_alive": bool(probe.alive) if probe is not None else not s.terminal,
        "age_seconds": max(0, int(now - s.created_at)), "branch": s.branch, "issue": s.issue,
        "paused": bool(s.meta.get("paused")),
    }
    source = scm if scm is not None else s.fact
    partial.update({k: source[k] for k in SCM_FIELDS if k in source})
    # usage and the issue's state: this cycle's reading when there is one, else the last one stored
    partial.update({k: s.fact[k] for k in CARRIED_FIELDS if k in s.fact})
    partial.update(fresh or {})
    if s.pr_url and "pr_url" not in partial:
        partial.update(pr_url=s.pr_url, pr_number=s.pr_number)
    fact = facts.complete(partial, int(now), stuck_threshold)
    fact["status"] = facts.derive_status(fact, stuck_threshold, previous=s.status)
    if s.terminal and s.status != fact["status"] and fact["status"] not in facts.TERMINAL:
        fact["status"] = s.status  # an ended session stays ended until restored
    return fact
