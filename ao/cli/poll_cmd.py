"""``ao poll``, ``ao start``, ``ao stop`` and ``ao events``."""

from __future__ import annotations

import time
from typing import Annotated, Any, Optional

import typer

from ao.cli.common import ConfigOption, JsonOption, load_config, print_json
from ao.errors import AoError, UsageError


def _summary(report: Any) -> str:
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


def register(app: typer.Typer) -> None:
    @app.command()
    def poll(
        ctx: typer.Context,
        dry_run: Annotated[bool, typer.Option("--dry-run", help="Decide but do nothing: no messages, "
                                              "notifications or merges; no session, ledger or event written.")] = False,
        json: JsonOption = False,
        config: ConfigOption = None,
    ) -> None:
        """Run one observation cycle and print what fired (or, with --dry-run, what would fire)."""
        from ao.poller import Poller, poller_lock

        cfg = load_config(ctx, config)
        poller = Poller(cfg, dry_run=dry_run)
        try:
            if dry_run:
                report = poller.cycle()
            else:
                with poller_lock(cfg.data_dir):
                    report = poller.cycle()
        finally:
            poller.close()
        if json:
            print_json(report.to_dict())
            return
        for event in report.events:
            print(f"{event['ts']} {event['type']:<26} {event.get('session') or event.get('project', '')}")
        for a in report.actions:
            verb = "would" if report.dry_run else ("ok" if a["ok"] else "FAILED")
            target = a["session"] or a["project"]
            extra = f" → {', '.join(a['notifiers'])}" if a["notifiers"] else ""
            print(f"{verb:<6} {a['reaction']:<20} {a['action']:<14} {target}{extra}"
                  + (f": {a['error']}" if a["error"] else ""))
        for row in report.admissions:
            what = " ".join(str(x) for x in (row["project"], row["issue"]) if x)
            print(f"queue  {row['result']:<12} {what}" + (f" → {row['session']}" if row.get("session") else "")
                  + (f": {row['detail']}" if row.get("detail") else ""))
        for error in report.errors:
            print(f"error: {error}")
        print(_summary(report))

    @app.command()
    def start(
        ctx: typer.Context,
        no_orchestrator: Annotated[bool, typer.Option("--no-orchestrator", help="Do not start the orchestrator "
                                                      "agent session.")] = False,
        interval: Annotated[Optional[str], typer.Option("--interval", help="Poll period, e.g. 10s (default: the "
                                                        "config's pollInterval).", show_default=False)] = None,
        no_dashboard: Annotated[bool, typer.Option("--no-dashboard", help="Do not serve the dashboard.")] = False,
        no_open: Annotated[bool, typer.Option("--no-open", help="Do not open the dashboard in a browser.")] = False,
        config: ConfigOption = None,
    ) -> None:
        """Run the lifecycle loop in the foreground until Ctrl-C or `ao stop`: poll, react, notify, merge,
        clean up; serve the dashboard (and the webhook receiver, when one is configured) on host:port."""
        from ao import events
        from ao.durations import DurationError, parse_duration
        from ao.poller import Loop, Poller, poller_lock

        cfg = load_config(ctx, config)
        try:
            period = parse_duration(interval) if interval else cfg.poll_interval
        except DurationError as exc:
            raise UsageError(f"--interval: {exc}") from None
        if period <= 0:
            raise UsageError("--interval must be positive")
        poller = Poller(cfg)
        with poller_lock(cfg.data_dir):
            loop = Loop(poller, period, on_cycle=lambda r: events.log(cfg.data_dir, _summary(r), console=None))
            loop.install_signals()
            servers = _start_services(cfg, poller, loop, orchestrator=not no_orchestrator,
                                      dashboard=not no_dashboard, open_browser=not no_open)
            events.log(cfg.data_dir, f"ao started: polling every {period} s (pid {__import__('os').getpid()})")
            try:
                loop.run()
            finally:
                for server in servers:
                    server.stop()
                poller.close()
                events.log(cfg.data_dir, "ao stopped")

    @app.command()
    def stop(
        ctx: typer.Context,
        timeout: Annotated[float, typer.Option("--timeout", help="Seconds to wait for it to finish its cycle.")] = 30.0,
        config: ConfigOption = None,
    ) -> None:
        """Stop the running `ao start` (SIGTERM, then wait for it to finish its cycle)."""
        import os
        import signal

        from ao.poller import running_pid

        cfg = load_config(ctx, config)
        pid = running_pid(cfg.data_dir)
        if pid is None:
            raise AoError(f"no ao poller is running for {cfg.data_dir}")
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            raise AoError(f"no ao poller is running for {cfg.data_dir} (pid {pid} is gone)") from None
        deadline = time.monotonic() + timeout
        while running_pid(cfg.data_dir) == pid and time.monotonic() < deadline:
            time.sleep(0.05)
        if running_pid(cfg.data_dir) == pid:
            raise AoError(f"ao (pid {pid}) did not stop within {timeout:.0f} s")
        print(f"stopped ao (pid {pid})")

    @app.command("events")
    def events_cmd(
        ctx: typer.Context,
        follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new events until Ctrl-C.")] = False,
        session: Annotated[Optional[str], typer.Option("--session", "-s", help="Only this session's events.",
                                                       show_default=False)] = None,
        limit: Annotated[int, typer.Option("--limit", "-n", help="Show the last N events (0: all).")] = 50,
        json: JsonOption = False,
        config: ConfigOption = None,
    ) -> None:
        """The event log: spawns, status changes, CI and review results, reactions, notifications."""
        import json as jsonlib

        from ao import events

        cfg = load_config(ctx, config)

        def wanted(e: dict[str, Any]) -> bool:
            return session is None or e.get("session") == session

        def show(e: dict[str, Any]) -> None:
            if json:
                print(jsonlib.dumps(e, ensure_ascii=False), flush=True)
                return
            rest = {k: v for k, v in e.items() if k not in ("ts", "type", "session", "project")}
            detail = " ".join(f"{k}={v}" for k, v in rest.items() if v not in (None, "", [], {}))
            print(f"{e.get('ts', '')} {e.get('type', ''):<26} {e.get('session') or e.get('project') or '':<12} "
                  f"{detail}".rstrip(), flush=True)

        path = cfg.data_dir / events.EVENTS_FILE
        shown = [e for e in events.read(cfg.data_dir) if wanted(e)]
        if json and not follow:
            print_json(shown[-limit:] if limit else shown)
            return
        for e in shown[-limit:] if limit else shown:
            show(e)
        if not follow:
            return
        offset = path.stat().st_size if path.exists() else 0
        try:
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
        except KeyboardInterrupt:
            pass


def _start_services(cfg: Any, poller: Any, loop: Any, orchestrator: bool, dashboard: bool = True,
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
    served = _start_dashboard(cfg, receiver, open_browser) if dashboard else None
    if served is not None:
        servers.append(served)
        if hooks:
            events.log(cfg.data_dir, f"webhooks: listening on {served.url(with_token=False).rstrip('/')} "
                                     + ", ".join(h.path for h in hooks))
    elif hooks:
        server = WebhookServer(hooks, delivered, host=cfg.host, port=cfg.port, data_dir=cfg.data_dir).start()
        servers.append(server)
        host, port = server.address
        events.log(cfg.data_dir, f"webhooks: listening on http://{host}:{port} "
                                 + ", ".join(h.path for h in hooks))
    if orchestrator:
        try:
            session = poller.manager.spawn_orchestrator()
        except AoError as exc:  # the loop is what matters; without its agent ao still does everything else
            events.log(cfg.data_dir, f"orchestrator agent not started: {exc}")
        else:
            events.log(cfg.data_dir, f"orchestrator agent: session {session.id} (ao attach {session.id})")
    return servers


def _start_dashboard(cfg: Any, receiver: Any, open_browser: bool) -> Any:
    """The dashboard (with the webhook receiver on its port), or None when it cannot be served here (then
    the reason is logged and ``ao start`` goes on without it)."""
    import sys

    from ao import events
    from ao.web import server, settings

    try:
        served = server.DashboardServer(cfg, settings.from_config(cfg), receiver=receiver).start()
    except AoError as exc:
        events.log(cfg.data_dir, f"dashboard not served: {exc}")
        return None
    # the token goes to this terminal only, never to the log file
    events.log(cfg.data_dir, f"dashboard: {served.url(with_token=False)} (`ao dashboard --print-url` prints "
                             "its login URL)", console=None)
    print(f"ao: dashboard: {served.url()}", file=sys.stderr, flush=True)
    if open_browser:
        server.open_browser(served.url())
    return served
