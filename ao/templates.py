"""Jinja templates for every message ao writes (SPEC section 6).

Templates come from the config (trusted: the user wrote them) or from the built-in ``templates/`` folder.
Everything that comes from outside (CI logs, comments, issue text, bot and author names) is only ever a
variable's *value*: it is cleaned of escape sequences and control characters, capped, and printed inside a
code fence that it cannot close, so it can neither run template code nor pass itself off as our own words.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ao.durations import format_duration
from ao.errors import AoError, did_you_mean
from ao.paths import data_folder

if TYPE_CHECKING:  # jinja2 is imported lazily: the CLI must start fast
    from jinja2.sandbox import SandboxedEnvironment

VARIABLES: dict[str, str] = {
    "session_id": "the session, e.g. app-3",
    "project_id": "the project id from the config",
    "pr_url": "link to the session's pull request ('' when none)",
    "pr_number": "the pull request number (0 when none)",
    "branch": "the session's branch",
    "base_branch": "the branch the PR merges into",
    "issue": "the issue the session works on (untrusted text)",
    "review": "the PR's review state: none, pending, approved or changes_requested",
    "ci_logs": "failing checks with their fenced log tails, ready to print",
    "failed_checks": "failing checks: list of {name, url, log_tail}; prints as fenced logs",
    "review_comments": "trusted review comments: list of {author, path, line, body, url}; prints fenced",
    "bot_comments": "automated reviewers' comments, same shape as review_comments",
    "bot_name": "the automated reviewer that commented",
    "untrusted_comments": "comments by people outside the trusted associations, same shape as review_comments; "
                          "in notifications only, never in messages to agents",
    "duration": "how long the situation has lasted, e.g. 12m",
    "attempts": "how many times ao has acted on this reaction",
    "retries": "how many attempts the reaction allows before escalating",
    "reason": "why ao escalates: retries used up, time passed, could not deliver",
    "reaction": "the reaction key, e.g. ci-failed",
    "priority": "the notification priority: urgent, action, warning or info",
    "action": "what the reaction does (or would have done): send-to-agent, notify, auto-merge",
    "auto_off": "true when ao did not act because the reaction has auto: false",
    "summary": "per-session results: list of {session_id, issue, pr_url, status, duration}",
    "session_count": "how many sessions the summary covers",
    "tokens_in": "tokens the agent (or, for a project reaction, the project) has read so far",
    "tokens_out": "tokens the agent (or the project) has written so far",
    "cost_usd": "what the agent (or the project) has cost so far, in USD, from the price table",
    "budget": "the budget in USD that applies (budget.session, or budget.project for a project reaction)",
    "issue_state": "the tracker's state of the session's issue: open, inactive, closed (none: unknown)",
    "grace": "for a kill reaction's warning: how long until the session is killed, e.g. 10m",
}

# The reference docs write camelCase placeholders; both spellings work.
ALIASES: dict[str, str] = {
    "sessionId": "session_id", "projectId": "project_id", "prUrl": "pr_url", "prNumber": "pr_number",
    "baseBranch": "base_branch", "ciLogs": "ci_logs", "failedChecks": "failed_checks",
    "reviewComments": "review_comments", "botComments": "bot_comments", "botName": "bot_name",
    "untrustedComments": "untrusted_comments", "tokensIn": "tokens_in", "tokensOut": "tokens_out",
    "costUsd": "cost_usd", "issueState": "issue_state",
}

UNTRUSTED: frozenset[str] = frozenset(
    {"ci_logs", "failed_checks", "review_comments", "bot_comments", "untrusted_comments", "issue", "bot_name",
     "reason", "summary"})

LOG_CAP = 4000       # per check: the tail of a log is where the error is
COMMENT_CAP = 2000
ISSUE_CAP = 8000
REASON_CAP = 1000    # delivery errors can carry terminal output
FIELD_CAP = 300      # names, authors, paths, urls: one line each

_INTS = {"pr_number", "attempts", "retries", "session_count", "tokens_in", "tokens_out", "cost_usd"}
_SHAPES: dict[str, tuple[str, ...]] = {
    "failed_checks": ("name", "url", "log_tail"),
    "review_comments": ("author", "path", "line", "body", "url"),
    "bot_comments": ("author", "path", "line", "body", "url"),
    "untrusted_comments": ("author", "path", "line", "body", "url"),
    "summary": ("session_id", "issue", "pr_url", "status", "duration"),
}
_TEXT = {"failed_checks": "log_tail", "summary": "session_id"}
# (cap, keep the tail, may span lines); any other untrusted string is one capped line
_LONG: dict[str, tuple[int, bool]] = {
    "log_tail": (LOG_CAP, True), "ci_logs": (LOG_CAP, True), "body": (COMMENT_CAP, False),
    "issue": (ISSUE_CAP, False), "reason": (REASON_CAP, False),
}

_ESCAPES = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"                      # CSI: colours, cursor moves
    r"|\x9b[0-?]*[ -/]*[@-~]"                       # 8-bit CSI
    r"|\x1b\][^\x07\x1b\n]*(?:\x07|\x1b\\)?"        # OSC: titles, hyperlinks (an unterminated one
    r"|\x1b[PX^_][^\x1b\n]*(?:\x1b\\)?"             # or DCS/SOS/PM/APC string eats one line, no more)
    r"|\x1b[ -/]*[0-~]?"                            # any other ESC sequence (or a lone ESC)
)
# C0/C1 controls except \t and \n, plus bidi overrides that make text read differently than it runs
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def clean(text: str, cap: int, tail: bool = False) -> str:
    """Strip escape sequences and control characters, then cap to ``cap`` characters with a marker."""
    text = _CONTROLS.sub("", _ESCAPES.sub("", str(text).replace("\r\n", "\n")))
    if len(text) <= cap:
        return text
    marker = f"[... {len(text) - cap} characters cut ...]"
    return f"{marker}\n{text[-cap:]}" if tail else f"{text[:cap]}\n{marker}"


def fence(text: str) -> str:
    """Quote ``text`` in a code fence longer than any backtick run inside it, so the text cannot close it."""
    text = str(text).strip("\n")
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    ticks = "`" * max(3, longest + 1)
    return f"{ticks}\n{text}\n{ticks}" if text else f"{ticks}\n{ticks}"


def _line(text: Any) -> str:
    """One short line: a newline in a name could fake structure around it."""
    return re.sub(r"\s+", " ", clean(str(text), FIELD_CAP)).strip()


def _cell(value: Any) -> str:
    """A markdown table cell."""
    return (_line(value) or "-").replace("|", r"\|")


def _clean_value(key: str, value: Any) -> Any:
    if isinstance(value, str):
        if key in _LONG:
            cap, tail = _LONG[key]
            return clean(value, cap, tail)
        return _line(value)
    if isinstance(value, Mapping):
        return {k: _clean_value(str(k), v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean_value(key, v) for v in value]
    return value


class _Quoted(list[dict[str, Any]]):
    """A list of dicts that is still iterable in templates but prints as markdown with fenced text."""

    _text, _empty = "body", "(no text)"

    def _heading(self, item: dict) -> str:
        raise NotImplementedError

    def __str__(self) -> str:
        return "\n\n".join(f"{self._heading(i)}\n{fence(i[self._text]) if i[self._text] else self._empty}"
                           for i in self)


class _Checks(_Quoted):
    _text, _empty = "log_tail", "(no log)"

    def _heading(self, item: dict) -> str:
        return f"{item['name'] or 'check'} failed" + (f" ({item['url']}):" if item["url"] else ":")


class _Comments(_Quoted):
    def _heading(self, item: dict) -> str:
        where = f"{item['path']}:{item['line']}" if item["path"] and item["line"] else item["path"]
        return (item["author"] or "someone") + (f" on {where}" if where else "") + \
            (f" ({item['url']}):" if item["url"] else ":")


_LIST_TYPES: dict[str, type[list]] = {
    "failed_checks": _Checks, "review_comments": _Comments, "bot_comments": _Comments, "untrusted_comments": _Comments, "summary": list}


class _Context(dict):
    """Marks a mapping build_context already made, so building again changes nothing."""


def _rows(key: str, value: Any) -> list[dict]:
    rows = []
    for item in value or []:
        # a bare string is taken as the entry's text (a comment body, a log)
        item = _clean_value(key, dict(item) if isinstance(item, Mapping) else {_TEXT.get(key, "body"): str(item)})
        for field in _SHAPES[key]:
            item.setdefault(field, "")
            if item[field] is None:
                item[field] = ""
        if key == "summary" and isinstance(item["duration"], (int, float)):
            item["duration"] = format_duration(item["duration"])
        rows.append(item)
    return rows


def build_context(raw: Mapping[str, Any]) -> dict:
    """Template variables from raw values: untrusted text cleaned and fenced, every known name defined."""
    if isinstance(raw, _Context):
        return _Context(raw)
    values = {ALIASES[k]: v for k, v in raw.items() if k in ALIASES and ALIASES[k] not in raw}
    values.update({k: v for k, v in raw.items() if k not in ALIASES})
    ctx = _Context(values)  # unknown extras pass through: the engine may add its own
    for name in VARIABLES:
        value = values.get(name)
        if name in _LIST_TYPES:
            ctx[name] = _LIST_TYPES[name](_rows(name, value if isinstance(value, (list, tuple)) else []))
        elif name == "auto_off":
            ctx[name] = bool(value)
        elif value is None:
            ctx[name] = 0 if name in _INTS else ""
        elif name == "duration" and isinstance(value, (int, float)):
            ctx[name] = format_duration(value)
        elif name == "ci_logs":
            ctx[name] = fence(clean(str(value), LOG_CAP, tail=True)) if str(value).strip() else ""
        elif name in UNTRUSTED:
            ctx[name] = _clean_value(name, str(value))
        else:
            ctx[name] = value
    if not ctx["ci_logs"]:
        ctx["ci_logs"] = str(ctx["failed_checks"])
    if not ctx["pr_number"] and (m := re.search(r"/pulls?/(\d+)", str(ctx["pr_url"]))):
        ctx["pr_number"] = int(m.group(1))
    if not ctx["session_count"]:
        ctx["session_count"] = len(ctx["summary"])
    ctx.update({alias: ctx[name] for alias, name in ALIASES.items()})
    return ctx


@functools.cache
def _env() -> SandboxedEnvironment:
    import jinja2
    from jinja2.sandbox import SandboxedEnvironment

    env = SandboxedEnvironment(
        undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=False,
        trim_blocks=True, lstrip_blocks=True,
        loader=jinja2.FileSystemLoader(str(data_folder("templates"))),  # built-ins may include each other
    )
    env.filters.update(fence=fence, cell=_cell)
    return env


# Jinja regions (raw blocks first) are kept as they are; only a bare {name} outside them is converted.
_BRACES = re.compile(
    r"(\{%-?\s*raw\s*-?%\}.*?\{%-?\s*endraw\s*-?%\}|\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\})"
    r"|\{([A-Za-z_][A-Za-z0-9_]*)\}", re.S)


def convert_single_braces(source: str) -> str:
    """Turn the reference docs' ``{ci_logs}`` into ``{{ ci_logs }}``; other braces (JSON) stay as written."""
    def one(m: re.Match[str]) -> str:
        name = m.group(2)
        return f"{{{{ {name} }}}}" if name and (name in VARIABLES or name in ALIASES) else m.group(0)
    return _BRACES.sub(one, source)


def _first_line(source: str, name: str) -> int:
    """Zero-based line of the first use of ``name``, preferring uses inside Jinja tags over prose."""
    word = re.compile(rf"\b{re.escape(name)}\b")
    for tag in re.finditer(r"\{\{.*?\}\}|\{%.*?%\}", source, re.S):
        if m := word.search(tag.group(0)):
            return source[:tag.start() + m.start()].count("\n")
    m = word.search(source)
    return source[:m.start()].count("\n") if m else 0


def check(source: str) -> list[tuple[str, int]]:
    """Problems in a template as (message, zero-based line offset): syntax errors and unknown variables."""
    import jinja2
    from jinja2 import meta

    env = _env()
    source = convert_single_braces(source)
    try:
        ast = env.parse(source)
        env.compile(ast)  # unknown filters and tests only show up here
    except jinja2.TemplateSyntaxError as e:
        return [(f"template syntax error: {e.message}", max((e.lineno or 1) - 1, 0))]
    known = set(VARIABLES) | set(ALIASES) | set(env.globals)
    problems = []
    for name in sorted(meta.find_undeclared_variables(ast) - known):
        hint = did_you_mean(name, sorted(set(VARIABLES) | set(ALIASES)))
        problems.append((f"unknown template variable '{name}'{hint}", _first_line(source, name)))
    return problems


@functools.lru_cache(maxsize=512)
def _compiled(source: str) -> Any:
    """Compiling is far dearer than rendering, and a cycle renders the same few templates many times."""
    return _env().from_string(convert_single_braces(source))


def render(source: str, variables: Mapping[str, Any]) -> str:
    """Render a template with cleaned variables; any failure is an AoError, never a Jinja traceback."""
    import jinja2

    try:
        return _compiled(source).render(build_context(variables)).rstrip()
    except jinja2.TemplateSyntaxError as e:
        raise AoError(f"template syntax error at line {e.lineno}: {e.message}") from e
    except jinja2.TemplateError as e:  # undefined names, sandbox refusals, missing includes
        raise AoError(f"template error: {e.message or e}") from e
    except Exception as e:  # a template can divide by zero or compare a string with a number
        raise AoError(f"template error: {type(e).__name__}: {e}") from e


def _find(name: str, base: Path | None) -> Path | None:
    if not name:
        return None
    folders = ([base] if base is not None else []) + [data_folder("templates")]
    for folder in folders:
        for suffix in ("", ".j2", ".md.j2"):
            path = folder / Path(name + suffix).expanduser()
            if path.is_file():
                return path
    return None


def exists(name: str, base: Path) -> bool:
    """Whether ``name`` is a template file relative to ``base`` (the config's folder) or a built-in one."""
    return _find(name, base) is not None


def load_source(name: str, base: Path | None = None) -> str:
    path = _find(name, base)
    if path is None:
        where = f"{base} or " if base is not None else ""
        raise AoError(f"template '{name}' not found in {where}the built-in templates ({data_folder('templates')})")
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise AoError(f"cannot read template {path}: {e}") from e


def render_named(name: str, variables: Mapping[str, Any], base: Path | None = None) -> str:
    try:
        return render(load_source(name, base), variables)
    except AoError as e:
        raise AoError(str(e) if str(e).startswith("template '") else f"template '{name}': {e}") from e


def split_title(text: str) -> tuple[str, str]:
    """A notification's title (its first non-empty line, without heading marks) and its body."""
    lines = text.strip().splitlines()
    if not lines:
        return "", ""
    return lines[0].lstrip("#").strip(), "\n".join(lines[1:]).strip()
