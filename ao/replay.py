"""The fact record and replay (SPEC 12): ``ao rules test --replay FILE [--config NEW]``.

The poller records, per project and cycle, the facts it decided on and the actions it took, in
``<dataDir>/facts/<UTC day>.jsonl``: a session's whole fact when it first appears, then only the fields that
changed (the ages, which grow with the clock, are recomputed), so a quiet cycle is a line of a few dozen bytes. Files older than ``factRetention`` (7 days by
default; 0 turns the record off) are removed.

A replay rebuilds every recorded cycle's facts (ages grow with the clock, as the observer computes them) and
runs them through a fresh engine per project, with in-memory ledgers and every action counted as delivered,
like a rule test. It compares two runs: the current config against ``--config NEW``; or, without NEW, what
the poller actually did against the current config.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from ao.errors import AoError

FACTS_DIR = "facts"
_VOLATILE = ("idle_seconds", "age_seconds")


def _day(ts: float) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(ts))


def summary(action: Any) -> dict[str, Any]:
    return {"session": action.session, "reaction": action.reaction, "action": action.action,
            "priority": action.priority}


class FactLog:
    """Appends what each cycle decided on; one line per project per cycle."""

    def __init__(self, data_dir: Path, retention: int) -> None:
        self.root = Path(data_dir) / FACTS_DIR
        self.retention = retention
        self._last: dict[str, dict[str, dict[str, Any]]] = {}  # project -> session -> last recorded stable fact

    def record(self, project: str, now: float, facts: list[Mapping[str, Any]], actions: Iterable[Any],
               usage: Mapping[str, Any] | None = None) -> None:
        if self.retention <= 0:
            return
        last = self._last.setdefault(project, {})
        changed = {}
        for f in facts:
            sid = str(f["session"])
            stable = {k: v for k, v in f.items() if k not in _VOLATILE}
            before = last.get(sid)
            if before is None:
                changed[sid] = {**f, "_new": True}  # the whole fact, ages included
            elif before != stable:
                changed[sid] = {k: v for k, v in stable.items() if before.get(k) != v}  # what changed
            last[sid] = stable
        gone = sorted(set(last) - {str(f["session"]) for f in facts})
        for sid in gone:
            del last[sid]
        line: dict[str, Any] = {"at": round(now, 3), "project": project}
        if changed:
            line["facts"] = changed
        if gone:
            line["gone"] = gone
        if usage:
            line["usage"] = dict(usage)
        done = [summary(a) for a in actions]
        if done:
            line["actions"] = done
        path = self.root / f"{_day(now)}.jsonl"
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # one write on an O_APPEND descriptor: a line is never interleaved or half there after a crash
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, (json.dumps(line, separators=(",", ":"), default=str) + "\n").encode())
            finally:
                os.close(fd)
        except OSError:
            # A record that cannot be written (a full disk) never fails the cycle; the sessions whose
            # changes were lost are written whole next time.
            self._last.pop(project, None)

    def prune(self, now: float) -> None:
        if not self.root.is_dir():
            return
        oldest = _day(now - self.retention) if self.retention > 0 else "9999"
        for path in self.root.glob("*.jsonl"):
            if path.stem < oldest:
                with contextlib.suppress(OSError):
                    path.unlink()


# ---------------------------------------------------------------------------------------------- replay

@dataclass
class Cycle:
    at: float
    project: str
    facts: list[dict[str, Any]]
    usage: dict[str, Any] | None
    actions: list[dict[str, Any]] = field(default_factory=list)  # what the poller did


def read(paths: list[Path]) -> list[Cycle]:
    """Every recorded cycle, with each session's full fact rebuilt. ``paths``: files or folders of them."""
    files: list[Path] = []
    for p in paths:
        if p.is_dir():
            files += sorted(p.glob("*.jsonl"))
        elif p.is_file():
            files.append(p)
        else:
            raise AoError(f"{p}: no such fact record (the poller writes them to <dataDir>/{FACTS_DIR}/)")
    state: dict[str, dict[str, tuple[dict[str, Any], float]]] = {}
    cycles = []
    for path in files:
        with path.open(encoding="utf-8") as fh:
            for n, raw in enumerate(fh, start=1):
                try:
                    line = json.loads(raw)
                    at, project = float(line["at"]), str(line["project"])
                except (ValueError, KeyError, TypeError):
                    raise AoError(f"{path}:{n}:1: not a fact record line") from None
                known = state.setdefault(project, {})
                for sid in line.get("gone", []):
                    known.pop(sid, None)
                for sid, fact in (line.get("facts") or {}).items():
                    if fact.pop("_new", False) or sid not in known:
                        known[sid] = (fact, at)
                    else:
                        known[sid] = ({**known[sid][0], **fact}, known[sid][1])
                facts = []
                for fact, since in known.values():
                    grown = dict(fact)
                    grown["idle_seconds"] = max(0, int(at) - int(fact.get("last_activity_at", at)))
                    grown["age_seconds"] = int(fact.get("age_seconds", 0)) + max(0, int(at - since))
                    facts.append(grown)
                cycles.append(Cycle(at, project, facts, line.get("usage"), line.get("actions") or []))
    cycles.sort(key=lambda c: c.at)
    return cycles


def run(config: Any, cycles: list[Cycle]) -> list[tuple[float, str, dict[str, Any]]]:
    """The actions ``config`` decides over the recorded cycles: (time, project, action summary)."""
    from ao import engine as engine_mod
    from ao.actions import RecordingExecutor

    compiled = engine_mod.compile_config(config)
    engines: dict[str, Any] = {}
    out = []
    try:
        for c in cycles:
            if c.project not in compiled:
                continue
            if c.project not in engines:
                engines[c.project] = engine_mod.Engine(compiled[c.project])
            engine = engines[c.project]
            queue = engine.evaluate(c.facts, int(c.at), None, c.usage)
            executor = RecordingExecutor()
            while queue:
                action = queue.pop(0)
                outcome = executor.execute(action)
                out.append((c.at, c.project, summary(action)))
                queue.extend(engine.settle(action, outcome, int(c.at)))
    finally:
        for e in engines.values():
            e.close()
    return out


def recorded(cycles: list[Cycle]) -> list[tuple[float, str, dict[str, Any]]]:
    return [(c.at, c.project, a) for c in cycles for a in c.actions]


@dataclass
class Diff:
    before: Counter
    after: Counter
    only_before: list[tuple[float, str, dict[str, Any]]]
    only_after: list[tuple[float, str, dict[str, Any]]]

    def notifications(self, counts: Counter, priority: str | None = None) -> int:
        return sum(n for (reaction, action, prio), n in counts.items()
                   if action in ("notify", "escalate", "pause", "kill") and (priority is None or prio == priority))


def compare(before: list[tuple[float, str, dict[str, Any]]], after: list[tuple[float, str, dict[str, Any]]]) -> Diff:
    def key(item: tuple[float, str, dict[str, Any]]) -> tuple:
        at, project, a = item
        return (round(at, 3), project, a.get("session") or "", a["reaction"], a["action"], a.get("priority") or "")

    left, right = Counter(key(i) for i in before), Counter(key(i) for i in after)
    only_before = [i for i in before if _take(left - right, key(i))]
    only_after = [i for i in after if _take(right - left, key(i))]
    tally = lambda items: Counter((a["reaction"], a["action"], a.get("priority") or "") for _, _, a in items)  # noqa: E731
    return Diff(tally(before), tally(after), only_before, only_after)


def _take(counter: Counter, k: tuple) -> bool:
    if counter[k] > 0:
        counter[k] -= 1
        return True
    return False


def report(diff: Diff, labels: tuple[str, str], cycles: int) -> str:
    from ao.events import iso

    lines = [f"replayed {cycles} cycles: {labels[0]} vs {labels[1]}", ""]
    keys = sorted(set(diff.before) | set(diff.after))
    width = max([len(f"{r} {a}{f' ({p})' if p else ''}") for r, a, p in keys] + [20])
    lines.append(f"{'reaction / action':<{width}}  {'before':>7}  {'after':>7}")
    for r, a, p in keys:
        name = f"{r} {a}{f' ({p})' if p else ''}"
        mark = "" if diff.before[(r, a, p)] == diff.after[(r, a, p)] else "  *"
        lines.append(f"{name:<{width}}  {diff.before[(r, a, p)]:>7}  {diff.after[(r, a, p)]:>7}{mark}")
    if diff.only_before or diff.only_after:
        lines += ["", "differences:"]
        for sign, items in (("-", diff.only_before), ("+", diff.only_after)):
            for at, project, a in items[:50]:
                lines.append(f"  {sign} {iso(at)} {a.get('session') or project} {a['reaction']} {a['action']}"
                             + (f" ({a['priority']})" if a.get("priority") else ""))
            if len(items) > 50:
                lines.append(f"  {sign} ... and {len(items) - 50} more")
    lines.append("")
    lines.append(verdict(diff))
    return "\n".join(lines)


def verdict(diff: Diff) -> str:
    """"this change would have paged you 3 fewer times" (urgent notifications), and the rest in a line."""
    if not diff.only_before and not diff.only_after:
        return "no difference: this change would not have changed anything ao did"
    parts = []
    paged = diff.notifications(diff.after, "urgent") - diff.notifications(diff.before, "urgent")
    if paged:
        parts.append(f"paged you {abs(paged)} {'more' if paged > 0 else 'fewer'} time{'s' if abs(paged) != 1 else ''}")
    told = diff.notifications(diff.after) - diff.notifications(diff.before) - paged
    if told:
        parts.append(f"sent {abs(told)} {'more' if told > 0 else 'fewer'} other notification{'s' if abs(told) != 1 else ''}")
    sent = sum(n for (r, a, p), n in diff.after.items() if a == "send-to-agent") - \
        sum(n for (r, a, p), n in diff.before.items() if a == "send-to-agent")
    if sent:
        parts.append(f"sent agents {abs(sent)} {'more' if sent > 0 else 'fewer'} message{'s' if abs(sent) != 1 else ''}")
    return "this change would have " + (", ".join(parts) if parts else "acted differently (see above)")
