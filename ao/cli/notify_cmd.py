"""``ao notify test``."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from ao.cli.common import ConfigOption, JsonOption, examples, load_config
from ao.cli.output import Column, listing
from ao.errors import UsageError

app = typer.Typer(help="Check that notifications reach you.", no_args_is_help=True)


@app.command(epilog=examples(
    ("ao notify test", "every configured or routed notifier"),
    ("ao notify test team-slack", "one notifier"),
    ("ao notify test --priority urgent", "the notifiers an urgent notification goes to"),
))
def test(
    ctx: typer.Context,
    name: Annotated[Optional[str], typer.Argument(help="Only this notifier (a key of notifiers:, or desktop / log).",
                                                  metavar="NAME", show_default=False)] = None,
    priority: Annotated[Optional[str], typer.Option("--priority", metavar="PRIORITY", help="Send to the notifiers "
                        "routed for this priority: urgent, action, warning or info.", show_default=False)] = None,
    json: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """Send a test notification through the outbox and report each notifier's result (exit 1 if any failed).

    With NAME, to that notifier; with --priority, to the notifiers routed for it; with neither, to every
    configured or routed notifier.
    """
    from ao.outbox import send_test
    from ao.reactions import PRIORITIES

    if priority is not None and priority not in PRIORITIES:
        raise UsageError(f"unknown priority '{priority}'; use one of: {', '.join(PRIORITIES)}")
    notification, rows = send_test(load_config(ctx, config), name, priority)
    listing([{**row, "result": "sent" if row["ok"] else "failed",
              "time": f"{row['elapsed_ms']} ms" if row["elapsed_ms"] is not None else None} for row in rows],
            [Column("notifier"), Column("plugin"),
             Column("result", style=lambda r: "green" if r["ok"] else "bold red"), Column("time"),
             Column("error", "detail")],
            title=f"test notification {notification.id} ({notification.priority})", json=json,
            json_rows={"id": notification.id, "priority": notification.priority, "results": rows})
    if not all(row["ok"] for row in rows):
        raise typer.Exit(1)
