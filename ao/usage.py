"""Token use and cost per session, read from the agents' own records (SPEC 12), incrementally.

Each agent CLI keeps its own account of what a conversation cost; we read it where it is, and never re-read
what we already counted:

- **Claude Code**: the transcripts ``<config dir>/projects/<cwd key>/**/*.jsonl``. An assistant message is
  written once *per content block*, each entry carrying the message's ``usage`` (input, output, cache read,
  cache write), so the blocks of one message (same ``message.id``) are counted once, by their largest values.
- **Codex**: the rollouts ``$CODEX_HOME/sessions/YYYY/MM/DD/rollout-*.jsonl`` whose ``session_meta`` names the
  workspace as ``cwd``; ``event_msg`` entries of type ``token_count`` carry the thread's running total
  (``info.total_token_usage``), and ``turn_context`` entries the model. Differences of the total are counted.
- **opencode**: its SQLite store (``opencode.db``): the assistant messages of the sessions whose
  ``directory`` is the workspace, summed by model; queried again only when the database file changed.
- **aider**: the cost it reports in its chat history (``<run dir>/aider.chat.history.md``, as ao launches it) ("Tokens: 2.4k sent, 187 received. Cost:
  $0.01 message, $0.05 session."): its own price, since its token counts are rounded for display.

Offsets (per file) and what was counted live in ``<dataDir>/usage/<project>.json``, one file per project,
written atomically once per cycle when something changed: a restart carries on where it stopped, and the
project's totals include sessions that were cleaned up long ago.

Cost is priced when a fact is made, from tokens per model and the price table (USD per million tokens):
:data:`BUILTIN_PRICES` (dated :data:`PRICES_AS_OF`) under the config's ``prices:``. A model neither table
knows costs what the agent itself reported (opencode, aider), else nothing, and is listed as unpriced.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import math
import os
import re
import sqlite3
import time
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from ao.agentfiles import open_regular, query_store
from ao.ledger import atomic_write

PRICES_AS_OF = "2025-11-30"


@dataclass(frozen=True)
class Price:
    """USD per million tokens. Cache reads and writes cost the input price unless given."""

    input: float
    output: float
    cache_read: float | None = None
    cache_write: float | None = None

    def cost(self, tally: list[float]) -> float:
        inp, out, read, write = tally[:4]
        return (inp * self.input + out * self.output
                + read * (self.input if self.cache_read is None else self.cache_read)
                + write * (self.input if self.cache_write is None else self.cache_write)) / 1_000_000


# Providers' list prices for the common models, as of PRICES_AS_OF (standard tier, no batch discount). A
# pattern is a glob over the model name without its provider prefix; the longest matching pattern wins.
BUILTIN_PRICES: dict[str, Price] = {
    "claude-opus-4-5*": Price(5, 25, 0.50, 6.25),
    "claude-opus-4*": Price(15, 75, 1.50, 18.75),
    "claude-3-opus*": Price(15, 75, 1.50, 18.75),
    "claude-sonnet-4*": Price(3, 15, 0.30, 3.75),
    "claude-3-7-sonnet*": Price(3, 15, 0.30, 3.75),
    "claude-3-5-sonnet*": Price(3, 15, 0.30, 3.75),
    "claude-haiku-4-5*": Price(1, 5, 0.10, 1.25),
    "claude-3-5-haiku*": Price(0.80, 4, 0.08, 1.00),
    "gpt-5*": Price(1.25, 10, 0.125),
    "gpt-5*-mini*": Price(0.25, 2, 0.025),
    "gpt-5*-nano*": Price(0.05, 0.40, 0.005),
    "gpt-4.1*": Price(2, 8, 0.50),
    "gpt-4.1-mini*": Price(0.40, 1.60, 0.10),
    "gpt-4o*": Price(2.50, 10, 1.25),
    "gpt-4o-mini*": Price(0.15, 0.60, 0.075),
    "o3*": Price(2, 8, 0.50),
    "o3-mini*": Price(1.10, 4.40, 0.55),
    "o4-mini*": Price(1.10, 4.40, 0.275),
    "gemini-2.5-pro*": Price(1.25, 10, 0.31),
    "gemini-2.5-flash*": Price(0.30, 2.50, 0.075),
}

_PROVIDER = re.compile(r"^(?:.*/)?(?:[a-z]{2}\.)?(?:anthropic\.)?")
REPORTED = "reported"  # the "model" of costs an agent reports without a model (aider)


class PriceTable:
    """The built-in prices under the config's ``prices.models`` (same glob patterns; the config wins)."""

    def __init__(self, prices: Mapping[str, Any] | None = None) -> None:
        prices = prices or {}
        self.as_of = str(prices.get("asOf") or PRICES_AS_OF)
        user = {k: Price(float(v["input"]), float(v["output"]),
                         None if v.get("cacheRead") is None else float(v["cacheRead"]),
                         None if v.get("cacheWrite") is None else float(v["cacheWrite"]))
                for k, v in (prices.get("models") or {}).items()}
        # the user's patterns first, then longest (most specific) first
        self._order = sorted(user.items(), key=lambda kv: -len(kv[0])) + \
            sorted(BUILTIN_PRICES.items(), key=lambda kv: -len(kv[0]))
        self._memo: dict[str, Price | None] = {}

    def price(self, model: str) -> Price | None:
        if model not in self._memo:
            name = _PROVIDER.sub("", model.strip().lower())
            self._memo[model] = next((p for pattern, p in self._order
                                      if fnmatch.fnmatchcase(name, pattern.lower())), None)
        return self._memo[model]


# ----------------------------------------------------------------------------------------------- tallies

# A tally, per model: [input (uncached), output, cache read, cache write, cost the agent reported (USD)]
Tally = list


def _add(models: dict[str, Tally], model: str, values: Iterable[float]) -> None:
    tally = models.setdefault(model or "unknown", [0, 0, 0, 0, 0.0])
    for i, v in enumerate(values):
        tally[i] += v


@dataclass
class Usage:
    tokens_in: int = 0        # input, cache reads and cache writes: every token the model read
    tokens_out: int = 0
    cost_usd: float = 0.0
    unpriced: list[str] = field(default_factory=list)  # models the price table does not know

    def fact_fields(self) -> dict[str, Any]:
        return {"tokens_in": self.tokens_in, "tokens_out": self.tokens_out, "cost_usd": round(self.cost_usd, 4)}


def summarize(models: Mapping[str, Tally], prices: PriceTable) -> Usage:
    usage = Usage()
    for model, t in models.items():
        usage.tokens_in += int(t[0] + t[2] + t[3])
        usage.tokens_out += int(t[1])
        price = prices.price(model) if model != REPORTED else None
        if price is not None:
            usage.cost_usd += price.cost(t)
        else:
            usage.cost_usd += float(t[4])
            if not t[4] and any(t[:4]) and model != REPORTED:
                usage.unpriced.append(model)
    return usage


def merged(sources: Mapping[str, Mapping[str, Any]]) -> dict[str, Tally]:
    models: dict[str, Tally] = {}
    for state in sources.values():
        for model, tally in (state.get("models") or {}).items():
            _add(models, model, tally)
    return models


# ---------------------------------------------------------------------------------------- reading lines

def _new_lines(path: Path, state: dict[str, Any]) -> list[bytes]:
    """The complete lines appended to ``path`` since ``state['offset']``; a file that shrank (replaced) is
    read again from the start, its earlier counts dropped. A half-written last line waits for next time."""
    try:
        size = path.stat().st_size
    except OSError:
        return []
    offset = int(state.get("offset", 0))
    if size < offset:
        state.clear()
        offset = 0
    if size == offset:
        return []
    try:
        with open_regular(path) as fh:
            fh.seek(offset)
            data = fh.read(size - offset)
    except OSError:
        return []
    end = data.rfind(b"\n")
    if end < 0:
        return []
    state["offset"] = offset + end + 1
    return data[:end].split(b"\n")


def _json(line: bytes) -> dict[str, Any] | None:
    try:
        entry = json.loads(line)
    except ValueError:
        return None
    return entry if isinstance(entry, dict) else None


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


# ------------------------------------------------------------------------------------------ claude code

RECENT = 32  # message ids remembered per transcript: the blocks of one message are written together


def read_claude(path: Path, state: dict[str, Any]) -> bool:
    """Count the new assistant entries of one Claude Code transcript into ``state``. True if anything changed."""
    changed = False
    models: dict[str, Tally] = state.setdefault("models", {})
    recent: dict[str, list[int]] = state.setdefault("recent", {})
    for line in _new_lines(path, state):
        if b'"usage"' not in line:
            continue
        entry = _json(line)
        message = entry.get("message") if entry else None
        if not entry or entry.get("type") != "assistant" or not isinstance(message, dict):
            continue
        usage = message.get("usage")
        model = str(message.get("model") or "")
        if not isinstance(usage, dict) or model == "<synthetic>":  # API errors are written as synthetic turns
            continue
        values = [_int(usage.get("input_tokens")), _int(usage.get("output_tokens")),
                  _int(usage.get("cache_read_input_tokens")), _int(usage.get("cache_creation_input_tokens"))]
        key = str(message.get("id") or entry.get("requestId") or entry.get("uuid") or "")
        seen = recent.pop(key, [0, 0, 0, 0]) if key else [0, 0, 0, 0]
        delta = [max(0, v - s) for v, s in zip(values, seen)]
        if key:
            recent[key] = [max(v, s) for v, s in zip(values, seen)]
            while len(recent) > RECENT:
                recent.pop(next(iter(recent)))
        if any(delta):
            _add(models, model, delta)
            changed = True
    return changed


def claude_files(workspace: Path, config_dir: Path) -> list[Path]:
    from ao.plugins.agent.claude_code import project_folders  # here: `ao status` needs prices, not plugins

    found: list[Path] = []
    for folder in project_folders(config_dir / "projects", workspace):
        with contextlib.suppress(OSError):
            found.extend(p for p in folder.rglob("*.jsonl") if p.is_file())
    return sorted(found)


# ------------------------------------------------------------------------------------------------ codex

def read_codex(path: Path, state: dict[str, Any]) -> bool:
    """Count a Codex rollout's new ``token_count`` totals (as differences) under the current model."""
    changed = False
    models: dict[str, Tally] = state.setdefault("models", {})
    for line in _new_lines(path, state):
        if b"token_count" not in line and b"turn_context" not in line:
            continue
        entry = _json(line)
        payload = entry.get("payload") if entry else None
        if not isinstance(payload, dict):
            continue
        if entry.get("type") == "turn_context":
            state["model"] = str(payload.get("model") or state.get("model") or "")
            continue
        info = payload.get("info") if payload.get("type") == "token_count" else None
        total = info.get("total_token_usage") if isinstance(info, dict) else None
        if not isinstance(total, dict):
            continue
        cached = _int(total.get("cached_input_tokens"))
        now = [max(0, _int(total.get("input_tokens")) - cached), _int(total.get("output_tokens")), cached,
               _int(total.get("cache_write_input_tokens"))]
        before = state.get("total") or [0, 0, 0, 0]
        delta = [n - b for n, b in zip(now, before)]
        if any(d < 0 for d in delta):  # a total that went down started counting afresh
            delta = now
        state["total"] = now
        if any(delta):
            _add(models, str(state.get("model") or ""), delta)
            changed = True
    return changed


class CodexIndex:
    """Which rollout belongs to which workspace (the ``cwd`` of its first line), read once per file.

    Only the day folders from the oldest live session's start onward are listed, once per cycle."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.cwd_of: dict[str, str] = {}   # rollout path -> cwd ("" when unreadable)
        self.by_cwd: dict[str, list[str]] = {}

    def refresh(self, since: float, now: float) -> None:
        day, last = date.fromtimestamp(since) - timedelta(days=1), date.fromtimestamp(now) + timedelta(days=1)
        root = self.home / "sessions"
        while day <= last:
            folder = root / f"{day:%Y}" / f"{day:%m}" / f"{day:%d}"
            day += timedelta(days=1)
            try:
                names = os.listdir(folder)
            except OSError:
                continue
            for name in names:
                path = str(folder / name)
                if path in self.cwd_of or not name.startswith("rollout-") or not name.endswith(".jsonl"):
                    continue
                cwd = _codex_cwd(Path(path))
                if cwd is None:
                    continue  # not written yet: look again next cycle
                self.cwd_of[path] = cwd
                self.by_cwd.setdefault(cwd, []).append(path)

    def files(self, workspace: Path) -> list[Path]:
        keys = dict.fromkeys([str(workspace), str(workspace.resolve())])
        return [Path(p) for key in keys for p in sorted(self.by_cwd.get(key, []))]


def _codex_cwd(path: Path) -> str | None:
    try:
        with open_regular(path) as fh:
            first = fh.readline(1 << 20)
    except OSError:
        return None
    if not first.endswith(b"\n"):
        return None
    entry = _json(first) or {}
    payload = entry.get("payload") if isinstance(entry.get("payload"), dict) else {}
    return str(payload.get("cwd") or "") if entry.get("type") == "session_meta" else ""


# --------------------------------------------------------------------------------------------- opencode

OPENCODE_QUERY = """
SELECT json_extract(m.data, '$.modelID'),
       SUM(COALESCE(json_extract(m.data, '$.tokens.input'), 0)),
       SUM(COALESCE(json_extract(m.data, '$.tokens.output'), 0) + COALESCE(json_extract(m.data, '$.tokens.reasoning'), 0)),
       SUM(COALESCE(json_extract(m.data, '$.tokens.cache.read'), 0)),
       SUM(COALESCE(json_extract(m.data, '$.tokens.cache.write'), 0)),
       SUM(COALESCE(json_extract(m.data, '$.cost'), 0))
FROM message m JOIN session s ON s.id = m.session_id
WHERE s.directory IN ({marks}) AND json_extract(m.data, '$.role') = 'assistant'
GROUP BY 1
"""


def _count(value: Any) -> float:
    """A token count or cost from a store the agent may have written: a finite, non-negative number, else 0
    (a sum of 1e308s is inf, and int(inf) raises)."""
    try:
        number = float(value or 0)
    except (TypeError, ValueError):
        return 0.0
    return number if math.isfinite(number) and 0 <= number < 1e15 else 0.0


def read_opencode(db: Path, workspace: Path, state: dict[str, Any], agents_own: bool = False) -> bool:
    """The workspace's assistant messages in opencode's store, by model; queried only when the file changed.
    ``agents_own``: the store is in the session's own home (see :func:`ao.agentfiles.query_store`)."""
    sig = []
    for suffix in ("", "-wal"):
        with contextlib.suppress(OSError):
            st = os.stat(f"{db}{suffix}")
            sig.append([st.st_mtime_ns, st.st_size])
    if not sig or sig == state.get("sig"):
        return False
    dirs = list(dict.fromkeys([str(workspace), str(workspace.resolve())]))
    try:
        rows = query_store(db, OPENCODE_QUERY.format(marks=",".join("?" * len(dirs))), dirs, agents_own=agents_own)
    except (sqlite3.Error, OSError):
        return False  # locked, a schema we do not know, not a file: keep what we had, try again next cycle
    models: dict[str, Tally] = {}
    for model, *values in rows:
        _add(models, str(model or ""), [int(_count(v)) for v in values[:4]] + [_count(values[4])])
    changed = models != state.get("models")
    state.update(sig=sig, models=models)
    return changed


# ------------------------------------------------------------------------------------------------ aider

AIDER_HISTORY = ".aider.chat.history.md"      # aider's default, in the workspace
AIDER_RUN_HISTORY = "aider.chat.history.md"   # where ao launches it (ao.plugins.agent.aider)
_AIDER_TOKENS = re.compile(r"Tokens: ([\d.]+k?) sent(?:, ([\d.]+k?) cache write)?(?:, ([\d.]+k?) cache hit)?, "
                           r"([\d.]+k?) received\.")
_AIDER_COST = re.compile(r"Cost: \$([\d.]+) message, \$([\d.]+) session\.")


def _aider_count(text: str | None) -> int:
    if not text:
        return 0
    return int(float(text[:-1]) * 1000) if text.endswith("k") else int(float(text))


def read_aider(path: Path, state: dict[str, Any]) -> bool:
    """aider's reported usage: the session cost it prints after each reply (restarting from 0 when aider is
    started again), and its rounded token counts."""
    changed = False
    for raw in _new_lines(path, state):
        line = raw.decode("utf-8", "replace")
        if m := _AIDER_TOKENS.search(line):
            tokens = state.setdefault("tokens", [0, 0, 0, 0])
            sent, write, hit, received = (_aider_count(g) for g in m.groups())
            tokens[0] += max(0, sent - write)
            tokens[1] += received
            tokens[2] += hit
            tokens[3] += write
            changed = True
        if m := _AIDER_COST.search(line):
            session = float(m.group(2))
            segment = float(state.get("segment", 0.0))
            if session + 1e-9 < segment:  # a new aider process: its session total starts again
                state["committed"] = float(state.get("committed", 0.0)) + segment
            state["segment"] = session
            changed = True
    if changed:
        state["models"] = {REPORTED: [*state.get("tokens", [0, 0, 0, 0]),
                                      float(state.get("committed", 0.0)) + float(state.get("segment", 0.0))]}
    return changed


# --------------------------------------------------------------------------------------------- the tracker

USAGE_DIR = "usage"
AGENTS = ("claude-code", "codex", "opencode", "aider")


@dataclass
class Locations:
    """Where the agent CLIs keep their records: in the user's HOME, or a session's own (a container's)."""

    claude: Path
    codex: Path
    opencode: Path

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Locations":
        env = os.environ if env is None else env
        home = Path(env.get("HOME") or Path.home())
        data = Path(env["XDG_DATA_HOME"]) if env.get("XDG_DATA_HOME") else home / ".local" / "share"
        return cls(claude=Path(env.get("CLAUDE_CONFIG_DIR") or home / ".claude"),
                   codex=Path(env.get("CODEX_HOME") or home / ".codex"),
                   opencode=data / "opencode" / "opencode.db")


def usage_agent(session: Any, project: Any) -> str | None:
    """Whose records tell this session's usage: its agent, or for `command`, ``agentConfig.usageFrom``."""
    agent = session.agent or (project.agent if project is not None else "")
    if agent == "command" and project is not None:
        agent = project.agent_config.get("usageFrom") or ""
    return agent if agent in AGENTS else None


class UsageTracker:
    """Reads usage for the poller, once per cycle, and keeps offsets and counts in ``<dataDir>/usage/``."""

    def __init__(self, config: Any, locations: Locations | None = None,
                 home_of: Callable[[Any], Path | None] | None = None) -> None:
        self.config = config
        self.root = Path(config.data_dir) / USAGE_DIR
        self.locations = locations or Locations.from_env()
        self.home_of = home_of or (lambda session: None)  # a session's own home (Sessions.agent_home)
        self.prices = PriceTable(config.prices)
        self.codex = CodexIndex(self.locations.codex)
        self._own: dict[Path, tuple[Locations, CodexIndex]] = {}  # per session home: its agent's records
        self._data: dict[str, dict[str, Any]] = {}
        self._dirty: set[str] = set()

    def _project(self, project: str) -> dict[str, Any]:
        if project not in self._data:
            self._data[project] = load(self.root, project)
        return self._data[project]

    def observe(self, sessions: list[Any], now: float) -> dict[str, dict[str, Any]]:
        """Read what each session's agent wrote since last time; the usage fact fields per session id."""
        homes = {s.id: self.home_of(s) for s in sessions}
        # Every Codex session still counted (an ended one gets its last read): its rollouts must be indexed,
        # in its own home's index too, which a restarted ao starts empty.
        codex = [s for s in sessions if usage_agent(s, self.config.projects.get(s.project)) == "codex"
                 and not (self._project(s.project)["sessions"].get(s.id) or {}).get("final")]
        if codex:
            since = min(s.created_at for s in codex)
            for home in dict.fromkeys(homes[s.id] for s in codex):
                self._places(home)[1].refresh(since, now)
        out = {}
        for s in sessions:
            project = self.config.projects.get(s.project)
            agent = usage_agent(s, project)
            record = self._project(s.project)["sessions"].get(s.id)
            if agent and s.workspace and not (record or {}).get("final"):
                record = self._project(s.project)["sessions"].setdefault(s.id, {"agent": agent, "sources": {}})
                run_dir = Path(self.config.data_dir) / "projects" / s.project / "run" / s.id
                if self._read(agent, Path(s.workspace), run_dir, record["sources"], homes[s.id]):
                    self._dirty.add(s.project)
                if s.terminal:  # one last read after the agent ended, then the counts are final
                    record["final"] = True
                    self._dirty.add(s.project)
            if record:
                out[s.id] = summarize(merged(record["sources"]), self.prices).fact_fields()
        return out

    def _places(self, home: Path | None) -> tuple[Locations, CodexIndex]:
        """Where to read: the user's locations, or those in a session's own home (its agent's alone)."""
        if home is None:
            return self.locations, self.codex
        if home not in self._own:
            own = Locations.from_env({"HOME": str(home)})
            self._own[home] = own, CodexIndex(own.codex)
        return self._own[home]

    def _read(self, agent: str, workspace: Path, run_dir: Path, sources: dict[str, Any],
              home: Path | None = None) -> bool:
        where, codex = self._places(home)
        if agent == "claude-code":
            files = claude_files(workspace, where.claude)
            return any([read_claude(p, sources.setdefault(str(p), {})) for p in files])
        if agent == "codex":
            return any([read_codex(p, sources.setdefault(str(p), {})) for p in codex.files(workspace)])
        if agent == "opencode":
            return read_opencode(where.opencode, workspace, sources.setdefault("opencode", {}), home is not None)
        # ao launches aider with its chat history in the session's run folder; older sessions have it in the
        # workspace
        paths = [p for p in (run_dir / AIDER_RUN_HISTORY, workspace / AIDER_HISTORY) if p.is_file()]
        return any([read_aider(p, sources.setdefault(str(p), {})) for p in paths])

    def totals(self, project: str) -> dict[str, Any]:
        """Usage of every session of the project this data dir remembers, cleaned-up ones included."""
        return self.project(project).fact_fields()

    def project(self, project: str) -> Usage:
        """Like :meth:`totals`, with the models the price table does not know."""
        return project_usage(self._project(project), self.prices)

    def save(self) -> None:
        for project in sorted(self._dirty):
            save(self.root, project, self._data[project])
        self._dirty.clear()


def load(root: Path, project: str) -> dict[str, Any]:
    path = root / f"{project}.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(data, dict) and isinstance(data.get("sessions"), dict):
            return data
    except FileNotFoundError:
        pass
    except (OSError, ValueError):
        # counts are rebuilt from the agents' records; the damaged file is kept for a look
        with contextlib.suppress(OSError):
            path.replace(path.with_name(f"{path.name}.corrupt-{int(time.time())}"))
    return {"version": 1, "sessions": {}}


def save(root: Path, project: str, data: dict[str, Any]) -> None:
    atomic_write(root / f"{project}.json", json.dumps(data, separators=(",", ":"), sort_keys=True) + "\n")


def project_usage(data: Mapping[str, Any], prices: PriceTable) -> Usage:
    models: dict[str, Tally] = {}
    for record in data.get("sessions", {}).values():
        for model, tally in merged(record.get("sources", {})).items():
            _add(models, model, tally)
    return summarize(models, prices)


def unpriced_warning(project: str, models: Iterable[str]) -> str:
    names = ", ".join(sorted(models))
    return (f"{project}: no price for {names}: its tokens count as $0, so budgets never see them; "
            f"add it under prices.models in the config")


def project_rows(config: Any, projects: Iterable[str]) -> list[dict[str, Any]]:
    """Each project's totals as the poller last stored them (what ``budget.project`` is checked against), for
    ``ao status``, ``ao doctor`` and the dashboard. Reads no agent records and changes nothing."""
    prices = PriceTable(config.prices)
    rows = []
    for pid in projects:
        try:
            data = json.loads((Path(config.data_dir) / USAGE_DIR / f"{pid}.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):  # none yet, or damaged: the poller rebuilds it from the records
            data = {}
        got = project_usage(data if isinstance(data, dict) and isinstance(data.get("sessions"), dict) else {},
                            prices)
        project = config.projects.get(pid)
        rows.append({"project": pid, **got.fact_fields(),
                     "budget_usd": project.budget.get("project") if project is not None else None,
                     "prices_as_of": prices.as_of, "unpriced": sorted(got.unpriced)})
    return rows
