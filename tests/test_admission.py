"""The queue and admission (SPEC 12): caps, priority, dependencies, pickup, at most one live agent per issue across crashes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ao import config as config_mod
from ao.admission import Admission, parse_size, room
from ao.sessions import Sessions, SpawnRequest
from ao.workqueue import WorkQueue


def make_config(tmp_path: Path, issues: int = 50, **extra) -> config_mod.Config:
    """Two projects with local trackers (``issues`` markdown issues in a), in a git-less temp folder."""
    projects = {}
    for name in ("a", "b"):
        folder = tmp_path / name
        (folder / "issues").mkdir(parents=True, exist_ok=True)
        projects[name] = {"path": str(folder), "tracker": {"plugin": "local"}, "scm": {"plugin": "local"},
                          **extra.pop(f"project_{name}", {})}
    for n in range(1, issues + 1):
        (tmp_path / "a" / "issues" / f"{n}.md").write_text(f"# Issue {n}\n")
    data = {"dataDir": str(tmp_path / "data"), "projects": projects, **extra}
    path = tmp_path / "agent-orchestrator.yaml"
    path.write_text(yaml.safe_dump(data))
    return config_mod.load(path)


class Spawner:
    """Stands in for Sessions.spawn (no git, no tmux): writes the record, with the admission token, as spawn
    does, then marks it working. ``crash`` makes one spawn die after creating the record (no undo runs)."""

    def __init__(self, manager: Sessions) -> None:
        self.manager = manager
        self.calls: list[str] = []
        self.crash_after_create = False
        self.fail = 0

    def __call__(self, request: SpawnRequest):
        self.calls.append(request.target)
        if self.fail:
            self.fail -= 1
            from ao.errors import AoError
            raise AoError("the workspace could not be created")
        project = self.manager.config.projects[request.project]
        s = self.manager.store.create(request.project, project.session_prefix, status="spawning",
                                      issue=request.target, meta={"admission": request.admission} if request.admission else {})
        if self.crash_after_create:
            self.crash_after_create = False
            raise SystemExit("killed mid-spawn")  # a dead process runs no undo
        return self.manager.store.update(s.id, request.project, status="working", runtime_handle=f"h-{s.id}")


@pytest.fixture
def admit(tmp_path):
    def make(issues: int = 50, memory: int | None = None, **extra):
        cfg = make_config(tmp_path, issues, **extra)
        manager = Sessions(cfg)
        spawner = Spawner(manager)
        manager.spawn = spawner
        adm = Admission(cfg, manager, clock=lambda: 1000.0, memory=lambda: memory)
        return adm, spawner
    return make


def live(adm):
    return [s for s in adm.manager.store.list() if not s.terminal]


def test_fifty_queued_issues_are_admitted_under_the_caps(admit):
    adm, spawner = admit(maxConcurrent=20, project_a={"maxConcurrent": 8})
    adm.queue.add("a", [str(n) for n in range(1, 51)], now=0)
    rows = adm.admit(now=10)
    assert [r["result"] for r in rows] == ["admitted"] * 8  # project a's own cap
    assert spawner.calls == [str(n) for n in range(1, 9)]   # oldest first
    assert len(live(adm)) == 8
    assert adm.admit(now=20) == []  # full: nothing, and no tracker look either
    for s in live(adm)[:3]:
        adm.manager.store.update(s.id, "a", status="merged")
    rows = adm.admit(now=30)
    assert [r["issue"] for r in rows] == ["9", "10", "11"]
    states = {e.issue: e.state for e in WorkQueue(adm.config.data_dir).load()}
    assert sum(v == "admitted" for v in states.values()) == 11 and sum(v == "queued" for v in states.values()) == 39


def test_the_top_level_cap_counts_every_project(admit, tmp_path):
    adm, spawner = admit(maxConcurrent=5)
    for n in range(1, 4):
        (tmp_path / "b" / "issues" / f"b{n}.md").write_text("# b\n")
    adm.queue.add("a", [str(n) for n in range(1, 11)], now=0)
    adm.queue.add("b", ["b1", "b2", "b3"], now=1)
    adm.admit(now=10)
    assert spawner.calls == ["1", "2", "3", "4", "5"]
    adm.queue.add("b", ["b1"], priority=5, now=2)  # a higher priority jumps the queue
    adm.manager.store.update(live(adm)[0].id, "a", status="killed")
    adm.admit(now=20)
    assert spawner.calls[-1] == "b1"


def test_priority_then_age(admit):
    adm, spawner = admit(maxConcurrent=4)
    adm.queue.add("a", ["1", "2"], now=0)
    adm.queue.add("a", ["3"], priority=2, now=5)
    adm.queue.add("a", ["4", "5"], priority=1, now=3)
    adm.admit(now=10)
    assert spawner.calls == ["3", "4", "5", "1"]


def test_status_caps_and_the_memory_floor_hold_admission(admit):
    adm, spawner = admit(admission={"maxPerStatus": {"ci_failed": 2}, "minFreeMemory": "2GiB"}, memory=8 * 2**30)
    adm.queue.add("a", [str(n) for n in range(1, 6)], now=0)
    for n in (1, 2):
        adm.manager.store.create("a", "a", status="ci_failed", issue=f"x{n}")
    rows = adm.admit(now=10)
    assert spawner.calls == [] and rows == [{"project": None, "issue": None, "result": "held", "session": None,
                                            "detail": "2 or more sessions are ci_failed"}]
    for s in live(adm):
        adm.manager.store.update(s.id, "a", status="working")
    adm.memory = lambda: 1 * 2**30
    assert adm.admit(now=20)[0]["detail"] == "only 1024 MiB of memory available" and spawner.calls == []
    adm.memory = lambda: 3 * 2**30
    assert len(adm.admit(now=30)) == 5


def test_a_blocked_issue_waits_for_its_blockers(admit, tmp_path):
    adm, spawner = admit(maxConcurrent=10)
    issues = tmp_path / "a" / "issues"
    (issues / "3.md").write_text("---\nblocked_by: [1, '#2', 99]\nlabels: [ao]\n---\n# Needs 1 and 2\n")
    adm.queue.add("a", ["3", "4"], priority=5, now=0)
    rows = adm.admit(now=10)
    assert [(r["issue"], r["result"]) for r in rows] == [("3", "blocked"), ("4", "admitted")]
    assert rows[0]["detail"] == "waits for 1, 2"  # 99 does not exist: it blocks nothing
    assert WorkQueue(adm.config.data_dir).load()[0].blocked_by == ["1", "2"]
    (issues / "closed").mkdir()
    (issues / "1.md").rename(issues / "closed" / "1.md")
    assert adm.admit(now=20)[0]["detail"] == "waits for 2"
    (issues / "2.md").rename(issues / "closed" / "2.md")
    assert [r["result"] for r in adm.admit(now=30)] == ["admitted"] and spawner.calls == ["4", "3"]


def test_a_queued_issue_that_was_closed_or_spawned_by_hand_is_not_spawned(admit, tmp_path):
    adm, spawner = admit()
    adm.queue.add("a", ["1", "2"], now=0)
    adm.manager.store.create("a", "a", status="working", issue="2")
    (tmp_path / "a" / "issues" / "closed").mkdir()
    (tmp_path / "a" / "issues" / "1.md").rename(tmp_path / "a" / "issues" / "closed" / "1.md")
    rows = adm.admit(now=10)
    assert sorted((r["issue"], r["result"]) for r in rows) == [("1", "dropped"), ("2", "admitted")]
    assert spawner.calls == [] and [e.issue for e in WorkQueue(adm.config.data_dir).load()] == ["2"]


def test_a_spawn_that_keeps_failing_ends_failed(admit):
    adm, spawner = admit()
    adm.queue.add("a", ["1"], now=0)
    spawner.fail = 3
    assert [adm.admit(now=t)[0]["result"] for t in (1, 2, 3)] == ["retry", "retry", "failed"]
    entry = WorkQueue(adm.config.data_dir).load()[0]
    assert (entry.state, entry.attempts, entry.error) == ("failed", 3, "the workspace could not be created")
    assert adm.admit(now=4) == []
    adm.queue.add("a", ["1"], now=5)  # by hand again: a fresh start
    assert adm.admit(now=6)[0]["result"] == "admitted"


# ------------------------------------------------------------------------------------ exactly once


def test_a_crash_mid_spawn_rolls_the_half_made_session_back_and_admits_once(admit):
    adm, spawner = admit()
    adm.queue.add("a", ["1", "2"], now=0)
    spawner.crash_after_create = True
    with pytest.raises(SystemExit):
        adm.admit(now=10)
    (half,) = adm.manager.store.list()
    assert half.status == "spawning" and WorkQueue(adm.config.data_dir).load()[0].state == "admitting"

    restarted = Admission(adm.config, adm.manager, clock=lambda: 2000.0, memory=lambda: None)
    rows = restarted.admit(now=20)
    # both were decided (durably) before the crash; issue 1's spawn had begun, issue 2's had not
    assert [r["result"] for r in rows] == ["requeued", "requeued", "admitted", "admitted"]
    assert half.id in rows[0]["detail"] and "rolled back" not in rows[1]["detail"]
    archived = adm.manager.store.get(half.id, include_archived=True)
    assert archived.status == "errored" and "interrupted" in archived.meta["ended_as"]
    by_issue = {}
    for s in live(restarted):
        by_issue.setdefault(s.issue, []).append(s.id)
    assert {k: len(v) for k, v in by_issue.items()} == {"1": 1, "2": 1}


def test_a_crash_after_the_spawn_before_the_queue_heard_of_it_does_not_spawn_again(admit, monkeypatch):
    adm, spawner = admit()
    adm.queue.add("a", ["1"], now=0)

    def die(*args, **kwargs):
        raise SystemExit("killed after the spawn")

    monkeypatch.setattr(Admission, "_settle", die)
    with pytest.raises(SystemExit):
        adm.admit(now=10)
    monkeypatch.undo()
    assert len(live(adm)) == 1 and spawner.calls == ["1"]
    rows = Admission(adm.config, adm.manager, clock=lambda: 2000.0, memory=lambda: None).admit(now=20)
    assert [r["result"] for r in rows] == ["admitted"] and "recovered" in rows[0]["detail"]
    assert spawner.calls == ["1"] and len(live(adm)) == 1
    assert WorkQueue(adm.config.data_dir).load()[0].session == live(adm)[0].id


def test_a_crash_after_deciding_before_spawning_admits_on_restart(admit, monkeypatch):
    adm, spawner = admit()
    adm.queue.add("a", ["1"], now=0)
    monkeypatch.setattr(Admission, "_spawn", lambda *a: (_ for _ in ()).throw(SystemExit("killed")))
    with pytest.raises(SystemExit):
        adm.admit(now=10)
    monkeypatch.undo()
    rows = Admission(adm.config, adm.manager, clock=lambda: 2000.0, memory=lambda: None).admit(now=20)
    assert [r["result"] for r in rows] == ["requeued", "admitted"] and spawner.calls == ["1"]


# ----------------------------------------------------------------------------------------- pickup

def test_local_pickup_by_label_and_reopen_after_merge(admit, tmp_path):
    adm, spawner = admit(issues=0, project_a={"pickup": {"label": "ao", "priority": 3}})
    issues = tmp_path / "a" / "issues"
    (issues / "7.md").write_text("---\nlabels: [ao]\n---\n# Labelled\n")
    (issues / "8.md").write_text("# Not labelled\n")
    errors: list[str] = []
    adm.observe([], now=0, errors=errors)
    (entry,) = WorkQueue(adm.config.data_dir).load()
    assert (entry.issue, entry.priority, entry.source, entry.title) == ("7", 3, "pickup", "Labelled") and not errors
    adm.admit(now=1)
    (session,) = live(adm)
    adm.observe(adm.manager.store.list(), now=2, errors=errors)  # live: not picked up again
    assert len(WorkQueue(adm.config.data_dir).load()) == 1
    adm.manager.store.update(session.id, "a", status="merged")
    (issues / "closed").mkdir()
    (issues / "7.md").rename(issues / "closed" / "7.md")
    adm.observe(adm.manager.store.list(), now=3, errors=errors)  # ended sessions' issues: looked at every 5 min
    assert len(WorkQueue(adm.config.data_dir).load()) == 1
    adm.observe(adm.manager.store.list(), now=400, errors=errors)  # closed after its merge: leaves the queue
    assert WorkQueue(adm.config.data_dir).load() == []
    (issues / "closed" / "7.md").rename(issues / "7.md")  # reopened
    adm.observe(adm.manager.store.list(), now=500, errors=errors)
    assert [e.state for e in WorkQueue(adm.config.data_dir).load()] == ["queued"]
    adm.admit(now=501)
    assert spawner.calls == ["7", "7"] and len(live(adm)) == 1


def test_an_admitted_issue_still_open_after_its_merge_is_not_picked_up_again(admit, tmp_path):
    adm, spawner = admit(issues=0, project_a={"pickup": {"state": "open"}})
    (tmp_path / "a" / "issues" / "7.md").write_text("# Work\n")
    adm.observe([], now=0, errors=[])
    adm.admit(now=1)
    adm.manager.store.update(live(adm)[0].id, "a", status="merged")
    for now in (400, 800):
        adm.observe(adm.manager.store.list(), now=now, errors=[])
        adm.admit(now=now)
    assert spawner.calls == ["7"]


def test_reconciliation_reads_the_live_sessions_issue_states(admit, tmp_path):
    adm, _ = admit(issues=2)
    s1 = adm.manager.store.create("a", "a", status="working", issue="1")
    s2 = adm.manager.store.create("a", "a", status="working", issue="2")
    (tmp_path / "a" / "issues" / "closed").mkdir()
    (tmp_path / "a" / "issues" / "2.md").rename(tmp_path / "a" / "issues" / "closed" / "2.md")
    fresh = adm.observe(adm.manager.store.list(), now=0, errors=[])
    assert fresh == {s1.id: {"issue_state": "open"}, s2.id: {"issue_state": "closed"}}


def test_github_pickup_and_blockers(tmp_path):
    from fake_github import TOKEN, FakeGitHub

    from ao.plugins.scm.github import GitHubClient
    from ao.plugins.tracker.github import GitHubTracker

    gh = FakeGitHub().start()
    try:
        first = gh.add_issue("Base work", labels=["ao"])
        child = gh.add_issue("A part", labels=["ao"])
        parent = gh.add_issue("Needs its part", labels=["ao"], sub_issues=[child.number])
        epic = gh.add_issue("Epic", labels=["ao"], tracks=[first.number])
        gh.add_issue("Not for ao")
        tracker = GitHubTracker(repo=gh.full_name, base_url=gh.url, client=GitHubClient(token=TOKEN, base_url=gh.url))
        assert sorted(int(i.id) for i in tracker.pickup({"label": "ao"})) == sorted(
            n.number for n in (first, child, parent, epic))
        ids = [str(first.number), str(parent.number), str(epic.number), "999"]
        got = tracker.status(ids)
        assert got[str(first.number)].blocked_by == [] and got[str(first.number)].state == "open"
        assert got[str(parent.number)].blocked_by == [f"#{child.number}"]
        assert got[str(epic.number)].blocked_by == [f"#{first.number}"]
        assert "999" not in got
        assert len(gh.graphql_requests()) == 1  # one query for the batch
        first.state = "closed"
        assert tracker.status([str(epic.number)])[str(epic.number)].blocked_by == []
        assert gh.rejected == [] and gh.violations == []  # held to GitHub's published descriptions
    finally:
        gh.stop()


def test_linear_pickup_by_state_label_and_view_and_relations(monkeypatch):
    from fake_linear import FakeLinear

    from ao.plugins.tracker.linear import plugin

    fake = FakeLinear().start()
    try:
        monkeypatch.setenv("LINEAR_API_KEY", fake.key)
        fake.add_issue("ENG-1", "Todo, labelled", labels=("ao",))
        fake.add_issue("ENG-2", "Todo", state="unstarted")
        fake.add_issue("ENG-3", "Doing", state="started", state_name="In Progress")
        fake.add_issue("ENG-4", "Done", state="completed")
        fake.add_issue("OPS-1", "Other team")
        fake.blocks.append(("ENG-2", "ENG-1"))
        fake.blocks.append(("ENG-4", "ENG-1"))  # a finished blocker blocks nothing
        fake.views["view-1"] = ["ENG-3", "ENG-4"]
        tracker = plugin(project_path=Path("."), settings={"baseUrl": fake.url, "team": "ENG"})
        assert [i.id for i in tracker.pickup({"label": "ao"})] == ["ENG-1"]
        assert sorted(i.id for i in tracker.pickup({"state": "Todo"})) == ["ENG-1", "ENG-2"]
        assert [i.id for i in tracker.pickup({"view": "view-1"})] == ["ENG-3"]
        got = tracker.status(["ENG-1", "ENG-3", "ENG-4", "OPS-1"], active_states=["Todo", "In Progress"])
        assert got["ENG-1"].blocked_by == ["ENG-2"] and got["ENG-1"].state == "open"
        assert got["ENG-3"].state == "open" and got["ENG-4"].state == "closed" and got["OPS-1"].state == "open"
        assert tracker.status(["ENG-3"], active_states=["Todo"])["ENG-3"].state == "inactive"
        assert fake.rejected == [] and fake.violations == []
    finally:
        fake.stop()


def test_parse_size():
    assert parse_size("2GiB") == 2 * 2**30 and parse_size("512MB") == 512 * 2**20 and parse_size(1024) == 1024
    assert parse_size("1.5G") == int(1.5 * 2**30)


def test_room_without_caps_is_unlimited(tmp_path):
    cfg = make_config(tmp_path, 0)
    r = room(cfg, [])
    assert r.free("a") == float("inf")


# ------------------------------------------------------------------------------------------ the CLI

def test_queue_cli_add_ls_rm(tmp_path):
    make_config(tmp_path, 3)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}

    def ao(*args):
        return subprocess.run([sys.executable, "-m", "ao", "--config", str(tmp_path / "agent-orchestrator.yaml"),
                               "queue", *args], capture_output=True, text=True, env=env, timeout=60)

    assert ao("add", "a", "1", "2").returncode == 0
    assert ao("add", "a", "#3", "--priority", "9").returncode == 0
    done = ao("ls")
    assert done.returncode == 0
    lines = done.stdout.splitlines()  # piped: plain tab-separated lines, admission order
    assert [line.split("\t")[:4] for line in lines] == [["a", "3", "9", "queued"], ["a", "1", "0", "queued"],
                                                         ["a", "2", "0", "queued"]]
    rows = json.loads(ao("ls", "--json").stdout)
    assert [r["issue"] for r in rows] == ["3", "1", "2"] and rows[0]["title"] == ""
    assert "already queued" in ao("add", "a", "1").stdout
    bad = ao("add", "a", "not an id")
    assert bad.returncode == 1 and "not an issue id" in bad.stderr and "Traceback" not in bad.stderr
    assert ao("rm", "a", "1").stdout.strip() == "removed a 1 (queued)"
    missing = ao("rm", "a", "1")
    assert missing.returncode == 1 and "not in the queue" in missing.stderr
    assert ao("ls", "nope").returncode == 1


def test_admission_and_budget_keys_are_read_and_checked(tmp_path):
    root = Path(__file__).resolve().parent.parent
    cfg = config_mod.load(root / "examples" / "admission-and-budgets.yaml", env={})
    app = cfg.projects["my-app"]
    assert (cfg.max_concurrent, app.max_concurrent, cfg.max_per_status) == (20, 8, {"ci_failed": 3})
    assert cfg.min_free_memory == 4 * 2**30 and cfg.fact_retention == 14 * 86400
    assert app.budget == {"session": 5, "project": 200} and app.pickup == {"label": "ao"}
    assert app.reactions["issue-closed"].threshold == 900 and app.reactions["budget-exceeded"].action == "pause"
    bad = tmp_path / "bad.yaml"
    bad.write_text("projects:\n  a:\n    path: .\n    maxConcurrent: 0\nadmission:\n  maxPerStatus: {ci_fialed: 2}\n"
                   "  minFreeMemory: lots\nbudget: {session: -1}\n")
    from ao.errors import AoError

    with pytest.raises(AoError) as err:
        config_mod.load(bad, env={})
    text = str(err.value)
    assert f"{bad}:4:20:" in text and "minFreeMemory: a size such as 2GiB" in text and f"{bad}:8:" in text
    bad.write_text("projects:\n  a:\n    path: .\nadmission:\n  maxPerStatus: {ci_fialed: 2}\n")
    with pytest.raises(AoError) as err:
        config_mod.load(bad, env={})
    assert f"{bad}:5:18: unknown status 'ci_fialed' (did you mean 'ci_failed'?)" in str(err.value)


def test_a_remote_tracker_is_asked_at_most_every_few_minutes(admit):
    from ao.plugins.tracker import IssueStatus

    adm, _ = admit(issues=0, project_a={"pickup": {"label": "ao"}})
    calls = []

    class Remote:
        def pickup(self, spec):
            calls.append("pickup")
            return []

        def status(self, ids, active=None, *, blockers=True):
            calls.append(("status", tuple(ids)))
            return {i: IssueStatus(state="closed") for i in ids}

    adm.config.projects["a"].tracker = {"plugin": "github"}
    adm._trackers["a"] = Remote()
    s1 = adm.manager.store.create("a", "a", status="working", issue="1")
    assert adm.observe(adm.manager.store.list(), now=0, errors=[]) == {s1.id: {"issue_state": "closed"}}
    assert adm.observe(adm.manager.store.list(), now=30, errors=[]) == {s1.id: {"issue_state": "closed"}}
    assert calls == ["pickup", ("status", ("1",))]  # the second cycle used what it knew
    s2 = adm.manager.store.create("a", "a", status="working", issue="2")  # a new issue is asked about at once
    adm.observe(adm.manager.store.list(), now=40, errors=[])
    assert calls[-1] == ("status", ("1", "2"))
    adm.observe(adm.manager.store.list(), now=70, errors=[])
    assert calls[-1] == "pickup"
    adm.observe(adm.manager.store.list(), now=341, errors=[])
    assert calls[-1] == ("status", ("1", "2")) and s2.id
