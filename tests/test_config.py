"""Configuration: loading with positions, discovery, interpolation, merging, durations, prefixes, the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import ao
from ao import config, reactions, yamlsrc
from ao.config import derive_prefix
from ao.durations import DurationError, format_duration, parse_duration
from ao.errors import AoError

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
SECRET = "https://hooks.slack.com/services/T0SECRET/B0SECRET/s3cr3tT0k3n"


def run_ao(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
           home: Path | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m ao ARGS`` with a clean environment; never a traceback, whatever the outcome."""
    base = {k: v for k, v in os.environ.items()
            if not k.startswith(("AO_", "SLACK_", "OPS_")) and k != "XDG_CONFIG_HOME"}
    if home is not None:
        base["HOME"] = str(home)
        base["XDG_CONFIG_HOME"] = str(home / ".config")
    base.update(env or {})
    proc = subprocess.run([sys.executable, "-m", "ao", *args], capture_output=True, text=True,
                          cwd=cwd, env=base, timeout=120)
    assert "Traceback" not in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stdout, proc.stdout
    return proc


def build(text: str, env: dict[str, str] | None = None, folder: Path = Path("/tmp/ao-test")) -> config.Config:
    src = yamlsrc.loads(textwrap.dedent(text).lstrip("\n"), "c.yaml")
    return config.from_source(src, folder / "c.yaml", env=env or {})


def problems(text: str, env: dict[str, str] | None = None) -> list:
    with pytest.raises(AoError) as info:
        build(text, env)
    return info.value.problems


# ------------------------------------------------------------------------------------------------ loader

DOC = """\
projects:
  app:
    path: ~/app
    name: 'quoted'
    postCreate:
      - npm ci
      - make
    reactions:
      ci-failed:
        message: |
          first
          second {{ pr_url }}
"""


def test_loader_records_value_and_key_positions():
    src = yamlsrc.loads(DOC, "c.yaml")
    assert src.data["projects"]["app"]["path"] == "~/app"
    assert src.values[("projects", "app", "path")] == (3, 11)
    assert src.keys[("projects", "app", "path")] == (3, 5)
    assert src.keys[("projects", "app")] == (2, 3)
    assert src.values[("projects", "app", "postCreate", 1)] == (7, 9)
    assert src.where(("projects", "app", "name")) == (4, 11)
    assert src.where(("projects", "app", "name"), key=True) == (4, 5)
    # a path that is not in the file falls back to its nearest ancestor
    assert src.where(("projects", "app", "nosuch", "deeper")) == src.values[("projects", "app")]


def test_loader_knows_plain_scalars_and_block_text_lines():
    src = yamlsrc.loads(DOC, "c.yaml")
    assert ("projects", "app", "path") in src.plain
    assert ("projects", "app", "name") not in src.plain
    message = ("projects", "app", "reactions", "ci-failed", "message")
    assert src.data["projects"]["app"]["reactions"]["ci-failed"]["message"] == "first\nsecond {{ pr_url }}\n"
    assert src.line_in(message, 0) == (11, 11)  # the text starts on the line after `|`
    assert src.line_in(message, 1) == (12, 11)
    assert src.line_in(("projects", "app", "name"), 3) == (4, 11)  # not a block: the value itself
    sub = src.sub(("projects", "app"))
    assert sub.line_in(("reactions", "ci-failed", "message"), 1) == (12, 11)
    assert sub.where(("path",)) == (3, 11)


def test_loader_duplicate_keys_are_reported_all_at_once():
    with pytest.raises(AoError) as info:
        yamlsrc.loads("port: 1\nport: 2\nprojects:\n  a: {path: x}\n  a: {path: y}\n", "c.yaml")
    assert [(p.line, p.col, p.path) for p in info.value.problems] == [(2, 1, "port"), (5, 3, "projects.a")]
    assert all("duplicate key" in p.message for p in info.value.problems)


def test_loader_rejects_tabs_with_a_position():
    with pytest.raises(AoError) as info:
        yamlsrc.loads("projects:\n\tapp:\n    path: x\n", "c.yaml")
    [problem] = info.value.problems
    assert (problem.line, problem.col) == (2, 1)
    assert "tab" in problem.message


def test_loader_rejects_non_utf8_at_the_byte(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_bytes(b"projects:\n  app:\n    name: caf\xe9\n")
    with pytest.raises(AoError) as info:
        yamlsrc.load_file(path, "c.yaml")
    [problem] = info.value.problems
    assert (problem.file, problem.line, problem.col) == ("c.yaml", 3, 14)
    assert "UTF-8" in problem.message and "0xe9" in problem.message


def test_loader_refuses_a_file_over_one_mebibyte(tmp_path):
    path = tmp_path / "big.yaml"
    path.write_text("projects: {}\n" + "# padding\n" * 120_000)
    assert path.stat().st_size > 1024 * 1024
    with pytest.raises(AoError) as info:
        yamlsrc.load_file(path)
    assert "MiB" in info.value.problems[0].message
    with pytest.raises(AoError):
        yamlsrc.loads(path.read_text(), "big.yaml")


def test_loader_stops_an_alias_bomb():
    lines = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    for prev, name in zip("abcdefgh", "bcdefghi"):
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 10) + "]")
    with pytest.raises(AoError) as info:
        yamlsrc.loads("\n".join(lines) + "\n", "c.yaml")
    assert "alias bomb" in info.value.problems[0].message


def test_loader_allows_small_aliases_but_not_merge_keys_or_custom_tags():
    src = yamlsrc.loads("base: &p /srv/app\nprojects:\n  a:\n    path: *p\n", "c.yaml")
    assert src.data["projects"]["a"]["path"] == "/srv/app"
    with pytest.raises(AoError) as info:
        yamlsrc.loads("b: &b {x: 1}\nc:\n  <<: *b\n  y: !!python/object:os.system z\n  z: !env X\n", "c.yaml")
    messages = [p.message for p in info.value.problems]
    assert len(messages) == 3
    assert "merge keys" in messages[0] and "tag" in messages[2]


def test_loader_empty_document_and_yaml_11_booleans():
    assert yamlsrc.loads("# nothing\n", "c.yaml").data is None
    assert yamlsrc.loads("auto: yes\nquoted: 'yes'\n").data == {"auto": True, "quoted": "yes"}


# --------------------------------------------------------------------------------------------- discovery

@pytest.fixture
def places(tmp_path, monkeypatch):
    """A home, an XDG folder and a working directory three levels below a project root."""
    home, xdg = tmp_path / "home", tmp_path / "xdg"
    top = tmp_path / "work"
    cwd = top / "a" / "b"
    for folder in (home, xdg / "agent-orchestrator", cwd):
        folder.mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(xdg))
    monkeypatch.delenv("AO_CONFIG_PATH", raising=False)
    return {"home": home, "xdg": xdg, "top": top, "cwd": cwd, "tmp": tmp_path}


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("projects:\n  x:\n    path: .\n")
    return path


def test_discovery_order(places, monkeypatch):
    cwd = places["cwd"]
    home_file = _touch(places["home"] / ".agent-orchestrator.yaml")
    assert config.discover(cwd=cwd) == home_file
    xdg_file = _touch(places["xdg"] / "agent-orchestrator" / "config.yaml")
    assert config.discover(cwd=cwd) == xdg_file
    grandparent = _touch(places["top"] / "agent-orchestrator.yml")
    assert config.discover(cwd=cwd) == grandparent
    parent = _touch(places["top"] / "a" / "agent-orchestrator.yaml")
    assert config.discover(cwd=cwd) == parent
    here = _touch(cwd / "agent-orchestrator.yaml")
    assert config.discover(cwd=cwd) == here
    env_file = _touch(places["tmp"] / "elsewhere" / "env.yaml")
    monkeypatch.setenv("AO_CONFIG_PATH", str(env_file))
    assert config.discover(cwd=cwd) == env_file
    explicit = _touch(places["tmp"] / "explicit.yaml")
    assert config.discover(explicit, cwd=cwd) == explicit
    assert config.discover(str(explicit), cwd=cwd) == explicit


def test_discovery_xdg_defaults_to_dot_config(places, monkeypatch):
    monkeypatch.delenv("XDG_CONFIG_HOME")
    found = _touch(places["home"] / ".config" / "agent-orchestrator" / "config.yaml")
    assert config.discover(cwd=places["cwd"]) == found


def test_discovery_explicit_or_env_path_that_does_not_exist(places, monkeypatch):
    here = _touch(places["cwd"] / "agent-orchestrator.yaml")
    with pytest.raises(AoError, match="not found"):  # --config never falls back
        config.discover(places["tmp"] / "nope.yaml", cwd=places["cwd"])
    missing = places["tmp"] / "missing.yaml"
    monkeypatch.setenv("AO_CONFIG_PATH", str(missing))
    assert config.discover(cwd=places["cwd"]) == here  # $AO_CONFIG_PATH does, as in the reference
    here.unlink()
    if any((d / n).exists() for d in places["cwd"].parents for n in config.CONFIG_NAMES):
        pytest.skip("a config file exists above the temporary directory")
    with pytest.raises(AoError, match=r"\$AO_CONFIG_PATH names .*missing.yaml"):
        config.discover(cwd=places["cwd"])


def test_discovery_not_found_lists_the_places_and_suggests_init(places):
    cwd = places["cwd"]
    if any((d / n).exists() for d in cwd.parents for n in config.CONFIG_NAMES):
        pytest.skip("a config file exists above the temporary directory")
    with pytest.raises(AoError) as info:
        config.discover(cwd=cwd)
    text = str(info.value)
    for place in (cwd / "agent-orchestrator.yaml", places["top"] / "agent-orchestrator.yaml",
                  places["xdg"] / "agent-orchestrator" / "config.yaml", places["home"] / ".agent-orchestrator.yaml"):
        assert str(place) in text
    assert "ao config init" in text


def test_cli_not_found_exits_1_with_the_places(places):
    if any((d / n).exists() for d in places["cwd"].parents for n in config.CONFIG_NAMES):
        pytest.skip("a config file exists above the temporary directory")
    proc = run_ao("config", "show", cwd=places["cwd"], home=places["home"])
    assert proc.returncode == 1
    assert "ao config init" in proc.stderr and str(places["cwd"]) in proc.stderr


def test_cli_uses_the_discovered_file(places):
    _touch(places["top"] / "agent-orchestrator.yaml")
    proc = run_ao("config", "validate", "--file-only", cwd=places["cwd"], home=places["home"])
    assert proc.returncode == 0, proc.stderr
    assert str(places["top"] / "agent-orchestrator.yaml") in proc.stdout


# ----------------------------------------------------------------------------------------- interpolation

def test_interpolation_from_the_environment():
    cfg = build("""
        host: ${HOST}
        projects:
          app:
            path: /srv/${DIR}/app
            repo: ${OWNER}/${NAME}
    """, env={"HOST": "0.0.0.0", "DIR": "code", "OWNER": "org", "NAME": "app"})
    assert cfg.host == "0.0.0.0"
    assert cfg.projects["app"].path == Path("/srv/code/app")
    assert cfg.projects["app"].repo == "org/app"
    assert cfg.from_env == {("host",), ("projects", "app", "path"), ("projects", "app", "repo")}


def test_interpolation_unset_variable_is_an_error_naming_it_and_its_line():
    [problem] = problems("""
        projects:
          app:
            path: /srv/app
            repo: ${REPO_NAME}
    """)
    assert (problem.line, problem.col, problem.path) == (4, 11, "projects.app.repo")
    assert "REPO_NAME" in problem.message and "not set" in problem.message


def test_interpolation_defaults_and_escape():
    cfg = build("""
        projects:
          app:
            path: /srv/app
            repo: ${REPO:-org/app}
            name: ${EMPTY:-}costs $${HOME} and $$ and $5
            defaultBranch: ${BRANCH:-main}
    """, env={"BRANCH": "trunk"})
    project = cfg.projects["app"]
    assert project.repo == "org/app"
    assert project.name == "costs ${HOME} and $$ and $5"
    assert project.default_branch == "trunk"
    assert cfg.from_env == {("projects", "app", "defaultBranch")}


def test_interpolation_is_a_single_pass():
    cfg = build("projects:\n  app:\n    path: /a\n    name: ${N}\n", env={"N": "${OTHER}"})
    assert cfg.projects["app"].name == "${OTHER}"


def test_unquoted_variable_takes_the_type_of_its_value():
    cfg = build("port: ${PORT}\nprojects:\n  app:\n    path: /a\n", env={"PORT": "8080"})
    assert cfg.port == 8080 and isinstance(cfg.port, int)
    cfg = build("port: ${PORT:-4000}\nprojects:\n  app:\n    path: /a\n")
    assert cfg.port == 4000
    cfg = build("projects:\n  app:\n    path: /a\n    reactions:\n      ci-failed:\n        auto: ${AUTO}\n",
                env={"AUTO": "false"})
    assert cfg.projects["app"].reactions["ci-failed"].auto is False
    # quoted, it stays a string, and a string is not a port
    [problem] = problems("port: '${PORT}'\nprojects:\n  app:\n    path: /a\n", env={"PORT": "8080"})
    assert (problem.line, problem.path) == (1, "port") and "integer" in problem.message


# ---------------------------------------------------------------------------------------------- merging

MERGE = """
    reactions:
      ci-failed:
        retries: 3
        priority: warning
      agent-stuck:
        threshold: 15m
    projects:
      strict:
        path: /srv/strict
        reactions:
          ci-failed:
            retries: 5
          agent-stuck:
            auto: false
      loose:
        path: /srv/loose
"""


def test_top_level_override_keeps_the_builtin_fields():
    cfg = build(MERGE)
    loose = cfg.projects["loose"].reactions["ci-failed"]
    assert loose.retries == 3 and loose.priority == "warning"
    assert loose.action == "send-to-agent" and loose.auto is True
    # The built-in count escalateAfter (2) mirrors the built-in retries; setting retries alone lifts it.
    assert loose.escalate_count is None and loose.limit == 3
    stuck = cfg.projects["loose"].reactions["agent-stuck"]
    assert stuck.threshold == 900 and stuck.action == "notify" and stuck.priority == "urgent"


def test_project_override_beats_top_level_field_by_field():
    cfg = build(MERGE)
    strict = cfg.projects["strict"].reactions
    assert strict["ci-failed"].retries == 5  # project
    assert strict["ci-failed"].priority == "warning"  # top level
    assert strict["ci-failed"].action == "send-to-agent"  # built-in
    assert strict["agent-stuck"].auto is False and strict["agent-stuck"].threshold == 900
    # the other project is untouched by strict's overrides
    assert cfg.projects["loose"].reactions["ci-failed"].retries == 3
    assert cfg.projects["loose"].reactions["agent-stuck"].auto is True


def test_every_project_has_every_builtin_reaction_with_spec_defaults():
    cfg = build("projects:\n  app:\n    path: /a\n")
    got = cfg.projects["app"].reactions
    assert set(got) == set(reactions.BUILTIN)
    assert got["ci-failed"].limit == 2
    assert got["changes-requested"].escalate_seconds == 1800
    assert got["merge-conflicts"].escalate_seconds == 900
    assert got["approved-and-green"].auto is False and got["approved-and-green"].priority == "action"
    assert got["agent-idle"].threshold == 300 and got["agent-idle"].retries == 2
    assert got["agent-stuck"].threshold == 600 and got["agent-stuck"].priority == "urgent"
    assert got["all-complete"].include_summary is True and got["all-complete"].priority == "info"


def test_merge_layers_does_not_modify_its_inputs():
    top = {"ci-failed": {"retries": 3}}
    merged = reactions.merge_layers(reactions.BUILTIN, top, None, {"ci-failed": None})
    assert merged["ci-failed"]["retries"] == 3 and merged["ci-failed"]["action"] == "send-to-agent"
    assert reactions.BUILTIN["ci-failed"]["retries"] == 2 and top == {"ci-failed": {"retries": 3}}


def test_escalate_after_count_and_duration():
    cfg = build("""
        reactions:
          ci-failed:
            retries: 5
            escalateAfter: 1h
          changes-requested:
            escalateAfter: 1
        projects:
          app:
            path: /a
    """)
    r = cfg.projects["app"].reactions
    assert r["ci-failed"].escalate_seconds == 3600 and r["ci-failed"].escalate_count is None
    assert r["ci-failed"].limit == 5
    assert r["changes-requested"].escalate_count == 1 and r["changes-requested"].escalate_seconds is None


# -------------------------------------------------------------------------------------- other settings

def test_top_level_settings_and_defaults(tmp_path):
    cfg = build("projects:\n  app:\n    path: ./app\n", folder=tmp_path)
    assert (cfg.port, cfg.host, cfg.poll_interval, cfg.ready_threshold) == (3000, "127.0.0.1", 30, 300)
    assert cfg.auto_cleanup_on_merge is True and cfg.merge_cleanup_idle_grace == 300
    project = cfg.projects["app"]
    assert project.path == (tmp_path / "app").resolve()  # relative to the config file's folder
    assert (project.runtime, project.agent, project.workspace) == ("tmux", "claude-code", "worktree")
    assert project.default_branch == "main" and project.name == "app"
    assert project.tracker == {"plugin": "local"} and project.scm == {"plugin": "local"}
    cfg = build("projects:\n  app:\n    path: ~/x\n    repo: o/r\n")
    assert cfg.projects["app"].path == Path.home() / "x"
    assert cfg.projects["app"].scm == {"plugin": "github"}


def test_ready_threshold_forms():
    assert build("readyThreshold: 2m\nprojects:\n  a:\n    path: /a\n").ready_threshold == 120
    assert build("readyThresholdMs: 300000\nprojects:\n  a:\n    path: /a\n").ready_threshold == 300


def test_notifier_routing_falls_back_and_never_goes_nowhere():
    cfg = build("""
        defaults:
          notifiers: [desktop]
        notifiers:
          slack:
            plugin: slack
            webhook: https://hooks.slack.com/services/T1/B1/X1
        notificationRouting:
          urgent: [desktop, slack, desktop]
          info: []
        projects:
          a:
            path: /a
    """)
    assert cfg.notifier_names("urgent") == ["desktop", "slack"]  # duplicates are sent once
    assert cfg.notifier_names("action") == ["desktop"]  # no route: defaults.notifiers
    assert cfg.notifier_names("info") == ["log"]  # `info: []`: not notified, but logged
    assert build("projects:\n  a:\n    path: /a\n").notifier_names("urgent") == ["log"]


def test_project_lookup_with_did_you_mean():
    cfg = build("projects:\n  backend:\n    path: /b\n  frontend:\n    path: /f\n")
    assert cfg.project("backend").id == "backend"
    with pytest.raises(AoError, match="did you mean 'backend'"):
        cfg.project("backnd")
    with pytest.raises(AoError, match="several projects"):
        cfg.project(None)
    assert build("projects:\n  only:\n    path: /o\n").project(None).id == "only"


# -------------------------------------------------------------------------------------------- durations

@pytest.mark.parametrize("text, seconds", [
    ("45s", 45), ("10m", 600), ("1h", 3600), ("1h30m", 5400), ("2d", 172800), ("90", 90), (90, 90), (0, 0),
    ("1d2h3m4s", 93784),
])
def test_valid_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("value", ["10 minutes", "1x", "-5", -5, "", "m", "1.5h", "1m1h", True, False, None, 1.5, []])
def test_invalid_durations(value):
    with pytest.raises(DurationError):
        parse_duration(value)


def test_format_duration():
    assert [format_duration(s) for s in (0, 45, 5400, 90061)] == ["0s", "45s", "1h30m", "1d1h1m1s"]


# --------------------------------------------------------------------------------------------- prefixes

@pytest.mark.parametrize("name, prefix", [
    ("app", "app"), ("API", "api"), ("Docs", "docs"), ("ab", "ab"),  # <= 4 chars: itself, lowercased
    ("MyApp", "ma"), ("AgentOrchestrator", "ao"), ("My-Cool-App", "mca"),  # several capitals
    ("my-app", "ma"), ("agent_orchestrator", "ao"), ("payment-service", "ps"), ("a--b__c", "abc"),  # initials
    ("frontend", "fro"), ("Backend", "bac"), ("integrations", "int"),  # else the first three
])
def test_derive_prefix(name, prefix):
    assert derive_prefix(name) == prefix


def test_session_prefix_comes_from_the_path_basename_or_is_set():
    cfg = build("""
        projects:
          a:
            path: /srv/payment-service
          b:
            path: /srv/other/payment-service
            sessionPrefix: pay
    """)
    assert cfg.projects["a"].session_prefix == "ps" and cfg.projects["b"].session_prefix == "pay"


def test_duplicate_prefix_is_an_error_that_suggests_a_fix():
    [problem] = problems("""
        projects:
          one:
            path: /srv/a/my-app
          two:
            path: /srv/b/my-app
    """)
    assert (problem.line, problem.col, problem.path) == (4, 3, "projects.two")
    assert "'ma'" in problem.message and "'one'" in problem.message and "sessionPrefix: ma2" in problem.message


# -------------------------------------------------------------------------------------------------- CLI

@pytest.fixture
def secret_config(tmp_path):
    path = tmp_path / "agent-orchestrator.yaml"
    path.write_text(textwrap.dedent("""\
        notifiers:
          slack:
            plugin: slack
            webhook: ${SLACK_WEBHOOK_URL}
        notificationRouting:
          urgent: [slack]
        projects:
          app:
            path: ./app
            agentConfig:
              command: run --token ${SLACK_WEBHOOK_URL}
            reactions:
              ci-failed:
                message: "see ${SLACK_WEBHOOK_URL} for {{ pr_url }}"
        """))
    return path


@pytest.mark.parametrize("json_flag", [[], ["--json"]])
def test_cli_show_redacts_values_from_the_environment(secret_config, tmp_path, json_flag):
    proc = run_ao("config", "show", "--config", str(secret_config), *json_flag,
                  env={"SLACK_WEBHOOK_URL": SECRET}, home=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert SECRET not in proc.stdout and "s3cr3t" not in proc.stdout + proc.stderr
    assert config.REDACTED in proc.stdout
    if json_flag:
        data = json.loads(proc.stdout)
        assert data["notifiers"]["slack"]["webhook"] == config.REDACTED
        assert data["projects"]["app"]["reactions"]["ci-failed"]["retries"] == 2


def test_effective_scrubs_env_values_from_derived_fields():
    cfg = build("""
        host: ${H}
        projects:
          app:
            path: /a
            name: ${N}
            reactions:
              ci-failed:
                message: "token ${T} {{ pr_url }}"
    """, env={"H": "10.1.2.3", "N": "secret-name", "T": "tok-123456"})
    shown = json.dumps(config.effective(cfg))
    for value in ("10.1.2.3", "secret-name", "tok-123456"):
        assert value not in shown
    assert "tok-123456" in json.dumps(config.effective(cfg, redact=False))


def test_show_one_project_with_merged_reactions(tmp_path):
    cfg = config.load(ROOT / "examples" / "per-project-overrides.yaml", env={})
    shown = config.effective(cfg, "payment-service")
    assert list(shown["projects"]) == ["payment-service"]
    ci = shown["projects"]["payment-service"]["reactions"]["ci-failed"]
    assert ci == {"auto": False, "action": "notify", "priority": "urgent", "retries": 3}
    with pytest.raises(AoError, match="did you mean 'frontend'"):
        config.effective(cfg, "frontnd")


def _repo(path: Path, branch: str = "main", origin: bool = True) -> Path:
    """A git repository with one commit, and (with ``origin``) a bare origin that has ``branch``."""
    ident = ["-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", "init", "-q", "-b", branch, str(path)], check=True)
    subprocess.run(["git", *ident, "-C", str(path), "commit", "-q", "--allow-empty", "-m", "i"], check=True)
    if origin:
        bare = path.parent / f"{path.name}-origin.git"
        subprocess.run(["git", "init", "-q", "--bare", "-b", branch, str(bare)], check=True)
        subprocess.run(["git", "-C", str(path), "remote", "add", "origin", str(bare)], check=True)
        subprocess.run(["git", "-C", str(path), "push", "-q", "-u", "origin", branch], check=True,
                       capture_output=True)
        subprocess.run(["git", "-C", str(path), "remote", "set-head", "origin", "--auto"], check=True,
                       capture_output=True)
    return path


def test_cli_init_writes_a_valid_config_at_the_repository_top_and_refuses_to_overwrite(tmp_path):
    folder = _repo(tmp_path / "my-repo", branch="master")
    (folder / "src" / "deep").mkdir(parents=True)
    proc = run_ao("config", "init", cwd=folder / "src" / "deep", home=tmp_path)  # from a subfolder
    assert proc.returncode == 0, proc.stderr
    written = folder / "agent-orchestrator.yaml"
    assert not (folder / "src" / "deep" / "agent-orchestrator.yaml").exists()
    cfg = config.load(written, env={})
    project = cfg.projects["my-repo"]
    assert project.path == folder.resolve() and project.default_branch == "master"  # not main: detected
    assert project.scm["plugin"] == "local" and "default branch: master (origin's HEAD)" in proc.stdout
    before = written.read_text()
    proc = run_ao("config", "init", cwd=folder, home=tmp_path)
    assert proc.returncode == 1 and "already exists" in proc.stderr
    assert written.read_text() == before
    check = run_ao("config", "validate", cwd=folder, home=tmp_path, env={"PATH": _agent_path(tmp_path)})
    assert check.returncode == 0, check.stderr
    assert "folders, origins and agents checked here" in check.stdout
    proc = run_ao("config", "init", "--force", cwd=folder, home=tmp_path)
    assert proc.returncode == 0


def _agent_path(tmp_path: Path) -> str:
    """A PATH with a fake `claude` on it (init picks an installed agent; validate checks it is there)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    fake = bin_dir / "claude"
    fake.write_text("#!/bin/sh\necho '2.1.197 (Claude Code)'\n")
    fake.chmod(0o755)
    return f"{bin_dir}:/usr/bin:/bin"


def _git_only_path(tmp_path: Path) -> str:
    """A PATH with git and nothing else (no agent CLI installed)."""
    import shutil

    bin_dir = tmp_path / "git-only"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "git").symlink_to(shutil.which("git"))
    return str(bin_dir)


def test_cli_init_refuses_a_folder_that_is_not_a_repository(tmp_path):
    folder = tmp_path / "plain"
    folder.mkdir()
    proc = run_ao("config", "init", cwd=folder, home=tmp_path)
    assert proc.returncode == 1 and "not in a git repository" in proc.stderr and "git init" in proc.stderr
    assert not (folder / "agent-orchestrator.yaml").exists()


def test_cli_init_says_what_it_found_origin_github_and_agents(tmp_path):
    folder = _repo(tmp_path / "gh-app", origin=False)
    subprocess.run(["git", "-C", str(folder), "remote", "add", "origin", "git@github.com:acme/gh-app.git"], check=True)
    proc = run_ao("config", "init", cwd=folder, home=tmp_path, env={"PATH": _git_only_path(tmp_path)})
    assert proc.returncode == 0, proc.stderr
    cfg = config.load(folder / "agent-orchestrator.yaml", env={})
    assert cfg.projects["gh-app"].repo == "acme/gh-app" and cfg.projects["gh-app"].scm["plugin"] == "github"
    assert "none of claude-code, codex, aider or opencode is installed" in proc.stdout
    no_origin = _repo(tmp_path / "lonely", origin=False)
    proc = run_ao("config", "init", cwd=no_origin, home=tmp_path, env={"PATH": _agent_path(tmp_path)})
    assert proc.returncode == 0 and "origin: none!" in proc.stdout and "agent: claude-code" in proc.stdout
    check = run_ao("config", "validate", cwd=no_origin, home=tmp_path, env={"PATH": _agent_path(tmp_path)})
    assert check.returncode == 1 and "has no `origin` remote" in check.stderr and ":" in check.stderr.split()[0]


def test_cli_init_to_a_path(tmp_path):
    repo = _repo(tmp_path / "app")
    target = tmp_path / "sub" / "dir" / "ao.yaml"
    proc = run_ao("config", "init", str(target), "--repo", str(repo), cwd=tmp_path, home=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert config.load(target, env={}).projects["app"].path == repo.resolve()


def test_cli_validate_checks_paths_repository_tops_and_agents(tmp_path):
    repo = _repo(tmp_path / "app")
    (repo / "sub").mkdir()
    cfg = tmp_path / "ao.yaml"
    cfg.write_text(f"projects:\n  gone:\n    path: {tmp_path / 'nowhere'}\n  sub:\n    path: {repo / 'sub'}\n"
                   f"  top:\n    path: {repo}\n    agent: codex\n  branch:\n    path: {repo}\n"
                   "    sessionPrefix: br\n    defaultBranch: trunk\n")
    proc = run_ao("config", "validate", str(cfg), home=tmp_path, env={"PATH": _agent_path(tmp_path)})
    assert proc.returncode == 1
    err = proc.stderr
    assert f"{cfg}:3:11: {tmp_path / 'nowhere'} does not exist" in err
    assert f"is inside the repository {repo.resolve()}, not its top; set `path: {repo.resolve()}`" in err
    assert "agent 'codex' needs `codex`, which is not installed here" in err
    assert "origin (" in err and "has no branch 'trunk'" in err
    assert run_ao("config", "validate", "--file-only", str(cfg), home=tmp_path).returncode == 0


def test_cli_schema_prints_a_valid_json_schema(tmp_path):
    import jsonschema

    proc = run_ao("config", "schema", cwd=tmp_path, home=tmp_path)
    assert proc.returncode == 0
    schema = json.loads(proc.stdout)
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["required"] == ["projects"]


def test_cli_exit_codes(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text("projects:\n  app:\n    path: /srv/app\n")
    bad = tmp_path / "bad.yaml"
    bad.write_text("projects:\n  app:\n    path: /srv/app\n    agent: claude\n")
    ok = run_ao("config", "validate", "--file-only", str(good), home=tmp_path)
    assert ok.returncode == 0 and "ok (1 project" in ok.stdout
    assert run_ao("--config", str(good), "config", "validate", "--file-only", home=tmp_path).returncode == 0
    assert run_ao("config", "show", "-c", str(good), home=tmp_path).returncode == 0
    invalid = run_ao("config", "validate", str(bad), home=tmp_path)
    assert invalid.returncode == 1
    assert f"{bad}:4:12: 'claude' is not one of" in invalid.stderr
    assert "(did you mean 'claude-code'?) (at projects.app.agent)" in invalid.stderr
    assert run_ao("config", "validate", str(tmp_path / "missing.yaml"), home=tmp_path).returncode == 1
    assert run_ao("config", "validate", "--no-such-option", home=tmp_path).returncode == 2
    assert run_ao("--no-such-option", home=tmp_path).returncode == 2
    assert run_ao("config", "no-such-command", home=tmp_path).returncode == 2


def test_cli_version(tmp_path):
    proc = run_ao("--version", home=tmp_path)
    assert proc.returncode == 0 and proc.stdout.strip() == f"ao {ao.__version__}"


# --------------------------------------------------------------------------------------------- examples

def test_there_are_examples():
    names = {p.name for p in EXAMPLES}
    assert {"simple-github.yaml", "multi-project.yaml", "auto-merge.yaml", "per-project-overrides.yaml",
            "production.yaml", "local-demo.yaml"} <= names


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_example_validates(example, tmp_path):
    text = example.read_text()
    assert text.startswith("$schema: ../schemas/config.schema.json\n# ")  # schema hint, then a header comment
    assert (example.parent / "../schemas/config.schema.json").resolve().is_file()
    config.load(example, env={})
    proc = run_ao("config", "validate", "--file-only", str(example), home=tmp_path)
    assert proc.returncode == 0, proc.stderr


def test_examples_say_what_they_show():
    load = lambda name: config.load(ROOT / "examples" / name, env={})  # noqa: E731
    overrides = load("per-project-overrides.yaml").projects
    assert overrides["frontend"].reactions["approved-and-green"].action == "auto-merge"
    assert overrides["frontend"].reactions["approved-and-green"].auto is True
    pay = overrides["payment-service"].reactions["ci-failed"]
    assert (pay.auto, pay.action, pay.priority) == (False, "notify", "urgent")
    multi = load("multi-project.yaml")
    assert len(multi.projects) >= 2 and multi.notifier_names("urgent") == ["desktop", "slack"]
    assert multi.notifiers["slack"]["webhook"].startswith("https://hooks.slack.com/")
    demo = load("local-demo.yaml").projects["demo"]
    assert demo.agent == "command" and demo.agent_config["promptDelivery"] == "send"
    assert demo.scm == {"plugin": "local", "ci": "python -m pytest -q", "mergeMethod": "merge"}
    assert load("auto-merge.yaml").projects["my-app"].reactions["approved-and-green"].action == "auto-merge"
    prod = load("production.yaml").projects["my-app"].reactions
    assert prod["agent-stuck"].threshold == 720 and prod["ci-failed"].limit == 3


def test_a_config_that_validated_once_skips_the_schema_next_time_and_errors_are_never_cached(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text("projects:\n  app:\n    path: /srv/app\n")
    probe = ("import sys; from ao import config\n"
             "try:\n    config.load(sys.argv[1]); print('ok', 'jsonschema' in sys.modules)\n"
             "except Exception as e:\n    print('error', 'jsonschema' in sys.modules)\n")
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache"), "HOME": str(tmp_path)}

    def load(path: Path) -> str:
        return subprocess.run([sys.executable, "-c", probe, str(path)], env=env, capture_output=True,
                              text=True).stdout.strip()

    assert load(good) == "ok True"     # validated with jsonschema, verdict remembered
    assert load(good) == "ok False"    # same data: jsonschema not even imported
    good.write_text("projects:\n  app:\n    path: /srv/app\n    agent: claude\n")
    assert load(good) == "error True"  # changed and invalid: validated, and reported
    assert load(good) == "error True"  # an invalid verdict is never remembered
