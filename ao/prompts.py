"""The spawn prompt (SPEC 5, 6): what a new agent is told, rendered from ``templates/spawn/worker.md.j2``.

It says who the agent is (session, project, branch already checked out), what to do (the issue, quoted as
untrusted data, or the free-form task), the extra instructions and project rules, and how to finish
(commit, push, open the PR for the project's SCM), then to stay: ao relays CI failures and reviews to it.

The issue's title, url and body come from outside: they are only ever variable *values*, cleaned of escape
sequences and control characters, capped and (the body) fenced, so they can neither run template code nor
pass for our own instructions. The task, ``--prompt`` text and rules are the user's own words.
"""

from __future__ import annotations

from pathlib import Path

from ao import templates
from ao.errors import AoError
from ao.plugins.tracker import Issue

WORKER_TEMPLATE = "spawn/worker.md.j2"

# The spawn template's variables beyond the shared ones in ao.templates.VARIABLES (session_id, project_id,
# branch, base_branch, issue); a project's own copy of the template may use any of them.
VARIABLES: dict[str, str] = {
    "issue_id": "the issue's id ('' when the session has a free-form task)",
    "issue_title": "the issue's title, one cleaned line (untrusted)",
    "issue_url": "the issue's link (untrusted)",
    "issue_body": "the issue's text, cleaned, capped and fenced (untrusted)",
    "closes": "what a PR description names to close the issue: '#12' for a number, else the id",
    "task": "the free-form task (or the instructions given with an issue)",
    "extra": "the extra instructions of `ao spawn ... --prompt`",
    "rules": "the project rules: agentRules, then the contents of agentRulesFile",
    "scm": "the project's SCM plugin: github or local",
}


def _line(text: str) -> str:
    """One short line of untrusted text: a newline in a title could fake structure around it."""
    return " ".join(templates.clean(text, templates.FIELD_CAP).split())


def _own(text: str) -> str:
    """The user's own text: kept whole, only stripped of escape sequences and control characters."""
    return templates.clean(text, len(text)).strip()


def read_rules(agent_rules: str | None, agent_rules_file: Path | None) -> str:
    """``agentRules`` then the contents of ``agentRulesFile``; an unreadable file is the user's to fix."""
    parts = [agent_rules or ""]
    if agent_rules_file is not None:
        try:
            parts.append(Path(agent_rules_file).expanduser().read_text(encoding="utf-8"))
        except UnicodeDecodeError as e:
            raise AoError(f"agentRulesFile {agent_rules_file} is not UTF-8 text; save it as UTF-8") from e
        except OSError as e:
            raise AoError(f"cannot read agentRulesFile {agent_rules_file}: {e.strerror or e}") from e
    return "\n\n".join(_own(p) for p in parts if p.strip())


def variables(*, project: str, session_id: str, branch: str, issue: Issue | None = None, task: str = "",
              extra: str = "", scm_plugin: str = "local", default_branch: str = "main",
              agent_rules: str | None = None, agent_rules_file: Path | None = None) -> dict[str, object]:
    """The spawn template's variables, untrusted values already cleaned (and the body fenced)."""
    values: dict[str, object] = {
        "session_id": session_id, "project_id": project, "branch": branch, "base_branch": default_branch,
        "issue": "", "issue_id": "", "issue_title": "", "issue_url": "", "issue_body": "", "closes": "",
        "task": _own(task), "extra": _own(extra), "rules": read_rules(agent_rules, agent_rules_file),
        "scm": scm_plugin,
    }
    if issue is not None:
        issue_id = _line(issue.id)
        label = f"#{issue_id}" if issue_id.isdigit() else issue_id
        title = _line(issue.title)
        values.update(
            issue=f"{label} {title}".strip() if title != issue_id else label,
            issue_id=issue_id, issue_title=title, issue_url=_line(issue.url), closes=label,
            issue_body=templates.fence(templates.clean(issue.body, templates.ISSUE_CAP) or "(no description)"),
        )
    return values


def build_prompt(*, project: str, session_id: str, branch: str, issue: Issue | None = None, task: str = "",
                 extra: str = "", scm_plugin: str = "local", default_branch: str = "main",
                 agent_rules: str | None = None, agent_rules_file: Path | None = None,
                 template: str = WORKER_TEMPLATE, template_base: Path | None = None) -> str:
    """The prompt a new session's agent starts with.

    ``template_base`` follows :func:`ao.templates.render_named`: a ``spawn/worker.md.j2`` under it (pass the
    config file's folder) replaces the built-in one.
    """
    values = variables(project=project, session_id=session_id, branch=branch, issue=issue, task=task,
                       extra=extra, scm_plugin=scm_plugin, default_branch=default_branch,
                       agent_rules=agent_rules, agent_rules_file=agent_rules_file)
    return templates.render_named(template, values, template_base) + "\n"


ORCHESTRATOR_TEMPLATE = "spawn/orchestrator.md.j2"


def build_orchestrator_prompt(*, session_id: str, project: str, projects: list[str], scm_plugin: str,
                              orchestrator_rules: str | None, template_base: Path | None = None) -> str:
    """The prompt of the orchestrator agent ``ao start`` launches: the ``ao`` commands it manages sessions with."""
    values = {"session_id": session_id, "project_id": project, "projects": ", ".join(projects),
              "scm": scm_plugin, "rules": _own(orchestrator_rules or ""), "branch": "", "base_branch": "",
              "issue": ""}
    return templates.render_named(ORCHESTRATOR_TEMPLATE, values, template_base) + "\n"
