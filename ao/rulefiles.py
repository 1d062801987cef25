"""Rule files (SPEC 4.2): loading, validation, and the condition tree the compiler turns into rules.

Layering: the built-in triggers (``rules/*.yaml``), then the global ``rules:`` files, then a project's own
``rules:`` files. A reaction named in a layer replaces its triggers from the layers below for that scope;
several rules for one reaction in one layer are alternatives (any of them triggers it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Union

from ao import facts, paths
from ao.errors import AoError, Problem, did_you_mean
from ao.yamlsrc import Source, load_file

if TYPE_CHECKING:
    from ao.config import Config

OPERATORS = ("eq", "ne", "gt", "gte", "lt", "lte", "in", "matches")
ORDERED = ("gt", "gte", "lt", "lte")


@dataclass(frozen=True)
class Ref:
    """``$name``: a value read from the reaction's config when the rule is compiled."""

    name: str

    def __str__(self) -> str:
        return f"${self.name}"


@dataclass(frozen=True)
class Cond:
    field: str
    op: str
    value: Any  # a scalar, a Ref, a tuple (for `in`), or a regex string (for `matches`)

    def __str__(self) -> str:
        symbol = {"eq": "==", "ne": "!=", "gt": ">", "gte": ">=", "lt": "<", "lte": "<=", "in": "in",
                  "matches": "=~", "nomatch": "!~"}.get(self.op, self.op)
        if isinstance(self.value, tuple):
            value = "[" + ", ".join(str(v) for v in self.value) + "]"
        elif isinstance(self.value, bool):
            value = str(self.value).lower()
        else:
            value = str(self.value)
        return f"{self.field} {symbol} {value}"


@dataclass(frozen=True)
class All:
    items: tuple["Node", ...]


@dataclass(frozen=True)
class AnyOf:
    items: tuple["Node", ...]


@dataclass(frozen=True)
class Not:
    item: "Node"


Node = Union[Cond, All, AnyOf, Not]


@dataclass(frozen=True)
class Trigger:
    reaction: str
    when: All
    occurrence: str
    scope: str = "session"
    description: str = ""
    file: str = ""
    line: int = 0
    wait_while: All | None = None  # while this holds, an observation neither triggers nor counts as clear

    def references(self) -> set[str]:
        nodes = [self.when] + ([self.wait_while] if self.wait_while is not None else [])
        return {c.value.name for n in nodes for c in conditions(n) if isinstance(c.value, Ref)}

    @property
    def origin(self) -> str:
        return f"{self.file}:{self.line}"


def conditions(node: Node) -> Iterator[Cond]:
    if isinstance(node, Cond):
        yield node
    elif isinstance(node, Not):
        yield from conditions(node.item)
    else:
        for item in node.items:
            yield from conditions(item)


@dataclass
class Rulebook:
    """Triggers per scope: ``builtin``, ``global`` and one entry per project id."""

    builtin: dict[str, list[Trigger]] = field(default_factory=dict)
    global_: dict[str, list[Trigger]] = field(default_factory=dict)
    projects: dict[str, dict[str, list[Trigger]]] = field(default_factory=dict)

    def triggers_for(self, project: str) -> dict[str, list[Trigger]]:
        merged = dict(self.builtin)
        merged.update(self.global_)
        merged.update(self.projects.get(project, {}))
        return merged


# ----------------------------------------------------------------------------------------------- parse

def _fields_for(scope: str) -> dict[str, tuple[Any, Any]]:
    return facts.FIELDS if scope == "session" else facts.PROJECT_FIELDS


def parse_file(src: Source) -> tuple[list[Trigger], list[Problem]]:
    """Triggers from one loaded rule file; every problem at once."""
    from ao import schemas

    problems = schemas.problems_for(src, src.data, "rules.schema.json")
    if problems:
        return [], problems
    triggers = []
    for i, raw in enumerate(src.data["rules"]):
        at = ("rules", i)
        scope = raw.get("scope", "session")
        known = _fields_for(scope)
        before = len(problems)
        when = _parse_when(src, raw["when"], at + ("when",), known, problems)
        wait = _parse_when(src, raw["wait_while"], at + ("wait_while",), known, problems) if "wait_while" in raw else None
        if raw["occurrence"] not in known:
            problems.append(src.problem(at + ("occurrence",), _unknown_field(raw["occurrence"], known, scope)))
        if len(problems) == before:
            triggers.append(Trigger(reaction=raw["reaction"], when=when, occurrence=raw["occurrence"], scope=scope,
                                    description=raw.get("description", ""), file=src.file, line=src.where(at)[0],
                                    wait_while=wait))
    return triggers, problems


def _unknown_field(name: str, known: dict[str, Any], scope: str) -> str:
    return f"unknown {scope} fact field '{name}'{did_you_mean(name, known)}"


def _parse_when(src: Source, when: dict[str, Any], at: tuple, known: dict[str, Any],
                problems: list[Problem]) -> All:
    items: list[Node] = []
    for key, value in when.items():
        here = at + (key,)
        if key == "any":
            items.append(AnyOf(tuple(_parse_when(src, w, here + (i,), known, problems) for i, w in enumerate(value))))
        elif key == "all":
            items.append(All(tuple(_parse_when(src, w, here + (i,), known, problems) for i, w in enumerate(value))))
        elif key == "not":
            items.append(Not(_parse_when(src, value, here, known, problems)))
        elif key not in known:
            problems.append(src.problem(here, _unknown_field(key, known, "session" if known is facts.FIELDS else "project"), key=True))
        elif isinstance(value, dict):
            for op, operand in value.items():
                cond = _condition(src, key, op, operand, here + (op,), known, problems)
                if cond:
                    items.append(cond)
        else:
            cond = _condition(src, key, "eq", value, here, known, problems)
            if cond:
                items.append(cond)
    return All(tuple(items))


def _condition(src: Source, name: str, op: str, operand: Any, at: tuple, known: dict[str, Any],
               problems: list[Problem]) -> Cond | None:
    kind = known[name][0]
    if op in ORDERED and kind not in (int, float):
        problems.append(src.problem(at, f"{op} needs a number field; '{name}' is {facts.kind_name(kind)}"))
        return None
    if isinstance(operand, str) and operand.startswith("$") and op not in ("matches", "in"):
        ref = operand[1:]
        from ao.reactions import REFERENCE_NAMES

        if ref not in REFERENCE_NAMES:
            problems.append(src.problem(at, f"unknown reaction setting ${ref}; use one of "
                                            + ", ".join(f"${n}" for n in REFERENCE_NAMES)))
            return None
        return Cond(name, op, Ref(ref))
    if op == "matches":
        if kind is not str:
            problems.append(src.problem(at, f"matches needs a text field; '{name}' is {facts.kind_name(kind)}"))
            return None
        try:
            compile_regex(operand)
        except ValueError as exc:
            problems.append(src.problem(at, str(exc)))
            return None
        return Cond(name, op, operand)
    values = operand if op == "in" else [operand]
    for value in values:
        message = _value_problem(name, kind, value)
        if message:
            problems.append(src.problem(at, message))
            return None
    return Cond(name, op, tuple(values) if op == "in" else operand)


MAX_PATTERN = 1000  # characters of a `matches` pattern
REGEX_MEMORY = 8 << 20  # bytes RE2 may use for one compiled pattern


def compile_regex(pattern: Any) -> Any:
    """A ``matches`` pattern compiled with RE2, whose matching time is linear in the text: no pattern can
    hang a cycle (Python's ``re`` backtracks: ``^hotfix/(a|aa)+$`` on 50 characters never ends). What RE2
    cannot bound (backreferences, lookaround) is refused with a ValueError naming the pattern."""
    import re2

    if not isinstance(pattern, str):
        raise ValueError(f"a regex must be text, not {type(pattern).__name__}")
    if len(pattern) > MAX_PATTERN:
        raise ValueError(f"regex of {len(pattern)} characters; at most {MAX_PATTERN} are allowed")
    options = re2.Options()
    options.log_errors = False
    options.max_mem = REGEX_MEMORY
    try:
        return re2.compile(pattern, options=options)
    except re2.error as exc:
        reason = exc.args[0].decode("utf-8", "replace") if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        hint = ("; backreferences and lookarounds are not supported: regexes run with RE2, whose matching time "
                "is bounded" if "perl operator" in reason or "escape sequence" in reason else "")
        raise ValueError(f"invalid regex {pattern!r}: {reason}{hint}") from None


def _value_problem(name: str, kind: Any, value: Any) -> str | None:
    if not facts.is_kind(value, kind):
        return f"'{name}' is {facts.kind_name(kind)}; {value!r} can never match"
    allowed = facts.ENUMS.get(name) or (facts.STATUSES if name == "status" else None)
    if allowed and value not in allowed:
        return f"{value!r} is not a value of '{name}'{did_you_mean(value, allowed)}; one of: {', '.join(allowed)}"
    return None


# ------------------------------------------------------------------------------------------------ load

def load_path(path: Path, label: str | None = None) -> tuple[list[Trigger], list[Problem]]:
    try:
        return parse_file(load_file(path, label))
    except AoError as exc:
        if exc.problems:
            return [], exc.problems
        return [], [Problem(label or str(path), 0, 0, str(exc))]


def _layer(files: list[Path], problems: list[Problem]) -> dict[str, list[Trigger]]:
    layer: dict[str, list[Trigger]] = {}
    for path in files:
        triggers, found = load_path(path)
        problems.extend(found)
        for trigger in triggers:
            layer.setdefault(trigger.reaction, []).append(trigger)
    return layer


def builtin_files() -> list[Path]:
    return sorted(paths.data_folder("rules").glob("*.yaml"))


def load_rulebook(config: "Config") -> tuple[Rulebook, list[Problem]]:
    problems: list[Problem] = []
    book = Rulebook(builtin=_layer(builtin_files(), problems), global_=_layer(config.rule_files, problems))
    for pid, project in config.projects.items():
        book.projects[pid] = _layer(project.rule_files, problems)
    return book, problems
