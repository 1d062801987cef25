"""The durable notification outbox (SPEC 7): queue first, then deliver, notifier by notifier.

Layout under ``<dataDir>/outbox/``: one JSON file per notification (``<id>.json``) while any notifier is still
pending, moved to ``sent/`` once every notifier has it, or to ``failed/`` once every notifier is settled and
at least one gave up (a dead letter, kept for a human to look at). Each file holds the notification and, per
notifier, a :class:`Delivery`: state (pending, sent, failed), attempts, when the next attempt is due, the last
error. Every write is atomic (temp file, fsync, rename), so a crash leaves the old or the new state.

Semantics:

- :meth:`Outbox.enqueue` writes the notification before anything is sent, and is idempotent by id: the engine
  derives ids from the decision, so a decision taken twice is queued once.
- :meth:`Outbox.deliver_due` sends every due (notification, notifier) pair concurrently, each attempt bounded
  by its notifier's timeout: a hanging service costs the pass at most that timeout and never delays the
  others. Each pair is marked as soon as its attempt ends, so a crash mid-pass loses no finished work.
- A failed attempt is retried with capped exponential backoff (:class:`RetryPolicy`: 5s, 10s, 20s ... 5m,
  8 attempts); the schedule is on disk, so retries survive a restart. Errors that retrying cannot fix (a
  rejected request, no desktop on this machine) fail at once. Each attempt's result is an event
  (``notification.sent`` / ``notification.failed``); giving up also prints a line to the console and
  ``logs/orchestrator.log``.
- Delivery is at least once: a crash (or a timeout) between a service accepting a message and the outbox
  recording it sends it again on the next pass. An attempt that answers after its timeout is still recorded
  as sent if nothing has been retried since, which avoids most such duplicates; webhooks also carry the
  notification id as ``Idempotency-Key``.
- Decisions use the ``now`` passed in, never the clock, so tests control the schedule (freezegun). Only the
  per-attempt deadlines read a real monotonic clock: they bound threads, they decide nothing.

One delivery pass at a time per data dir (a lock file), so a running poller and ``ao notify test`` never
send the same pair twice; each record update takes a short lock on the record's stripe (16 lock files), so
attempts ending together write in parallel.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import threading
import time
import zlib
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any, Callable, Iterable, Iterator, Mapping

from ao import events, failpoints
from ao.actions import Action, Outcome
from ao.errors import AoError
from ao.ledger import atomic_write
from ao.notify import DeliveryError, Notification, Notifier, build_notifiers, from_action, secrets_of

PENDING, SENT, FAILED = "pending", "sent", "failed"
SENT_DIR, FAILED_DIR = "sent", "failed"
DEADLINE_GRACE = 0.25  # seconds past a notifier's timeout before the pass stops waiting for it
STRIPES = 16  # record locks
PASS_WAIT = 300.0  # seconds to wait for another process's delivery pass
KEEP_SENT = 7 * 86400  # sent notifications are kept this long (deduplication and inspection), then pruned


def _flock(fd: int, lock: bool) -> None:
    """An exclusive advisory lock on ``fd`` (other ao processes); nothing where there is no fcntl."""
    try:
        import fcntl
    except ImportError:  # Windows: the in-process locks are all there is
        return
    fcntl.flock(fd, fcntl.LOCK_EX if lock else fcntl.LOCK_UN)


def _clock() -> float:
    """A real monotonic clock, also under freezegun (which fakes time.monotonic but not clock_gettime)."""
    try:
        return time.clock_gettime(time.CLOCK_MONOTONIC)
    except AttributeError:  # Windows
        return time.perf_counter()


@dataclass(frozen=True)
class RetryPolicy:
    base: float = 5.0
    factor: float = 2.0
    cap: float = 300.0
    max_attempts: int = 8

    def delay(self, attempts: int) -> float:
        """How long to wait after the ``attempts``-th failed attempt: 5s, 10s, 20s, ... at most ``cap``."""
        return min(self.cap, self.base * self.factor ** max(attempts - 1, 0))


@dataclass(frozen=True)
class Delivery:
    """One notifier's side of one notification."""

    state: str = PENDING
    attempts: int = 0
    next_attempt_at: float = 0.0
    last_error: str = ""
    sent_at: float | None = None

    def due(self, now: float) -> bool:
        return self.state == PENDING and self.next_attempt_at <= now


def after_attempt(d: Delivery, attempt: int, ok: bool, error: str, permanent: bool, now: float,
                  policy: RetryPolicy, max_attempts: int | None = None) -> Delivery:
    """The delivery after attempt number ``attempt`` ended (pure)."""
    if ok:
        return Delivery(SENT, attempt, d.next_attempt_at, "", now)
    limit = policy.max_attempts if max_attempts is None else max_attempts
    if permanent or attempt >= limit:
        return Delivery(FAILED, attempt, d.next_attempt_at, error, None)
    return Delivery(PENDING, attempt, now + policy.delay(attempt), error, None)


@dataclass
class Record:
    notification: Notification
    deliveries: dict[str, Delivery]
    created_at: float
    max_attempts: int | None = None  # overrides the policy (``ao notify test`` tries once)

    @property
    def folder(self) -> str:
        """Where the file belongs: the outbox itself while anything is pending, else sent/ or failed/."""
        states = {d.state for d in self.deliveries.values()}
        if PENDING in states:
            return ""
        return SENT_DIR if states <= {SENT} else FAILED_DIR

    def to_dict(self) -> dict[str, Any]:
        return {"version": 1, "notification": self.notification.to_dict(), "created_at": self.created_at,
                "max_attempts": self.max_attempts,
                "deliveries": {name: asdict(d) for name, d in self.deliveries.items()}}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Record":
        return cls(notification=Notification.from_dict(data["notification"]),
                   deliveries={name: Delivery(**d) for name, d in data["deliveries"].items()},
                   created_at=float(data["created_at"]), max_attempts=data.get("max_attempts"))


@dataclass(frozen=True)
class Result:
    """How one attempt ended."""

    id: str
    notifier: str
    plugin: str
    ok: bool
    attempt: int
    error: str = ""
    final: bool = True  # no further attempt will be made (sent, or given up)
    next_attempt_at: float | None = None
    elapsed: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class _Claim:
    notification: Notification
    notifier: str
    plugin: str
    attempt: int
    timeout: float


class Outbox:
    def __init__(self, data_dir: Path, notifiers: Mapping[str, Notifier], *, secrets: Iterable[str] = (),
                 policy: RetryPolicy = RetryPolicy(), max_workers: int = 32, per_notifier: int = 8,
                 console: IO[str] | None | str = events.STDERR) -> None:
        self.data_dir = Path(data_dir)
        self.root = self.data_dir / "outbox"
        self.notifiers = dict(notifiers)
        self.secrets = frozenset(secrets)
        self.policy = policy
        self.max_workers = max(1, max_workers)
        self.per_notifier = max(1, per_notifier)
        self.console = console
        # Record updates lock the record's stripe (a thread lock and a lock file, for other processes), so
        # attempts finishing at once for different notifications write (and fsync) in parallel.
        self._stripes = [threading.Lock() for _ in range(STRIPES)]
        self._stripe_fds: dict[int, int] = {}
        self._pass_lock = threading.Lock()  # delivery passes: a thread lock and .deliver.lock
        self._last_prune: float | None = None

    @classmethod
    def from_config(cls, config: Any, **kwargs: Any) -> "Outbox":
        console = kwargs.pop("console", events.STDERR)
        secrets = secrets_of(config)
        notifiers = build_notifiers(config, config.data_dir, console=console, secrets=secrets)
        return cls(config.data_dir, notifiers, secrets=secrets, console=console, **kwargs)

    def close(self) -> None:
        for notifier in self.notifiers.values():
            notifier.close()
        for stripe, lock in enumerate(self._stripes):
            with lock:
                fd = self._stripe_fds.pop(stripe, None)
                if fd is not None:
                    os.close(fd)

    # -- locking -----------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _pass_locked(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with self._pass_lock, open(self.root / ".deliver.lock", "a") as fh:
            from ao.locks import acquire

            # bounded, and said: another pass (ao start, ao notify test) takes at most its notifiers' timeouts
            acquire(fh.fileno(), self.root / ".deliver.lock", "another delivery pass of the outbox", PASS_WAIT)
            try:
                yield
            finally:
                _flock(fh.fileno(), False)

    @contextlib.contextmanager
    def _locked(self, nid: str) -> Iterator[None]:
        stripe = zlib.crc32(nid.encode("utf-8")) % STRIPES
        with self._stripes[stripe]:
            fd = self._stripe_fds.get(stripe)
            if fd is None:
                self.root.mkdir(parents=True, exist_ok=True)
                fd = self._stripe_fds[stripe] = os.open(self.root / f".lock-{stripe:02d}", os.O_RDWR | os.O_CREAT,
                                                        0o600)
            _flock(fd, True)
            try:
                yield
            finally:
                _flock(fd, False)

    # -- records -----------------------------------------------------------------------------------

    def _path(self, nid: str, folder: str = "") -> Path:
        return (self.root / folder if folder else self.root) / f"{nid}.json"

    def _read(self, path: Path) -> Record | None:
        try:
            return Record.from_dict(json.loads(path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            # Files are only ever replaced whole, so this is real damage. Never silently drop or overwrite
            # a notification: set the file aside and say so.
            quarantine = path.with_suffix(".corrupt")
            with contextlib.suppress(OSError):
                path.replace(quarantine)
            events.log(self.data_dir, f"outbox: corrupt record {path.name} ({type(exc).__name__}); "
                                      f"moved to {quarantine.name}", console=self.console, secrets=self.secrets)
            return None

    def _find(self, nid: str) -> tuple[Record | None, str | None]:
        """The record and its folder. Call with the record's lock held: a move is two steps."""
        # A crash between writing the new place and removing the old one leaves two copies; the settled one
        # is the newer (records only ever move from the outbox to failed/ or sent/, and failed/ to sent/).
        for folder in (SENT_DIR, FAILED_DIR, ""):
            path = self._path(nid, folder)
            if path.is_file():
                return self._read(path), folder
        return None, None

    def _write(self, record: Record, was: str | None) -> None:
        """Write ``record`` where it belongs, then remove it from where it was (``was``; None: new)."""
        nid, folder = record.notification.id, record.folder
        atomic_write(self._path(nid, folder), json.dumps(record.to_dict(), indent=1, sort_keys=True) + "\n")
        if was is not None and was != folder:
            self._path(nid, was).unlink(missing_ok=True)

    def get(self, nid: str) -> Record | None:
        with self._locked(nid):
            return self._find(nid)[0]

    def records(self, folder: str = "") -> list[Record]:
        """The records in the outbox itself (pending), or in ``sent`` or ``failed``. Each file is read
        whole (they are only ever replaced atomically), so no lock is needed."""
        base = self.root / folder if folder else self.root
        out = []
        for path in sorted(base.glob("*.json")) if base.is_dir() else []:
            if not folder and any(self._path(path.stem, f).is_file() for f in (SENT_DIR, FAILED_DIR)):
                path.unlink(missing_ok=True)  # a leftover of an interrupted move (see _find)
                continue
            record = self._read(path)
            if record is not None:
                out.append(record)
        return out

    def enqueue(self, notification: Notification, now: float, max_attempts: int | None = None) -> bool:
        """Write the notification to the outbox, every notifier pending. False when its id is already known
        (queued, sent or given up): a notification is never queued twice."""
        with self._locked(notification.id):
            if self._find(notification.id)[0] is not None:
                return False
            deliveries = {name: Delivery(next_attempt_at=now) for name in dict.fromkeys(notification.notifiers)}
            self._write(Record(notification, deliveries, now, max_attempts), None)
        failpoints.hit("outbox.queued")
        return True

    def next_due_at(self) -> float | None:
        """When the next pending attempt is due (the poller can sleep until then)."""
        times = [d.next_attempt_at for r in self.records() for d in r.deliveries.values() if d.state == PENDING]
        return min(times) if times else None

    def prune(self, now: float, keep: float = KEEP_SENT) -> int:
        """Delete sent notifications older than ``keep`` seconds. Returns how many."""
        removed = 0
        for record in self.records(SENT_DIR):
            last = max((d.sent_at or 0.0 for d in record.deliveries.values()), default=0.0)
            if last and now - last >= keep:
                with self._locked(record.notification.id):
                    self._path(record.notification.id, SENT_DIR).unlink(missing_ok=True)
                removed += 1
        return removed

    # -- delivery ----------------------------------------------------------------------------------

    def deliver_due(self, now: float, ids: Iterable[str] | None = None) -> list[Result]:
        """Attempt every due (notification, notifier) pair once, concurrently; ``ids`` limits the pass to
        those notifications. Returns the results of the attempts that ended in this pass."""
        wanted = set(ids) if ids is not None else None
        with self._pass_locked():
            if self._last_prune is None or now - self._last_prune >= 3600:
                self._last_prune = now
                self.prune(now)
            claims = []
            for record in self.records():
                n = record.notification
                if wanted is not None and n.id not in wanted:
                    continue
                for name, d in record.deliveries.items():
                    if d.due(now):
                        notifier = self.notifiers.get(name)
                        claims.append(_Claim(n, name, notifier.plugin if notifier else "?", d.attempts + 1,
                                             notifier.timeout if notifier else 1.0))
            return self._run(claims, now) if claims else []

    def _run(self, claims: list[_Claim], now: float) -> list[Result]:
        """Run the attempts: at most ``max_workers`` at once, and at most ``per_notifier`` per notifier, so
        a hanging service ties up only its own slots and the others' attempts start and end meanwhile."""
        done: queue.Queue[tuple[int, Result | None]] = queue.Queue()
        waiting: dict[str, deque[tuple[int, _Claim]]] = {}
        for i, claim in enumerate(claims):
            waiting.setdefault(claim.notifier, deque()).append((i, claim))
        busy: dict[str, int] = dict.fromkeys(waiting, 0)
        running: dict[int, tuple[_Claim, float]] = {}
        results: dict[int, Result | None] = {}
        while any(waiting.values()) or running:
            started = True
            while started and len(running) < self.max_workers:
                started = False
                for name, line in waiting.items():  # round robin over the notifiers with a free slot
                    if line and busy[name] < self.per_notifier and len(running) < self.max_workers:
                        i, claim = line.popleft()
                        busy[name] += 1
                        running[i] = (claim, _clock())
                        started = True
                        # Daemon threads: an attempt that outlives its deadline is abandoned, and must
                        # neither hold back the pass nor keep the process alive at exit.
                        threading.Thread(target=self._attempt, args=(i, claim, now, done), daemon=True,
                                         name=f"ao-notify-{claim.notifier}").start()
            deadline = min(start + c.timeout + DEADLINE_GRACE for c, start in running.values())
            try:
                i, result = done.get(timeout=max(0.0, deadline - _clock()))
                if i in running:
                    busy[running.pop(i)[0].notifier] -= 1
                    results[i] = result
            except queue.Empty:
                pass
            t = _clock()
            for i, (claim, start) in list(running.items()):
                if t >= start + claim.timeout + DEADLINE_GRACE:
                    del running[i]
                    busy[claim.notifier] -= 1
                    message = f"{claim.plugin}: no answer within {claim.timeout:g}s"
                    results[i] = (self._finish(claim, False, message, False, now, t - start)
                                  or self._recorded(claim, t - start))  # it answered just in time after all
        return [r for _, r in sorted(results.items()) if r is not None]

    def _recorded(self, claim: _Claim, elapsed: float) -> Result | None:
        """The result of ``claim`` as the record has it (when the attempt recorded itself)."""
        record = self.get(claim.notification.id)
        d = record.deliveries.get(claim.notifier) if record else None
        if d is None or d.attempts < claim.attempt:
            return None
        retry_at = d.next_attempt_at if d.state == PENDING else None
        return Result(claim.notification.id, claim.notifier, claim.plugin, d.state == SENT, claim.attempt,
                      d.last_error, d.state != PENDING, retry_at, elapsed)

    def _attempt(self, i: int, claim: _Claim, now: float, done: queue.Queue) -> None:
        start = _clock()
        ok, error, permanent = True, "", False
        notifier = self.notifiers.get(claim.notifier)
        try:
            if notifier is None:
                raise DeliveryError(f"notifier '{claim.notifier}' is not configured", permanent=True)
            notifier.send(claim.notification)
            failpoints.hit("outbox.delivered")
        except DeliveryError as exc:
            ok, error, permanent = False, str(exc), exc.permanent
        except Exception as exc:  # a bug or an unexpected library error: retried like any failure
            ok, error = False, f"{claim.plugin}: {type(exc).__name__}: {exc}"
        result: Result | None
        try:
            result = self._finish(claim, ok, error, permanent, now, _clock() - start)
            failpoints.hit("outbox.recorded")
        except Exception as exc:  # the record could not be written: say so; the pair stays due
            result = Result(claim.notification.id, claim.notifier, claim.plugin, False, claim.attempt,
                            f"cannot record the outcome: {exc}", final=False)
            events.log(self.data_dir, f"outbox: {result.error}", console=self.console, secrets=self.secrets)
        done.put((i, result))

    def _finish(self, claim: _Claim, ok: bool, error: str, permanent: bool, now: float,
                elapsed: float) -> Result | None:
        """Record how an attempt ended, unless it is stale. None when nothing was recorded."""
        error = events.scrub(error, self.secrets)
        nid = claim.notification.id
        with self._locked(nid):
            record, was = self._find(nid)
            d = record.deliveries.get(claim.notifier) if record else None
            if record is None or d is None or d.state == SENT:
                return None
            if ok and d.attempts in (claim.attempt - 1, claim.attempt):
                # the normal case, or an attempt that answered after the pass gave up on it but before any retry
                new = after_attempt(d, claim.attempt, True, "", False, now, self.policy)
            elif not ok and d.state == PENDING and d.attempts == claim.attempt - 1:
                new = after_attempt(d, claim.attempt, False, error, permanent, now, self.policy, record.max_attempts)
            else:
                return None  # an abandoned attempt failing late, or another pass got there first
            record.deliveries[claim.notifier] = new
            self._write(record, was)
        n = claim.notification
        at = now + elapsed  # when the attempt ended, on the pass's clock (frozen in tests, real in use)
        common = {"id": nid, "notifier": claim.notifier, "plugin": claim.plugin, "attempt": claim.attempt,
                  "priority": n.priority, "project": n.project, "session": n.session, "notification_type": n.type,
                  "elapsed_ms": round(elapsed * 1000)}
        if new.state == SENT:
            events.append(self.data_dir, "notification.sent", ts=at, secrets=self.secrets, **common)
            return Result(nid, claim.notifier, claim.plugin, True, claim.attempt, elapsed=elapsed)
        final = new.state == FAILED
        retry_at = None if final else new.next_attempt_at
        events.append(self.data_dir, "notification.failed", ts=at, secrets=self.secrets, **common, error=error, final=final,
                      next_attempt_at=events.iso(retry_at) if retry_at is not None else None)
        if final:
            tries = f"{claim.attempt} attempt{'s' if claim.attempt != 1 else ''}"
            events.log(self.data_dir, f"gave up sending [{n.priority}] '{n.title}' to {claim.notifier} after {tries}: "
                                      f"{error} (notification {nid})", ts=at, console=self.console, secrets=self.secrets)
        return Result(nid, claim.notifier, claim.plugin, False, claim.attempt, error, final, retry_at, elapsed)


@dataclass
class NotifyExecutor:
    """Carries out ``notify`` and ``escalate`` actions by queueing them: a notification counts as delivered
    (for the ledger) once it is durably in the outbox; the outbox takes it from there."""

    outbox: Outbox
    clock: Callable[[], float] = field(default=lambda: time.time())  # looked up per call: freezegun can fake it

    def execute(self, action: Action) -> Outcome:
        if action.action not in ("notify", "escalate", "pause", "kill"):  # pause, kill: the notice of the act
            return Outcome(False, f"not a notification: {action.action}")
        now = self.clock()
        try:
            self.outbox.enqueue(from_action(action, now), now)
        except (AoError, OSError) as exc:
            return Outcome(False, f"cannot queue the notification: {exc}")
        return Outcome(True)



def send_test(config: Any, name: str | None = None, priority: str | None = None,
              clock: Callable[[], float] = time.time) -> tuple[Notification, list[dict[str, Any]]]:
    """``ao notify test`` and ``ao doctor --notify``: one test notification through the outbox, tried once.

    To ``name``; else to the notifiers routed for ``priority``; else to every configured or routed one.
    Returns the notification and one result row per notifier."""
    from ao import notify
    from ao.errors import did_you_mean
    from ao.reactions import PRIORITIES

    if name is not None:
        if notify.settings_for(config, name) is None:
            known = [*config.notifiers, *(b for b in notify.BUILTIN if b not in config.notifiers)]
            raise AoError(f"unknown notifier '{name}'{did_you_mean(name, known)}; configured: {', '.join(known)}")
        targets = [name]
    elif priority is not None:
        targets = config.notifier_names(priority)
    else:
        targets = [*config.notifiers, *(n for p in PRIORITIES for n in config.notifier_names(p))]
    now = clock()
    notification = notify.build_test_notification(priority or "info", targets, now)
    outbox = Outbox.from_config(config)
    try:
        outbox.enqueue(notification, now, max_attempts=1)  # a test is tried once: no retries left behind
        results = {r.notifier: r for r in outbox.deliver_due(now, ids=[notification.id])}
    finally:
        outbox.close()
    rows = []
    for target in notification.notifiers:
        r = results.get(target)
        plugin = outbox.notifiers[target].plugin if target in outbox.notifiers else "?"
        rows.append({"notifier": target, "plugin": plugin, "ok": bool(r and r.ok),
                     "error": (r.error if r else "not attempted"),
                     "elapsed_ms": round(r.elapsed * 1000) if r else None})
    return notification, rows
