"""The dashboard's ASGI application: pages, the live stream, actions, the terminal socket, behind the guard.

Request flow: :class:`Guard` (Host, login by token, the session cookie, Origin, CSRF, security headers) then
Starlette's routes. Webhook deliveries (``ao start`` with ``scm.webhook``) are routed before the guard:
they carry their own HMAC signature and come from GitHub, not from a browser.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from pathlib import Path
from typing import Any, Callable
from urllib.parse import parse_qsl, urlencode

from ao import events as events_mod
from ao.errors import AoError
from ao.web import views
from ao.web.actions import QUICK_REPLIES, Actions, Waiting, audit
from ao.web.auth import Auth, LoginLimiter, host_ok, origin_ok
from ao.web.settings import ServeSettings

HERE = Path(__file__).resolve().parent
SAFE_METHODS = ("GET", "HEAD")
STYLE_NONCE = "ao.nonce"
SESSION = "ao.session"
TIMELINE = 200          # events shown on a session page
EVENTS_PAGE = 1000      # events shown on the events page at first

UNAUTHORIZED = ("401 Unauthorized\n\nOpen the dashboard with the URL `ao dashboard` printed "
                "(`ao dashboard --print-url` prints it again).\n")


def csp(nonce: str) -> str:
    # Styles: our stylesheet, plus <style> elements xterm.js makes, which carry the page's nonce (app.js
    # stamps it on them). Nothing inline runs, nothing comes from elsewhere, nothing frames us.
    return ("default-src 'none'; script-src 'self'; "
            f"style-src 'self' 'nonce-{nonce}'; img-src 'self' data:; font-src 'self'; connect-src 'self'; "
            "manifest-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")


def security_headers(nonce: str, tls: bool) -> list[tuple[bytes, bytes]]:
    out = [
        (b"content-security-policy", csp(nonce).encode()),
        (b"x-content-type-options", b"nosniff"),
        (b"x-frame-options", b"DENY"),
        (b"referrer-policy", b"no-referrer"),
        (b"cross-origin-opener-policy", b"same-origin"),
        (b"cross-origin-resource-policy", b"same-origin"),
        (b"permissions-policy", b"camera=(), microphone=(), geolocation=(), usb=(), payment=()"),
    ]
    if tls:
        out.append((b"strict-transport-security", b"max-age=31536000"))
    return out


# ------------------------------------------------------------------------------------------------- guard

class Guard:
    """Pure ASGI middleware: nothing reaches the app (or leaks) without the token's cookie."""

    def __init__(self, app: Any, config: Any, settings: ServeSettings, auth: Auth, limiter: LoginLimiter,
                 webhooks: Any = None) -> None:
        self.app, self.config, self.settings, self.auth, self.limiter = app, config, settings, auth, limiter
        self.webhooks = webhooks
        self.names = settings.host_names

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, send)
            return
        if self.webhooks is not None and scope["type"] == "http" and self.webhooks.handles(scope["path"]):
            await self.webhooks(scope, receive, send)
            return
        from starlette.datastructures import Headers

        headers = Headers(scope=scope)
        nonce = secrets.token_urlsafe(16)
        scope[STYLE_NONCE] = nonce
        extra = security_headers(nonce, self.settings.tls)
        websocket = scope["type"] == "websocket"
        client = (scope.get("client") or ("?", 0))[0]

        if not host_ok(headers.get("host"), self.names):
            await _deny(scope, receive, send, 421, "421 Misdirected Request: this server does not answer to that "
                                                    "Host name\n", extra)
            return
        query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
        if "token" in query and not websocket:
            await self._login(scope, receive, send, query, client, extra)
            return
        session = self.auth.session_id(_cookie(headers.get("cookie"), self.auth.cookie_name))
        if session is None:
            await _deny(scope, receive, send, 401, UNAUTHORIZED, extra)
            return
        method = scope.get("method", "GET")
        if websocket or method not in SAFE_METHODS:
            origin = headers.get("origin")
            fetch_site = headers.get("sec-fetch-site")
            if (websocket and origin is None) or not origin_ok(origin, _scheme(scope, websocket), headers.get("host")) \
                    or (fetch_site is not None and fetch_site not in ("same-origin", "none")):
                await _deny(scope, receive, send, 403, "403 Forbidden: cross-origin request refused\n", extra)
                return
        if not websocket and method not in SAFE_METHODS and not self.auth.csrf_ok(session, headers.get("x-csrf-token")):
            await _deny(scope, receive, send, 403, "403 Forbidden: missing or wrong CSRF token; reload the page\n",
                        extra)
            return
        scope[SESSION] = session

        async def send_with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                names = {k.lower() for k, _ in message.get("headers", [])}
                message["headers"] = list(message.get("headers", [])) + [h for h in extra if h[0] not in names]
                if b"cache-control" not in names:
                    message["headers"].append((b"cache-control", b"no-store"))
            await send(message)

        await self.app(scope, receive, send_with_headers)

    async def _login(self, scope: dict, receive: Callable, send: Callable, query: dict, client: str,
                     extra: list) -> None:
        wait = self.limiter.retry_after(client)
        if wait > 0:
            await _deny(scope, receive, send, 429, "429 Too Many Requests: too many wrong tokens; wait a minute\n",
                        extra + [(b"retry-after", str(int(wait) + 1).encode())])
            return
        if not self.auth.token_ok(query.get("token")):
            self.limiter.failed(client)
            events_mod.append(self.config.data_dir, "dashboard.login", ok=False, client=client)
            await _deny(scope, receive, send, 401, UNAUTHORIZED, extra)
            return
        events_mod.append(self.config.data_dir, "dashboard.login", ok=True, client=client)
        rest = urlencode([(k, v) for k, v in query.items() if k != "token"])
        location = scope["path"] + (f"?{rest}" if rest else "")
        cookie = self.auth.set_cookie(self.auth.new_session())
        await send({"type": "http.response.start", "status": 303,
                    "headers": [(b"location", location.encode()), (b"set-cookie", cookie.encode()),
                                (b"cache-control", b"no-store"), (b"content-length", b"0"), *extra]})
        await send({"type": "http.response.body", "body": b""})


def _scheme(scope: dict, websocket: bool) -> str:
    scheme = scope.get("scheme", "http")
    return {"ws": "http", "wss": "https"}.get(scheme, scheme) if websocket else scheme


def _cookie(header: str | None, name: str) -> str | None:
    for part in (header or "").split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value
    return None


async def _deny(scope: dict, receive: Callable, send: Callable, status: int, text: str, extra: list) -> None:
    body = text.encode()
    headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode()),
               (b"cache-control", b"no-store"), *extra]
    if scope["type"] == "websocket":
        message = await receive()  # websocket.connect
        if message.get("type") != "websocket.connect":
            return
        if "websocket.http.response" in scope.get("extensions") or {}:
            await send({"type": "websocket.http.response.start", "status": status, "headers": headers})
            await send({"type": "websocket.http.response.body", "body": body})
        else:
            await send({"type": "websocket.close", "code": 1008})
        return
    # drain the request body so the connection stays usable
    while scope.get("method") not in SAFE_METHODS:
        message = await receive()
        if message["type"] != "http.request" or not message.get("more_body"):
            break
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


# ---------------------------------------------------------------------------------------------- rendering

class Renderer:
    """Jinja pages and fragments, and the watcher's messages (each change rendered once, for every tab)."""

    def __init__(self, config: Any) -> None:
        import jinja2

        from ao import engine

        self.config = config
        self.env = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True,
                                      trim_blocks=True, lstrip_blocks=True, undefined=jinja2.ChainableUndefined)
        self.env.globals.update(groups=views.GROUPS, quick_replies=QUICK_REPLIES, short=lambda s: (s or "")[:10],
                                problems_text=problems_text)
        self.env.filters["when"] = _when
        self.compiled = engine.compile_config(config)
        self.watcher: Any = None
        self.cards: dict[str, str] = {}  # each session's card as last rendered for the stream: the board reuses it

    def page(self, name: str, request: Any, **context: Any) -> Any:
        from starlette.responses import HTMLResponse

        auth: Auth = request.app.state.auth
        snap = context["snap"]
        attention = [s.id for s in snap.sessions.values() if views.group_of(s) in views.ATTENTION]
        html = self.env.get_template(name).render(
            nonce=request.scope[STYLE_NONCE], csrf=auth.csrf(request.scope[SESSION]), cursor=snap.cursor,
            poller=snap.poller, problems=snap.problems, attention=",".join(sorted(attention)), **context)
        return HTMLResponse(html)

    def fragment(self, name: str, **context: Any) -> str:
        return self.env.get_template(name).render(**context)

    def timeline(self, sid: str, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [e for e in events if e.get("session") == sid][-TIMELINE:]

    def detail(self, session: Any, events: list[dict[str, Any]]) -> dict[str, Any]:
        """Everything the session page shows of one session (beyond its terminal)."""
        from ao import facts
        from ao.explain import explain

        fact = dict(session.fact or {})
        compiled = self.compiled.get(session.project)
        timeline = self.timeline(session.id, events)
        report = explain(compiled, fact, session.ledger_entries()) if compiled is not None and fact else []
        criteria = _criteria(session, fact)
        return {"s": session, "card": views.card(session), "fact": fact, "pr": views.pr_details(session),
                "criteria": criteria, "ready": bool(criteria) and all(c["ok"] for c in criteria)
                and fact.get("pr_state") == "open",
                "reactions": views.ledger_rows(report, timeline), "timeline": list(reversed(timeline)),
                "head_sha": (session.meta.get("pr") or {}).get("head_sha") or fact.get("head_sha", ""),
                "terminal": session.status in facts.TERMINAL, "local_scm":
                (self.config.projects[session.project].scm or {}).get("plugin", "local") == "local"
                if session.project in self.config.projects else False}

    def messages(self, kind: str, item: Any) -> list[tuple[str, str | None, dict[str, Any]]]:
        """The watcher's render hook (runs inside the watcher's lock)."""
        if kind == "event":
            return [("event", None, {"event": item, "html": self.fragment("_event.html.j2", e=item)})]
        if kind == "poller":
            return [("poller", None, item)]
        if kind == "problems":
            return [("problems", None, {"records": item, "text": problems_text(item)})]
        if isinstance(item, str):
            self.cards.pop(item, None)
            return [("removed", None, {"id": item})]
        card = views.card(item)
        self.cards[item.id] = self.fragment("_card.html.j2", c=card)
        events = list(self.watcher.events) if self.watcher is not None else []
        detail = self.detail(item, events)
        return [("session", None, {"id": item.id, "group": card["group"], "project": item.project,
                                   "attention": card["group"] in views.ATTENTION,
                                   "html": self.cards[item.id]}),
                ("detail", item.id, {"id": item.id, "status": item.status,
                                     "html": self.fragment("_detail.html.j2", **detail)})]


def problems_text(records: list[str]) -> str:
    """The problem banner's text ("" when there is no problem record)."""
    if not records:
        return ""
    n = len(records)
    return (f"{n} session record{'s' if n != 1 else ''} cannot be shown: {', '.join(records)}. A session may "
            "still run unseen: `ao session ls --problems` lists them with what still runs, and "
            "`ao session adopt ID` takes one back.")


def _criteria(session: Any, fact: dict[str, Any]) -> list[dict[str, Any]]:
    """The merge criteria as ``ao rules explain`` and ``ao merge`` see them (``ao.merging``)."""
    from ao import merging

    if not fact or fact.get("pr_state") in (None, "none"):
        return []
    return [{"name": c.name, "ok": c.ok, "detail": c.detail} for c in merging.for_session(session, fact)]


def _when(ts: Any) -> str:
    if isinstance(ts, str):
        return ts.replace("T", " ").rstrip("Z")[:19]
    if isinstance(ts, (int, float)) and ts:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))
    return ""


# ------------------------------------------------------------------------------------------------ the app

def create_app(config: Any, settings: ServeSettings, token: str, *, webhooks: Any = None,
               tick: float | None = None) -> Any:
    """The guarded ASGI app. ``webhooks`` (ao start) handles signed webhook deliveries before the guard."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response, StreamingResponse
    from starlette.routing import Mount, Route, WebSocketRoute
    from starlette.staticfiles import StaticFiles
    from starlette.websockets import WebSocket

    from ao.sessions import Sessions
    from ao.web.terminal import Terminals, _drain
    from ao.web.watcher import TICK, Hub, Watcher

    auth = Auth(token, secure=settings.tls)
    renderer = Renderer(config)
    watcher = Watcher(config.data_dir, renderer.messages)
    renderer.watcher = watcher
    hub = Hub(watcher, tick=TICK if tick is None else tick)
    terminals = Terminals(Sessions(config))
    actions = Actions(config)

    def snap(request: Request) -> Any:
        return watcher.snapshot()

    async def board(request: Request) -> Response:
        from starlette.concurrency import run_in_threadpool

        from ao.overview import totals_lines
        from ao.usage import project_rows

        s = await run_in_threadpool(snap, request)
        data = views.board(sorted(s.sessions.values(), key=lambda x: x.updated_at, reverse=True))
        usage = totals_lines(await run_in_threadpool(project_rows, config, sorted(config.projects)))
        return renderer.page("board.html.j2", request, snap=s, board=data, title="Board", cards=dict(renderer.cards),
                             project=request.query_params.get("project", ""),
                             projects=sorted(config.projects), usage=usage)

    async def session_page(request: Request) -> Response:
        from starlette.concurrency import run_in_threadpool

        sid = request.path_params["sid"]
        s = await run_in_threadpool(snap, request)
        session = s.sessions.get(sid)
        if session is None:
            return renderer.page("missing.html.j2", request, snap=s, sid=sid, title=sid,
                                 archived=await run_in_threadpool(_archived, config, sid))
        detail = renderer.detail(session, s.events)
        return renderer.page("session.html.j2", request, snap=s, title=sid, **detail)

    async def events_page(request: Request) -> Response:
        from starlette.concurrency import run_in_threadpool

        s = await run_in_threadpool(snap, request)
        shown = s.events[-EVENTS_PAGE:]
        kinds = sorted({str(e.get("type", "")) for e in s.events})
        return renderer.page("events.html.j2", request, snap=s, events=list(reversed(shown)), kinds=kinds,
                             title="Events", sessions=sorted(s.sessions), q=request.query_params)

    async def config_page(request: Request) -> Response:
        import yaml
        from starlette.concurrency import run_in_threadpool

        from ao import config as config_mod
        from ao.explain import trigger_text

        data = redact(config_mod.effective(config))
        rules = {pid: [{"rule": ct.name, "reaction": ct.reaction.key, "when": trigger_text(ct.when),
                        "occurrence": ct.trigger.occurrence, "scope": ct.trigger.scope,
                        "action": ct.reaction.action if ct.reaction.auto
                        else f"notify (auto off; {ct.reaction.action})",
                        "priority": ct.reaction.priority or "", "retries": ct.reaction.retries,
                        "escalate": ct.reaction.escalate_seconds}
                       for ct in cp.triggers] for pid, cp in renderer.compiled.items()}
        routing = {pid: cp.routing for pid, cp in renderer.compiled.items()}
        return renderer.page("config.html.j2", request, snap=await run_in_threadpool(snap, request), title="Config",
                             text=yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100),
                             rules=rules, routing=routing)

    async def spawn_page(request: Request) -> Response:
        from starlette.concurrency import run_in_threadpool

        return renderer.page("spawn.html.j2", request, snap=await run_in_threadpool(snap, request), title="Spawn",
                             projects=sorted(config.projects))

    async def stream(request: Request) -> Response:
        cursor = request.headers.get("last-event-id") or request.query_params.get("since")
        body = hub.sse(cursor, request.query_params.get("session"))
        return StreamingResponse(body, media_type="text/event-stream",
                                 headers={"cache-control": "no-store", "x-accel-buffering": "no"})

    async def stream_ws(websocket: WebSocket) -> None:
        from starlette.websockets import WebSocketDisconnect

        await websocket.accept()
        receiver = asyncio.create_task(_drain(websocket))
        sender = asyncio.create_task(hub.websocket(websocket, websocket.query_params.get("since"),
                                                   websocket.query_params.get("session")))
        try:
            await asyncio.wait({receiver, sender}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (receiver, sender):
                task.cancel()
            with contextlib.suppress(WebSocketDisconnect, RuntimeError, asyncio.CancelledError):
                await sender
                await websocket.close()

    async def board_json(request: Request) -> Response:
        from starlette.concurrency import run_in_threadpool

        s = await run_in_threadpool(snap, request)
        return JSONResponse({"cursor": s.cursor, "poller": s.poller, "problems": s.problems,
                             "sessions": [views.card(x) for x in s.sessions.values()]})

    async def stats(request: Request) -> Response:
        """What the server is doing: open streams and terminals, and the watcher's disk work so far."""
        return JSONResponse({"streams": hub.streams, "terminals": len(terminals.streams), "seq": watcher.seq,
                             "reads": watcher.reads_now()})

    async def issues(request: Request) -> Response:
        from starlette.concurrency import run_in_threadpool

        try:
            found = await run_in_threadpool(actions.issues, request.path_params["project"])
        except AoError as exc:
            return JSONResponse({"ok": False, "message": str(exc)}, status_code=400)
        return JSONResponse({"ok": True, "issues": found})

    def action(name: str, run: Callable[[Request, dict[str, Any]], Callable[[], str]]) -> Callable:
        async def endpoint(request: Request) -> Response:
            from starlette.concurrency import run_in_threadpool

            sid = request.path_params.get("sid")
            try:
                body = await request.json() if await request.body() else {}
                if not isinstance(body, dict):
                    raise ValueError
            except ValueError:
                return JSONResponse({"ok": False, "message": "the request body is not a JSON object"}, status_code=400)
            client = request.client.host if request.client else "?"
            extra = {k: body[k] for k in ("answer", "reply", "verdict", "sha", "project", "issue") if k in body}
            try:
                message = await run_in_threadpool(run(request, body))
            except Waiting as exc:
                audit(config, name, session=sid, ok=False, detail=str(exc), client=client, **extra)
                return JSONResponse({"ok": False, "message": str(exc), "waiting_for": exc.waiting_for},
                                    status_code=409)
            except AoError as exc:
                audit(config, name, session=sid, ok=False, detail=str(exc), client=client, **extra)
                return JSONResponse({"ok": False, "message": str(exc)}, status_code=422)
            except Exception as exc:  # a bug: the person still gets an answer, and the log has it
                audit(config, name, session=sid, ok=False, detail=f"{type(exc).__name__}: {exc}", client=client,
                      **extra)
                return JSONResponse({"ok": False, "message": f"internal error: {type(exc).__name__}: {exc}"},
                                    status_code=500)
            audit(config, name, session=sid, ok=True, detail=message, client=client, **extra)
            await run_in_threadpool(watcher.scan)  # the result is on every screen before the answer returns
            return JSONResponse({"ok": True, "message": message})

        return endpoint

    def text(body: dict, key: str) -> str:
        value = body.get(key, "")
        if not isinstance(value, str):
            raise AoError(f"'{key}' must be text")
        return value

    routes = [
        Route("/", board), Route("/s/{sid}", session_page), Route("/events", events_page),
        Route("/config", config_page), Route("/spawn", spawn_page),
        Route("/api/stream", stream), Route("/api/board", board_json), Route("/api/stats", stats),
        Route("/api/projects/{project}/issues", issues),
        Route("/api/sessions/{sid}/send", action("send", lambda r, b: lambda: actions.send(
            r.path_params["sid"], text(b, "text"), bool(b.get("answer")))), methods=["POST"]),
        Route("/api/sessions/{sid}/reply", action("reply", lambda r, b: lambda: actions.reply(
            r.path_params["sid"], text(b, "reply"), bool(b.get("answer")))), methods=["POST"]),
        Route("/api/sessions/{sid}/kill", action("kill", lambda r, b: lambda: actions.kill(r.path_params["sid"])),
              methods=["POST"]),
        Route("/api/sessions/{sid}/restore", action("restore", lambda r, b: lambda: actions.restore(
            r.path_params["sid"])), methods=["POST"]),
        Route("/api/sessions/{sid}/merge", action("merge", lambda r, b: lambda: actions.merge(
            r.path_params["sid"], text(b, "sha"))), methods=["POST"]),
        Route("/api/sessions/{sid}/review", action("review", lambda r, b: lambda: actions.review(
            r.path_params["sid"], text(b, "verdict"), text(b, "text"))), methods=["POST"]),
        Route("/api/spawn", action("spawn", lambda r, b: lambda: actions.spawn(
            text(b, "project"), text(b, "issue"), text(b, "prompt"))), methods=["POST"]),
        WebSocketRoute("/ws/stream", lambda ws: stream_ws(ws)),
        WebSocketRoute("/ws/terminal/{sid}", lambda ws: terminal(ws)),
        Mount("/static", app=StaticFiles(directory=HERE / "static"), name="static"),
    ]

    async def terminal(websocket: WebSocket) -> None:
        from starlette.concurrency import run_in_threadpool

        sid = websocket.path_params["sid"]
        s = await run_in_threadpool(snap, websocket)
        session = s.sessions.get(sid)
        await websocket.accept()
        if session is None:
            await websocket.send_json({"type": "hello", "mode": "none", "cols": 80, "rows": 24})
            await websocket.send_json({"type": "ended", "reason": f"no live session {sid}"})
            await websocket.close()
            return
        from starlette.websockets import WebSocketDisconnect

        with contextlib.suppress(WebSocketDisconnect, RuntimeError):  # the browser left: nothing to tell it
            await terminals.watch(session, websocket)
            await websocket.close()

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> Any:
        hub.start()
        try:
            yield
        finally:
            await terminals.close()
            await hub.stop()

    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.auth = auth
    app.state.watcher = watcher
    app.state.hub = hub
    app.state.terminals = terminals
    return Guard(app, config, settings, auth, LoginLimiter(), webhooks=webhooks)


def _archived(config: Any, sid: str) -> bool:
    from ao.store import SessionStore, valid_name

    return valid_name(sid) and SessionStore(config.data_dir, log=False).is_archived(sid)


_SECRET_KEYS = ("password", "passwd", "secret", "token", "apikey", "api_key", "webhook", "credential", "auth",
                "url", "privatekey", "key")


def redact(data: Any, key: str = "") -> Any:
    """The effective config with anything that looks like a credential hidden, beyond what came from the
    environment (``config.effective`` already hides those): notifier URLs and tokens are often literal."""
    if isinstance(data, dict):
        return {k: redact(v, str(k)) for k, v in data.items()}
    if isinstance(data, list):
        return [redact(v, key) for v in data]
    low = key.lower().replace("-", "").replace("_", "")
    if isinstance(data, str) and data and any(low.endswith(s.replace("_", "")) for s in _SECRET_KEYS) \
            and low not in ("secretenv", "tokenenv"):
        return events_mod.REDACTED
    return data

