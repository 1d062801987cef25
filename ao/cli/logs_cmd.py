"""``ao logs SESSION [-f] [-n N]``: what a session's agent printed lately, without attaching to it."""

from __future__ import annotations

import sys
import time
from typing import Annotated

import typer

from ao.cli.common import ConfigOption, SessionArg, examples, load_config
from ao.errors import AoError

FOLLOW_PERIOD = 0.5   # seconds between captures while following: a display refresh period
FOLLOW_WINDOW = 400   # lines captured per look while following; output faster than this between looks is cut


def new_lines(before: list[str], now: list[str]) -> list[str]:
    """The lines of ``now`` that follow what ``before`` ended with (all of ``now`` when they do not overlap).

    A terminal scrolls: the newest capture repeats the end of the previous one, shifted up. The longest
    suffix of ``before`` that starts ``now`` is what was seen already. The last line may have grown since
    (a line being typed): then it is printed again, complete."""
    for seen in (before, before[:-1]):
        for k in range(min(len(seen), len(now)), 0, -1):
            if seen[-k:] == now[:k]:
                return now[k:]
    return now


def register(app: typer.Typer) -> None:
    @app.command(epilog=examples(
        ("ao logs app-3", "the last 50 lines of the agent's terminal"),
        ("ao logs app-3 -n 200", ""),
        ("ao logs app-3 -f", "keep printing new output until Ctrl-C"),
    ))
    def logs(
        ctx: typer.Context,
        session: SessionArg,
        follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new output until Ctrl-C.")] = False,
        lines: Annotated[int, typer.Option("--lines", "-n", metavar="N", min=1, help="How many of the last "
                                           "lines to show.")] = 50,
        config: ConfigOption = None,
    ) -> None:
        """Print the recent output of a session's agent (its terminal, scrollback included), without attaching."""
        from ao.sessions import Sessions
        from ao.templates import clean

        manager = Sessions(load_config(ctx, config))
        found, project = manager.find(session)
        if not found.runtime_handle:
            raise AoError(f"session {session} has no terminal yet ({found.status})")
        runtime = manager.runtime(found.runtime or project.runtime)

        def capture(n: int) -> list[str]:
            text = clean(runtime.capture(found.runtime_handle, n), 10_000_000)
            return text.split("\n") if text else []

        if not runtime.probe([found.runtime_handle])[found.runtime_handle].alive and not capture(1):
            raise AoError(f"session {session} has no terminal any more ({found.status}); "
                          f"`ao session restore {session}` starts its agent again")
        shown = capture(lines)
        _write(shown)
        if not follow:
            return
        seen = capture(FOLLOW_WINDOW)
        while True:
            time.sleep(FOLLOW_PERIOD)
            now = capture(FOLLOW_WINDOW)
            _write(new_lines(seen, now))
            seen = now


def _write(rows: list[str]) -> None:
    if rows:
        sys.stdout.write("\n".join(rows) + "\n")
        sys.stdout.flush()
