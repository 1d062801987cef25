"""Configs written for the reference (the TypeScript agent-orchestrator) load in ao.

Two things happen before the schema sees a config:

- **aliases**: a reference spelling with the same meaning is rewritten to ao's (``webhookUrl`` ->
  ``webhook``, ``mergeCleanupIdleGraceMs: 300000`` -> ``mergeCleanupIdleGrace: 300``, ``permissions:
  permissionless`` -> ``skip``, per-role ``worker:``/``orchestrator:`` agent settings...). Where ao's spelling
  is better, a deprecation note says so; the config still loads.
- **reference keys ao does not use** keep failing (a key silently ignored is how the reference hid typos),
  but by name and with the reason, instead of a bare "unknown key".

Positions travel with renamed keys, so an error in an aliased value still points at its line.
"""

from __future__ import annotations

import fnmatch
from typing import Any

from ao.errors import Problem, dotted
from ao.yamlsrc import Source

SIGNATURE_HEADER = "x-hub-signature-256"
EVENT_HEADER = "x-github-event"
DELIVERY_HEADER = "x-github-delivery"

# Reference keys ao has no use for, by dotted pattern (``*`` is one path part): why, and what to do instead.
UNUSED: dict[str, str] = {
    "worktreeDir": "ao keeps each session's worktree under its data dir (<dataDir>/workspaces); remove it, or "
                   "set dataDir:",
    "terminalPort": "ao serves no separate terminal server (attach with `ao attach SESSION`); remove it",
    "directTerminalPort": "ao serves no separate terminal server (attach with `ao attach SESSION`); remove it",
    "plugins": "ao's plugins are built in (no npm or local plugin packages); remove it",
    "power": "ao does not manage sleep; keep the machine awake yourself (e.g. systemd-inhibit, caffeinate)",
    "dashboard": "the dashboard has no settings beyond port: and host:; remove it",
    "observability": "ao logs to <dataDir>/logs/orchestrator.log and events.jsonl; remove it",
    "identities": "ao uses one GitHub token (GITHUB_TOKEN, GH_TOKEN or `gh auth token`); remove it",
    "agents": "choose the agent with agent: and agentConfig: (per project, or worker:/orchestrator:); remove it",
    "projects.*.env": "ao gives agents a fixed, secret-free environment; set variables in postCreate: or the "
                      "agent's own config; remove it",
    "projects.*.orchestratorSessionStrategy": "ao reuses a live orchestrator session and starts one otherwise; "
                                              "remove it",
    "projects.*.opencodeIssueSessionStrategy": "each ao session is a fresh opencode session; remove it",
    "projects.*.decomposer": "ao does not split issues into sub-issues; remove it",
    "projects.*.storageKey": "ao keys state by project id under the data dir; remove it",
    "projects.*.branchNameTemplate": "ao names branches feat/issue-<n> (or a slug of the task); pass "
                                     "--branch to `ao spawn` for another; remove it",
    "projects.*.reviewers": "ao does not request reviewers; remove it",
    "projects.*.reviewer": "ao has no reviewer agent role; remove it",
    "projects.*.automation": "queue pick-up is configured under ao's own queue settings; remove it",
    "projects.*.inputSources": "issues come from tracker:; remove it",
    "projects.*.defaultInputSource": "issues come from tracker:; remove it",
    "projects.*.enabled": "remove the project from projects: to disable it",
    "projects.*.resolveError": "written by the reference itself; remove it",
    "projects.*.agentConfig.opencodeSessionId": "each ao session starts its own agent session; remove it",
    "projects.*.agentConfig.reasoningEffort": "not passed to agents by ao; set it in the agent's own config",
    "projects.*.reactions.*.ignoreChecks": "ao counts every failing check; remove it",
    "projects.*.reactions.*.maxRounds": "use retries: (or escalateAfter: N) to bound the rounds",
    "projects.*.reactions.*.cooldown": "ao acts once per occurrence (a new head, new comments); remove it",
    "reactions.*.ignoreChecks": "ao counts every failing check; remove it",
    "reactions.*.maxRounds": "use retries: (or escalateAfter: N) to bound the rounds",
    "reactions.*.cooldown": "ao acts once per occurrence (a new head, new comments); remove it",
    "notifiers.*.package": "ao's notifiers are built in; use plugin: apprise with an Apprise URL for others",
    "notifiers.*.path": "ao's notifiers are built in; use plugin: apprise with an Apprise URL for others",
    "projects.*.tracker.package": "ao's trackers are built in (github, linear, local); remove it",
    "projects.*.tracker.path": "ao's trackers are built in (github, linear, local); remove it",
    "projects.*.scm.package": "ao's SCMs are built in (github, local); remove it",
    "projects.*.scm.path": "ao's SCMs are built in (github, local); remove it",
    "projects.*.scm.identity": "ao uses one GitHub token; remove it",
    "projects.*.scm.githubUser": "ao uses one GitHub token; remove it",
}


def unused_reason(path: tuple) -> str:
    """Why the reference key at ``path`` is not used by ao ("" when it is not a reference key)."""
    text = dotted(tuple(p for p in path if not isinstance(p, int)))
    for pattern, why in UNUSED.items():
        if fnmatch.fnmatchcase(text, pattern) and pattern.count(".") == text.count("."):
            return why
    return ""


def explain_unknown(problems: list[Problem]) -> list[Problem]:
    """Replace "unknown key 'X'" by what the reference meant with X and why ao does not use it."""
    from ao.errors import undotted

    out = []
    for p in problems:
        if p.message.startswith("unknown key '") and p.path:
            path = undotted(p.path)
            why = unused_reason(path)
            if why:
                p = Problem(p.file, p.line, p.col, f"`{path[-1]}` is a reference setting ao does not use: {why}",
                            p.path)
        out.append(p)
    return out


# ---------------------------------------------------------------------------------------------- aliases

class _Rewriter:
    def __init__(self, src: Source, data: Any, from_env: set[tuple]) -> None:
        self.src, self.data, self.from_env = src, data, from_env
        self.notes: list[Problem] = []
        self.problems: list[Problem] = []

    def note(self, path: tuple, text: str) -> None:
        self.notes.append(self.src.problem(path, text, key=True))

    def error(self, path: tuple, text: str) -> None:
        self.problems.append(self.src.problem(path, text))

    def rename(self, parent: tuple, node: dict, old: str, new: str, value: Any = None, note: str = "") -> None:
        """Move ``node[old]`` to ``node[new]`` (optionally with a new value), positions and all."""
        if new in node:
            self.problems.append(self.src.problem(parent + (old,), f"set {new} or {old}, not both", key=True))
            return
        if note:
            self.note(parent + (old,), note)
        items = list(node.items())
        node.clear()
        for key, v in items:
            if key == old:
                node[new] = v if value is None else value
            else:
                node[key] = v
        self._move(parent + (old,), parent + (new,))

    def _move(self, old: tuple, new: tuple) -> None:
        n = len(old)
        for table in (self.src.values, self.src.keys, self.src.blocks):
            for path in [p for p in table if p[:n] == old]:
                table[new + path[n:]] = table.pop(path)
        for collection in (self.src.plain, self.from_env):
            for path in [p for p in collection if p[:n] == old]:
                collection.discard(path)
                collection.add(new + path[n:])


def apply_aliases(src: Source, data: Any, from_env: set[tuple]) -> tuple[list[Problem], list[Problem]]:
    """Rewrite reference spellings in ``data`` (in place). Returns (deprecation notes, problems)."""
    if not isinstance(data, dict):
        return [], []
    r = _Rewriter(src, data, from_env)
    lifecycle = data.get("lifecycle")
    if isinstance(lifecycle, dict) and "mergeCleanupIdleGraceMs" in lifecycle:
        ms = lifecycle["mergeCleanupIdleGraceMs"]
        if isinstance(ms, int) and not isinstance(ms, bool) and ms >= 0:
            r.rename(("lifecycle",), lifecycle, "mergeCleanupIdleGraceMs", "mergeCleanupIdleGrace", value=ms // 1000,
                     note=f"mergeCleanupIdleGraceMs is the reference's spelling; write mergeCleanupIdleGrace: "
                          f"{_duration_text(ms // 1000)}")
        else:
            r.error(("lifecycle", "mergeCleanupIdleGraceMs"), "mergeCleanupIdleGraceMs must be a whole number of "
                                                             "milliseconds (or write mergeCleanupIdleGrace: 5m)")
    for name, notifier in _items(data.get("notifiers")):
        if notifier.get("plugin") in ("slack", "discord", "teams") and "webhookUrl" in notifier:
            r.rename(("notifiers", name), notifier, "webhookUrl", "webhook",
                     note="webhookUrl is the reference's spelling; ao's is webhook:")
    defaults = data.get("defaults")
    if isinstance(defaults, dict):
        _roles(r, ("defaults",), defaults)
    for pid, project in _items(data.get("projects")):
        at = ("projects", pid)
        agent_config = project.get("agentConfig")
        if isinstance(agent_config, dict):
            _permissions(r, at + ("agentConfig",), agent_config)
            if "orchestratorModel" in agent_config:
                role = project.setdefault("orchestrator", {})
                if isinstance(role, dict):
                    role_config = role.setdefault("agentConfig", {})
                    if isinstance(role_config, dict) and "model" not in role_config:
                        role_config["model"] = agent_config["orchestratorModel"]
                    r.note(at + ("agentConfig", "orchestratorModel"), "orchestratorModel is the reference's "
                           "spelling; ao's is orchestrator: {agentConfig: {model: ...}}")
                    del agent_config["orchestratorModel"]
        if isinstance(project.get("orchestratorAgentConfig"), dict):
            role = project.setdefault("orchestrator", {})
            if isinstance(role, dict) and "agentConfig" not in role:
                role["agentConfig"] = project["orchestratorAgentConfig"]
                r._move(at + ("orchestratorAgentConfig",), at + ("orchestrator", "agentConfig"))
                r.note(at + ("orchestratorAgentConfig",), "orchestratorAgentConfig is the reference's spelling; "
                                                          "ao's is orchestrator: {agentConfig: ...}")
                del project["orchestratorAgentConfig"]
        _roles(r, at, project)
        scm = project.get("scm")
        hook = scm.get("webhook") if isinstance(scm, dict) else None
        if isinstance(hook, dict):
            _webhook(r, at + ("scm", "webhook"), hook, scm)
    return r.notes, r.problems


def _items(table: Any) -> list[tuple[str, dict]]:
    return [(k, v) for k, v in table.items() if isinstance(v, dict)] if isinstance(table, dict) else []


def _permissions(r: _Rewriter, at: tuple, agent_config: dict) -> None:
    mode = agent_config.get("permissions")
    if mode == "permissionless":
        agent_config["permissions"] = "skip"
        r.note(at + ("permissions",), "permissions: permissionless is the reference's spelling; ao's is skip")
    elif mode == "suggest":
        agent_config["permissions"] = "default"
        r.note(at + ("permissions",), "permissions: suggest (ask before every change) is ao's default; write "
                                      "default")


def _roles(r: _Rewriter, at: tuple, node: dict) -> None:
    """``worker:`` / ``orchestrator:`` with ``agent`` and ``agentConfig``: accepted as they are (ao reads them),
    with the reference's permission spellings rewritten."""
    for role in ("worker", "orchestrator"):
        settings = node.get(role)
        if isinstance(settings, dict) and isinstance(settings.get("agentConfig"), dict):
            _permissions(r, at + (role, "agentConfig"), settings["agentConfig"])


def _webhook(r: _Rewriter, at: tuple, hook: dict, scm: dict) -> None:
    if "secretEnvVar" in hook:
        r.rename(at, hook, "secretEnvVar", "secretEnv", note="secretEnvVar is the reference's spelling; ao's is "
                                                             "secretEnv")
    for key, ours in (("signatureHeader", SIGNATURE_HEADER), ("eventHeader", EVENT_HEADER),
                      ("deliveryHeader", DELIVERY_HEADER)):
        if key not in hook:
            continue
        value = hook[key]
        if not isinstance(value, str) or value.strip().lower() != ours:
            r.error(at + (key,), f"ao reads GitHub's own header here ({_title(ours)}); other webhook formats are "
                                 f"not supported: remove {key}")
        else:
            r.note(at + (key,), f"{key}: {value} is what ao reads anyway; remove it")
        _drop(r, at, hook, key)
    if "enabled" in hook:
        enabled = hook["enabled"]
        _drop(r, at, hook, "enabled")
        if enabled is False:
            r.note(at, "webhook: enabled: false is the reference's spelling; ao's is to leave webhook: out")
            del scm["webhook"]
        elif enabled is not True:
            r.error(at + ("enabled",), "enabled must be true or false")


def _drop(r: _Rewriter, at: tuple, node: dict, key: str) -> None:
    del node[key]  # its positions stay in the tables, unused


def _title(header: str) -> str:
    return "-".join("GitHub" if w == "github" else w.capitalize() for w in header.split("-"))


def _duration_text(seconds: int) -> str:
    from ao.durations import format_duration

    return format_duration(seconds)
