"""Fixtures shared by several test modules."""

from __future__ import annotations

import signal

import pytest
from receiver import Receiver

# A shell starts a background job (`pytest &`, nohup, some CI runners) with SIGINT ignored, and every process a
# test starts would inherit that: the tests that press Ctrl-C on ao (exit 130) would wait for ever. A handler,
# unlike "ignore", is reset by exec, so the processes the tests start get the default Ctrl-C again.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture
def receiver():
    """Start strict HTTP receivers on 127.0.0.1 (``receiver()`` makes one); all are stopped afterwards."""
    made: list[Receiver] = []

    def make(routes=None) -> Receiver:
        r = Receiver(routes).start()
        made.append(r)
        return r

    yield make
    for r in made:
        r.release.set()
        r.stop()


@pytest.fixture
def aoenv(tmp_path, monkeypatch):
    """A real project (git with a bare origin), config and data dir; tmux on a private socket, killed after."""
    from sessionkit import kill_process_agents, kill_tmux_server, make_env

    env = make_env(tmp_path)
    for key, value in env.env.items():
        monkeypatch.setenv(key, value)
    try:
        yield env
    finally:
        kill_tmux_server(env.socket)
        kill_process_agents(env.data)


@pytest.fixture
def no_git_identity(monkeypatch, tmp_path):
    """ao's own git calls must work on a machine with no git identity and no config at all: hide the user's
    config, drop identity variables and make git refuse to guess one. (The helpers in gitrepo pass their own
    identity, so only ao runs without one.)"""
    empty = tmp_path / "empty-gitconfig"
    empty.write_text("")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(empty))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_CONFIG_COUNT", "1")
    monkeypatch.setenv("GIT_CONFIG_KEY_0", "user.useConfigOnly")
    monkeypatch.setenv("GIT_CONFIG_VALUE_0", "true")
    for var in ("GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL", "EMAIL"):
        monkeypatch.delenv(var, raising=False)
