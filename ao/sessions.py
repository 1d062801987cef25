"""Session lifecycle operations: spawn, send, kill, restore, cleanup (SPEC 5).

This is where the plugins meet the store. Each operation is a short sequence of steps; spawn keeps an undo
stack so that a failure at any step (or Ctrl-C) removes what the earlier steps made: nothing is left
half-created. Observing sessions (activity, status) lives in :mod:`ao.observe`.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import shlex
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ao import events
from ao.config import Config, Project
from ao.errors import AoError, did_you_mean
from ao.locks import file_lock
from ao.store import Session, SessionStore

AGENT_PROGRAMS = {"claude-code": "claude", "codex": "codex", "aider": "aider", "opencode": "opencode"}
RUN_DIR = "run"                 # projects/<p>/run/<id>/: launch script, prompt, runtime files
WORKSPACES = "workspaces"       # <dataDir>/workspaces/<p>/<id>: the worktrees and clones
BRANCH_ATTEMPTS = 20            # feat/issue-7, feat/issue-7-2, ... for repeated work on one issue
PROMPT_READY_TIMEOUT = 30.0     # how long a "send" agent may take to be ready for its prompt
RECEIPT_TIMEOUT = 10.0          # how long an agent may take to record a message it was given
GIT_LOCK_TIMEOUT = 600.0        # a fetch of a big repository by a concurrent spawn
SESSION_LOCK_TIMEOUT = 60.0     # a send (confirmation included) or a cleanup of the same session
EXIT_SETTLE = 10.0              # how long an agent seen exiting may keep its terminal before a restore
_SLUG = re.compile(r"[^a-z0-9]+")


# ------------------------------------------------------------------------------------------- naming

def handle_name(data_dir: Path, session_id: str) -> str:
    """The runtime name of a session: unique per data dir, so two ao homes never share a tmux session."""
    digest = hashlib.sha1(str(Path(data_dir).expanduser().resolve()).encode()).hexdigest()[:6]
    return f"ao-{digest}-{session_id}"


def slug(text: str, limit: int = 40) -> str:
    """A branch-safe slug of a task: lower case words joined by '-', cut at a word boundary."""
    words = [w for w in _SLUG.split(text.lower()) if w]
    out = ""
    for word in words:
        candidate = f"{out}-{word}" if out else word
        if len(candidate) > limit:
            break
        out = candidate
    return out or (words[0][:limit] if words else "")


def default_branch_name(session_id: str, issue: str = "", task: str = "") -> str:
    """``feat/issue-<n>`` for an issue, ``feat/<slug of the task>`` for a task, else ``feat/<session id>``."""
    if issue:
        return f"feat/issue-{re.sub(r'[^A-Za-z0-9._-]+', '-', issue.lstrip('#')).strip('-.')}"
    return f"feat/{slug(task) or session_id}"


_BAD_REF = re.compile(r"(^[-/.])|([/.]$)|\.\.|//|@\{|[\x00-\x20~^:?*\[\\\x7f]|\.lock(/|$)|/\.")


def check_branch_name(name: str) -> str:
    """git's rules for a branch name (check-ref-format), checked before anything is created."""
    if not name or _BAD_REF.search(name) or name == "@":
        raise AoError(f"'{name}' is not a valid git branch name")
    return name


# ------------------------------------------------------------------------------------------ records

@dataclass
class SpawnRequest:
    project: str
    target: str | None = None      # an issue id, or a free-form task
    prompt: str | None = None      # extra instructions for the agent
    agent: str | None = None       # overrides the project's agent plugin
    branch: str | None = None      # an explicit branch name (must not exist yet)
    role: str = "worker"
    admission: str = ""            # the queue's admission token, written into the record as it is created


@dataclass
class CleanupItem:
    session: Session
    action: str                    # "clean" | "keep"
    reason: str


@dataclass
class _Undo:
    """Steps to take back, newest first, if a later step fails."""

    steps: list[tuple[str, Callable[[], None]]] = field(default_factory=list)

    def push(self, what: str, fn: Callable[[], None]) -> None:
        self.steps.append((what, fn))

    def run(self) -> list[str]:
        """Undo everything; return what could not be undone (each as a message), never raise."""
        failed = []
        for what, fn in reversed(self.steps):
            try:
                fn()
            except Exception as exc:  # keep undoing the rest; the caller reports what is left
                failed.append(f"could not {what}: {exc}")
        self.steps.clear()
        return failed


# ---------------------------------------------------------------------------------------- the manager

class Sessions:
    """Lifecycle operations over one config's sessions. Plugins are created once per name and reused."""

    def __init__(self, config: Config, store: SessionStore | None = None,
                 clock: Callable[[], float] = time.time,
                 progress: Callable[[str], None] | None = None) -> None:
        self.config = config
        self.store = store or SessionStore(config.data_dir, clock=clock)
        self.clock = clock
        self.progress = progress or (lambda message: None)
        self._plugins: dict[tuple[str, str], Any] = {}

    # -- plugins --------------------------------------------------------------------------------

    def _plugin(self, slot: str, name: str) -> Any:
        key = (slot, name)
        if key not in self._plugins:
            from ao.plugins import agent, workspace

            self._plugins[key] = {"workspace": workspace, "agent": agent}[slot].get(name)
        return self._plugins[key]

    def runtime(self, name: str, project: Project | None = None) -> Any:
        """Runtime ``name``. With the ``project`` that uses it, set up with that project's settings (the one
        to start its sessions with); else one that can observe and reach any project's sessions."""
        from ao.plugins import runtime

        own = project is not None and project.runtime == name and project.runtime_settings
        key = ("runtime", f"{name}@{project.id}" if own else name)
        if key not in self._plugins:
            options = project.runtime_settings if own else runtime.shared_options(
                name, [p.runtime_settings for p in self.config.projects.values() if p.runtime == name])
            plugin = runtime.get(name, **options)
            if hasattr(plugin, "bind"):
                plugin.bind(self.config.data_dir, self._runtime_event)
            self._plugins[key] = plugin
        return self._plugins[key]

    def _runtime_event(self, kind: str, **fields: Any) -> None:
        """A runtime's own news (a Docker engine down or back): the event log, and the user when spawning."""
        events.append(self.config.data_dir, kind, ts=self.clock(), secrets=self.config.secrets(), **fields)
        self.progress(f"{kind}: {fields.get('host', '')} {fields.get('error', '')}".rstrip())

    def host_of(self, session: Session) -> str | None:
        """Where a session's runtime runs, for runtimes with more than one place (a Docker engine)."""
        if not session.runtime_handle or not session.runtime:
            return None
        runtime = self.runtime(session.runtime)
        return runtime.location(session.runtime_handle) if hasattr(runtime, "location") else None

    def agent(self, name: str) -> Any:
        return self._plugin("agent", name)

    def workspace(self, name: str) -> Any:
        return self._plugin("workspace", name)

    def tracker(self, project: Project) -> Any:
        from ao.plugins import tracker

        settings = dict(project.tracker)
        name = settings.pop("plugin", "local")
        if name == "github":  # the tracker's repo and API host default to the project's
            settings.setdefault("repo", project.repo)
            if project.scm.get("baseUrl"):
                settings.setdefault("baseUrl", project.scm["baseUrl"])
        return tracker.get(name, project_path=project.path, settings=settings)

    # -- paths ----------------------------------------------------------------------------------

    def run_dir(self, project: str, session_id: str) -> Path:
        return self.store.project_dir(project) / RUN_DIR / session_id

    def workspace_path(self, project: str, session_id: str) -> Path:
        return self.config.data_dir / WORKSPACES / project / session_id

    # -- lookups --------------------------------------------------------------------------------

    def find(self, session_id: str) -> tuple[Session, Project]:
        """A live session and its project; unknown ids get an error listing the sessions there are."""
        session = self.store.find(session_id)
        project = self.config.projects.get(session.project)
        if project is None:
            raise AoError(f"session '{session_id}' belongs to project '{session.project}', which is no longer "
                          f"in {self.config.file}")
        return session, project

    # -- spawn ----------------------------------------------------------------------------------

    def spawn(self, request: SpawnRequest) -> Session:
        """Create a session end to end. On any failure every earlier step is undone and AoError raised."""
        project = self.config.project(request.project)
        agent_name = request.agent or project.agent
        from ao.plugins.agent import MODULES as AGENTS

        if agent_name not in AGENTS:
            raise AoError(f"unknown agent '{agent_name}'{did_you_mean(agent_name, AGENTS)}; "
                          f"available: {', '.join(AGENTS)}")
        if request.branch:
            check_branch_name(request.branch)
        runtime = self.runtime(project.runtime, project)
        runtime.check()  # tmux missing: say so before anything is created
        if not getattr(runtime, "agent_in_image", False):
            check_agent_installed(agent_name)
        agent = self.agent(agent_name)
        workspace = self.workspace(project.workspace)
        issue, task = self._resolve_target(project, request.target)
        from ao import git

        if not git.is_repo(project.path):
            raise AoError(f"{project.path}: not a git repository (project '{project.id}' path must point at a "
                          "git checkout)")

        undo = _Undo()
        try:
            return self._spawn(request, project, agent_name, agent, runtime, workspace, issue, task, undo)
        except BaseException as exc:
            leftovers = undo.run()
            if leftovers:
                detail = "\n  ".join(leftovers)
                if isinstance(exc, AoError):
                    raise AoError(f"{exc}\nrolling back left something behind:\n  {detail}") from None
                events.log(self.config.data_dir, f"spawn rollback incomplete: {detail}", console=None)
            raise

    def _resolve_target(self, project: Project, target: str | None) -> tuple[Any, str]:
        """(issue or None, task text). A lone argument is an issue id when the tracker says it looks like one."""
        if not target or not target.strip():
            return None, ""
        tracker = self.tracker(project)
        if tracker.looks_like_id(target.strip()):
            issue = tracker.get(target.strip())
            return issue, issue.title
        return None, target.strip()

    def _spawn(self, request: SpawnRequest, project: Project, agent_name: str, agent: Any, runtime: Any,
               workspace: Any, issue: Any, task: str, undo: _Undo) -> Session:
        session = self.store.create(
            project.id, project.session_prefix, role=request.role, status="spawning",
            issue=issue.id if issue else "", task=task, agent=agent_name, runtime=project.runtime,
            meta={"admission": request.admission} if request.admission else {})
        sid = session.id
        undo.push(f"remove the session record {sid}", lambda: self.store.delete(sid, project.id))
        self.progress(f"{sid}: session allocated")

        ws_path = self.workspace_path(project.id, sid)
        env = self._agent_env(project, sid)
        branch = self._create_workspace(project, workspace, request, sid, issue, task, ws_path, env, undo)
        self.progress(f"{sid}: workspace ready at {ws_path} on {branch}")

        from ao import prompts

        prompt = prompts.build_prompt(
            project=project.id, session_id=sid, branch=branch, issue=issue, task="" if issue else task,
            extra=request.prompt or "", scm_plugin=project.scm.get("plugin", "local"),
            default_branch=project.default_branch, agent_rules=project.agent_rules,
            agent_rules_file=project.agent_rules_file)
        handle, prompt_file = self._launch(project, agent, runtime, sid, ws_path, prompt, undo)
        with self.session_lock(session):
            if self._recheck(session).status != "spawning":  # `ao session kill` while it was being set up
                raise AoError(f"session {sid} was stopped while it was being spawned; spawn undone")
            session = self.store.update(
                sid, project.id, status="working", branch=branch, workspace=str(ws_path), prompt=prompt,
                runtime_handle=handle, meta={**session.meta, "activity": {"at": self.clock()},
                                             "prompt_file": str(prompt_file)})
        undo.steps.clear()  # the session exists now: from here on a failure is the session's, not the spawn's
        self._event("session.spawned", session, branch=branch, issue=session.issue, agent=agent_name)
        self._event("session.working", session)
        return session

    def _launch(self, project: Project, agent: Any, runtime: Any, sid: str, cwd: Path, prompt: str,
                undo: _Undo, created: bool = True) -> tuple[str, Path]:
        """Write the prompt and launch script, start the runtime, and type the prompt in for agents that take
        it that way. Returns (runtime handle, prompt file); each step pushes its undo."""
        from ao.plugins.agent import LaunchContext
        from ao.plugins.runtime import prepare_home

        run_dir = self.run_dir(project.id, sid)
        undo.push(f"remove {run_dir}", lambda: _rmtree(run_dir))
        ctx = LaunchContext(session_id=sid, workspace=cwd, prompt_file=run_dir / "prompt.md",
                            settings=project.agent_config, run_dir=run_dir, created_workspace=created,
                            home=prepare_home(runtime, run_dir, project.path))
        prompt_file, script = self._write_launch(run_dir, cwd, agent, ctx, prompt)
        handle = self._start(project, runtime, sid, cwd, script, run_dir)
        undo.push(f"stop the {project.runtime} session {handle}", lambda: runtime.kill(handle))
        self.progress(f"{sid}: agent started in {project.runtime} ({handle})")
        if agent.prompt_delivery(project.agent_config) == "send":
            self._give_prompt(project, agent, runtime, sid, cwd, handle, prompt)
        return handle, prompt_file

    def _start(self, project: Project, runtime: Any, sid: str, cwd: Path, script: Path, run_dir: Path) -> str:
        from ao.plugins.runtime import LaunchSpec

        return runtime.start(LaunchSpec(name=handle_name(self.config.data_dir, sid), cwd=cwd, script=script,
                                        env=self._agent_env(project, sid), run_dir=run_dir, repo=project.path))

    def _give_prompt(self, project: Project, agent: Any, runtime: Any, sid: str, cwd: Path, handle: str,
                     prompt: str) -> None:
        """Type the prompt in once the agent can take it (``promptDelivery: send``, aider): it has drawn
        something, shows no dialog and says it is ready. A dialog or an exit first fails the launch."""
        from ao.plugins.runtime import AgentBusy, AgentWaiting

        deadline = time.monotonic() + PROMPT_READY_TIMEOUT
        started = self.clock()
        while True:
            obs, act = self._observe_now(agent, runtime, handle, cwd, self.run_dir(project.id, sid), started, {})
            if act.state == "exited":
                raise AoError(f"the agent exited before it could be given its prompt:\n{runtime.capture(handle)}")
            try:
                if obs.pane and obs.pane.strip():
                    self._check_ready(sid, agent, obs, act)
                    break
            except AgentBusy:
                pass
            except AgentWaiting as exc:
                raise AoError(f"{exc}: the prompt was not sent (answer it in the session, or fix the agent's "
                              "setup, then spawn again)") from None
            if time.monotonic() >= deadline:
                raise AoError(f"the agent was not ready for its prompt after {PROMPT_READY_TIMEOUT:.0f} s, so the "
                              f"prompt was not sent; its screen:\n{runtime.capture(handle, 20)}")
            time.sleep(0.1)
        self._type(agent, runtime, handle, obs, prompt_message(prompt, cwd))
        self.progress(f"{sid}: prompt sent ({len(prompt)} characters)")

    def spawn_orchestrator(self, project_id: str | None = None) -> Session:
        """The orchestrator agent (``ao start``): one per data dir, in the project's own checkout (it manages
        sessions through the ``ao`` CLI and writes no code). A live one is reused."""
        from ao import prompts

        project = self.config.projects[project_id] if project_id else next(iter(self.config.projects.values()))
        import dataclasses  # its own agent settings (orchestrator: in the config), else the project's

        project = dataclasses.replace(project, agent=project.orchestrator_agent or project.agent,
                                      agent_config=project.orchestrator_agent_config or project.agent_config)
        for s in self.store.list():
            if s.role == "orchestrator" and not s.terminal and s.runtime_handle:
                if self.runtime(s.runtime or project.runtime).probe([s.runtime_handle])[s.runtime_handle].alive:
                    return s
        if project.runtime == "docker":
            raise AoError("the orchestrator agent works through ao's own command line on this machine, so it cannot "
                          f"run in a container (project {project.id} uses runtime: docker); use `ao start "
                          "--no-orchestrator`, or give the orchestrator's project a host runtime")
        runtime, agent = self.runtime(project.runtime, project), self.agent(project.agent)
        runtime.check()
        check_agent_installed(project.agent)
        undo = _Undo()
        try:
            session = self.store.create(project.id, project.session_prefix, role="orchestrator", status="spawning",
                                        task="orchestrator", agent=project.agent, runtime=project.runtime,
                                        workspace=str(project.path))
            sid = session.id
            undo.push(f"remove the session record {sid}", lambda: self.store.delete(sid, project.id))
            prompt = prompts.build_orchestrator_prompt(
                session_id=sid, project=project.id, projects=list(self.config.projects),
                scm_plugin=project.scm.get("plugin", "local"), orchestrator_rules=project.orchestrator_rules)
            handle, _ = self._launch(project, agent, runtime, sid, project.path, prompt, undo, created=False)
            session = self.store.update(sid, project.id, status="working", prompt=prompt, runtime_handle=handle,
                                        meta={"activity": {"at": self.clock()}})
            undo.steps.clear()
        except BaseException:
            undo.run()
            raise
        self._event("session.spawned", session, role="orchestrator", agent=project.agent)
        return session

    def _create_workspace(self, project: Project, workspace: Any, request: SpawnRequest, sid: str, issue: Any,
                          task: str, path: Path, env: dict[str, str], undo: _Undo) -> str:
        """The workspace on a new branch; returns the branch. Auto-named branches step past existing ones."""
        from ao.plugins.workspace import WorkspaceSpec
        from ao.git import BranchExists

        base = request.branch or default_branch_name(sid, issue.id if issue else "", task)
        names = [base] if request.branch else [base] + [f"{base}-{n}" for n in range(2, BRANCH_ATTEMPTS + 1)]
        for branch in names:
            spec = WorkspaceSpec(repo=project.path, path=path, branch=branch, default_branch=project.default_branch,
                                 symlinks=project.symlinks, post_create=project.post_create, env=env)
            try:
                # concurrent fetches of one repository fight over its ref locks
                with file_lock(self.store.project_dir(project.id) / ".git.lock",
                               f"another spawn's git fetch in project '{project.id}'", GIT_LOCK_TIMEOUT):
                    workspace.create(spec)
            except BranchExists as exc:
                if request.branch:
                    raise AoError(f"{exc}; choose another name with --branch, or leave it out") from None
                continue
            undo.push(f"remove the workspace {path}", lambda b=branch: workspace.remove(project.path, path, b))
            return branch
        raise AoError(f"branches {names[0]} to {names[-1]} all exist already; name one with --branch")

    def _agent_env(self, project: Project, sid: str) -> dict[str, str]:
        """The complete environment of the agent (and postCreate): an allowlist of ao's own, never its
        secrets (ao.environment), plus who it is and how its own `ao` calls find this setup."""
        from ao.environment import agent_environment

        return agent_environment(self.config, project, self._session_vars(project, sid))

    def _session_vars(self, project: Project, sid: str) -> dict[str, str]:
        return {"AO_SESSION": sid, "AO_PROJECT": project.id, "AO_HOME": str(self.config.data_dir),
                "AO_CONFIG_PATH": str(Path(self.config.file).resolve()),
                "AO_PROMPT_FILE": str(self.run_dir(project.id, sid) / "prompt.md")}

    def _write_launch(self, run_dir: Path, ws_path: Path, agent: Any, ctx: Any, prompt: str) -> tuple[Path, Path]:
        """The prompt file, the agent's own launch files (``prepare``) and an executable launch script that
        starts the agent in the workspace."""
        from ao.ledger import atomic_write

        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write(ctx.prompt_file, prompt)
        agent.prepare(ctx)
        exports = "".join(f"export {k}={shlex.quote(v)}\n" for k, v in sorted(ctx.env.items()))
        script = run_dir / ("restore.sh" if ctx.resume else "launch.sh")
        atomic_write(script, "#!/usr/bin/env bash\n"
                             f"# written by ao for session {ctx.session_id}\n"
                             f"{exports}"
                             f"cd {shlex.quote(str(ws_path))} || exit 1\n"
                             f"exec {agent.launch_command(ctx)}\n", 0o700)
        return ctx.prompt_file, script

    # -- per-session lock ------------------------------------------------------------------------

    def session_lock(self, session: Session) -> Any:
        """The lock every operation on one session takes (send, kill, restore, cleanup, the end of spawn), so
        each re-checks the session under it before acting rather than acting on what it read earlier."""
        path = self.store.project_dir(session.project) / "locks" / f"{session.id}.lock"
        return file_lock(path, f"session {session.id} (another ao command is sending to it, stopping, restoring "
                               "or cleaning it up)", SESSION_LOCK_TIMEOUT)

    def _recheck(self, session: Session) -> Session:
        """The session as it is now (under its lock); AoError when it was cleaned up meanwhile."""
        return self.store.find(session.id, session.project)

    def _event(self, kind: str, session: Session, **fields: Any) -> None:
        events.append(self.config.data_dir, kind, ts=self.clock(), session=session.id, project=session.project,
                      secrets=self.config.secrets(), **fields)

    # -- talking to a session -------------------------------------------------------------------

    def send(self, session_id: str, text: str, *, answer: bool = False, wait: float = 0.0) -> Session:
        """Type ``text`` into a live session's agent, confirmed by the agent's own receipt where it has one.

        The agent's state is read first: when it waits for a human (a dialog, a question, a login or trust
        screen, a screen ao cannot classify) or is blocked, nothing is typed and
        :class:`~ao.plugins.runtime.AgentWaiting` says what it waits for, unless ``answer`` (the caller is
        answering it). An agent that is only busy (:class:`~ao.plugins.runtime.AgentBusy`) is waited for up
        to ``wait`` seconds. AoError (exit 1) when the text cannot be delivered."""
        from ao.plugins.runtime import AgentBusy

        if not text.strip():
            raise AoError("the message is empty")
        session, project = self.find(session_id)
        deadline = time.monotonic() + wait
        with self.session_lock(session):  # two senders would interleave; a kill or cleanup waits for us
            session = self._recheck(session)
            if session.terminal:
                raise AoError(f"session '{session_id}' has ended ({session.status}); "
                              f"`ao session restore {session_id}` starts its agent again")
            runtime = self.runtime(session.runtime or project.runtime)
            agent = self.agent(session.agent or project.agent)
            run_dir = self.run_dir(project.id, session_id)
            while True:
                obs, act = self._observe_now(agent, runtime, session.runtime_handle, Path(session.workspace or "."),
                                             run_dir, session.launched_at, session.meta.get("activity", {}))
                if answer:
                    break
                try:
                    self._check_ready(session_id, agent, obs, act)
                    break
                except AgentBusy:
                    if time.monotonic() >= deadline:
                        raise
                    time.sleep(0.25)
            self._type(agent, runtime, session.runtime_handle, obs, text, typed=answer)
        events.log(self.config.data_dir, f"{session_id}: sent a message ({len(text)} characters)"
                   + (" answering what it asked" if answer else ""), console=None, secrets=self.config.secrets())
        if session.meta.get("paused"):  # a paused agent (the pause action) resumes with the message it was sent
            session = self.store.modify(session_id, lambda s: s.meta.pop("paused", None), project.id)
            self._event("session.resumed", session)
        return session

    def _observe_now(self, agent: Any, runtime: Any, handle: str, workspace: Path, run_dir: Path,
                     started_at: float, memo: dict[str, Any]) -> tuple[Any, Any]:
        """The agent's state right now: one probe, one capture, the agent's activity."""
        from ao.observe import CAPTURE_LINES
        from ao.plugins.agent import Observation
        from ao.plugins.runtime import agent_home

        probe = runtime.probe([handle])[handle]
        if not probe.alive:
            from ao.plugins.runtime import SendError

            raise SendError(f"cannot send to session {handle}: its agent has exited (or the session is gone)")
        obs = Observation(now=self.clock(), alive=True, workspace=workspace, started_at=started_at,
                          ready_threshold=self.config.ready_threshold,
                          pane=runtime.capture(handle, CAPTURE_LINES), last_output_at=probe.last_output_at,
                          memo=dict(memo), run_dir=run_dir, pid=probe.pid, home=agent_home(runtime, run_dir))
        return obs, agent.activity(obs)

    @staticmethod
    def _check_ready(session_id: str, agent: Any, obs: Any, act: Any) -> None:
        """Raise AgentWaiting (a human is needed) or AgentBusy (not now) unless text may be typed."""
        from ao.plugins.runtime import AgentBusy, AgentWaiting

        if act.state == "waiting_input":
            raise AgentWaiting(f"{session_id} is waiting for a human ({act.detail}); nothing was typed",
                               act.detail)
        if act.state == "blocked":
            raise AgentWaiting(f"{session_id} is blocked ({act.detail}); nothing was typed", act.detail,
                               state="blocked")
        why = agent.not_ready(obs, act)
        if why:
            raise AgentBusy(f"{session_id} cannot take a message now ({why}); nothing was typed", why)

    @staticmethod
    def _type(agent: Any, runtime: Any, handle: str, obs: Any, text: str, typed: bool = False) -> None:
        """Hand ``text`` over: through the agent's own API where it has one (never when answering a dialog,
        which needs keys), else typed in; confirmed by the agent's receipt when it offers one."""
        from ao.plugins.runtime import Unconfirmed

        receipt = agent.receipt(obs, text)
        if not typed and agent.deliver(obs, text):
            deadline = time.monotonic() + RECEIPT_TIMEOUT
            while receipt is not None and not receipt():
                if time.monotonic() >= deadline:
                    raise Unconfirmed(f"delivery to session {handle} not confirmed: the agent took the message "
                                      f"but recorded no receipt within {RECEIPT_TIMEOUT:g} s (not resent)")
                time.sleep(0.05)
            return
        if receipt is None:
            runtime.send(handle, text)
        else:
            runtime.send(handle, text, receipt=receipt, confirm_timeout=RECEIPT_TIMEOUT)

    def delivery_receipt(self, session_id: str, text: str, since: float) -> bool | None:
        """The agent's own word on whether it received ``text`` at or after ``since`` (epoch s): the journal
        asks it about a message ao was typing in when it died (``ao.executors``). None when the agent keeps no
        receipt it can be asked about afterwards (an agent plugin offers one with
        ``received_since(workspace, run_dir, text, since, home) -> bool | None``)."""
        session, project = self.find(session_id)
        check = getattr(self.agent(session.agent or project.agent), "received_since", None)
        if check is None:
            return None
        return check(Path(session.workspace or "."), self.run_dir(project.id, session_id), text, since,
                     self.agent_home(session))

    def agent_home(self, session: Session) -> Path | None:
        """Where the session's agent keeps its own files when its runtime gives it a home of its own (a
        container's), else None (ao's home). See :func:`ao.plugins.runtime.agent_home`."""
        from ao.plugins.runtime import agent_home

        if not session.runtime:
            return None
        return agent_home(self.runtime(session.runtime), self.run_dir(session.project, session.id))

    def attach_argv(self, session_id: str) -> list[str]:
        session, project = self.find(session_id)
        runtime = self.runtime(session.runtime or project.runtime)
        if not runtime.probe([session.runtime_handle])[session.runtime_handle].alive:
            raise AoError(f"session '{session_id}' is not running; `ao session restore {session_id}` starts it again")
        return runtime.attach_argv(session.runtime_handle)

    # -- ending and restoring -------------------------------------------------------------------

    def kill(self, session_id: str) -> Session:
        """End a session on purpose: stop its runtime; the workspace stays until cleanup."""
        session, project = self.find(session_id)
        with self.session_lock(session):
            session = self._recheck(session)
            if session.runtime_handle:
                self.runtime(session.runtime or project.runtime).kill(session.runtime_handle)
            session = self.store.update(session_id, session.project, status="killed")
        self._event("session.killed", session)
        return session

    def restore(self, session_id: str) -> Session:
        """Start the agent of a session whose runtime has gone, in the same workspace: resuming its
        conversation when there is one, else a fresh launch with the session's prompt."""
        session, project = self.find(session_id)
        with self.session_lock(session):
            return self._restore(self._recheck(session), project)

    @staticmethod
    def _still_running(runtime: Any, session: Session) -> bool:
        """Whether the session's terminal is alive. One the poller saw end (its agent said so: a hook, a
        receipt) may linger a moment (a container stops up to 2 s after its agent): that is waited for."""
        handle = session.runtime_handle
        deadline = time.monotonic() + (EXIT_SETTLE if session.status == "exited" else 0)
        while runtime.probe([handle])[handle].alive:
            if time.monotonic() >= deadline:
                return True
            time.sleep(0.2)
        return False

    def _restore(self, session: Session, project: Project) -> Session:
        from ao.plugins.agent import LaunchContext
        from ao.plugins.runtime import prepare_home

        session_id = session.id
        runtime = self.runtime(session.runtime or project.runtime, project)
        runtime.check()
        if session.runtime_handle and self._still_running(runtime, session):
            raise AoError(f"session '{session_id}' is still running; attach with `ao attach {session_id}`")
        if session.status in ("merged", "done", "cleanup"):
            raise AoError(f"session '{session_id}' is {session.status}; there is nothing to restore")
        ws_path = Path(session.workspace)
        if not session.workspace or not ws_path.is_dir():
            raise AoError(f"session '{session_id}' has no workspace left ({session.workspace or 'none'}); "
                          "it cannot be restored")
        agent = self.agent(session.agent or project.agent)
        run_dir = self.run_dir(project.id, session_id)
        ctx = LaunchContext(session_id=session_id, workspace=ws_path, prompt_file=run_dir / "prompt.md",
                            settings=project.agent_config, resume=True, run_dir=run_dir,
                            created_workspace=session.role != "orchestrator",
                            home=prepare_home(runtime, run_dir, project.path))
        ctx.resume = agent.can_resume(ctx)  # nothing to continue: a fresh launch with the prompt
        _, script = self._write_launch(run_dir, ws_path, agent, ctx, session.prompt)
        if session.runtime_handle:
            runtime.kill(session.runtime_handle)  # a dead pane kept for its last output: make room
        handle = self._start(project, runtime, session_id, ws_path, script, run_dir)
        if not ctx.resume and agent.prompt_delivery(project.agent_config) == "send" and session.prompt:
            try:
                self._give_prompt(project, agent, runtime, session_id, ws_path, handle, session.prompt)
            except BaseException:
                runtime.kill(handle)
                raise
        now = self.clock()
        session = self.store.update(session_id, project.id, status="working", runtime_handle=handle,
                                    meta={**session.meta, "activity": {"at": now}, "restored_at": now,
                                          "resumed": ctx.resume})
        self._event("session.working", session, restored=True, resumed=ctx.resume)
        return session

    # -- cleanup --------------------------------------------------------------------------------

    def cleanup_plan(self, project: str | None = None, force: bool = False) -> list[CleanupItem]:
        """Which sessions cleanup would remove, and which it keeps and why (work not pushed is kept)."""
        from ao import observe

        if project is not None:
            self.config.project(project)
        seen = observe.observe(self, self.store.list(project), self.clock())
        plan = []
        for item in seen:
            status, s = item.status, item.session
            if status not in ("merged", "done", "cleanup", "killed", "exited", "errored", "pr_closed"):
                continue  # live sessions are never touched
            # merged work is on the default branch; anything else may hold the only copy of the agent's
            # commits (a task has no PR). An orchestrator works in the project checkout, which is the user's.
            check = not force and status != "merged" and s.role != "orchestrator"
            unsaved = _unsaved_work(s.workspace, self.config.projects.get(s.project)) if check else ""
            plan.append(CleanupItem(s, "keep" if unsaved else "clean",
                                    f"{status}, but {unsaved}; --force removes it anyway" if unsaved else status))
        return plan

    def cleanup(self, items: list[CleanupItem]) -> list[CleanupItem]:
        """Clean the ``clean`` items: stop the runtime, remove the workspace, archive the record. One item
        that cannot be cleaned is returned with action ``failed`` and the reason; the others go on."""
        done = []
        for item in items:
            if item.action != "clean":
                continue
            try:
                done.append(self._clean_one(item))
            except AoError as exc:
                done.append(CleanupItem(item.session, "failed", str(exc)))
        return done

    def _clean_one(self, item: CleanupItem) -> CleanupItem:
        project = self.config.projects.get(item.session.project)
        if project is None:
            raise AoError(f"project '{item.session.project}' is no longer configured; its workspace "
                          f"{item.session.workspace or '(none)'} was left alone")
        with self.session_lock(item.session):
            # The plan was made before the lock: act only on what is still true (a concurrent restore
            # brings the agent back; a concurrent cleanup has done the work already).
            session = self.store.get(item.session.id, item.session.project)
            if session is None:
                if self.store.is_archived(item.session.id, item.session.project):
                    return CleanupItem(item.session, "clean", f"{item.reason} (already cleaned up)")
                raise AoError(f"session '{item.session.id}' is gone")
            changed = _changed_since_plan(item.session, session)
            if changed:
                return CleanupItem(session, "keep", f"{changed} since the plan was made; left alone")
            return self._clean_locked(CleanupItem(session, item.action, item.reason), project)

    def _clean_locked(self, item: CleanupItem, project: Project) -> CleanupItem:
        session = item.session
        if session.runtime_handle:
            self.runtime(session.runtime or project.runtime).kill(session.runtime_handle)
        if session.workspace and session.role != "orchestrator":  # the orchestrator's is the user's checkout
            self.workspace(project.workspace).remove(project.path, Path(session.workspace), session.branch or None)
        _rmtree(self.run_dir(session.project, session.id))
        archived = self.store.archive(session.id, session.project, status="cleanup",
                                      meta={**session.meta, "ended_as": item.reason})
        self._event("session.cleaned", archived, was=item.reason)
        return CleanupItem(archived, "clean", item.reason)


# ------------------------------------------------------------------------------------------ helpers

def prompt_message(prompt: str, workspace: Path) -> str:
    """The prompt as typed in: a prompt too large to type is put in a git-ignored file in the workspace
    and the message says where."""
    from ao.plugins.agent.command import ARG_LIMIT, large_prompt

    if len(prompt.encode("utf-8")) <= ARG_LIMIT:
        return prompt
    return large_prompt(prompt, workspace)


def check_agent_installed(agent: str) -> None:
    """An agent CLI that is not on PATH would start and die at once in its terminal: say so up front."""
    import shutil

    program = AGENT_PROGRAMS.get(agent)
    if program and shutil.which(program) is None:
        raise AoError(f"the {agent} agent needs `{program}` on PATH, and it is not installed here; install it, "
                      "or choose another agent (agent: in the config, or --agent)")


def _changed_since_plan(planned: Session, now: Session) -> str:
    """What happened to a session between a cleanup plan and its execution that calls the plan off."""
    if now.meta.get("restored_at") != planned.meta.get("restored_at"):
        return "it was restored"
    if now.runtime_handle != planned.runtime_handle:
        return "it was started again"
    if now.status != planned.status and not now.terminal:
        return f"it is {now.status} again"
    return ""


def _rmtree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def _unsaved_work(workspace: str, project: Any) -> str:
    """What would be lost by removing this workspace ("" when nothing): uncommitted files, unpushed commits.

    The project's own ``symlinks`` are ao's doing, not the agent's work, so they do not count. A worktree is
    read through the project's git folder, and a clone through a private one of ao's (``git.private_git_dir``),
    so no git config the agent wrote applies; submodules are not entered (their git would read theirs)."""
    if not workspace or not Path(workspace).is_dir():
        return ""
    from ao import git

    try:
        links = {link.strip("/") for link in (project.symlinks if project else [])}
        env = git.worktree_env(project.path, workspace) if project else {}
        clone = not env  # its branches and stash are its own (a worktree shares the project's)
        with contextlib.nullcontext(env) if env else git.private_git_dir(workspace) as env:
            def git_(*args: str) -> str:
                return git.run(list(args), cwd=Path(workspace), env=env, untrusted=True)

            # untracked files listed whatever the user's status.showUntrackedFiles says; not stripped: a
            # porcelain line starts with its status, a space for an unchanged index
            status = git_("status", "--porcelain", "--untracked-files=normal", "--ignore-submodules=dirty")
            unpushed = git_("rev-list", "--count", "HEAD", *(["--branches"] if clone else []), "--not",
                            "--remotes").strip()
            stashed = clone and git.succeeds(["rev-parse", "--verify", "-q", "refs/stash"], Path(workspace),
                                             env=env, untrusted=True)
        dirty = [line for line in status.splitlines() if line and line[3:].strip('"/') not in links]
    except AoError as exc:
        return f"its workspace could not be checked ({exc})"
    parts = []
    if dirty:
        parts.append(f"{len(dirty)} uncommitted file{'s' if len(dirty) != 1 else ''}")
    if unpushed not in ("", "0"):
        parts.append(f"{unpushed} unpushed commit{'s' if unpushed != '1' else ''}")
    if stashed:
        parts.append("stashed changes")
    return " and ".join(parts)
