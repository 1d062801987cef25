"""Admission (SPEC 12): each cycle, tracker pickup feeds the queue, the tracker is asked about the issues that
matter (the live sessions', for reconciliation; the next candidates', for their blockers), and queued issues
are spawned under the caps, in priority order then age.

Caps: ``maxConcurrent`` (top level: all projects; in a project: that project's), ``admission.maxPerStatus``
(admit nothing while that many sessions are in a status, e.g. ``ci_failed: 3``), ``admission.minFreeMemory``
(MemAvailable), and a project over its ``budget.project`` admits nothing. Only live worker sessions count.

At most one live session per issue across crashes (not exactly once: a spawn cut short by a crash is rolled
back and done again). The entry is written ``admitting`` with a fresh token *before* the spawn, and the
spawn writes the token into the session record when it creates it (one atomic write). After a crash, an
``admitting`` entry is settled before anything else is decided:

- a session with the token that finished spawning → the entry is ``admitted`` to it (no second spawn);
- a session with the token still ``spawning`` (the crash came mid-spawn, so its undo never ran) → that spawn
  is rolled back (its tmux session, worktree, branch and run folder, all named after the session id) and the
  record archived as ``errored``; the entry is queued again;
- no session with the token → the spawn never began: the entry is queued again.

So at most one live session per admission at any time, and every admission happens; an agent that a crash
caught mid-spawn may have started, and is killed before its issue is spawned again.
"""

from __future__ import annotations

import contextlib
import itertools
import re
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ao import events
from ao.errors import AoError
from ao.workqueue import MAX_ATTEMPTS, Entry, WorkQueue, order_key

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(i?)B?\s*$", re.I)
CHECK_EVERY = 300.0  # seconds between tracker looks at an admitted entry whose session has ended
# A tracker over the network (GitHub, Linear) is asked about the live sessions' issues and for its pickup list
# at most this often: every 30 s cycle would spend GitHub's GraphQL budget for an answer that rarely changes,
# and issue-closed's grace is minutes anyway. The local tracker (files) is read every cycle.
REMOTE_EVERY = {"reconcile": 300.0, "pickup": 60.0}


def parse_size(value: Any) -> int:
    """Bytes from ``2GiB``, ``512MB``, ``1.5G`` or a number of bytes (K/M/G/T are powers of 1024 either way:
    memory is counted in those)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    m = _SIZE.match(str(value))
    if not m:
        raise AoError(f"'{value}' is not a size; use e.g. 2GiB, 512MB or a number of bytes")
    return int(float(m.group(1)) * 1024 ** " KMGT".index(m.group(2).upper() or " "))


def mem_available() -> int | None:
    """MemAvailable from /proc/meminfo, in bytes (None where there is no such file)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


# ------------------------------------------------------------------------------------------------- caps

@dataclass
class Room:
    """How many more sessions may start: overall, and per project (None = no cap); why none, when none."""

    total: float
    projects: dict[str, float]
    closed: dict[str, str] = field(default_factory=dict)  # project ("*" for all) -> why nothing is admitted

    def free(self, project: str) -> float:
        if "*" in self.closed or project in self.closed:
            return 0
        return min(self.total, self.projects.get(project, float("inf")))

    def take(self, project: str) -> None:
        self.total -= 1
        if project in self.projects:
            self.projects[project] -= 1


def room(config: Any, live: list[Any], free_memory: int | None = None,
         spent: dict[str, float] | None = None) -> Room:
    """The caps of SPEC 12 against the live worker sessions (``status`` as last observed)."""
    inf = float("inf")
    total = inf if config.max_concurrent is None else config.max_concurrent - len(live)
    r = Room(total=total, projects={})
    for pid, project in config.projects.items():
        mine = [s for s in live if s.project == pid]
        if project.max_concurrent is not None:
            r.projects[pid] = project.max_concurrent - len(mine)
        for status, cap in project.max_per_status.items():
            if sum(s.status == status for s in mine) >= cap:
                r.closed[pid] = f"{cap} or more sessions are {status}"
        budget = project.budget.get("project")
        if budget is not None and (spent or {}).get(pid, 0.0) >= budget:
            r.closed[pid] = f"over its budget of ${budget}"
    for status, cap in config.max_per_status.items():
        if sum(s.status == status for s in live) >= cap:
            r.closed["*"] = f"{cap} or more sessions are {status}"
    if config.min_free_memory is not None and free_memory is not None and free_memory < config.min_free_memory:
        r.closed["*"] = f"only {free_memory // 2**20} MiB of memory available"
    return r


# -------------------------------------------------------------------------------------------- admission

@dataclass
class Admission:
    """The admission half of a poll cycle. ``manager`` is the poller's :class:`~ao.sessions.Sessions`."""

    config: Any
    manager: Any
    clock: Callable[[], float] = time.time
    memory: Callable[[], int | None] = mem_available
    queue: WorkQueue = field(init=False)
    _trackers: dict[str, Any] = field(default_factory=dict, init=False)
    _asked: dict[tuple[str, str], float] = field(default_factory=dict, init=False)  # (what, project) -> when
    _known: dict[str, dict[str, str]] = field(default_factory=dict, init=False)  # project -> issue -> its state

    def __post_init__(self) -> None:
        self.queue = WorkQueue(self.config.data_dir)

    def tracker(self, project: str) -> Any:
        if project not in self._trackers:
            self._trackers[project] = self.manager.tracker(self.config.projects[project])
        return self._trackers[project]

    # -- observe: pickup and reconciliation ----------------------------------------------------------

    def observe(self, sessions: list[Any], now: float, errors: list[str], dry_run: bool = False
                ) -> dict[str, dict[str, Any]]:
        """Feed the queue from each project's pickup, and read the state of the issues that matter: the live
        sessions' (the fact's ``issue_state``) and those of admitted entries whose session has ended (closed
        ones leave the queue, so a reopened issue can be picked up again). Returns fact fields per session."""
        by_project: dict[str, list[Any]] = {}
        for s in sessions:
            if s.project in self.config.projects and s.role == "worker" and s.issue and not s.terminal:
                by_project.setdefault(s.project, []).append(s)
        entries = self.queue.load()
        retire = {e.key: e for e in entries if e.state == "admitted" and now - e.checked_at >= CHECK_EVERY
                  and not any(s.id == e.session for s in by_project.get(e.project, []))}
        fresh: dict[str, dict[str, Any]] = {}
        closed: set[tuple[str, str]] = set()
        checked: set[tuple[str, str]] = set()
        for pid, project in self.config.projects.items():
            live = by_project.get(pid, [])
            wanted = sorted({s.issue for s in live} | {i for (p, i) in retire if p == pid})
            known = self._known.setdefault(pid, {})
            try:
                if project.pickup and not dry_run and self._due("pickup", project, now):
                    self._pickup(pid, project, live, now)
                if not wanted or not self._due("reconcile", project, now, set(wanted) - set(known)):
                    states = {}
                else:
                    states = self.tracker(pid).status(wanted, project.pickup.get("activeStates"), blockers=False)
                    known.clear()
                    known.update({i: st.state for i, st in states.items()})
            except AoError as exc:  # the tracker is down: keep last cycle's view, say so, carry on
                errors.append(f"{pid}: tracker: {exc}")
                continue
            for s in live:
                if s.issue in known:
                    fresh[s.id] = {"issue_state": known[s.issue]}
            for (p, issue) in retire:
                if p == pid:
                    checked.add((p, issue))
                    if issue in states and states[issue].state == "closed":
                        closed.add((p, issue))
        if (closed or checked) and not dry_run:
            with self.queue.edit() as entries:
                for e in list(entries):
                    if e.key in closed and e.state == "admitted":
                        entries.remove(e)
                    elif e.key in checked:
                        e.checked_at = now
        return fresh

    def _due(self, what: str, project: Any, now: float, unknown: set[str] | None = None) -> bool:
        """Whether to ask the project's tracker now (a remote one at most every REMOTE_EVERY[what] seconds,
        sooner for issues it has not been asked about)."""
        key = (what, project.id)
        if (project.tracker.get("plugin") != "local" and not unknown
                and now - self._asked.get(key, float("-inf")) < REMOTE_EVERY[what]):
            return False
        self._asked[key] = now
        return True

    def _pickup(self, pid: str, project: Any, live: list[Any], now: float) -> None:
        issues = self.tracker(pid).pickup(project.pickup)
        busy = {s.issue for s in live}
        new = [i for i in issues if i.id not in busy]
        if new:
            self.queue.add(pid, [i.id for i in new], priority=int(project.pickup.get("priority", 0)), now=now,
                           source="pickup", titles={i.id: i.title for i in new})

    # -- admit ---------------------------------------------------------------------------------------

    def admit(self, now: float, dry_run: bool = False, spent: dict[str, float] | None = None) -> list[dict[str, Any]]:
        """Settle interrupted admissions, then spawn what the caps allow. One row per decision."""
        rows: list[dict[str, Any]] = []
        if not dry_run:
            self._recover(rows)
        live = [s for s in self.manager.store.list() if s.role == "worker" and not s.terminal]
        if self.config.max_concurrent is not None and len(live) >= self.config.max_concurrent:
            return rows  # at the cap: nothing to decide, not even the queue to read
        entries = self.queue.load()
        chosen = self._choose(entries, live, now, rows, spent)
        if dry_run:
            rows += [{"project": e.project, "issue": e.issue, "result": "would admit", "session": None,
                      "detail": f"priority {e.priority}"} for e in chosen]
            return rows
        if not chosen:
            if any(r["result"] in ("blocked", "dropped", "admitted") for r in rows):
                self._write_back(entries)
            return rows
        # The decision is durable before anything is done: each chosen entry is `admitting`, with its token.
        tokens = {e.key: uuid.uuid4().hex for e in chosen}
        with self.queue.edit() as current:
            self._merge_checks(current, entries)
            for e in current:
                if e.key in tokens and e.state == "queued":
                    e.state, e.token = "admitting", tokens[e.key]
        # Spawn one by one; the queue hears of the results once, at the end: a crash before that leaves
        # `admitting` entries whose sessions carry the tokens, which _recover settles.
        results = [(e, tokens[e.key], self._spawn(e, tokens[e.key])) for e in chosen]
        self._settle(results)
        return rows + [row for _, _, row in results]

    def _choose(self, entries: list[Entry], live: list[Any], now: float, rows: list[dict[str, Any]],
                spent: dict[str, float] | None) -> list[Entry]:
        busy = {(s.project, s.issue): s.id for s in live if s.issue}
        r = room(self.config, live, self.memory() if self.config.min_free_memory else None, spent)
        queued = sorted((e for e in entries if e.state == "queued" and e.project in self.config.projects),
                        key=order_key)
        for e in queued:  # spawned meanwhile by hand (ao spawn): the queue's work is under way
            if e.key in busy:
                e.state, e.session = "admitted", busy[e.key]
                rows.append({"project": e.project, "issue": e.issue, "result": "admitted", "session": e.session,
                             "detail": "already had a live session"})
        queued = [e for e in queued if e.state == "queued"]
        chosen: list[Entry] = []
        waiting = iter(queued)
        while r.total > 0:
            # the next candidates whose project has room: twice the room, so a few blocked ones cost no round trip
            size = max(20, 2 * int(min(r.total, 1000)))
            batch = [e for e in itertools.islice((e for e in waiting if r.free(e.project) > 0), size)]
            if not batch:
                break
            states = self._states(batch, rows)
            for e in batch:
                status = states.get(e.key)
                if status is None:
                    continue  # the tracker could not say: try again next cycle
                e.checked_at = now
                e.blocked_by = list(status.blocked_by)
                if status.state == "closed":
                    e.state = "dropped"
                    rows.append({"project": e.project, "issue": e.issue, "result": "dropped", "session": None,
                                 "detail": "the issue is closed"})
                elif status.blocked_by:
                    rows.append({"project": e.project, "issue": e.issue, "result": "blocked", "session": None,
                                 "detail": "waits for " + ", ".join(status.blocked_by)})
                elif r.free(e.project) > 0:
                    chosen.append(e)
                    r.take(e.project)
        for scope, why in r.closed.items():
            if any(e.state == "queued" and (scope == "*" or e.project == scope) for e in entries):
                rows.append({"project": None if scope == "*" else scope, "issue": None, "result": "held",
                             "session": None, "detail": why})
        return chosen

    def _states(self, batch: list[Entry], rows: list[dict[str, Any]]) -> dict[tuple[str, str], Any]:
        out = {}
        for pid in dict.fromkeys(e.project for e in batch):
            ids = [e.issue for e in batch if e.project == pid]
            try:
                found = self.tracker(pid).status(ids, self.config.projects[pid].pickup.get("activeStates"))
            except AoError as exc:
                rows.append({"project": pid, "issue": None, "result": "held", "session": None,
                             "detail": f"tracker: {exc}"})
                continue
            for issue in ids:
                if issue in found:
                    out[(pid, issue)] = found[issue]
                else:
                    from ao.plugins.tracker import IssueStatus

                    out[(pid, issue)] = IssueStatus(state="closed")  # it does not exist (any more)
        return out

    def _merge_checks(self, current: list[Entry], seen: list[Entry]) -> None:
        """Carry this cycle's looks at the tracker into the entries as they are now on disk."""
        by_key = {e.key: e for e in seen}
        for e in list(current):
            mine = by_key.get(e.key)
            if mine is None or e.state != "queued":
                continue
            if mine.state == "dropped":
                current.remove(e)
            elif mine.state == "admitted":
                e.state, e.session = "admitted", mine.session
            elif mine.checked_at:
                e.blocked_by, e.checked_at = mine.blocked_by, mine.checked_at

    def _write_back(self, seen: list[Entry]) -> None:
        with self.queue.edit() as current:
            self._merge_checks(current, seen)

    def _spawn(self, entry: Entry, token: str) -> dict[str, Any]:
        from ao.sessions import SpawnRequest

        row = {"project": entry.project, "issue": entry.issue, "session": None}
        try:
            session = self.manager.spawn(SpawnRequest(project=entry.project, target=entry.issue, admission=token))
        except AoError as exc:  # spawn undid itself: the issue waits for another try
            failed = entry.attempts + 1 >= MAX_ATTEMPTS
            self._event("queue.failed" if failed else "queue.retry", entry, error=str(exc))
            return {**row, "result": "failed" if failed else "retry", "detail": str(exc)}
        self._event("queue.admitted", entry, session=session.id)
        return {**row, "result": "admitted", "session": session.id, "detail": session.branch}

    def _settle(self, results: list[tuple[Entry, str, dict[str, Any]]]) -> None:
        """Record spawn results in the queue: admitted to a session, or back in the queue (failed at last)."""
        by_key = {(e.key, token): row for e, token, row in results}
        with self.queue.edit() as current:
            for e in current:
                row = by_key.get((e.key, e.token))
                if row is None:
                    continue
                if row.get("session"):
                    e.state, e.session, e.error = "admitted", row["session"], ""
                else:
                    e.attempts += 1
                    e.error = row.get("detail", "")
                    e.state = "failed" if e.attempts >= MAX_ATTEMPTS else "queued"
                    e.token = ""

    # -- after a crash -------------------------------------------------------------------------------

    def _recover(self, rows: list[dict[str, Any]]) -> None:
        pending = [e for e in self.queue.load() if e.state == "admitting"]
        if not pending:
            return
        by_token = {s.meta.get("admission"): s for s in self.manager.store.list(include_archived=True)
                    if s.meta.get("admission")}
        for e in pending:
            found = by_token.get(e.token)
            if found is not None and found.status != "spawning":
                self._settle([(e, e.token, {"session": found.id})])
                rows.append({"project": e.project, "issue": e.issue, "result": "admitted", "session": found.id,
                             "detail": "recovered after a crash: the session had been created"})
                self._event("queue.admitted", e, session=found.id, recovered=True)
                continue
            if found is not None:
                self._roll_back(found)
            with self.queue.edit() as current:
                for c in current:
                    if c.key == e.key and c.token == e.token:
                        c.state, c.token = "queued", ""
            rows.append({"project": e.project, "issue": e.issue, "result": "requeued", "session": None,
                         "detail": "a crash interrupted its spawn" + (f"; {found.id} was rolled back" if found else "")})

    def _roll_back(self, session: Any) -> None:
        """Undo a spawn a crash interrupted: what spawn would have undone, found by the session id alone."""
        from ao.sessions import _rmtree, handle_name

        project = self.config.projects.get(session.project)
        if project is None:
            return
        with contextlib.suppress(AoError):
            runtime = self.manager.runtime(session.runtime or project.runtime)
            runtime.kill(session.runtime_handle or handle_name(self.config.data_dir, session.id))
        ws = Path(session.workspace) if session.workspace else self.manager.workspace_path(project.id, session.id)
        if ws.is_dir():
            branch = session.branch or _branch_of(ws)
            with contextlib.suppress(AoError):
                self.manager.workspace(project.workspace).remove(project.path, ws, branch or None)
        _rmtree(self.manager.run_dir(project.id, session.id))
        with contextlib.suppress(AoError):
            self.manager.store.archive(session.id, project.id, status="errored",
                                       meta={**session.meta, "ended_as": "spawn interrupted by a crash; rolled back"})

    def _event(self, kind: str, entry: Entry, **fields: Any) -> None:
        events.append(self.config.data_dir, kind, ts=self.clock(), project=entry.project, issue=entry.issue,
                      secrets=self.config.secrets(), **fields)


def _branch_of(workspace: Path) -> str:
    from ao import git

    try:
        name = git.run(["rev-parse", "--abbrev-ref", "HEAD"], cwd=workspace, untrusted=True).strip()
    except AoError:
        return ""
    return "" if name == "HEAD" else name


# ---------------------------------------------------------------------------------------- the poller hook

class Cycle:
    """SPEC 12's part of a poll cycle, behind one small hook in the poller: usage and the issues' states go
    into the facts, the project totals into the project fact, the facts into the record, then admission."""

    def __init__(self, config: Any, manager: Any, clock: Callable[[], float], *, dry_run: bool = False) -> None:
        from ao.replay import FactLog
        from ao.usage import UsageTracker

        self.dry_run = dry_run
        self.usage = UsageTracker(config, home_of=manager.agent_home)
        self.admission = Admission(config, manager, clock)
        self.log = FactLog(config.data_dir, config.fact_retention)
        self._totals: dict[str, dict[str, Any]] = {}
        self._unpriced: set[tuple[str, str]] = set()  # said once per process (per `ao poll`, once in `ao start`)

    def observe(self, sessions: list[Any], now: float, errors: list[str],
                warnings: list[str] | None = None) -> dict[str, dict[str, Any]]:
        from ao.usage import unpriced_warning

        fresh: dict[str, dict[str, Any]] = {}
        try:
            fresh = self.usage.observe(sessions, now)
            if not self.dry_run:
                self.usage.save()
        except (OSError, AoError) as exc:  # usage is worth a line in the report, never a lost cycle
            errors.append(f"usage: {exc}")
        self._totals = {}
        for pid in self.usage.config.projects:
            got = self.usage.project(pid)
            self._totals[pid] = got.fact_fields()
            new = [m for m in got.unpriced if (pid, m) not in self._unpriced]
            if new and warnings is not None:  # costs $0 and no budget sees it: a user must price it
                self._unpriced.update((pid, m) for m in new)
                warnings.append(unpriced_warning(pid, new))
        for sid, fields in self.admission.observe(sessions, now, errors, self.dry_run).items():
            fresh.setdefault(sid, {}).update(fields)
        return fresh

    def totals(self, project: str) -> dict[str, Any]:
        return self._totals.get(project) or self.usage.totals(project)

    def record(self, project: str, now: float, facts: list[Any], actions: list[Any]) -> None:
        if not self.dry_run:
            self.log.record(project, now, facts, actions, self.totals(project))

    def admit(self, now: float, dry_run: bool) -> list[dict[str, Any]]:
        spent = {pid: float(t.get("cost_usd", 0.0)) for pid, t in self._totals.items()}
        return self.admission.admit(now, dry_run, spent)

    def prune(self, now: float) -> None:
        self.log.prune(now)
