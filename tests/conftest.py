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
