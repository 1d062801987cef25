"""The dashboard without a browser: its security primitives, the watcher, and a real `ao dashboard` over HTTP,
SSE and WebSocket (401 without the token, Host/Origin/CSRF refused, headers, audit, resume)."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
import time

import httpx
import pytest
from dashkit import start_dashboard
from dockerkit import require_docker, started_engine  # (imported before a test's HOME changes: tools' paths)
from sessionkit import wait_for

from test_docker import docker_project

from ao.store import SessionStore
from ao.web import auth as auth_mod
from ao.web.watcher import Watcher


# ----------------------------------------------------------------------------------------------- auth

def test_token_file_is_private_stable_and_replaced_when_others_can_read_it(tmp_path):
    token = auth_mod.load_token(tmp_path)
    path = tmp_path / auth_mod.TOKEN_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and len(token) >= 40
    assert auth_mod.load_token(tmp_path) == token
    path.chmod(0o644)
    fresh = auth_mod.load_token(tmp_path)
    assert fresh != token and stat.S_IMODE(path.stat().st_mode) == 0o600


def test_session_cookies_and_csrf_tokens_are_bound_to_the_token():
    now = [1_000_000.0]
    a = auth_mod.Auth("t" * 43, clock=lambda: now[0])
    cookie = a.new_session()
    sid = a.session_id(cookie)
    assert sid and a.csrf_ok(sid, a.csrf(sid)) and not a.csrf_ok(sid, "x") and not a.csrf_ok(sid, None)
    issued, nonce, mac = cookie.split(".")
    assert a.session_id(f"{issued}.{nonce}x.{mac}") is None  # tampered
    assert auth_mod.Auth("u" * 43).session_id(cookie) is None  # another data dir's token
    assert "HttpOnly" in a.set_cookie(cookie) and "SameSite=Strict" in a.set_cookie(cookie)
    assert "Secure" not in a.set_cookie(cookie) and "Secure" in auth_mod.Auth("t" * 43, secure=True).set_cookie(cookie)
    now[0] += auth_mod.SESSION_MAX_AGE + 1
    assert a.session_id(cookie) is None  # expired


def test_host_and_origin_checks():
    names = auth_mod.allowed_host_names("127.0.0.1", ["ao.example.internal"])
    assert auth_mod.host_ok("127.0.0.1:3000", names) and auth_mod.host_ok("localhost:9", names)
    assert auth_mod.host_ok("[::1]:3000", names) and auth_mod.host_ok("ao.example.internal", names)
    assert not auth_mod.host_ok("evil.example:3000", names)  # DNS rebinding
    assert not auth_mod.host_ok(None, names) and not auth_mod.host_ok("127.0.0.1:x", names)
    assert auth_mod.origin_ok(None, "http", "127.0.0.1:3000")
    assert auth_mod.origin_ok("http://127.0.0.1:3000", "http", "127.0.0.1:3000")
    assert not auth_mod.origin_ok("http://evil.example", "http", "127.0.0.1:3000")
    assert not auth_mod.origin_ok("https://127.0.0.1:3000", "http", "127.0.0.1:3000")
    assert not auth_mod.origin_ok("null", "http", "127.0.0.1:3000")


def test_login_limiter_refuses_after_the_limit_until_the_window_passes():
    now = [0.0]
    limiter = auth_mod.LoginLimiter(limit=3, window=60, clock=lambda: now[0])
    for _ in range(3):
        assert limiter.retry_after("a") == 0
        limiter.failed("a")
    assert limiter.retry_after("a") == 60 and limiter.retry_after("b") == 0
    now[0] = 61
    assert limiter.retry_after("a") == 0


def test_exposure_rule_refuses_non_loopback_without_tls(tmp_path):
    from ao.errors import AoError
    from ao.web.settings import ServeSettings

    ServeSettings("127.0.0.1", 3000).check_exposure()
    ServeSettings("::1", 3000).check_exposure()
    ServeSettings("0.0.0.0", 3000, allow_plain_http=True).check_exposure()
    ServeSettings("0.0.0.0", 3000, cert_file=tmp_path, key_file=tmp_path).check_exposure()
    with pytest.raises(AoError, match="SSH tunnel"):
        ServeSettings("0.0.0.0", 3000).check_exposure()
    assert ServeSettings("::", 3000).url(4000, "tok") == "http://[::1]:4000/?token=tok"


# ------------------------------------------------------------------------------------------- the watcher

def _messages(kind, item):
    if kind == "session":
        return [("session", None, {"id": item if isinstance(item, str) else item.id})]
    return [(kind, None, {"item": item if isinstance(item, dict) else None})]


def test_watcher_reads_only_what_changed_and_resumes_from_a_cursor(tmp_path):
    from ao import events

    store = SessionStore(tmp_path, log=False)
    for _ in range(5):
        store.create("app", "app", status="working")
    watcher = Watcher(tmp_path, _messages)
    watcher.scan()
    assert watcher.reads.session_reads == 5 and set(watcher.sessions) == {f"app-{n}" for n in range(1, 6)}
    cursor = f"{watcher.boot}-{watcher.seq}"
    before = watcher.reads.session_reads
    watcher.scan()
    assert watcher.reads.session_reads == before  # nothing changed: stat only
    store.update("app-3", status="ci_failed")
    events.append(tmp_path, "ci.failing", session="app-3")
    watcher.scan()
    assert watcher.reads.session_reads == before + 1 and watcher.sessions["app-3"].status == "ci_failed"
    records, _ = watcher.since(cursor)
    assert sorted(m.kind for m in records) == ["event", "session"]
    assert all(json.loads(m.text)["cursor"] == f"{watcher.boot}-{m.seq}" for m in records)
    assert watcher.since("otherboot-1") is None  # another server run: reload
    store.archive("app-5", "app", status="cleanup")
    watcher.scan()
    assert "app-5" not in watcher.sessions


def test_watcher_names_unreadable_and_quarantined_records(tmp_path, monkeypatch):
    from ao.web import watcher as watcher_mod

    monkeypatch.setattr(watcher_mod, "POLLER_CHECK", 0.0)  # look for quarantined records on every scan
    store = SessionStore(tmp_path, log=False)
    for _ in range(2):
        store.create("app", "app", status="working")
    watcher = Watcher(tmp_path, _messages)
    watcher.scan()
    assert watcher.problems == [] and watcher.snapshot().problems == []
    (tmp_path / "projects" / "app" / "sessions" / "app-2.json").write_text("{not json")
    watcher.scan()
    assert watcher.problems == ["app-2 (unreadable record)"]
    assert watcher.ring[-1].kind == "problems"
    store.list()  # the store sets the file aside
    watcher.scan()
    assert watcher.problems == ["app-2 (set aside as corrupt)"] and "app-2" not in watcher.sessions  # named instead
    seq = watcher.seq
    watcher.scan()
    assert watcher.seq == seq  # nothing new: no message


# ------------------------------------------------------------------------------------ a real dashboard

@pytest.fixture
def dash(aoenv):
    board = start_dashboard(aoenv)
    yield board
    board.stop()


def _ws_status(url: str, headers: dict[str, str]) -> int:
    """The HTTP status a WebSocket handshake gets (101 when it is accepted)."""
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    try:
        with connect(url, additional_headers=headers, open_timeout=5):
            return 101
    except InvalidStatus as exc:
        return exc.response.status_code


def test_nothing_is_served_without_the_token(dash, aoenv):
    SessionStore(aoenv.data).create("app", "app", status="working", branch="feat/secret-branch-name")
    for path in ("/", "/s/app-1", "/events", "/config", "/api/board", "/api/stream", "/api/stats",
                 "/static/app.js", "/static/vendor/xterm/xterm.js", "/favicon.ico"):
        r = httpx.get(dash.base + path, timeout=5)
        assert r.status_code == 401, path
        assert "app-1" not in r.text and "secret-branch" not in r.text
    r = httpx.post(dash.base + "/api/sessions/app-1/kill", timeout=5)
    assert r.status_code == 401
    assert _ws_status(f"ws://{dash.host}/ws/terminal/app-1", {"Origin": dash.base}) == 401
    assert _ws_status(f"ws://{dash.host}/ws/stream", {"Origin": dash.base}) == 401
    wrong = httpx.get(dash.base + "/?token=not-the-token", timeout=5)
    assert wrong.status_code == 401 and "set-cookie" not in wrong.headers


def test_login_sets_a_strict_cookie_and_security_headers(dash):
    r = httpx.get(dash.url, timeout=5)
    assert r.status_code == 303 and r.headers["location"] == "/"
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and dash.token not in cookie
    page = dash.client().get("/")
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
    assert page.headers["x-frame-options"] == "DENY" and page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["referrer-policy"] == "no-referrer" and page.headers["cache-control"] == "no-store"


def test_foreign_host_origin_and_missing_csrf_are_refused(dash, aoenv):
    SessionStore(aoenv.data).create("app", "app", status="working")
    c = dash.client()
    assert c.get("/", headers={"Host": "evil.example:80"}).status_code == 421  # DNS rebinding
    assert c.get("/", headers={"Host": f"localhost:{dash.base.rsplit(':', 1)[1]}"}).status_code == 200
    kill = "/api/sessions/app-1/kill"
    assert c.post(kill, json={}, headers={"X-CSRF-Token": c.csrf, "Origin": "http://evil.example"}).status_code == 403
    assert c.post(kill, json={}, headers={"Origin": dash.base}).status_code == 403  # no CSRF token
    assert c.post(kill, json={}, headers={"X-CSRF-Token": "forged", "Origin": dash.base}).status_code == 403
    assert c.post(kill, json={}, headers={"X-CSRF-Token": c.csrf, "Origin": dash.base,
                                          "Sec-Fetch-Site": "cross-site"}).status_code == 403
    assert SessionStore(aoenv.data).get("app-1").status == "working"
    cookie = "; ".join(f"{k}={v}" for k, v in c.cookies.items())
    ws = f"ws://{dash.host}/ws/terminal/app-1"
    assert _ws_status(ws, {"Cookie": cookie, "Origin": "http://evil.example"}) == 403  # cross-site WebSocket
    assert _ws_status(ws, {"Cookie": cookie}) == 403  # no Origin at all
    assert _ws_status(ws, {"Cookie": cookie, "Origin": dash.base}) == 101


def test_wrong_tokens_are_rate_limited(dash):
    codes = [httpx.get(dash.base + "/?token=wrong", timeout=5).status_code for _ in range(11)]
    assert codes[:10] == [401] * 10 and codes[10] == 429
    # even the right token waits: the limit is per client, not per guess
    assert httpx.get(dash.url, timeout=5).status_code == 429


def test_actions_are_audited_and_failures_reported(dash, aoenv):
    from ao import events

    SessionStore(aoenv.data).create("app", "app", status="working")
    r = dash.post("/api/sessions/app-1/kill")
    assert r.status_code == 200 and r.json()["ok"] and "killed app-1" in r.json()["message"]
    assert SessionStore(aoenv.data).get("app-1").status == "killed"
    r = dash.post("/api/sessions/app-1/send", {"text": "hello"})
    assert r.status_code == 422 and "has ended" in r.json()["message"]
    r = dash.post("/api/sessions/nope-9/restore")
    assert r.status_code == 422 and "unknown session" in r.json()["message"]
    audit = [e for e in events.read(aoenv.data) if e["type"] == "dashboard.action"]
    assert [(e["action"], e["session"], e["ok"]) for e in audit] == [
        ("kill", "app-1", True), ("send", "app-1", False), ("restore", "nope-9", False)]
    assert all(e["client"] == "127.0.0.1" for e in audit)
    logins = [e for e in events.read(aoenv.data) if e["type"] == "dashboard.login"]
    assert logins and logins[-1]["ok"] is True


def _sse(client, headers=None, until=None, timeout=5.0):
    """SSE records (id, data) read from /api/stream until ``until(records)`` holds."""
    records = []
    with client.stream("GET", "/api/stream", headers=headers or {}, timeout=timeout) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        current: dict = {}
        for line in r.iter_lines():
            if line.startswith("id: "):
                current["id"] = line[4:]
            elif line.startswith("data: "):
                current["data"] = json.loads(line[6:])
            elif line.startswith("event: "):
                current["event"] = line[7:]
            elif line == "" and current:
                records.append(current)
                current = {}
                if until is None or until(records):
                    break
    return records


def test_the_stream_pushes_changes_and_resumes_from_the_last_event_id(dash, aoenv):
    store = SessionStore(aoenv.data)
    store.create("app", "app", status="working")
    page = dash.client().get("/")
    cursor = page.text.split('name="ao-cursor" content="', 1)[1].split('"', 1)[0]
    store.update("app-1", status="ci_failed")
    got = _sse(dash.client(), {"Last-Event-ID": cursor},
               until=lambda rs: any(r.get("data", {}).get("kind") == "session" for r in rs))
    card = next(r for r in got if r["data"]["kind"] == "session")
    assert card["data"]["id"] == "app-1" and card["data"]["group"] == "ci"
    # resuming from that message: nothing old again, only what comes after
    store.update("app-1", status="mergeable")
    again = _sse(dash.client(), {"Last-Event-ID": got[-1]["id"]},
                 until=lambda rs: any(r.get("data", {}).get("kind") == "session" for r in rs))
    sessions = [r["data"] for r in again if r.get("data", {}).get("kind") == "session"]
    assert [s["group"] for s in sessions] == ["merge"]
    reset = _sse(dash.client(), {"Last-Event-ID": "0000-1"})
    assert reset[-1].get("event") == "reset"


def test_the_board_names_corrupt_records_instead_of_hiding_them(dash, aoenv):
    store = SessionStore(aoenv.data)
    for _ in range(2):
        store.create("app", "app", status="working")
    (aoenv.data / "projects" / "app" / "sessions" / "app-2.json").write_text("{not json")
    c = dash.client()
    page = c.get("/").text
    banner = page.split('id="problems-banner"', 1)[1].split("</div>", 1)[0]
    assert "hidden" not in banner.split(">", 1)[0] and "app-2 (unreadable record)" in banner
    assert "ao session ls --problems" in banner
    assert c.get("/api/board").json()["problems"] == ["app-2 (unreadable record)"]
    # the command the banner points at lists it (setting it aside), and the banner follows
    listed = aoenv.ao("session", "ls", "--problems")
    assert listed.returncode == 0 and "app-2" in listed.stdout, listed.stderr
    wait_for(lambda: c.get("/api/board").json()["problems"] == ["app-2 (set aside as corrupt)"], timeout=10,
             what="the banner to say the record was set aside")


def test_print_url_prints_the_served_login_url(dash, aoenv):
    run = aoenv.ao("dashboard", "--print-url")
    assert run.returncode == 0 and run.stdout.strip() == dash.url
    # `ao dashboard` itself prints the login URL to the terminal's stderr, as `ao start` does: never to stdout,
    # which a user may redirect to a file
    assert f"ao dashboard: {dash.url}" in dash.log.read_text()
    assert dash.token not in (aoenv.root / "dashboard.out").read_text()
    # one dashboard per data dir: a second is refused, and told where the first is
    again = aoenv.ao("dashboard", "--port", "0", "--no-open")
    assert again.returncode == 1 and f"served already, at {dash.base}/" in again.stderr


def test_a_taken_default_port_moves_the_dashboard_but_never_a_chosen_or_webhook_port(aoenv):
    import dataclasses
    import socket

    from ao.errors import AoError
    from ao.web import server, settings

    cfg = aoenv.load()  # no `port:` in this config
    with socket.socket() as taken:  # stands for another repository's dashboard on the default port
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        chosen = dataclasses.replace(settings.from_config(cfg), port=busy)
        assert not chosen.port_fixed
        served = server.DashboardServer(cfg, chosen).start()
        try:
            assert served.moved and served.port != busy
            assert httpx.get(served.url(with_token=False), timeout=5).status_code == 401
            assert server.print_url(cfg) == served.url()  # the address it really serves on, with its token
        finally:
            served.stop()
        with pytest.raises(AoError, match="no dashboard is serving"):
            server.print_url(cfg)
        with pytest.raises(AoError, match=f"127.0.0.1:{busy}: .*choose another port with `port:` in the config"):
            server.DashboardServer(cfg, dataclasses.replace(chosen, port_fixed=True))  # `port:` or --port chose it
        with pytest.raises(AoError, match=f"127.0.0.1:{busy}"):
            server.DashboardServer(cfg, chosen, receiver=object())  # webhook senders are pointed at it
    assert settings.from_config(cfg, port=0).port_fixed


def test_a_non_loopback_host_is_refused_without_tls(aoenv):
    run = aoenv.ao("dashboard", "--host", "0.0.0.0", "--port", "0", "--no-open")
    assert run.returncode == 1 and "refusing to serve the dashboard on 0.0.0.0" in run.stderr
    assert "Traceback" not in run.stderr


def test_ao_start_serves_the_dashboard_and_webhooks_on_one_port(aoenv):
    import socket

    import yaml

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    data = yaml.safe_load(aoenv.config.read_text())
    data["port"] = port
    data["projects"]["app"]["scm"]["webhook"] = {"secretEnv": "AO_TEST_HOOK"}
    aoenv.config.write_text(yaml.safe_dump(data))
    env = {**aoenv.env, "AO_TEST_HOOK": "s3cret-hook", "DISPLAY": ""}
    proc = subprocess.Popen([sys.executable, "-m", "ao", "start", "--no-orchestrator", "--interval", "1"],
                            cwd=aoenv.root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        log = aoenv.data / "logs" / "orchestrator.log"
        wait_for(lambda: log.exists() and "dashboard: http" in log.read_text() and "cycle:" in log.read_text(),
                 timeout=30, what="ao start serving the dashboard")
        assert "token=" not in log.read_text()  # the login URL goes to the terminal, never to the log
        base = f"http://127.0.0.1:{port}"
        assert httpx.get(base + "/", timeout=5).status_code == 401
        assert httpx.post(base + "/webhooks/app", content=b"{}", timeout=5).status_code == 401  # unsigned
        token = (aoenv.data / auth_mod.TOKEN_FILE).read_text().strip()
        c = httpx.Client(base_url=base, timeout=5)
        assert c.get(f"/?token={token}").status_code == 303
        board = c.get("/api/board").json()
        assert board["poller"]["running"] is True
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert f"ao: dashboard: http://127.0.0.1:{port}/?token=" in err and "token=" not in out


def test_dashboard_settings_come_from_the_config(aoenv):
    import yaml

    from ao.errors import AoError
    from ao.web import settings

    (aoenv.root / "tls").mkdir()
    for name in ("cert.pem", "key.pem"):
        (aoenv.root / "tls" / name).write_text("x")
    data = yaml.safe_load(aoenv.config.read_text())
    data.update(host="0.0.0.0", port=4100, dashboard={"tls": {"certFile": "tls/cert.pem", "keyFile": "tls/key.pem"},
                                                      "allowedHosts": ["ao.example.internal"]})
    aoenv.config.write_text(yaml.safe_dump(data))
    chosen = settings.from_config(aoenv.load())
    assert chosen.tls and chosen.cert_file == aoenv.root / "tls" / "cert.pem" and chosen.scheme == "https"
    assert "ao.example.internal" in chosen.host_names and "0.0.0.0" not in chosen.host_names
    chosen.check_exposure()  # TLS: a non-loopback host is fine
    assert chosen.url(token="t") == "https://127.0.0.1:4100/?token=t"
    data["dashboard"] = {"allowPlainHTTP": True}
    aoenv.config.write_text(yaml.safe_dump(data))
    with pytest.raises(AoError, match="allowPlainHTTP"):
        aoenv.load()


def test_served_over_tls_with_secure_cookies(aoenv):
    import shutil

    import yaml

    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-keyout", str(aoenv.root / "key.pem"), "-out", str(aoenv.root / "cert.pem")],
                   check=True, capture_output=True)
    data = yaml.safe_load(aoenv.config.read_text())
    data["dashboard"] = {"tls": {"certFile": "cert.pem", "keyFile": "key.pem"}}
    aoenv.config.write_text(yaml.safe_dump(data))
    board = start_dashboard(aoenv)
    try:
        assert board.url.startswith("https://127.0.0.1:")
        with httpx.Client(verify=False, timeout=5) as c:  # a self-signed certificate made for this test
            assert c.get(board.base + "/").status_code == 401
            r = c.get(board.url)
            assert r.status_code == 303 and "; Secure" in r.headers["set-cookie"]
            page = c.get(board.base + "/")
            assert page.status_code == 200 and page.headers["strict-transport-security"]
    finally:
        board.stop()


def _terminal_text(dash, sid, want, timeout=20.0):
    """What the terminal WebSocket streams for ``sid``, until ``want`` shows in it."""
    from websockets.sync.client import connect

    cookie = "; ".join(f"{k}={v}" for k, v in dash.client().cookies.items())
    seen = b""
    with connect(f"ws://{dash.host}/ws/terminal/{sid}", additional_headers={"Cookie": cookie, "Origin": dash.base},
                 open_timeout=10) as ws:
        hello = json.loads(ws.recv(timeout=10))
        assert hello["type"] == "hello" and hello["mode"] == "live"
        deadline = time.monotonic() + timeout
        while want.encode() not in seen:
            frame = ws.recv(timeout=max(0.1, deadline - time.monotonic()))
            assert isinstance(frame, bytes), frame
            seen += frame
    return seen.decode("utf-8", "replace")


def test_the_terminal_of_a_session_in_a_container(aoenv, tmp_path_factory):
    from ao.sessions import Sessions, SpawnRequest

    require_docker()
    engine = started_engine(tmp_path_factory.mktemp("dockerd"))
    try:
        s = Sessions(docker_project(aoenv, engine.url)).spawn(SpawnRequest(project="app", target="12"))
        board = start_dashboard(aoenv)
        try:
            assert "Add a health endpoint" in _terminal_text(board, s.id, "agent>")
        finally:
            board.stop()
    finally:
        engine.stop()


def test_cards_show_usage_and_a_pause():
    from ao.store import Session as Record
    from ao.web.views import card

    s = Record(id="app-1", project="app", created_at=0.0, updated_at=0.0)
    assert card(s, 10.0)["usage"] == ""  # nothing read yet
    s.fact = {"tokens_in": 1_234_567, "tokens_out": 40_000, "cost_usd": 3.1, "paused": True}
    c = card(s, 10.0)
    assert (c["usage"], c["paused"]) == ("1.2M in, 40k out, $3.10", True)


def test_the_board_header_shows_each_projects_totals_and_the_prices_date(aoenv):
    from ao.usage import PRICES_AS_OF

    aoenv.write_config(budget={"project": 50})
    usage_dir = aoenv.data / "usage"
    usage_dir.mkdir(parents=True, exist_ok=True)
    models = {"claude-sonnet-4-5": [1_000_000, 2000, 0, 0, 0.0], "my-local-model": [500, 100, 0, 0, 0.0]}
    (usage_dir / "app.json").write_text(json.dumps({"version": 1, "sessions": {  # as the poller stores it
        "app-1": {"agent": "claude-code", "sources": {"t.jsonl": {"offset": 10, "models": models}}}}}))
    board = start_dashboard(aoenv)
    try:
        page = board.client().get("/").text
    finally:
        board.stop()
    usage = re.search(r'id="project-usage"[^>]*>([^<]*)<', page).group(1)
    assert usage == (f"app: 1M in, 2.1k out, $3.03 of a $50 budget (no price for my-local-model) · "
                     f"costs at prices as of {PRICES_AS_OF}")


def test_a_record_left_by_a_killed_dashboard_never_blocks_the_next(tmp_path):
    """A SIGKILLed dashboard leaves dashboard.json behind, and its pid may be reused by any process (here pid 1,
    which lives): only the lock says whether a dashboard serves, and the kernel dropped it with the process."""
    from ao.web import server
    from ao.web.settings import STATE_FILE

    (tmp_path / STATE_FILE).write_text(json.dumps({"url": "http://127.0.0.1:3000/", "pid": 1}))
    (tmp_path / server.LOCK_FILE).touch()
    assert server.serving(tmp_path) is None
    held = server._take_lock(tmp_path)
    try:
        assert held is not None and server._take_lock(tmp_path) is None  # a second one waits its turn
        assert server.serving(tmp_path) == {"url": "http://127.0.0.1:3000/", "pid": 1}
    finally:
        os.close(held)
    assert server.serving(tmp_path) is None
    again = server._take_lock(tmp_path)
    assert again is not None
    os.close(again)
