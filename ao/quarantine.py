"""Records the store set aside as corrupt, and the sessions they leave running unseen.

The store never overwrites a file it cannot parse: it renames it ``<name>.corrupt-<UTC time>`` and carries on
(:mod:`ao.store`). A session whose record was set aside still has its terminal and its worktree, but no
listing shows it. So every listing warns while such a file is left, ``ao session ls --problems`` lists them
with what is still running, and :func:`adopt` rebuilds a record from what can be found (the file's readable
fields, the workspace, the runtime), after which the session is an ordinary one again: ``ao session kill``,
``ao cleanup``, the poller. A file that has been dealt with moves to ``<dataDir>/quarantine/``.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from ao.errors import AoError
from ao.store import ARCHIVE, PROJECTS, SESSIONS, Session

MARK = ".corrupt-"
DEALT_WITH = "quarantine"


@dataclass
class Quarantined:
    path: Path
    project: str
    session: str      # the session id the file was for ("" for counters and project ledgers)
    kind: str         # "session" | "archived session" | "id counter" | "project ledgers"


def quarantined(data_dir: Path) -> list[Quarantined]:
    """Every store file set aside as corrupt that is still there."""
    root = Path(data_dir)
    places: list[tuple[Path, str, str]] = []
    with contextlib.suppress(OSError):
        for entry in os.scandir(root / PROJECTS):
            if entry.is_dir():
                places += [(Path(entry.path) / SESSIONS, entry.name, "session"), (Path(entry.path), entry.name, "")]
    with contextlib.suppress(OSError):
        for entry in os.scandir(root / ARCHIVE):
            if entry.is_dir():
                places.append((Path(entry.path), entry.name, "archived session"))
    out = []
    for folder, project, kind in places:
        with contextlib.suppress(OSError):
            for entry in os.scandir(folder):
                if MARK not in entry.name or not entry.is_file():
                    continue
                original = entry.name.split(MARK, 1)[0]
                if kind:
                    out.append(Quarantined(Path(entry.path), project, original.removesuffix(".json"), kind))
                else:
                    what = {"ids.json": "id counter", "project.json": "project ledgers"}.get(original, original)
                    out.append(Quarantined(Path(entry.path), project, "", what))
    return sorted(out, key=lambda q: str(q.path))


def warning(items: list[Quarantined]) -> str:
    """The warning every listing prints while quarantined records are left ("" when there are none)."""
    if not items:
        return ""
    sessions = list(dict.fromkeys(q.session for q in items if q.session))
    text = f"{len(items)} corrupt record{'s' if len(items) != 1 else ''} set aside"
    if sessions:
        text += f" (session{'s' if len(sessions) != 1 else ''} {', '.join(sessions)})"
    return f"{text}; a session may still run unseen: see `ao session ls --problems`"


# ------------------------------------------------------------------------------------------ orphans

@dataclass
class Orphan:
    """A quarantined session record and what of its session is still there."""

    record: Quarantined
    handle: str               # the runtime handle it had (or would have had)
    runtime: str
    alive: bool               # its terminal still runs
    workspace: Optional[Path]  # its workspace, if it is still on disk
    live_record: bool         # a record with this id exists again (adopted, or the id reused by hand)

    def row(self) -> dict[str, Any]:
        r = self.record
        if self.live_record:
            state = "a record exists again: remove the file"
        elif self.alive:
            state = "terminal running: adopt or kill"
        elif self.workspace:
            state = "workspace left: adopt, then ao cleanup"
        else:
            state = "nothing left: remove the file"
        return {"file": str(r.path), "kind": r.kind, "project": r.project, "session": r.session or None,
                "terminal": "running" if self.alive else ("gone" if r.session else None),
                "workspace": str(self.workspace) if self.workspace else None, "state": state}


def _salvage(path: Path) -> dict[str, Any]:
    """Whatever typed fields of the broken record can still be read (nothing when it is not JSON)."""
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError, RecursionError):
        return {}
    if not isinstance(data, dict):
        return {}
    keep = {"branch": str, "issue": str, "task": str, "prompt": str, "agent": str, "runtime": str,
            "runtime_handle": str, "workspace": str, "role": str, "created_at": (int, float)}
    return {k: v for k, v in data.items() if k in keep and isinstance(v, keep[k]) and not isinstance(v, bool)}


def orphans(manager: Any) -> list[Orphan]:
    """Every quarantined record of ``manager``'s data dir, with its terminal and workspace looked up."""
    from ao.sessions import handle_name

    config = manager.config
    items = quarantined(config.data_dir)
    found: list[Orphan] = []
    probes: dict[str, list[str]] = {}
    for q in items:
        salvaged = _salvage(q.path) if q.session else {}
        project = config.projects.get(q.project)
        runtime = salvaged.get("runtime") or (project.runtime if project else "tmux")
        handle = salvaged.get("runtime_handle") or (handle_name(config.data_dir, q.session) if q.session else "")
        ws = Path(salvaged.get("workspace") or manager.workspace_path(q.project, q.session)) if q.session else None
        live = bool(q.session) and manager.store.get(q.session, q.project, include_archived=True) is not None
        found.append(Orphan(q, handle, runtime, False, ws if ws is not None and ws.is_dir() else None, live))
        if handle and q.kind == "session":
            probes.setdefault(runtime, []).append(handle)
    alive: set[tuple[str, str]] = set()
    for runtime, handles in probes.items():
        with contextlib.suppress(AoError):
            alive |= {(runtime, h) for h, p in manager.runtime(runtime).probe(handles).items() if p.alive}
    for o in found:
        o.alive = (o.runtime, o.handle) in alive
    return found


def adopt(manager: Any, session_id: str) -> Session:
    """Give a quarantined session a record again, rebuilt from what can be found; the broken file is moved to
    ``<dataDir>/quarantine/``. Raises AoError when there is nothing to adopt."""
    from ao import git

    candidates = [o for o in orphans(manager) if o.record.session == session_id and o.record.kind == "session"]
    if not candidates:
        raise AoError(f"no quarantined record of session '{session_id}' (see `ao session ls --problems`)")
    orphan = candidates[-1]  # the newest quarantine of that id
    if orphan.live_record:
        raise AoError(f"session '{session_id}' has a record again; remove {orphan.record.path} if it is no "
                      "longer needed")
    if not orphan.alive and orphan.workspace is None:
        raise AoError(f"session '{session_id}' has nothing left to adopt (no terminal, no workspace); remove "
                      f"{orphan.record.path}")
    config = manager.config
    project = config.projects.get(orphan.record.project)
    if project is None:
        raise AoError(f"session '{session_id}' belongs to project '{orphan.record.project}', which is not in "
                      f"{config.file}")
    salvaged = _salvage(orphan.record.path)
    branch = salvaged.get("branch", "")
    if not branch and orphan.workspace is not None:
        with contextlib.suppress(AoError):
            branch = git.run(["rev-parse", "--abbrev-ref", "HEAD"], orphan.workspace, untrusted=True)
    now = manager.clock()
    session = manager.store.create(
        project.id, id=session_id, role=salvaged.get("role") if salvaged.get("role") in ("worker", "orchestrator")
        else "worker", status="working" if orphan.alive else "exited", branch=branch,
        issue=salvaged.get("issue", ""), task=salvaged.get("task", ""), prompt=salvaged.get("prompt", ""),
        workspace=str(orphan.workspace or ""), runtime=orphan.runtime,
        runtime_handle=orphan.handle if orphan.alive else "", agent=salvaged.get("agent") or project.agent,
        created_at=float(salvaged.get("created_at") or now),
        meta={"activity": {"at": now}, "adopted_from": orphan.record.path.name})
    set_aside(config.data_dir, orphan.record)
    from ao import events

    events.append(config.data_dir, "session.adopted", ts=now, session=session_id, project=project.id,
                  status=session.status, secrets=config.secrets())
    return session


def set_aside(data_dir: Path, record: Quarantined) -> Path:
    """Move a dealt-with quarantined file to ``<dataDir>/quarantine/<project>/`` (kept, never deleted)."""
    target = Path(data_dir) / DEALT_WITH / record.project / record.path.name
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(record.path, target)
    except OSError as exc:
        raise AoError(f"{record.path}: cannot move it to {target}: {exc.strerror or exc}") from None
    return target
