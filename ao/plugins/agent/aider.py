"""aider (``aider``). The prompt is typed in once aider shows its ``>`` prompt (``--message`` would make aider
exit after one reply; typed earlier, before aider reads input and has bracketed paste on, a multi-line
prompt arrived as several messages).

Launch: ``aider --no-show-model-warnings --no-gitignore --input-history-file <run dir>/… --chat-history-file
<run dir>/… [--yes-always] [--model M]``: no question about unknown models, none about ``.gitignore``
(``.aider*`` goes into the repository's ``info/exclude`` instead, so nothing of aider's is ever committed),
and its histories live beside ao's other files for the session, not in the workspace.

Delivery receipt: the input history, where aider records exactly what it read (``+``-prefixed lines under
a ``#`` timestamp line). Activity: the screen (its ``>`` prompt is the input box; ``(Y)es/(N)o`` questions
wait for a human; litellm's rate-limit messages are ``blocked``) and the chat history file as a sign of life.

Known limits: ``--yes-always`` answers "no" to "Run shell command?", so with ``permissions: skip`` aider never
runs shell commands (nor pushes); it commits its edits itself (``--auto-commits``, its default).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ao.activity import Screen, Signals, combine, merge, pattern, shows_input_box, terminal_activity
from ao.agentfiles import open_regular, read_regular
from ao.plugins.agent import Activity, BaseAgent, LaunchContext, Observation
from ao.plugins.agent.command import exclude, join, model_flags, permission_flags, same_text

INPUT_HISTORY, CHAT_HISTORY = "aider.input.history", "aider.chat.history.md"
CHECKED = "0.86.2"           # the version this screen and these files were checked against (ao doctor says so)
PERMISSION_FLAGS = {"skip": ["--yes-always"]}  # aider edits files without asking anyway; it has no plan mode
ALWAYS = ["--no-show-model-warnings", "--no-gitignore"]
_PROMPT = re.compile(r"^(?:[a-z-]+ ?)?> ?")   # ">", "> typed text", "ask> ", "architect> "


def _input_box(lines: list[str]) -> bool:
    return bool(lines) and bool(_PROMPT.match(lines[-1]))


SCREEN = Screen(
    agent="aider",
    limits=(pattern("rate limit", r"\bThe API provider has rate limited you\b|\bRateLimitError\b", 4),),
    input_box=_input_box,
)


def last_turn(path: Path, tail: int = 16384) -> str | None:
    """Where aider's chat history says the conversation stands: a user message (``#### ``) after the last
    token report (``> Tokens: …``, printed when a reply ends) is a turn in progress ("working"), or
    "blocked" when rate-limit errors followed it; the token report last is "done"; None: no turn yet."""
    try:
        with open_regular(path) as f:
            f.seek(max(f.seek(0, 2) - tail, 0))
            lines = f.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return None
    state = None
    for line in lines:
        if line.startswith("#### "):
            state = "working"
        elif line.startswith("> Tokens: "):
            state = "done"
        elif state == "working" and _RATE_LIMITED.search(line):
            state = "blocked"
    return state


_RATE_LIMITED = re.compile(r"\bThe API provider has rate limited you\b|\bRateLimitError\b")


def history_entries(text: str) -> list[str]:
    """The messages of an aider input history: ``# <time>`` starts one, ``+`` prefixes its lines."""
    return [message for _, message in timed_entries(text)]


def timed_entries(text: str) -> list[tuple[float | None, str]]:
    """(epoch s of its ``# <local time>`` line, message) for each entry of an aider input history."""
    from datetime import datetime

    entries: list[tuple[float | None, list[str]]] = []
    for line in text.split("\n"):
        if line.startswith("# "):
            try:
                at: float | None = datetime.strptime(line[2:].strip(), "%Y-%m-%d %H:%M:%S.%f").timestamp()
            except ValueError:
                at = None
            entries.append((at, []))
        elif line.startswith("+") and entries:
            entries[-1][1].append(line[1:])
    return [(at, "\n".join(lines)) for at, lines in entries]


@dataclass
class Aider(BaseAgent):
    name: str = "aider"

    @property
    def screen(self) -> Screen:
        return SCREEN

    def prompt_delivery(self, settings: dict[str, Any]) -> str:
        return "send"

    def prepare(self, ctx: LaunchContext) -> None:
        exclude(ctx.workspace, ".aider*")

    def can_resume(self, ctx: LaunchContext) -> bool:
        try:
            return ctx.run_dir is not None and (ctx.run_dir / CHAT_HISTORY).stat().st_size > 0
        except OSError:
            return False

    def launch_command(self, ctx: LaunchContext) -> str:
        argv = ["aider", *ALWAYS, *permission_flags(self.name, ctx.settings, PERMISSION_FLAGS),
                *model_flags(ctx.settings)]
        if ctx.run_dir is not None:
            argv += ["--input-history-file", str(ctx.run_dir / INPUT_HISTORY),
                     "--chat-history-file", str(ctx.run_dir / CHAT_HISTORY)]
        if ctx.resume:
            argv.append("--restore-chat-history")
        return join(argv)

    def interrupt_keys(self) -> list[str]:
        return ["C-c"]  # Ctrl-C stops aider's reply; a second one would exit it

    def _history(self, obs: Observation, name: str) -> Path:
        """ao launches aider with its histories in the run folder; a session launched before that has
        them in the workspace."""
        legacy = obs.workspace / ("." + name)
        if obs.run_dir is None or (legacy.exists() and not (obs.run_dir / name).exists()):
            return legacy
        return obs.run_dir / name

    def activity(self, obs: Observation) -> Activity:
        term = terminal_activity(obs, SCREEN)
        if term.state == "exited":
            return term
        path = self._history(obs, CHAT_HISTORY)
        try:
            written = path.stat().st_mtime
        except OSError:
            return term
        turn = last_turn(path)
        sig = Signals()
        if turn == "working":
            sig.state, sig.at, sig.detail = "active", written, "turn in progress"
        elif turn == "blocked":
            sig.state, sig.at, sig.detail = "blocked", written, "aider: the API provider has rate limited it"
        elif turn == "done":
            sig.state, sig.at, sig.detail = "ready", written, "turn finished"
        else:
            return combine(obs, term, written, "chat history updated")
        return merge(obs, term, sig)

    def not_ready(self, obs: Observation, activity: Activity) -> str | None:
        """aider reads input only at its ``>`` prompt: anything else on the screen means not now."""
        if obs.pane is not None and shows_input_box(obs.pane, SCREEN) is False:
            return "aider is not at its > prompt (busy)"
        return None

    def receipt(self, obs: Observation, text: str) -> Callable[[], bool] | None:
        path = self._history(obs, INPUT_HISTORY)
        try:
            before = len(read_regular(path))
        except OSError:
            before = 0

        def received() -> bool:
            try:
                data = read_regular(path)
            except OSError:
                return False
            if len(data) < before:
                return False
            new = data[before:].decode("utf-8", "replace")
            return any(same_text(entry, text) for entry in history_entries(new))

        return received

    def received_since(self, workspace: Path, run_dir: Path, text: str, since: float,
                       home: Path | None = None) -> bool | None:
        """After a crash while typing: whether the input history has ``text`` from ``since`` on."""
        path = self._history(Observation(now=since, alive=True, workspace=workspace, started_at=since,
                                         ready_threshold=0, run_dir=run_dir), INPUT_HISTORY)
        try:
            with open_regular(path) as f:
                data = f.read().decode("utf-8", "replace")
        except OSError:
            return None
        return any(same_text(message, text) and (at is None or at >= since - 1)
                   for at, message in timed_entries(data))


def plugin(**options: Any) -> Aider:
    return Aider(**options)
