"""The tmux kill path, many times over (issue 13): killing the last session of a server races the server's own
exit, and tmux then answers "no current target" instead of "can't find session". That must read as "already
gone" for kill, probe and send alike; the suite's fixtures and `ao session kill` take this path every time."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from ao.plugins import runtime
from ao.plugins.runtime import LaunchSpec, SendError
from ao.plugins.runtime import tmux as tmux_mod

ROUNDS = 60


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_kill_probe_and_send_on_a_dying_server_never_fail_many_times(tmp_path):
    script = tmp_path / "sleeper.sh"
    script.write_text("#!/bin/sh\nexec sleep 60\n")
    script.chmod(0o755)
    failures = []
    for n in range(ROUNDS):
        socket = f"ao-killpath-{uuid.uuid4().hex[:8]}"
        rt = runtime.get("tmux", socket=socket)
        try:
            handle = rt.start(LaunchSpec(name=f"s{n}", cwd=tmp_path, script=script))
            for step in ("kill", "kill again", "kill unknown", "probe", "send"):
                try:
                    if step == "kill unknown":
                        rt.kill("never-existed")
                    elif step.startswith("kill"):
                        rt.kill(handle)
                    elif step == "probe":
                        assert not rt.probe([handle])[handle].alive
                    else:
                        with pytest.raises(SendError, match="gone|exited"):
                            rt.send(handle, "hello")
                except Exception as exc:  # collected: the figure is the point
                    failures.append(f"round {n}, {step}: {exc}")
        finally:
            subprocess.run(["tmux", "-L", socket, "kill-server"], capture_output=True, check=False)
            (Path(os.environ.get("TMUX_TMPDIR") or "/tmp") / f"tmux-{os.getuid()}" / socket).unlink(missing_ok=True)
    assert failures == []


def test_no_current_target_reads_as_gone():
    done = subprocess.CompletedProcess([], 1, "", "no current target\n")
    assert tmux_mod.TmuxRuntime._gone(done)
