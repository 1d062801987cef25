"""The dashboard (SPEC 11): a live, authenticated web view of every session, served by ``ao dashboard`` and
``ao start``.

- :mod:`ao.web.auth`: the per-data-dir token, session cookies, CSRF tokens, Host/Origin checks, login
  rate limiting (pure, no web framework).
- :mod:`ao.web.settings`: where and how to serve (host, port, TLS, the exposure rule).
- :mod:`ao.web.watcher`: the one server-side watcher of the event log and the session store, and the hub
  that fans its messages out to every browser.
- :mod:`ao.web.views`: board groups, cards and the session page's data, as plain functions.
- :mod:`ao.web.actions`: what a browser may do, through the same library calls as the CLI, audited.
- :mod:`ao.web.terminal`: the live, read-only terminal stream (one ``tmux attach -r`` per watched session).
- :mod:`ao.web.app`: the Starlette application tying them together; :mod:`ao.web.server` runs it.

Nothing here is imported by the CLI until a dashboard is served: Starlette, uvicorn and Jinja stay out of
``ao --version``.
"""
