"""Secrets stay with ao (issue 13): agents, postCreate and CI commands get an allowlisted environment, and no
error message prints a value that came from the environment."""

from __future__ import annotations

import contextlib
import os
import subprocess
import textwrap
from pathlib import Path

import pytest
from sessionkit import git, wait_for

from ao.environment import agent_environment, allowed_environment, ci_environment
from ao.sessions import SpawnRequest

SECRET = "s3cret-TOKEN-value-1234"
SECRET_NAMES = ("AO_TEST_WEBHOOK_SECRET", "GITHUB_TOKEN", "SLACK_WEBHOOK_URL", "SMTP_PASSWORD")


@pytest.fixture
def secret_env(aoenv, monkeypatch):
    for name in SECRET_NAMES:
        monkeypatch.setenv(name, f"{SECRET}-{name}")
    monkeypatch.setenv("AO_TEST_PASSED", "passed-on-purpose")
    return aoenv


def _env_of(path: Path) -> dict[str, str]:
    text = wait_for(lambda: path.exists() and path.read_text().endswith("END\n") and path.read_text(),
                    what=f"the environment dump {path.name}")
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


@pytest.mark.parametrize("runtime", ["tmux", "process"])
def test_an_agent_gets_the_allowlist_and_passEnv_but_no_secret(secret_env, runtime, tmp_path):
    env = secret_env
    env.write_config(runtime=runtime, passEnv=["AO_TEST_PASSED"], postCreate=["env > ../postcreate-env.txt; echo END >> ../postcreate-env.txt"])
    if runtime == "tmux":  # a tmux server started by someone holding secrets: its global environment has them
        subprocess.run(["tmux", "-L", env.socket, "new-session", "-d", "-s", "users-own", "sleep 600"],
                       env={**os.environ, "AO_TEST_SERVER_SECRET": SECRET}, check=True)
    manager = env.manager()
    s = manager.spawn(SpawnRequest(project="app", target="12"))
    wait_for(lambda: env.received(s.id), what="the prompt")
    dump = tmp_path / f"agent-env-{runtime}.txt"
    manager.send(s.id, f"!sh env > {dump}; echo END >> {dump}")
    seen = _env_of(dump)
    try:
        assert seen["AO_SESSION"] == s.id and seen["AO_TEST_PASSED"] == "passed-on-purpose"
        assert seen["PATH"] and seen["HOME"] == os.environ["HOME"]
        assert SECRET not in dump.read_text()
        assert not set(SECRET_NAMES) & set(seen) and "AO_TEST_SERVER_SECRET" not in seen
        post = _env_of(Path(s.workspace).parent / "postcreate-env.txt")
        assert post["AO_SESSION"] == s.id and SECRET not in str(post)
        if runtime == "tmux":  # values reach the agent through a private file, never a command line (`ps`)
            started = subprocess.run(["tmux", "-L", env.socket, "list-panes", "-a", "-F", "#{pane_start_command}"],
                                     capture_output=True, text=True, check=True).stdout
            assert "launch.sh" in started and "passed-on-purpose" not in started and "AO_SESSION=" not in started
            assert not list(manager.run_dir("app", s.id).glob(".agent-env"))  # read once, then removed
    finally:
        manager.kill(s.id)


def test_the_local_ci_command_gets_no_secret(secret_env, tmp_path):
    env = secret_env
    dump = tmp_path / "ci-env.txt"
    env.write_config(scm={"plugin": "local", "ci": f"env > {dump}; echo END >> {dump}"}, passEnv=["AO_TEST_PASSED"])
    git("checkout", "-q", "-b", "feat/x", cwd=env.project)
    git("commit", "-q", "--allow-empty", "-m", "x", cwd=env.project)
    git("push", "-q", "origin", "feat/x", cwd=env.project)
    from ao.plugins.scm import for_project

    cfg = env.load()
    scm = for_project(cfg, cfg.projects["app"])
    wait_for(lambda: scm.view("feat/x").ci == "passing", timeout=20, what="CI")
    seen = _env_of(dump)
    assert seen["CI"] == "true" and seen["AO_CI_BRANCH"] == "feat/x" and seen["AO_TEST_PASSED"] == "passed-on-purpose"
    assert SECRET not in dump.read_text() and not set(SECRET_NAMES) & set(seen)


def test_git_in_an_agents_workspace_runs_no_planted_command_and_gets_no_secret(secret_env, tmp_path):
    """A clone workspace's config is the agent's: ao's git there runs no fsmonitor command or hook it names,
    and what git still runs (a filter driver or an alias) gets the agent environment; in the user's own
    checkout ao's git keeps ao's."""
    from ao import git as ao_git

    git("init", "-q", cwd=tmp_path)
    hook = tmp_path / "hook.sh"
    hook.write_text(f"#!/bin/sh\necho \"$0\" >> {tmp_path}/ran\n")
    hook.chmod(0o755)
    (tmp_path / "hooks").mkdir()
    (tmp_path / "hooks" / "post-index-change").symlink_to(hook)
    for name in ("a.txt", "b.txt"):  # in the index, then changed: status must read them through their filters
        (tmp_path / name).write_text("committed\n")
    git("add", "a.txt", "b.txt", cwd=tmp_path)
    for name in ("a.txt", "b.txt"):  # same size, other time: only the content (its filter's output) can tell
        (tmp_path / name).write_text("Committed\n")
        os.utime(tmp_path / name, (1_600_000_000, 1_600_000_000))
    git("config", "core.fsmonitor", str(hook), cwd=tmp_path)
    git("config", "core.hooksPath", str(tmp_path / "hooks"), cwd=tmp_path)
    (tmp_path / "more.config").write_text(f"[filter \"Runner.v2\"]\n\tprocess = {hook}\n")
    git("config", "include.path", str(tmp_path / "more.config"), cwd=tmp_path)  # a driver in an included file
    git("config", "filter.spy.clean", str(hook), cwd=tmp_path)
    (tmp_path / ".gitattributes").write_text("a.txt filter=spy\nb.txt filter=Runner.v2\n")
    index = (tmp_path / ".git" / "index").read_bytes()
    with contextlib.suppress(ao_git.GitError):  # the "process" plant speaks no filter protocol: git may fail
        ao_git.run(["status", "--porcelain"], tmp_path)
    assert (tmp_path / "ran").exists()  # the plants work: the user's own git runs them
    (tmp_path / "ran").unlink()
    (tmp_path / ".git" / "index").write_bytes(index)  # as it was (git status may have refreshed it)
    with ao_git.private_git_dir(tmp_path) as env:  # how ao reads a clone: its config is never read
        assert ao_git.run(["status", "--porcelain"], tmp_path, env=env, untrusted=True).count("M ") == 2
    assert not (tmp_path / "ran").exists()
    show_env = ["-c", "alias.show-env=!env", "show-env"]
    seen = ao_git.run(show_env, tmp_path, untrusted=True)
    assert "PATH=" in seen and SECRET not in seen
    assert SECRET in ao_git.run(show_env, tmp_path)


def test_environment_builders():
    ao_env = {"PATH": "/bin", "HOME": "/h", "LC_ALL": "C", "GITHUB_TOKEN": "x", "MY_A": "1", "MY_B": "2",
              "SSH_AUTH_SOCK": "/s", "OTHER": "o"}
    assert allowed_environment((), ao_env) == {"PATH": "/bin", "HOME": "/h", "LC_ALL": "C", "SSH_AUTH_SOCK": "/s"}
    assert set(allowed_environment(("MY_*", "OTHER"), ao_env)) == {"PATH", "HOME", "LC_ALL", "SSH_AUTH_SOCK", "MY_A",
                                                                     "MY_B", "OTHER"}
    ci = ci_environment((), {"AO_CI_SHA": "abc"}, ao_env)
    assert ci["CI"] == "true" and ci["AO_CI_SHA"] == "abc" and "SSH_AUTH_SOCK" not in ci and "GITHUB_TOKEN" not in ci

    class Cfg:
        data = {"passEnv": ["MY_A"]}

    class Proj:
        raw = {"passEnv": ["OTHER"]}

    agent = agent_environment(Cfg(), Proj(), {"AO_SESSION": "app-1"}, ao_env)
    assert set(agent) == {"PATH", "HOME", "LC_ALL", "SSH_AUTH_SOCK", "MY_A", "OTHER", "AO_SESSION", "TERM"}


def test_config_errors_never_print_a_value_from_the_environment(aoenv, monkeypatch):
    monkeypatch.setenv("AO_TEST_HOOK_URL", "ftp://example.invalid/SECRET-TOKEN-1")
    monkeypatch.setenv("AO_TEST_PORT", "SECRET-TOKEN-2")
    aoenv.config.write_text(textwrap.dedent(f"""\
        port: ${{AO_TEST_PORT}}
        projects:
          app: {{path: {aoenv.project}}}
        notifiers:
          hook: {{plugin: webhook, url: "${{AO_TEST_HOOK_URL}}"}}
        """))
    run = aoenv.ao("config", "validate")
    assert run.returncode == 1
    assert "SECRET-TOKEN" not in run.stdout + run.stderr
    assert "port" in run.stdout + run.stderr and "url" in run.stdout + run.stderr


def test_ao_inside_an_agent_session_loads_a_config_whose_secrets_it_is_not_given(aoenv, monkeypatch):
    aoenv.config.write_text(textwrap.dedent(f"""\
        projects:
          app: {{path: {aoenv.project}}}
        notifiers:
          slack: {{plugin: slack, webhook: "${{AO_TEST_UNSET_SLACK}}"}}
        """))
    monkeypatch.delenv("AO_TEST_UNSET_SLACK", raising=False)
    run = aoenv.ao("config", "validate")
    assert run.returncode == 1 and "AO_TEST_UNSET_SLACK is not set" in run.stdout + run.stderr
    run = aoenv.ao("status", "--json", env={**aoenv.env, "AO_SESSION": "app-1"})
    assert run.returncode == 0, run.stderr
