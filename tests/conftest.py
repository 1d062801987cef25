"""Fixtures shared by several test modules."""

from __future__ import annotations

import pytest
from receiver import Receiver


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
    from sessionkit import make_env

    env = make_env(tmp_path)
    for key, value in env.env.items():
        monkeypatch.setenv(key, value)
    yield env
    env.tmux("kill-server")
    env.remove_socket()
