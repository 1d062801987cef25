"""The lifecycle loop (SPEC 3.1, 5): observe every session, derive facts and statuses, emit events, run the
engine, execute its actions, persist — once per ``pollInterval``, or at once when a webhook arrives.

One cycle, in the order data flows::

    SCM (one batch per project) ─┐
    runtime probe + panes ───────┴─> facts ─> engine ─> actions ─> executors ─> store, events, outbox

Only one poller runs per data dir (:func:`poller_lock`). ``ao poll`` runs one cycle; ``ao start`` runs
:func:`run_forever`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from ao import events, failpoints, lifecycle, observe
from ao.actions import Outcome, RecordingExecutor
from ao.config import Config
from ao.executors import action_id
from ao.errors import AoError
from ao.sessions import CleanupItem, Sessions
from ao.store import Session, SessionLedgerStore

LOCK_FILE = "poller.lock"
PID_FILE = "poller.pid"
TROUBLE_REPEAT = 300.0  # seconds between repeats of a lasting failure on the console
_VOLATILE = ("idle_seconds", "age_seconds", "last_activity_at")  # change every cycle: not worth a write


@dataclass
class CycleReport:
    at: float
    dry_run: bool = False
    seconds: float = 0.0
    sessions: int = 0
    events: list[dict[str, Any]] = field(default_factory=list)
    actions: list[dict[str, Any]] = field(default_factory=list)
    cleaned: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # worth a human's look, nothing failed (unpriced models)
    admissions: list[dict[str, Any]] = field(default_factory=list)  # the queue's decisions (ao/admission.py)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Poller:
    """Holds what lives across cycles: engines (with their ledgers), SCM clients (ETags), the outbox."""

    def __init__(self, config: Config, *, clock: Callable[[], float] = time.time, dry_run: bool = False,
                 console: Any = events.STDERR) -> None:
        self.config = config
        self.clock = clock
        self.dry_run = dry_run
        self.console = console
        self.manager = Sessions(config, clock=clock)
        self.store = self.manager.store
        self._compiled: dict[str, Any] | None = None
        self._engines: dict[str, Any] = {}
        self._scms: dict[str, Any] = {}
        self._views: dict[str, Any] = {}  # session id -> PRView observed this cycle
        self._outbox: Any = None
        self._executors: Any = None
        self._refresh: dict[str, set[str]] = {}  # project -> branches a webhook said changed
        self._refresh_lock = threading.Lock()
        self._pruned_at = 0.0
        self._unfinished = True  # the journal may hold decisions a crashed poller did not finish
        self._logged: set[str] | None = None  # ids of events in the log's tail (see _event)
        self._spend: Any = None  # SPEC 12: usage, admission and the fact record, made on first use

    def refresh(self, project: str, branches: list[str]) -> None:
        """A webhook said these branches changed (none named: the whole project): the next cycle re-reads
        them even where the SCM's cheap guard says nothing changed. Called from the webhook thread."""
        with self._refresh_lock:
            self._refresh.setdefault(project, set()).update(branches or {"*"})

    # -- parts, made on first use ---------------------------------------------------------------

    def engine(self, project: str) -> Any:
        if project not in self._engines:
            from ao import engine

            if self._compiled is None:
                self._compiled = engine.compile_config(self.config)
            self._engines[project] = engine.Engine(self._compiled[project], store=SessionLedgerStore(self.store))
        return self._engines[project]

    def scm(self, project: str) -> Any:
        if project not in self._scms:
            from ao.plugins import scm

            self._scms[project] = scm.for_project(self.config, self.config.projects[project], self.clock)
        return self._scms[project]

    @property
    def outbox(self) -> Any:
        if self._outbox is None:
            from ao.outbox import Outbox

            self._outbox = Outbox.from_config(self.config, console=self.console)
        return self._outbox

    def executors(self) -> Any:
        if self._executors is None:
            from ao.executors import AgentExecutor, Executors, Journal, KillExecutor, MergeExecutor, PauseExecutor
            from ao.outbox import NotifyExecutor

            self._executors = Executors(
                agent=AgentExecutor(self.manager, Journal(self.config.data_dir), self.clock),
                notify=NotifyExecutor(self.outbox, self.clock),
                merge=MergeExecutor(scm_for=self.scm, view_for=lambda sid: self._views.get(sid),
                                    method_for=lambda p: self.config.projects[p].scm.get("mergeMethod")),
                comment=self._comment_on_pr, pause=PauseExecutor(self.manager, self.clock),
                kill=KillExecutor(self.manager))
        return self._executors

    def _comment_on_pr(self, action: Any) -> None:
        """``scm.commentOnNotify``: the notification also goes on the session's PR, when it has one."""
        project = self.config.projects.get(action.project)
        view = self._views.get(action.session or "")
        if project is None or not project.scm.get("commentOnNotify") or view is None or view.state != "open":
            return
        try:
            self.scm(action.project).comment(view, f"**{action.title}**\n\n{action.text}".strip())
        except AoError as exc:
            events.log(self.config.data_dir, f"{action.session}: could not comment on the PR: {exc}",
                       console=self.console, secrets=self.config.secrets())

    @property
    def spend(self) -> Any:
        if self._spend is None:
            from ao.admission import Cycle

            self._spend = Cycle(self.config, self.manager, self.clock, dry_run=self.dry_run)
        return self._spend

    def backoff(self) -> float:
        """Extra seconds to wait before the next cycle: the most any SCM asks for to keep within its rate
        limit (GitHub: 0 while the budget is ample)."""
        return max((float(getattr(s, "backoff", lambda: 0.0)()) for s in self._scms.values()), default=0.0)

    def close(self) -> None:
        for e in self._engines.values():
            e.close()
        if self._outbox is not None:
            self._outbox.close()

    # -- one cycle ------------------------------------------------------------------------------

    def cycle(self) -> CycleReport:
        try:
            return self._cycle()
        except BaseException:
            self._unfinished = True  # it may have stopped between deciding and executing
            raise

    def _cycle(self) -> CycleReport:
        now = self.clock()
        started = time.monotonic()
        report = CycleReport(at=now, dry_run=self.dry_run)
        if self._unfinished and not self.dry_run:
            from ao.ledger import sweep_temp_files

            sweep_temp_files(self.config.data_dir)
            self._finish_decided(now, report)
            self._unfinished = False
        sessions = [s for s in self.store.list() if s.project in self.config.projects]
        report.sessions = len(sessions)
        scm_fields, details = self._observe_scm(sessions, report)
        fresh = self.spend.observe(sessions, now, report.errors, report.warnings)  # usage, issues' states
        seen = observe.observe(self.manager, sessions, now, capture=True, scm=scm_fields, fresh=fresh)
        seen = [self._settle_observation(item, now) for item in seen]

        by_project: dict[str, list[observe.Seen]] = {}
        for item in seen:
            by_project.setdefault(item.session.project, []).append(item)
            for kind in lifecycle.transitions(item.session.fact or {"status": item.session.status}, item.fact):
                key = (kind, item.session.id, _digest(_stable(item.session.fact)), _digest(_stable(item.fact)))
                report.events.append(self._event(kind, item.session, now, key=key, status=item.fact["status"]))
        decided = [d for project, items in by_project.items()
                   for d in self._decide(project, items, details, now, report)]
        if not self.dry_run:
            failpoints.hit("cycle.decided")
            self._execute(decided, now, report)
        if not self.dry_run:
            merged = [i.session for i in seen if i.fact["status"] == "merged" and i.session.status != "merged"]
            if merged:  # merging a session's PR closes its local issue (before persisting: a crash retries it)
                from ao.issues import close_merged

                closed, errors = close_merged(self.config, merged, now)
                report.events += closed
                report.errors += errors
            for item in seen:
                self._persist(item, now, report)
            self._auto_cleanup(seen, now, report)
            with contextlib.suppress(AoError):
                self.outbox.deliver_due(self.clock())
            if now - self._pruned_at >= 3600:
                self._pruned_at = now
                from ao.executors import Journal

                Journal(self.config.data_dir).prune(now)
                self.spend.prune(now)
        report.admissions = self.spend.admit(now, self.dry_run)
        report.seconds = round(time.monotonic() - started, 4)
        return report

    def _observe_scm(self, sessions: list[Session], report: CycleReport) -> tuple[dict, dict]:
        """One SCM observation per project for the live sessions with a branch."""
        fields: dict[str, dict] = {}
        details: dict[str, dict] = {}
        self._views = {}
        groups: dict[str, list[Session]] = {}
        for s in sessions:
            # an agent that exited after opening its PR: the PR may still be merged or closed
            if (not s.terminal or s.status == "exited") and s.branch and s.role == "worker":
                groups.setdefault(s.project, []).append(s)
        with self._refresh_lock:
            refresh, self._refresh = self._refresh, {}
        for project, group in groups.items():
            try:
                scm = self.scm(project)
                if project in refresh and hasattr(scm, "invalidate"):
                    scm.invalidate(sorted(b for b in refresh[project] if b != "*") or None)
                views = scm.observe(sorted({s.branch for s in group}))
            except AoError as exc:  # the SCM is down: keep last cycle's view, say so, carry on
                report.errors.append(f"{project}: {exc}")
                continue
            for s in group:
                view = views.get(s.branch)
                if view is not None:
                    self._views[s.id] = view
                    fields[s.id] = view.fact_fields()
                    details[s.id] = view.details()
        return fields, details

    def _settle_observation(self, item: observe.Seen, now: float) -> observe.Seen:
        """SPEC 5's two rules the raw observation does not know: a runtime is gone only after two failed
        probes in a row, and a free-form task whose agent ended without a PR is done, not exited."""
        from ao.plugins.agent import Activity
        from ao.plugins.runtime import Probe

        s = item.session
        if item.probe is not None and not item.probe.alive and not s.meta.get("probe_misses"):
            memo = s.meta.get("activity", {})
            previous = s.fact.get("activity", "active") if s.fact else "active"
            activity = Activity(state=previous if previous != "exited" else "active", at=memo.get("at"), memo=memo)
            project = self.config.projects[s.project]
            fact = observe.build_fact(s, activity, Probe(alive=True), now, observe.stuck_threshold(project),
                                      {k: item.fact[k] for k in observe.SCM_FIELDS})
            return observe.Seen(s, item.probe, activity, fact)
        if item.fact["status"] == "exited" and not s.issue and item.fact["pr_state"] == "none" and s.role == "worker":
            item.fact["status"] = "done"
        return item

    def _decide(self, project: str, items: list[observe.Seen], details: dict, now: float,
                report: CycleReport) -> list[tuple[Any, Any, Outcome | None]]:
        """Decide, and make the decisions durable (docs/lifecycle.md): the engine evaluates, the ledgers are
        saved (when each budget began is part of every decision's id: a restarted poller deciding again gets
        the same ids), notifications go into the outbox, and agent messages, pauses and kills into the
        journal. Nothing slow runs here: :meth:`_execute` runs only once every project's decisions are
        durable, so a crash while one agent message is typed in loses no decision of the same cycle, in any
        project. Returns (engine, action, outcome already known, or None)."""
        engine = self.engine(project)
        queue = engine.evaluate([i.fact for i in items], int(now), details, self.spend.totals(project))
        self.spend.record(project, now, [i.fact for i in items], queue)
        if self.dry_run:
            executor = RecordingExecutor()
            for action in queue:
                executor.execute(action)
                report.actions.append(self._row(action, Outcome(True)))
            return []
        executors = self.executors()
        engine.save()
        return [(engine, action, executors.prepare(action, now)) for action in queue]

    def _execute(self, decided: list[tuple[Any, Any, Outcome | None]], now: float, report: CycleReport) -> None:
        """Execute what :meth:`_decide` made durable, settle each outcome, save the ledgers."""
        executors = self.executors()
        for engine, action, prepared in decided:
            self._settle(engine, action, executors.finish(action, prepared), now, report)
        for engine in {id(e): e for e, _, _ in decided}.values():
            engine.save()

    def _settle(self, engine: Any, action: Any, outcome: Outcome, now: float, report: CycleReport) -> None:
        """Record an executed action: report, events, ledger. An escalation it causes is executed at once (a
        notification: queued, so durable)."""
        report.actions.append(self._row(action, outcome))
        if outcome.held:  # nothing was typed: not an attempt, not a failure; decided again next cycle
            return
        for kind in lifecycle.action_events(action.reaction, action.action, outcome.ok):
            key = (kind, action_id(action)) if outcome.ok else ()  # each failed attempt is an event of its own
            report.events.append(self._event(kind, None, now, key=key, session=action.session, project=action.project,
                                             reaction=action.reaction, action=action.action, ok=outcome.ok,
                                             error=outcome.error))
        for escalation in engine.settle(action, outcome, int(now)):
            self._settle(engine, escalation, self.executors().execute(escalation), now, report)

    def _row(self, action: Any, outcome: Outcome) -> dict[str, Any]:
        return {"project": action.project, "session": action.session, "reaction": action.reaction,
                "action": action.action, "priority": action.priority, "title": action.title,
                "attempt": action.attempt, "ok": outcome.ok, "error": outcome.error,
                "held": outcome.held, "notifiers": list(action.notifiers), "would": self.dry_run}

    def _finish_decided(self, now: float, report: CycleReport) -> None:
        """A restart finishes what was decided and does not decide it again: agent messages, pauses and kills
        a crash left journalled as decided (or half typed) are executed (or resolved by the agent's receipt)
        and settled into their ledgers before the engine looks at anything. Notifications need nothing: the
        outbox has them."""
        from ao.executors import action_from_dict

        executors = self.executors()
        for _, entry in executors.agent.journal.unsettled():
            try:
                action = action_from_dict(entry["action"], entry.get("fact"))
            except TypeError:
                continue  # not a decision this ao wrote; prune removes it in time
            if action.project not in self.config.projects:
                continue
            engine = self.engine(action.project)
            self._settle(engine, action, executors.execute(action), now, report)
            engine.save()

    def _persist(self, item: observe.Seen, now: float, report: CycleReport) -> None:
        s, fact = item.session, item.fact
        misses = 0 if item.probe is None or item.probe.alive else int(s.meta.get("probe_misses", 0)) + 1
        memo = {**item.activity.memo, "at": item.activity.at, "detail": item.activity.detail}
        merge = self._merge_memo(s)
        view = self._views.get(s.id)
        pr = pr_summary(view) if view is not None else s.meta.get("pr")
        if (s.status == fact["status"] and _stable(s.fact) == _stable(fact) and s.meta.get("activity") == memo
                and int(s.meta.get("probe_misses", 0)) == misses and s.meta.get("merge") == merge
                and s.meta.get("pr") == pr):
            return

        def update(session: Session) -> None:
            session.fact = fact
            session.pr_number, session.pr_url = fact["pr_number"], fact["pr_url"]
            if (session.status, session.runtime_handle, session.meta) != (s.status, s.runtime_handle, s.meta):
                return  # changed by another command during this cycle (spawn finished, restore, kill): its
                # status and meta win; the next cycle observes them
            session.status = fact["status"]
            session.meta = {**session.meta, "activity": memo, "probe_misses": misses, "merge": merge}
            if pr is not None:
                session.meta["pr"] = pr

        try:
            self.store.modify(s.id, update, s.project)
        except AoError as exc:
            if self.store.get(s.id, s.project) is not None:  # not archived meanwhile: a disk error
                report.errors.append(f"{s.id}: {exc}")

    def _merge_memo(self, s: Session) -> dict[str, Any] | None:
        """The merge criteria of the PR observed this cycle (``meta["merge"]``, for ``rules explain``, ``status``
        and the dashboard); the stored ones when the SCM was not read this cycle."""
        from ao.merging import criteria

        view = self._views.get(s.id)
        if view is None:
            return s.meta.get("merge")
        if view.state != "open":
            return None
        return {"head_sha": view.head_sha, "criteria": [c.to_dict() for c in criteria(view)]}

    def _auto_cleanup(self, seen: list[observe.Seen], now: float, report: CycleReport) -> None:
        """Merged sessions are cleaned up once their agent is quiet, or after the grace while it is busy."""
        if not self.config.auto_cleanup_on_merge:
            return
        for item in seen:
            if item.fact["status"] != "merged" or item.session.status == "cleanup":
                continue
            merged_at = item.session.ended_at or now
            busy = item.activity.state == "active"
            if busy and now - merged_at < self.config.merge_cleanup_idle_grace:
                continue
            try:
                fresh = self.store.get(item.session.id, item.session.project)
                if fresh is not None:
                    for done in self.manager.cleanup([CleanupItem(fresh, "clean", "merged")]):
                        if done.action == "failed":
                            report.errors.append(f"{fresh.id}: cleanup failed: {done.reason}")
                        else:
                            report.cleaned.append(fresh.id)
            except AoError as exc:
                report.errors.append(f"{item.session.id}: cleanup failed: {exc}")

    def _event(self, kind: str, subject: Session | None, now: float, key: tuple = (), **fields: Any) -> dict[str, Any]:
        """Append an event. ``key`` says what it is about: an event a crashed poller appended before it could
        save what it had observed is not appended again by its successor (the tail of the log is read once)."""
        if subject is not None:
            fields = {"session": subject.id, "project": subject.project, **fields}
        if self.dry_run:
            return {"ts": events.iso(now), "type": kind, **fields}
        eid = _digest(key) if key else None
        if self._logged is None:
            self._logged = events.recent_ids(self.config.data_dir)
        if eid is not None and eid in self._logged:
            return {"ts": events.iso(now), "type": kind, **fields, "id": eid, "repeat": True}
        record = events.append(self.config.data_dir, kind, ts=now, secrets=self.config.secrets(),
                               **fields, **({"id": eid} if eid else {}))
        if eid is not None:
            self._logged.add(eid)
        return record


def pr_summary(view: Any) -> dict[str, Any]:
    """What the dashboard shows of a PR beyond the fact: every check (failing ones with their log tail) and
    the unresolved review threads, trusted or not (untrusted text is data: escaped where it is shown)."""
    return {"head_sha": view.head_sha,
            "checks": [{"name": c.name, "state": c.state, "url": c.url, "log_tail": c.log_tail} for c in view.checks],
            "comments": [{"id": c.id, "author": c.author, "body": c.body, "path": c.path, "line": c.line,
                          "url": c.url, "trusted": c.trusted, "bot": c.bot} for c in view.comments]}


def _stable(fact: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in fact.items() if k not in _VOLATILE}


def _digest(value: Any) -> str:
    import hashlib
    import json

    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:20]


# ----------------------------------------------------------------------------------------- running

@contextlib.contextmanager
def poller_lock(data_dir: Path) -> Iterator[None]:
    """Only one poller per data dir. Raises AoError naming the running one's pid."""
    import fcntl

    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(data_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise AoError(f"{data_dir / LOCK_FILE}: cannot open the poller lock: {exc.strerror or exc}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = running_pid(data_dir)
            raise AoError(f"another ao poller is running for {data_dir}" + (f" (pid {pid})" if pid else "")
                          + "; stop it with `ao stop`") from None
        try:
            (data_dir / PID_FILE).write_text(f"{os.getpid()}\n")
        except OSError as exc:  # the lock is what counts; `ao stop` needs the pid file
            raise AoError(f"{data_dir / PID_FILE}: cannot write: {exc.strerror or exc}") from None
        try:
            yield
        finally:
            with contextlib.suppress(OSError):
                (data_dir / PID_FILE).unlink()
    finally:
        os.close(fd)


def running_pid(data_dir: Path) -> int | None:
    """The pid of the poller holding this data dir's lock; None when none does (a pid file left by a
    killed poller is removed, never trusted: its pid may belong to another process by now)."""
    import fcntl

    try:
        fd = os.open(data_dir / LOCK_FILE, os.O_RDWR)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                return int((data_dir / PID_FILE).read_text().strip())
            except (OSError, ValueError):
                return None
        with contextlib.suppress(OSError):
            (data_dir / PID_FILE).unlink()
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


class Loop:
    """``ao start``'s loop: a cycle every interval, at once on :meth:`wake`; stops cleanly on SIGINT/SIGTERM.

    A tick that comes while a cycle is still running is skipped, not queued (cycles never overlap)."""

    def __init__(self, poller: Poller, interval: float, on_cycle: Callable[[CycleReport], None] | None = None) -> None:
        self.poller = poller
        self.interval = interval
        self.on_cycle = on_cycle or (lambda report: None)
        self.stopping = threading.Event()
        self._wake = threading.Event()
        self.skipped = 0
        self._trouble_said = ""  # the failure last said on the console ("" while cycles succeed)
        self._trouble_at = 0.0

    def wake(self) -> None:
        self._wake.set()

    def _trouble(self, message: str) -> None:
        """Say loudly, on the console too, that cycles are failing (a full disk...); once, then every
        TROUBLE_REPEAT seconds while it lasts, so a long outage is neither silent nor a flood."""
        now = time.monotonic()
        if message != self._trouble_said or now - self._trouble_at >= TROUBLE_REPEAT:
            events.log(self.poller.config.data_dir, f"{message} (ao keeps trying every cycle)",
                       console=self.poller.console or events.STDERR)
            self._trouble_said, self._trouble_at = message, now

    def _recovered(self) -> None:
        if self._trouble_said:
            events.log(self.poller.config.data_dir, "cycles succeed again; carrying on",
                       console=self.poller.console or events.STDERR)
            self._trouble_said = ""

    def stop(self, *_: Any) -> None:
        self.stopping.set()
        self._wake.set()

    def install_signals(self) -> None:
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)

    def run(self) -> None:
        next_at = time.monotonic()
        while not self.stopping.is_set():
            self._wake.clear()
            try:
                report = self.poller.cycle()
            except Exception as exc:  # one bad cycle must not end `ao start`; the next one tries again
                kind = "" if isinstance(exc, AoError) else f"{type(exc).__name__}: "
                self._trouble(f"poll cycle failed: {kind}{exc}")
            else:
                unwritable = [e for e in report.errors if "cannot write" in e] + events.unwritable()
                if unwritable:
                    self._trouble(f"cannot record what it observes and decides: {unwritable[0]}")
                else:
                    self._recovered()
                self.on_cycle(report)
            extra = self.poller.backoff()
            if extra:
                events.log(self.poller.config.data_dir, f"rate limit: waiting {extra:.0f} s more before the next "
                           "cycle", console=self.poller.console)
            next_at += self.interval + extra
            now = time.monotonic()
            if now > next_at:  # the cycle overran: skip the ticks it covered rather than run back to back
                missed = int((now - next_at) // self.interval) + 1
                self.skipped += missed
                next_at += missed * self.interval
            self._wake.wait(max(0.0, next_at - time.monotonic()))
            if self._wake.is_set() and not self.stopping.is_set():
                next_at = time.monotonic()  # a webhook: observe now, then carry on from here
