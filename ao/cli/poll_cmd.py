"""``ao poll``, ``ao start``, ``ao stop`` and ``ao events``.

``ao poll`` and ``ao start`` print the same lines: each event of the cycle as ``ao events --follow`` shows it
(time, type, session, details: aligned on a terminal, tab-separated when piped), then each action fired;
``--json`` prints the events as JSON lines instead. ``ao events`` is a listing (``ao.cli.output``): piped, one
tab-separated line per event.
"""

from __future__ import annotations

import contextlib
import json as jsonlib
import sys
import time
from typing import Annotated, Any, Callable, Optional

import typer

from ao.cli.common import ConfigOption, JsonOption, examples, load_config, print_json
from ao.cli.output import Column, cell, is_terminal, listing, plain_lines, warn
from ao.errors import AoError, UsageError


def event_detail(e: dict[str, Any]) -> str:
    """What an event says beyond its time, type and session: the rest as key=value."""
    rest = {k: v for k, v in e.items() if k not in ("ts", "type", "session", "project")}
    return " ".join(f"{k}={cell(v)}" for k, v in rest.items() if v not in (None, "", [], {}))


def event_line(e: dict[str, Any]) -> str:
    """One event as a line for a person: ISO time, type, session (or project), the rest as key=value."""
    who = e.get("session") or e.get("project") or ""
    return f"{e.get('ts', '')} {e.get('type', ''):<26} {who:<12} {event_detail(e)}".rstrip()


# ``ao events`` as a listing: a table on a terminal, one tab-separated line per event when piped
EVENT_COLUMNS = [Column("ts", "time"), Column("type"),
                 Column("session", text=lambda e: e.get("session") or e.get("project")),
                 Column("detail", text=event_detail)]


def event_text(e: dict[str, Any], terminal: bool) -> str:
    """An event as ``ao events --follow`` prints it: aligned for a person, tab-separated fields when piped."""
    return event_line(e) if terminal else plain_lines([e], EVENT_COLUMNS)[0]


def _fields(terminal: bool, *parts: tuple[str, int]) -> str:
    """Fields padded to their widths on a terminal, tab-separated when piped (the last one unpadded)."""
    if not terminal:
        return "\t".join(text for text, _ in parts)
    return " ".join(f"{text:<{width}}" for text, width in parts[:-1]) + " " + parts[-1][0]


def action_line(a: dict[str, Any], dry_run: bool, terminal: bool = True) -> str:
    verb = "would" if dry_run else ("ok" if a["ok"] else "FAILED")
    target = a["session"] or a["project"]
    extra = f" → {', '.join(a['notifiers'])}" if a["notifiers"] else ""
    return _fields(terminal, (verb, 6), (a["reaction"], 20), (a["action"], 14),
                   (f"{target}{extra}" + (f": {cell(a['error'])}" if a["error"] else ""), 0))


def admission_line(row: dict[str, Any], terminal: bool = True) -> str:
    """One admission decision of the work queue: admitted (to which session), waiting, blocked..."""
    what = " ".join(str(x) for x in (row["project"], row["issue"]) if x)
    return _fields(terminal, ("queue", 6), (row["result"], 12),
                   (what + (f" → {row['session']}" if row.get("session") else "")
                    + (f": {cell(row['detail'])}" if row.get("detail") else ""), 0))


def summary(report: Any) -> str:
    acted = [f"{a['reaction']}→{a['session'] or a['project']}{'' if a['ok'] else ' (failed)'}" for a in report.actions]
    line = f"cycle: {report.sessions} sessions in {report.seconds * 1000:.0f} ms"
    if acted:
        line += f"; {'would fire' if report.dry_run else 'fired'}: " + ", ".join(acted)
    if report.cleaned:
        line += f"; cleaned up: {', '.join(report.cleaned)}"
    admitted = [f"{a['issue']}→{a['session']}" for a in report.admissions if a["result"] == "admitted"]
    if admitted:
        line += "; admitted: " + ", ".join(admitted)
    return line


def report_printer(json: bool, quiet: bool) -> Callable[[Any], None]:
    """Print one cycle's report as ``ao poll`` and ``ao start`` do (nothing with ``quiet``)."""
    def show(report: Any) -> None:
        if quiet:
            return
        if json:
            for e in report.events:
                print(jsonlib.dumps(e, ensure_ascii=False, default=str), flush=True)
            for error in report.errors:
                print(jsonlib.dumps({"ts": _iso(report.at), "type": "cycle.error", "error": error}), flush=True)
            for warning in report.warnings:
                print(jsonlib.dumps({"ts": _iso(report.at), "type": "cycle.warning", "warning": warning}),
                      flush=True)
            return
        terminal = is_terminal()
        for e in report.events:
            print(event_text(e, terminal))
        if report.dry_run:
            for a in report.actions:
                print(action_line(a, True, terminal))
        for row in report.admissions:
            if row["result"] == "admitted":
                print(admission_line(row, terminal))
        for error in report.errors:
            print(f"error: {error}")
        for warning in report.warnings:
            print(f"warning: {warning}")
        sys.stdout.flush()

    return show


def _iso(ts: float) -> str:
    from ao.events import iso

    return iso(ts)


def poller_lock(cfg: Any) -> contextlib.ExitStack:
    """The data dir's poller lock (use it in a ``with``); an error that says what runs and how to stop it."""
    from ao.poller import poller_lock as lock, running_pid

    stack = contextlib.ExitStack()
    try:
        stack.enter_context(lock(cfg.data_dir))
    except AoError:
        pid = running_pid(cfg.data_dir)
        raise AoError(f"ao start is already running for {cfg.file} (pid {pid or '?'}, data dir {cfg.data_dir}); "
                      "watch it with `ao status --watch`, or stop it with `ao stop`") from None
    return stack


def run_cycle(cfg: Any, dry_run: bool = False) -> Any:
    """One poll cycle (``ao poll``, ``ao status --refresh``): under the poller lock, stamped when done."""
    from ao import config as config_mod
    from ao import overview
    from ao.poller import Poller

    poller = Poller(cfg, dry_run=dry_run)
    try:
        if dry_run:
            return poller.cycle()
        config_mod.claim_data_dir(cfg)
        with poller_lock(cfg):
            report = poller.cycle()
        overview.record_cycle(cfg.data_dir, report.at, report.sessions, cfg.file)
        return report
    finally:
        poller.close()


def register(app: typer.Typer) -> None:
    @app.command(epilog=examples(
        ("ao poll", "observe, react, and print what happened"),
        ("ao poll --dry-run", "what would fire now, without doing or recording anything"),
        ("ao poll --json | jq .actions", ""),
    ))
    def poll(
        ctx: typer.Context,
        dry_run: Annotated[bool, typer.Option("--dry-run", help="Decide but do nothing: no messages, "
                                              "notifications or merges; no session, ledger or event written.")] = False,
        json: JsonOption = False,
        config: ConfigOption = None,
    ) -> None:
        """Run one observation cycle and print its events and what fired (with --dry-run, what would fire)."""
        cfg = load_config(ctx, config)
        report = run_cycle(cfg, dry_run=dry_run)
        if json:
            data = report.to_dict()
            data["at"] = _iso(report.at)
            print_json(data)
            return
        terminal = is_terminal()
        for e in report.events:
            print(event_text(e, terminal))
        for a in report.actions:
            print(action_line(a, report.dry_run, terminal))
        for row in report.admissions:
            print(admission_line(row, terminal))
        for error in report.errors:
            print(f"error: {error}")
        for warning in report.warnings:
            print(f"warning: {warning}")
        print(summary(report))

    @app.command(epilog=examples(
        ("ao start", "poll every pollInterval, print each event as it happens; Ctrl-C to stop"),
        ("ao start -q --no-orchestrator", "quiet, and without the orchestrator agent"),
        ("ao start --json | tee events.jsonl", "events as JSON lines"),
        ("ao start --interval 10s", ""),
    ))
    def start(
        ctx: typer.Context,
        no_orchestrator: Annotated[bool, typer.Option("--no-orchestrator", help="Do not start the orchestrator "
                                                      "agent session.")] = False,
        interval: Annotated[Optional[str], typer.Option("--interval", metavar="DURATION", help="Poll period, "
                            "e.g. 10s (default: the config's pollInterval).", show_default=False)] = None,
        no_dashboard: Annotated[bool, typer.Option("--no-dashboard", help="Do not serve the dashboard.")] = False,
        no_open: Annotated[bool, typer.Option("--no-open", help="Do not open the dashboard in a browser.")] = False,
        quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing but errors and the dashboard's "
                         "login URL (everything still goes to the event log and logs/orchestrator.log).")] = False,
        json: Annotated[bool, typer.Option("--json", help="Print each event as a JSON line.")] = False,
        config: ConfigOption = None,
    ) -> None:
        """Run the lifecycle loop in the foreground until Ctrl-C or `ao stop`: poll, react, notify, merge,
        clean up; serve the dashboard (and the webhook receiver, when one is configured) on host:port. Each
        event is printed as it happens (the lines `ao poll` and `ao events` print).

        With no `port:` in the config and 3000 taken (by another repository's `ao start`, say), the dashboard
        takes a free port: `ao dashboard --print-url` prints it. Webhooks never move: a taken port is an error."""
        import os
        import signal

        from ao import config as config_mod
        from ao import events, overview
        from ao.durations import DurationError, parse_duration
        from ao.poller import Loop, Poller

        cfg = load_config(ctx, config)
        try:
            period = parse_duration(interval) if interval else cfg.poll_interval
        except DurationError as exc:
            raise UsageError(f"--interval: {exc}") from None
        if period <= 0:
            raise UsageError("--interval must be positive")
        config_mod.claim_data_dir(cfg)
        console = None if quiet or json else events.STDERR
        poller = Poller(cfg, console=console)
        show = report_printer(json, quiet)

        def on_cycle(report: Any) -> None:
            overview.record_cycle(cfg.data_dir, report.at, report.sessions, cfg.file)
            events.log(cfg.data_dir, summary(report), console=None)
            for warning in report.warnings:  # `ao start -q` prints nothing: the log keeps it
                events.log(cfg.data_dir, f"warning: {warning}", console=None)
            show(report)

        interrupted = []
        with poller_lock(cfg):
            loop = Loop(poller, period, on_cycle=on_cycle)
            loop.install_signals()

            def on_interrupt(*_: Any) -> None:
                interrupted.append(True)
                loop.stop()

            signal.signal(signal.SIGINT, on_interrupt)
            servers = _start_services(cfg, poller, loop, orchestrator=not no_orchestrator, console=console,
                                      dashboard=not no_dashboard, open_browser=not no_open)
            events.log(cfg.data_dir, f"ao started for {cfg.file}: polling every {period} s (pid {os.getpid()}); "
                       "Ctrl-C or `ao stop` to stop", console=console)
            try:
                loop.run()
            finally:
                for server in servers:
                    server.stop()
                poller.close()
                events.log(cfg.data_dir, "ao stopped" + (" (interrupted)" if interrupted else ""), console=console)
        if interrupted:
            raise typer.Exit(130)

    @app.command(epilog=examples(("ao stop", ""), ("ao stop --timeout 120", "wait longer for a slow cycle")))
    def stop(
        ctx: typer.Context,
        timeout: Annotated[float, typer.Option("--timeout", metavar="SECONDS",
                                               help="How long to wait for it to finish its cycle.")] = 30.0,
        config: ConfigOption = None,
    ) -> None:
        """Stop the `ao start` running for this config (SIGTERM).

        It finishes the cycle it is in (no reaction is cut in half; every decision and message is recorded),
        stops the webhook receiver, releases its lock and exits. Agent sessions, the orchestrator agent
        included, keep running in their terminals: the next `ao start` picks them up where they are. To end
        sessions use `ao session kill`; to remove finished ones, `ao cleanup`.
        """
        import os
        import signal

        from ao.poller import running_pid

        cfg = load_config(ctx, config)
        pid = running_pid(cfg.data_dir)
        if pid is None:
            raise AoError(f"ao start is not running for {cfg.file} (data dir {cfg.data_dir})")
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            raise AoError(f"ao start is not running for {cfg.file} (pid {pid} is gone)") from None
        deadline = time.monotonic() + timeout
        while running_pid(cfg.data_dir) == pid and time.monotonic() < deadline:
            time.sleep(0.05)
        if running_pid(cfg.data_dir) == pid:
            raise AoError(f"ao start (pid {pid}) did not stop within {timeout:.0f} s; it may be in a long cycle: "
                          "wait, or run `ao stop` again")
        print(f"stopped ao start (pid {pid}); sessions keep running (ao status)")

    @app.command("events", epilog=examples(
        ("ao events", "the last 50 events"),
        ("ao events -s app-3 -n 0", "every event of one session"),
        ("ao events --follow", "keep printing new events until Ctrl-C"),
        ("ao events --json | jq 'select(.type==\"ci.failing\")'", ""),
    ))
    def events_cmd(
        ctx: typer.Context,
        follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new events until Ctrl-C.")] = False,
        session: Annotated[Optional[str], typer.Option("--session", "-s", metavar="SESSION",
                           help="Only this session's events.", show_default=False)] = None,
        limit: Annotated[int, typer.Option("--lines", "-n", "--limit", metavar="N", min=0,
                                           help="Show the last N events (0: all).")] = 50,
        json: Annotated[bool, typer.Option("--json", help="Print a JSON array (with --follow: one JSON object "
                                           "per line).")] = False,
        config: ConfigOption = None,
    ) -> None:
        """The event log: spawns, status changes, CI and review results, reactions, notifications."""
        from ao import events

        cfg = load_config(ctx, config)

        def wanted(e: dict[str, Any]) -> bool:
            return session is None or e.get("session") == session

        terminal = is_terminal()

        def show(e: dict[str, Any]) -> None:
            line = jsonlib.dumps(e, ensure_ascii=False) if json else event_text(e, terminal)
            print(line, flush=True)

        path = cfg.data_dir / events.EVENTS_FILE
        shown = [e for e in events.read(cfg.data_dir) if wanted(e)]
        last = shown[-limit:] if limit else shown
        if not follow:  # a listing: a table, tab-separated lines when piped, or (--json) a JSON array
            listing(last, EVENT_COLUMNS, title="events", json=json,
                    empty="no events yet" + (f" for {session}" if session else ""))
            return
        for e in last:  # followed: one line per event as it comes (with --json: JSON lines)
            show(e)
        offset = path.stat().st_size if path.exists() else 0
        while True:
            time.sleep(0.5)  # tailing a file: a display refresh period
            if not path.exists() or path.stat().st_size <= offset:
                continue
            with open(path, "rb") as fh:
                fh.seek(offset)
                chunk = fh.read()
            complete = chunk[:chunk.rfind(b"\n") + 1]
            offset += len(complete)
            for line in complete.splitlines():
                try:  # a damaged line (not UTF-8, not JSON) is skipped
                    e = jsonlib.loads(line.decode("utf-8"))
                except ValueError:
                    continue
                if isinstance(e, dict) and wanted(e):
                    show(e)


def _start_services(cfg: Any, poller: Any, loop: Any, orchestrator: bool, console: Any, dashboard: bool = True,
                    open_browser: bool = False) -> list[Any]:
    """The dashboard and the webhook receiver (when configured) on host:port, and the orchestrator agent;
    returns what must be stopped."""
    from ao import events
    from ao.webhook import WebhookReceiver, WebhookServer, hooks_from_config

    servers: list[Any] = []
    hooks = hooks_from_config(cfg)

    def delivered(project: str, event: str, branches: list[str]) -> None:
        poller.refresh(project, branches)
        loop.wake()

    receiver = WebhookReceiver(hooks, delivered, data_dir=cfg.data_dir) if hooks else None
    served = _start_dashboard(cfg, receiver, open_browser, console) if dashboard else None
    if served is not None:
        servers.append(served)
        if hooks:
            events.log(cfg.data_dir, f"webhooks: listening on {served.url(with_token=False).rstrip('/')} "
                                     + ", ".join(h.path for h in hooks), console=console)
    elif hooks:
        server = WebhookServer(hooks, delivered, host=cfg.host, port=cfg.port, data_dir=cfg.data_dir).start()
        servers.append(server)
        host, port = server.address
        events.log(cfg.data_dir, f"webhooks: listening on http://{host}:{port} "
                                 + ", ".join(h.path for h in hooks), console=console)
    if orchestrator:
        try:
            session = poller.manager.spawn_orchestrator()
        except AoError as exc:  # the loop is what matters; without its agent ao still does everything else
            events.log(cfg.data_dir, f"orchestrator agent not started: {exc}", console=console)
            if console is None:
                warn(f"orchestrator agent not started: {exc}")
        else:
            events.log(cfg.data_dir, f"orchestrator agent: session {session.id} (ao attach {session.id})",
                       console=console)
    return servers


def _start_dashboard(cfg: Any, receiver: Any, open_browser: bool, console: Any) -> Any:
    """The dashboard (with the webhook receiver on its port), or None when it cannot be served here (then
    the reason is logged and ``ao start`` goes on without it)."""
    import sys

    from ao import events
    from ao.web import server, settings

    try:
        served = server.DashboardServer(cfg, settings.from_config(cfg), receiver=receiver).start()
    except AoError as exc:
        events.log(cfg.data_dir, f"dashboard not served: {exc}", console=console)
        return None
    # the token goes to this terminal only, never to the log file
    moved = f" (port {served.settings.port} is taken: a free one was chosen)" if served.moved else ""
    events.log(cfg.data_dir, f"dashboard: {served.url(with_token=False)}{moved} (`ao dashboard --print-url` "
                             "prints its login URL)", console=None)
    print(f"ao: dashboard: {served.url()}{moved}", file=sys.stderr, flush=True)
    if open_browser:
        server.open_browser(served.url())
    return served
