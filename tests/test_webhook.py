"""The webhook receiver over real HTTP on 127.0.0.1: signatures required, size limit, dedupe, branches."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading

import httpx
import pytest

from ao.errors import AoError
from ao.webhook import Hook, WebhookServer, branches_of, hooks_from_config

SECRET = b"s3cret-for-tests"


@pytest.fixture
def server():
    calls: list[tuple[str, str, list[str]]] = []
    got = threading.Event()

    def delivered(project, event, branches):
        calls.append((project, event, branches))
        got.set()

    srv = WebhookServer([Hook("app", "/webhooks/app", SECRET, 4096)], delivered, port=0).start()
    host, port = srv.address
    yield f"http://{host}:{port}", calls
    srv.stop()


def sign(body: bytes, secret: bytes = SECRET) -> str:
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def post(base, body: bytes, *, event="pull_request", delivery="d-1", signature=None, path="/webhooks/app"):
    headers = {"X-GitHub-Event": event, "X-GitHub-Delivery": delivery, "Content-Type": "application/json"}
    if signature is not False:
        headers["X-Hub-Signature-256"] = signature or sign(body)
    return httpx.post(base + path, content=body, headers=headers, timeout=5)


PR_EVENT = json.dumps({"action": "synchronize", "pull_request": {"head": {"ref": "feat/issue-12"}}}).encode()


def test_a_signed_delivery_wakes_the_poller_with_its_branch(server):
    base, calls = server
    r = post(base, PR_EVENT)
    assert r.status_code == 202
    assert calls == [("app", "pull_request", ["feat/issue-12"])]


def test_unsigned_and_wrongly_signed_deliveries_are_refused(server):
    base, calls = server
    assert post(base, PR_EVENT, signature=False).status_code == 401
    assert post(base, PR_EVENT, signature=sign(PR_EVENT, b"wrong")).status_code == 401
    assert post(base, PR_EVENT, signature="sha1=abc").status_code == 401
    assert calls == []


def test_duplicate_deliveries_are_ignored(server):
    base, calls = server
    assert post(base, PR_EVENT, delivery="same").status_code == 202
    r = post(base, PR_EVENT, delivery="same")
    assert r.status_code == 200 and "duplicate" in r.text
    assert len(calls) == 1


def test_oversized_bodies_unknown_paths_and_pings(server):
    base, calls = server
    big = b"{" + b" " * 5000 + b"}"
    assert post(base, big).status_code == 413
    assert post(base, PR_EVENT, path="/elsewhere").status_code == 404
    assert post(base, b"{}", event="ping", delivery="p").text.strip() == "pong"
    assert httpx.get(base + "/webhooks/app").status_code == 405
    assert calls == []


def test_branches_of_github_events():
    assert branches_of("check_suite", {"check_suite": {"head_branch": "a"}}) == ["a"]
    assert branches_of("check_run", {"check_run": {"check_suite": {"head_branch": "b"}}}) == ["b"]
    assert branches_of("push", {"ref": "refs/heads/c"}) == ["c"]
    assert branches_of("issues", {"issue": {}}) == []


def test_hooks_need_a_secret_from_the_environment(aoenv):
    aoenv.write_config(scm={"plugin": "local", "webhook": {"secretEnv": "AO_TEST_HOOK_SECRET"}})
    config = aoenv.load()
    with pytest.raises(AoError, match="AO_TEST_HOOK_SECRET is not set"):
        hooks_from_config(config, env={})
    hooks = hooks_from_config(config, env={"AO_TEST_HOOK_SECRET": "x" * 20})
    assert hooks[0].path == "/webhooks/app" and hooks[0].secret == b"x" * 20
    aoenv.write_config(scm={"plugin": "local", "webhook": {}})
    with pytest.raises(AoError, match="needs secretEnv"):
        hooks_from_config(aoenv.load(), env={})


def _server(tmp_path, calls=None):
    def delivered(project, event, branches):
        if calls is not None:
            calls.append((project, event, branches))

    srv = WebhookServer([Hook("app", "/webhooks/app", SECRET, 1 << 20)], delivered, port=0, data_dir=tmp_path).start()
    host, port = srv.address
    return srv, f"http://{host}:{port}"


def test_delivery_ids_are_deduplicated_across_restarts(tmp_path):
    srv, base = _server(tmp_path)
    try:
        assert post(base, PR_EVENT, delivery="d-1").status_code == 202
    finally:
        srv.stop()
    srv, base = _server(tmp_path)
    try:
        r = post(base, PR_EVENT, delivery="d-1")
        assert r.status_code == 200 and "duplicate" in r.text
        assert post(base, PR_EVENT, delivery="d-2").status_code == 202
    finally:
        srv.stop()


def test_an_id_is_marked_only_once_signature_and_body_are_accepted(tmp_path):
    calls = []
    srv, base = _server(tmp_path, calls)
    try:
        assert post(base, PR_EVENT, delivery="d-forged", signature=sign(PR_EVENT, b"wrong")).status_code == 401
        broken = b'{"pull_request": '
        assert post(base, broken, delivery="d-broken").status_code == 400
        deep = b"[" * 30_000 + b"]" * 30_000
        r = post(base, deep, delivery="d-deep")
        assert r.status_code == 400 and "nested too deeply" in r.text
        for delivery in ("d-forged", "d-broken", "d-deep"):  # the real deliveries with those ids still count
            assert post(base, PR_EVENT, delivery=delivery).status_code == 202
        assert len(calls) == 3
    finally:
        srv.stop()


def test_a_client_hanging_up_mid_request_prints_nothing(tmp_path, capfd):
    import socket

    srv, base = _server(tmp_path)
    host, port = srv.address
    try:
        for _ in range(3):
            with socket.create_connection((host, port)) as sock:
                sock.sendall(b"POST /webhooks/app HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n"
                             b"X-Hub-Signature-256: sha256=00\r\n\r\n{\"partial\": ")
            with socket.create_connection((host, port)) as sock:
                sock.sendall(b"POST /webhooks/app HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")
                sock.shutdown(socket.SHUT_WR)
                sock.close()  # gone before the answer is written
        assert post(base, PR_EVENT, delivery="after").status_code == 202
    finally:
        srv.stop()
    out, err = capfd.readouterr()
    assert "Traceback" not in err and "Error" not in err


def test_a_drip_fed_request_is_cut_off_at_the_deadline(tmp_path, monkeypatch):
    import socket
    import time

    from ao import webhook

    monkeypatch.setattr(webhook, "REQUEST_DEADLINE", 0.6)
    srv, base = _server(tmp_path)
    host, port = srv.address
    try:
        with socket.create_connection((host, port)) as sock:
            sock.settimeout(5)
            started = time.monotonic()
            request = b"POST /webhooks/app HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n" + b" " * 5000
            closed = False
            for byte in request:  # a byte every 0.1 s: each read is quick, the whole would take minutes
                try:
                    sock.sendall(bytes([byte]))
                except OSError:
                    closed = True
                    break
                time.sleep(0.1)
                if time.monotonic() - started > 5:
                    break
            if not closed:
                closed = sock.recv(100) == b""
            assert closed and time.monotonic() - started < 3
        assert post(base, PR_EVENT, delivery="after").status_code == 202
    finally:
        srv.stop()


# ------------------------------------------- the same attacks on the server `ao start` runs (WebhookApp)

@pytest.fixture
def served(aoenv, monkeypatch):
    """What `ao start` serves webhooks through: the dashboard's server (uvicorn) with the webhook receiver on
    its port (``ao.web.server.WebhookApp``), built as ``ao.cli.poll_cmd`` builds it. Yields (base URL, calls)."""
    from dataclasses import replace

    from ao.web import server, settings
    from ao.webhook import WebhookReceiver

    monkeypatch.setattr(server, "REQUEST_DEADLINE", 0.6)
    cfg = aoenv.load()
    calls: list[tuple[str, str, list[str]]] = []
    receiver = WebhookReceiver([Hook("app", "/webhooks/app", SECRET, 1 << 20)],
                               lambda *call: calls.append(call), data_dir=cfg.data_dir)
    srv = server.DashboardServer(cfg, replace(settings.from_config(cfg), host="127.0.0.1", port=0),
                                 receiver=receiver).start()
    try:
        yield f"http://127.0.0.1:{srv.port}", calls
    finally:
        srv.stop()


def test_ao_starts_server_marks_an_id_only_once_signature_and_body_are_accepted(served):
    base, calls = served
    assert post(base, PR_EVENT, delivery="d-forged", signature=sign(PR_EVENT, b"wrong")).status_code == 401
    assert post(base, b'{"pull_request": ', delivery="d-broken").status_code == 400
    r = post(base, b"[" * 30_000 + b"]" * 30_000, delivery="d-deep")
    assert r.status_code == 400 and "nested too deeply" in r.text
    for delivery in ("d-forged", "d-broken", "d-deep"):  # the real deliveries with those ids still count
        assert post(base, PR_EVENT, delivery=delivery).status_code == 202
    assert [c[0] for c in calls] == ["app"] * 3


def test_ao_starts_server_prints_nothing_when_a_client_hangs_up_mid_request(served, capfd):
    import socket

    base, calls = served
    host, port = base.rsplit("/", 1)[1].split(":")
    for _ in range(3):
        with socket.create_connection((host, int(port))) as sock:
            sock.sendall(b"POST /webhooks/app HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000\r\n"
                         b"X-Hub-Signature-256: sha256=00\r\n\r\n{\"partial\": ")
        with socket.create_connection((host, int(port))) as sock:
            sock.sendall(b"POST /webhooks/app HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 2\r\n\r\n{}")
            sock.shutdown(socket.SHUT_WR)
            sock.close()  # gone before the answer is written
    assert post(base, PR_EVENT, delivery="after").status_code == 202
    out, err = capfd.readouterr()
    assert "Traceback" not in err and "Error" not in err and calls == [("app", "pull_request", ["feat/issue-12"])]


@pytest.mark.parametrize("part", ["body", "headers"])
def test_ao_starts_server_cuts_a_drip_fed_request_off_at_the_deadline(served, part):
    import select
    import socket
    import time

    base, calls = served
    host, port = base.rsplit("/", 1)[1].split(":")
    head = b"POST /webhooks/app HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5000\r\n"
    with socket.create_connection((host, int(port))) as sock:
        if part == "body":  # the head at once, then the body a byte at a time
            sock.sendall(head + b"\r\n")
            drip = b" " * 5000
        else:  # the head itself a byte at a time (uvicorn has no deadline for it of its own)
            drip = head + b"X-Slow: " + b"x" * 5000
        started = time.monotonic()
        answer = None
        for byte in drip:  # a byte every 0.1 s: each read is quick, the whole would take minutes
            if select.select([sock], [], [], 0.1)[0]:  # answered or closed by the server
                try:
                    answer = sock.recv(200)
                except OSError:  # reset by the server
                    answer = b""
                break
            try:
                sock.sendall(bytes([byte]))
            except OSError:  # reset by the server
                answer = b""
                break
            if time.monotonic() - started > 5:
                break
        elapsed = time.monotonic() - started
    assert answer is not None and elapsed < 3, (part, elapsed)
    assert answer == b"" or answer.startswith(b"HTTP/1.1 400"), answer
    assert post(base, PR_EVENT, delivery="after").status_code == 202 and len(calls) == 1
