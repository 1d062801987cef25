"""``ao dashboard``: serve the web dashboard on its own (``ao start`` serves it too)."""

from __future__ import annotations

import sys
from typing import Annotated, Optional

import typer

from ao.cli.common import ConfigOption, examples, load_config


def register(app: typer.Typer) -> None:
    @app.command(epilog=examples(
        ("ao dashboard", "serve on 127.0.0.1:3000 (a free port if that is taken) and open the browser"),
        ("ao dashboard --port 8080 --no-open", ""),
        ("ao dashboard --print-url", "the login URL again"),
        ("ssh -L 3000:127.0.0.1:3000 server", "from your machine: then open the URL there"),
    ))
    def dashboard(
        ctx: typer.Context,
        port: Annotated[Optional[int], typer.Option("--port", "-p", metavar="PORT", help="Port (default: the "
                                                    "config's port, else 3000 or a free one; 0 picks a free one).",
                                                    show_default=False)] = None,
        host: Annotated[Optional[str], typer.Option("--host", metavar="HOST", help="Bind address (default: the "
                                                    "config's host, "
                                                    "127.0.0.1).", show_default=False)] = None,
        no_open: Annotated[bool, typer.Option("--no-open", help="Do not open a browser.")] = False,
        print_url: Annotated[bool, typer.Option("--print-url", help="Print the login URL of the dashboard "
                                                "serving this data dir now, and exit.")] = False,
        allow_plain_http: Annotated[bool, typer.Option("--allow-plain-http", help="Serve on a non-loopback host "
                                                       "without TLS (only on a network you trust).")] = False,
        config: ConfigOption = None,
    ) -> None:
        """Serve the dashboard: a live board of every session, session pages with CI, reviews, merge criteria
        and a live terminal, the event log and the config. Works with or without `ao start` running.

        The URL it prints carries this data dir's secret token once (then a cookie); keep it private."""
        from ao.web import server, settings as settings_mod

        cfg = load_config(ctx, config)
        if port is not None and not 0 <= port <= 65535:
            from ao.errors import UsageError

            raise UsageError("--port must be between 0 and 65535")
        chosen = settings_mod.from_config(cfg, host=host, port=port, allow_plain_http=allow_plain_http)
        if print_url:
            print(server.print_url(cfg))
            return
        served = server.DashboardServer(cfg, chosen)
        url = served.url()
        # The login URL goes to the terminal (stderr, as `ao start` does), never into a redirected stdout.
        moved = f" (port {chosen.port} is taken: a free one was chosen)" if served.moved else ""
        print(f"ao dashboard: {url}{moved}", file=sys.stderr, flush=True)
        print("  (this URL logs a browser in; keep it private. Ctrl-C stops the dashboard)", file=sys.stderr,
              flush=True)
        if not no_open and server.open_browser(url):
            print("  opened in your browser", file=sys.stderr, flush=True)
        served.run()
