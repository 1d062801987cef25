"""The dashboard in a real browser: Debian's Chromium driven by Playwright, against a real `ao dashboard` over
the local SCM, with scripted agents in real tmux and the real poller. Screenshots of each page are saved
(``dashboard-screenshots`` in pytest's base temp, or $AO_TEST_ARTIFACTS)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from dashkit import CHROMIUM, INSTALL, artifacts_dir, launch_chromium, start_dashboard
from sessionkit import git, wait_for
from tools import require

from ao.poller import Poller
from ao.sessions import SpawnRequest
from ao.store import SessionStore

PR = {"pr_state": "open", "pr_number": 1, "pr_url": "local:app#1", "head_sha": "a" * 40, "base_branch": "main"}
# (status, fact, ledgers, meta, expected group), one or more per board group
SEEDS = [
    ("needs_input", {"activity": "waiting_input"}, {}, {"activity": {"detail": "a yes/no prompt"}}, "input"),
    ("ci_failed", {**PR, "ci": "failing"}, {"ci-failed": {"attempts": 3, "escalated": True}}, {}, "escalated"),
    ("stuck", {"activity": "idle"}, {}, {}, "escalated"),
    ("mergeable", {**PR, "ci": "passing", "review": "approved"}, {}, {}, "merge"),
    ("ci_failed", {**PR, "ci": "failing"}, {}, {}, "ci"),
    ("changes_requested", {**PR, "review": "changes_requested"}, {}, {}, "changes"),
    ("working", {"activity": "active"}, {}, {}, "working"),
    ("review_pending", {**PR, "ci": "passing", "review": "pending"}, {}, {}, "working"),
    ("merged", {**PR, "pr_state": "merged"}, {}, {}, "done"),
    ("killed", {"activity": "exited"}, {}, {}, "done"),
]


@pytest.fixture(scope="module")
def chromium():
    require(CHROMIUM, "Debian's chromium", INSTALL)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = launch_chromium(p)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory):
    return artifacts_dir(tmp_path_factory)


@pytest.fixture
def dash(aoenv):
    board = start_dashboard(aoenv)
    yield board
    board.stop()


def _open(chromium, dash, path="/", context=None):
    context = context or chromium.new_context(viewport={"width": 1600, "height": 1000})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    expected = ("status of 409", "status of 422")  # actions that fail on purpose answer so, and are shown
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" and not any(
        e in m.text for e in expected) else None)
    page.goto(dash.url.replace("/?", f"{path}?"))  # the login URL, once: then the cookie
    page.wait_for_selector("#live.on", timeout=10_000)
    page.errors = errors
    return page


TITLES = ["Add a health endpoint", "Fix flaky login test", "Upgrade the ORM", "Rate-limit the API",
          "Dark mode for settings", "Paginate search results", "Cache avatar thumbnails", "Audit log export",
          "Remove the legacy importer", "Translate the onboarding"]


def _seed(env, seeds=SEEDS, project="app"):
    store = SessionStore(env.data)
    made = []
    for n, (status, fact, ledgers, meta, group) in enumerate(seeds):
        s = store.create(project, project, status=status, branch=f"feat/issue-{n + 1}", issue=str(n + 1),
                         task=TITLES[n % len(TITLES)],
                         fact={"session": "", "status": status, **fact}, ledgers=ledgers, meta=meta)
        made.append((s.id, group))
    return made


def _two_projects(env):
    import yaml

    data = yaml.safe_load(env.config.read_text())
    data["projects"]["web"] = {**data["projects"]["app"], "sessionPrefix": "web"}
    env.config.write_text(yaml.safe_dump(data))


def _terminal_shows(page, text):
    # a selector, not wait_for_function: the page's CSP forbids the eval that a polled predicate needs
    page.wait_for_selector(f".xterm-rows:has-text({text!r})", timeout=10_000)


def _toast(page, text, ok=True):
    selector = ".toast" + ("" if ok else ".error")
    page.wait_for_selector(f"{selector}:has-text({text!r})", timeout=15_000)


def test_board_groups_every_session_and_moves_a_card_within_a_second(chromium, aoenv, shots):
    _two_projects(aoenv)
    made = _seed(aoenv) + _seed(aoenv, SEEDS[6:7], project="web")
    dash = start_dashboard(aoenv)
    try:
        page = _open(chromium, dash)
        for sid, group in made:
            assert page.locator(f"#group-{group} #card-{sid}").count() == 1, (sid, group)
        attention = sum(1 for _, g in made if g in ("input", "escalated", "merge"))
        assert page.title() == f"({attention}) Board · ao"
        assert page.get_attribute("#favicon", "href").startswith("data:image/svg+xml")
        assert "yes/no prompt" in page.inner_text("#card-app-1")
        assert "No poller is running" in page.inner_text("#poller-banner")  # read-only data, and it says so
        page.screenshot(path=str(shots / "board.png"), full_page=True)

        page.select_option("#project-filter", "web")
        assert page.locator(".card:not(.hidden)").count() == 1 and page.is_visible("#card-web-1")
        page.select_option("#project-filter", "")

        page.evaluate("window.aoMarker = 'still the same page'")
        store = SessionStore(aoenv.data)
        working = next(sid for sid, g in made if g == "working" and sid.startswith("app"))
        for status, group, fact in (("ci_failed", "ci", {**PR, "ci": "failing"}),
                                    ("needs_input", "input", {"activity": "waiting_input"}),
                                    ("mergeable", "merge", {**PR, "ci": "passing", "review": "approved"})):
            started = time.monotonic()
            store.update(working, status=status, fact={"status": status, **fact})
            page.wait_for_selector(f"#group-{group} #card-{working}", timeout=5_000)
            assert time.monotonic() - started < 1.0, f"{group} took {time.monotonic() - started:.2f} s"
        assert page.locator(f"#card-{working}").count() == 1
        assert page.evaluate("window.aoMarker") == "still the same page"  # no reload
        assert page.title() == f"({attention + 1}) Board · ao"
        store.archive(working, "app", status="cleanup")
        page.wait_for_selector(f"#card-{working}", state="detached", timeout=5_000)
        assert page.errors == []
    finally:
        dash.stop()


def _push(workspace: Path, files: dict[str, str], message: str = "work") -> str:
    for name, text in files.items():
        (workspace / name).write_text(text)
    git("add", "-A", cwd=workspace)
    git("commit", "-q", "--allow-empty", "-m", message, cwd=workspace)
    git("push", "-q", "-u", "origin", "HEAD", cwd=workspace)
    return git("rev-parse", "HEAD", cwd=workspace).strip()


def _cycle_until(poller, sid, check, what, timeout=30.0):
    def done():
        poller.cycle()
        s = poller.store.get(sid)
        return s if check(s) else None
    return wait_for(done, timeout=timeout, what=what)


def test_session_page_shows_ci_logs_review_threads_and_the_live_terminal(chromium, aoenv, dash, shots):
    aoenv.write_config(scm={"plugin": "local", "ci": "sh ci.sh"})
    cfg = aoenv.load()
    poller = Poller(cfg, console=None)
    try:
        s = poller.manager.spawn(SpawnRequest(project="app", target="12"))
        wait_for(lambda: aoenv.received(s.id), what="the prompt")
        _push(Path(s.workspace), {"ci.sh": "echo 'test_x failed: expected 2, got 3'; exit 1\n"})
        _cycle_until(poller, s.id, lambda x: x.fact.get("ci") == "failing", "CI failing")
        from ao.plugins.scm import for_project

        for_project(cfg, cfg.projects["app"]).review(s.branch, "request_changes", "Please rename <x> to y.",
                                                     author="reviewer")
        _cycle_until(poller, s.id, lambda x: any("rename" in c["body"]
                                                      for c in x.meta.get("pr", {}).get("comments", [])),
                     "the review thread stored")
        page = _open(chromium, dash, f"/s/{s.id}")
        assert "test_x failed: expected 2, got 3" in page.inner_text(".ci pre.log")
        assert "Please rename <x> to y." in page.inner_text(".reviews")  # escaped, shown as written
        assert page.inner_text("#status") in ("ci failed", "changes requested")
        assert page.locator("#criteria li[data-name=ci][data-ok=no]").count() == 1
        _terminal_shows(page, "agent>")
        assert page.inner_text("#term-state") == "live, read-only"
        # the terminal is live: what the agent prints next shows without a reload
        page.fill("#send-form textarea", "hello from the browser")
        page.click("#send-form button[type=submit]")
        _toast(page, f"sent to {s.id}")
        wait_for(lambda: any(m["text"] == "hello from the browser" for m in aoenv.received(s.id)), what="delivery")
        n = len(aoenv.received(s.id))
        _terminal_shows(page, f"received {n}:")
        page.screenshot(path=str(shots / "session.png"), full_page=True)
        assert page.errors == []
    finally:
        poller.close()


def test_send_answer_kill_restore_and_merge_work_and_failures_show(chromium, aoenv, dash, shots):
    cfg = aoenv.load()
    poller = Poller(cfg, console=None)
    try:
        s = poller.manager.spawn(SpawnRequest(project="app", target="12"))
        wait_for(lambda: aoenv.received(s.id), what="the prompt")
        page = _open(chromium, dash, f"/s/{s.id}")
        page.on("dialog", lambda d: d.accept())  # the kill confirmation

        # the agent asks a question: a plain send is refused (and says why), an answer goes in
        page.fill("#send-form textarea", "!ask")
        page.click("#send-form button[type=submit]")
        _toast(page, f"sent to {s.id}")
        pane = f"={s.runtime_handle}:"
        wait_for(lambda: "Do you want to proceed?" in aoenv.tmux("capture-pane", "-p", "-t", pane).stdout,
                 what="the question")
        _cycle_until(poller, s.id, lambda x: x.status == "needs_input", "needs_input")
        page.wait_for_selector(".detail[data-status=needs_input]", timeout=5_000)
        page.fill("#send-form textarea", "y")
        page.click("#send-form button[type=submit]")
        _toast(page, "waiting for a person", ok=False)
        assert [m["text"] for m in aoenv.received(s.id)][-1] == "!ask"
        page.check("#answer-mode")
        page.fill("#send-form textarea", "y")
        page.click("#send-form button[type=submit]")
        _toast(page, "(as an answer)")
        wait_for(lambda: [m["text"] for m in aoenv.received(s.id)][-1] == "y", what="the answer")
        _cycle_until(poller, s.id, lambda x: x.status == "working", "working again")
        page.uncheck("#answer-mode")
        page.click("#send-form .quick[data-reply=continue]")
        _toast(page, f"continue: sent to {s.id}")
        wait_for(lambda: [m["text"] for m in aoenv.received(s.id)][-1] == "Continue.", what="the quick reply")

        # kill: the terminal shows that it has ended; restore brings it back
        page.click("#kill-btn")
        _toast(page, f"killed {s.id}")
        page.wait_for_selector(".detail[data-status=killed]", timeout=5_000)
        page.wait_for_selector("#term-ended:not([hidden])", timeout=10_000)
        assert "killed" in page.inner_text("#term-ended")
        page.screenshot(path=str(shots / "session-killed.png"), full_page=True)
        page.fill("#send-form textarea", "anyone there?")
        assert page.is_disabled("#send-form button[type=submit]")
        page.click("#restore-btn")
        _toast(page, f"restored {s.id}")
        page.wait_for_selector(".detail[data-status=working]", timeout=5_000)
        page.wait_for_selector("#term-ended", state="hidden", timeout=10_000)
        _terminal_shows(page, "agent>")

        # merge: the confirmation shows the pinned SHA and the criteria; a branch that moved is refused
        head = _push(Path(s.workspace), {"feature.txt": "one\n"})
        _cycle_until(poller, s.id, lambda x: x.fact.get("ci") == "passing", "CI passing")
        page.fill("#review-form textarea", "Looks good.")
        page.click("#review-form button[data-verdict=approve]")
        _toast(page, f"approved local PR #1 of {s.id}")
        _cycle_until(poller, s.id, lambda x: x.status == "mergeable", "mergeable")
        page.wait_for_selector(".detail[data-status=mergeable]", timeout=5_000)
        page.click("#merge-btn")
        assert page.inner_text("#merge-sha") == head
        assert page.locator("#merge-criteria li[data-name=ci][data-ok=yes]").count() == 1
        assert page.is_hidden("#merge-warning")
        page.screenshot(path=str(shots / "merge-confirmation.png"))
        moved = _push(Path(s.workspace), {"feature.txt": "two\n"}, "late push")
        page.click("#merge-confirm")
        _toast(page, f"is at {moved[:7]} now", ok=False)
        assert git("rev-parse", "main", cwd=aoenv.origin).strip() != moved
        page.click("#review-form button[data-verdict=approve]")  # an approval counts for the head it saw
        _toast(page, f"approved local PR #1 of {s.id} (at {moved[:10]})")
        _cycle_until(poller, s.id, lambda x: x.status == "mergeable" and x.fact.get("head_sha") == moved,
                     "mergeable at the new head")
        page.wait_for_selector(f".detail[data-sha='{moved}']", timeout=5_000)
        page.click("#merge-btn")
        assert page.inner_text("#merge-sha") == moved
        page.click("#merge-confirm")
        _toast(page, f"merged {s.id} at {moved[:7]}")
        assert git("merge-base", "--is-ancestor", moved, "main", cwd=aoenv.origin) == ""
        assert page.errors == []
    finally:
        poller.close()


def test_ten_tabs_cost_the_server_what_one_does(chromium, aoenv, dash):
    made = _seed(aoenv, SEEDS * 2)
    files = len(made)

    def rates(seconds=3.0):
        before, started = dash.stats(), time.monotonic()
        time.sleep(seconds)  # a measuring window, not synchronisation
        after, took = dash.stats(), time.monotonic() - started
        delta = {k: after["reads"][k] - before["reads"][k] for k in after["reads"]}
        return after["streams"], delta, took

    tabs = [_open(chromium, dash)]
    streams, one, took_one = rates()
    assert streams == 1 and one["scans"] > 0
    for _ in range(9):  # tabs of one browser: more than the six HTTP/1.1 connections it allows per host
        tabs.append(_open(chromium, dash, context=tabs[0].context))
    streams, ten, took_ten = rates()
    assert streams == 10
    # the disk is looked at on the watcher's tick, whatever the number of tabs (a busy machine may only make
    # it fewer), each look costing the same: one stat per session file, nothing read
    from ao.web.watcher import TICK

    assert one["scans"] <= took_one / TICK + 2 and ten["scans"] <= took_ten / TICK + 2
    assert one["stats"] == one["scans"] * files and ten["stats"] == ten["scans"] * files
    assert one["session_reads"] == ten["session_reads"] == 0 and one["event_reads"] == ten["event_reads"] == 0
    # one change: read once, shown in all ten tabs
    before = dash.stats()["reads"]["session_reads"]
    SessionStore(aoenv.data).update(made[6][0], status="ci_failed", fact={"status": "ci_failed", **PR, "ci": "failing"})
    for tab in tabs:
        tab.wait_for_selector(f"#group-ci #card-{made[6][0]}", timeout=5_000)
    assert dash.stats()["reads"]["session_reads"] - before == 1


def test_events_and_config_pages(chromium, aoenv, dash, shots):
    from ao import events

    _seed(aoenv, SEEDS[:3])
    events.append(aoenv.data, "ci.failing", session="app-2", project="app")
    events.append(aoenv.data, "session.needs_input", session="app-1", project="app")
    page = _open(chromium, dash, "/events")
    assert page.locator("#events tr").count() >= 2
    page.fill("#event-filter input[name=type]", "ci.")
    assert page.inner_text("#event-count") == "1"
    events.append(aoenv.data, "ci.passing", session="app-2", project="app")  # live, and filtered as it comes
    page.wait_for_selector("#events tr[data-type='ci.passing']:not([hidden])", timeout=5_000)
    events.append(aoenv.data, "session.stuck", session="app-3", project="app")
    page.wait_for_selector("#events tr[data-type='session.stuck']", state="attached", timeout=5_000)
    assert page.is_hidden("#events tr[data-type='session.stuck']")
    page.screenshot(path=str(shots / "events.png"), full_page=True)

    import yaml

    data = yaml.safe_load(aoenv.config.read_text())
    hook = "https://hooks.slack.com/services/T0000AAAA/B0000BBBB/verysecret0123456789abcd"
    data["notifiers"] = {"chat": {"plugin": "slack", "webhook": hook}}
    data["notificationRouting"] = {"urgent": ["chat"]}
    aoenv.config.write_text(yaml.safe_dump(data))
    dash.stop()
    again = start_dashboard(aoenv)
    try:
        page = _open(chromium, again, "/config")
        text = page.inner_text("pre.config")
        assert "verysecret0123456789abcd" not in page.content() and "***" in text and "sessionPrefix: app" in text
        assert "ci-failed#0" in page.inner_text("table.rules")
        page.screenshot(path=str(shots / "config.png"), full_page=True)
    finally:
        again.stop()


def test_spawn_from_an_issue(chromium, aoenv, dash):
    page = _open(chromium, dash, "/spawn")
    page.wait_for_selector("#spawn-issue option[value='12']", state="attached", timeout=5_000)
    page.select_option("#spawn-issue", "12")
    page.click("#spawn-form button[type=submit]")
    _toast(page, "spawned app-1 on feat/issue-12")
    page.wait_for_url("**/s/app-1", timeout=10_000)
    wait_for(lambda: aoenv.received("app-1"), what="the prompt")
    _terminal_shows(page, "agent>")


ATTACK = """<!doctype html><title>attacker</title><script>
const target = "%s";
window.results = {};
const ws = new WebSocket(target.replace("http", "ws") + "/ws/terminal/app-1");
ws.onopen = () => { window.results.ws = "open"; };
ws.onclose = () => { window.results.ws = window.results.ws || "refused"; };
fetch(target + "/api/sessions/app-1/kill", {method: "POST", credentials: "include", mode: "no-cors",
  headers: {"Content-Type": "text/plain"}, body: "{}"}).then(() => { window.results.kill = "sent"; },
  () => { window.results.kill = "failed"; });
fetch(target + "/api/board", {credentials: "include"}).then((r) => r.text()).then(
  (t) => { window.results.board = t; }, () => { window.results.board = "unreadable"; });
</script>"""


def test_no_token_gets_401_and_a_foreign_page_cannot_act_with_the_cookie(chromium, aoenv, dash):
    import http.server

    from httpkit import start_server, stop_server

    _seed(aoenv, SEEDS[6:7])  # app-1, working
    stranger = chromium.new_context()
    page = stranger.new_page()
    response = page.goto(dash.base + "/")
    assert response.status == 401 and "app-1" not in page.content() and "Add a health" not in page.content()
    stranger.close()

    # a page on another port of the same host: same site, so the browser sends the SameSite=Strict cookie;
    # the Origin check and the CSRF token are what stop it
    class Attacker(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            body = (ATTACK % dash.base).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = start_server(Attacker)
    try:
        victim = _open(chromium, dash)  # logged in
        evil = victim.context.new_page()
        evil.goto(f"http://127.0.0.1:{server.server_address[1]}/")
        evil.wait_for_function("window.results && window.results.ws && window.results.kill && window.results.board",
                               timeout=10_000)
        results = evil.evaluate("window.results")
        assert results["ws"] == "refused" and results["board"] == "unreadable"
        assert SessionStore(aoenv.data).get("app-1").status == "working"  # the kill was refused
    finally:
        stop_server(server)
