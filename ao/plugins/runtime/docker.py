"""The docker runtime (SPEC 5): each agent in a container of its own, under tmux inside that container, on
this machine's Docker engine or on remote ones (``host``/``hosts``). docs/sandbox.md is the user's guide.

Same protocol as the tmux runtime, because it *is* the tmux runtime: every tmux command (start, send,
capture) is a :class:`~ao.plugins.runtime.tmux.TmuxRuntime` call prefixed with ``docker exec -i CONTAINER``,
so the send protocol (clearing, typing or bracketed paste, settle, confirmation) and whatever it learns later
apply unchanged inside containers. Docker is driven through its CLI, never the Engine API by hand: the CLI
already speaks ``unix://``, ``ssh://`` and ``tcp://`` with TLS exactly as the user's own ``docker`` does,
and ``ao attach`` needs it anyway (``docker exec -it``).

A container lives exactly as long as its agent. Its main process (under ``docker-init``) is a small shell
watcher that waits for the tmux session to appear, then every :data:`WATCH_PERIOD` seconds checks that the
agent's pane is alive and, when tmux saw output, writes the screen to ``<run_dir>/screen``, and tmux's
last-output time and the pane's pid (as the container sees it) to ``<run_dir>/activity``. When the agent
dies, the watcher prints the pane's last lines to the container's log and exits with the agent's status, so
the container stops: one ``docker ps`` per engine tells every session's liveness, ``docker logs`` keeps the
last output of a dead agent, and the poller reads last-output times and screens from those files
(:meth:`DockerRuntime.capture_recent`) with no ``docker exec`` at all. What must be current (the look before
a send, the send itself, ``ao logs``) still goes through ``docker exec``.

What the container sees (mounted at the same paths, so git inside finds a valid repository):
- the workspace, read-write; the session's run folder (launch script, prompt, receipts), read-write;
- ``<run_dir>/home`` as ``$HOME``, at that same path, so every path an agent reports (a transcript, a
  rollout) is valid on this machine too; the agent's own state survives a restore and goes with cleanup
  (``home`` puts it at a fixed path in the container instead). It starts with copies of ``homeFiles`` and
  the user's git identity, and the agent plugins read the agent's records there
  (:meth:`DockerRuntime.agent_home`);
- for a worktree, the project's git folder, read-write (commits land in its object store) but with its
  ``config`` and ``hooks`` read-only, so an agent cannot plant a hook or ``core.fsmonitor`` command that
  the user's own git would run on the host; the same for ``origin`` when it is a folder on this machine;
- the configured ``mounts`` (read-only unless ``readonly: false``): credentials only where the user says.

The environment is the session's ``LaunchSpec.env`` (ao.environment's allowlist, ``passEnv`` included) less
the variables that name this machine's folders (``PATH``, ``HOME``, ``SHELL``, ``XDG_*``...: the image's
and the container's own apply), plus the runtime's ``env`` (``NAME`` takes ao's value, ``NAME=value`` is
literal), written to a private env file for ``docker run``, never on its command line.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import stat
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from ao import paths
from ao.agentfiles import own_file, read_small
from ao.errors import AoError
from ao.plugins.runtime import LaunchSpec, Probe
from ao.plugins.runtime.tmux import TmuxRuntime, last_lines

MISSING = ("docker is not installed (or not on PATH): install Docker (Debian: apt-get install docker.io) "
           "or choose another runtime (runtime: tmux)")
SOCKET = "ao"                # tmux -L inside every container
LABEL = "ao.managed"         # on every container ao starts
STAMP_LABEL = "ao.activity"  # the host path of the container's activity file
STAMP, SCREEN, HOME_DIR, ENV_FILE = "activity", "screen", "home", ".docker-env"  # in the session's run folder
SCREEN_LINES = 100           # history lines in the screen file the watcher writes (ao's observer reads 60)
# Where agent CLIs keep their records: in a container, at their defaults under the session's home, where ao
# reads them (ao.plugins.agent); these would move them (and name folders of this machine).
AGENT_DIRS = ("CLAUDE_CONFIG_DIR", "CODEX_HOME")
# Host folders and sockets: meaningless in a container, which has its own (the image's PATH, our HOME).
HOST_ENV = ("PATH", "HOME", "SHELL", "TMPDIR", "TERMINFO", "TERMINFO_DIRS", "XDG_CONFIG_HOME", "XDG_CACHE_HOME",
            "XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_RUNTIME_DIR", "SSH_AUTH_SOCK", "AO_TMUX_SOCKET", *AGENT_DIRS)
WATCH_PERIOD = 2             # seconds between the watcher's looks at the pane
START_WAIT = 60              # seconds the watcher waits for the tmux session before giving up
LAST_LINES = 500             # lines of a dead agent's pane kept in the container log
CALL_TIMEOUT = 30.0          # seconds for docker ps/rm/logs (an ssh:// engine may be slow to answer)
RUN_TIMEOUT = 120.0          # docker run (creating the container and its mounts)
PIDS_LIMIT = 4096            # processes per container: room for test suites, none for a fork bomb
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_HOST_URL = re.compile(r"^(unix|tcp|ssh)://.+")
_DIGITS = re.compile(r"[0-9]{1,12}")  # the agent can write its activity file: ASCII digits only (str.isdigit takes ²)
_UNREACHABLE = ("cannot connect to the docker daemon", "error during connect", "connection refused",
                "no such host", "i/o timeout", "dial unix", "connect: no such file", "ssh: ", "kex_exchange",
                "could not resolve hostname", "host key verification failed", "context deadline exceeded",
                "did not answer")
_SSH_REFUSED = ("permission denied (publickey", "host key verification failed", "too many authentication failures")
_ALIVE = ("running", "paused")
OPTIONS = {"image", "mounts", "homeFiles", "network", "cpus", "memory", "env", "user", "home", "host", "hosts",
           "docker_bin"}

# The container's main process. Arguments: tmux session name, activity file, screen file, tmux socket,
# seconds to wait for the session, seconds between looks, screen lines, lines of output kept at the end.
# POSIX sh: images differ (dash, busybox). The screen is written whenever tmux saw output since the last
# look, and once more after that (tmux's activity time has 1 s resolution: output in the same second as one
# screen is in the next); the activity file after it.
WATCHER = r"""
name=$1 stamp=$2 screen=$3 sock=$4 wait=$5 period=$6 height=$7 lines=$8
t() { tmux -L "$sock" "$@"; }
n=0
until t has-session -t "=$name" 2>/dev/null; do
    n=$((n + 1))
    if [ "$n" -gt $((wait * 10)) ]; then echo "ao: the agent's tmux session never started"; exit 125; fi
    sleep 0.1
done
last= again=
while out=$(t display-message -p -t "=$name:" '#{window_activity} #{pane_pid}' \; \
            list-panes -s -t "=$name" -F 'pane#{pane_dead}' 2>/dev/null); do
    case $out in *pane0*) ;; *) break ;; esac
    act=${out%%[!0-9 ]*} act=${act% }
    if [ "$act" != "$last" ] || [ -n "$again" ]; then
        { t capture-pane -p -J -S "-$height" -t "=$name:" > "$screen.new" && mv -f "$screen.new" "$screen"; } 2>/dev/null
    fi
    again=
    if [ "$act" != "$last" ]; then { printf '%s\n' "$act" > "$stamp.new" && mv -f "$stamp.new" "$stamp"; } 2>/dev/null
        last=$act again=1; fi
    sleep "$period"
done
# The agent's exit status: tmux's, or (tmux 3.3 sometimes leaves a dead pane's process unreaped) the one the
# kernel keeps in the zombie's /proc stat (field 52, as waitpid reports it).
pid=$(t display-message -p -t "=$name:" '#{pane_pid}' 2>/dev/null) n=0
until code=$(t display-message -p -t "=$name:" '#{pane_dead_status}' 2>/dev/null) && [ -n "$code" ]; do
    stat=$(cat "/proc/$pid/stat" 2>/dev/null) && set -- ${stat##*) } && [ "$1" = Z ] && [ "$#" -ge 50 ] && {
        shift 49
        if [ $(($1 & 127)) -ne 0 ]; then code=$((128 + ($1 & 127))); else code=$(($1 >> 8)); fi
        break
    }
    n=$((n + 1))
    [ "$n" -lt 10 ] && t has-session -t "=$name" 2>/dev/null || break
    sleep 0.1
done
t capture-pane -p -J -S "-$lines" -t "=$name:" 2>/dev/null
case $code in '' | *[!0-9]*) code=0 ;; esac
exit "$code"
"""


class _Unreachable(AoError):
    """The engine did not answer (down, unreachable, refused us)."""


# Engines seen down, per data dir: one "host down" event per outage, however many runtimes (one per project,
# one observing) in this process see it.
_DOWN: dict[tuple[str, str], str] = {}
_DOWN_LOCK = threading.Lock()


# ------------------------------------------------------------------------------------------ settings

@dataclass(frozen=True)
class Engine:
    """One Docker engine. ``url`` "" is the docker CLI's own default ($DOCKER_HOST, the current context)."""

    url: str = ""
    name: str = ""
    capacity: int | None = None
    cert_path: str | None = None   # a folder with ca.pem, cert.pem and key.pem (tcp:// with TLS)

    @property
    def label(self) -> str:
        return self.name or self.url or "default"

    def argv(self, docker_bin: str) -> list[str]:
        argv = [docker_bin] + (["--host", self.url] if self.url else [])
        if self.cert_path:
            folder = Path(self.cert_path).expanduser()
            argv += ["--tlsverify", "--tlscacert", str(folder / "ca.pem"), "--tlscert", str(folder / "cert.pem"),
                     "--tlskey", str(folder / "key.pem")]
        return argv


@dataclass(frozen=True)
class Mount:
    source: str
    target: str
    readonly: bool = True

    def arg(self) -> str:
        fields = ["type=bind", f"source={self.source}", f"target={self.target}"] + (["readonly"] if self.readonly else [])
        return ",".join(_csv(f) for f in fields)  # docker reads --mount as one CSV record


def _csv(field_: str) -> str:
    return '"' + field_.replace('"', '""') + '"' if any(c in field_ for c in ',"\n') else field_


def engine_of(entry: Any) -> Engine:
    """A ``host``/``hosts`` entry (a URL, or ``{url, name, capacity, certPath}``) as an :class:`Engine`."""
    if isinstance(entry, str):
        return Engine(url=entry)
    return Engine(url=entry["url"], name=entry.get("name", ""), capacity=entry.get("capacity"),
                  cert_path=entry.get("certPath"))


def mount_of(entry: Any, home: str = "~") -> Mount:
    """A ``mounts`` entry: ``SOURCE[:TARGET][:ro|rw]`` or ``{source, target, readonly}``; read-only by default.
    ``~`` is ao's home in a source and the container's ``home`` in a target (the same file, where the agent
    looks for it: ``~/.codex/auth.json``)."""
    if isinstance(entry, str):
        parts = entry.split(":")
        mode = parts.pop() if len(parts) > 1 and parts[-1] in ("ro", "rw") else "ro"
        source, target, readonly = parts[0], (parts[1] if len(parts) > 1 else parts[0]), mode == "ro"
    else:
        source, target, readonly = entry["source"], entry.get("target") or entry["source"], bool(entry.get("readonly", True))
    return Mount(str(Path(source).expanduser()), _in_home(target, home), readonly)


def home_file_of(entry: str) -> tuple[str, str]:
    """A ``homeFiles`` entry, ``SOURCE[:TARGET]``: (source, target relative to the session's home). A target
    defaults to the source's place under ~ (``~/.claude.json`` goes to the session's ``~/.claude.json``)."""
    source, _, target = entry.partition(":")
    target = target or source
    return source, target[2:] if target.startswith("~/") else target


def copy_new(source: Path, home: Path, target: str) -> None:
    """Copy a file or folder (links followed: a dotfiles link copies what it points at) to ``home/target``
    unless something is there already; atomically, so a crash leaves no half copy that would never be
    completed. The parents are made inside ``home``, never through a link the agent left there."""
    dest = home / target
    if os.path.lexists(dest):
        return
    if not source.exists():
        raise AoError(f"homeFiles: {source} does not exist (it is copied into each new session's home)")
    try:
        own_file(home, dest)
    except AoError as exc:
        raise AoError(f"homeFiles ({source}): {exc}") from None
    tmp = dest.with_name(f".{dest.name}.ao-copy")
    if tmp.is_dir() and not tmp.is_symlink():  # left by a crash
        shutil.rmtree(tmp)
    else:
        tmp.unlink(missing_ok=True)
    try:
        if source.is_dir():
            shutil.copytree(source, tmp, symlinks=False, ignore_dangling_symlinks=True)
        else:
            shutil.copy2(source, tmp)
    except OSError as exc:
        raise AoError(f"homeFiles: cannot copy {source}: {exc.strerror or exc}") from None
    os.replace(tmp, dest)


def _git_identity(home: Path, repo: Path | None) -> None:
    """A ``~/.gitconfig`` naming the user (``user.name`` and ``user.email`` as git sees them in the project's
    checkout ``repo``: includes and ``includeIf`` followed) in a session's new home, unless ``homeFiles``
    brought a git config: the agent's commits are the user's, as on the host, and the repository's config,
    read-only in the container, cannot say it (aider, finding no name, writes one there and crashes on the
    read-only file)."""
    from ao import git

    path = home / ".gitconfig"
    if os.path.lexists(path) or os.path.lexists(home / ".config" / "git" / "config"):
        return
    found = {}
    for key in ("name", "email"):
        with contextlib.suppress(git.GitError):
            found[key] = git.run(["config", "--includes", "--get", f"user.{key}"], repo or home).strip()
    lines = "".join(f"\t{key} = {json.dumps(value, ensure_ascii=False)}\n" for key, value in found.items()
                    if value and value.isprintable())
    if lines:
        from ao.ledger import atomic_write

        atomic_write(path, f"# written by ao: your git identity, for the agent's commits\n[user]\n{lines}", 0o600)


def _in_home(path: str, home: str) -> str:
    return home + path[1:] if path == "~" or path.startswith("~/") else path


def _entries(settings: dict[str, Any]) -> list[Any]:
    if settings.get("hosts"):
        return list(settings["hosts"])
    return [settings["host"]] if settings.get("host") else []


def config_problems(settings: dict[str, Any]) -> list[tuple[tuple, str]]:
    """What the schema cannot say about docker settings: (path inside the settings, message) pairs."""
    problems: list[tuple[tuple, str]] = []
    if settings.get("host") and settings.get("hosts"):
        problems.append((("hosts",), "set host (one engine) or hosts (several), not both"))
    where = ("hosts",) if settings.get("hosts") else ("host",)
    seen: dict[str, int] = {}
    for i, entry in enumerate(_entries(settings)):
        at = where + (i,) if where == ("hosts",) else where
        try:
            engine = engine_of(entry)
        except (KeyError, TypeError):
            continue  # the schema reports it
        if not _HOST_URL.match(engine.url):
            problems.append((at, f"'{engine.url}' is not a Docker endpoint: use unix:///path/docker.sock, "
                                 "ssh://user@host or tcp://host:2376"))
        elif engine.url.startswith("tcp://") and not engine.cert_path:
            problems.append((at, f"{engine.url}: a tcp:// engine needs TLS; give certPath, a folder with "
                                 "ca.pem, cert.pem and key.pem (plain tcp would hand the engine, and so root "
                                 "on it, to anyone on the network)"))
        if engine.url in seen:
            problems.append((at, f"engine {engine.url} is listed twice"))
        seen.setdefault(engine.url, i)
    for i, entry in enumerate(settings.get("env") or []):
        name = entry.partition("=")[0] if isinstance(entry, str) else ""
        if name in (*AGENT_DIRS, "XDG_DATA_HOME"):  # XDG_DATA_HOME: opencode's store
            problems.append((("env", i), f"{name} would move the agent's records out of the session's home, where "
                                         "ao reads them; leave it unset in a container"))
    for i, entry in enumerate(settings.get("homeFiles") or []):
        if not isinstance(entry, str):
            continue
        source, target = home_file_of(entry)
        if not source.startswith(("/", "~/")):
            problems.append((("homeFiles", i), f"'{source}' must be an absolute path (or start with ~/)"))
        if source.startswith("/") and ":" not in entry:
            problems.append((("homeFiles", i), f"'{source}' is not under ~: say where it goes in the session's "
                                               "home, SOURCE:~/TARGET"))
        elif target.startswith("/") or not target or ".." in Path(target).parts:
            problems.append((("homeFiles", i), f"target '{target}' must be inside the session's home (~/PATH)"))
    for i, entry in enumerate(settings.get("mounts") or []):
        try:
            mount = mount_of(entry)
        except (KeyError, TypeError, IndexError):
            continue
        if not mount.source.startswith("/"):
            problems.append((("mounts", i), f"mount source '{mount.source}' must be an absolute path (or start with ~)"))
        if not mount.target.startswith(("/", "~")):
            problems.append((("mounts", i), f"mount target '{mount.target}' must be an absolute path (or start with ~/, "
                                            "the container's home)"))
    return problems


def shared_options(settings: list[dict[str, Any]]) -> dict[str, Any]:
    """The options of a runtime that only observes and talks to existing sessions, whichever project they
    belong to: every configured engine (their names, capacities and TLS settings)."""
    hosts: dict[str, Any] = {}
    for one in settings:
        for entry in _entries(one):
            hosts.setdefault(engine_of(entry).url, entry)
    return {"hosts": list(hosts.values())} if hosts else {}


# ------------------------------------------------------------------------------------------ runtime

@dataclass
class DockerRuntime:
    """Options are the config keys (``runtime: {plugin: docker, ...}``), already validated by the schema."""

    image: str | None = None
    mounts: list[Any] = field(default_factory=list)
    home_files: list[str] = field(default_factory=list)  # `homeFiles`: copied into each new session's home
    network: str | None = None
    cpus: float | None = None
    memory: str | int | None = None
    env: list[str] = field(default_factory=list)
    user: str | None = None
    home: str | None = None         # $HOME in the container; default: the session's <run_dir>/home, same path
    host: Any = None
    hosts: list[Any] | None = None
    docker_bin: str = "docker"
    name: str = "docker"
    agent_in_image: bool = True     # the agent CLI is the image's business: spawn does not look for it here
    # Set by ao.sessions (bind): where placement locks go, and how "host down/up" reaches the event log.
    state_dir: Path | None = None
    on_event: Callable[..., None] | None = None

    def __post_init__(self) -> None:
        entries = _entries({"host": self.host, "hosts": self.hosts})
        self.engines = [engine_of(e) for e in entries] or [Engine()]
        self._by_url = {e.url: e for e in self.engines}
        self._screens: dict[str, Path] = {}  # handle -> its screen file, learnt from the last probe

    def bind(self, state_dir: Path, on_event: Callable[..., None]) -> None:
        self.state_dir, self.on_event = state_dir, on_event

    # --- plumbing -------------------------------------------------------------------------------------

    def _engine(self, url: str) -> Engine:
        return self._by_url.get(url) or Engine(url=url)

    def _split(self, handle: str) -> tuple[Engine, str]:
        name, _, url = handle.partition("@")
        return self._engine(url), name

    def _docker(self, engine: Engine, *args: str, timeout: float = CALL_TIMEOUT) -> subprocess.CompletedProcess[str]:
        """One docker CLI call; docker missing is an AoError, a failed command is not (its stderr says why)."""
        try:
            return subprocess.run([*engine.argv(self.docker_bin), *args], capture_output=True, text=True,
                                  encoding="utf-8", errors="replace", stdin=subprocess.DEVNULL, check=False,
                                  timeout=timeout)
        except FileNotFoundError as e:
            raise AoError(MISSING) from e
        except subprocess.TimeoutExpired:
            return subprocess.CompletedProcess([], 1, "", f"the engine did not answer within {timeout:g} s")

    def _explain(self, engine: Engine, result: subprocess.CompletedProcess[str], doing: str) -> AoError:
        """A docker failure as a clear error; an engine that cannot be reached is an :class:`_Unreachable`."""
        err = " ".join(line.strip() for line in result.stderr.splitlines() if line.strip()
                       and not line.startswith("Run 'docker")) or f"exit status {result.returncode}"
        low = err.lower()
        if "x509:" in low or "tls:" in low:
            return _Unreachable(f"the Docker engine {engine.label} and ao do not accept each other's TLS certificates "
                                f"(certPath {engine.cert_path or 'not set'}: ca.pem must have signed the engine's "
                                f"certificate, cert.pem and key.pem must be a client the engine trusts): {err}")
        if engine.url.startswith("ssh://") and any(m in low for m in _SSH_REFUSED):
            return _Unreachable(f"ssh to the Docker engine {engine.label} failed: {err} (ao runs your `ssh`, with your "
                                "keys, agent and ~/.ssh/config: `ssh HOST docker version` must work without a prompt)")
        if any(m in low for m in _UNREACHABLE):
            return _Unreachable(f"the Docker engine {engine.label} is unreachable (is dockerd running there?): {err}")
        if "permission denied" in low and ("docker.sock" in low or "daemon socket" in low):
            return _Unreachable(f"not allowed to use the Docker engine {engine.label}: {err} (join the docker group, "
                                "or point host at an engine you may use)")
        if "no such image" in low or "unable to find image" in low:
            return AoError(f"image {self.image} is not on the Docker engine {engine.label}: build or load it there "
                           f"first (see {paths.doc('sandbox.md')}); ao never pulls images")
        if "bind source path does not exist" in low:
            return AoError(f"{doing}: a mount source does not exist on the Docker engine {engine.label} (on a remote "
                           f"engine, paths are that machine's): {err}")
        return AoError(f"{doing} on the Docker engine {engine.label} failed: {err}")

    def _tmux(self, engine: Engine, container: str) -> TmuxRuntime:
        """The tmux runtime, pointed at the tmux server inside ``container``. Its client is the docker CLI,
        which needs ao's environment (DOCKER_HOST, DOCKER_CONFIG, ...) and passes none of it in."""
        return TmuxRuntime(socket=SOCKET, prefix=(*engine.argv(self.docker_bin), "exec", "-i", container),
                           missing=MISSING, client_env=dict(os.environ), inherit_env=True)

    def _note_down(self, engine: Engine, error: str) -> None:
        key = (str(self.state_dir), engine.url)
        with _DOWN_LOCK:
            new = key not in _DOWN
            _DOWN[key] = error
        if new and self.on_event:
            self.on_event("runtime.host_down", host=engine.label, url=engine.url, error=error)

    def _note_up(self, engine: Engine) -> None:
        with _DOWN_LOCK:
            was = _DOWN.pop((str(self.state_dir), engine.url), None)
        if was is not None and self.on_event:
            self.on_event("runtime.host_up", host=engine.label, url=engine.url)

    def _ps(self, engine: Engine, *args: str) -> list[list[str]]:
        """ao's containers on one engine, one row of tab-separated fields each; _Unreachable when it is down."""
        r = self._docker(engine, "ps", "--filter", f"label={LABEL}", *args)
        if r.returncode != 0:
            error = self._explain(engine, r, "listing containers")
            self._note_down(engine, str(error))
            raise error if isinstance(error, _Unreachable) else _Unreachable(str(error))
        self._note_up(engine)
        return [line.split("\t") for line in r.stdout.splitlines() if line.strip()]

    def _each_engine(self, engines: list[Engine], fn: Callable[[Engine], Any]) -> dict[str, Any]:
        """``fn`` on every engine at once (a slow remote one must not hold up the rest); an exception is a value."""
        def safe(engine: Engine) -> tuple[str, Any]:
            try:
                return engine.url, fn(engine)
            except _Unreachable as exc:
                return engine.url, exc
        if len(engines) == 1:
            return dict([safe(engines[0])])
        with ThreadPoolExecutor(max_workers=min(8, len(engines))) as pool:
            return dict(pool.map(safe, engines))

    # --- Runtime --------------------------------------------------------------------------------------

    def check(self) -> None:
        if shutil.which(self.docker_bin) is None:
            raise AoError(MISSING)
        if self.image is None:
            raise AoError("runtime docker needs an image (runtime: {plugin: docker, image: ...}); "
                          f"{paths.doc('sandbox.md')} shows how to build one")
        if len(self.engines) == 1:  # several engines: placement finds the ones that answer
            engine = self.engines[0]
            r = self._docker(engine, "image", "inspect", "--format", "{{.Id}}", self.image)
            if r.returncode != 0:
                raise self._explain(engine, r, f"looking for image {self.image}")

    def start(self, spec: LaunchSpec) -> str:
        if self.image is None:
            self.check()
        if not _NAME.fullmatch(spec.name):
            raise AoError(f"invalid container name '{spec.name}': use letters, digits, '_', '-' and '.'")
        if spec.run_dir is None:
            raise AoError(f"cannot start session {spec.name}: the docker runtime needs a run folder")
        if not spec.cwd.is_dir():
            raise AoError(f"cannot start session {spec.name}: folder {spec.cwd} does not exist")
        name = spec.name.replace(".", "_")  # one name for the container and the tmux session inside it
        run_dir = spec.run_dir.resolve()
        self._own_home(run_dir)
        for left in (STAMP, SCREEN):  # the last container's (its agent's pid, its screen): not this one's
            (run_dir / left).unlink(missing_ok=True)
        env = self._environment(spec, run_dir)
        argv = self._run_argv(name, spec, run_dir)
        engine = self._place(name, argv, env, run_dir)
        try:
            # The agent gets exactly the container's environment: the image's (its PATH, ...) and ours.
            r = self._docker(engine, "inspect", "--format", "{{json .Config.Env}}", name)
            if r.returncode != 0:
                raise self._explain(engine, r, f"reading container {name}")
            env = dict(item.split("=", 1) for item in json.loads(r.stdout) if "=" in item)
            self._tmux(engine, name).start(replace(spec, name=name, env=env))
        except BaseException:
            self._docker(engine, "rm", "--force", name)  # a container whose agent never started is no use
            raise
        return f"{name}@{engine.url}"

    def _home(self, run_dir: Path) -> str:
        return self.home or str(run_dir / HOME_DIR)

    def agent_home(self, run_dir: Path) -> Path:
        """The container's $HOME on this machine: the agent's transcripts, rollouts and store are there."""
        return Path(run_dir).resolve() / HOME_DIR

    def prepare_home(self, run_dir: Path, repo: Path | None = None) -> Path:
        """Make the session's home (private), with the ``homeFiles`` it does not have yet (the settings a real
        CLI needs to skip its first-run screens) and the user's git identity as ``repo``, the project's
        checkout, sees it. A restore keeps what the agent changed since."""
        home = self._own_home(run_dir)
        for entry in self.home_files:
            source, target = home_file_of(entry)
            copy_new(Path(source).expanduser(), home, target)
        _git_identity(home, repo)
        return home

    def _own_home(self, run_dir: Path) -> Path:
        """The session's home, a real folder (made when missing). The agent can replace it: a link there would
        make ao copy ``homeFiles`` into, and docker mount, whatever it points at. So anything but a folder is
        refused."""
        home = self.agent_home(run_dir)
        home.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):
            os.mkdir(home, 0o700)
        if not stat.S_ISDIR(os.lstat(home).st_mode):
            raise AoError(f"{home}, the session's home, is not a folder (its agent put a link or a file there); "
                          "not starting the agent: remove it to start again with a fresh home")
        return home

    def _environment(self, spec: LaunchSpec, run_dir: Path) -> dict[str, str]:
        env = {k: v for k, v in spec.env.items() if k not in HOST_ENV}
        for item in self.env:
            name, sep, value = item.partition("=")
            if sep:
                env[name] = value
            elif name in os.environ:
                env[name] = os.environ[name]
        env["HOME"] = self._home(run_dir)
        bad = sorted(k for k, v in env.items() if "\n" in v or "\0" in v)
        if bad:
            raise AoError(f"cannot pass {', '.join(bad)} into a container: the value holds a line break")
        return env

    def _run_argv(self, name: str, spec: LaunchSpec, run_dir: Path) -> list[str]:
        """``docker run`` arguments after ``run`` (the env file is added by the caller)."""
        stamp = run_dir / STAMP
        user = self.user or f"{os.getuid()}:{os.getgid()}"
        argv = ["run", "--detach", "--init", "--name", name, "--label", f"{LABEL}=1",
                "--label", f"{STAMP_LABEL}={stamp}", "--pull", "never", "--user", user, "--workdir", str(spec.cwd),
                "--entrypoint", "/bin/sh", "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
                "--pids-limit", str(PIDS_LIMIT),
                "--log-driver", "json-file", "--log-opt", "max-size=1m"]
        if self.network:
            argv += ["--network", self.network]
        if self.cpus:
            argv += ["--cpus", str(self.cpus)]
        if self.memory:
            argv += ["--memory", str(self.memory)]
        for mount in self._mounts(spec, run_dir):
            argv += ["--mount", mount.arg()]
        return argv + [str(self.image), "-c", WATCHER, "ao-watch", name, str(stamp), str(run_dir / SCREEN), SOCKET,
                       str(START_WAIT), str(WATCH_PERIOD), str(SCREEN_LINES), str(LAST_LINES)]

    def _mounts(self, spec: LaunchSpec, run_dir: Path) -> list[Mount]:
        mounts = [*_bind(spec.cwd, readonly=False), *_bind(run_dir, readonly=False)]
        if self.home:
            mounts.append(Mount(str(run_dir / HOME_DIR), self.home, readonly=False))
        if spec.repo is not None:
            from ao import git

            # From the project's checkout (trusted), never from the workspace (the agent's to rewrite).
            if (spec.cwd / ".git").is_file():  # a worktree: its objects and refs live in the project's git folder
                common = Path(git.run(["rev-parse", "--git-common-dir"], spec.repo))
                mounts += _git_folder(common if common.is_absolute() else spec.repo / common)
            origin = git.remote_url(spec.repo) or ""
            local = origin[len("file://"):] if origin.startswith("file://") else origin
            if local.startswith("/") and Path(local).is_dir():  # pushes to a folder on this machine
                mounts += _git_folder(Path(local))
        mounts += [mount_of(m, self._home(run_dir)) for m in self.mounts]
        return mounts

    def _place(self, name: str, argv: list[str], env: dict[str, str], run_dir: Path) -> Engine:
        """Run the container on the engine with the fewest live sessions that has room; skip engines that are
        down (an event each). Placements are serialised per data dir so two spawns cannot both take the
        last free slot."""
        if len(self.engines) == 1:
            self._run(self.engines[0], name, argv, env, run_dir)
            return self.engines[0]
        from contextlib import nullcontext

        from ao.locks import file_lock

        with file_lock(self.state_dir / "docker-placement.lock") if self.state_dir else nullcontext():
            loads = self._each_engine(self.engines, lambda e: len(self._ps(e, "--format", "{{.Names}}")))
            up = [e for e in self.engines if not isinstance(loads[e.url], Exception)]
            free = [e for e in up if e.capacity is None or loads[e.url] < e.capacity]
            if not free:
                why = [f"{e.label}: {loads[e.url]}" if isinstance(loads[e.url], Exception)
                       else f"{e.label}: full ({loads[e.url]} of {e.capacity})" for e in self.engines]
                raise AoError("no Docker engine can take another session:\n  " + "\n  ".join(why))
            free.sort(key=lambda e: loads[e.url])  # stable: ties go to the engine listed first
            for engine in free:
                try:
                    self._run(engine, name, argv, env, run_dir)
                    return engine
                except _Unreachable as exc:  # went down since it was asked
                    self._note_down(engine, str(exc))
                    last = exc
            raise AoError(f"no Docker engine could start session {name}: {last}")

    def _run(self, engine: Engine, name: str, argv: list[str], env: dict[str, str], run_dir: Path) -> None:
        env_file = run_dir / ENV_FILE
        env_file.unlink(missing_ok=True)
        fd = os.open(env_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # values never on a command line
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.writelines(f"{k}={v}\n" for k, v in env.items())
        try:
            r = self._docker(engine, *argv[:1], "--env-file", str(env_file), *argv[1:], timeout=RUN_TIMEOUT)
        finally:
            env_file.unlink(missing_ok=True)
        if r.returncode != 0:
            if "is already in use" in r.stderr:
                raise AoError(f"a container named {name} already exists on the Docker engine {engine.label} "
                              f"(remove it with: docker rm -f {name})")
            self._docker(engine, "rm", "--force", name)  # created but not started
            raise self._explain(engine, r, f"starting container {name}")

    def probe(self, handles: list[str]) -> dict[str, Probe]:
        by_url: dict[str, list[str]] = {}
        for h in handles:
            by_url.setdefault(self._split(h)[0].url, []).append(h)
        rows = self._each_engine([self._engine(u) for u in by_url], lambda e: self._ps(
            e, "--all", "--format", "{{.Names}}\t{{.State}}\t{{.Label \"" + STAMP_LABEL + "\"}}"))
        out: dict[str, Probe] = {}
        for url, group in by_url.items():
            found = rows[url]
            table = {} if isinstance(found, Exception) else {r[0]: r for r in found if len(r) == 3}
            for h in group:
                row = table.get(self._split(h)[1])
                alive = row is not None and row[1] in _ALIVE
                at, pid = _stamp(row[2]) if alive else (None, None)
                out[h] = Probe(alive=alive, last_output_at=at, pid=pid)
                if alive and row[2]:
                    self._screens[h] = Path(row[2]).with_name(SCREEN)
                else:
                    self._screens.pop(h, None)
        return out

    def send(self, handle: str, text: str, **options: Any) -> None:
        engine, name = self._split(handle)
        self._tmux(engine, name).send(name, text, **options)

    def capture(self, handle: str, lines: int = 200) -> str:
        engine, name = self._split(handle)
        text = self._tmux(engine, name).capture(name, lines)
        if text:
            return text
        r = self._docker(engine, "logs", "--tail", str(max(int(lines), 1)), name)  # a dead agent's last words
        return last_lines(r.stdout, lines) if r.returncode == 0 else ""

    def capture_recent(self, handle: str, lines: int = 60) -> tuple[str, float] | None:
        """The screen the container's watcher last wrote (at most WATCH_PERIOD s after the pane last changed)
        and the time it was taken: the observer's capture without a ``docker exec``. None when there is no
        such screen (then :meth:`capture`)."""
        path = self._screens.get(handle)
        got = read_small(path, 1 << 18) if path is not None and lines <= SCREEN_LINES else None
        if got is None:
            return None
        text, mtime = got
        return last_lines(text, lines), mtime - 1  # taken a moment before the file was written: a margin

    def kill(self, handle: str) -> None:
        engine, name = self._split(handle)
        r = self._docker(engine, "rm", "--force", name)
        if r.returncode != 0 and "no such container" not in r.stderr.lower():
            raise self._explain(engine, r, f"removing container {name}")

    def attach_argv(self, handle: str) -> list[str]:
        engine, name = self._split(handle)
        return [*engine.argv(self.docker_bin), "exec", "-it", name, "tmux", "-L", SOCKET, "attach-session",
                "-t", f"={name}"]

    def view_argv(self, handle: str) -> tuple[list[str], int, int]:
        """The tmux runtime's read-only attach, in the container (``-t``: tmux attaches to a terminal only)."""
        engine, name = self._split(handle)
        argv, cols, rows = self._tmux(engine, name).view_argv(name)
        at = argv.index("exec")
        return [*argv[:at + 1], "-it", *argv[at + 2:]], cols, rows

    def location(self, handle: str) -> str:
        """The engine a session runs on, as the user named it (``ao status`` shows it)."""
        return self._split(handle)[0].label

    def __getattr__(self, attr: str) -> Any:
        """Whatever else the tmux runtime can do to a session (``method(handle, ...)``), done in its container."""
        if attr.startswith("_") or not callable(getattr(TmuxRuntime, attr, None)) or attr in ("check", "start", "probe"):
            raise AttributeError(attr)

        def in_container(handle: str, *args: Any, **kwargs: Any) -> Any:
            engine, name = self._split(handle)
            return getattr(self._tmux(engine, name), attr)(name, *args, **kwargs)

        return in_container


def _bind(path: Path, readonly: bool) -> list[Mount]:
    """``path`` at the same path inside the container; also at its real path when a symlink leads there
    (git records real paths in a worktree's links, ao the paths as configured)."""
    path = Path(os.path.abspath(path))
    real = path.resolve()
    return [Mount(str(real), str(target), readonly) for target in dict.fromkeys((real, path))]


def _git_folder(folder: Path) -> list[Mount]:
    """A git folder (a bare repository, or a checkout's .git) read-write, with what makes git run commands
    (config, hooks) read-only: the agent must not plant a command that git on the host would run."""
    gitdir = folder / ".git" if (folder / ".git").is_dir() else folder
    mounts = _bind(gitdir, readonly=False)
    for part in ("config", "hooks"):
        if (gitdir / part).exists():
            mounts += _bind(gitdir / part, readonly=True)
    return mounts


def _stamp(path: str) -> tuple[float | None, int | None]:
    """tmux's last-output time and the agent's pid (in the container, where the agent's own files name it)
    from a container's activity file, ``TIME PID``; (None, None) when there is no such file yet."""
    got = read_small(path, 64) if path else None
    if got is None:
        return None, None
    fields, mtime = got[0].split(), got[1]
    at = float(fields[0]) if fields and _DIGITS.fullmatch(fields[0]) else mtime
    return at, int(fields[1]) if len(fields) > 1 and _DIGITS.fullmatch(fields[1]) else None


def plugin(**options: Any) -> DockerRuntime:
    unknown = sorted(set(options) - OPTIONS)
    if unknown:
        raise AoError(f"unknown docker runtime option(s): {', '.join(unknown)}; known: {', '.join(sorted(OPTIONS))}")
    if "homeFiles" in options:
        options["home_files"] = options.pop("homeFiles")
    return DockerRuntime(**options)
