"""The local tracker (SPEC 8): issues are markdown files in ``<project>/<tracker.dir>`` (default ``issues/``).

``login-page.md`` is issue ``login-page``; its title is the first markdown heading (else the first non-empty
line, else the id) and its body the whole file. ``create()`` writes ``<n>.md`` (``ao issue new``);
``close()`` moves the file into ``closed/`` (``ao issue close``, and ao itself when the session's PR is
merged); ``comment()`` appends a block to it. No network, no clock.

Optional YAML front matter (between ``---`` lines at the top) carries ``labels:`` (for ``pickup: {label}``)
and ``blocked_by:`` (issue ids this one waits for, SPEC 12).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ao.errors import AoError, did_you_mean
from ao.plugins.tracker import Issue, IssueNotFound, IssueStatus

CLOSED = "closed"
STATES = ("open", "closed", "all")
_ID_SHAPES = re.compile(r"#?\d+|[A-Za-z][A-Za-z0-9]*-\d+")  # 12, #12, ABC-123
_HEADING = re.compile(r"^ {0,3}#{1,6}\s+(.*?)(?:\s+#+)?\s*$")
_SHOWN_IDS = 20


def natural_key(text: str) -> tuple:
    """Sort key that orders embedded numbers by value: 2 before 10, issue-9 before issue-10."""
    parts = re.split(r"(\d+)", text)
    return tuple(int(p) if i % 2 else p.lower() for i, p in enumerate(parts)), text


def title_of(text: str, fallback: str) -> str:
    lines = text.splitlines()
    for line in lines:
        if (m := _HEADING.match(line)) and m.group(1).strip():
            return m.group(1).strip()
    return next((line.strip() for line in lines if line.strip()), fallback)


@dataclass
class LocalTracker:
    folder: Path
    name: str = "local"

    # ------------------------------------------------------------------------------------------- ids, files

    def _check(self, issue_id: str) -> str:
        issue_id = str(issue_id).strip().removeprefix("#")
        if not issue_id or "/" in issue_id or "\\" in issue_id or ".." in issue_id or "\0" in issue_id \
                or issue_id.startswith("."):
            raise AoError(f"'{issue_id}' is not a valid local issue id: use a file name from {self.folder}, "
                          "without '.md', folders or '..'")
        return issue_id

    def _where(self, issue_id: str) -> tuple[Path, str] | None:
        for path, state in ((self.folder / f"{issue_id}.md", "open"),
                            (self.folder / CLOSED / f"{issue_id}.md", "closed")):
            if path.is_file():
                return path, state
        return None

    def _files(self, state: str) -> list[tuple[Path, str]]:
        folders = {"open": [("open", self.folder)], "closed": [("closed", self.folder / CLOSED)]}
        folders["all"] = folders["open"] + folders["closed"]
        if state not in folders:
            raise AoError(f"unknown issue state '{state}'{did_you_mean(state, STATES)}; use one of {', '.join(STATES)}")
        found = []
        for kind, folder in folders[state]:
            if folder.is_dir():
                found += [(p, kind) for p in folder.glob("*.md") if p.is_file() and not p.name.startswith(".")]
        return found

    def _read(self, path: Path, state: str) -> Issue:
        issue_id = path.name.removesuffix(".md")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as e:
            raise AoError(f"issue file {path} is not UTF-8 text (byte 0x{e.object[e.start]:02x} at offset "
                          f"{e.start}); save it as UTF-8") from e
        except OSError as e:
            raise AoError(f"cannot read issue file {path}: {e.strerror or e}") from e
        meta = front_matter(text)
        return Issue(id=issue_id, title=title_of(_without_front_matter(text), issue_id), body=text,
                     url=path.resolve().as_uri(), state=state, labels=_strings(meta.get("labels")))

    def _not_found(self, issue_id: str) -> IssueNotFound:
        if not self.folder.is_dir():
            return IssueNotFound(f"no issue '{issue_id}': the issues folder {self.folder} does not exist; "
                                 f"create {self.folder / (issue_id + '.md')} to add it")
        ids = [p.name.removesuffix(".md") for p, _ in sorted(self._files("all"), key=lambda f: natural_key(f[0].name))]
        if not ids:
            return IssueNotFound(f"no issue '{issue_id}': {self.folder} has no issues yet; "
                                 f"create {self.folder / (issue_id + '.md')} to add it")
        shown = ", ".join(ids[:_SHOWN_IDS]) + (f" (and {len(ids) - _SHOWN_IDS} more)" if len(ids) > _SHOWN_IDS else "")
        return IssueNotFound(f"no issue '{issue_id}' in {self.folder}{did_you_mean(issue_id, ids)}; issues: {shown}")

    # ---------------------------------------------------------------------------------------- the interface

    def looks_like_id(self, text: str) -> bool:
        text = str(text).strip()
        if not text or "\n" in text:
            return False
        try:
            if self._where(self._check(text)) is not None:
                return True
        except (AoError, OSError, ValueError):  # separators, a name too long to be a file: a task, not an id
            return False
        return not any(c.isspace() for c in text) and _ID_SHAPES.fullmatch(text) is not None

    def get(self, issue_id: str) -> Issue:
        issue_id = self._check(issue_id)
        found = self._where(issue_id)
        if found is None:
            raise self._not_found(issue_id)
        return self._read(*found)

    def list(self, state: str = "open") -> list[Issue]:
        files = sorted(self._files(state), key=lambda f: natural_key(f[0].name.removesuffix(".md")))
        return [self._read(path, kind) for path, kind in files]

    def comment(self, issue_id: str, text: str) -> None:
        issue_id = self._check(issue_id)
        found = self._where(issue_id)
        if found is None:
            raise self._not_found(issue_id)
        path = found[0]
        try:
            existing = path.read_bytes()
            sep = "" if not existing or existing.endswith(b"\n") else "\n"
            with path.open("a", encoding="utf-8") as f:
                f.write(f"{sep}\n---\n\n## Comment\n\n{text.rstrip()}\n")
        except OSError as e:
            raise AoError(f"cannot comment on issue {issue_id} ({path}): {e.strerror or e}") from e

    def create(self, title: str, body: str = "") -> Issue:
        """A new issue ``<n>.md`` (n one more than the highest numeric id, open or closed): ``# title``, then
        the body. Created exclusively, so two at once never get the same number."""
        title = " ".join(title.split())
        if not title:
            raise AoError("an issue needs a title")
        text = f"# {title}\n" + (f"\n{body.strip()}\n" if body.strip() else "")
        numbers = [int(p.name[:-3]) for p, _ in self._files("all") if p.name[:-3].isdigit()]
        n = max(numbers, default=0) + 1
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise AoError(f"cannot create the issues folder {self.folder}: {e.strerror or e}") from e
        while True:
            path = self.folder / f"{n}.md"
            if (self.folder / CLOSED / path.name).exists():
                n += 1
                continue
            try:
                with path.open("x", encoding="utf-8") as f:
                    f.write(text)
            except FileExistsError:
                n += 1
                continue
            except OSError as e:
                raise AoError(f"cannot write issue file {path}: {e.strerror or e}") from e
            return self._read(path, "open")

    def close(self, issue_id: str) -> None:
        issue_id = self._check(issue_id)
        found = self._where(issue_id)
        if found is None:
            raise self._not_found(issue_id)
        path, state = found
        if state == "closed":
            return  # already closed: closing twice is fine
        target = self.folder / CLOSED / path.name
        if target.exists():
            raise AoError(f"cannot close issue {issue_id}: {target} already exists; remove one of the two files")
        try:
            target.parent.mkdir(exist_ok=True)
            path.rename(target)
        except OSError as e:
            raise AoError(f"cannot close issue {issue_id} (move {path} to {target}): {e.strerror or e}") from e


    def pickup(self, spec: dict[str, Any]) -> list[Issue]:
        issues = self.list("open")
        if spec.get("label"):
            issues = [i for i in issues if spec["label"] in i.labels]
        return issues

    def status(self, issue_ids: list[str], active_states: list[str] | None = None, *,
               blockers: bool = True) -> dict[str, IssueStatus]:
        out: dict[str, IssueStatus] = {}
        for issue_id in issue_ids:
            try:
                found = self._where(self._check(issue_id))
            except AoError:
                continue
            if found is None:
                continue
            path, state = found
            blockers = []
            if state == "open":
                try:
                    meta = front_matter(path.read_text(encoding="utf-8"))
                except (OSError, UnicodeDecodeError):
                    meta = {}
                for blocker in _strings(meta.get("blocked_by")):
                    try:
                        where = self._where(self._check(blocker.lstrip("#")))
                    except AoError:
                        continue
                    if where is not None and where[1] == "open":  # a blocker that does not exist blocks nothing
                        blockers.append(blocker.lstrip("#"))
            out[issue_id] = IssueStatus(state=state, blocked_by=blockers)
        return out


_FRONT = re.compile(r"\A---[ \t]*\r?\n(.*?)\r?\n---[ \t]*(?:\r?\n|\Z)", re.S)


def front_matter(text: str) -> dict[str, Any]:
    """The YAML mapping between ``---`` lines at the top of an issue file ({} when none or not a mapping)."""
    m = _FRONT.match(text)
    if not m:
        return {}
    import yaml

    try:
        data = yaml.safe_load(m.group(1))
    except yaml.YAMLError:
        return {}
    return data if isinstance(data, dict) else {}


def _without_front_matter(text: str) -> str:
    m = _FRONT.match(text)
    return text[m.end():] if m else text


def _strings(value: Any) -> list[str]:
    if isinstance(value, (str, int)) and not isinstance(value, bool):
        return [str(value)]
    return [str(v) for v in value if isinstance(v, (str, int)) and not isinstance(v, bool)] \
        if isinstance(value, list) else []


def plugin(*, project_path: Path, settings: dict[str, Any] | None = None) -> LocalTracker:
    folder = Path(str((settings or {}).get("dir") or "issues")).expanduser()
    return LocalTracker(folder if folder.is_absolute() else Path(project_path) / folder)
