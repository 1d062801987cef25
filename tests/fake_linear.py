"""A strict fake of Linear's GraphQL API on 127.0.0.1 for the Linear tracker tests.

It answers only POST /graphql with the right ``Authorization`` header (else 401 with Linear's
AUTHENTICATION_ERROR), and only the operations it knows, by name, with the variables each one needs and no
others (anything else: 400, as a GraphQL server rejects a document it cannot validate). Issues, teams and
workflow states live in plain dicts the test can read and change. ``mode = "fail"`` answers 500.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# operation name -> (kind, required variables, optional variables)
OPERATIONS = {
    "AoIssue": ("query", {"id"}, set()),
    "AoIssueForClose": ("query", {"id"}, set()),
    "AoIssues": ("query", set(), {"filter", "first"}),
    "AoComment": ("mutation", {"issueId", "body"}, set()),
    "AoClose": ("mutation", {"id", "stateId"}, set()),
    "AoViewIssues": ("query", {"id"}, {"first"}),
    "AoIssueLinks": ("query", set(), {"filter", "first"}),
}
_OPERATION = re.compile(r"^\s*(query|mutation)\s+(\w+)\s*(\([^)]*\))?\s*\{")


@dataclass
class FakeLinear:
    key: str = "lin_api_test_key"
    mode: str = "ok"
    teams: dict[str, dict[str, Any]] = field(default_factory=dict)     # key -> {id, states: [...]}
    issues: dict[str, dict[str, Any]] = field(default_factory=dict)    # identifier -> issue node
    comments: list[dict[str, Any]] = field(default_factory=list)
    views: dict[str, list[str]] = field(default_factory=dict)          # custom view id -> identifiers
    blocks: list[tuple[str, str]] = field(default_factory=list)        # (blocker, blocked) "blocks" relations
    requests: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[tuple[int, str]] = field(default_factory=list)
    port: int = 0
    _server: Any = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/graphql"

    # -- data ------------------------------------------------------------------------------------

    def add_team(self, key: str) -> None:
        tid = f"team-{key.lower()}"
        self.teams[key] = {"id": tid, "states": [
            {"id": f"{tid}-todo", "name": "Todo", "type": "unstarted", "position": 1},
            {"id": f"{tid}-progress", "name": "In Progress", "type": "started", "position": 2},
            {"id": f"{tid}-review", "name": "In Review", "type": "started", "position": 2.5},
            {"id": f"{tid}-done", "name": "Done", "type": "completed", "position": 3},
            {"id": f"{tid}-shipped", "name": "Shipped", "type": "completed", "position": 4},
            {"id": f"{tid}-canceled", "name": "Canceled", "type": "canceled", "position": 5},
        ]}

    def add_issue(self, identifier: str, title: str, description: str = "", state: str = "unstarted",
                  labels: tuple[str, ...] = (), state_name: str | None = None) -> None:
        team = identifier.split("-")[0]
        if team not in self.teams:
            self.add_team(team)
        st = next(s for s in self.teams[team]["states"] if s["type"] == state
                  and (state_name is None or s["name"] == state_name))
        self.issues[identifier] = {
            "id": f"uuid-{identifier.lower()}", "identifier": identifier, "title": title,
            "description": description, "url": f"https://linear.app/acme/issue/{identifier}",
            "state": {"type": st["type"], "name": st["name"], "id": st["id"]}, "labels": list(labels),
            "team": team,
        }

    def _by_any_id(self, value: str) -> dict[str, Any] | None:
        return self.issues.get(value) or next((i for i in self.issues.values() if i["id"] == value), None)

    def _node(self, issue: dict[str, Any]) -> dict[str, Any]:
        return {"id": issue["id"], "identifier": issue["identifier"], "title": issue["title"],
                "description": issue["description"], "url": issue["url"],
                "state": {"type": issue["state"]["type"], "name": issue["state"]["name"]},
                "labels": {"nodes": [{"name": n} for n in issue["labels"]]}}

    def _matches(self, issue: dict[str, Any], flt: dict[str, Any]) -> bool:
        """The subset of Linear's IssueFilter ao sends: team (key or id), number in, state (type in/nin, name
        eq), labels (name eq), and `or` of those."""
        if "or" in flt and not any(self._matches(issue, f) for f in flt["or"]):
            return False
        team = flt.get("team")
        if team and ("key" in team and issue["team"] != team["key"]["eq"]
                     or "id" in team and self.teams[issue["team"]]["id"] != team["id"]["eq"]):
            return False
        if "number" in flt and int(issue["identifier"].split("-")[1]) not in flt["number"]["in"]:
            return False
        state = flt.get("state") or {}
        kind = state.get("type") or {}
        if "in" in kind and issue["state"]["type"] not in kind["in"]:
            return False
        if "nin" in kind and issue["state"]["type"] in kind["nin"]:
            return False
        if "name" in state and issue["state"]["name"] != state["name"]["eq"]:
            return False
        if "labels" in flt and flt["labels"]["name"]["eq"] not in issue["labels"]:
            return False
        unknown = set(flt) - {"or", "team", "number", "state", "labels"}
        if unknown:
            raise AssertionError(f"filter keys the fake does not know: {unknown}")
        return True

    def _links(self, issue: dict[str, Any]) -> dict[str, Any]:
        inverse = [{"type": "blocks", "issue": {"identifier": blocker,
                                                "state": {"type": self.issues[blocker]["state"]["type"]}}}
                   for blocker, blocked in self.blocks if blocked == issue["identifier"] and blocker in self.issues]
        return {"identifier": issue["identifier"],
                "state": {"type": issue["state"]["type"], "name": issue["state"]["name"]},
                "inverseRelations": {"nodes": inverse}}

    # -- operations ------------------------------------------------------------------------------

    def _answer(self, name: str, query: str, v: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        not_found = {"errors": [{"message": "Entity not found: Issue",
                                 "extensions": {"code": "INVALID_INPUT", "type": "invalid input"}}]}
        if name == "AoIssue":
            issue = self._by_any_id(v["id"])
            return (200, {"data": {"issue": self._node(issue)}}) if issue else (200, not_found)
        if name == "AoIssueForClose":
            issue = self._by_any_id(v["id"])
            if not issue:
                return 200, not_found
            if '"completed"' not in query:
                return 400, {"errors": [{"message": "expected a filter on completed states"}]}
            states = [{k: s[k] for k in ("id", "name", "position")}
                      for s in self.teams[issue["team"]]["states"] if s["type"] == "completed"]
            return 200, {"data": {"issue": {"id": issue["id"], "identifier": issue["identifier"],
                                            "state": {"type": issue["state"]["type"]},
                                            "team": {"states": {"nodes": states}}}}}
        if name in ("AoIssues", "AoIssueLinks"):
            flt = v.get("filter") or {}
            out = [i for i in self.issues.values() if self._matches(i, flt)]
            first = v.get("first") or 50
            node = self._node if name == "AoIssues" else self._links
            return 200, {"data": {"issues": {"nodes": [node(i) for i in out[:first]]}}}
        if name == "AoViewIssues":
            if v["id"] not in self.views:
                return 200, {"errors": [{"message": "Entity not found: CustomView",
                                         "extensions": {"code": "INVALID_INPUT"}}]}
            nodes = [self._node(self.issues[i]) for i in self.views[v["id"]][: v.get("first") or 50]]
            return 200, {"data": {"customView": {"issues": {"nodes": nodes}}}}
        if name == "AoComment":
            issue = self._by_any_id(v["issueId"])
            if not issue:
                return 200, not_found
            self.comments.append({"issue": issue["identifier"], "body": v["body"]})
            return 200, {"data": {"commentCreate": {"success": True}}}
        if name == "AoClose":
            issue = self._by_any_id(v["id"])
            state = next((s for t in self.teams.values() for s in t["states"] if s["id"] == v["stateId"]), None)
            if not issue or not state:
                return 200, not_found
            issue["state"] = {"type": state["type"], "name": state["name"], "id": state["id"]}
            return 200, {"data": {"issueUpdate": {"success": True}}}
        raise AssertionError(name)

    # -- server ----------------------------------------------------------------------------------

    def start(self) -> FakeLinear:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _reply(self, status: int, payload: Any) -> None:
                body = json.dumps(payload).encode() if not isinstance(payload, bytes) else payload
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _reject(self, status: int, why: str) -> None:
                fake.rejected.append((status, why))
                self._reply(status, {"errors": [{"message": why}]})

            def do_GET(self) -> None:
                self._reject(405, "GET is not supported")

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.path != "/graphql":
                    return self._reject(404, f"no route {self.path}")
                if self.headers.get("Authorization") != fake.key:
                    fake.rejected.append((401, "bad key"))
                    return self._reply(401, {"errors": [{"message": "Authentication required, not authenticated",
                                                          "extensions": {"code": "AUTHENTICATION_ERROR"}}]})
                if "application/json" not in (self.headers.get("Content-Type") or ""):
                    return self._reject(400, "Content-Type must be application/json")
                if fake.mode == "fail":
                    return self._reply(500, b"<html>internal error</html>")
                try:
                    doc = json.loads(body)
                    query, variables = doc["query"], doc.get("variables") or {}
                except (ValueError, KeyError, TypeError):
                    return self._reject(400, "body must be JSON with a query")
                m = _OPERATION.match(query)
                if not m or m.group(2) not in OPERATIONS or query.count("{") != query.count("}"):
                    return self._reject(400, f"unknown operation: {query[:80]}")
                kind, required, optional = OPERATIONS[m.group(2)]
                declared = set(re.findall(r"\$(\w+)\s*:", m.group(3) or ""))
                if m.group(1) != kind or declared != required | (declared & optional) \
                        or set(variables) - declared or required - set(variables):
                    return self._reject(400, f"bad variables for {m.group(2)}: {sorted(variables)}")
                fake.requests.append({"operation": m.group(2), "variables": variables})
                status, payload = fake._answer(m.group(2), query, variables)
                self._reply(status, payload)

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
