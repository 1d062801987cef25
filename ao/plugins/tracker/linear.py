"""The Linear tracker (SPEC 8): issues over Linear's GraphQL API with httpx.

Settings: ``team`` (a team key such as ``ENG``) or ``teamId`` to scope ``list()``, ``apiKeyEnv`` (the variable
holding the key, default ``LINEAR_API_KEY``), ``baseUrl`` (default ``https://api.linear.app/graphql``, or
``$LINEAR_API_URL``; tests point it at a fake). The key is read when the first request is made, so a project
that only spawns free-form tasks never needs one; it is never logged or put in an error message.

Issue ids are Linear identifiers, ``ENG-123``. ``close()`` moves the issue to its team's first "completed"
workflow state (``Done`` in a default workspace); completed, canceled and duplicate issues read as closed (a
duplicate is never offered to an agent, and never moved to Done). ``list()`` and ``pickup()`` (views too) follow
Linear's pages (50 issues each) up to :data:`MAX_PAGES`.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ao.errors import AoError
from ao.plugins.tracker import MORE_PAGES, Issue, IssueNotFound, IssueStatus, blockers_after

DEFAULT_URL = "https://api.linear.app/graphql"
DEFAULT_KEY_ENV = "LINEAR_API_KEY"
TIMEOUT = 20.0           # seconds per request: Linear answers in well under a second when it is up
PAGE_SIZE = 50           # Linear's default page
MAX_PAGES = 20           # 1,000 issues: enough to pick from, and a bounded cost
CLOSED_TYPES = ("completed", "canceled", "duplicate")   # WorkflowState.type: triage backlog unstarted started ...
STATES = ("open", "closed", "all")
_ID = re.compile(r"[A-Za-z][A-Za-z0-9]*-\d+")
_ERROR_TEXT = 300        # characters of a response body kept in an error message

_ISSUE_FIELDS = "id identifier title description url state { type name } labels { nodes { name } }"

GET_ISSUE = f"query AoIssue($id: String!) {{ issue(id: $id) {{ {_ISSUE_FIELDS} }} }}"
LIST_ISSUES = (f"query AoIssues($filter: IssueFilter, $first: Int, $after: String) {{ issues(filter: $filter, "
               f"first: $first, after: $after) {{ nodes {{ {_ISSUE_FIELDS} }} pageInfo {{ hasNextPage endCursor }} }} }}")
ISSUE_FOR_CLOSE = ("query AoIssueForClose($id: String!) { issue(id: $id) { id identifier state { type } "
                   "team { states(filter: { type: { eq: \"completed\" } }) { nodes { id name position } } } } }")
CREATE_COMMENT = ("mutation AoComment($issueId: String!, $body: String!) { commentCreate(input: "
                  "{ issueId: $issueId, body: $body }) { success } }")
UPDATE_STATE = ("mutation AoClose($id: String!, $stateId: String!) { issueUpdate(id: $id, input: "
                "{ stateId: $stateId }) { success } }")


@dataclass
class LinearTracker:
    url: str
    key_env: str
    team: str = ""
    team_id: str = ""
    name: str = "linear"
    _client: Any = field(default=None, repr=False)

    # -- transport ---------------------------------------------------------------------------------

    def _key(self) -> str:
        key = os.environ.get(self.key_env, "").strip()
        if not key:
            raise AoError(f"the Linear tracker needs an API key in ${self.key_env}: create a personal API key in "
                          "Linear (Settings > Security & access) and export it")
        return key

    def _http(self) -> Any:
        if self._client is None:
            import httpx

            self._client = httpx.Client(timeout=httpx.Timeout(TIMEOUT), follow_redirects=False)
        return self._client

    def _call(self, query: str, variables: dict[str, Any], what: str) -> dict[str, Any]:
        """POST one GraphQL operation; its ``data``, or AoError that says what failed (never the key)."""
        import httpx

        key = self._key()
        # Personal API keys go in the header as they are; an OAuth token is written "Bearer <token>".
        headers = {"Authorization": key, "Content-Type": "application/json", "User-Agent": "ao"}
        try:
            response = self._http().post(self.url, json={"query": query, "variables": variables}, headers=headers)
        except httpx.TimeoutException:
            raise AoError(f"Linear did not answer within {TIMEOUT:g}s ({what})") from None
        except httpx.HTTPError as exc:
            raise AoError(f"cannot reach Linear at {self.url} ({what}): {type(exc).__name__}: {exc}") from None
        try:
            body = response.json()
        except ValueError:
            body = None
        errors = body.get("errors") if isinstance(body, dict) else None
        codes = {str((e.get("extensions") or {}).get("code", "")).upper() for e in errors or [] if isinstance(e, dict)}
        if response.status_code in (401, 403) or "AUTHENTICATION_ERROR" in codes:
            raise AoError(f"Linear refused the API key in ${self.key_env} (HTTP {response.status_code}, {what}); "
                          "check that it is a valid personal API key with access to this workspace")
        if response.status_code == 429 or "RATELIMITED" in codes:
            raise AoError(f"Linear's rate limit is used up ({what}); try again in a while")
        if errors:
            messages = "; ".join(str(e.get("message", e)) if isinstance(e, dict) else str(e) for e in errors)
            raise _GraphQLError(f"Linear answered {what} with an error: {messages[:_ERROR_TEXT]}", messages)
        if response.status_code != 200 or not isinstance(body, dict) or not isinstance(body.get("data"), dict):
            text = response.text[:_ERROR_TEXT].replace(key, "***")
            raise AoError(f"Linear answered {what} with HTTP {response.status_code}: {text or 'no body'}")
        return body["data"]

    # -- records -----------------------------------------------------------------------------------

    @staticmethod
    def _issue(node: dict[str, Any]) -> Issue:
        state = (node.get("state") or {}).get("type", "")
        labels = [n.get("name", "") for n in ((node.get("labels") or {}).get("nodes") or []) if n.get("name")]
        return Issue(id=node.get("identifier") or node.get("id", ""), title=node.get("title") or "",
                     body=node.get("description") or "", url=node.get("url") or "",
                     state="closed" if state in CLOSED_TYPES else "open", labels=labels)

    def _check(self, issue_id: str) -> str:
        text = str(issue_id).strip().removeprefix("#")
        if not _ID.fullmatch(text):
            raise AoError(f"'{issue_id}' is not a Linear issue id: use the team key and number, e.g. ENG-123")
        return text.upper()

    def _lookup(self, query: str, issue_id: str, what: str) -> dict[str, Any]:
        issue_id = self._check(issue_id)
        try:
            data = self._call(query, {"id": issue_id}, what)
        except _GraphQLError as exc:
            if "not found" in exc.messages.lower():
                raise self._not_found(issue_id) from None
            raise
        node = data.get("issue")
        if not isinstance(node, dict):
            raise self._not_found(issue_id)
        return node

    def _not_found(self, issue_id: str) -> IssueNotFound:
        where = f" in team {self.team}" if self.team else ""
        return IssueNotFound(f"no Linear issue {issue_id}{where} (or the API key in ${self.key_env} cannot see it)")

    # -- the interface -----------------------------------------------------------------------------

    def looks_like_id(self, text: str) -> bool:
        return _ID.fullmatch(str(text).strip().removeprefix("#")) is not None

    def get(self, issue_id: str) -> Issue:
        return self._issue(self._lookup(GET_ISSUE, issue_id, f"the lookup of {self._check(issue_id)}"))

    def list(self, state: str = "open") -> list[Issue]:
        if state not in STATES:
            raise AoError(f"unknown issue state '{state}'; use one of {', '.join(STATES)}")
        flt: dict[str, Any] = {}
        if self.team_id:
            flt["team"] = {"id": {"eq": self.team_id}}
        elif self.team:
            flt["team"] = {"key": {"eq": self.team}}
        if state != "all":
            flt["state"] = {"type": {"nin" if state == "open" else "in": list(CLOSED_TYPES)}}
        return self._pages(LIST_ISSUES, {"filter": flt}, "the issue list")

    def _pages(self, query: str, variables: dict[str, Any], what: str, view: bool = False) -> list[Issue]:
        """Every issue of a paged issue list (a custom view's with ``view``), up to :data:`MAX_PAGES` pages."""
        issues: list[Issue] = []
        after = None
        for _ in range(MAX_PAGES):
            data = self._call(query, {**variables, "first": PAGE_SIZE, "after": after}, what)
            page = ((data.get("customView") or {}) if view else data).get("issues") or {}
            issues += [self._issue(n) for n in page.get("nodes") or [] if isinstance(n, dict)]
            info = page.get("pageInfo") or {}
            after = info.get("endCursor")
            if not info.get("hasNextPage") or not after:
                break
        return issues

    def comment(self, issue_id: str, text: str) -> None:
        node = self._lookup(GET_ISSUE, issue_id, f"the lookup of {self._check(issue_id)}")
        data = self._call(CREATE_COMMENT, {"issueId": node["id"], "body": text}, f"a comment on {node['identifier']}")
        if not (data.get("commentCreate") or {}).get("success"):
            raise AoError(f"Linear did not add the comment to {node['identifier']}")

    def close(self, issue_id: str) -> None:
        node = self._lookup(ISSUE_FOR_CLOSE, issue_id, f"the lookup of {self._check(issue_id)}")
        if (node.get("state") or {}).get("type") in CLOSED_TYPES:
            return  # closing twice is fine
        states = sorted(((node.get("team") or {}).get("states") or {}).get("nodes") or [],
                        key=lambda s: s.get("position") or 0)
        if not states:
            raise AoError(f"cannot close {node['identifier']}: its team has no 'completed' workflow state")
        data = self._call(UPDATE_STATE, {"id": node["id"], "stateId": states[0]["id"]},
                          f"closing {node['identifier']}")
        if not (data.get("issueUpdate") or {}).get("success"):
            raise AoError(f"Linear did not move {node['identifier']} to '{states[0].get('name', 'Done')}'")


    # -- admission (SPEC 12) ----------------------------------------------------------------------------

    def pickup(self, spec: dict[str, Any]) -> list[Issue]:
        """Open issues in a custom view, or with a label and/or in a workflow state (of the team, if set)."""
        if spec.get("view"):
            issues = self._pages(VIEW_ISSUES, {"id": spec["view"]}, f"the view {spec['view']}", view=True)
            return [i for i in issues if i.state == "open"]
        flt: dict[str, Any] = {"state": {"type": {"nin": list(CLOSED_TYPES)}}}
        if spec.get("state"):
            flt["state"]["name"] = {"eq": spec["state"]}
        if spec.get("label"):
            flt["labels"] = {"name": {"eq": spec["label"]}}
        if self.team_id:
            flt["team"] = {"id": {"eq": self.team_id}}
        elif self.team:
            flt["team"] = {"key": {"eq": self.team}}
        return self._pages(LIST_ISSUES, {"filter": flt}, "the pickup list")

    def status(self, issue_ids: list[str], active_states: list[str] | None = None, *,
               blockers: bool = True) -> dict[str, IssueStatus]:
        """State and open blockers ("blocks" relations pointing at the issue) of many issues, one query per
        team and STATUS_BATCH issues. With ``active_states``, an open issue in another state is inactive."""
        wanted: dict[tuple[str, int], str] = {}
        for issue_id in issue_ids:
            key = self._check(issue_id)
            team, number = key.rsplit("-", 1)
            wanted[(team, int(number))] = issue_id
        out: dict[str, IssueStatus] = {}
        items = sorted(wanted)
        for start in range(0, len(items), STATUS_BATCH):
            chunk = items[start:start + STATUS_BATCH]
            teams: dict[str, list[int]] = {}
            for team, number in chunk:
                teams.setdefault(team, []).append(number)
            flt = {"or": [{"team": {"key": {"eq": t}}, "number": {"in": ns}} for t, ns in teams.items()]}
            data = self._call(ISSUE_LINKS, {"filter": flt, "first": len(chunk)}, "the issues' relations")
            for node in (data.get("issues") or {}).get("nodes") or []:
                ident = str(node.get("identifier") or "").upper()
                team, _, number = ident.rpartition("-")
                issue_id = wanted.get((team, int(number))) if number.isdigit() else None
                if issue_id is None:
                    continue
                state = node.get("state") or {}
                kind = "closed" if state.get("type") in CLOSED_TYPES else "open"
                if kind == "open" and active_states and state.get("name") not in active_states:
                    kind = "inactive"
                page = node.get("inverseRelations") or {}
                waits_for = _open_blockers(page.get("nodes") or [])
                if blockers:  # more than one page of relations: read on
                    waits_for += blockers_after(page, lambda cursor, ident=ident: self._relations_page(ident, cursor),
                                                _open_blockers, "relations", RELATIONS + MORE_RELATIONS * MORE_PAGES)
                out[issue_id] = IssueStatus(state=kind, blocked_by=list(dict.fromkeys(waits_for)))
        return out


    def _relations_page(self, identifier: str, cursor: str) -> dict[str, Any]:
        """The page of ``identifier``'s relations after ``cursor`` (MORE_RELATIONS of them)."""
        data = self._call(MORE_RELATIONS_QUERY, {"id": identifier, "after": cursor}, "the issue's relations")
        return ((data.get("issue") or {}).get("inverseRelations")) or {}


def _open_blockers(relations: list[Any]) -> list[str]:
    """The identifiers of the unfinished issues that "block" relations name."""
    return [r["issue"]["identifier"] for r in relations
            if isinstance(r, dict) and r.get("type") == "blocks" and isinstance(r.get("issue"), dict)
            and (r["issue"].get("state") or {}).get("type") not in CLOSED_TYPES]


STATUS_BATCH = 50
RELATIONS = 50          # an issue's relations read in the batched query (Linear's page); more are read on
MORE_RELATIONS = 100    # ...by follow-up queries of this size (at most tracker.MORE_PAGES of them)
_RELATIONS = "nodes { type issue { identifier state { type } } } pageInfo { hasNextPage endCursor }"
VIEW_ISSUES = (f"query AoViewIssues($id: String!, $first: Int, $after: String) {{ customView(id: $id) {{ "
               f"issues(first: $first, after: $after) {{ nodes {{ {_ISSUE_FIELDS} }} pageInfo {{ hasNextPage "
               f"endCursor }} }} }} }}")
ISSUE_LINKS = ("query AoIssueLinks($filter: IssueFilter, $first: Int) { issues(filter: $filter, first: $first) "
               f"{{ nodes {{ identifier state {{ type name }} inverseRelations(first: {RELATIONS}) {{ {_RELATIONS} }} }} }} }}")
MORE_RELATIONS_QUERY = (f"query AoMoreRelations($id: String!, $after: String) {{ issue(id: $id) {{ "
                        f"inverseRelations(first: {MORE_RELATIONS}, after: $after) {{ {_RELATIONS} }} }} }}")


class _GraphQLError(AoError):
    def __init__(self, message: str, messages: str) -> None:
        super().__init__(message)
        self.messages = messages


def plugin(*, project_path: Path, settings: dict[str, Any] | None = None) -> LinearTracker:
    settings = settings or {}
    url = str(settings.get("baseUrl") or os.environ.get("LINEAR_API_URL") or DEFAULT_URL)
    if not url.startswith(("https://", "http://")):
        raise AoError(f"tracker.baseUrl '{url}' must be an http(s) URL")
    return LinearTracker(url=url, key_env=str(settings.get("apiKeyEnv") or DEFAULT_KEY_ENV),
                         team=str(settings.get("team") or ""), team_id=str(settings.get("teamId") or ""))
