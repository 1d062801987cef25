"""What an agent is doing, read from its terminal (SPEC 5): the fallback every agent plugin has.

Pure functions of an :class:`~ao.plugins.agent.Observation`: no clock reads, no I/O. The observer passes
``now`` and the memo the previous call returned, so the time of the last visible change survives from one
observation to the next (and across restarts: the memo is kept in the session's metadata).

Each agent describes its screen with a :class:`Screen`: its own dialogs and usage-limit messages, and the
input box it shows when it can take a message. Rules, first match wins:

1. the terminal is gone -> ``exited`` (``at`` = the last activity we knew of);
2. a usage or rate limit is the last thing the agent said -> ``blocked`` (the limit often comes with a
   menu, which must not read as a question);
3. the bottom of the pane is a dialog: one of the agent's own, a numbered menu with a cursor (``❯ 1. Yes``),
   a dialog's key hints (``Enter to confirm · Esc to cancel``) or a one-line prompt (``(y/n)``) ->
   ``waiting_input``. Only the bottom counts: an answered question that scrolled up is history;
4. the agent has an input box, the screen has been still for ``UNRECOGNISED_AFTER`` seconds and the box is
   not there -> ``waiting_input`` ("an unrecognised screen"): a dialog ao cannot classify is waiting;
5. otherwise the last activity is the newest of: the pane changing, the runtime's last-output time, the
   memo's time and the session's start; quiet for less than ``ACTIVE_WINDOW`` -> ``active``, less than
   ``obs.ready_threshold`` -> ``ready``, else ``idle``.

While the agent waits, ``at`` stays at the moment the wait began, however the pane redraws: the
agent-needs-input reaction uses it as its occurrence, so one question pages once.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ao.plugins.agent import Activity, Observation
from ao.templates import clean

ACTIVE_WINDOW = 30.0      # seconds since the last visible change during which an agent counts as working
UNRECOGNISED_AFTER = 5.0  # a screen without the agent's input box must be this still before it counts
TAIL_LINES = 15           # dialogs (a permission box with numbered choices) fill the bottom of the screen
PROMPT_LINES = 3          # a one-line "(y/n)" prompt only counts at the very bottom: answered ones scroll up
HINT_LINES = 3            # a dialog's key hints are its last line or so
QUESTION_LINES = 6        # a question counts while only its choices follow it
BLOCKED_LINES = 5
DETAIL_CAP = 160

MEMO_HASH = "pane_hash"
MEMO_AT = "last_activity_at"
MEMO_WAIT = "waiting"     # {"key": what is asked, "since": when the wait began}
MEMO_RECHECK = "recheck"  # the input box was missing: capture again even if nothing is printed (rule 4)

_ANY_CASE = re.IGNORECASE
_BORDERS = "│┃║|╭╮╰╯─━═╌╹▀ \t"
_DEAD = re.compile(r"^Pane is dead \((status -?\d+|signal \d+)")


@dataclass(frozen=True)
class Pattern:
    label: str                # what the detail says: "a (y/n) prompt"
    regex: re.Pattern[str]    # matched against one line, trimmed of whitespace and box-drawing borders
    lines: int = TAIL_LINES   # looked for in this many of the last non-empty lines


def pattern(label: str, regex: str, lines: int = TAIL_LINES, flags: int = 0) -> Pattern:
    return Pattern(label, re.compile(regex, flags), lines)


# One-line prompts must end the line (nothing typed after them yet) on one of the last PROMPT_LINES lines:
# an answered "(Y)es/(N)o [Yes]: y" further up the scrollback is history, not a question.
PROMPTS: tuple[Pattern, ...] = (
    pattern("a yes/no prompt", r"[(\[]\s*y(?:es)?\s*/\s*n(?:o)?\s*[)\]]\s*(?:\[[^\]]*\])?\s*[:?>]?$", PROMPT_LINES,
       _ANY_CASE),
    pattern("a (Y)es/(N)o prompt", r"\(Y\)es/\(N\)o\b[^\n]*?(?:\[[^\]]*\])?\s*:?$", PROMPT_LINES),
    pattern("'Press Enter to continue'", r"\bpress (?:enter|return)\b[^\n]*\bcontinue\b", PROMPT_LINES, _ANY_CASE),
    pattern("a 'Continue?' prompt", r"\bcontinue\?\s*(?:\[[^\]]*\]|\([^)]*\))?\s*:?$", PROMPT_LINES, _ANY_CASE),
)
# The key hints at the foot of a TUI dialog: only a dialog offers to confirm or cancel.
HINTS: tuple[Pattern, ...] = (
    pattern("a dialog", r"\b(?:enter|return) to (?:confirm|continue|select)\b|\besc(?:ape)? to cancel\b"
       r"|\benter (?:confirm|continue)\b|\bpress enter to confirm\b", HINT_LINES, _ANY_CASE),
)
# A question ends its line (its choices follow below it); "…? (y/n) y" has been answered.
QUESTIONS: tuple[Pattern, ...] = (
    pattern("a 'Do you want to ...?' question", r"\bDo you want to\b[^\n]{0,160}\?$", QUESTION_LINES),
    pattern("a 'Would you like to ...?' question",
       r"\bWould you like to (?:run|make|apply|proceed|continue|allow)\b[^\n]{0,160}\?$", QUESTION_LINES),
    pattern("an 'Allow ...?' permission prompt", r"^(?:Allow|Approve)\b[^\n]{0,160}\?$", QUESTION_LINES),
)
# A numbered menu: the cursor on one choice ("❯ 1. Yes", "› 2. No") and another choice beside it.
_CURSOR = re.compile(r"^[❯›>▶]\s*(\d{1,2})[.)]\s+\S")
_CHOICE = re.compile(r"^(\d{1,2})[.)]\s+\S")

# Kept conservative for agents ao knows nothing about: only the very bottom of a quiet pane, and only
# phrases an agent CLI prints when a provider refuses it. The agents' own Screens are more precise.
GENERIC_LIMITS: tuple[Pattern, ...] = (
    pattern("a usage limit", r"\b(?:usage|rate|5-hour|weekly|daily|session) limit (?:reached|exceeded|hit)\b",
       BLOCKED_LINES, _ANY_CASE),
    pattern("a usage limit", r"\bhit (?:your|the) (?:usage |rate )?limit\b", BLOCKED_LINES, _ANY_CASE),
    pattern("a rate limit", r"\brate[- ]limited\b", BLOCKED_LINES, _ANY_CASE),
)


@dataclass(frozen=True)
class Screen:
    """How one agent's terminal looks. ``dialogs`` and ``limits`` are its own wording (limits count at once;
    the generic ones only on a quiet pane); ``input_box`` says whether the lines (bottom last, borders kept)
    show the box where a message goes; ``None`` for agents whose screen ao does not know."""

    agent: str = "the agent"
    dialogs: tuple[Pattern, ...] = ()
    limits: tuple[Pattern, ...] = ()
    input_box: Callable[[Sequence[str]], bool] | None = None
    generic_limits: tuple[Pattern, ...] = GENERIC_LIMITS


GENERIC = Screen()


def pane_lines(pane: str) -> list[str]:
    """The pane's lines without escape sequences and trailing whitespace, trailing blank lines dropped."""
    lines = [line.rstrip() for line in clean(pane, len(pane)).split("\n")]
    while lines and not lines[-1]:
        lines.pop()
    return lines


def tail(pane: str, count: int = TAIL_LINES) -> list[str]:
    """The last ``count`` lines with text, trimmed of whitespace and box-drawing borders."""
    return [t for t in (line.strip(_BORDERS) for line in pane_lines(pane)) if t][-count:]


def pane_hash(pane: str) -> str:
    """A fingerprint of what the pane shows; whitespace at line ends and blank lines at the bottom (where
    the cursor sits) do not count as a change."""
    return hashlib.sha1("\n".join(pane_lines(pane)).encode("utf-8", "replace")).hexdigest()[:16]


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= DETAIL_CAP else text[:DETAIL_CAP - 1] + "…"


def _match(lines: list[str], patterns: tuple[Pattern, ...]) -> tuple[str, int] | None:
    """(label, index of the matching line) of the first pattern found in its share of ``lines``."""
    for p in patterns:
        start = max(len(lines) - p.lines, 0)
        for i in range(len(lines) - 1, start - 1, -1):
            if p.regex.search(lines[i]):
                return p.label, i
    return None


def _menu(lines: list[str]) -> int | None:
    """The index of a menu's cursor line when the bottom of the screen holds a numbered menu."""
    for i in range(len(lines) - 1, -1, -1):
        if _CURSOR.match(lines[i]):
            near = lines[max(i - 8, 0):i] + lines[i + 1:i + 9]
            if any(_CHOICE.match(line) for line in near):
                return i
    return None


def _question(lines: list[str], at: int) -> int:
    """Where a dialog asks its question: the nearest line above its choices that is not a choice itself."""
    for i in range(at, -1, -1):
        if not (_CURSOR.match(lines[i]) or _CHOICE.match(lines[i])):
            return i
    return at


def dialog(pane: str, screen: Screen = GENERIC) -> tuple[str, str] | None:
    """(what the agent asks, a key identifying this question) when the bottom of the pane is a dialog."""
    lines = tail(pane)
    if not lines:
        return None
    own = _match(lines, screen.dialogs)
    if own:
        label, i = own
        return f"{screen.agent} {label}", _key(label, lines[i:])
    menu = _menu(lines)
    if menu is not None:
        question = _question(lines, menu)
        # the key holds the dialog's body too (the command it asks about), not what scrolls above it
        return f"a menu: {_short(lines[question])}", _key("menu", lines[max(question - 2, 0):])
    for patterns in (PROMPTS, HINTS, QUESTIONS):
        hit = _match(lines, patterns)
        if hit:
            label, i = hit
            start = max(i - 4, 0) if patterns is HINTS else i  # hints sit under the dialog they belong to
            return f"{label}: {_short(lines[start])}", _key(label, lines[start:])
    return None


def _key(label: str, lines: list[str]) -> str:
    return label + ":" + hashlib.sha1("\n".join(lines).encode("utf-8", "replace")).hexdigest()[:12]


def limit(pane: str, screen: Screen = GENERIC, quiet: bool = True) -> str | None:
    """What usage or rate limit the bottom of the pane reports, if any (the generic wording only when the
    pane is quiet: an agent writing a rate limiter prints "rate limit" too, but then the pane moves)."""
    lines = tail(pane)
    hit = _match(lines, screen.limits)
    if hit:
        return f"{screen.agent}: {_short(lines[hit[1]])}"
    if quiet and (generic := _match(lines, screen.generic_limits)):
        return f"pane shows {generic[0]}: {_short(lines[generic[1]])}"
    return None


def shows_input_box(pane: str, screen: Screen) -> bool | None:
    """Whether the agent shows its input box (None: ao does not know what this agent's box looks like)."""
    if screen.input_box is None:
        return None
    lines = [line for line in pane_lines(pane) if line.strip()]
    return screen.input_box(lines[-12:])


def state_for(now: float, at: float, ready_threshold: float) -> str:
    quiet = now - at
    if quiet < ACTIVE_WINDOW:
        return "active"
    return "ready" if quiet < ready_threshold else "idle"


def newest(*times: float | None) -> float | None:
    known = [t for t in times if isinstance(t, (int, float)) and not isinstance(t, bool)]
    return max(known) if known else None


def waiting(memo: dict, key: str, at: float | None, detail: str) -> Activity:
    """``waiting_input`` whose ``at`` is when this same question first showed, kept in the memo."""
    previous = memo.get(MEMO_WAIT)
    if isinstance(previous, dict) and previous.get("key") == key and isinstance(previous.get("since"), (int, float)):
        since = previous["since"]
    else:
        since = at
    memo = {**memo, MEMO_WAIT: {"key": key, "since": since}}
    return Activity("waiting_input", since, memo, detail)


def terminal_activity(obs: Observation, screen: Screen = GENERIC) -> Activity:
    """Activity from the terminal alone (see the module docstring for the rules)."""
    memo = dict(obs.memo)
    last = newest(memo.get(MEMO_AT))
    if not obs.alive:
        memo.pop(MEMO_WAIT, None)
        return Activity("exited", newest(last, obs.last_output_at), memo, "the terminal is gone")
    dead = _DEAD.match(tail(obs.pane, 1)[-1]) if obs.pane is not None and tail(obs.pane, 1) else None
    if dead:  # tmux keeps a dead pane's last words on screen and says so under them
        memo.pop(MEMO_WAIT, None)
        return Activity("exited", newest(last, obs.last_output_at), memo, f"the agent exited ({dead.group(1)})")

    detail = ""
    changed = False
    if obs.pane is not None:
        digest = pane_hash(obs.pane)
        if digest != memo.get(MEMO_HASH):
            last, detail, changed = obs.now, "pane changed", True
        memo[MEMO_HASH] = digest
    if obs.last_output_at is not None and (last is None or obs.last_output_at > last):
        last, detail = obs.last_output_at, "terminal output"
    if last is None or obs.started_at > last:  # nothing seen since (re)start: it has only just begun
        last, detail = obs.started_at, "started"
    memo[MEMO_AT] = last
    state = state_for(obs.now, last, obs.ready_threshold)

    if obs.pane is not None:
        if reason := limit(obs.pane, screen, quiet=state != "active"):
            memo.pop(MEMO_WAIT, None)
            return Activity("blocked", last, memo, reason)
        if asked := dialog(obs.pane, screen):
            return waiting(memo, asked[1], last, asked[0])
        memo.pop(MEMO_RECHECK, None)
        if pane_lines(obs.pane) and shows_input_box(obs.pane, screen) is False:
            if not changed and obs.now - last >= UNRECOGNISED_AFTER:
                lines = tail(obs.pane, 1)
                return waiting(memo, "unrecognised:" + memo[MEMO_HASH], last,
                               f"an unrecognised screen without {screen.agent}'s input box: {_short(lines[-1])}")
            memo[MEMO_RECHECK] = True
    memo.pop(MEMO_WAIT, None)
    return Activity(state, last, memo, detail if state == "active" else "quiet")


def combine(obs: Observation, base: Activity, signal_at: float | None, detail: str) -> Activity:
    """``base`` (from :func:`terminal_activity`) updated with another sign of life at ``signal_at`` (a
    session file written, a chat history saved). Exited, waiting_input and blocked stand: a file write
    does not answer a prompt."""
    if signal_at is None or (base.at is not None and signal_at <= base.at):
        return base
    if base.state in ("exited", "waiting_input", "blocked"):
        return base
    memo = dict(base.memo)
    memo[MEMO_AT] = signal_at
    state = state_for(obs.now, signal_at, obs.ready_threshold)
    return Activity(state, signal_at, memo, detail if state == "active" else "quiet")


@dataclass
class Signals:
    """What an agent's own signals (hooks, status files, session logs, its server) say, for
    :func:`merge`. ``state`` is None when they say nothing this time."""

    state: str | None = None
    at: float | None = None
    detail: str = ""
    memo: dict = field(default_factory=dict)


def merge(obs: Observation, term: Activity, sig: Signals) -> Activity:
    """The agent's own signals over the terminal's reading: they know what the screen cannot (a turn in
    progress while nothing moves, a permission request, a rate limit), and the screen knows what they do not
    (an onboarding or trust dialog, drawn before any hook runs). A gone terminal always wins; a dialog on
    screen wins over anything but a signal that the agent is waiting too."""
    memo = {**term.memo, **sig.memo}
    if term.state == "exited" or sig.state is None:
        return Activity(term.state, term.at, memo, term.detail)
    if sig.state == "exited":
        return Activity("exited", newest(sig.at, term.at), memo, sig.detail)
    # A limit message on screen stands (Claude's comes with a menu the agent reports as a dialog), unless the
    # agent has started a new turn since; then a dialog, reported by the agent or drawn on screen.
    if term.state == "blocked" and sig.state != "active":
        return Activity(term.state, term.at, memo, term.detail)
    if sig.state == "waiting_input":
        return waiting(memo, "signal:" + sig.detail, sig.at if sig.at is not None else term.at, sig.detail)
    if term.state == "waiting_input":
        return Activity(term.state, term.at, memo, term.detail)
    at = newest(sig.at, term.at)
    memo[MEMO_AT] = at
    memo.pop(MEMO_WAIT, None)
    if sig.state == "blocked":
        return Activity("blocked", at, memo, sig.detail)
    if sig.state == "active":
        # a turn in progress: active however still the screen, until the ready threshold says it is stuck
        if at is not None and obs.now - at >= obs.ready_threshold:
            return Activity("idle", at, memo, f"{sig.detail}, but nothing new since")
        return Activity("active", at, memo, sig.detail)
    if sig.state == "ready":
        # The turn is over (no settling needed: the agent said so); time counts from its end, not from
        # redraws since (a clock, a cursor) that a capture without the last memo would take for output.
        at = sig.at if sig.at is not None else at
        memo[MEMO_AT] = at
        state = "ready" if at is None or obs.now - at < obs.ready_threshold else "idle"
        return Activity(state, at, memo, sig.detail)
    state = state_for(obs.now, at, obs.ready_threshold) if at is not None else "active"
    return Activity(state, at, memo, sig.detail if state == "active" else "quiet")
