"""The docker runtime against real Docker engines: private ``dockerd``s (tests/dockerkit.py) on sockets of
their own, an image built here (Debian minbase with tmux, git, Python and ao/scripted_agent.py), real git,
the local SCM and the real poller. Containers run with ``--network none``.

Without dockerd, root or the cached root filesystem these tests skip locally and fail under CI
(tests/tools.py); the configuration and "Docker is missing" tests need none of it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from dockerkit import AGENT, IMAGE, require_docker, started_engine
from sessionkit import check_demo_run, wait_for

from ao.errors import AoError
from ao.plugins import runtime
from ao.plugins.runtime import SendError
from ao.plugins.runtime import docker as docker_rt
from ao.sessions import Sessions, SpawnRequest, handle_name


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    """One private engine with the test image, for the whole module; stopped and removed afterwards."""
    require_docker()
    e = started_engine(tmp_path_factory.mktemp("dockerd"), tls=True)
    yield e
    e.stop()


@pytest.fixture(autouse=True)
def no_container_outlives_its_test(request):
    """Whatever a test using the engine leaves (a failed one does not reach its kills), removed afterwards:
    placement counts every live container, so a leftover would skew the next test."""
    yield
    if "engine" in request.fixturenames:
        e = request.getfixturevalue("engine")
        left = e.containers()
        if left:
            e.docker("rm", "--force", *left, check=False)


def docker_project(aoenv, hosts, **runtime_extra):
    """Configure ``aoenv``'s project for the docker runtime: the scripted agent in the test image, its message
    log in a folder mounted read-write (the data dir is not in the container)."""
    logs = aoenv.root / "agentlogs"
    logs.mkdir(exist_ok=True)
    where = {"hosts": hosts} if isinstance(hosts, list) else {"host": hosts}
    aoenv.write_config(
        runtime={"plugin": "docker", "image": IMAGE, "network": "none", "mounts": [f"{logs}:{logs}:rw"],
                 **where, **runtime_extra},
        agentConfig={"command": f'python3 {AGENT} --log "{logs}/$AO_SESSION.agent.jsonl"'})
    return aoenv.load()


def received(env, sid):
    path = env.root / "agentlogs" / f"{sid}.agent.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def containers_of(engine, config):
    return engine.containers(prefix=handle_name(config.data_dir, ""))


# --------------------------------------------------------------------------------------- no engine needed

def config_problems(tmp_path, text: str) -> tuple[Path, str]:
    """Write ``text`` as the config file (its projects' path ``app`` is ``tmp_path/app``) and load it: the
    file's path and the AoError it gives."""
    from ao import config

    (tmp_path / "app").mkdir(exist_ok=True)
    path = tmp_path / "agent-orchestrator.yaml"
    path.write_text(text)
    with pytest.raises(AoError) as err:
        config.load(path, env={})
    return path, str(err.value)


def test_the_configuration_is_checked_with_positions(tmp_path):
    from ao import config

    path, text = config_problems(tmp_path, """\
projects:
  app:
    path: app
    runtime:
      plugin: docker
      image: agent
      netwrk: none
      memory: 4gb
      hosts: ["unix:///a.sock", {url: "ssh://me@box", capacity: 0}, "ftp://x"]
""")
    assert f"{path}:7:7: unknown key 'netwrk' (did you mean 'network'?) (at projects.app.runtime.netwrk)" in text
    assert f"{path}:8:15: memory must be a size such as 512m or 4g (got '4gb')" in text
    assert "must be at least 1 (got 0) (at projects.app.runtime.hosts[1].capacity)" in text
    assert "a Docker endpoint looks like unix:///path/docker.sock" in text and "hosts[2]" in text

    _, text = config_problems(tmp_path, """\
defaults:
  runtime: {plugin: docker, image: agent, hosts: ["unix:///a.sock", "tcp://box:2376"]}
projects:
  app: {path: app, runtime: docker, sessionPrefix: app}
  bare: {path: app, runtime: {plugin: docker, host: "unix:///b.sock", hosts: ["unix:///c.sock"]}, sessionPrefix: b}
""")
    assert f"{path}:2:69: tcp://box:2376: a tcp:// engine needs TLS" in text
    assert "set host (one engine) or hosts (several), not both (at projects.bare.runtime.hosts)" in text

    _, text = config_problems(tmp_path, "projects:\n  app: {path: app, runtime: docker}\n")
    assert ":2:29: runtime docker needs an image" in text
    [guide] = re.findall(r"see (/\S+\.md)", text)  # a full path to a page that is really there
    assert guide.endswith("sandbox.md") and os.path.isfile(guide)

    path.write_text("""\
defaults:
  runtime: {plugin: docker, image: agent, memory: 2g, mounts: ["~/.codex/auth.json:/home/agent/.codex/auth.json"]}
projects:
  app: {path: app, runtime: docker}
  fast: {path: app, sessionPrefix: f, runtime: {plugin: docker, cpus: 2, memory: 8g}}
  host: {path: app, sessionPrefix: h, runtime: tmux}
""")
    cfg = config.load(path, env={})
    assert cfg.projects["app"].runtime_settings["image"] == "agent"
    assert cfg.projects["fast"].runtime_settings == {
        "image": "agent", "memory": "8g", "cpus": 2, "mounts": ["~/.codex/auth.json:/home/agent/.codex/auth.json"]}
    assert (cfg.projects["host"].runtime, cfg.projects["host"].runtime_settings) == ("tmux", {})

    _, text = config_problems(tmp_path, """\
projects:
  app:
    path: app
    runtime: {plugin: docker, image: agent, homeFiles: [relative/file]}
""")
    assert re.search(r"homeFiles entries are SOURCE or SOURCE:~/TARGET.*homeFiles\[0\]", text)
    _, text = config_problems(tmp_path, """\
projects:
  app:
    path: app
    runtime: {plugin: docker, image: agent, homeFiles: ["~/.a:/etc/passwd", "~/.b:~/../x", "~/.c", /srv/x],
              env: [API_KEY, "CODEX_HOME=/codex"]}
""")
    assert "'/srv/x' is not under ~: say where it goes in the session's home, SOURCE:~/TARGET" in text
    assert "CODEX_HOME would move the agent's records out of the session's home, where ao reads them; leave it " \
           "unset in a container (at projects.app.runtime.env[1])" in text
    assert "target '/etc/passwd' must be inside the session's home (~/PATH) (at projects.app.runtime.homeFiles[0])" \
        in text
    assert "target '../x' must be inside the session's home" in text and "homeFiles[2]" not in text
    assert "env[0]" not in text


def test_mounts_hosts_and_run_arguments(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    assert docker_rt.mount_of("~/.claude/.credentials.json:/home/agent/.claude/.credentials.json") == docker_rt.Mount(
        f"{tmp_path}/.claude/.credentials.json", "/home/agent/.claude/.credentials.json", readonly=True)
    assert docker_rt.mount_of("~/.codex/auth.json", "/run/x/home") == docker_rt.Mount(  # ~ in a target: the box's home
        f"{tmp_path}/.codex/auth.json", "/run/x/home/.codex/auth.json", readonly=True)
    assert docker_rt.mount_of("/cache:rw") == docker_rt.Mount("/cache", "/cache", readonly=False)
    assert docker_rt.mount_of({"source": "/a,b", "readonly": False}).arg() == \
        'type=bind,"source=/a,b","target=/a,b"'
    tls = docker_rt.engine_of({"url": "tcp://box:2376", "certPath": "/certs", "name": "box", "capacity": 4})
    assert tls.argv("docker") == ["docker", "--host", "tcp://box:2376", "--tlsverify", "--tlscacert",
                                  "/certs/ca.pem", "--tlscert", "/certs/cert.pem", "--tlskey", "/certs/key.pem"]
    rt = runtime.get("docker", image="agent", hosts=["unix:///a.sock", {"url": "ssh://me@box", "name": "box"}],
                     network="none", cpus=1.5, memory="2g", env=["API_KEY", "UNSET_KEY", "SSH_AUTH_SOCK=/ssh-agent"])
    assert rt.location("ao-x-app-1@ssh://me@box") == "box"
    assert rt.location("ao-x-app-2@unix:///a.sock") == "unix:///a.sock"
    assert rt.attach_argv("ao-x-app-1@ssh://me@box") == [
        "docker", "--host", "ssh://me@box", "exec", "-it", "ao-x-app-1", "tmux", "-L", "ao", "attach-session",
        "-t", "=ao-x-app-1"]
    spec = runtime.LaunchSpec(name="ao-x-app-1", cwd=tmp_path, script=tmp_path / "s", run_dir=tmp_path / "run",
                              env={"AO_SESSION": "app-1", "PATH": "/host/bin", "HOME": "/root", "LANG": "C.UTF-8",
                                   "SSH_AUTH_SOCK": "/tmp/ssh-host/agent.1", "XDG_CONFIG_HOME": "/root/.config"})
    argv = rt._run_argv("ao-x-app-1", spec, tmp_path / "run")
    assert argv[argv.index("--network") + 1] == "none" and argv[argv.index("--memory") + 1] == "2g"
    assert "--cap-drop" in argv and "no-new-privileges" in argv and argv[argv.index("--pull") + 1] == "never"
    monkeypatch.setenv("API_KEY", "sk-123")
    monkeypatch.setenv("OTHER_SECRET", "nope")
    monkeypatch.delenv("UNSET_KEY", raising=False)
    assert rt._environment(spec, tmp_path / "run") == {"API_KEY": "sk-123", "AO_SESSION": "app-1", "LANG": "C.UTF-8",
                                                       "SSH_AUTH_SOCK": "/ssh-agent", "HOME": f"{tmp_path}/run/home"}
    with pytest.raises(AoError, match="unknown docker runtime option"):
        runtime.get("docker", imag="x")


def test_home_files_are_copied_into_each_new_session_home_once(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "me"))
    settings = tmp_path / "me" / ".claude" / "settings.json"
    settings.parent.mkdir(parents=True)
    settings.write_text('{"env": {}}')
    settings.chmod(0o600)
    (tmp_path / "dotfiles").mkdir()
    (tmp_path / "dotfiles" / "codex.toml").write_text('model = "o3"\n')
    (tmp_path / "me" / ".codex.toml").symlink_to(tmp_path / "dotfiles" / "codex.toml")  # a dotfiles link
    rt = runtime.get("docker", image="agent", homeFiles=["~/.claude", "~/.codex.toml:~/.codex/config.toml"])
    run_dir = tmp_path / "run"
    home = runtime.prepare_home(rt, run_dir)
    assert home == runtime.agent_home(rt, run_dir) == run_dir.resolve() / "home"
    assert home.stat().st_mode & 0o777 == 0o700
    assert (home / ".claude" / "settings.json").read_text() == '{"env": {}}'
    assert (home / ".claude" / "settings.json").stat().st_mode & 0o777 == 0o600  # the copy stays private
    copied = home / ".codex" / "config.toml"
    assert copied.read_text() == 'model = "o3"\n' and not copied.is_symlink()
    copied.write_text("the agent's own change\n")  # a restore keeps what the session changed
    runtime.prepare_home(rt, run_dir)
    assert copied.read_text() == "the agent's own change\n"
    assert sorted(p.name for p in home.rglob("*")) == [".claude", ".codex", "config.toml", "settings.json"]
    # the user's git identity, so the agent's commits are the user's (the repository's config is read-only)
    (tmp_path / "me" / ".gitconfig.local").write_text('[user]\n\tname = "José \\"Pepe\\" Núñez"\n\temail = jose@example.com\n')
    (tmp_path / "me" / ".gitconfig").write_text("[include]\n\tpath = ~/.gitconfig.local\n")  # as many keep it
    fresh = runtime.prepare_home(rt, tmp_path / "run6")
    assert subprocess.run(["git", "config", "--file", str(fresh / ".gitconfig"), "--get", "user.name"],
                          capture_output=True, text=True).stdout == 'José "Pepe" Núñez\n'
    assert (fresh / ".gitconfig").stat().st_mode & 0o777 == 0o600
    (tmp_path / "run7" / "home" / ".config" / "git").mkdir(parents=True)  # homeFiles brought git's own config
    (tmp_path / "run7" / "home" / ".config" / "git" / "config").write_text("[user]\n\tname = Other\n")
    assert not (runtime.prepare_home(rt, tmp_path / "run7") / ".gitconfig").exists()
    assert runtime.agent_home(runtime.get("tmux"), run_dir) is None  # on the host: ao's own home

    with pytest.raises(AoError, match=r"homeFiles: .*/missing does not exist"):
        runtime.prepare_home(runtime.get("docker", image="agent", homeFiles=["~/missing"]), tmp_path / "run2")
    (tmp_path / "run3" / "home").mkdir(parents=True)
    (tmp_path / "run3" / "home" / ".claude").symlink_to(tmp_path / "dotfiles")  # left by the agent
    with pytest.raises(AoError, match="leads out of the session's home"):
        runtime.prepare_home(runtime.get("docker", image="agent", homeFiles=["~/.codex.toml:~/.claude/x"]),
                             tmp_path / "run3")
    assert sorted(p.name for p in (tmp_path / "dotfiles").iterdir()) == ["codex.toml"]
    (tmp_path / "run4" / "home").mkdir(parents=True)
    (tmp_path / "run4" / "home" / ".config").symlink_to(tmp_path / "dotfiles")
    with pytest.raises(AoError, match="leads out of the session's home"):  # and no folder made out there first
        runtime.prepare_home(runtime.get("docker", image="agent", homeFiles=["~/.codex.toml:~/.config/deep/x"]),
                             tmp_path / "run4")
    assert sorted(p.name for p in (tmp_path / "dotfiles").iterdir()) == ["codex.toml"]
    (tmp_path / "run5").mkdir()
    (tmp_path / "run5" / "home").symlink_to(tmp_path / "me")  # the agent swapped its whole home for a link
    with pytest.raises(AoError, match="the session's home, is not a folder"):
        runtime.prepare_home(rt, tmp_path / "run5")
    assert sorted(p.name for p in (tmp_path / "me").iterdir()) == [".claude", ".codex.toml", ".gitconfig",
                                                                   ".gitconfig.local"]

    stamp = tmp_path / "activity"  # the watcher's "TIME PID"; the agent can write it too
    for text, expected in (("1712 42\n", (1712.0, 42)), ("1712\n", (1712.0, None)), ("1712 \u00b2\n", (1712.0, None)),
                           ("\u00b2 9\n", (None, 9))):
        stamp.write_text(text)
        at, pid = docker_rt._stamp(str(stamp))
        assert (at if expected[0] else None, pid) == expected, text



def test_docker_missing_is_a_clear_error_and_nothing_is_created(aoenv):
    with pytest.raises(AoError, match=r"^docker is not installed"):
        runtime.get("docker", image="x", docker_bin=str(aoenv.root / "no-docker")).check()
    docker_project(aoenv, "unix:///nonexistent/docker.sock")
    bin_dir = aoenv.root / "bin"
    bin_dir.mkdir()
    (bin_dir / "git").symlink_to(shutil.which("git"))
    run = aoenv.ao("spawn", "app", "12", env={**aoenv.env, "PATH": str(bin_dir)})  # git, and no docker client
    assert run.returncode == 1 and "docker is not installed (or not on PATH)" in run.stderr, run.stderr
    assert "Traceback" not in run.stderr
    if shutil.which("docker") is not None:  # a client, and no engine behind the socket
        run = aoenv.ao("spawn", "app", "12")
        assert run.returncode == 1 and "Traceback" not in run.stderr
        assert ("the Docker engine unix:///nonexistent/docker.sock is unreachable (is dockerd running there?)"
                in run.stderr), run.stderr
    assert Sessions(aoenv.load()).store.list() == [] and not (aoenv.data / "workspaces").exists()


def test_the_orchestrator_is_refused_in_a_container(aoenv):
    cfg = docker_project(aoenv, "unix:///nonexistent/docker.sock")
    with pytest.raises(AoError, match="cannot run in a container"):
        Sessions(cfg).spawn_orchestrator()


# ------------------------------------------------------------------------------------------ one engine

def test_a_session_in_a_container_end_to_end(aoenv, engine):
    cfg = docker_project(aoenv, engine.url)
    manager = Sessions(cfg)
    s = manager.spawn(SpawnRequest(project="app", target="12"))
    assert (s.runtime, s.runtime_handle) == ("docker", f"{handle_name(cfg.data_dir, s.id)}@{engine.url}")
    prompt = wait_for(lambda: received(aoenv, s.id), what="the prompt")
    assert len(prompt) == 1 and "Add a health endpoint" in prompt[0]["text"]

    run = aoenv.ao("send", s.id, "Please also add a test.\nAnd a second line.")
    assert run.returncode == 0, run.stderr
    wait_for(lambda: len(received(aoenv, s.id)) == 2, what="the message")
    assert received(aoenv, s.id)[1]["text"] == "Please also add a test.\nAnd a second line."

    run = aoenv.ao("status", "--json")
    assert run.returncode == 0, run.stderr
    row = json.loads(run.stdout)[0]
    assert (row["session"], row["host"], row["alive"], row["status"]) == (s.id, engine.url, True, "working")
    table = aoenv.ao("status")  # piped: plain tab-separated lines, the host last
    assert table.stdout.rstrip("\n").split("\t")[-1] == engine.url

    # git in the container: the worktree is a valid repository, commits land in the project's object store
    manager.send(s.id, "!sh git -c user.name=a -c user.email=a@b commit -q --allow-empty -m from-the-box "
                       "&& git log -1 --format=%s")
    wait_for(lambda: "from-the-box\n" in manager.runtime("docker").capture(s.runtime_handle) + "\n",
             what="the commit")
    assert subprocess.run(["git", "log", "-1", "--format=%s", s.branch], cwd=aoenv.project, capture_output=True,
                          text=True).stdout.strip() == "from-the-box"

    # an agent that exits: the container stops, and its last output stays readable. The container can be gone
    # before the send has seen the agent take the text (it stops up to 2 s after its agent): said, not hidden
    with contextlib.suppress(SendError):
        manager.send(s.id, "!exit 3")
    rt = manager.runtime("docker")
    wait_for(lambda: not rt.probe([s.runtime_handle])[s.runtime_handle].alive, timeout=15, what="the exit")
    assert rt.capture(s.runtime_handle).splitlines()[-1].startswith(("bye", "Pane is dead (status 3"))
    assert engine.docker("inspect", "--format", "{{.State.ExitCode}}",
                         s.runtime_handle.split("@")[0]).stdout.strip() == b"3"

    before = len(received(aoenv, s.id))
    restored = manager.restore(s.id)
    assert restored.runtime_handle == s.runtime_handle
    wait_for(lambda: "agent>" in rt.capture(s.runtime_handle), what="the restored agent")
    manager.send(s.id, "back again")
    wait_for(lambda: len(received(aoenv, s.id)) > before, what="a message to the restored agent")
    assert [(m["n"], m["text"]) for m in received(aoenv, s.id)[before:]] == [(before + 1, "back again")]

    manager.kill(s.id)
    assert containers_of(engine, cfg) == []
    manager.kill(s.id)  # idempotent: the container is gone already


def test_the_send_protocol_is_the_same_in_a_container_and_the_poller_needs_no_docker_exec(aoenv, engine,
                                                                                          monkeypatch):
    from ao.plugins.runtime import AgentWaiting
    from ao.poller import Poller

    cfg = docker_project(aoenv, engine.url)
    poller = Poller(cfg, console=None)
    manager = poller.manager
    s = manager.spawn(SpawnRequest(project="app", target="12"))
    wait_for(lambda: received(aoenv, s.id), what="the prompt")
    screen = manager.run_dir("app", s.id) / docker_rt.SCREEN
    wait_for(lambda: screen.exists() and "agent>" in screen.read_text(), what="the container's screen file")
    poller.cycle()

    manager.send(s.id, "!ask")  # the agent asks a y/n question
    with pytest.raises(AgentWaiting) as caught:  # dialog-safe: nothing typed into the question
        manager.send(s.id, "Hey, the build is red.")
    assert "yes/no" in caught.value.waiting_for
    assert [m["text"] for m in received(aoenv, s.id)][1:] == ["!ask"]

    execs = []  # from here the poller must see the question without a single docker exec
    real = docker_rt.DockerRuntime._tmux
    monkeypatch.setattr(docker_rt.DockerRuntime, "_tmux", lambda self, e, name: execs.append(name) or real(self, e, name))

    def status_after_a_cycle():
        poller.cycle()
        return poller.store.get(s.id).status

    wait_for(lambda: status_after_a_cycle() == "needs_input", timeout=20, what="needs_input from the screen file")
    assert execs == [] and "proceed" in poller.store.get(s.id).meta["activity"].get("detail", "").lower()
    monkeypatch.undo()

    manager.send(s.id, "y", answer=True)
    wait_for(lambda: [m["text"] for m in received(aoenv, s.id)][1:] == ["!ask", "y"], what="the answer")
    wait_for(lambda: status_after_a_cycle() == "working", timeout=20, what="working once the answer shows")
    manager.kill(s.id)
    poller.close()


def test_an_agent_in_a_container_sees_only_its_mounts_and_no_secret(aoenv, engine, monkeypatch):
    secret = aoenv.root / "secret.txt"
    secret.write_text("top secret")
    monkeypatch.setenv("AO_TEST_SECRET", "hunter2-not-for-agents")
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_notforagents")
    monkeypatch.setenv("ALLOWED_VAR", "given-on-purpose")
    credentials = aoenv.root / "home" / ".codex" / "auth.json"  # ~ of ao (the test's HOME)
    credentials.parent.mkdir()
    credentials.write_text('{"token": "the-agents-own"}')
    cfg = docker_project(aoenv, engine.url, env=["ALLOWED_VAR"], mounts=[
        f"{aoenv.root / 'agentlogs'}:{aoenv.root / 'agentlogs'}:rw", "~/.codex/auth.json"])
    manager = Sessions(cfg)
    s = manager.spawn(SpawnRequest(project="app", target="12"))
    wait_for(lambda: received(aoenv, s.id), what="the prompt")
    git_dir = aoenv.project / ".git"
    manager.send(s.id, f"!sh cat {secret}; cat {aoenv.project}/README.md; ls -a {aoenv.root} | sed 's/^/entry:/'; cat /proc/1/environ "
                       f"| tr '\\0' '\\n' | sort; env | sort; touch {git_dir}/hooks/post-checkout; "
                       f"echo '[core]fsmonitor=evil' >> {git_dir}/config; cat ~/.codex/auth.json; "
                       f"echo stolen >> ~/.codex/auth.json; echo done-$((6*7))")
    rt = manager.runtime("docker")
    pane = wait_for(lambda: "done-42" in rt.capture(s.runtime_handle, 400) and rt.capture(s.runtime_handle, 400),
                    what="the commands' output")
    assert "top secret" not in pane and f"cat: {secret}: No such file or directory" in pane
    assert f"cat: {aoenv.project}/README.md: No such file or directory" in pane  # only the project's .git is there
    entries = {line[len("entry:"):] for line in pane.splitlines() if line.startswith("entry:")}
    assert entries == {".", "..", "app", "origin.git", "data", "agentlogs"}  # no secret.txt, config or home
    assert "hunter2" not in pane and "ghp_" not in pane
    home = manager.run_dir("app", s.id) / "home"
    assert "ALLOWED_VAR=given-on-purpose" in pane and f"HOME={home}" in pane
    assert f"touch: cannot touch '{git_dir}/hooks/post-checkout': Read-only file system" in pane
    assert "config: Read-only file system" in pane
    assert "fsmonitor" not in (git_dir / "config").read_text() and not (git_dir / "hooks" / "post-checkout").exists()
    assert '{"token": "the-agents-own"}' in pane  # the credentials it was given, read-only
    assert f"{home}/.codex/auth.json: Read-only file system" in pane and "stolen" not in credentials.read_text()

    inspected = json.loads(engine.docker("inspect", s.runtime_handle.split("@")[0]).stdout)[0]
    env = dict(item.split("=", 1) for item in inspected["Config"]["Env"])
    agent_env = manager._agent_env(cfg.projects["app"], s.id)  # ao.environment's allowlist and session variables
    assert set(env) == (set(agent_env) - set(docker_rt.HOST_ENV)) | {"HOME", "PATH", "ALLOWED_VAR"}
    assert env["PATH"] != os.environ["PATH"] and env["HOME"] == str(home)  # the image's PATH, the session's home
    assert not {"AO_TEST_SECRET", "GITHUB_TOKEN", "SSH_AUTH_SOCK", "XDG_CONFIG_HOME"} & set(env)
    assert inspected["HostConfig"]["CapDrop"] == ["ALL"] and inspected["HostConfig"]["NetworkMode"] == "none"
    assert not (manager.run_dir("app", s.id) / docker_rt.ENV_FILE).exists()  # gone once docker has read it
    manager.kill(s.id)


def test_a_clone_workspace_in_a_container_commits_and_pushes_without_the_project(aoenv, engine):
    docker_project(aoenv, engine.url)
    data = yaml.safe_load(aoenv.config.read_text())
    data["projects"]["app"]["workspace"] = "clone"
    aoenv.config.write_text(yaml.safe_dump(data))
    manager = Sessions(aoenv.load())
    s = manager.spawn(SpawnRequest(project="app", target="12"))
    wait_for(lambda: received(aoenv, s.id), what="the prompt")
    manager.send(s.id, f"!sh git -c user.name=a -c user.email=a@b commit -q --allow-empty -m cloned-work && "
                       f"git push -q origin HEAD 2>&1; echo pushed-$?; ls {aoenv.project}/.git 2>&1 | head -1")
    rt = manager.runtime("docker")
    pane = wait_for(lambda: "pushed-" in rt.capture(s.runtime_handle) and rt.capture(s.runtime_handle),
                    what="the push")
    assert "pushed-0" in pane and f"{aoenv.project}/.git': No such file or directory" in pane  # a clone needs no project
    assert subprocess.run(["git", "log", "-1", "--format=%s", s.branch], cwd=aoenv.origin, capture_output=True,
                          text=True).stdout.strip() == "cloned-work"
    manager.kill(s.id)


def test_the_whole_local_workflow_runs_in_containers(engine, tmp_path, monkeypatch):
    """ao demo's three issues (a CI failure fixed, a review addressed, a clean one), every agent in a container:
    spawn, prompt, CI failure, send, review, merge, cleanup, and no container left."""
    from ao import demo

    project, config_path = demo.build_project(tmp_path)
    data = yaml.safe_load(config_path.read_text())
    logs = tmp_path / "agentlogs"
    logs.mkdir()
    scripts = tmp_path / "scripts"
    p = data["projects"]["demo"]
    p["runtime"] = {"plugin": "docker", "image": IMAGE, "host": engine.url, "network": "none",
                    "mounts": [str(scripts), f"{logs}:{logs}:rw"]}
    p["agentConfig"]["command"] = (f'python3 {AGENT} --log "{logs}/$AO_SESSION.agent.jsonl" '
                                   f'--script "{scripts}/$(git rev-parse --abbrev-ref HEAD | tr / -).json"')
    config_path.write_text(yaml.safe_dump(data))
    monkeypatch.setenv("AO_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("AO_CONFIG_PATH", str(config_path))
    run = demo.Demo(root=tmp_path, socket="unused", say=lambda line: None)
    result = demo._drive(run, config_path)

    one = check_demo_run(result)["1"]
    messages = [json.loads(line)["text"] for line in (logs / f"{one}.agent.jsonl").read_text().splitlines()]
    assert "Your task" in messages[0] and any("greet('Ada') returned" in m for m in messages[1:])
    assert engine.containers(prefix=handle_name(tmp_path / "data", "")) == []  # cleanup removed every container
    merged = subprocess.run(["git", "log", "--format=%s", "main"], cwd=tmp_path / "origin.git", capture_output=True,
                            text=True).stdout
    assert "Fix greet() punctuation" in merged and "Document count_words()" in merged
    demo._wait_for_ci_jobs(tmp_path)


def one_session_through(aoenv, engine, host: dict, message: str):
    """Spawn, prompt, send and kill one session on the engine ``host`` names (reached some other way than its
    socket); the session."""
    cfg = docker_project(aoenv, [host])
    manager = Sessions(cfg)
    s = manager.spawn(SpawnRequest(project="app", target="12"))
    assert s.runtime_handle.endswith("@" + host["url"]) and manager.host_of(s) == host["name"]
    wait_for(lambda: received(aoenv, s.id), what="the prompt")
    manager.send(s.id, message)
    wait_for(lambda: [m["text"] for m in received(aoenv, s.id)][1:] == [message], what="the message")
    assert manager.runtime("docker").probe([s.runtime_handle])[s.runtime_handle].alive
    manager.kill(s.id)
    assert containers_of(engine, cfg) == []
    return s


def test_a_tcp_engine_with_tls_runs_sessions_and_refuses_a_certificate_it_does_not_know(aoenv, engine, tmp_path):
    """The same engine through tcp:// with TLS, as a remote one is reached: client certificates from certPath."""
    from dockerkit import make_certs

    s = one_session_through(aoenv, engine, {"url": engine.tls_url, "name": "remote",
                                            "certPath": str(engine.client_certs)}, "over TLS")

    strangers = make_certs(tmp_path / "other-ca") / "client"  # signed by a CA the engine does not trust
    cfg = docker_project(aoenv, [{"url": engine.tls_url, "name": "remote", "certPath": str(strangers)}])
    with pytest.raises(AoError, match=r"the Docker engine remote and ao do not accept each other's TLS certificates "
                                      r"\(certPath .*other-ca/client: .*x509: certificate signed by unknown authority"):
        Sessions(cfg).spawn(SpawnRequest(project="app", target="12"))
    assert containers_of(engine, cfg) == [] and [x.id for x in Sessions(cfg).store.list()] == [s.id]  # nothing new


def test_an_ssh_engine_runs_sessions_through_ssh_and_a_refused_key_is_said_clearly(aoenv, engine, tmp_path,
                                                                                      monkeypatch):
    """The same engine as ``ssh://root@127.0.0.1:PORT`` through a private OpenSSH server: the docker CLI's own
    ssh transport (``docker system dial-stdio`` on the far side), as a remote machine is reached."""
    from dockerkit import Sshd, require_sshd

    require_sshd()
    sshd = Sshd(tmp_path / "sshd", docker_host=engine.url).start()
    try:
        monkeypatch.setenv("PATH", f"{sshd.bin}:{os.environ['PATH']}")
        s = one_session_through(aoenv, engine, {"url": sshd.url, "name": "box"}, "over ssh")
        cfg = aoenv.load()

        sshd.use_key("stranger")  # a key the server does not know
        with pytest.raises(AoError, match=r"^ssh to the Docker engine box failed: .*Permission denied \(publickey\)"):
            Sessions(cfg).spawn(SpawnRequest(project="app", target="12"))
        assert containers_of(engine, cfg) == [] and [x.id for x in Sessions(cfg).store.list()] == [s.id]
    finally:
        sshd.stop()


# ------------------------------------------------------------------------------ a real agent CLI inside

# The real CLIs in the test image: their own executables mounted in (Claude Code's and opencode's need only libc,
# Codex's is static, aider's virtualenv runs on its Python, mounted at the same path), and the files of the
# test's seeded home each needs, copied into the session's home. (program, seeded files, where its records land
# in the session's home (None: the run folder), what a resuming restore.sh says)
IN_IMAGE = {
    "claude-code": ("claude", [".claude.json", ".claude/settings.json"], ".claude/projects/*/*.jsonl", "--resume "),
    "codex": ("codex", [".codex/config.toml"], ".codex/sessions/*/*/*/rollout-*.jsonl", " resume "),
    "opencode": ("opencode", [".config/opencode/opencode.json", ".config/opencode/package.json",
                              ".config/opencode/package-lock.json"], ".local/share/opencode/opencode.db", "--session "),
    "aider": ("aider", [".aider.conf.yml", ".aider/analytics.json", ".aider/installs.json",
                        ".aider/caches/model_prices_and_context_window.json"], None, "--restore-chat-history"),
}


def cli_mounts(agent: str) -> list[str]:
    """What puts the host's pinned CLI into the test image (agentkit installs them under TOOLS)."""
    from agentkit import BIN

    tools = BIN.parent
    if agent == "claude-code":
        return [f"{(BIN / 'claude').resolve()}:/usr/local/bin/claude"]
    if agent == "codex":  # the npm package's launcher is a node script; the binary it runs is static
        return [f"{next((tools / 'npm/node_modules/@openai').glob('codex-linux-x64/vendor/*/bin/codex'))}"
                ":/usr/local/bin/codex"]
    if agent == "opencode":  # and the plugin package it wants in its config folder (a link in the seeded home)
        return [f"{(BIN / 'opencode').resolve()}:/usr/local/bin/opencode",
                f"{tools / 'opencode/node_modules'}:~/.config/opencode/node_modules"]
    python = Path(os.path.realpath(tools / "aider/bin/python3")).parent.parent  # the venv's base Python
    return [f"{tools / 'aider'}:{tools / 'aider'}", f"{tools / 'aider/bin/aider'}:/usr/local/bin/aider",
            *([f"{python}:{python}"] if python != Path("/usr") else [])]


@pytest.mark.parametrize("agent", sorted(IN_IMAGE))
def test_a_real_agent_cli_in_a_container_is_read_from_its_own_home(engine, tmp_path, agent):
    """The four CLIs themselves (pinned) against the fake model, on the host's network. Their transcripts,
    status files, rollouts and store are in the session's home, not ao's: ao must read them there. That home
    starts with the user's settings (``homeFiles``) and the workspace's trust (``trustWorkspace``, written into
    that home), so no first-run screen shows. Then: the prompt once, ``ready`` from the agent's own signals,
    tokens counted from its records, ``ao send`` confirmed by its receipt, and a restore that resumes the
    conversation (found in that home)."""
    from agentkit import MODELS, kill_all, make_real_env, write_config

    program, seeded, records, resumes = IN_IMAGE[agent]
    env = make_real_env(tmp_path, agent)
    (env.home / ".gitconfig").write_text("[user]\n\tname = Ann\n\temail = ann@example.com\n")  # the user's
    try:
        write_config(env, agentConfig={"trustWorkspace": True, **({"model": MODELS[agent]} if MODELS[agent] else {})},
                     runtime={"plugin": "docker", "image": IMAGE, "host": engine.url, "network": "host",
                              "mounts": cli_mounts(agent),
                              "homeFiles": [f"{env.home}/{name}:~/{name}" for name in seeded
                                            if (env.home / name).exists()]})
        sid = env.spawn("12")["session"]
        record = env.record(sid)
        manager = env.manager()
        home, rt = manager.agent_home(record), manager.runtime("docker")
        assert home == manager.run_dir("app", sid).resolve() / "home"
        env.model.wait(lambda m: any(c.answer == "text" for c in m.turns()), 120, "the first answer")
        assert sum(record.prompt.splitlines()[0] in m for m in env.model.user_messages()) == 1
        if records:
            wait_for(lambda: list(home.glob(records)), what=f"{agent}'s records in the session's home")
            assert not list(env.home.glob(records))  # none in ao's home

        row = env.wait_status(sid, lambda r: r["activity"] == "ready", 60, "ready from the agent's own signals")
        assert row["host"] == engine.url, row
        if agent != "aider":  # aider prints its token counts only for models it has prices for
            assert row["tokens_in"] > 0, row  # usage read from the session's home
        if agent == "claude-code":  # its status file names its pid as it sees it: the container's
            pid = rt.probe([record.runtime_handle])[record.runtime_handle].pid
            assert pid is not None and (home / ".claude" / "sessions" / f"{pid}.json").exists()

        run = env.ao("send", sid, "--wait", "60", "Second message, from ao send.", timeout=120)
        assert run.returncode == 0 and "not confirmed" not in run.stdout + run.stderr, run.stdout + run.stderr
        env.model.wait_for_user_message("Second message, from ao send.", 60)

        with contextlib.suppress(SendError):  # the agent exits; it may be gone before the send is confirmed
            rt.send(record.runtime_handle, "/exit")
        env.wait_status(sid, lambda r: r["status"] == "exited", 60, "exited")
        run = env.ao("session", "restore", sid)
        assert run.returncode == 0, run.stderr
        assert resumes in (manager.run_dir("app", sid) / "restore.sh").read_text()
        run = env.ao("send", sid, "--wait", "120", "Third message, after the restore.", timeout=180)
        assert run.returncode == 0, run.stdout + run.stderr
        call = env.model.wait_for_user_message("Third message, after the restore.", 60)
        assert any("Second message, from ao send." in text for text in call.user_texts), \
            "the restored agent did not resume its conversation"
        assert env.model.rejected == [], [(c.path, c.error) for c in env.model.rejected]
        run = env.ao("session", "kill", sid)
        assert run.returncode == 0, run.stderr
        assert record.runtime_handle.split("@")[0] not in engine.containers()
    finally:
        kill_all(env)
        env.model.stop()
        shutil.rmtree(env.data, ignore_errors=True)  # Codex copies its 424 MB app-server into each home


# ------------------------------------------------------------------------------------------ two engines

@pytest.fixture
def second_engine(engine, tmp_path_factory):
    e = started_engine(tmp_path_factory.mktemp("dockerd-b"))
    yield e
    e.stop()


def test_two_engines_share_the_sessions_and_a_lost_one_ends_its_own(aoenv, engine, second_engine):
    from ao.poller import Poller

    cfg = docker_project(aoenv, [{"url": engine.url, "name": "a"}, {"url": second_engine.url, "name": "b"}])
    poller = Poller(cfg, console=None)
    manager = poller.manager
    spawned = [manager.spawn(SpawnRequest(project="app", target="12")) for _ in range(4)]
    hosts = [manager.host_of(s) for s in spawned]
    assert hosts == ["a", "b", "a", "b"]  # fewest live sessions first; a tie goes to the engine listed first
    assert len(containers_of(engine, cfg)) == 2 and len(containers_of(second_engine, cfg)) == 2
    for s in spawned:
        wait_for(lambda s=s: received(aoenv, s.id), what=f"{s.id}'s prompt")
    assert poller.cycle().errors == []

    second_engine.stop()  # the engine is lost mid-run
    first = poller.cycle()
    assert [manager.store.get(s.id).status for s in spawned] == ["working"] * 4  # one failed probe is not enough
    assert any(e["type"] == "runtime.host_down" and e["host"] == "b" for e in _events(aoenv))
    assert not [a for a in first.actions if a["reaction"] == "agent-exited"]
    poller.cycle()
    assert [manager.store.get(s.id).status for s in spawned] == ["working", "exited", "working", "exited"]

    fresh = manager.spawn(SpawnRequest(project="app", target="after the loss"))
    assert manager.host_of(fresh) == "a"
    assert len([e for e in _events(aoenv) if e["type"] == "runtime.host_down"]) == 1  # once per outage
    run = aoenv.ao("status", "--json")
    assert {r["session"]: (r["host"], r["alive"]) for r in json.loads(run.stdout)}[fresh.id] == ("a", True)
    for s in (spawned[0], spawned[2], fresh):
        manager.kill(s.id)
    with pytest.raises(AoError, match="Docker engine b is unreachable"):
        manager.kill(spawned[1].id)  # nobody can say whether that container is gone: never pretend it is
    assert containers_of(engine, cfg) == []
    poller.close()


def test_capacity_caps_an_engine_and_a_full_fleet_says_so(aoenv, engine, second_engine):
    cfg = docker_project(aoenv, [{"url": engine.url, "name": "a", "capacity": 1},
                                 {"url": second_engine.url, "name": "b", "capacity": 2}])
    manager = Sessions(cfg)
    spawned = [manager.spawn(SpawnRequest(project="app", target=f"task {i}")) for i in range(3)]
    assert sorted(manager.host_of(s) for s in spawned) == ["a", "b", "b"]
    with pytest.raises(AoError, match=r"no Docker engine can take another session:\n  a: full \(1 of 1\)\n  "
                                      r"b: full \(2 of 2\)"):
        manager.spawn(SpawnRequest(project="app", target="one too many"))
    assert len(manager.store.list()) == 3  # the failed spawn left nothing behind
    for s in spawned:
        manager.kill(s.id)
    assert containers_of(engine, cfg) == [] and containers_of(second_engine, cfg) == []


def _events(env):
    path = env.data / "events.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

