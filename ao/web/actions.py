"""What a browser may do, through the same library calls as the CLI, each audited in the event log.

Every action returns a one-line result for the person who clicked, or raises :class:`ao.errors.AoError`
with the reason; either way :func:`audit` appends a ``dashboard.action`` event naming the action, the
session, the outcome and the client address. Nothing here trusts the browser's view of the world: a merge
names the head SHA the person confirmed and is refused when the branch has moved since.
"""

from __future__ import annotations

from typing import Any

from ao import events
from ao.errors import AoError

QUICK_REPLIES = {
    "continue": "Continue.",
    "abort": "Stop: abandon what you are doing now, and wait for instructions.",
    "skip": "Skip this step and go on with the next one.",
}
REVIEW_VERDICTS = ("approve", "request_changes", "comment")
MAX_MESSAGE = 100_000


class Waiting(AoError):
    """The agent waits for a person; the message was not typed. ``waiting_for`` says what it waits for."""

    def __init__(self, message: str, waiting_for: str) -> None:
        super().__init__(message)
        self.waiting_for = waiting_for


def audit(config: Any, action: str, *, session: str | None, ok: bool, detail: str, client: str,
          **fields: Any) -> None:
    events.append(config.data_dir, "dashboard.action", action=action, session=session, ok=ok, detail=detail,
                  client=client, secrets=config.secrets(), **fields)


class Actions:
    def __init__(self, config: Any) -> None:
        self.config = config

    def _manager(self) -> Any:
        from ao.sessions import Sessions

        return Sessions(self.config)

    # -- talking to the agent -------------------------------------------------------------------------

    def send(self, sid: str, text: str, answer: bool = False) -> str:
        """Type ``text`` into the agent, dialog-safe: an agent waiting for a person gets it only when
        ``answer`` says the person is answering it."""
        if not isinstance(text, str) or not text.strip():
            raise AoError("the message is empty")
        if len(text) > MAX_MESSAGE:
            raise AoError(f"the message is too long ({len(text)} characters; at most {MAX_MESSAGE})")
        from ao.plugins.runtime import AgentWaiting

        try:
            self._manager().send(sid, text, answer=bool(answer))
        except AgentWaiting as exc:
            if exc.state == "busy":
                raise Waiting(f"{sid} is busy ({exc.waiting_for}); not typed. Send it again when the agent is "
                              "back at its prompt", exc.waiting_for) from None
            raise Waiting(f"{sid} is waiting for a person ({exc.waiting_for}); not typed. Tick \"answer the "
                          "question\" to type it into the dialog", exc.waiting_for) from None
        return f"sent to {sid}" + (" (as an answer)" if answer else "")

    def reply(self, sid: str, key: str, answer: bool = False) -> str:
        if key not in QUICK_REPLIES:
            raise AoError(f"unknown quick reply '{key}'; one of {', '.join(QUICK_REPLIES)}")
        self.send(sid, QUICK_REPLIES[key], answer)
        return f"{key}: sent to {sid}" + (" (as an answer)" if answer else "")

    # -- ending and restoring -------------------------------------------------------------------------

    def kill(self, sid: str) -> str:
        killed = self._manager().kill(sid)
        return f"killed {killed.id}; its workspace stays until cleanup"

    def restore(self, sid: str) -> str:
        restored = self._manager().restore(sid)
        return f"restored {restored.id}"

    # -- the PR ---------------------------------------------------------------------------------------

    def review(self, sid: str, verdict: str, text: str = "") -> str:
        """A review on the local SCM, as ``ao review`` gives it."""
        from ao.plugins.scm import context_for
        from ao.plugins.scm.local import plugin

        if verdict not in REVIEW_VERDICTS:
            raise AoError(f"unknown review verdict '{verdict}'; one of {', '.join(REVIEW_VERDICTS)}")
        session, project = self._manager().find(sid)
        name = (project.scm or {}).get("plugin", "local")
        if name != "local":
            raise AoError(f"reviews from the dashboard are for the local SCM; project '{project.id}' uses "
                          f"'{name}': review on GitHub")
        if not session.branch:
            raise AoError(f"session {sid} has no PR yet: it has no branch")
        done = plugin(context_for(self.config, project)).review(session.branch, verdict, text or "")
        what = {"approve": "approved", "request_changes": "requested changes on", "comment": "commented on"}[verdict]
        return f"{what} local PR #{done['number']} of {sid} (at {done['head_sha'][:10]})"

    def merge(self, sid: str, sha: str) -> str:
        """Merge the session's PR exactly at ``sha``, the head the person confirmed, through the same
        criteria and pinned merge as ``ao merge`` (``ao.merging``)."""
        from ao import merging

        if not sha:
            raise AoError("a merge needs the head SHA you confirmed")
        done = merging.merge_session(self.config, sid, expected_sha=sha)
        return f"merged {sid} at {sha[:7]} (merge commit {done.sha[:7]})"

    # -- spawning -------------------------------------------------------------------------------------

    def issues(self, project_id: str) -> list[dict[str, str]]:
        project = self.config.project(project_id)
        tracker = self._manager().tracker(project)
        return [{"id": i.id, "title": i.title} for i in tracker.list("open")]

    def spawn(self, project_id: str, issue: str, prompt: str = "") -> str:
        from ao.sessions import SpawnRequest

        if not issue.strip():
            raise AoError("choose an issue to spawn a session for")
        session = self._manager().spawn(SpawnRequest(project=project_id, target=issue.strip(),
                                                     prompt=prompt.strip() or None))
        return f"spawned {session.id} on {session.branch}"

