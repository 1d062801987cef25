"""Private Docker engines for the docker runtime's tests: a real ``dockerd`` (Debian's docker.io) on a socket
of its own, with its data, exec root and containerd under a temp folder, stopped and removed afterwards.

The test image (``ao-test-agent``) is the root filesystem that ``.ci/setup.d/30-docker.sh`` builds with
debootstrap (tmux, git, python3), imported into the engine, plus ``ao/scripted_agent.py`` at
``/opt/ao/scripted_agent.py`` (a ``docker build``, as a user builds an agent image).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from sessionkit import ROOT, wait_for
from tools import TOOLS, require

ROOTFS = Path(os.environ.get("AO_DOCKER_ROOTFS") or TOOLS / "docker" / "rootfs-bookworm-tmux-git-python3.tar")
IMAGE = "ao-test-agent"
AGENT = "/opt/ao/scripted_agent.py"
INSTALL = "run .ci/setup.d/30-docker.sh as root (apt-get install docker.io debootstrap, then debootstrap the image)"


def require_docker() -> None:
    require("dockerd", "dockerd (Debian's docker.io)", INSTALL)
    require("docker", "the docker client", INSTALL)
    require(ROOTFS, f"the test image's root filesystem ({ROOTFS})", INSTALL)
    if os.geteuid() != 0:
        require(None, "root (dockerd needs it)", "run the docker tests as root")


def start_daemon(owner: Any, argv: list[str], log: Path, ready: Callable[[], bool], what: str,
                 timeout: float) -> None:
    """Start ``argv`` in a session of its own, its output appended to ``log``, as ``owner.proc``, and wait until
    ``ready()``. When it exits first, or never gets ready: ``owner.stop()``, and fail with the log's end."""
    with open(log, "ab") as out:
        owner.proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                      start_new_session=True)
    try:
        wait_for(lambda: owner.proc.poll() is not None or ready(), timeout=timeout, what=what)
        if owner.proc.poll() is not None:
            raise AssertionError(f"{argv[0]} exited: {log.read_text()[-2000:]}")
    except BaseException:
        owner.stop()
        raise


def require_sshd() -> None:
    require("/usr/sbin/sshd", "OpenSSH's server (Debian's openssh-server)", INSTALL)


@dataclass
class Dockerd:
    """One private engine. ``url`` is what ao's config takes as a host."""

    root: Path
    proc: subprocess.Popen | None = None
    log: Path = field(init=False)
    tls_port: int | None = None  # also listening on tcp://127.0.0.1:PORT, TLS with client certificates

    def __post_init__(self) -> None:
        self.log = self.root / "dockerd.log"

    @property
    def tls_url(self) -> str:
        return f"tcp://127.0.0.1:{self.tls_port}"

    @property
    def client_certs(self) -> Path:
        """ca.pem, cert.pem and key.pem of a client the engine accepts (ao's ``certPath``)."""
        return self.root / "tls" / "client"

    @property
    def socket(self) -> Path:
        return self.root / "docker.sock"

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def docker(self, *args: str, check: bool = True, input: bytes | None = None,
               env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        r = subprocess.run(["docker", "--host", self.url, *args], capture_output=True, input=input,
                           env=env, timeout=120)
        if check and r.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)} failed: {r.stderr.decode(errors='replace')}")
        return r

    def start(self) -> "Dockerd":
        # The engine's images and containers live on a tmpfs: importing is faster, and removing 200 MB of
        # small files from this disk (mounted with discard) takes 15 s, unmounting a tmpfs none.
        (self.root / "data").mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4g,mode=0700", "ao-test-dockerd", str(self.root / "data")],
                       check=True, capture_output=True)
        # --bridge=none and --iptables=false: nothing touches the machine's network; containers use
        # --network none (the tests) or host. overlay2 works on this ext4 (vfs would copy the image per container).
        argv = ["dockerd", "--storage-driver", "overlay2", "--iptables=false", "--ip6tables=false", "--bridge=none",
                "--host", self.url, "--data-root", str(self.root / "data"), "--exec-root", str(self.root / "exec"),
                "--pidfile", str(self.root / "docker.pid"), "--shutdown-timeout", "2"]
        if self.tls_port is not None:
            tls = make_certs(self.root / "tls")
            argv += ["--host", self.tls_url, "--tlsverify", "--tlscacert", str(tls / "ca.pem"),
                     "--tlscert", str(tls / "server-cert.pem"), "--tlskey", str(tls / "server-key.pem")]
        start_daemon(self, argv, self.log, lambda: self.docker("version", check=False).returncode == 0,
                     "dockerd to answer", timeout=60)
        return self

    def load_image(self) -> None:
        """ao-test-base from the cached root filesystem, then ao-test-agent on top of it."""
        with open(ROOTFS, "rb") as f:
            r = subprocess.run(["docker", "--host", self.url, "import", "-", "ao-test-base"], stdin=f,
                               capture_output=True, timeout=300)
        assert r.returncode == 0, r.stderr
        build = self.root / "build"
        build.mkdir(exist_ok=True)
        shutil.copy(ROOT / "ao" / "scripted_agent.py", build / "scripted_agent.py")
        (build / "Dockerfile").write_text(f"FROM ao-test-base\nCOPY scripted_agent.py {AGENT}\n")
        self.docker("build", "--quiet", "--tag", IMAGE, str(build),
                    env={**os.environ, "DOCKER_BUILDKIT": "0"})  # the classic builder: no buildx needed

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def containers(self, prefix: str = "") -> list[str]:
        """Names of every container (running or not) on the engine starting with ``prefix``."""
        out = self.docker("ps", "--all", "--format", "{{.Names}}").stdout.decode().split()
        return [n for n in out if n.startswith(prefix)]

    def stop(self) -> None:
        """Stop dockerd (it stops its containers and containerd); anything of it still running is killed, and
        its folders (the tmpfs too) are unmounted and removed."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        _kill_leftovers(str(self.root))
        _unmount_under(str(self.root))
        shutil.rmtree(self.root / "data", ignore_errors=True)
        shutil.rmtree(self.root / "exec", ignore_errors=True)


@dataclass
class Sshd:
    """A private OpenSSH server on 127.0.0.1, whose sessions reach ``docker_host``: an engine as ``ssh://`` makes
    it remote. ``bin`` holds an ``ssh`` that uses this server's client settings (the docker CLI runs ``ssh`` from
    PATH; OpenSSH reads the passwd entry's home, not $HOME, so a wrapper is how a test gives it a config)."""

    root: Path
    docker_host: str
    port: int = 0
    proc: subprocess.Popen | None = None

    @property
    def bin(self) -> Path:
        return self.root / "bin"

    @property
    def url(self) -> str:
        return f"ssh://root@127.0.0.1:{self.port}"

    def start(self) -> "Sshd":
        self.root.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        for name in ("host", "id", "stranger"):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(self.root / name)],
                           check=True, capture_output=True, timeout=30)
        (self.root / "authorized_keys").write_text((self.root / "id.pub").read_text())
        (self.root / "sshd_config").write_text(
            f"Port {self.port}\nListenAddress 127.0.0.1\nHostKey {self.root / 'host'}\n"
            f"AuthorizedKeysFile {self.root / 'authorized_keys'}\nPermitRootLogin prohibit-password\n"
            "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n"
            f"PidFile {self.root / 'sshd.pid'}\nSetEnv DOCKER_HOST={self.docker_host}\n")
        host_key = (self.root / "host.pub").read_text().split()
        (self.root / "known_hosts").write_text(f"[127.0.0.1]:{self.port} {host_key[0]} {host_key[1]}\n")
        self.use_key("id")
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation folder
        start_daemon(self, ["/usr/sbin/sshd", "-D", "-e", "-f", str(self.root / "sshd_config")],
                     self.root / "sshd.log", lambda: _answers(self.port), "sshd to listen", timeout=30)
        return self

    def use_key(self, key: str) -> None:
        """The key the ``ssh`` in :attr:`bin` offers: ``id`` (authorized) or ``stranger`` (not)."""
        self.bin.mkdir(exist_ok=True)
        (self.root / "ssh_config").write_text(
            f"Host 127.0.0.1\n  IdentityFile {self.root / key}\n  IdentitiesOnly yes\n"
            f"  UserKnownHostsFile {self.root / 'known_hosts'}\n  StrictHostKeyChecking yes\n  BatchMode yes\n")
        wrapper = self.bin / "ssh"
        wrapper.write_text(f"#!/bin/sh\nexec /usr/bin/ssh -F {self.root / 'ssh_config'} \"$@\"\n")
        wrapper.chmod(0o755)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=10)


def _answers(port: int) -> bool:
    import socket

    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def make_certs(folder: Path) -> Path:
    """A CA, a server certificate for 127.0.0.1 and a client certificate (in ``client/``, named as the docker
    CLI's --tlsverify wants them), as Docker's guide to protecting the daemon socket makes them."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "client").mkdir(exist_ok=True)

    def ssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True, timeout=60)

    ssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=ao test CA",
        "-keyout", "ca-key.pem", "-out", "ca.pem")
    for name, ext in (("server", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth"),
                      ("client", "extendedKeyUsage=clientAuth")):
        ssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}", "-keyout", f"{name}-key.pem",
            "-out", f"{name}.csr")
        (folder / f"{name}.ext").write_text(ext + "\n")
        ssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca-key.pem", "-CAcreateserial",
            "-days", "2", "-extfile", f"{name}.ext", "-out", f"{name}-cert.pem")
    for src, dst in (("ca.pem", "ca.pem"), ("client-cert.pem", "cert.pem"), ("client-key.pem", "key.pem")):
        shutil.copy(folder / src, folder / "client" / dst)
    return folder


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _kill_leftovers(root: str, timeout: float = 10.0) -> None:
    """containerd and its shims name the engine's folders on their command lines: none may outlive a test."""
    def mine() -> list[int]:
        found = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if root in cmdline and int(entry) != os.getpid():
                found.append(int(entry))
        return found

    for pid in mine():
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout
    while mine() and time.monotonic() < deadline:
        time.sleep(0.05)


def _unmount_under(root: str) -> None:
    with open("/proc/self/mounts") as f:
        points = [line.split()[1].replace("\\040", " ") for line in f]
    for point in sorted((p for p in points if p.startswith(root + "/")), key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True)


def started_engine(root: Path, tls: bool = False) -> Dockerd:
    engine = Dockerd(root, tls_port=free_port() if tls else None).start()
    try:
        engine.load_image()
    except BaseException:
        engine.stop()
        raise
    return engine
