"""The reaction engine: rule files + merged config compiled into durable_rules, evaluated once per cycle.

This is the only module that touches durable_rules. Per project, one ruleset holds:

- one rule per trigger (``<reaction>#<n>``), with the reaction's thresholds inlined;
- a routing rule per priority (``route:<priority>``): a notification fact of priority P gets the notifier
  set of P. Reaction rules assert notification facts, so routing is chained from them;
- catch-all rules for session and project facts, because durable_rules raises (and, inside a batch,
  crashes) on a fact no rule matches.

Per cycle every session fact (and one project fact) is asserted under a fresh durable state id, and the
state is deleted afterwards; no durable_rules timer is used, and nothing here reads a clock: ``now`` is
passed in. Facts fire every matching rule; a trigger callback runs the ledger step of SPEC 3.1 for its
(session, reaction) and turns ACT or ESCALATE into an :class:`~ao.actions.Action`.

durable_rules notes (2.0.28): its own regex dialect is a whole-string subset without anchors, so
``matches`` conditions are evaluated with RE2 (linear time, ``rulefiles.compile_regex``) before the assert and reach the rules as
boolean flags; exceptions raised inside actions are swallowed into the state, so callbacks record them
and we re-raise; its Host starts dispatch threads, which we do not want, so ``_QuietHost`` skips them.
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

from ao import facts, ledger
from ao.actions import Action, Executor, Outcome
from ao.config import Config, Project
from ao.durations import format_duration
from ao.errors import AoError
from ao.ledger import ACT, ESCALATE, PROJECT_KEY, Entry, LedgerStore, MemoryLedgerStore
from ao.reactions import PRIORITIES, Reaction
from ao.rulefiles import All, AnyOf, Cond, Node, Not, Ref, Rulebook, Trigger, compile_regex

_NEGATE = {"eq": "ne", "ne": "eq", "gt": "lte", "gte": "lt", "lt": "gte", "lte": "gt", "matches": "nomatch",
           "nomatch": "matches"}
_ruleset_ids = itertools.count(1)


class EngineError(AoError):
    """durable_rules refused or failed; wraps its exceptions so no caller needs to import it."""


# ------------------------------------------------------------------------------------------- compiling

@dataclass
class CompiledTrigger:
    name: str  # the durable rule name
    trigger: Trigger
    reaction: Reaction
    when: Node  # with $references resolved
    condition: dict[str, Any]  # the durable_rules condition


@dataclass
class CompiledProject:
    project: Project
    reactions: dict[str, Reaction]
    triggers: list[CompiledTrigger]
    routing: dict[str, tuple[str, ...]]
    regexes: dict[str, tuple[str, str]] = field(default_factory=dict)  # flag -> (field, pattern)
    expressions: dict[str, Node] = field(default_factory=dict)  # flag -> a trigger too large for durable_rules
    waits: dict[str, list[Node]] = field(default_factory=dict)  # reaction -> its triggers' wait_while, resolved

    @property
    def stuck_threshold(self) -> int:
        stuck = self.reactions.get("agent-stuck")
        return stuck.threshold if stuck and stuck.threshold is not None else 600

    def definition(self) -> dict[str, Any]:
        """The durable_rules ruleset, as JSON-able data (``ao rules show --json``)."""
        rules: dict[str, Any] = {}
        for ct in self.triggers:
            rules[ct.name] = {"all": [{"m": ct.condition}]}
        for priority, names in self.routing.items():
            rules[f"route:{priority}"] = {"all": [{"m": {"$and": [{"kind": "notification"}, {"priority": priority}]}}],
                                          "notifiers": list(names)}
        rules["observe:session"] = {"all": [{"m": {"kind": "session"}}]}
        rules["observe:project"] = {"all": [{"m": {"kind": "project"}}]}
        return rules


def compile_project(config: Config, project: Project, book: Rulebook) -> CompiledProject:
    """One project's triggers and routing, with every ``$name`` replaced by the reaction's value."""
    compiled = CompiledProject(project=project, reactions=dict(project.reactions), triggers=[],
                               routing={p: tuple(config.notifier_names(p)) for p in PRIORITIES})
    for key, triggers in sorted(book.triggers_for(project.id).items()):
        reaction = project.reactions.get(key)
        if reaction is None:
            continue  # a rule for a reaction this config does not configure (validation reports it)
        for n, trigger in enumerate(triggers):
            if any(_project_value(project, ref) is None for ref in trigger.references() if ref in PROJECT_REFERENCES):
                continue  # reads a setting this project leaves unset (e.g. no budget): the trigger is off
            when = _resolve(trigger.when, reaction, project)
            if trigger.scope == "session" and reaction.action in HELD_WHILE_PAUSED:
                # Nothing may type into an agent a human paused (SPEC 12): the situation waits until they resume it.
                when = All(when.items + (Cond("paused", "eq", False),))
                compiled.waits.setdefault(key, []).append(All((Cond("paused", "eq", True),)))
            scope_kind = "session" if trigger.scope == "session" else "project"
            body = _to_durable(when, compiled.regexes)
            condition = {"$and": [{"kind": scope_kind}, *(body["$and"] if "$and" in body else [body])]}
            if _groups(condition) > MAX_DURABLE_GROUPS:
                flag = f"__when{len(compiled.expressions)}"
                compiled.expressions[flag] = when
                condition = {"$and": [{"kind": scope_kind}, {flag: True}]}
            compiled.triggers.append(CompiledTrigger(f"{key}#{n}", trigger, reaction, when, condition))
            if trigger.wait_while is not None:
                compiled.waits.setdefault(key, []).append(_resolve(trigger.wait_while, reaction, project))
    return compiled


def compile_config(config: Config, book: Rulebook | None = None) -> dict[str, CompiledProject]:
    if book is None:
        from ao.rulefiles import load_rulebook

        book, problems = load_rulebook(config)
        if problems:
            raise AoError(problems=problems)
    return {pid: compile_project(config, p, book) for pid, p in config.projects.items()}


HELD_WHILE_PAUSED = ("send-to-agent", "pause")
PROJECT_REFERENCES = ("budget.session", "budget.project")  # $names read from the project, not the reaction


def _project_value(project: Project, name: str) -> Any:
    return project.budget.get(name.split(".", 1)[1])


def _resolve(node: Node, reaction: Reaction, project: Project) -> Node:
    if isinstance(node, Cond):
        if isinstance(node.value, Ref):
            name = node.value.name
            value = _project_value(project, name) if name in PROJECT_REFERENCES else reaction.value(name)
            return Cond(node.field, node.op, value)
        return node
    if isinstance(node, Not):
        return Not(_resolve(node.item, reaction, project))
    return type(node)(tuple(_resolve(i, reaction, project) for i in node.items))


def _negate(node: Node) -> Node:
    """durable_rules has no negation, so push `not` down to the conditions (De Morgan)."""
    if isinstance(node, Cond):
        if node.op == "in":
            return All(tuple(Cond(node.field, "ne", v) for v in node.value))
        return Cond(node.field, _NEGATE[node.op], node.value)
    if isinstance(node, Not):
        return node.item
    if isinstance(node, All):
        return AnyOf(tuple(_negate(i) for i in node.items))
    return All(tuple(_negate(i) for i in node.items))


def _to_durable(node: Node, regexes: dict[str, tuple[str, str]]) -> dict[str, Any]:
    if isinstance(node, Not):
        return _to_durable(_negate(node.item), regexes)
    if isinstance(node, (All, AnyOf)):
        parts = [_to_durable(i, regexes) for i in node.items]
        if not parts:  # an empty `all` always holds; an empty `any` (e.g. from `not: {}`) never does
            return _ALWAYS if isinstance(node, All) else _NEVER
        if len(parts) == 1:
            return parts[0]
        key = "$and" if isinstance(node, All) else "$or"
        return {key: [q for p in parts for q in (p[key] if list(p) == [key] else [p])]}  # flat: fewer groups
    name, op, value = node.field, node.op, node.value
    if op in ("matches", "nomatch"):
        flag = next((f for f, spec in regexes.items() if spec == (name, value)), None)
        if flag is None:
            flag = f"__re{len(regexes)}"
            regexes[flag] = (name, value)
        return {flag: op == "matches"}
    if op == "eq":
        return {name: value}
    if op == "in":
        alternatives = [{name: v} for v in value]
        return alternatives[0] if len(alternatives) == 1 else {"$or": alternatives}
    return {{"ne": "$neq", "gt": "$gt", "gte": "$gte", "lt": "$lt", "lte": "$lte"}[op]: {name: value}}


_ALWAYS = {"$or": [{"kind": "session"}, {"kind": "project"}]}
_NEVER = {"kind": "never"}
# durable_rules 2.0.28 keeps a condition's and/or groups in at most 32 expressions, two per group, and refuses
# the whole ruleset beyond ("error code: 113"); a larger trigger is evaluated in Python and reaches its rule
# as a flag, like a regex.
MAX_DURABLE_GROUPS = 15


def _groups(condition: Any) -> int:
    if isinstance(condition, dict):
        return sum((k in ("$and", "$or")) + _groups(v) for k, v in condition.items())
    if isinstance(condition, list):
        return sum(_groups(c) for c in condition)
    return 0


@functools.lru_cache(maxsize=256)
def _regex(pattern: str) -> Any:
    return compile_regex(pattern)


def evaluate_node(node: Node, fact: Mapping[str, Any]) -> bool:
    """The same semantics as the compiled rules, in Python (for ``ao rules explain``)."""
    if isinstance(node, Not):
        return not evaluate_node(node.item, fact)
    if isinstance(node, All):
        return all(evaluate_node(i, fact) for i in node.items)
    if isinstance(node, AnyOf):
        return any(evaluate_node(i, fact) for i in node.items)
    actual, value = fact.get(node.field), node.value
    if node.op == "matches":
        return _regex(value).search(str(actual)) is not None
    if node.op == "in":
        return actual in value
    if node.op in ("gt", "gte", "lt", "lte") and not isinstance(actual, (int, float)):
        return False
    return {"eq": lambda: actual == value, "ne": lambda: actual != value, "gt": lambda: actual > value,
            "gte": lambda: actual >= value, "lt": lambda: actual < value, "lte": lambda: actual <= value}[node.op]()


# ------------------------------------------------------------------------------------------ evaluating

def _quiet_host() -> Any:
    from durable import engine as durable

    class QuietHost(durable.Host):
        def _run(self) -> None:  # no background dispatch threads: we drive every assert ourselves
            pass

    return QuietHost()


@dataclass
class _Cycle:
    now: int
    facts: dict[str, dict[str, Any]]
    details: Mapping[str, Mapping[str, Any]]
    handled: set[tuple[str, str]] = field(default_factory=set)
    actions: list[Action] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)


class Engine:
    """Evaluates one project's compiled rules against each cycle's facts, keeping the ledgers."""

    def __init__(self, compiled: CompiledProject, store: LedgerStore | None = None,
                 render: Callable[..., tuple[str, str]] | None = None) -> None:
        from durable import engine as durable

        self.compiled = compiled
        self.project = compiled.project.id
        self.store = store or MemoryLedgerStore()
        self.ledgers: dict[str, dict[str, Entry]] = self.store.load(self.project)
        self._dirty: set[str] = set()
        self._render = render or render_action
        self._cycle: _Cycle | None = None
        self._pending_route: Action | None = None  # an escalation routed outside a cycle (see _route)
        self._sid = itertools.count(1)
        self._nid = itertools.count(1)
        self._rx = {flag: (name, compile_regex(pattern)) for flag, (name, pattern) in compiled.regexes.items()}
        self._name = f"ao:{self.project}:{next(_ruleset_ids)}"
        definition: dict[str, Any] = {}
        for ct in compiled.triggers:
            definition[ct.name] = {"all": [{"m": ct.condition}], "run": self._trigger_callback(ct)}
        for priority in PRIORITIES:
            definition[f"route:{priority}"] = {
                "all": [{"m": {"$and": [{"kind": "notification"}, {"priority": priority}]}}],
                "run": self._route_callback(compiled.routing[priority])}
        definition["observe:session"] = {"all": [{"m": {"kind": "session"}}], "run": _ignore}
        definition["observe:project"] = {"all": [{"m": {"kind": "project"}}], "run": _ignore}
        self._host = _quiet_host()
        try:
            self._host.set_rulesets({self._name: definition})
        except Exception as exc:  # durable_rules raises bare Exceptions for bad definitions
            raise EngineError(f"durable_rules rejected the compiled rules of project {self.project}: {exc}") from None
        self._durable = durable

    def close(self) -> None:
        ruleset = self._host._ruleset_directory.pop(self._name, None)
        if ruleset is not None:
            import durable_rules_engine

            durable_rules_engine.delete_ruleset(ruleset._handle)

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the cycle ---------------------------------------------------------------------------------

    def evaluate(self, session_facts: Iterable[Mapping[str, Any]], now: int,
                 details: Mapping[str, Mapping[str, Any]] | None = None,
                 project_usage: Mapping[str, Any] | None = None) -> list[Action]:
        """Decide what to do for this observation. Non-ACT ledger changes are kept in memory; an ACT
        is recorded only once :meth:`settle` hears it was delivered. ``project_usage``: the project's usage
        totals (cleaned-up sessions included); by default the sum of ``session_facts``."""
        sid = str(next(self._sid))
        by_session = {str(f["session"]): dict(f) for f in session_facts}
        cycle = _Cycle(now=now, facts=by_session, details=details or {})
        payload = []
        for fact in by_session.values():
            payload.append({**fact, **self._flags(fact), "kind": "session", "sid": sid})
        project_fact = facts.project_fact(self.project, list(by_session.values()), project_usage)
        payload.append({**project_fact, **self._flags(project_fact), "kind": "project", "sid": sid})
        by_session[PROJECT_KEY] = project_fact
        self._cycle = cycle
        try:
            self._host.assert_facts(self._name, payload)
        except (self._durable.MessageNotHandledException, self._durable.MessageObservedException) as exc:
            raise EngineError(f"rule engine: {exc.message}") from None
        finally:
            self._cycle = None
            self._host.delete_state(self._name, sid)
        if cycle.errors:
            raise cycle.errors[0]
        self._clear_unmatched(cycle)
        return cycle.actions

    def _flags(self, fact: Mapping[str, Any]) -> dict[str, bool]:
        """The conditions evaluated in Python (regexes, oversized triggers), as boolean fields of the fact."""
        flags = {flag: rx.search(str(fact.get(name, ""))) is not None for flag, (name, rx) in self._rx.items()}
        flags.update({flag: evaluate_node(node, fact) for flag, node in self.compiled.expressions.items()})
        return flags

    def settle(self, action: Action, outcome: Outcome, now: int) -> list[Action]:
        """Record an action's delivery. Returns an escalation when delivery has failed too often."""
        if action.action not in SETTLED or outcome.held:
            return []  # held: the ledger stays as decided, so the same ACT comes again next cycle
        session = action.session or PROJECT_KEY
        entry = self.ledgers.get(session, {}).get(action.reaction, Entry())
        if action.reaction not in self.compiled.reactions:
            return []  # a decision finished after a restart, for a reaction no longer configured
        if outcome.ok and entry.occurrence == action.occurrence and entry.attempts >= action.attempt > 0:
            return []  # settled already (a decision finished after a restart): count it once
        reaction = self.compiled.reactions[action.reaction]
        entry, escalate = ledger.delivered(entry, action.occurrence, outcome.ok, outcome.error,
                                           ledger.handling(reaction))
        self._put(session, action.reaction, entry)
        if not escalate:
            return []
        fact = action.fact
        return [self._make(reaction, fact, session, ESCALATE, f"could not deliver: {outcome.error}", entry, now,
                           action.occurrence)]

    def save(self) -> None:
        for session in sorted(self._dirty):
            self.store.save(self.project, session, self.ledgers.get(session, {}))
        self._dirty.clear()

    # -- callbacks ---------------------------------------------------------------------------------

    def _trigger_callback(self, ct: CompiledTrigger) -> Callable[[Any], None]:
        scope = ct.trigger.scope

        def callback(c: Any) -> None:
            cycle = self._cycle
            if cycle is None:
                return
            try:
                session = str(c.m["session"]) if scope == "session" else PROJECT_KEY
                key = (session, ct.reaction.key)
                if key in cycle.handled:
                    return  # another trigger of the same reaction already matched this fact
                cycle.handled.add(key)
                fact = cycle.facts[session]
                occurrence = str(fact.get(ct.trigger.occurrence, ""))
                entry = self.ledgers.get(session, {}).get(ct.reaction.key, Entry())
                if _in_grace(ct.reaction, entry, cycle.now):
                    occurrence += GRACE  # a warning now; the action itself once the grace has passed
                result = ledger.step(entry, True, occurrence, cycle.now, ct.reaction)
                self._put(session, ct.reaction.key, result.entry)
                if result.decision in (ACT, ESCALATE):
                    action = self._make(ct.reaction, fact, session, result.decision, result.reason, result.entry,
                                        cycle.now, occurrence, details=cycle.details.get(session, {}),
                                        route=False, all_facts=cycle.facts)
                    cycle.actions.append(action)
                    if action.priority is not None and action.action != "send-to-agent":
                        c.assert_fact({"kind": "notification", "priority": action.priority,
                                       "index": len(cycle.actions) - 1, "nid": next(self._nid)})
            except BaseException as exc:  # durable_rules would swallow it
                cycle.errors.append(exc)

        return callback

    def _route_callback(self, notifiers: tuple[str, ...]) -> Callable[[Any], None]:
        def callback(c: Any) -> None:
            if self._cycle is not None:
                self._cycle.actions[c.m["index"]].notifiers = notifiers
            elif self._pending_route is not None:
                self._pending_route.notifiers = notifiers

        return callback

    def _route(self, action: Action) -> None:
        """Route a notification decided outside a cycle (an escalation after failed deliveries)."""
        self._pending_route = action
        sid = f"route-{next(self._nid)}"
        try:
            self._host.assert_fact(self._name, {"kind": "notification", "priority": action.priority, "sid": sid,
                                                "nid": 0})
        finally:
            self._pending_route = None
            self._host.delete_state(self._name, sid)

    def _clear_unmatched(self, cycle: _Cycle) -> None:
        for session, entries in list(self.ledgers.items()):
            for key, entry in list(entries.items()):
                if (session, key) in cycle.handled or entry == Entry():
                    continue
                if session != PROJECT_KEY and session not in cycle.facts:
                    continue  # not observed this cycle: no evidence either way
                reaction = self.compiled.reactions.get(key)
                if reaction is None:
                    continue
                fact = cycle.facts.get(session, {})
                if any(evaluate_node(w, fact) for w in self.compiled.waits.get(key, ())):
                    continue  # undecided (e.g. CI still running): neither a trigger nor a clear
                result = ledger.step(entry, False, "", cycle.now, reaction)
                self._put(session, key, result.entry)

    def _put(self, session: str, key: str, entry: Entry) -> None:
        entries = self.ledgers.setdefault(session, {})
        if entries.get(key) != entry:
            if entry == Entry():
                entries.pop(key, None)
            else:
                entries[key] = entry
            self._dirty.add(session)

    def _make(self, reaction: Reaction, fact: Mapping[str, Any], session: str, decision: str, reason: str,
              entry: Entry, now: int, occurrence: str, details: Mapping[str, Any] | None = None,
              route: bool = True, all_facts: Mapping[str, Mapping[str, Any]] | None = None) -> Action:
        if decision == ESCALATE:
            kind, priority = "escalate", reaction.priority or "urgent"
        elif not reaction.auto:
            kind, priority = "notify", reaction.priority or "action"
        elif occurrence.endswith(GRACE):
            kind, priority = "notify", reaction.priority or "action"
        elif reaction.action in ("notify", "auto-merge"):
            kind, priority = reaction.action, reaction.priority or "info"
        elif reaction.action in ("pause", "kill"):  # done to the agent, and a human is told
            kind, priority = reaction.action, reaction.priority or "warning"
        else:
            kind, priority = "send-to-agent", reaction.priority
        budget = self.compiled.project.budget.get("project" if session == PROJECT_KEY else "session")
        variables = _variables(self.project, session, fact, reaction, entry, now, reason, details or {},
                               kind, all_facts or {}, budget)
        title, text = self._render(reaction, kind, variables)
        action = Action(project=self.project, session=None if session == PROJECT_KEY else session,
                        reaction=reaction.key, action=kind, priority=priority, notifiers=(), title=title,
                        text=text, occurrence=occurrence, reason=reason or _reason(kind, reaction),
                        attempt=entry.attempts + (1 if decision == ACT else 0),
                        budget=entry.first_at if entry.first_at is not None else now, fact=dict(fact))
        if route and kind != "send-to-agent":
            self._route(action)
        return action


def _ignore(c: Any) -> None:
    pass


SETTLED = ("send-to-agent", "notify", "auto-merge", "pause", "kill")  # actions whose delivery the ledger records
GRACE = "~grace"  # occurrence suffix of a `kill` reaction's warning, before its threshold (the grace) has passed


def _in_grace(reaction: Reaction, entry: Entry, now: int) -> bool:
    """A `kill` reaction warns first and kills once its trigger has held for ``threshold`` (SPEC 12)."""
    if reaction.action != "kill" or not reaction.auto or not reaction.threshold:
        return False
    first = entry.first_at if entry.first_at is not None else now
    return now - first < reaction.threshold


def _reason(kind: str, reaction: Reaction) -> str:
    if kind == "notify" and not reaction.auto:
        return f"auto is off; would have done {reaction.action}"
    return "triggered"


def _variables(project: str, session: str, fact: Mapping[str, Any], reaction: Reaction, entry: Entry, now: int,
               reason: str, details: Mapping[str, Any], kind: str,
               all_facts: Mapping[str, Mapping[str, Any]], budget: Any = None) -> dict[str, Any]:
    since = now - entry.first_at if entry.first_at is not None else 0
    variables: dict[str, Any] = {
        "session_id": "" if session == PROJECT_KEY else session, "project_id": project,
        "pr_url": fact.get("pr_url", ""), "pr_number": fact.get("pr_number", 0), "branch": fact.get("branch", ""),
        "base_branch": fact.get("base_branch", ""), "issue": fact.get("issue", ""),
        "review": fact.get("review", "none"),
        "duration": format_duration(since if reaction.key not in ("agent-stuck", "agent-idle")
                                    else fact.get("idle_seconds", since)),
        "attempts": entry.attempts, "retries": reaction.retries if reaction.retries is not None else "",
        "reason": reason, "reaction": reaction.key, "priority": reaction.priority or "",
        "action": reaction.action, "auto_off": not reaction.auto,
        "tokens_in": fact.get("tokens_in", 0), "tokens_out": fact.get("tokens_out", 0),
        "cost_usd": fact.get("cost_usd", 0.0), "issue_state": fact.get("issue_state", "none"),
        "budget": budget if budget is not None else "",
        "grace": format_duration(max(0, (entry.first_at or now) + (reaction.threshold or 0) - now))
                 if reaction.action == "kill" and reaction.auto and kind == "notify" else "",
    }
    if session == PROJECT_KEY:
        sessions = [f for s, f in sorted(all_facts.items()) if s != PROJECT_KEY and f.get("role", "worker") == "worker"]
        variables["summary"] = [{"session_id": f["session"], "issue": f.get("issue", ""), "pr_url": f.get("pr_url", ""),
                                 "status": f.get("status", ""), "duration": format_duration(f.get("age_seconds", 0))}
                                for f in sessions] if reaction.include_summary else []
        variables["session_count"] = len(sessions)
    variables.update(details)
    if kind == "send-to-agent":  # SPEC 8: what untrusted people wrote never reaches an agent
        variables["untrusted_comments"] = []
    return variables


def render_action(reaction: Reaction, kind: str, variables: Mapping[str, Any]) -> tuple[str, str]:
    """(title, text) of an action from the reaction's message, its template, or the built-in template."""
    from ao import paths, templates

    folder = paths.data_folder("templates")
    if kind == "escalate":
        text = templates.render_named("escalate", variables)
    elif reaction.message is not None:
        text = templates.render(reaction.message, variables)
    elif reaction.template is not None:
        text = templates.render_named(reaction.template, variables)
    else:
        audience = "agent" if kind == "send-to-agent" else "notify"
        name = f"{audience}/{reaction.key}.md.j2"
        if not (folder / name).is_file():
            name = f"{audience}/_default.md.j2"
        text = templates.render_named(name, variables)
    if kind == "send-to-agent":
        return "", text
    return templates.split_title(text)


# ------------------------------------------------------------------------------------------ convenience

def run_cycle(engine: Engine, session_facts: Iterable[Mapping[str, Any]], now: int, executor: Executor,
              details: Mapping[str, Mapping[str, Any]] | None = None) -> list[tuple[Action, Outcome]]:
    """Evaluate, execute every action, settle the results, persist the ledgers."""
    done: list[tuple[Action, Outcome]] = []
    queue = engine.evaluate(session_facts, now, details)
    while queue:
        action = queue.pop(0)
        outcome = executor.execute(action)
        done.append((action, outcome))
        queue.extend(engine.settle(action, outcome, now))
    engine.save()
    return done
