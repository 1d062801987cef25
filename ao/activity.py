"""What an agent is doing, read from its terminal (SPEC 5): the generic fallback every agent plugin uses.

Pure functions of an :class:`~ao.plugins.agent.Observation`: no clock reads, no I/O. The observer passes
``now`` and the memo the previous call returned, so the time of the last visible change survives from one
observation to the next (and across restarts: the memo is kept in the session's metadata).

Rules, first match wins:

1. the terminal is gone -> ``exited`` (``at`` = the last activity we knew of);
2. the bottom of the pane shows a question or a permission prompt -> ``waiting_input``;
3. otherwise the last activity is the newest of: the pane changing (its hash differs from the memo's), the
   runtime's last-output time, the memo's time, and the session's start (a fresh session with nothing to
   see yet counts as just started, so it is ``active`` rather than ``unknown``);
4. quiet for less than ``ACTIVE_WINDOW`` -> ``active``; less than ``obs.ready_threshold`` -> ``ready``;
   else ``idle`` — unless the bottom of a quiet pane shows a usage/rate-limit message: ``blocked``.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from ao.plugins.agent import Activity, Observation
from ao.templates import clean

ACTIVE_WINDOW = 30.0   # seconds since the last visible change during which an agent counts as working
TAIL_LINES = 15        # dialogs (a permission box with numbered choices) fill the bottom of the screen
PROMPT_LINES = 3       # a one-line "(y/n)" prompt only counts at the very bottom: answered ones scroll up
BLOCKED_LINES = 5

MEMO_HASH = "pane_hash"
MEMO_AT = "last_activity_at"


@dataclass(frozen=True)
class Pattern:
    label: str                # what the detail says: "a (y/n) prompt"
    regex: re.Pattern[str]    # matched against one line, trimmed of whitespace and box-drawing borders
    lines: int = TAIL_LINES   # looked for in this many of the last non-empty lines


_ANY_CASE = re.IGNORECASE


def _p(label: str, regex: str, lines: int = TAIL_LINES, flags: int = 0) -> Pattern:
    return Pattern(label, re.compile(regex, flags), lines)


# One-line prompts must end the line (nothing typed after them yet) on one of the last PROMPT_LINES lines:
# an answered "(Y)es/(N)o [Yes]: y" further up the scrollback is history, not a question.
DEFAULT_WAITING: tuple[Pattern, ...] = (
    _p("a yes/no prompt", r"[(\[]\s*y(?:es)?\s*/\s*n(?:o)?\s*[)\]]\s*(?:\[[^\]]*\])?\s*[:?>]?$", PROMPT_LINES,
       _ANY_CASE),
    _p("aider's (Y)es/(N)o prompt", r"\(Y\)es/\(N\)o\b[^\n]*?(?:\[[^\]]*\])?\s*:?$", PROMPT_LINES),
    _p("'Press Enter to continue'", r"\bpress (?:enter|return)\b[^\n]*\bcontinue\b", PROMPT_LINES, _ANY_CASE),
    _p("a 'Continue?' prompt", r"\bcontinue\?\s*(?:\[[^\]]*\]|\([^)]*\))?\s*:?$", PROMPT_LINES, _ANY_CASE),
    # Dialogs: the question sits above its choices, anywhere in the last TAIL_LINES lines.
    _p("'Do you want to proceed?'", r"\bDo you want to proceed\?"),
    _p("a 'Do you want to ...?' question", r"\bDo you want to\b[^\n]{0,160}\?"),
    _p("a 'Would you like to ...?' question", r"\bWould you like to (?:run|make|apply|proceed|continue|allow)\b"),
    _p("a numbered choice ('1. Yes')", r"^[❯›>]\s*1\.\s*Yes\b"),
    _p("an 'Allow ...?' permission prompt", r"^(?:Allow|Approve)\b[^\n]{0,160}\?"),
)

# Kept conservative: only the very bottom of a quiet pane, and only phrases an agent CLI prints when a
# provider refuses it (an agent writing a rate limiter prints "rate limit" too, but then the pane moves).
DEFAULT_BLOCKED: tuple[Pattern, ...] = (
    _p("a usage limit", r"\b(?:usage|rate|5-hour|weekly|daily|session) limit (?:reached|exceeded|hit)\b",
       BLOCKED_LINES, _ANY_CASE),
    _p("a usage limit", r"\bhit (?:your|the) (?:usage |rate )?limit\b", BLOCKED_LINES, _ANY_CASE),
    _p("an HTTP 429", r"\b429\b[^\n]{0,40}too many requests|too many requests[^\n]{0,40}\b429\b", BLOCKED_LINES,
       _ANY_CASE),
    _p("a rate limit", r"\brate[- ]limited\b", BLOCKED_LINES, _ANY_CASE),
)

_BORDERS = "│┃║|╭╮╰╯─ \t"


def pane_lines(pane: str) -> list[str]:
    """The pane's lines without escape sequences and trailing whitespace, trailing blank lines dropped."""
    lines = [line.rstrip() for line in clean(pane, len(pane)).split("\n")]
    while lines and not lines[-1]:
        lines.pop()
    return lines


def pane_hash(pane: str) -> str:
    """A fingerprint of what the pane shows; whitespace at line ends and blank lines at the bottom (where
    the cursor sits) do not count as a change."""
    return hashlib.sha1("\n".join(pane_lines(pane)).encode("utf-8", "replace")).hexdigest()[:16]


def find(pane: str, patterns: tuple[Pattern, ...]) -> str | None:
    """The label of the first pattern found in its share of the pane's last non-empty lines."""
    tail = [line.strip(_BORDERS) for line in pane_lines(pane) if line.strip(_BORDERS)][-TAIL_LINES:]
    for pattern in patterns:
        if any(pattern.regex.search(line) for line in tail[-pattern.lines:]):
            return pattern.label
    return None


def state_for(now: float, at: float, ready_threshold: float) -> str:
    quiet = now - at
    if quiet < ACTIVE_WINDOW:
        return "active"
    return "ready" if quiet < ready_threshold else "idle"


def _newest(*times: float | None) -> float | None:
    known = [t for t in times if isinstance(t, (int, float)) and not isinstance(t, bool)]
    return max(known) if known else None


def _quiet_detail(now: float, at: float) -> str:
    return f"quiet for {max(now - at, 0):.0f}s"


def terminal_activity(obs: Observation, patterns: tuple[Pattern, ...] = DEFAULT_WAITING,
                      blocked: tuple[Pattern, ...] = DEFAULT_BLOCKED) -> Activity:
    """Activity from the terminal alone (see the module docstring for the rules)."""
    memo = dict(obs.memo)
    last = _newest(memo.get(MEMO_AT))
    if not obs.alive:
        return Activity("exited", _newest(last, obs.last_output_at), memo, "the terminal is gone")

    detail = ""
    if obs.pane is not None:
        digest = pane_hash(obs.pane)
        if digest != memo.get(MEMO_HASH):
            last, detail = obs.now, "pane changed"
        memo[MEMO_HASH] = digest
    if obs.last_output_at is not None and (last is None or obs.last_output_at > last):
        last, detail = obs.last_output_at, "terminal output"
    if last is None or obs.started_at > last:  # nothing seen since (re)start: it has only just begun
        last, detail = obs.started_at, "started"
    memo[MEMO_AT] = last

    if obs.pane is not None and (asks := find(obs.pane, patterns)):
        return Activity("waiting_input", last, memo, f"pane shows {asks}")
    state = state_for(obs.now, last, obs.ready_threshold)
    if state != "active" and obs.pane is not None and (limit := find(obs.pane, blocked)):
        return Activity("blocked", last, memo, f"pane shows {limit}")
    return Activity(state, last, memo, detail if state == "active" else _quiet_detail(obs.now, last))


def combine(obs: Observation, base: Activity, signal_at: float | None, detail: str) -> Activity:
    """``base`` (from :func:`terminal_activity`) updated with another sign of life at ``signal_at`` (a
    session file written, a chat history saved). Exited and waiting_input stand: a file write does not
    answer a prompt."""
    if signal_at is None or (base.at is not None and signal_at <= base.at):
        return base
    memo = dict(base.memo)
    memo[MEMO_AT] = signal_at
    if base.state in ("exited", "waiting_input"):
        return Activity(base.state, signal_at, memo, base.detail)
    state = state_for(obs.now, signal_at, obs.ready_threshold)
    if base.state == "blocked" and state != "active":  # the limit message is still the last thing shown
        return Activity("blocked", signal_at, memo, base.detail)
    return Activity(state, signal_at, memo, detail if state == "active" else _quiet_detail(obs.now, signal_at))
