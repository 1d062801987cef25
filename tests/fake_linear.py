"""A strict fake of Linear's GraphQL API on 127.0.0.1, executing queries against Linear's own schema.

Documents are validated and executed by graphql-core against ``tests/api/linear/schema.graphql`` (Linear's
schema, from ``@linear/sdk``): a field, argument or variable Linear would refuse is answered 400 with
``GRAPHQL_VALIDATION_FAILED``, as Linear does, and recorded in :attr:`FakeLinear.rejected`. Resolvers cover what
ao asks for (issues, teams and their workflow states, comments, issue updates) and refuse filters they do not
implement (recorded in :attr:`FakeLinear.violations`) rather than ignore them. Only POST /graphql with the
right ``Authorization`` header is served (else 401 with ``AUTHENTICATION_ERROR``); ``mode = "fail"`` answers
500. Lists default to 50 items a page, as Linear's do.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

from api_descriptions import ResolverError, connection, graphql_errors, linear_schema
from httpkit import start_server, stop_server

NOT_FOUND = {"code": "INVALID_INPUT", "type": "invalid input", "userPresentableMessage": "Entity not found"}
DEFAULT_PAGE = 50


@dataclass
class FakeLinear:
    key: str = "lin_api_test_key"
    mode: str = "ok"
    teams: dict[str, dict[str, Any]] = field(default_factory=dict)     # key -> {id, states: [...]}
    issues: dict[str, dict[str, Any]] = field(default_factory=dict)    # identifier -> issue record
    comments: list[dict[str, Any]] = field(default_factory=list)
    views: dict[str, list[str]] = field(default_factory=dict)          # custom view id -> identifiers
    blocks: list[tuple[str, str]] = field(default_factory=list)        # ("blocks" relations: blocker, blocked)
    requests: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[tuple[int, str]] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    port: int = 0
    _server: Any = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/graphql"

    # -- data ------------------------------------------------------------------------------------

    def add_team(self, key: str) -> None:
        tid = f"team-{key.lower()}"
        self.teams[key] = {"id": tid, "key": key, "states": [
            {"id": f"{tid}-todo", "name": "Todo", "type": "unstarted", "position": 1.0},
            {"id": f"{tid}-progress", "name": "In Progress", "type": "started", "position": 2.0},
            {"id": f"{tid}-done", "name": "Done", "type": "completed", "position": 3.0},
            {"id": f"{tid}-shipped", "name": "Shipped", "type": "completed", "position": 4.0},
            {"id": f"{tid}-canceled", "name": "Canceled", "type": "canceled", "position": 5.0},
            {"id": f"{tid}-duplicate", "name": "Duplicate", "type": "duplicate", "position": 6.0},
        ]}

    def add_issue(self, identifier: str, title: str, description: str = "", state: str = "unstarted",
                  labels: tuple[str, ...] = (), state_name: str | None = None) -> None:
        team = identifier.split("-")[0]
        if team not in self.teams:
            self.add_team(team)
        st = next(s for s in self.teams[team]["states"] if s["type"] == state
                  and state_name in (None, s["name"]))
        self.issues[identifier] = {
            "id": f"uuid-{identifier.lower()}", "identifier": identifier, "title": title,
            "description": description, "url": f"https://linear.app/acme/issue/{identifier}",
            "state": dict(st), "labels": list(labels), "team": team,
        }

    def _by_any_id(self, value: str) -> dict[str, Any] | None:
        return self.issues.get(value) or next((i for i in self.issues.values() if i["id"] == value), None)

    # -- resolvers -------------------------------------------------------------------------------

    def _state_obj(self, st: dict[str, Any]) -> dict[str, Any]:
        return {"__typename": "WorkflowState", **st}

    def _team_obj(self, key: str) -> dict[str, Any]:
        team = self.teams[key]

        def states(info: Any, **args: Any) -> Any:
            found = [s for s in team["states"] if self._matches_state(s, args.get("filter"))]
            return connection([self._state_obj(s) for s in found], {"first": DEFAULT_PAGE, **args})

        return {"__typename": "Team", "id": team["id"], "key": key, "states": states}

    def _issue_obj(self, issue: dict[str, Any]) -> dict[str, Any]:
        def labels(info: Any, **args: Any) -> Any:
            return connection([{"__typename": "IssueLabel", "name": n, "id": f"label-{n}"} for n in issue["labels"]],
                              {"first": DEFAULT_PAGE, **args})

        def inverse_relations(info: Any, **args: Any) -> Any:  # relations whose relatedIssue is this one
            found = [{"__typename": "IssueRelation", "id": f"rel-{a}-{b}", "type": "blocks",
                      "issue": self._issue_obj(self.issues[a]), "relatedIssue": self._issue_obj(issue)}
                     for a, b in self.blocks if b == issue["identifier"] and a in self.issues]
            return connection(found, {"first": DEFAULT_PAGE, **args})

        return {"__typename": "Issue", "id": issue["id"], "identifier": issue["identifier"], "title": issue["title"],
                "description": issue["description"] or None, "url": issue["url"],
                "number": float(issue["identifier"].split("-")[1]),
                "state": self._state_obj(issue["state"]), "labels": labels, "team": self._team_obj(issue["team"]),
                "inverseRelations": inverse_relations}

    def _refuse_filter(self, what: str) -> None:
        self.violations.append(f"the fake does not implement the filter {what}")
        raise ResolverError(f"the fake does not implement the filter {what}")

    def _matches_state(self, state: dict[str, Any], flt: dict[str, Any] | None) -> bool:
        for key, comparator in (flt or {}).items():
            if key not in ("type", "name"):
                self._refuse_filter(f"WorkflowStateFilter.{key}")
            if not self._compare(state[key], comparator):
                return False
        return True

    def _compare(self, value: Any, comparator: dict[str, Any]) -> bool:
        for op, operand in comparator.items():
            if op == "eq" and value != operand or op == "neq" and value == operand \
                    or op == "in" and value not in operand or op == "nin" and value in operand:
                return False
            if op not in ("eq", "neq", "in", "nin"):
                self._refuse_filter(f"comparator {op}")
        return True

    def _matches_issue(self, issue: dict[str, Any], flt: dict[str, Any] | None) -> bool:
        for key, sub in (flt or {}).items():
            if key == "team":
                team = self.teams[issue["team"]]
                for field_name, comparator in sub.items():
                    if field_name not in ("id", "key"):
                        self._refuse_filter(f"TeamFilter.{field_name}")
                    if not self._compare(team[field_name], comparator):
                        return False
            elif key == "state":
                if not self._matches_state(issue["state"], sub):
                    return False
            elif key == "or":
                if not any(self._matches_issue(issue, f) for f in sub):
                    return False
            elif key == "number":
                if not self._compare(float(issue["identifier"].split("-")[1]), sub):
                    return False
            elif key == "labels":
                if set(sub) != {"name"}:
                    self._refuse_filter(f"IssueLabelCollectionFilter.{sorted(sub)}")
                if not any(self._compare(name, sub["name"]) for name in issue["labels"]):
                    return False
            else:
                self._refuse_filter(f"IssueFilter.{key}")
        return True

    def _root(self) -> dict[str, Any]:
        def issue(info: Any, id: str) -> Any:
            found = self._by_any_id(id)
            if found is None:
                raise ResolverError("Entity not found: Issue", extensions=NOT_FOUND)
            return self._issue_obj(found)

        def issues(info: Any, **args: Any) -> Any:
            found = [i for i in self.issues.values() if self._matches_issue(i, args.get("filter"))]
            return connection([self._issue_obj(i) for i in found], {"first": DEFAULT_PAGE, **args})

        def comment_create(info: Any, input: dict[str, Any]) -> Any:
            found = self._by_any_id(input.get("issueId") or "")
            if found is None:
                raise ResolverError("Entity not found: Issue", extensions=NOT_FOUND)
            self.comments.append({"issue": found["identifier"], "body": input.get("body")})
            return {"success": True, "lastSyncId": 1.0, "comment": {"id": f"comment-{len(self.comments)}"}}

        def issue_update(info: Any, id: str, input: dict[str, Any]) -> Any:
            found = self._by_any_id(id)
            state = next((s for t in self.teams.values() for s in t["states"] if s["id"] == input.get("stateId")),
                         None)
            if found is None or state is None or set(input) - {"stateId"}:
                raise ResolverError("Entity not found: Issue", extensions=NOT_FOUND)
            found["state"] = dict(state)
            return {"success": True, "lastSyncId": 2.0, "issue": self._issue_obj(found)}

        def custom_view(info: Any, id: str) -> Any:
            if id not in self.views:
                raise ResolverError("Entity not found: CustomView", extensions=NOT_FOUND)

            def view_issues(info: Any, **args: Any) -> Any:
                if args.get("filter"):
                    self._refuse_filter("CustomView.issues(filter)")
                return connection([self._issue_obj(self.issues[i]) for i in self.views[id]],
                                  {"first": DEFAULT_PAGE, **args})

            return {"__typename": "CustomView", "id": id, "name": id, "issues": view_issues}

        return {"issue": issue, "issues": issues, "commentCreate": comment_create, "issueUpdate": issue_update,
                "customView": custom_view}

    def _execute(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        from graphql import GraphQLError, execute, parse, validate

        try:
            doc = parse(body["query"])
        except GraphQLError as exc:
            return self._invalid(exc.message)
        errors = validate(linear_schema(), doc)
        if errors:
            return self._invalid(errors[0].message)
        result = execute(linear_schema(), doc, root_value=self._root(), variable_values=body.get("variables") or {},
                         operation_name=body.get("operationName"))
        errors = result.errors or []
        if errors and result.data is None and all(e.path is None for e in errors):
            return self._invalid(errors[0].message)  # variables that do not fit their declared types
        answer: dict[str, Any] = {"data": result.data}
        if errors:
            answer["errors"] = graphql_errors(errors)
            # a resolver of ours failed, or a non-null field had no value: a bug of the fake
            self.violations += [f"execution: {e.message}" for e in errors if not isinstance(e.original_error, ResolverError)]
        return 200, answer

    def _invalid(self, message: str) -> tuple[int, dict[str, Any]]:
        self.rejected.append((400, message))
        return 400, {"errors": [{"message": message, "extensions": {"code": "GRAPHQL_VALIDATION_FAILED"}}]}

    # -- server ----------------------------------------------------------------------------------

    def start(self) -> FakeLinear:
        fake = self
        linear_schema()

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
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
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
                    body = json.loads(raw)
                    if not isinstance(body, dict) or not isinstance(body.get("query"), str):
                        raise ValueError
                except ValueError:
                    return self._reject(400, "body must be JSON with a query")
                from graphql import OperationDefinitionNode, parse

                try:
                    names = [d.name.value for d in parse(body["query"]).definitions
                             if isinstance(d, OperationDefinitionNode) and d.name]
                except Exception:
                    names = []
                fake.requests.append({"operation": names[0] if names else "", "variables": body.get("variables") or {}})
                status, payload = fake._execute(body)
                self._reply(status, payload)

        self._server = start_server(Handler, self.port)
        self.port = self._server.server_address[1]
        return self

    def stop(self) -> None:
        stop_server(self._server)
        self._server = None
