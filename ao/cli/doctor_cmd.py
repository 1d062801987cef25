"""``ao doctor``: is this machine ready to run the configuration? Every check at once, each with a fix."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from ao.cli.common import ConfigOption, JsonOption, examples
from ao.cli.output import Column, listing

_STYLE = {"ok": "green", "warn": "yellow", "FAIL": "bold red", "skip": "dim"}


def register(app: typer.Typer) -> None:
    @app.command(epilog=examples(
        ("ao doctor", "config, data dir, git, tmux, agent CLIs, each project's origin, GitHub token"),
        ("ao doctor --notify", "also send a test notification to every notifier"),
        ("ao doctor --json | jq '.[] | select(.result==\"FAIL\")'", ""),
    ))
    def doctor(
        ctx: typer.Context,
        notify: Annotated[bool, typer.Option("--notify", help="Also send a test notification to every "
                                             "configured or routed notifier.")] = False,
        json: JsonOption = False,
        config: ConfigOption = None,
    ) -> None:
        """Check everything ao needs, in one go: the config, the data dir, git, tmux, the agent CLIs and their
        versions, each project's folder, origin and default branch, the GitHub token and its scopes, (with
        --notify) the notifiers. Exit 1 if any check fails; each failure says how to fix it."""
        from ao import doctor as doctor_mod

        checks = doctor_mod.run(config or (ctx.obj or {}).get("config"), notify=notify)
        rows = [c.row() for c in checks]
        listing(rows, [Column("check"), Column("result", style=lambda r: _STYLE.get(r["result"])),
                       Column("detail"), Column("fix")], title="ao doctor", json=json)
        failed = [c for c in checks if c.result == doctor_mod.FAIL]
        if not json:
            warned = sum(c.result == doctor_mod.WARN for c in checks)
            print(f"{len(failed)} failed, {warned} warning{'s' if warned != 1 else ''}, "
                  f"{len(checks) - len(failed) - warned} ok", file=sys.stderr)
        if failed:
            raise typer.Exit(1)
