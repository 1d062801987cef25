"""The short version of the crash-consistency harness (tests/stress/crash_harness.py; the long one is in the
README's figures): `ao start` killed at the riskiest journal and outbox steps and once at random, then
restarted. Nothing expected may be lost, and nothing may arrive twice (notifications: per Idempotency-Key)."""

from __future__ import annotations

import random
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "stress"))
import crash_harness  # noqa: E402

SHORT = ["cycle.decided", "journal.sending", "journal.sent", "outbox.delivered", "random"]


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
@pytest.mark.parametrize("kind", SHORT)
def test_ao_start_killed_loses_and_repeats_nothing(kind):
    trial = crash_harness.run_trial(1, kind, random.Random(13))
    assert trial.error == ""
    assert trial.kills >= (0 if kind == "random" else 1)
    assert trial.lost == 0 and trial.duplicated == 0, trial
    assert all(n <= 1 for n in trial.agent_messages.values()), trial  # no agent message typed twice
