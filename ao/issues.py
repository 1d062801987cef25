"""Issues and sessions: the local tracker behind ``ao issue``, closing an issue when its PR is merged, and
the checks before spawning on an issue (closed, or already being worked on)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

from ao import events
from ao.errors import AoError


def local_tracker(config: Any, project: Any) -> Any:
    """The project's local tracker; an AoError saying where its issues live when it uses another one."""
    from ao.plugins.tracker.local import plugin

    name = (project.tracker or {}).get("plugin", "local")
    if name != "local":
        raise AoError(f"project '{project.id}' takes its issues from {name}, not from local files; manage them "
                      f"there (ao issue works with the local tracker: tracker: {{plugin: local}})")
    return plugin(project_path=project.path, settings=project.tracker)


def sessions_on(store: Any, project: str, issue: str, live_only: bool = True) -> list[Any]:
    key = issue.lstrip("#")
    return [s for s in store.list(project) if s.issue.lstrip("#") == key and not (live_only and s.terminal)]


# ------------------------------------------------------------------------------------------ spawning

@dataclass
class SpawnCheck:
    """Why spawning on an issue needs ``--force`` (empty ``reasons``: it does not)."""

    issue: str
    reasons: list[str]

    def error(self) -> AoError:
        return AoError(f"issue {self.issue} " + " and ".join(self.reasons)
                       + "; add --force to spawn on it anyway (e.g. for a next step of the same issue)")


def check_spawn(manager: Any, project_id: str, target: str | None) -> SpawnCheck | None:
    """The issue ``target`` names, and whether it is closed or has a live session (None for a task)."""
    if not target or not target.strip():
        return None
    project = manager.config.project(project_id)
    tracker = manager.tracker(project)
    if not tracker.looks_like_id(target.strip()):
        return None
    issue = tracker.get(target.strip())
    reasons = []
    if issue.state == "closed":
        reasons.append("is closed")
    busy = sessions_on(manager.store, project.id, issue.id)
    if busy:
        reasons.append(f"already has a live session ({', '.join(s.id for s in busy)})")
    return SpawnCheck(issue.id, reasons)


# ------------------------------------------------------------------------------------------ merging

def close_merged(config: Any, sessions: Iterable[Any], now: float) -> tuple[list[dict[str, Any]], list[str]]:
    """Close the local issue of each session whose PR has just been merged. Returns (the ``issue.closed``
    events written, errors); never raises: a tracker problem must not stop the cycle that saw the merge."""
    written, errors = [], []
    for s in sessions:
        project = config.projects.get(s.project)
        if not s.issue or project is None or (project.tracker or {}).get("plugin", "local") != "local":
            continue
        try:
            tracker = local_tracker(config, project)
            if tracker.get(s.issue).state == "closed":
                continue
            tracker.close(s.issue)
        except AoError as exc:
            errors.append(f"{s.id}: could not close issue {s.issue}: {exc}")
            continue
        written.append(events.append(config.data_dir, "issue.closed", ts=now, session=s.id, project=s.project,
                                     issue=s.issue, why="its PR was merged", secrets=config.secrets()))
    return written, errors
