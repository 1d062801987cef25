"""The tmux runtime (SPEC 5): one detached tmux session per agent, driven through the ``tmux`` command.

Every call is a plain ``subprocess.run`` of the tmux client (no shell, no library): one call costs a few ms,
and ``probe`` asks about every session with a single ``list-panes -a``, so ``ao status`` stays fast with
hundreds of sessions. Sessions are always targeted as ``=NAME`` (exact match: tmux would otherwise take a
unique prefix, so ``app-1`` could hit ``app-12``).

Sending follows SPEC 5 and favours exactly-once over at-least-once: text is cleaned, the input line cleared,
the text typed (short) or pasted as one bracketed paste (long or multi-line), Enter pressed after a short
settle, and delivery confirmed by the pane changing after Enter. When that change does not come, ``send``
raises :class:`SendError` and never types the text again.
"""

from __future__ import annotations

import os
import re
import secrets
import shlex
import shutil
import subprocess
import time
from dataclasses import dataclass
from typing import Callable

from ao.errors import AoError
from ao.plugins.runtime import LaunchSpec, Probe, SendError, Unconfirmed
from ao.templates import clean

MISSING = "tmux is not installed (or not on PATH): install tmux, or set runtime: process"
# tmux turns '.' and ':' in session names into '_' (they separate window and pane in targets), so '.' is
# accepted and mapped the same way here: the returned handle is the name tmux really uses.
_NAME = re.compile(r"[A-Za-z0-9_.-]+")
_NO_SERVER = ("no server running", "error connecting to", "server exited unexpectedly")
# "no current target": the server is exiting because its last session just ended (a kill racing the exit of
# that server): as gone as a missing session.
_NO_SESSIONS = _NO_SERVER + ("no current target",)
_GONE = ("can't find session", "no such session", "can't find window", "can't find pane",
         "no current target") + _NO_SERVER

SEND_CAP = 100_000      # characters; longer text is cut with a visible marker (templates.clean)
SHORT = 200             # up to this many characters of single-line text are typed rather than pasted
TAIL = 24               # how much of the text's end must show in the pane to call the paste settled
KEY_GAP = 0.3           # seconds at least between keys pressed one after another (send_keys)
KEY_SETTLE = 1.0        # seconds more send_keys waits for the screen to change before pressing the next
HISTORY = 10_000        # scrollback lines per agent pane (tmux's default of 2000 is short for agent logs)
WIDTH, HEIGHT = 200, 50
CALL_TIMEOUT = 10.0     # a wedged tmux server must not hang ao forever


@dataclass
class TmuxRuntime:
    """Runtime options: ``socket`` (tmux ``-L``; default ``$AO_TMUX_SOCKET``, else tmux's own default server),
    ``tmux_bin`` (the tmux executable), ``settle`` (max seconds to let a paste land before Enter),
    ``poll`` (seconds between pane captures while settling and confirming) and ``term_timeout`` (how long
    ``kill`` lets the agent's processes end after the hang-up before it signals them).

    ``prefix`` runs every tmux command through another command, e.g. ``docker exec -i CONTAINER``: the
    docker runtime drives the tmux server inside a container with this very code (``missing`` is then the
    error for that command not being installed, and ``client_env`` that command's environment, which then
    reaches no tmux server)."""

    socket: str | None = None
    tmux_bin: str = "tmux"
    settle: float = 0.3
    poll: float = 0.02
    term_timeout: float = 3.0
    name: str = "tmux"
    prefix: tuple[str, ...] = ()
    missing: str = MISSING
    client_env: dict[str, str] | None = None
    inherit_env: bool = False   # the server's environment is the agent's (docker: the container's)

    def __post_init__(self) -> None:
        if self.socket is None:
            self.socket = os.environ.get("AO_TMUX_SOCKET") or None

    # --- plumbing -------------------------------------------------------------------------------------

    def _argv(self, *args: str) -> list[str]:
        return [*self.prefix, self.tmux_bin, *(["-L", self.socket] if self.socket else []), *args]

    def _run(self, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
        """One tmux client call; tmux missing or hanging becomes an AoError, a failed command does not."""
        try:
            return subprocess.run(
                self._argv(*args), check=False, input=input,
                stdin=None if input is not None else subprocess.DEVNULL, capture_output=True, text=True,
                encoding="utf-8", errors="replace", timeout=CALL_TIMEOUT,
                env=_client_env() if self.client_env is None else self.client_env)
        except FileNotFoundError as e:
            raise AoError(self.missing) from e
        except subprocess.TimeoutExpired as e:
            raise AoError(f"tmux did not answer within {CALL_TIMEOUT:g} s (tmux {args[0]})") from e

    @staticmethod
    def _gone(result: subprocess.CompletedProcess[str]) -> bool:
        return result.returncode != 0 and any(m in result.stderr for m in _GONE)

    @staticmethod
    def _pane(handle: str) -> str:
        return f"={handle}:"  # exact session name, its current window and pane

    def _visible(self, handle: str) -> str | None:
        """The visible pane as text (wrapped lines joined), or None when the session is gone."""
        r = self._run("capture-pane", "-p", "-J", "-t", self._pane(handle))
        return r.stdout if r.returncode == 0 else None

    # --- Runtime --------------------------------------------------------------------------------------

    def check(self) -> None:
        if shutil.which(self.tmux_bin) is None:
            raise AoError(MISSING)
        r = self._run("-V")
        m = re.search(r"(\d+)\.(\d+)", r.stdout)
        if m and (int(m.group(1)), int(m.group(2))) < (3, 0):
            raise AoError(f"{r.stdout.strip()} is too old: ao needs tmux 3.0 or newer (or set runtime: process)")

    def start(self, spec: LaunchSpec) -> str:
        if not _NAME.fullmatch(spec.name):
            raise AoError(f"invalid tmux session name '{spec.name}': use only letters, digits, '_', '-' and '.'")
        name = spec.name.replace(".", "_")
        if not spec.cwd.is_dir():
            raise AoError(f"cannot start session {name}: folder {spec.cwd} does not exist")
        if not os.access(spec.script, os.X_OK):
            raise AoError(f"cannot start session {name}: {spec.script} is not an executable file")
        pane = self._pane(name)
        # history-limit only applies to panes created after it is set, so the session starts on a throwaway
        # placeholder window; the agent's window is made after the options, and remain-on-exit is set in the
        # same tmux call (before the server can see the agent exit), so a dead agent's last words stay visible.
        r = self._run(
            "new-session", "-d", "-s", name, "-x", str(WIDTH), "-y", str(HEIGHT), "-c", str(spec.cwd),
            "exec cat", ";",
            "set-option", "-t", pane, "history-limit", str(HISTORY), ";",
            "new-window", "-t", pane, "-c", str(spec.cwd), _command(spec, self.inherit_env), ";",
            "set-option", "-w", "-t", pane, "remain-on-exit", "on", ";",
            "kill-window", "-a", "-t", pane)
        if r.returncode != 0:
            err = r.stderr.strip()
            if "duplicate session" in err:
                raise AoError(f"a tmux session named {name} already exists (attach to it, or kill it first)")
            self._run("kill-session", "-t", f"={name}")  # undo a half-made session
            if spec.run_dir is not None:
                (spec.run_dir / ENV_FILE).unlink(missing_ok=True)
            raise AoError(f"tmux could not start session {name}: {err or 'exit status ' + str(r.returncode)}")
        return name

    def probe(self, handles: list[str]) -> dict[str, Probe]:
        if not handles:
            return {}
        r = self._run("list-panes", "-a", "-F", "#{session_name}\t#{pane_dead}\t#{pane_pid}\t#{window_activity}")
        if r.returncode != 0 and not any(m in r.stderr for m in _NO_SESSIONS):
            # an unexplained failure must not read as "every agent died": that would end live sessions
            raise AoError(f"tmux list-panes failed: {r.stderr.strip() or 'exit status ' + str(r.returncode)}")
        seen: dict[str, Probe] = {}
        for line in r.stdout.splitlines() if r.returncode == 0 else []:  # no server, or one exiting: none alive
            parts = line.split("\t")
            if len(parts) != 4:
                continue
            session, dead, pid, activity = parts
            alive = dead != "1"
            at = float(activity) if activity.isdigit() else None
            old = seen.get(session)
            if old is None:
                seen[session] = Probe(alive, at, int(pid) if pid.isdigit() and alive else None)
            else:  # a user may have opened more windows: alive while any pane is
                if alive and not old.alive:
                    old.alive, old.pid = True, int(pid) if pid.isdigit() else None
                if at is not None and (old.last_output_at is None or at > old.last_output_at):
                    old.last_output_at = at
        return {h: seen.get(h) or Probe(alive=False) for h in handles}

    def send(self, handle: str, text: str, *, confirm_timeout: float = 5.0,
             receipt: Callable[[], bool] | None = None) -> None:
        pane = self._pane(handle)
        # list-panes, not display-message: display-message prints nothing yet succeeds for a missing target
        r = self._run("list-panes", "-t", pane, "-F", "#{pane_active}#{pane_dead}")
        if r.returncode != 0:
            raise SendError(f"cannot send to session {handle}: it is gone (no such tmux session)")
        if "11" in r.stdout.split():
            raise SendError(f"cannot send to session {handle}: its agent has exited")

        # Tabs stay (a bracketed paste carries them literally; typed, they would trigger completion).
        text = clean(text, SEND_CAP).rstrip("\n")
        # tmux reads an argument ending in ';' as a command separator, so such text goes through a buffer.
        typed = len(text) <= SHORT and not any(c in text for c in "\n\t") and not text.endswith(";")
        if typed:
            r = self._run("send-keys", "-t", pane, "C-u", *([";", "send-keys", "-t", pane, "-l", "--", text]
                                                             if text else []))
        else:
            # A named buffer (never the shared top one; never on the command line), pasted with -p so an app
            # that enabled bracketed paste gets the whole block as one paste, and deleted by -d. Line feeds
            # become CR, as when a person pastes into a terminal; inside a bracketed paste that is not Enter.
            buffer = f"ao-{handle}-{secrets.token_hex(4)}"
            r = self._run("load-buffer", "-b", buffer, "-", ";",
                          "send-keys", "-t", pane, "C-u", ";",
                          "paste-buffer", "-p", "-d", "-b", buffer, "-t", pane, input=text)
            if r.returncode != 0:
                self._run("delete-buffer", "-b", buffer)
        if r.returncode != 0:
            raise SendError(f"could not send to session {handle}: {r.stderr.strip() or 'tmux failed'}")

        # Settle: let the text land before Enter (some TUIs take a moment to take in a paste). Done early
        # when the pane ends with the text's tail (the app echoed all of it), else after `settle` seconds.
        tail = text.split("\n")[-1].rstrip().split("\t")[-1][-TAIL:]  # a pane shows tabs as spaces
        deadline = time.monotonic() + self.settle
        before = self._visible(handle)
        while before is not None and not (tail and before.rstrip().endswith(tail)) \
                and time.monotonic() < deadline:
            time.sleep(self.poll)
            before = self._visible(handle)
        if before is None:
            raise SendError(f"session {handle} went away while text was being sent to it")

        r = self._run("send-keys", "-t", pane, "Enter")
        if r.returncode != 0:
            raise SendError(f"could not press Enter in session {handle}: {r.stderr.strip() or 'tmux failed'}")

        # Confirm: the agent's own receipt when it has one (a changed pane proves nothing: a dialog that took
        # the keys changes it too); else, after Enter the agent redraws (clears its input, prints a reply).
        deadline = time.monotonic() + confirm_timeout
        while True:
            if receipt is not None and receipt():
                return
            now = self._visible(handle)
            if now is None:
                raise SendError(f"session {handle} went away before delivery was confirmed")
            if receipt is None and now != before:
                return
            if time.monotonic() >= deadline:
                what = "the agent recorded no receipt of it" if receipt is not None else "the pane did not change"
                raise Unconfirmed(
                    f"delivery to session {handle} not confirmed: {what} within {confirm_timeout:g} s after "
                    "Enter (the agent may be busy; not resent, to avoid duplicates)")
            time.sleep(self.poll)

    def send_keys(self, handle: str, keys: list[str]) -> None:
        """Press keys (tmux key names such as Escape or C-c), nothing else: the `pause` action. One at a time,
        :data:`KEY_GAP` apart and once the screen has changed since the last one (or after :data:`KEY_SETTLE`
        more): a terminal program reads an Escape followed at once by another byte as one key with Alt
        (opencode took Escape Escape sent together as Alt-Escape, not as two presses), and a busy agent may
        not read its terminal for a while."""
        pressed: list[str] = []
        for key in keys:
            if pressed:  # a spinner changes the screen by itself: give the key KEY_GAP at least
                time.sleep(KEY_GAP)
                deadline = time.monotonic() + KEY_SETTLE
                while self._visible(handle) == before and time.monotonic() < deadline:
                    time.sleep(self.poll)
            before = self._visible(handle) if len(pressed) + 1 < len(keys) else None  # the last needs none
            r = self._run("send-keys", "-t", self._pane(handle), key)
            if r.returncode != 0:
                done = f" (pressed {' '.join(pressed)} before)" if pressed else ""
                raise SendError(f"could not press {key} in session {handle}{done}: {r.stderr.strip() or 'tmux failed'}")
            pressed.append(key)

    def capture(self, handle: str, lines: int = 200) -> str:
        r = self._run("capture-pane", "-p", "-J", "-S", f"-{max(int(lines), 1)}", "-t", self._pane(handle))
        return last_lines(r.stdout, lines) if r.returncode == 0 else ""

    def kill(self, handle: str) -> None:
        """End the session and every process started in its panes: some agents outlive the hang-up tmux
        sends (opencode takes its time; Codex's background server would live on), so what is left after
        ``term_timeout`` gets SIGTERM, then SIGKILL."""
        from ao.plugins.runtime import procs

        try:
            panes = self._run("list-panes", "-s", "-t", f"={handle}", "-F", "#{pane_pid}")
        except AoError:
            if shutil.which(self.tmux_bin) is None:
                return  # no tmux, so no session to kill
            raise
        started = procs.tree([int(p) for p in panes.stdout.split() if p.isdigit()]) if panes.returncode == 0 else []
        r = self._run("kill-session", "-t", f"={handle}")
        if r.returncode != 0 and not self._gone(r):
            raise AoError(f"tmux could not kill session {handle}: {r.stderr.strip()}")
        procs.end(started, self.term_timeout)

    def attach_argv(self, handle: str) -> list[str]:
        inside = os.environ.get("TMUX", "")
        if inside:
            server = os.path.basename(inside.split(",")[0])
            if self.socket is None or server == self.socket:
                return self._argv("switch-client", "-t", f"={handle}")
            # inside another tmux server: nest explicitly (tmux refuses a nested attach while $TMUX is set)
            return ["env", "-u", "TMUX", *self._argv("attach-session", "-t", f"={handle}")]
        return self._argv("attach-session", "-t", f"={handle}")

    def view_argv(self, handle: str) -> tuple[list[str], int, int]:
        """A read-only attach for watching (the dashboard's terminal) that never resizes the agent's window,
        and the terminal size that shows the window exactly (columns, rows with the status line).
        Run it without ``$TMUX`` in its environment. AoError when the session is gone."""
        r = self._run("display-message", "-p", "-t", self._pane(handle), "#{window_width} #{window_height} #{status}")
        parts = r.stdout.split()
        if r.returncode != 0 or len(parts) != 3 or not (parts[0].isdigit() and parts[1].isdigit()):
            raise AoError(f"the tmux session {handle} is gone")
        status_lines = 0 if parts[2] == "off" else int(parts[2]) if parts[2].isdigit() else 1
        argv = self._argv("attach-session", "-r", "-f", "ignore-size,read-only", "-t", f"={handle}")
        return argv, int(parts[0]), int(parts[1]) + status_lines


def last_lines(text: str, lines: int) -> str:
    """The last ``lines`` lines of a captured screen, without trailing blanks."""
    rows = [row.rstrip() for row in text.split("\n")]
    while rows and not rows[-1]:
        rows.pop()
    return "\n".join(rows[-lines:])


ENV_FILE = ".agent-env"  # in the session's run folder: the agent's environment, read once at launch


def _command(spec: LaunchSpec, inherit: bool = False) -> str:
    """The agent's command line: its launch script with exactly ``spec.env``, inheriting nothing from the tmux
    server's global environment (a server the user started holds whatever their shell held). TERM is the one
    tmux sets for the pane.

    The values go through a 0600 file in the run folder, sourced and removed by the shell that starts the
    script, never through a command line (any local user can read command lines in ``ps``). ``inherit``: the
    server's own environment is already exactly the agent's (tmux inside a container started with it)."""
    if inherit:
        return f"exec {shlex.quote(str(spec.script))}"
    env = {k: v for k, v in spec.env.items() if k != "TERM"}
    env.setdefault("PATH", os.defpath)
    if spec.run_dir is None:  # no private folder to hand the values over in: the command line it is
        return " ".join(["exec", "env", "-i", 'TERM="${TERM:-tmux-256color}"',
                         *(shlex.quote(f"{k}={v}") for k, v in env.items()), shlex.quote(str(spec.script))])
    spec.run_dir.mkdir(parents=True, exist_ok=True)
    path = spec.run_dir / ENV_FILE
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.writelines(f"{k}={shlex.quote(v)}\n" for k, v in env.items() if _ENV_NAME.fullmatch(k))
    loader = 'set -a; . "$0" && rm -f "$0" || exit 126; set +a; exec "$1"'
    return " ".join(["exec", "env", "-i", 'TERM="${TERM:-tmux-256color}"', "/bin/sh", "-c", shlex.quote(loader),
                     shlex.quote(str(path)), shlex.quote(str(spec.script))])


_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _client_env() -> dict[str, str]:
    """The tmux client's environment: a server it starts copies it as its global environment, so it gets
    the same allowlist as an agent, never ao's secrets."""
    from ao.environment import allowed_environment

    return allowed_environment(("TMUX", "TMUX_TMPDIR"))


def plugin(**options: object) -> TmuxRuntime:
    allowed = {"socket", "tmux_bin", "settle", "poll", "term_timeout"}
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise AoError(f"unknown tmux runtime option(s): {', '.join(unknown)}; known: {', '.join(sorted(allowed))}")
    return TmuxRuntime(**options)  # type: ignore[arg-type]
