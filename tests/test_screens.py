"""Every captured screen of the real agent CLIs (tests/data/agent-screens/, see its README) is classified as a
human reads it (its ``expected.tsv``): dialogs, menus and login screens wait for a human, usage limits are
blocked, normal screens are neither. The screens are part of the repository: if they are missing, the tests
fail rather than skip."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from ao import activity
from ao.plugins import agent
from ao.plugins.agent import Observation

SCREENS = Path(__file__).resolve().parent / "data" / "agent-screens"
AGENTS = {"claude": "claude-code", "codex": "codex", "opencode": "opencode", "aider": "aider"}
T0 = 1_700_000_000.0


def rows() -> list[tuple[str, str, str]]:
    if not (SCREENS / "expected.tsv").is_file():
        return []  # test_the_screens_are_there fails
    with open(SCREENS / "expected.tsv", encoding="utf-8") as f:
        return [(r["file"], r["agent"], r["expected"]) for r in csv.DictReader(f, delimiter="\t")]


def classify(name: str, pane: str, tmp_path: Path, *, quiet: bool, alive: bool = True) -> str:
    """The activity the agent's plugin reads from this screen alone (no session files, no server)."""
    plugin = {"claude-code": lambda: agent.get("claude-code", config_dir=tmp_path / "claude"),
              "codex": lambda: agent.get("codex", home_dir=tmp_path / "codex")}.get(name, lambda: agent.get(name))()
    # quiet: the same screen seen 1000 s ago and not changed since; fresh: it just appeared
    memo = {"pane_hash": activity.pane_hash(pane), "last_activity_at": T0} if quiet else {}
    now = T0 + 1000 if quiet else T0 + 5
    obs = Observation(now=now, alive=alive, workspace=tmp_path / "ws", started_at=T0, ready_threshold=300,
                      pane=pane, memo=memo, run_dir=tmp_path / "run")
    return plugin.activity(obs).state


def test_the_screens_are_there():
    assert len(rows()) >= 50, f"the captured screens are missing from {SCREENS}"


@pytest.mark.parametrize("file, name, expected", rows(), ids=lambda v: v)
def test_captured_screen(file, name, expected, tmp_path):
    pane = (SCREENS / file).read_text(encoding="utf-8")
    plugin = AGENTS[name]
    if expected == "exited":  # the runtime reports the pane dead; the screen shows the CLI's last words
        assert classify(plugin, pane, tmp_path, quiet=True, alive=False) == "exited"
        live = (classify(plugin, pane, tmp_path, quiet=True), classify(plugin, pane, tmp_path, quiet=False))
        if "\nPane is dead (" in pane:  # tmux's remain-on-exit line: exited even if the runtime missed it
            assert live == ("exited", "exited")
        else:  # the last words before the pane closes: never a screen to type a message into
            assert not {"ready", "idle"} & set(live), live
        return
    quiet = classify(plugin, pane, tmp_path, quiet=True)
    fresh = classify(plugin, pane, tmp_path, quiet=False)
    if expected == "waiting_input":
        assert (quiet, fresh) == ("waiting_input", "waiting_input")
    elif expected == "blocked":
        assert (quiet, fresh) == ("blocked", "blocked")
    elif expected == "not_waiting":
        assert quiet not in ("waiting_input", "blocked") and fresh not in ("waiting_input", "blocked")
    else:  # ambiguous: a resumed session replays an old limit message above a ready input box
        assert expected == "ambiguous" and quiet in ("blocked", "ready", "idle")


def test_every_screen_is_covered():
    """The folder's screens and expected.tsv agree (a new capture without a verdict would go untested)."""
    listed = {file for file, _, _ in rows()}
    captured = {p.name for p in SCREENS.glob("*.txt") if not p.name.startswith("help-")}
    assert captured == listed
    assert len(listed) >= 50
