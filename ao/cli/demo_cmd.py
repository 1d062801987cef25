"""``ao demo``."""

from __future__ import annotations

from typing import Annotated

import typer

from ao.cli.common import JsonOption, examples, print_json


def register(app: typer.Typer) -> None:
    @app.command(epilog=examples(
        ("ao demo", "about 10 s; prints the timeline of all three sessions"),
        ("ao demo --keep", "keep the project and data dir afterwards to look around"),
    ))
    def demo(
        json: JsonOption = False,
        keep: Annotated[bool, typer.Option("--keep", help="Keep the throwaway project and data dir afterwards "
                                           "(tmux sessions are always stopped).")] = False,
    ) -> None:
        """Run the whole workflow on a throwaway local project: 3 scripted agents, local CI and reviews,
        CI failure fixed, changes requested and addressed, auto-merge. Needs only git and tmux."""
        from ao import demo as demo_mod

        result = demo_mod.run(json_output=json, keep=keep)
        if json:
            print_json(result)
