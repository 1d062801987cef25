"""A standing guard (issue 13): property-based fuzzing of what users write. Whatever a config file, a rule file
or a rule test holds, ao answers with a clear error (AoError, positioned) or a working result: never another
exception (a traceback), and never a hang: hypothesis' deadline fails an example that ends late, and
:func:`bounded` (SIGALRM) fails one that would never end. A hang in C code that holds the GIL (a backtracking
``re``) cannot be interrupted from Python: pytest's ``faulthandler_timeout`` (pyproject.toml) dumps its stacks.

Mutated configs start from a valid one and replace, add or delete values at random paths with hostile values:
huge numbers, durations like 110000d, backtracking regexes, control characters and NUL bytes, ${VAR}s,
deep nesting. Raw documents are arbitrary text. Rule files get random condition trees.
"""

from __future__ import annotations

import copy
import functools
import os
import signal
from datetime import timedelta
from pathlib import Path

import pytest
import yaml

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from ao import config as config_mod  # noqa: E402
from ao.errors import AoError  # noqa: E402

EXAMPLES = int(os.environ.get("AO_FUZZ_EXAMPLES", "150"))  # per property; README: "examples per run"
FUZZ = settings(max_examples=EXAMPLES, deadline=timedelta(seconds=5), derandomize=False,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
                database=None)

EXAMPLE_SECONDS = 20.0  # far past the deadline: only a hang reaches it


class Hang(Exception):
    pass


def bounded(seconds: float):
    """Run each example under a SIGALRM bound, so that a hang fails the example (hypothesis reports and
    shrinks it) rather than stalling the suite: the deadline only judges an example once it has ended."""
    def wrap(test):
        @functools.wraps(test)
        def run(*args, **kwargs):
            def hang(signum, frame):
                raise Hang(f"one example ran for more than {seconds:g} s")

            previous = signal.signal(signal.SIGALRM, hang)
            signal.setitimer(signal.ITIMER_REAL, seconds)
            try:
                return test(*args, **kwargs)
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
                signal.signal(signal.SIGALRM, previous)
        return run
    return wrap


BASE = {
    "pollInterval": "10s",
    "defaults": {"notifiers": ["log"]},
    "notifiers": {"hook": {"plugin": "webhook", "url": "https://example.invalid/hook"}},
    "notificationRouting": {"urgent": ["hook", "log"]},
    "lifecycle": {"autoCleanupOnMerge": True, "mergeCleanupIdleGrace": "5m"},
    "projects": {"app": {
        "path": "PROJECT", "defaultBranch": "main", "sessionPrefix": "app",
        "scm": {"plugin": "local", "ci": "true"}, "tracker": {"plugin": "local"},
        "agent": "command", "agentConfig": {"command": "true"},
        "reactions": {"ci-failed": {"retries": 2, "message": "CI failed on {{ branch }}"}},
    }},
    "reactions": {"agent-stuck": {"threshold": "10m"}, "approved-and-green": {"auto": True, "action": "auto-merge"}},
}

HOSTILE_TEXT = st.sampled_from([
    "", " ", "110000d", "1h30m", "-5", "9" * 40, "2d", "45s", "0", "^(a|aa)+$", "(a)\\1", "(?!x)", "[",
    "${AO_FUZZ_SET}", "${AO_FUZZ_UNSET}", "${AO_FUZZ_UNSET:-x}", "$${x}", "${", "${1BAD}", "{{ nope }}", "{% for %}",
    "\x00", "a\x00b", "\x1b[31mred\x1b[0m", "\x07\x08\r", "\udcff".encode("utf-8", "surrogatepass").decode("latin-1"),
    "~/x", "/dev/zero", "../../etc/passwd", "http://", "https://example.invalid/${AO_FUZZ_SET}", "log", "desktop",
    "urgent", "send-to-agent", "notify", "auto-merge", "tmux", "process", "claude-code", "worktree",
])
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2 ** 70), max_value=2 ** 70),
    st.floats(allow_nan=True, allow_infinity=True), HOSTILE_TEXT,
    st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x2FF, exclude_categories=("Cs",)), max_size=12),
)
VALUES = st.recursive(SCALARS, lambda children: st.one_of(
    st.lists(children, max_size=3), st.dictionaries(st.one_of(HOSTILE_TEXT, st.text(max_size=6)), children, max_size=3)),
    max_leaves=8)


def _paths(data, prefix=()):
    yield prefix
    if isinstance(data, dict):
        for k, v in data.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            yield from _paths(v, prefix + (i,))


def _mutate(data, draw):
    paths = [p for p in _paths(data) if p]
    path = draw(st.sampled_from(paths))
    parent = data
    for part in path[:-1]:
        parent = parent[part]
    op = draw(st.sampled_from(["replace", "replace", "delete", "add"]))
    if op == "delete":
        del parent[path[-1]]
    elif op == "add" and isinstance(parent, dict):
        parent[draw(st.one_of(HOSTILE_TEXT, st.text(max_size=8)))] = draw(VALUES)
    else:
        parent[path[-1]] = draw(VALUES)


def _deep(depth: int):
    value: object = "x"
    for i in range(depth):
        value = {"not": value} if i % 2 else [value]
    return value


def _load(path: Path):
    env = {"AO_FUZZ_SET": "https://example.invalid/set"}
    try:
        config_mod.load(path, env=env)
    except AoError as exc:
        assert str(exc)  # a clear message, whatever it is


@FUZZ
@given(data=st.data())
@bounded(EXAMPLE_SECONDS)
def test_mutated_configs_never_give_a_traceback_or_hang(tmp_path_factory, data):
    folder = tmp_path_factory.mktemp("fuzz")
    doc = copy.deepcopy(BASE)
    doc["projects"]["app"]["path"] = str(folder)
    for _ in range(data.draw(st.integers(min_value=1, max_value=4))):
        if not doc:
            break
        _mutate(doc, data.draw)
    if data.draw(st.booleans()) and isinstance(doc, dict):  # now and then, something deep
        doc[data.draw(st.sampled_from(["rules", "reactions", "projects", "x"]))] = _deep(data.draw(
            st.integers(min_value=10, max_value=400)))
    path = folder / "agent-orchestrator.yaml"
    try:
        text = yaml.safe_dump(doc, allow_unicode=True, sort_keys=False)
    except (yaml.YAMLError, RecursionError):
        return  # not representable as YAML: nothing a user could write
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    _load(path)


@FUZZ
@given(raw=st.one_of(st.binary(max_size=400), st.text(max_size=400).map(lambda t: t.encode("utf-8", "surrogatepass")),
                     st.sampled_from([b"a: &x [*x]", b"a: &a\n  b: *a", b"[" * 5000, b"{a: " * 3000,
                                      b"projects: !!python/object:os.system x", b"\xff\xfe", b"projects:\n\tapp: x",
                                      b"a: " + b"&x [" * 50 + b"]" * 50])))
@bounded(EXAMPLE_SECONDS)
def test_raw_documents_never_give_a_traceback_or_hang(tmp_path_factory, raw):
    path = tmp_path_factory.mktemp("raw") / "agent-orchestrator.yaml"
    path.write_bytes(raw)
    _load(path)


OPS = st.sampled_from(["eq", "ne", "gt", "gte", "lt", "lte", "in", "matches", "bogus"])
FIELDS = st.sampled_from(["branch", "ci", "pr_state", "idle_seconds", "conflicts", "status", "nope", "activity"])


def _conditions(depth: int):
    leaf = st.builds(lambda f, op, v: {f: {op: v}}, FIELDS, OPS, SCALARS)
    if depth <= 0:
        return leaf
    inner = _conditions(depth - 1)
    return st.one_of(leaf, st.builds(lambda xs: {"any": xs}, st.lists(inner, max_size=3)),
                     st.builds(lambda xs: {"all": xs}, st.lists(inner, max_size=3)),
                     st.builds(lambda x: {"not": x}, inner))


@FUZZ
@given(when=_conditions(4), occurrence=st.one_of(FIELDS, SCALARS))
@bounded(EXAMPLE_SECONDS)
def test_random_rule_files_never_give_a_traceback_or_hang(tmp_path_factory, when, occurrence):
    from ao import engine, facts

    folder = tmp_path_factory.mktemp("rules")
    rule_file = folder / "mine.yaml"
    rule_file.write_text(yaml.safe_dump({"rules": [{"reaction": "ci-failed", "when": when, "occurrence": occurrence}]},
                                        allow_unicode=True))
    doc = copy.deepcopy(BASE)
    doc["projects"]["app"]["path"] = str(folder)
    doc["rules"] = [str(rule_file)]
    path = folder / "agent-orchestrator.yaml"
    path.write_text(yaml.safe_dump(doc))
    try:
        cfg = config_mod.load(path, env={})
    except AoError as exc:
        assert str(exc)
        return
    for compiled in engine.compile_config(cfg).values():  # what validation accepts also compiles and runs
        with engine.Engine(compiled) as e:
            fact = facts.complete({"session": "app-1", "project": "app", "branch": "hotfix/" + "a" * 60 + "b"}, 0, 600)
            e.evaluate([fact], 0)


def test_a_hanging_example_fails_instead_of_stalling_the_suite():
    @settings(max_examples=1, deadline=None, database=None)
    @given(x=st.just(0))
    @bounded(0.2)
    def hangs(x):
        while True:
            pass

    with pytest.raises(Hang):
        hangs()


def test_a_hung_test_dumps_its_stacks(pytestconfig):
    assert float(pytestconfig.getini("faulthandler_timeout")) > 0
