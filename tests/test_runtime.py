"""Runtimes (SPEC 5): the tmux runtime against a real tmux server (a private ``-L`` socket per test, killed
afterwards) and the process runtime against real processes, both driving ao/scripted_agent.py.

Nothing here sleeps to synchronise: every wait polls a condition with a deadline (``wait_for``). Delivery is
checked in the fake agent's --log: a message must arrive intact and exactly once, which is proven by sending
a second "sync" message and seeing the log hold exactly [message, sync].
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from sessionkit import wait_for

from ao.errors import AoError
from ao.plugins import runtime
from ao.plugins.runtime import LaunchSpec, SendError
from ao.plugins.runtime import tmux as tmux_mod

FAKE = Path(__file__).resolve().parent.parent / "ao" / "scripted_agent.py"

needs_tmux = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")


def read_log(log: Path) -> list[dict[str, Any]]:
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines() if line.strip()]


def texts(log: Path) -> list[str]:
    return [entry["text"] for entry in read_log(log)]


def script(tmp_path: Path, name: str, body: str) -> Path:
    path = tmp_path / f"{name}.sh"
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)
    return path


def agent_spec(tmp_path: Path, name: str = "agent", env: dict[str, str] | None = None,
               before: str = "") -> tuple[LaunchSpec, Path]:
    """A launch spec running the fake agent, and the agent's message log."""
    log = tmp_path / f"{name}.jsonl"
    body = f"{before}\nexec {sys.executable} {FAKE} --log {log} --name {name}"
    spec = LaunchSpec(name=name, cwd=tmp_path, script=script(tmp_path, name, body), env=env or {},
                      run_dir=tmp_path / f"run-{name}")
    return spec, log


def assert_exactly_once(rt: Any, handle: str, log: Path, expected: str) -> None:
    """``expected`` is the only message so far, intact; a later sync message proves no copy trails behind."""
    wait_for(lambda: read_log(log), what="the message in the agent log")
    rt.send(handle, "sync")
    wait_for(lambda: len(read_log(log)) >= 2, what="the sync message")
    assert texts(log) == [expected, "sync"]
    entry = read_log(log)[0]
    assert entry["n"] == 1 and entry["len"] == len(expected.encode())


# --- tmux -----------------------------------------------------------------------------------------------


@pytest.fixture
def tmux_rt():
    """A tmux runtime on a private server, killed at teardown."""
    socket = f"ao-test-{uuid.uuid4().hex[:10]}"
    rt = runtime.get("tmux", socket=socket)
    yield rt
    subprocess.run(["tmux", "-L", socket, "kill-server"], check=False, capture_output=True)
    # tmux leaves its socket file behind
    (Path(os.environ.get("TMUX_TMPDIR") or "/tmp") / f"tmux-{os.getuid()}" / socket).unlink(missing_ok=True)


def tmux(rt: tmux_mod.TmuxRuntime, *args: str) -> str:
    return subprocess.run(["tmux", "-L", rt.socket, *args], check=False, capture_output=True,
                          text=True).stdout


def start_agent(rt: Any, tmp_path: Path, name: str = "agent", **kw: Any) -> tuple[str, Path]:
    spec, log = agent_spec(tmp_path, name, **kw)
    handle = rt.start(spec)
    wait_for(lambda: "agent>" in rt.capture(handle), what="the agent prompt")
    return handle, log


@needs_tmux
def test_start_and_probe(tmux_rt, tmp_path):
    handle, _ = start_agent(tmux_rt, tmp_path, "ao-t1-app-1")
    assert handle == "ao-t1-app-1"
    probes = tmux_rt.probe([handle, "ao-t1-app-12", "missing"])
    p = probes[handle]
    assert p.alive and p.pid and os.path.exists(f"/proc/{p.pid}")
    assert p.last_output_at is not None and abs(p.last_output_at - time.time()) < 5
    assert not probes["missing"].alive and not probes["ao-t1-app-12"].alive
    # the pane is big and keeps a long history, and the placeholder window is gone
    info = tmux(tmux_rt, "list-windows", "-t", f"={handle}", "-F", "#{window_width}x#{window_height} #{history_limit}")
    assert info.split("\n")[0] == f"200x50 {tmux_mod.HISTORY}" and info.count("\n") == 1


@needs_tmux
def test_start_refuses_duplicates_and_bad_names(tmux_rt, tmp_path):
    spec = LaunchSpec(name="dup", cwd=tmp_path, script=script(tmp_path, "s", "exec sleep 60"))
    assert tmux_rt.start(spec) == "dup"
    with pytest.raises(AoError, match="already exists"):
        tmux_rt.start(spec)
    with pytest.raises(AoError, match="invalid tmux session name"):
        tmux_rt.start(LaunchSpec(name="a b;c", cwd=tmp_path, script=spec.script))
    with pytest.raises(AoError, match="does not exist"):
        tmux_rt.start(LaunchSpec(name="nowhere", cwd=tmp_path / "nope", script=spec.script))
    # '.' is a tmux target separator: tmux turns it into '_' and the handle says so
    assert tmux_rt.start(LaunchSpec(name="v1.2", cwd=tmp_path, script=spec.script)) == "v1_2"
    assert tmux_rt.probe(["v1_2"])["v1_2"].alive


@needs_tmux
def test_probe_many_sessions_in_one_call(tmux_rt, tmp_path, monkeypatch):
    sleeper = script(tmp_path, "sleeper", "exec sleep 60")
    handles = [tmux_rt.start(LaunchSpec(name=f"s-{i}", cwd=tmp_path, script=sleeper)) for i in range(20)]
    for h in handles[:3]:
        tmux_rt.kill(h)
    tmux(tmux_rt, "kill-session", "-t", f"={handles[3]}")  # killed behind ao's back

    calls: list[list[str]] = []
    real_run = subprocess.run

    def counting(argv, *a, **kw):
        calls.append(list(argv))
        return real_run(argv, *a, **kw)

    monkeypatch.setattr(subprocess, "run", counting)
    started = time.perf_counter()
    probes = tmux_rt.probe(handles + ["never-started"])
    elapsed = time.perf_counter() - started
    assert len(calls) == 1 and "list-panes" in calls[0]
    assert [probes[h].alive for h in handles] == [False] * 4 + [True] * 16
    assert not probes["never-started"].alive
    assert elapsed < 0.4


@needs_tmux
def test_killed_server_reads_as_dead_not_as_an_error(tmux_rt, tmp_path):
    sleeper = script(tmp_path, "sleeper", "exec sleep 60")
    a = tmux_rt.start(LaunchSpec(name="a", cwd=tmp_path, script=sleeper))
    b = tmux_rt.start(LaunchSpec(name="b", cwd=tmp_path, script=sleeper))
    assert all(p.alive for p in tmux_rt.probe([a, b]).values())
    tmux(tmux_rt, "kill-server")
    wait_for(lambda: not any(p.alive for p in tmux_rt.probe([a, b]).values()), what="both sessions dead")
    assert tmux_rt.capture(a) == ""
    tmux_rt.kill(a)  # no server: still fine


@needs_tmux
def test_env_reaches_the_agent(tmux_rt, tmp_path):
    env = {"AO_SESSION": "app-7", "FOO": "two words; and 'quotes'"}
    out = tmp_path / "env.txt"
    handle, _ = start_agent(tmux_rt, tmp_path, env=env,
                            before=f"printf '%s|%s' \"$AO_SESSION\" \"$FOO\" > {out}")
    assert out.read_text() == "app-7|two words; and 'quotes'"
    tmux_rt.send(handle, "!sh printf 'sh sees %s' \"$AO_SESSION\"")
    wait_for(lambda: "sh sees app-7" in tmux_rt.capture(handle), what="!sh output")


@needs_tmux
def test_short_message_is_typed(tmux_rt, tmp_path, monkeypatch):
    handle, log = start_agent(tmux_rt, tmp_path)
    calls: list[list[str]] = []
    real_run = subprocess.run
    monkeypatch.setattr(subprocess, "run", lambda argv, *a, **kw: calls.append(list(argv)) or real_run(argv, *a, **kw))
    started = time.perf_counter()
    tmux_rt.send(handle, "fix the failing test; then push")
    elapsed = time.perf_counter() - started
    monkeypatch.undo()
    assert any("send-keys" in c and "-l" in c and "fix the failing test; then push" in c for c in calls)
    assert not any("load-buffer" in c for c in calls)
    assert elapsed < 1.0
    assert_exactly_once(tmux_rt, handle, log, "fix the failing test; then push")


@needs_tmux
def test_multiline_message_arrives_once_as_one_paste(tmux_rt, tmp_path, monkeypatch):
    handle, log = start_agent(tmux_rt, tmp_path)
    text = "CI failed:\n\n```\nE   assert 1 == 2\n\tat line 3\n```\n  please fix it;"
    calls: list[list[str]] = []
    real_run = subprocess.run
    monkeypatch.setattr(subprocess, "run", lambda argv, *a, **kw: calls.append(list(argv)) or real_run(argv, *a, **kw))
    tmux_rt.send(handle, text)
    monkeypatch.undo()
    assert any("load-buffer" in c for c in calls) and any("paste-buffer" in c for c in calls)
    assert not any(text in arg for c in calls for arg in c)  # never on a command line
    assert tmux(tmux_rt, "list-buffers") == ""               # the named buffer was deleted
    assert_exactly_once(tmux_rt, handle, log, text)


@needs_tmux
@pytest.mark.parametrize("kind", ["one-line", "multi-line"])
def test_5kb_message_arrives_intact_once(tmux_rt, tmp_path, kind):
    handle, log = start_agent(tmux_rt, tmp_path)
    if kind == "one-line":
        text = "".join(chr(ord("a") + i % 26) for i in range(5000))
    else:
        text = "\n".join(f"{i:04d} " + "x" * 94 for i in range(50))  # 50 lines, ~5 KB
    assert len(text) >= 4999
    tmux_rt.send(handle, text)
    assert_exactly_once(tmux_rt, handle, log, text)


@needs_tmux
def test_control_characters_and_escapes_are_stripped(tmux_rt, tmp_path):
    handle, log = start_agent(tmux_rt, tmp_path)
    # includes an attempt to end the bracketed paste early and smuggle in an Enter
    tmux_rt.send(handle, "a\x1b[31mred\x1b[0m \x1b]0;title\x07b\x07c\x00d\re\x1b[201~\nnext\x1b[200~")
    wait_for(lambda: read_log(log), what="the message")
    tmux_rt.send(handle, "x\x1b[201~\x15y\x03z")
    wait_for(lambda: len(read_log(log)) >= 2, what="the second message")
    tmux_rt.send(handle, "sync")
    wait_for(lambda: len(read_log(log)) >= 3, what="sync")
    assert texts(log) == ["ared bcde\nnext", "xyz", "sync"]


@needs_tmux
def test_send_clears_what_was_typed_before(tmux_rt, tmp_path):
    handle, log = start_agent(tmux_rt, tmp_path)
    tmux(tmux_rt, "send-keys", "-t", f"={handle}:", "-l", "half-typed by a human")
    wait_for(lambda: "half-typed" in tmux_rt.capture(handle), what="the typed text")
    tmux_rt.send(handle, "the real message")
    assert_exactly_once(tmux_rt, handle, log, "the real message")


@needs_tmux
def test_send_to_missing_or_killed_session(tmux_rt, tmp_path):
    with pytest.raises(SendError, match="nope.*gone"):  # no server at all yet
        tmux_rt.send("nope", "hello")
    handle, _ = start_agent(tmux_rt, tmp_path)
    with pytest.raises(SendError, match="gone"):
        tmux_rt.send("nope", "hello")
    tmux_rt.kill(handle)
    tmux_rt.kill(handle)  # idempotent
    tmux_rt.kill("never-existed")
    assert not tmux_rt.probe([handle])[handle].alive
    with pytest.raises(SendError, match=handle):
        tmux_rt.send(handle, "hello")


@needs_tmux
@pytest.mark.parametrize("setup", ["stty -echo", ""])
def test_unconfirmed_delivery_raises_and_is_not_resent(tmux_rt, tmp_path, setup):
    # `sleep` never reads its input. With the tty's own echo on, the typed text shows up before Enter, but
    # Enter only moves the cursor, so the pane does not change after it: delivery is not confirmed.
    sleeper = script(tmp_path, "deaf", f"{setup}\necho ready\nexec sleep 60")
    handle = tmux_rt.start(LaunchSpec(name="deaf", cwd=tmp_path, script=sleeper))
    wait_for(lambda: "ready" in tmux_rt.capture(handle), what="ready")
    with pytest.raises(SendError, match="not confirmed"):
        tmux_rt.send(handle, "hello", confirm_timeout=0.4)
    assert tmux_rt.capture(handle).count("hello") == (0 if setup else 1)


@needs_tmux
def test_busy_agent_gets_the_message_once_after_an_unconfirmed_send(tmux_rt, tmp_path):
    handle, log = start_agent(tmux_rt, tmp_path)
    tmux_rt.send(handle, "!sleep 1.2")
    wait_for(lambda: "working" in tmux_rt.capture(handle), what="busy")
    with pytest.raises(SendError, match="not confirmed"):
        tmux_rt.send(handle, "line one\nline two", confirm_timeout=0.3)
    wait_for(lambda: len(read_log(log)) >= 2, what="the late message")
    tmux_rt.send(handle, "sync")
    wait_for(lambda: len(read_log(log)) >= 3, what="sync")
    assert texts(log) == ["!sleep 1.2", "line one\nline two", "sync"]


@needs_tmux
def test_agent_exit_is_seen_and_its_output_kept(tmux_rt, tmp_path):
    handle, _ = start_agent(tmux_rt, tmp_path)
    tmux_rt.send(handle, "!exit 3")
    wait_for(lambda: not tmux_rt.probe([handle])[handle].alive, what="the pane to die")
    screen = tmux_rt.capture(handle)
    assert "received 1: 7 bytes" in screen and "bye" in screen
    with pytest.raises(SendError, match="exited"):
        tmux_rt.send(handle, "hello")
    tmux_rt.kill(handle)
    assert tmux_rt.capture(handle) == ""


@needs_tmux
def test_capture_returns_the_last_lines(tmux_rt, tmp_path):
    handle, _ = start_agent(tmux_rt, tmp_path)
    tmux_rt.send(handle, "!sh seq 1 300")
    wait_for(lambda: "[exit 0]" in tmux_rt.capture(handle), what="seq output")
    assert tmux_rt.capture(handle, 5).split("\n") == ["298", "299", "300", "[exit 0]", "agent>"]
    assert "1\n2\n3\n" in tmux_rt.capture(handle, 400)  # the scrollback holds more than a screen


def test_tmux_missing(tmp_path, monkeypatch):
    message = "tmux is not installed (or not on PATH): install tmux, or set runtime: process"
    with pytest.raises(AoError) as e:
        runtime.get("tmux", tmux_bin=str(tmp_path / "no-tmux")).check()
    assert str(e.value) == message
    monkeypatch.setenv("PATH", str(tmp_path))
    rt = runtime.get("tmux", socket="ao-test-missing")
    with pytest.raises(AoError, match="tmux is not installed"):
        rt.check()
    with pytest.raises(AoError, match="tmux is not installed"):
        rt.probe(["x"])
    with pytest.raises(AoError, match="tmux is not installed"):
        rt.start(LaunchSpec(name="x", cwd=tmp_path, script=script(tmp_path, "s", "exit 0")))
    rt.kill("x")  # nothing to kill


def test_tmux_options_and_attach(monkeypatch):
    monkeypatch.setenv("AO_TMUX_SOCKET", "from-env")
    monkeypatch.delenv("TMUX", raising=False)
    assert runtime.get("tmux").attach_argv("s-1") == ["tmux", "-L", "from-env", "attach-session", "-t", "=s-1"]
    monkeypatch.delenv("AO_TMUX_SOCKET")
    assert runtime.get("tmux").attach_argv("s-1") == ["tmux", "attach-session", "-t", "=s-1"]
    monkeypatch.setenv("TMUX", "/tmp/tmux-0/default,123,0")
    assert runtime.get("tmux").attach_argv("s-1") == ["tmux", "switch-client", "-t", "=s-1"]
    assert runtime.get("tmux", socket="other").attach_argv("s-1")[:4] == ["env", "-u", "TMUX", "tmux"]
    with pytest.raises(AoError, match="unknown tmux runtime option"):
        runtime.get("tmux", sockett="x")


# --- process --------------------------------------------------------------------------------------------


@pytest.fixture
def proc_rt():
    rt = runtime.get("process", bracketed_paste=True, term_timeout=0.5)
    started: list[str] = []
    real_start = rt.start
    rt.start = lambda spec: started.append(real_start(spec)) or started[-1]  # type: ignore[method-assign]
    yield rt
    for handle in started:
        rt.kill(handle)


def test_process_start_send_probe_capture_kill(proc_rt, tmp_path):
    rt = proc_rt
    spec, log = agent_spec(tmp_path, env={"AO_SESSION": "p-1"})
    handle = rt.start(spec)
    pid = int(handle.split(":")[0])
    wait_for(lambda: "agent>" in rt.capture(handle), what="the banner")
    probe = rt.probe([handle])[handle]
    assert probe.alive and probe.pid == pid and probe.last_output_at
    with pytest.raises(AoError, match="cannot attach.*output.log"):
        rt.attach_argv(handle)

    rt.send(handle, "hello \x1b[1mworld\x1b[0m\x07")
    wait_for(lambda: read_log(log), what="hello")
    rt.send(handle, "two\nlines")  # bracketed_paste=True: one message
    rt.send(handle, "!sh printf '\\033[32mgreen %s\\n' \"$AO_SESSION\"")
    rt.send(handle, "x" * 5000)
    wait_for(lambda: len(read_log(log)) >= 4, what="four messages")
    wait_for(lambda: "received 4: 5000 bytes" in rt.capture(handle), what="the last reply")
    assert texts(log) == ["hello world", "two\nlines", "!sh printf '\\033[32mgreen %s\\n' \"$AO_SESSION\"", "x" * 5000]
    screen = rt.capture(handle, 50)
    assert "green p-1" in screen and "\x1b" not in screen
    assert rt.capture(handle, 2).split("\n") == ["agent> received 4: 5000 bytes", "agent>"]  # no echo on a pipe

    rt.kill(handle)
    assert not rt.probe([handle])[handle].alive
    wait_for(lambda: not os.path.exists(f"/proc/{pid}"), what="the child to be reaped (no zombie)")
    rt.kill(handle)  # idempotent
    with pytest.raises(SendError, match="exited"):
        rt.send(handle, "hello")
    assert "received 4" in rt.capture(handle)  # the log outlives the process


def test_process_lines_are_messages_without_bracketed_paste(tmp_path):
    rt = runtime.get("process")
    spec, log = agent_spec(tmp_path)
    handle = rt.start(spec)
    try:
        rt.send(handle, "one\ntwo\n")
        wait_for(lambda: len(read_log(log)) >= 2, what="two messages")
        assert texts(log) == ["one", "two"]
    finally:
        rt.kill(handle)


def test_process_pid_reuse_guard(proc_rt, tmp_path):
    rt = proc_rt
    spec = LaunchSpec(name="p", cwd=tmp_path, script=script(tmp_path, "s", "exec sleep 60"), run_dir=tmp_path / "r")
    handle = rt.start(spec)
    pid, start, run_dir = handle.split(":", 2)
    stale = f"{pid}:{int(start) + 1}:{run_dir}"  # same pid, another process's start time
    assert rt.probe([handle])[handle].alive
    assert not rt.probe([stale])[stale].alive
    with pytest.raises(SendError):
        rt.send(stale, "hello")
    rt.kill(stale)  # must not touch the process that now owns the pid
    assert rt.probe([handle])[handle].alive
    assert not rt.probe(["garbage"])["garbage"].alive


def live_in_group(pgid: int) -> list[int]:
    """Live (not zombie) processes in a process group: an orphaned zombie waits for PID 1, not for us."""
    found = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()
        if fields[2] == str(pgid) and fields[0] not in "ZX":
            found.append(int(entry))
    return found


def test_process_kill_escalates_to_sigkill(proc_rt, tmp_path):
    rt = proc_rt
    body = "trap '' TERM\necho ready\nsleep 60 &\nexec sleep 60"  # the group ignores SIGTERM, and has a child
    handle = rt.start(LaunchSpec(name="p", cwd=tmp_path, script=script(tmp_path, "s", body), run_dir=tmp_path / "r"))
    wait_for(lambda: "ready" in rt.capture(handle), what="ready")
    pid = int(handle.split(":")[0])
    started = time.monotonic()
    rt.kill(handle)
    assert time.monotonic() - started < 3
    assert not rt.probe([handle])[handle].alive
    wait_for(lambda: not live_in_group(pid), what="the whole group to be gone")


def test_process_agent_exit_and_directives(proc_rt, tmp_path):
    rt = proc_rt
    spec, log = agent_spec(tmp_path)
    handle = rt.start(spec)
    rt.send(handle, "!ask")
    wait_for(lambda: rt.capture(handle).endswith("(y/n)"), what="the question")
    rt.send(handle, "y")
    wait_for(lambda: "proceeding" in rt.capture(handle), what="the answer")
    rt.send(handle, "!exit 3")
    wait_for(lambda: not rt.probe([handle])[handle].alive, what="exit")
    assert rt.capture(handle).endswith("bye")
    assert texts(log) == ["!ask", "y", "!exit 3"]
    with pytest.raises(SendError):
        rt.send(handle, "hello")


def test_process_needs_a_run_dir(tmp_path):
    rt = runtime.get("process")
    rt.check()
    with pytest.raises(AoError, match="run folder"):
        rt.start(LaunchSpec(name="p", cwd=tmp_path, script=script(tmp_path, "s", "exit 0")))
    with pytest.raises(AoError, match="cannot start"):
        rt.start(LaunchSpec(name="p", cwd=tmp_path, script=tmp_path / "missing.sh", run_dir=tmp_path / "r"))


def test_fake_agent_handles_long_raw_input_and_line_editing(tmp_path):
    """The fake agent on a real pty, without tmux: > 4 KB in one message, C-u, backspace, paste markers."""
    import pty

    log = tmp_path / "log.jsonl"
    pid, fd = pty.fork()
    if pid == 0:  # child
        os.execv(sys.executable, [sys.executable, str(FAKE), "--log", str(log)])
    try:
        out = bytearray()

        def read_until(marker: bytes) -> None:
            def more() -> bool:
                import select
                while select.select([fd], [], [], 0)[0]:
                    out.extend(os.read(fd, 65536))
                return marker in out
            wait_for(more, what=repr(marker))

        read_until(b"\x1b[?2004h")
        read_until(b"agent> ")
        os.write(fd, b"junk\x15ab\x7fc\r")
        os.write(fd, b"\x1b[200~" + b"p" * 6000 + b"\rq\r\n\x1b[201~\r")
        wait_for(lambda: len(read_log(log)) >= 2, what="two messages")
        assert texts(log) == ["ac", "p" * 6000 + "\nq\n"]
        os.write(fd, b"\x04")  # C-d on an empty line: clean exit
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
    finally:
        os.close(fd)
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
