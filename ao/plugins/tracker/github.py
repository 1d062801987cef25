"""The GitHub issues tracker (SPEC 8): issue ``12`` (or ``#12``) of the project's repository.

It uses the SCM's client (:class:`ao.plugins.scm.github.GitHubClient`: same token lookup, timeouts, retries
and rate-limit handling), made on first use so that building the tracker costs nothing. Pull requests share
GitHub's issue numbers and endpoints; they are not issues here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from ao.errors import AoError, did_you_mean
from ao.plugins.tracker import MORE_PAGES, Issue, IssueNotFound, IssueStatus, blockers_after

STATES = ("open", "closed", "all")
MAX_PAGES = 10  # 1000 issues: enough to pick from, and a bounded cost
_ID = re.compile(r"#?(\d+)")

if TYPE_CHECKING:
    from ao.plugins.scm.github import GitHubClient


@dataclass
class GitHubTracker:
    repo: str
    base_url: str | None = None
    labels: list[str] = field(default_factory=list)
    client: Any = None        # a GitHubClient; made on first use
    name: str = "github"
    # issue number -> its open "blocked by" dependencies as the last REST issue object read said
    # (issue_dependencies_summary.blocked_by): status() asks for the list only where it is not 0
    _blocked_counts: dict[int, int] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[^/\s]+/[^/\s]+", self.repo or ""):
            raise AoError(f"the github tracker needs `repo: owner/name` (got {self.repo!r})")
        from ao.plugins.scm.github import api_urls

        self.base_url = api_urls(self.base_url)[0]  # a bad URL fails now, not at the first request
        owner, name = self.repo.split("/")
        self._path = f"/repos/{quote(owner, safe='')}/{quote(name, safe='')}"

    def _client(self) -> GitHubClient:
        if self.client is None:
            from ao.plugins.scm.github import GitHubClient

            self.client = GitHubClient(base_url=self.base_url)
        return self.client

    def _number(self, issue_id: str) -> int:
        m = _ID.fullmatch(str(issue_id).strip())
        if not m:
            raise AoError(f"'{issue_id}' is not a GitHub issue number: use e.g. 12 or #12")
        return int(m.group(1))

    def _issue(self, data: Any) -> Issue:
        summary = data.get("issue_dependencies_summary") if isinstance(data, dict) else None
        if isinstance(summary, dict) and isinstance(summary.get("blocked_by"), int) \
                and isinstance(data.get("number"), int):
            self._blocked_counts[data["number"]] = summary["blocked_by"]
        try:
            return Issue(id=str(int(data["number"])), title=str(data.get("title") or ""),
                         body=str(data.get("body") or ""), url=str(data.get("html_url") or ""),
                         state="closed" if data.get("state") == "closed" else "open",
                         labels=[str(lb["name"]) if isinstance(lb, dict) else str(lb) for lb in data.get("labels") or []])
        except (KeyError, TypeError, ValueError):
            raise AoError(f"GitHub answered with an issue of an unexpected shape ({self.repo})") from None

    def _not_found(self, n: int) -> IssueNotFound:
        return IssueNotFound(f"no issue #{n} in {self.repo} (or the token cannot see it)")

    def _call(self, method: str, n: int, suffix: str = "", ok: tuple[int, ...] = (200,), **kwargs: Any) -> Any:
        response = self._client().request(method, f"{self._path}/issues/{n}{suffix}", **kwargs)
        if response.status_code in (404, 410):  # 410: deleted, or issues are turned off for the repository
            raise self._not_found(n)
        if response.status_code not in ok:
            detail = self._client().message(response)
            raise AoError(f"GitHub answered {method} issue #{n} of {self.repo} with HTTP {response.status_code}"
                          + (f": {detail}" if detail else ""))
        return self._client().json_of(response, f"{method} issue #{n}")

    # ---------------------------------------------------------------------------------------- the interface

    def looks_like_id(self, text: str) -> bool:
        return _ID.fullmatch(str(text).strip()) is not None

    def get(self, issue_id: str) -> Issue:
        n = self._number(issue_id)
        data = self._call("GET", n)
        if isinstance(data, dict) and data.get("pull_request"):
            raise IssueNotFound(f"#{n} in {self.repo} is a pull request, not an issue")
        return self._issue(data)

    def list(self, state: str = "open", labels: list[str] | None = None) -> list[Issue]:
        if state not in STATES:
            raise AoError(f"unknown issue state '{state}'{did_you_mean(state, STATES)}; use one of {', '.join(STATES)}")
        client = self._client()
        params: dict[str, Any] | None = {"state": state, "per_page": 100}
        labels = self.labels if labels is None else labels
        if labels:
            params["labels"] = ",".join(labels)
        url, issues, origin = f"{self._path}/issues", [], urlsplit(client.base_url).netloc
        for _ in range(MAX_PAGES):
            response = client.request("GET", url, params=params)
            items = client.json_of(response, "GET issues") if response.status_code == 200 else None
            if response.status_code != 200 or not isinstance(items, list):
                detail = client.message(response) if response.status_code != 200 else "not a list"
                raise AoError(f"cannot list the issues of {self.repo}: HTTP {response.status_code}: {detail}")
            issues += [self._issue(i) for i in items if isinstance(i, dict) and not i.get("pull_request")]
            nxt = response.links.get("next", {}).get("url")
            if not nxt or urlsplit(nxt).netloc != origin:  # follow GitHub's pages, never another host
                break
            url, params = nxt, None
        return issues

    def comment(self, issue_id: str, text: str) -> None:
        self._call("POST", self._number(issue_id), "/comments", ok=(201,), json={"body": str(text)[:65_000]})

    def close(self, issue_id: str) -> None:
        # closing twice is harmless: the PATCH may be retried like a read
        self._call("PATCH", self._number(issue_id), json={"state": "closed", "state_reason": "completed"}, retry=True)


    # -- admission (SPEC 12) ----------------------------------------------------------------------------

    def pickup(self, spec: dict[str, Any]) -> list[Issue]:
        """Open issues with the pickup label (every open issue when none is given)."""
        return self.list("open", [spec["label"]] if spec.get("label") else [])

    def status(self, issue_ids: list[str], active_states: list[str] | None = None, *,
               blockers: bool = True) -> dict[str, IssueStatus]:
        """State and open blockers of many issues: one GraphQL query per STATUS_BATCH issues. An issue waits for
        its open sub-issues, the open issues its task list tracks, and its open "blocked by" dependencies (not in
        the GraphQL schema ao is held to, tests/api/github: one REST request for an open issue whose last read
        counted any, or that was never read through REST, see :meth:`_dependencies`)."""
        numbers = sorted({self._number(i) for i in issue_ids})
        owner, name = self.repo.split("/")
        related = " ".join(f"{link}(first: {LINK_PAGE}) {{ {LINKED} }}" for link in LINKS)
        by_number: dict[int, IssueStatus] = {}
        for start in range(0, len(numbers), STATUS_BATCH):
            chunk = numbers[start:start + STATUS_BATCH]
            fields = " ".join(f"i{n}: issue(number: {n}) {{ ...AoLinks }}" for n in chunk)
            query = (f"query AoIssueLinks($owner: String!, $name: String!) {{ repository(owner: $owner, name: $name) "
                     f"{{ {fields} }} }} fragment AoLinks on Issue {{ number state {related} }}")
            data, _ = self._client().graphql(query, {"owner": owner, "name": name})  # a missing issue: an error
            repo = data.get("repository") or {}
            for n in chunk:
                node = repo.get(f"i{n}")
                if not isinstance(node, dict):
                    continue
                waits_for = []
                for link in LINKS:
                    page = node.get(link) or {}
                    waits_for += self._open_linked(page.get("nodes") or [])
                    if blockers:  # more than LINK_PAGE: read on
                        waits_for += blockers_after(page, lambda cursor, n=n, link=link: self._linked_page(
                            n, link, cursor), self._open_linked, link, LINK_PAGE + MORE_LINKS * MORE_PAGES)
                closed = node.get("state") == "CLOSED"
                if blockers and not closed and self._blocked_counts.get(n, 1) > 0:
                    try:
                        waits_for += self._dependencies(n)
                    except AoError as exc:  # this issue waits (unknown is not "unblocked"); the others go on
                        waits_for.append(f"(dependencies unread: {exc})")
                by_number[n] = IssueStatus(state="closed" if closed else "open",
                                           blocked_by=list(dict.fromkeys(waits_for)))
        return {i: by_number[self._number(i)] for i in issue_ids if self._number(i) in by_number}

    def _open_linked(self, nodes: list[Any]) -> list[str]:
        out = []
        for b in nodes:
            if isinstance(b, dict) and b.get("state") == "OPEN":
                other = (b.get("repository") or {}).get("nameWithOwner") or self.repo
                out.append(f"#{b.get('number')}" if other == self.repo else f"{other}#{b.get('number')}")
        return out

    def _linked_page(self, n: int, link: str, cursor: str) -> dict[str, Any]:
        """The page of issue ``n``'s ``link`` after ``cursor`` (MORE_LINKS issues); AoError for a partial answer
        (an unread page is not "no blockers")."""
        owner, name = self.repo.split("/")
        query = (f"query AoMoreLinks($owner: String!, $name: String!, $n: Int!, $after: String) {{ repository("
                 f"owner: $owner, name: $name) {{ issue(number: $n) {{ {link}(first: {MORE_LINKS}, after: $after) "
                 f"{{ {LINKED} }} }} }} }}")
        data, errors = self._client().graphql(query, {"owner": owner, "name": name, "n": n, "after": cursor})
        page = ((data.get("repository") or {}).get("issue") or {}).get(link)
        if errors or not isinstance(page, dict):
            raise AoError("; ".join(str(e.get("message") or e) for e in errors) or f"no {link} in the answer")
        return page

    def _dependencies(self, n: int) -> list[str]:
        """The open issues issue ``n`` is blocked by (GitHub's issue dependencies, the first DEPENDENCY_PAGE;
        a closed blocker blocks nothing). A 404 or 410: none (an API without issue dependencies, GHES)."""
        client = self._client()
        response = client.request("GET", f"{self._path}/issues/{n}/dependencies/blocked_by",
                                  params={"per_page": DEPENDENCY_PAGE})
        if response.status_code in (404, 410):
            return []
        items = client.json_of(response, f"GET issue #{n}'s dependencies") if response.status_code == 200 else None
        if not isinstance(items, list):
            detail = client.message(response) if response.status_code != 200 else "not a list"
            raise AoError(f"cannot read what blocks issue #{n} of {self.repo}: HTTP {response.status_code}: {detail}")
        out = []
        for b in items:
            if isinstance(b, dict) and b.get("state") == "open" and isinstance(b.get("number"), int):
                other = "/".join(str(b.get("repository_url") or "").split("/")[-2:])
                out.append(f"#{b['number']}" if other.lower() in ("", self.repo.lower()) else f"{other}#{b['number']}")
        return out


STATUS_BATCH = 50   # issues per GraphQL query (each costs one point)
LINK_PAGE = 20      # blockers read per issue and kind of link in the batched query; more are read on
MORE_LINKS = 100    # ...by follow-up queries of this size (at most tracker.MORE_PAGES of them)
LINKS = ("subIssues", "trackedIssues")
LINKED = "nodes { number state repository { nameWithOwner } } pageInfo { hasNextPage endCursor }"
DEPENDENCY_PAGE = 100   # "blocked by" dependencies read per issue


def plugin(*, project_path: Path, settings: dict[str, Any] | None = None, client: Any = None) -> GitHubTracker:
    settings = settings or {}
    return GitHubTracker(repo=str(settings.get("repo") or ""), base_url=settings.get("baseUrl"),
                         labels=[str(x) for x in settings.get("labels") or []], client=client)
