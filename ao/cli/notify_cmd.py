"""``ao notify test``."""

from __future__ import annotations

import time
from typing import Annotated, Optional

import typer

from ao.cli.common import ConfigOption, JsonOption, load_config, print_json
from ao.errors import AoError, UsageError, did_you_mean

app = typer.Typer(help="Check that notifications reach you.", no_args_is_help=True)


@app.command()
def test(
    ctx: typer.Context,
    name: Annotated[Optional[str], typer.Argument(help="Only this notifier (a key of notifiers:, or desktop / log).",
                                                  metavar="NAME", show_default=False)] = None,
    priority: Annotated[Optional[str], typer.Option("--priority", help="Send to the notifiers routed for this "
                                                    "priority: urgent, action, warning or info.",
                                                    show_default=False)] = None,
    json: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """Send a test notification through the outbox and report each notifier's result (exit 1 if any failed).

    With NAME, to that notifier; with --priority, to the notifiers routed for it; with neither, to every configured or routed notifier.
    """
    from ao import notify
    from ao.outbox import Outbox
    from ao.reactions import PRIORITIES

    if priority is not None and priority not in PRIORITIES:
        raise UsageError(f"unknown priority '{priority}'; use one of: {', '.join(PRIORITIES)}")
    cfg = load_config(ctx, config)
    if name is not None:
        if notify.settings_for(cfg, name) is None:
            known = [*cfg.notifiers, *(b for b in notify.BUILTIN if b not in cfg.notifiers)]
            raise AoError(f"unknown notifier '{name}'{did_you_mean(name, known)}; configured: {', '.join(known)}")
        targets = [name]
    elif priority is not None:
        targets = cfg.notifier_names(priority)
    else:
        targets = [*cfg.notifiers, *(n for p in PRIORITIES for n in cfg.notifier_names(p))]
    now = time.time()
    notification = notify.build_test_notification(priority or "info", targets, now)
    outbox = Outbox.from_config(cfg)
    try:
        outbox.enqueue(notification, now, max_attempts=1)  # a test is tried once: no retries left behind
        results = {r.notifier: r for r in outbox.deliver_due(now, ids=[notification.id])}
    finally:
        outbox.close()
    rows = []
    for target in notification.notifiers:
        r = results.get(target)
        plugin = outbox.notifiers[target].plugin if target in outbox.notifiers else "?"
        rows.append({"notifier": target, "plugin": plugin, "ok": bool(r and r.ok),
                     "error": (r.error if r else "not attempted"),
                     "elapsed_ms": round(r.elapsed * 1000) if r else None})
    if json:
        print_json({"id": notification.id, "priority": notification.priority, "results": rows})
    else:
        from ao.cli.common import cell, console
        from rich.table import Table

        table = Table(title=f"test notification {notification.id} ({notification.priority})", title_justify="left")
        for column in ("notifier", "plugin", "result", "time", "detail"):
            table.add_column(column, overflow="fold")
        for row in rows:
            took = f"{row['elapsed_ms']} ms" if row["elapsed_ms"] is not None else "-"
            table.add_row(cell(row["notifier"]), row["plugin"], "[green]sent[/]" if row["ok"] else "[red]failed[/]",
                          took, cell(row["error"]))
        console().print(table)
    if not all(row["ok"] for row in rows):
        raise typer.Exit(1)
