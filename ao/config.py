"""Configuration: discovery, loading, interpolation, validation and the effective model (SPEC section 2).

``load()`` runs every check at once and raises one :class:`AoError` carrying all problems, each
positioned as ``FILE:LINE:COL: message (at dotted.path)``:

1. YAML with positions (:mod:`ao.yamlsrc`);
2. ``${VAR}`` interpolation;
3. the JSON Schema (``schemas/config.schema.json``);
4. semantic checks a schema cannot express (routing targets, prefixes, reaction triggers, templates,
   rule files).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from ao import paths, reactions
from ao.durations import DurationError, parse_duration
from ao.events import REDACTED, scrub
from ao.errors import AoError, Problem, did_you_mean, dotted, undotted
from ao.reactions import Reaction
from ao.yamlsrc import Source, load_file

CONFIG_NAMES = ("agent-orchestrator.yaml", "agent-orchestrator.yml")
BUILTIN_NOTIFIERS = ("desktop", "log")  # names usable in routing without a notifiers: entry


# --------------------------------------------------------------------------------------------- discovery

def candidates(cwd: Path | None = None, env: Mapping[str, str] | None = None) -> list[Path]:
    """Every place a config is looked for, in order (after ``--config``)."""
    env = os.environ if env is None else env
    found: list[Path] = []
    if env.get("AO_CONFIG_PATH"):
        found.append(Path(env["AO_CONFIG_PATH"]).expanduser())
    here = (cwd or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        found.extend(folder / name for name in CONFIG_NAMES)
    xdg = Path(env["XDG_CONFIG_HOME"]) if env.get("XDG_CONFIG_HOME") else Path.home() / ".config"
    found.append(xdg / "agent-orchestrator" / "config.yaml")
    found.append(Path.home() / ".agent-orchestrator.yaml")
    return found


def discover(explicit: str | Path | None = None, cwd: Path | None = None,
             env: Mapping[str, str] | None = None) -> Path:
    """The config file to use: ``--config``, then the search order of SPEC section 2."""
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise AoError(f"{path}: config file not found")
        return path
    looked = candidates(cwd, env)
    for path in looked:
        if path.is_file():
            return path
    env = os.environ if env is None else env
    places = [str(p) for p in looked if p.name != CONFIG_NAMES[1]]
    if env.get("AO_CONFIG_PATH"):
        raise AoError(f"$AO_CONFIG_PATH names {looked[0]}, which does not exist")
    raise AoError("no ao configuration found. Looked for:\n  " + "\n  ".join(places)
                  + "\nCreate one with: ao config init")


# ------------------------------------------------------------------------------------------ interpolation

_UNSET = "environment variable "
_VAR = re.compile(r"\$\$\{|\$\{([^}]*)\}|\$\{")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _interpolate_text(text: str, env: Mapping[str, str]) -> tuple[str, bool, list[str]]:
    """Expand one string. Returns (text, took a value from the environment, errors)."""
    used_env = False
    errors: list[str] = []

    def replace(match: re.Match[str]) -> str:
        nonlocal used_env
        token = match.group(0)
        if token == "$${":
            return "${"
        if match.group(1) is None:
            errors.append("unterminated ${ (write $${ for a literal ${)")
            return token
        body = match.group(1)
        name, sep, default = body.partition(":-")
        if not _NAME.match(name):
            errors.append(f"invalid variable name in ${{{body}}}")
            return token
        if name in env:
            used_env = True
            return env[name]
        if sep:
            return default
        errors.append(f"{_UNSET}{name} is not set (use ${{{name}:-default}} for a fallback)")
        return token

    return _VAR.sub(replace, text), used_env, errors


def interpolate(src: Source, env: Mapping[str, str] | None = None) -> tuple[Any, set[tuple], list[Problem]]:
    """Expand ``${VAR}`` in every string value. Returns (data, paths taken from the env, problems)."""
    import yaml

    env = os.environ if env is None else env
    from_env: set[tuple] = set()
    problems: list[Problem] = []

    def walk(value: Any, path: tuple) -> Any:
        if isinstance(value, dict):
            return {k: walk(v, path + (k,)) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v, path + (i,)) for i, v in enumerate(value)]
        if not isinstance(value, str) or "$" not in value:
            return value
        text, used_env, errors = _interpolate_text(value, env)
        problems.extend(src.problem(path, e) for e in errors)
        if used_env:
            from_env.add(path)
        if text != value and path in src.plain:
            # An unquoted `port: ${PORT}` should be a number, as if the value had been typed in.
            try:
                typed = yaml.safe_load(text)
            except yaml.YAMLError:
                typed = text
            if isinstance(typed, (int, float, bool)):
                return typed
        return text

    return walk(src.data, ()), from_env, problems


# ---------------------------------------------------------------------------------------------- schema

def schema_problems(src: Source, data: Any) -> list[Problem]:
    from ao import schemas

    return schemas.problems_for(src, data, "config.schema.json")


# -------------------------------------------------------------------------------------------- prefixes

def derive_prefix(name: str) -> str:
    """Session prefix from a project folder name (SPEC section 2)."""
    if len(name) <= 4:
        return name.lower()
    capitals = re.findall(r"[A-Z]", name)
    if len(capitals) > 1:
        return "".join(capitals).lower()
    if "-" in name or "_" in name:
        return "".join(word[0] for word in re.split(r"[-_]+", name) if word).lower()
    return name[:3].lower()


# ----------------------------------------------------------------------------------------------- model

@dataclass
class Project:
    id: str
    path: Path
    name: str
    repo: str | None
    default_branch: str
    session_prefix: str
    runtime: str                      # the runtime plugin's name
    agent: str
    workspace: str
    tracker: dict[str, Any]
    scm: dict[str, Any]
    symlinks: list[str]
    post_create: list[str]
    agent_config: dict[str, Any]
    agent_rules: str | None
    agent_rules_file: Path | None
    orchestrator_rules: str | None
    reactions: dict[str, Reaction]
    rule_files: list[Path]
    raw: dict[str, Any]
    orchestrator_agent: str = ""             # the orchestrator session's agent (``orchestrator:``), else agent
    orchestrator_agent_config: dict[str, Any] = field(default_factory=dict)
    # admission and budgets
    max_concurrent: int | None = None
    budget: dict[str, float] = field(default_factory=dict)  # session, project (USD): the project's, else top level
    max_per_status: dict[str, int] = field(default_factory=dict)
    pickup: dict[str, Any] = field(default_factory=dict)
    runtime_settings: dict[str, Any] = field(default_factory=dict)  # `runtime: {plugin: docker, image: ...}`


@dataclass
class Config:
    file: Path
    source: Source
    data: dict[str, Any]
    from_env: set[tuple]
    port: int
    host: str
    poll_interval: int
    ready_threshold: int
    data_dir: Path
    defaults: dict[str, Any]
    notifiers: dict[str, dict[str, Any]]
    routing: dict[str, list[str]]
    rule_files: list[Path]
    auto_cleanup_on_merge: bool
    merge_cleanup_idle_grace: int
    projects: dict[str, Project] = field(default_factory=dict)
    data_dir_from: str = "default"  # "AO_HOME", "dataDir" or "default" (one data dir per config file)
    notes: list[Problem] = field(default_factory=list)  # deprecations and other warnings: not errors
    # admission and budgets
    max_concurrent: int | None = None
    max_per_status: dict[str, int] = field(default_factory=dict)
    min_free_memory: int | None = None  # bytes
    prices: dict[str, Any] = field(default_factory=dict)  # the `prices:` mapping as written
    fact_retention: int = 7 * 86400  # seconds; 0: the poller records no facts

    env_values: set[str] = field(default_factory=set)  # values of the environment variables interpolated

    def project(self, name: str | None) -> Project:
        """One project by id; with ``None``, the only project (an error when there are several)."""
        if name is None:
            if len(self.projects) == 1:
                return next(iter(self.projects.values()))
            raise AoError(f"several projects are configured; choose one with --project: {', '.join(self.projects)}")
        if not isinstance(name, str):
            raise AoError(f"a project is named by its id (text), not {name!r}; configured: {', '.join(self.projects)}")
        if name not in self.projects:
            hint = did_you_mean(name, self.projects)
            raise AoError(f"unknown project '{name}'{hint}; configured: {', '.join(self.projects)}")
        return self.projects[name]

    def project_for_session(self, session: str) -> Project:
        """The project whose session prefix names this session id (``<prefix>-<n>``)."""
        prefix = session.rsplit("-", 1)[0]
        for project in self.projects.values():
            if project.session_prefix == prefix:
                return project
        if len(self.projects) == 1:
            return next(iter(self.projects.values()))
        known = ", ".join(f"{p.session_prefix}-N ({p.id})" for p in self.projects.values())
        raise AoError(f"session '{session}' belongs to no configured project; session ids look like: {known}")

    def secrets(self) -> set[str]:
        """Every value taken from the environment, for scrubbing logs and output."""
        out = {v for v in self.env_values if len(v) >= 4}
        for path in self.from_env:
            value = _get(self.data, path)
            if isinstance(value, str) and len(value) >= 4:
                out.add(value)
        return out

    def notifier_names(self, priority: str) -> list[str]:
        """Where a notification of ``priority`` goes: routing, else defaults, else log. Never nowhere."""
        names = self.routing[priority] if priority in self.routing else self.defaults.get("notifiers")
        return list(dict.fromkeys(names or ["log"]))  # `info: []` means the log only, never nowhere


def _get(data: Any, path: tuple) -> Any:
    for part in path:
        data = data[part]
    return data


# ------------------------------------------------------------------------------------------------ load

def load(explicit: str | Path | None = None, env: Mapping[str, str] | None = None,
         cwd: Path | None = None) -> Config:
    """Discover, load and fully validate the configuration."""
    path = discover(explicit, cwd=cwd, env=env)
    return from_source(load_file(path), path, env=env)


def from_source(src: Source, file: Path, env: Mapping[str, str] | None = None) -> Config:
    """Validate already-parsed YAML (a config file, or an inline mapping in a rule test)."""
    config, problems = check(src, file, env)
    if problems or config is None:
        raise AoError(problems=problems)
    return config


def check(src: Source, file: Path, env: Mapping[str, str] | None = None) -> tuple[Config | None, list[Problem]]:
    """Every problem at once, and the config built from the valid rest (None when nothing usable is left).

    Schema errors first, then what the semantic checks find in the rest: the parts the schema rejects are
    left out before the semantic checks run, so nothing is reported twice and no check sees invalid data.
    No problem message shows a value that came from the environment (a schema error quotes the value it
    rejects)."""
    env = os.environ if env is None else env
    values = _env_values(src.data, env)
    config, problems = _check(src, file, env)
    if values:
        problems = [_scrubbed(p, values) for p in problems]
    if config is not None:
        config.env_values = values
    return config, problems


def _env_values(data: Any, env: Mapping[str, str]) -> set[str]:
    """The values of every environment variable the document interpolates (its secrets, potentially)."""
    found: set[str] = set()

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for v in value.values():
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)
        elif isinstance(value, str) and "${" in value:
            for match in _VAR.finditer(value):
                name = (match.group(1) or "").partition(":-")[0]
                if env.get(name):
                    found.add(env[name])

    walk(data)
    return found


def _scrubbed(problem: Problem, values: set[str]) -> Problem:
    from dataclasses import replace

    return replace(problem, message=scrub(problem.message, values))


def _check(src: Source, file: Path, env: Mapping[str, str]) -> tuple[Config | None, list[Problem]]:
    from ao import config_compat

    data, from_env, problems = interpolate(src, env)
    if data is None:
        return None, [src.problem((), "the configuration is empty; it needs at least `projects:`")]
    notes, alias_problems = config_compat.apply_aliases(src, data, from_env)
    problems += alias_problems
    unset = {p.path for p in problems}  # a value still holding ${VAR} would only add a confusing schema error
    # Inside an agent session (the orchestrator runs `ao status`, `ao spawn`...) ao's secrets are deliberately
    # not in the environment (ao.environment): the values that need them are left unexpanded, not errors.
    absent = {p.path for p in problems if p.message.startswith(_UNSET)} if env.get("AO_SESSION") else set()

    def relevant(found: list[Problem]) -> list[Problem]:
        return [p for p in found if not any(p.path == a or p.path.startswith(a + ".") for a in absent)]

    problems += [p for p in config_compat.explain_unknown(schema_problems(src, data)) if p.path not in unset]
    problems += _message_problems(src, data)  # independent of the rest, so reported even beside schema errors
    problems += _nul_problems(src, data)
    problems = relevant(problems)
    rejected = {undotted(p.path) for p in problems}
    valid = _prune(src, data, rejected)
    config = None
    if isinstance(valid, dict) and isinstance(valid.get("projects"), dict) and valid["projects"]:
        config, semantic = _build(src, file, valid, from_env, env)
        if not semantic and not problems:
            semantic = _check_rules_and_templates(config)
        problems += relevant([p for p in semantic if not _near(undotted(p.path), rejected) or p.file != src.file])
        config.notes = sorted(set(notes))
    return config, sorted(set(problems))  # a top-level mistake is found once per project


def _near(path: tuple, rejected: set[tuple]) -> bool:
    """Whether ``path`` is at, above or below a value already reported (its problem would be a consequence)."""
    return bool(path) and any(path[:len(r)] == r or r[:len(path)] == path for r in rejected if r)


def _prune(src: Source, data: Any, rejected: set[tuple]) -> Any:
    """A copy of ``data`` without the values at ``rejected`` paths, re-checked against the schema until what
    is left is valid (removing a required key makes its parent invalid, and so on). None when nothing is left."""
    import copy

    if not rejected:
        return data
    data = copy.deepcopy(data)
    paths = set(rejected)
    for _ in range(10):
        if () in paths:
            return None
        for path in paths:
            _remove(data, path)
        paths = {undotted(p.path) for p in schema_problems(src, data)}
        if not paths:
            return data
    return None


def _remove(data: Any, path: tuple) -> None:
    """Remove the value at ``path``; a value inside a list takes the whole list with it (indexes would shift)."""
    for i, part in enumerate(path):
        if isinstance(part, int):
            path = path[:i]
            break
    parent = data
    for part in path[:-1]:
        if not isinstance(parent, dict) or part not in parent:
            return
        parent = parent[part]
    if isinstance(parent, dict):
        parent.pop(path[-1], None)


def _duration(src: Source, problems: list[Problem], path: tuple, value: Any, default: int) -> int:
    if value is None:
        return default
    try:
        return parse_duration(value)
    except DurationError as exc:
        problems.append(src.problem(path, str(exc)))
        return default


def _build(src: Source, file: Path, data: dict[str, Any], from_env: set[tuple],
           env: Mapping[str, str]) -> tuple[Config, list[Problem]]:
    problems: list[Problem] = []
    base = file.parent.resolve()
    notifiers = data.get("notifiers") or {}
    routing = data.get("notificationRouting") or {}
    defaults = {"runtime": "tmux", "agent": "claude-code", "workspace": "worktree", **(data.get("defaults") or {})}

    # Routing targets must exist (SPEC 7): a key of notifiers, or a plugin that needs no settings.
    known = set(notifiers) | set(BUILTIN_NOTIFIERS)
    targets = [(("notificationRouting", p, i), n) for p, names in routing.items() for i, n in enumerate(names)]
    targets += [(("defaults", "notifiers", i), n) for i, n in enumerate(defaults.get("notifiers") or [])]
    for path, name in targets:
        if name not in known:
            problems.append(src.problem(path, f"unknown notifier '{name}'{did_you_mean(name, known)}; "
                                              f"define it under notifiers: or use one of: {', '.join(sorted(known))}"))
    from ao import notify  # each plugin's keys must make a working Apprise URL (or webhook)

    problems += notify.config_problems(src, notifiers)

    if "readyThreshold" in data and "readyThresholdMs" in data:
        problems.append(src.problem(("readyThresholdMs",), "set readyThreshold or readyThresholdMs, not both", key=True))
    ready = _duration(src, problems, ("readyThreshold",), data.get("readyThreshold"), 300)
    if "readyThresholdMs" in data:
        ready = data["readyThresholdMs"] // 1000
    lifecycle = data.get("lifecycle") or {}

    if env.get("AO_HOME"):
        data_dir, data_dir_from = Path(env["AO_HOME"]).expanduser(), "AO_HOME"
    elif data.get("dataDir"):
        data_dir, data_dir_from = (base / Path(data["dataDir"]).expanduser()).resolve(), "dataDir"
    else:
        data_dir, data_dir_from = paths.data_dir_for(file), "default"

    if isinstance(defaults["runtime"], dict) and defaults["runtime"]["plugin"] == "docker":
        from ao.plugins.runtime import docker

        problems += [src.problem(("defaults", "runtime") + sub, message)
                     for sub, message in docker.config_problems(defaults["runtime"])]
    global_rules = [(base / Path(p).expanduser()) for p in data.get("rules") or []]
    config = Config(
        file=file, source=src, data=data, from_env=from_env,
        port=data.get("port", 3000), host=data.get("host", "127.0.0.1"),
        poll_interval=_duration(src, problems, ("pollInterval",), data.get("pollInterval"), 30),
        ready_threshold=ready, data_dir=data_dir, defaults=defaults,
        notifiers=notifiers, routing=routing, rule_files=global_rules,
        auto_cleanup_on_merge=lifecycle.get("autoCleanupOnMerge", True),
        merge_cleanup_idle_grace=_duration(src, problems, ("lifecycle", "mergeCleanupIdleGrace"),
                                           lifecycle.get("mergeCleanupIdleGrace"), 300),
        data_dir_from=data_dir_from,
    )
    admission = data.get("admission") or {}
    config.max_concurrent = data.get("maxConcurrent")
    config.max_per_status = dict(admission.get("maxPerStatus") or {})
    config.prices = dict(data.get("prices") or {})
    config.fact_retention = _duration(src, problems, ("factRetention",), data.get("factRetention"), 7 * 86400)
    if admission.get("minFreeMemory") is not None:
        from ao.admission import parse_size

        config.min_free_memory = parse_size(admission["minFreeMemory"])
    from ao import facts

    for where, caps in [(("admission", "maxPerStatus"), config.max_per_status)] + [
            (("projects", pid, "admission", "maxPerStatus"), ((raw or {}).get("admission") or {}).get("maxPerStatus") or {})
            for pid, raw in data["projects"].items()]:
        for status in caps:
            if status not in facts.STATUSES:
                problems.append(src.problem(where + (status,), f"unknown status '{status}'"
                                            f"{did_you_mean(status, facts.STATUSES)}", key=True))
    if config.poll_interval == 0:
        problems.append(src.problem(("pollInterval",), "pollInterval must be at least 1s"))

    top_reactions = data.get("reactions") or {}
    prefixes: dict[str, str] = {}
    for pid, raw in data["projects"].items():
        project = _build_project(src, base, pid, raw, defaults, top_reactions, problems)
        project.max_concurrent = raw.get("maxConcurrent")
        project.budget = {**(data.get("budget") or {}), **(raw.get("budget") or {})}
        project.max_per_status = dict((raw.get("admission") or {}).get("maxPerStatus") or {})
        project.pickup = dict(raw.get("pickup") or {})
        config.projects[pid] = project
        owner = prefixes.get(project.session_prefix)
        if owner is not None:
            where = ("projects", pid, "sessionPrefix") if "sessionPrefix" in raw else ("projects", pid)
            problems.append(src.problem(
                where, f"session prefix '{project.session_prefix}' is already used by project '{owner}'; "
                       f"set a distinct sessionPrefix on one of them (e.g. sessionPrefix: "
                       f"{_free_prefix(project.session_prefix, prefixes)})", key=True))
        else:
            prefixes[project.session_prefix] = pid
    return config, problems


def _free_prefix(prefix: str, taken: Mapping[str, str]) -> str:
    n = 2
    while f"{prefix}{n}" in taken:
        n += 1
    return f"{prefix}{n}"


def _build_project(src: Source, base: Path, pid: str, raw: dict[str, Any], defaults: dict[str, Any],
                   top_reactions: dict[str, Any], problems: list[Problem]) -> Project:
    at = ("projects", pid)
    path = Path(raw["path"]).expanduser()
    path = path if path.is_absolute() else (base / path)
    path = Path(os.path.normpath(path))
    for i, link in enumerate(raw.get("symlinks") or []):
        if Path(link).is_absolute() or ".." in Path(link).parts:
            problems.append(src.problem(at + ("symlinks", i), f"symlink '{link}' must be a relative path inside the project"))
    # Per-role settings (the reference's worker: / orchestrator:) override the project's, which override
    # the defaults'.
    worker, orchestrator = raw.get("worker") or {}, raw.get("orchestrator") or {}
    base_worker, base_orchestrator = defaults.get("worker") or {}, defaults.get("orchestrator") or {}
    base_agent = raw.get("agent", base_worker.get("agent", defaults["agent"]))
    agent = worker.get("agent", base_agent)
    base_config = {**(base_worker.get("agentConfig") or {}), **(raw.get("agentConfig") or {})}
    agent_config = {**base_config, **(worker.get("agentConfig") or {})}
    orchestrator_agent = orchestrator.get("agent", base_orchestrator.get("agent", base_agent))
    orchestrator_config = {**(raw.get("agentConfig") or {}), **(base_orchestrator.get("agentConfig") or {}),
                           **(orchestrator.get("agentConfig") or {})}
    if agent == "command" and not agent_config.get("command"):
        problems.append(src.problem(at + ("agent",), "agent 'command' needs agentConfig.command (the command line to run)"))

    merged = reactions.merge_layers(reactions.BUILTIN, top_reactions, raw.get("reactions"))
    built: dict[str, Reaction] = {}
    for key, fields in merged.items():
        if "action" not in fields:
            where = ("projects", pid, "reactions", key) if key in (raw.get("reactions") or {}) else ("reactions", key)
            hint = did_you_mean(key, reactions.BUILTIN)
            message = (f"unknown reaction '{key}'{hint}; a new reaction needs an action and a trigger rule" if hint else
                       f"reaction '{key}' needs an action (send-to-agent, notify, auto-merge, pause or kill)")
            problems.append(src.problem(where, message, key=True))
            continue
        try:
            built[key] = reactions.build(key, fields)
        except DurationError as exc:  # the schema checks the form; this catches what slips through
            problems.append(src.problem(("reactions", key), str(exc)))
    rules_file = raw.get("agentRulesFile")
    runtime, runtime_settings = _runtime(src, at, raw.get("runtime"), defaults["runtime"], problems)
    return Project(
        id=pid, path=path, name=raw.get("name", pid), repo=raw.get("repo"),
        default_branch=raw.get("defaultBranch", "main"),
        session_prefix=raw.get("sessionPrefix") or derive_prefix(path.name or pid),
        runtime=runtime, runtime_settings=runtime_settings, agent=agent,
        workspace=raw.get("workspace", defaults["workspace"]),
        tracker=raw.get("tracker") or {"plugin": "github" if raw.get("repo") else "local"},
        scm=raw.get("scm") or {"plugin": "github" if raw.get("repo") else "local"},
        symlinks=list(raw.get("symlinks") or []), post_create=list(raw.get("postCreate") or []),
        agent_config=agent_config, agent_rules=raw.get("agentRules"),
        agent_rules_file=(path / rules_file) if rules_file else None,
        orchestrator_rules=raw.get("orchestratorRules"),
        reactions=built, rule_files=[base / Path(p).expanduser() for p in raw.get("rules") or []], raw=raw,
        orchestrator_agent=orchestrator_agent, orchestrator_agent_config=orchestrator_config,
    )


def _runtime(src: Source, at: tuple, value: Any, default: Any, problems: list[Problem]) -> tuple[str, dict[str, Any]]:
    """(plugin name, settings) of a project's ``runtime``: a name, or ``{plugin: NAME, ...settings}``. The
    defaults' settings apply to a project that names the same plugin (``runtime: docker`` takes the image
    from ``defaults.runtime``)."""
    def split(v: Any) -> tuple[str, dict[str, Any]]:
        if isinstance(v, dict):
            return v["plugin"], {k: x for k, x in v.items() if k != "plugin"}
        return v, {}

    base_name, base = split(default)
    name, own = split(value) if value is not None else (base_name, {})
    settings = {**(base if name == base_name else {}), **own}
    if name == "docker":
        from ao.plugins.runtime import docker

        problems.extend(src.problem(at + ("runtime",) + sub, message) for sub, message in docker.config_problems(own))
        if not settings.get("image"):
            where = at + ("runtime",) if value is not None else at
            problems.append(src.problem(where, "runtime docker needs an image: runtime: {plugin: docker, image: "
                                               f"NAME}} here or under defaults (see {paths.doc('sandbox.md')})"))
    return name, settings


def _check_rules_and_templates(config: Config) -> list[Problem]:
    """Rule files parse, every configured reaction has a trigger, every message template renders."""
    from ao import rulefiles, templates

    problems: list[Problem] = []
    src = config.source
    book, rule_problems = rulefiles.load_rulebook(config)
    problems += rule_problems
    user_keys = set((config.data.get("reactions") or {}))
    for pid, project in config.projects.items():
        triggers = book.triggers_for(pid)
        project_keys = set((project.raw.get("reactions") or {}))
        for key in sorted(user_keys | project_keys):
            if key not in triggers and not rule_problems:
                where = ("projects", pid, "reactions", key) if key in project_keys else ("reactions", key)
                known = set(triggers)
                problems.append(src.problem(where, f"reaction '{key}' has no trigger rule{did_you_mean(key, known)}; "
                                                   "add one in a rule file listed under rules:", key=True))
        for key in sorted(set(triggers) - set(project.reactions)):
            first = triggers[key][0]
            problems.append(Problem(first.file, first.line, 1, f"rule for reaction '{key}', which is not configured; "
                                                               f"add reactions: {key}: with at least an action"))
        for key, reaction in project.reactions.items():
            for name in sorted({n for t in triggers.get(key, []) for n in t.references()} - {"budget.session",
                                                                                            "budget.project"}):
                if reaction.value(name) is None:
                    problems.append(src.problem(("reactions", key), f"the trigger of '{key}' reads ${name}, "
                                                                    f"which reaction '{key}' does not set"))
            where = ("projects", pid, "reactions", key) if "template" in (project.raw.get("reactions") or {}).get(key, {}) \
                else ("reactions", key)
            if reaction.template is not None and not templates.exists(reaction.template, config.file.parent):
                problems.append(src.problem(where + ("template",), f"template '{reaction.template}' not found"))
    return sorted(set(problems))


def _nul_problems(src: Source, data: Any, path: tuple = ()) -> list[Problem]:
    """A NUL byte in any value: no path, command or name can hold one (the OS would refuse it later)."""
    if isinstance(data, dict):
        return [p for k, v in data.items() for p in _nul_problems(src, v, path + (k,))]
    if isinstance(data, list):
        return [p for i, v in enumerate(data) for p in _nul_problems(src, v, path + (i,))]
    if isinstance(data, str) and "\0" in data:
        return [src.problem(path, "contains a NUL byte")]
    return []


def _message_problems(src: Source, data: Any) -> list[Problem]:
    """Every reaction ``message`` (top-level and per project) must parse and use only known variables."""
    from ao import templates

    tables = [(("reactions",), data.get("reactions"))] if isinstance(data, dict) else []
    projects = data.get("projects") if isinstance(data, dict) else None
    for pid, project in (projects.items() if isinstance(projects, dict) else []):
        if isinstance(project, dict):
            tables.append((("projects", pid, "reactions"), project.get("reactions")))
    problems = []
    for at, table in tables:
        for key, fields in (table.items() if isinstance(table, dict) else []):
            message = fields.get("message") if isinstance(fields, dict) else None
            if isinstance(message, str):
                where = at + (key, "message")
                for text, line_offset in templates.check(message):
                    line, col = src.line_in(where, line_offset)
                    problems.append(Problem(src.file, line, col, text, dotted(where)))
    return problems


# -------------------------------------------------------------------------------------------- data dir

OWNER_FILE = "config.json"


def data_dir_owner(data_dir: Path) -> str:
    """The config file that claimed ``data_dir`` ("" when none has)."""
    import json

    try:
        owner = json.loads((Path(data_dir) / OWNER_FILE).read_text(encoding="utf-8")).get("config")
    except (OSError, ValueError, AttributeError):
        return ""
    return owner if isinstance(owner, str) else ""


def claim_data_dir(config: Config) -> None:
    """Make ``config`` the owner of its data dir, or refuse: two configs sharing one data dir would list each
    other's sessions as unknown and fight over one poller lock. Called by every command that writes state.

    A claim by a config file that no longer exists is taken over (the file was moved or renamed)."""
    import json

    from ao.ledger import atomic_write

    mine = str(Path(config.file).expanduser().resolve())
    owner = data_dir_owner(config.data_dir)
    if owner == mine:
        return
    if owner and Path(owner).is_file():
        if config.data_dir_from == "AO_HOME":
            fix = (f"$AO_HOME ({config.data_dir}) overrides the data dir of every config: unset it, and each "
                   "config gets its own data dir")
        elif config.data_dir_from == "dataDir":
            fix = (f"remove `dataDir:` from {config.file} (each config then gets its own under "
                   f"~/{paths.STATE_ROOT}/), or point it at another folder")
        else:
            fix = f"set `dataDir:` in {config.file} to a folder of its own"
        raise AoError(f"the data dir {config.data_dir} belongs to {owner}; {config.file} cannot share it (their "
                      f"sessions and pollers would mix). To fix: {fix}")
    atomic_write(config.data_dir / OWNER_FILE, json.dumps({"config": mine}) + "\n")


# ------------------------------------------------------------------------------------------------ show

def effective(config: Config, project: str | None = None, redact: bool = True) -> dict[str, Any]:
    """The merged configuration as plain data, with values from the environment redacted."""
    data = _redacted(config.data, config.from_env) if redact else config.data
    out: dict[str, Any] = {
        "file": str(config.file),
        "port": config.port, "host": config.host,
        "pollInterval": f"{config.poll_interval}s", "readyThreshold": f"{config.ready_threshold}s",
        "dataDir": str(config.data_dir), "defaults": config.defaults,
        "notifiers": data.get("notifiers") or {},
        "notificationRouting": {p: config.notifier_names(p) for p in reactions.PRIORITIES},
        "rules": [str(p) for p in config.rule_files],
        "lifecycle": {"autoCleanupOnMerge": config.auto_cleanup_on_merge,
                      "mergeCleanupIdleGrace": f"{config.merge_cleanup_idle_grace}s"},
        **{k: data[k] for k in ("maxConcurrent", "admission", "budget", "prices") if k in data},
        "factRetention": f"{config.fact_retention}s",
        "projects": {},
    }
    chosen = [config.project(project)] if project else list(config.projects.values())
    for p in chosen:
        raw = data["projects"][p.id]
        out["projects"][p.id] = {
            **{k: v for k, v in raw.items() if k != "reactions"},
            "path": str(p.path), "name": p.name, "defaultBranch": p.default_branch,
            "sessionPrefix": p.session_prefix, "agent": p.agent, "workspace": p.workspace,
            "runtime": {"plugin": p.runtime, **p.runtime_settings} if p.runtime_settings else p.runtime,
            "tracker": raw.get("tracker", p.tracker), "scm": raw.get("scm", p.scm),
            "reactions": {k: r.to_config() for k, r in sorted(p.reactions.items())},
        }
    # Values from the environment, also where they were spliced into longer strings.
    return scrub(out, config.secrets()) if redact else out


def _redacted(data: Any, from_env: set[tuple], path: tuple = ()) -> Any:
    if path in from_env:
        return REDACTED
    if isinstance(data, dict):
        return {k: _redacted(v, from_env, path + (k,)) for k, v in data.items()}
    if isinstance(data, list):
        return [_redacted(v, from_env, path + (i,)) for i, v in enumerate(data)]
    return data
