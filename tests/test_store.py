"""The session store (SPEC 5): layout, atomic writes under a lock, ids never reused, archive, quarantine,
disk errors, and the ledgers it keeps for the reaction engine (SPEC 3.1)."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from ao import config as config_mod
from ao import engine as engine_mod
from ao import facts
from ao import store as store_mod
from ao.actions import RecordingExecutor
from ao.errors import AoError
from ao.events import iso
from ao.ledger import PROJECT_KEY, Entry
from ao.store import Session, SessionLedgerStore, SessionStore

ROOT = Path(__file__).resolve().parent.parent
NOW = 1767258000  # 2026-01-01 09:00:00 UTC


@pytest.fixture
def data(tmp_path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def store(data) -> SessionStore:
    return SessionStore(data, clock=lambda: 1000.0)


def leftovers(root: Path) -> list[Path]:
    """Temp files anywhere under the data dir (there must never be any after a call returns)."""
    return sorted(p for p in root.rglob("*") if p.name.endswith(".tmp"))


def failing(sha: str) -> dict:
    return {"pr_state": "open", "pr_number": 7, "pr_url": "https://github.com/o/r/pull/7", "ci": "failing",
            "head_sha": sha}


# ------------------------------------------------------------------------------------------- basics

def test_create_get_update_list_archive(store, data):
    s = store.create("app", "app", branch="feat/issue-12", issue="12", task="Add schema", agent="command",
                     runtime="tmux", runtime_handle="ao-app-1", workspace="/w/app-1")
    assert s.id == "app-1" and s.status == "spawning" and s.role == "worker" and s.created_at == 1000.0
    path = data / "projects" / "app" / "sessions" / "app-1.json"
    on_disk = json.loads(path.read_text())
    assert on_disk["version"] == store_mod.VERSION and on_disk["branch"] == "feat/issue-12"
    assert store.get("app-1") == s == store.find("app-1")
    assert store.get("app-1", project="app") == s and store.get("app-2") is None

    store.clock = lambda: 2000.0
    u = store.update("app-1", status="pr_open", pr_number=7, pr_url="https://x/7", fact={"ci": "pending"})
    assert (u.status, u.pr_number, u.updated_at, u.created_at) == ("pr_open", 7, 2000.0, 1000.0)
    assert store.get("app-1") == u

    store.create("app", "app")
    store.create("web", "fe", role="orchestrator")
    assert [(x.project, x.id) for x in store.list()] == [("app", "app-1"), ("app", "app-2"), ("web", "fe-1")]
    assert [x.id for x in store.list("web")] == ["fe-1"]

    store.clock = lambda: 3000.0
    gone = store.archive("app-1", status="cleanup")
    assert gone.status == "cleanup" and gone.ended_on_purpose and gone.terminal and gone.ended_at == 3000.0
    assert not path.exists()
    archived = data / "archive" / "app" / "app-1.json"
    assert json.loads(archived.read_text())["status"] == "cleanup"
    assert [x.id for x in store.list()] == ["app-2", "fe-1"]
    assert [x.id for x in store.list(include_archived=True)] == ["app-1", "app-2", "fe-1"]
    assert store.get("app-1") is None and store.get("app-1", include_archived=True) == gone
    with pytest.raises(AoError, match="cleaned up"):
        store.update("app-1", status="working")
    assert leftovers(data) == []


def test_list_sorts_by_number_not_text(store):
    for _ in range(11):
        store.create("app", "app")
    assert [s.id for s in store.list()][-3:] == ["app-9", "app-10", "app-11"]


def test_an_agents_signals_count_from_its_last_launch():
    """A restore relaunches the agent: what its run folder logged before (Claude's SessionEnd) is the old one's."""
    assert Session(id="app-1", project="app", created_at=100.0).launched_at == 100.0
    assert Session(id="app-1", project="app", created_at=100.0, meta={"restored_at": 500.0}).launched_at == 500.0
    assert Session(id="app-1", project="app", created_at=100.0, meta={"restored_at": "x"}).launched_at == 100.0


def test_round_trip_keeps_unknown_keys_and_version(store, data):
    store.create("app", "app", ledgers={"ci-failed": Entry(attempts=1, occurrence="a1").to_dict()})
    path = data / "projects" / "app" / "sessions" / "app-1.json"
    raw = json.loads(path.read_text())
    raw["from_a_newer_ao"] = {"x": [1, 2]}
    raw["version"] = 7
    path.write_text(json.dumps(raw))
    s = store.update("app-1", status="working")
    assert s.extra == {"from_a_newer_ao": {"x": [1, 2]}}
    after = json.loads(path.read_text())
    assert after["from_a_newer_ao"] == {"x": [1, 2]} and after["version"] == 7 and after["status"] == "working"
    assert s.ledger_entries() == {"ci-failed": Entry(attempts=1, occurrence="a1")}
    assert Session.from_dict(s.to_dict()) == s


def test_status_bookkeeping_and_bad_changes(store):
    store.create("app", "app")
    killed = store.update("app-1", status="killed")
    assert killed.terminal and killed.ended_on_purpose and killed.ended_at == 1000.0
    exited = store.update("app-1", status="exited")
    assert exited.terminal and not exited.ended_on_purpose
    assert store.update("app-1", status="working").ended_at is None  # restored
    with pytest.raises(TypeError, match="cannot be set"):
        store.update("app-1", colour="red")
    with pytest.raises(TypeError, match="cannot be set"):
        store.update("app-1", id="app-9")
    with pytest.raises(ValueError, match="status"):
        store.update("app-1", status="sleeping")
    with pytest.raises(TypeError, match="pr_number"):
        store.update("app-1", pr_number="7")
    with pytest.raises(ValueError, match="role"):
        store.create("app", "app", role="boss")


def test_find_names_the_sessions_there_are(store):
    with pytest.raises(AoError, match="no sessions"):
        store.find("app-1")
    for _ in range(3):
        store.create("app", "app")
    with pytest.raises(AoError) as err:
        store.find("app-7")
    assert "unknown session 'app-7'" in str(err.value) and "app-1, app-2, app-3" in str(err.value)
    with pytest.raises(AoError, match="did you mean 'app-2'"):
        store.find("ap-2")
    with pytest.raises(AoError, match="unknown session"):
        store.find("../etc/passwd")
    store.archive("app-2")
    with pytest.raises(AoError, match="cleaned up"):
        store.find("app-2")
    assert store.find("app-2", include_archived=True).id == "app-2"
    with pytest.raises(AoError, match="unknown session"):
        store.update("zz-1")


def test_names_that_are_not_one_path_part_are_refused(store):
    for bad in ("../x", "a/b", ".hidden", ""):
        with pytest.raises(AoError, match="invalid"):
            store.create(bad, "app")
        with pytest.raises(AoError, match="invalid"):
            store.create("app", id=bad)


def test_delete_rolls_back_a_spawn(store, data):
    store.create("app", "app")
    store.delete("app-1")
    assert store.list() == [] and store.get("app-1") is None
    with pytest.raises(AoError, match="unknown session"):
        store.delete("app-1")


# ------------------------------------------------------------------------------------------------ ids

def test_ids_are_never_reused(store, data):
    store.create("app", "app")
    store.create("app", "app")
    store.archive("app-2")
    assert store.create("app", "app").id == "app-3"
    store.delete("app-3")
    assert store.create("app", "app").id == "app-4"
    assert store.allocate_id("app", "app") == "app-5"  # handed out, never written: still never reused
    assert store.create("app", "app").id == "app-6"
    with pytest.raises(AoError, match="already exists"):
        store.create("app", id="app-2")  # archived ids are taken too

    # even a lost counter does not bring old ids back: ids on disk (live or archived) are looked past
    (data / "projects" / "app" / "ids.json").unlink()
    store.archive("app-6")
    assert store.create("app", "app").id == "app-7"


def test_corrupt_counter_is_quarantined_and_recovered_from_the_files(store, data):
    for _ in range(3):
        store.create("app", "app")
    counter = data / "projects" / "app" / "ids.json"
    counter.write_text("{garbage")
    assert store.create("app", "app").id == "app-4"
    kept = list(counter.parent.glob("ids.json.corrupt-*"))
    assert len(kept) == 1 and kept[0].read_text() == "{garbage"
    assert any("corrupt id counter" in p for p in store.problems)


def test_counters_per_prefix_and_project(store):
    assert store.allocate_id("app", "app") == "app-1"
    assert store.allocate_id("app", "x") == "x-1"
    assert store.allocate_id("web", "fe") == "fe-1"
    assert store.allocate_id("app", "app") == "app-2"


ALLOCATOR = """
import sys, time
from ao.store import SessionStore
store = SessionStore(sys.argv[1])
while time.time() < float(sys.argv[4]):  # all start together, for the most contention
    time.sleep(0.001)
ids = []
for _ in range(int(sys.argv[2])):
    ids.append(store.create("app", "app", task="from %s" % sys.argv[3]).id)
print(" ".join(ids))
"""


def test_concurrent_spawns_across_processes_get_distinct_ids(data):
    start = str(time.time() + 1.5)
    procs = [subprocess.Popen([sys.executable, "-c", ALLOCATOR, str(data), "25", str(n), start], cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for n in range(4)]
    ids = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        ids += out.split()
    assert len(ids) == 100 and len(set(ids)) == 100
    assert sorted(ids, key=lambda i: int(i.split("-")[1])) == [f"app-{n}" for n in range(1, 101)]
    store = SessionStore(data)
    assert len(store.list()) == 100 and store.problems == []
    assert json.loads((data / "projects" / "app" / "ids.json").read_text())["last"] == {"app": 100}
    assert leftovers(data) == []


def test_concurrent_allocation_across_threads(data):
    store = SessionStore(data)
    got: list[str] = []
    lock = threading.Lock()

    def work() -> None:
        for _ in range(20):
            sid = store.allocate_id("app", "app")
            with lock:
                got.append(sid)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(got)) == 80


def test_concurrent_updates_lose_nothing(data):
    """Read-modify-write under the lock: every process's change survives."""
    SessionStore(data).create("app", "app")
    script = textwrap.dedent("""
        import sys
        from ao.store import SessionStore
        store = SessionStore(sys.argv[1])
        for i in range(20):
            store.modify("app-1", lambda s: s.meta.__setitem__(f"{sys.argv[2]}-{i}", i))
    """)
    procs = [subprocess.Popen([sys.executable, "-c", script, str(data), f"p{n}"], cwd=ROOT,
                              stderr=subprocess.PIPE, text=True) for n in range(3)]
    for p in procs:
        assert p.wait(timeout=120) == 0, p.stderr.read()
    assert len(SessionStore(data).get("app-1").meta) == 60


# ---------------------------------------------------------------------------------------- corruption

@pytest.mark.parametrize("garbage", ["{not json", "[]", '{"id": "app-1"}', "", '{"id": "app-1", "project": "app", '
                                     '"ledgers": []}', '{"id": "app-9", "project": "app"}', "\udcff",
                                     "[" * 100_000, '{"id": "app-1", "project": "app", "pr_number": true}'])
def test_corrupt_session_is_quarantined_and_listing_goes_on(store, data, garbage):
    store.create("app", "app")
    store.create("app", "app")
    path = data / "projects" / "app" / "sessions" / "app-1.json"
    path.write_bytes(garbage.encode("utf-8", "surrogateescape"))
    assert [s.id for s in store.list()] == ["app-2"]
    assert len(store.problems) == 1 and "app-1.json" in store.problems[0] and "corrupt" in store.problems[0]
    assert not path.exists()
    [kept] = path.parent.glob("app-1.json.corrupt-*")
    assert kept.read_bytes() == garbage.encode("utf-8", "surrogateescape")  # kept for a human, untouched
    log = (data / "logs" / "orchestrator.log").read_text()
    assert "app-1.json" in log and "corrupt" in log


def test_unreadable_session_is_reported_not_quarantined(store, data, monkeypatch):
    store.create("app", "app")
    store.create("app", "app")
    path = data / "projects" / "app" / "sessions" / "app-1.json"
    real = Path.read_bytes

    def read_bytes(self):
        if self == path:
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return real(self)

    monkeypatch.setattr(Path, "read_bytes", read_bytes)
    assert [s.id for s in store.list()] == ["app-2"]
    assert "app-1.json: cannot read: Permission denied" in store.problems[0]
    with pytest.raises(AoError, match="cannot read: Permission denied"):
        store.get("app-1")
    monkeypatch.undo()
    assert path.exists() and store.get("app-1").id == "app-1"


def test_two_corruptions_of_one_file_keep_both_copies(store, data):
    store.create("app", "app")
    path = data / "projects" / "app" / "sessions" / "app-1.json"
    path.write_text("first damage")
    with pytest.raises(AoError, match="corrupt session file"):
        store.get("app-1")
    path.write_text("second damage")  # same second (frozen clocks do this too)
    with pytest.raises(AoError, match="corrupt session file"):
        store.find("app-1")
    kept = sorted(path.parent.glob("app-1.json.corrupt-*"))
    assert len(kept) == 2
    assert {k.read_text() for k in kept} == {"first damage", "second damage"}
    assert store.list() == []  # quarantined files are not sessions
    assert store.create("app", "app").id == "app-2"  # nor is their id given out again


def test_corrupt_session_is_not_overwritten_by_an_update(store, data):
    store.create("app", "app")
    path = data / "projects" / "app" / "sessions" / "app-1.json"
    path.write_text("{half")
    with pytest.raises(AoError, match="corrupt"):
        store.update("app-1", project="app", status="working")
    assert not path.exists()
    assert [k.read_text() for k in path.parent.glob("app-1.json.corrupt-*")] == ["{half"]


# --------------------------------------------------------------------------------------- disk errors

def _fail(code: int):
    def raiser(*args, **kwargs):
        raise OSError(code, os.strerror(code))
    return raiser


@pytest.mark.parametrize("code, words", [(errno.ENOSPC, "No space left on device"),
                                         (errno.EACCES, "Permission denied")])
@pytest.mark.parametrize("where", ["fsync", "replace", "write"])
def test_disk_errors_leave_old_content_and_no_temp_file(store, data, monkeypatch, code, words, where):
    store.create("app", "app", task="original")
    path = data / "projects" / "app" / "sessions" / "app-1.json"
    before = path.read_bytes()
    counter = data / "projects" / "app" / "ids.json"
    counter_before = counter.read_bytes()
    if where == "write":  # half the bytes reach the temp file, then the disk is full
        from ao import ledger as ledger_mod

        class HalfFile:
            def __init__(self, *args, **kwargs):
                self.fh = open(*args, **kwargs)

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                self.fh.close()

            def write(self, text):
                self.fh.write(text[: len(text) // 2])
                self.fh.flush()
                _fail(code)()

        monkeypatch.setattr(ledger_mod, "open", HalfFile, raising=False)
    else:
        monkeypatch.setattr(os, where, _fail(code))

    with pytest.raises(AoError) as err:
        store.update("app-1", task="changed")
    assert words in str(err.value) and "app-1.json" in str(err.value)
    with pytest.raises(AoError, match=words):
        store.create("app", "app")
    with pytest.raises(AoError, match=words):
        SessionLedgerStore(store).save("app", "app-1", {"ci-failed": Entry(attempts=1)})
    monkeypatch.undo()

    assert path.read_bytes() == before and counter.read_bytes() == counter_before
    assert leftovers(data) == []
    assert [s.id for s in store.list()] == ["app-1"] and store.get("app-1").task == "original"


def test_archive_that_cannot_move_leaves_the_live_session(store, data, monkeypatch):
    store.create("app", "app")
    monkeypatch.setattr(os, "replace", _fail(errno.EACCES))
    with pytest.raises(AoError, match="Permission denied"):
        store.archive("app-1")
    monkeypatch.undo()
    assert store.get("app-1") is not None and store.list(include_archived=True)[0].id == "app-1"
    assert not (data / "archive" / "app" / "app-1.json").exists() and leftovers(data) == []


def test_unwritable_data_dir_is_a_clear_error(tmp_path, monkeypatch):
    data = tmp_path / "data"
    data.mkdir()
    real_open = os.open

    def deny(path, *args, **kwargs):
        if str(path).startswith(str(data)):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", deny)
    with pytest.raises(AoError, match="lock.*Permission denied"):
        SessionStore(data).create("app", "app")


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_read_only_sessions_folder(store, data):  # pragma: no cover - only where not root
    store.create("app", "app")
    folder = data / "projects" / "app" / "sessions"
    folder.chmod(0o500)
    try:
        with pytest.raises(AoError, match="Permission denied"):
            store.update("app-1", task="x")
    finally:
        folder.chmod(0o700)
    assert leftovers(data) == []


# ------------------------------------------------------------------------------------------- reading

def test_reads_take_no_lock(store, data):
    import fcntl

    for _ in range(3):
        store.create("app", "app")
    fd = os.open(data / "projects" / "app" / ".lock", os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)  # as another process mid-write would
    try:
        other = SessionStore(data)
        result: list = []
        t = threading.Thread(target=lambda: result.append((len(other.list()), other.get("app-2").id)))
        t.start()
        t.join(5)
        assert result == [(3, "app-2")]
    finally:
        os.close(fd)


def test_list_of_100_sessions_is_fast(store):
    for n in range(100):
        store.create("app", "app", fact={"session": f"app-{n + 1}", "ci": "failing", "head_sha": "a" * 40},
                     ledgers={"ci-failed": Entry(attempts=1, occurrence="a" * 40, first_at=NOW).to_dict()})
    fresh = SessionStore(store.root)
    best = min(_timed(fresh.list) for _ in range(5))
    assert len(fresh.list()) == 100
    assert best < 0.05, f"list() of 100 sessions took {best * 1000:.1f} ms"


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


# ----------------------------------------------------------------------------------- engine ledgers

def _config(tmp_path: Path, data: Path) -> config_mod.Config:
    path = tmp_path / "agent-orchestrator.yaml"
    path.write_text(f"dataDir: {data}\nprojects:\n  app:\n    path: ./app\n")
    return config_mod.load(path)


def _cycle(cfg, data: Path, observed: dict[str, dict], now: int) -> list[tuple]:
    """One cycle with a brand-new Engine and store, as after a restart of ao."""
    compiled = engine_mod.compile_config(cfg)["app"]
    full = [facts.complete({"session": sid, "project": "app", **f}, now, compiled.stuck_threshold)
            for sid, f in observed.items()]
    with engine_mod.Engine(compiled, SessionLedgerStore(SessionStore(data))) as eng:
        done = engine_mod.run_cycle(eng, full, now, RecordingExecutor())
    return [(a.session, a.reaction, a.action) for a, _ in done]


def test_ledgers_live_in_the_session_files_and_survive_restarts(tmp_path, data):
    cfg = _config(tmp_path, data)
    store = SessionStore(data)
    store.create("app", "app")
    store.create("app", "app")
    busy = {"activity": "active"}

    assert _cycle(cfg, data, {"app-1": failing("a1"), "app-2": busy}, NOW) == [("app-1", "ci-failed", "send-to-agent")]
    session = store.get("app-1")
    assert session.ledgers["ci-failed"]["attempts"] == 1 and session.ledgers["ci-failed"]["occurrence"] == "a1"
    assert store.get("app-2").ledgers == {}

    # a new Engine over the same store: nothing already sent is sent again ...
    assert _cycle(cfg, data, {"app-1": failing("a1"), "app-2": busy}, NOW + 30) == []
    assert _cycle(cfg, data, {"app-1": failing("a2"), "app-2": busy}, NOW + 60) == [
        ("app-1", "ci-failed", "send-to-agent")]
    # ... and the budget is not reset: the third failing head escalates
    assert _cycle(cfg, data, {"app-1": failing("a3"), "app-2": busy}, NOW + 90) == [
        ("app-1", "ci-failed", "escalate")]
    assert _cycle(cfg, data, {"app-1": failing("a4"), "app-2": busy}, NOW + 120) == []
    entry = store.get("app-1").ledger_entries()["ci-failed"]
    assert entry.attempts == 2 and entry.escalated and entry.first_at == NOW

    # the engine's saves keep the rest of the session intact
    assert store.get("app-1").created_at > 0 and store.get("app-1").status == "spawning"
    assert not (data / "ledgers").exists()  # nothing in the old JsonLedgerStore place
    assert leftovers(data) == []


def test_project_ledgers_go_to_project_json(tmp_path, data):
    cfg = _config(tmp_path, data)
    SessionStore(data).create("app", "app")
    merged = {"app-1": {"pr_state": "merged"}}
    assert _cycle(cfg, data, merged, NOW) == [(None, "all-complete", "notify")]
    on_disk = json.loads((data / "projects" / "app" / "project.json").read_text())
    assert on_disk["project"] == "app" and on_disk["ledgers"]["all-complete"]["attempts"] == 1
    assert _cycle(cfg, data, merged, NOW + 30) == []  # not again after a restart
    assert PROJECT_KEY in SessionLedgerStore(SessionStore(data)).load("app")


def test_ledger_store_round_trip_and_sessions_gone_meanwhile(data):
    store = SessionStore(data)
    ledgers = SessionLedgerStore(store)
    store.create("app", "app")
    store.create("app", "app")
    e = Entry(attempts=2, occurrence="x", first_at=5, clear_streak=1, delivery_failures=1, last_error="boom")
    ledgers.save("app", "app-1", {"ci-failed": e})
    ledgers.save("app", PROJECT_KEY, {"all-complete": Entry(attempts=1, occurrence="s")})
    assert ledgers.load("app") == {"app-1": {"ci-failed": e}, PROJECT_KEY: {"all-complete": Entry(attempts=1,
                                                                                                 occurrence="s")}}
    ledgers.save("app", "app-1", {})  # a stable clear
    assert ledgers.load("app") == {PROJECT_KEY: {"all-complete": Entry(attempts=1, occurrence="s")}}

    store.archive("app-2")
    ledgers.save("app", "app-2", {"ci-failed": e})  # cleaned up between evaluate and save: dropped quietly
    ledgers.save("app", "app-9", {"ci-failed": e})  # never existed: dropped and reported
    assert store.get("app-2", include_archived=True).ledgers == {}
    assert not (data / "projects" / "app" / "sessions" / "app-9.json").exists()
    assert store.problems == ["ledger of unknown session 'app-9' of project 'app' not saved"]


def test_corrupt_project_ledgers_are_quarantined(data):
    store = SessionStore(data)
    path = data / "projects" / "app" / "project.json"
    path.parent.mkdir(parents=True)
    path.write_text('{"ledgers": 3}')
    assert SessionLedgerStore(store).load("app") == {}
    assert [k.read_text() for k in path.parent.glob("project.json.corrupt-*")] == ['{"ledgers": 3}']
    assert "corrupt project ledgers" in store.problems[0]


# ----------------------------------------------------------------------------------- ao rules explain

def _ao(*args: str, data: Path) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(data.parent), "AO_HOME": str(data), "COLUMNS": "250"}
    return subprocess.run([sys.executable, "-m", "ao", *args], capture_output=True, text=True, cwd=ROOT, env=env)


def test_rules_explain_shows_the_stored_fact_and_ledger(tmp_path, data):
    cfg = _config(tmp_path, data)
    store = SessionStore(data)
    store.create("app", "app")
    fact = {"session": "app-1", "project": "app", **failing("a2"), "activity": "idle", "idle_seconds": 30}
    _cycle(cfg, data, {"app-1": failing("a1")}, NOW)
    _cycle(cfg, data, {"app-1": failing("a2")}, NOW + 60)
    store.update("app-1", fact=facts.complete(fact, NOW + 60))

    run = _ao("rules", "explain", "app-1", "--now", str(NOW + 90), "--json", "--config", str(cfg.file), data=data)
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert report["fact"]["head_sha"] == "a2" and report["fact"]["status"] == "ci_failed"
    rows = {r["reaction"]: r for r in report["reactions"]}
    assert rows["ci-failed"]["matched"] and rows["ci-failed"]["ledger"]["attempts"] == 2
    assert rows["ci-failed"]["ledger"]["occurrence"] == "a2" and rows["ci-failed"]["ledger"]["first_at"] == iso(NOW)
    assert rows["pr-closed"]["ledger"] is None

    table = _ao("rules", "explain", "app-1", "--now", str(NOW + 90), "--config", str(cfg.file), data=data)
    assert table.returncode == 0, table.stderr
    assert "attempts 2, occurrence a2" in table.stdout


def test_rules_explain_unknown_or_unobserved_session(tmp_path, data):
    cfg = _config(tmp_path, data)
    SessionStore(data).create("app", "app")
    run = _ao("rules", "explain", "app-5", "--config", str(cfg.file), data=data)
    assert run.returncode == 1 and "Traceback" not in run.stderr
    assert "unknown session 'app-5'" in run.stderr and "app-1" in run.stderr and "--fact" in run.stderr
    run = _ao("rules", "explain", "app-1", "--config", str(cfg.file), data=data)
    assert run.returncode == 1 and "no observation stored yet" in run.stderr

    # --fact with a stored session: the fact from the file, the ledger from the store
    SessionLedgerStore(SessionStore(data)).save("app", "app-1", {"ci-failed": Entry(attempts=1, occurrence="z")})
    fact = tmp_path / "fact.yaml"
    fact.write_text("pr_state: open\nci: failing\nhead_sha: abc\n")
    run = _ao("rules", "explain", "app-1", "--fact", str(fact), "--json", "--config", str(cfg.file), data=data)
    assert run.returncode == 0, run.stderr
    rows = {r["reaction"]: r for r in json.loads(run.stdout)["reactions"]}
    assert rows["ci-failed"]["ledger"]["occurrence"] == "z"


def test_an_atomic_write_fsyncs_the_file_then_its_directory(tmp_path, monkeypatch):
    """The rename is durable too: without an fsync of the directory a power cut can bring back the old file."""
    import stat

    from ao.ledger import atomic_write

    synced = []
    real = os.fsync

    def fsync(fd):
        st = os.fstat(fd)
        synced.append(("dir" if stat.S_ISDIR(st.st_mode) else "file", st.st_ino))
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    path = tmp_path / "journal" / "x.json"
    atomic_write(path, "one\n")
    assert synced == [("file", path.stat().st_ino), ("dir", path.parent.stat().st_ino)]
    assert path.read_text() == "one\n"
