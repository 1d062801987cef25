"""A strict fake of the GitHub API subset ao uses (REST + GraphQL), on 127.0.0.1, for tests and the benchmark.

It holds one repository's PRs (head commit, checks, review threads), issues and job logs in plain Python
data, and answers exactly the requests ao makes: anything else is a 404/405, an unknown query parameter or
body key a 400/422, a request without the token a 401. GraphQL is parsed and executed for real over a small
schema (the fields ao asks for, nothing more): an unknown field or argument is a 400.

Like GitHub: GET answers carry a strong ETag, and a matching ``If-None-Match`` gets a bodiless 304 that does
not count against the rate limit; every answer carries ``x-ratelimit-*`` headers; a GraphQL query costs what
GitHub's formula says (connections requested / 100, at least 1) and its ``rateLimit`` field reports it.

Every request is logged (:attr:`FakeGitHub.log`: method, path, status, graphql, counted, PRs queried).
Faults: :meth:`fail` (5xx for the next N requests), :meth:`hold` (answer late: a client timeout),
:meth:`secondary_limit` (403 + retry-after), :meth:`malformed` (a 200 with broken JSON), and
:meth:`push_after_read` (a PR pushed to right after it is read: the pinned merge then gets a 409).
"""

from __future__ import annotations

import hashlib
import json
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import parse_qsl, urlsplit

TOKEN = "ghp_fakeToken0123456789abcdefABCDEF0123"


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(int(epoch), timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def sha_of(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()


# ------------------------------------------------------------------------------------------------ data


@dataclass
class Run:
    """A check on the PR's head commit: a CheckRun (GitHub Actions unless ``actions=False``) or, with
    ``kind="StatusContext"``, a commit status."""

    name: str
    conclusion: str | None = "SUCCESS"    # CheckRun: SUCCESS FAILURE ...; StatusContext: its state
    status: str = "COMPLETED"             # CheckRun: QUEUED IN_PROGRESS COMPLETED
    kind: str = "CheckRun"
    actions: bool = True
    log: str = ""
    id: int = 0


@dataclass
class Thread:
    body: str
    author: str = "alice"
    association: str = "MEMBER"
    bot: bool = False
    resolved: bool = False
    outdated: bool = False
    path: str = "src/app.py"
    line: int | None = 3
    id: str = ""


@dataclass
class PR:
    number: int
    branch: str
    head_sha: str
    base: str = "main"
    state: str = "OPEN"                   # OPEN CLOSED MERGED
    draft: bool = False
    mergeable: str = "MERGEABLE"          # MERGEABLE CONFLICTING UNKNOWN
    merge_state: str = "CLEAN"            # CLEAN DIRTY BEHIND BLOCKED UNKNOWN UNSTABLE
    review: str | None = None             # APPROVED CHANGES_REQUESTED REVIEW_REQUIRED
    rollup: str | None = None             # overrides the state computed from ``checks``
    checks: list[Run] = field(default_factory=list)
    threads: list[Thread] = field(default_factory=list)
    head_repo: str = ""
    title: str = ""
    updated: int = 0
    merge_commit_sha: str = ""
    merged_with: str = ""
    comments: list[str] = field(default_factory=list)


@dataclass
class IssueRec:
    number: int
    title: str
    body: str = ""
    state: str = "open"
    labels: list[str] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)
    state_reason: str | None = None
    blocked_by: list[int] = field(default_factory=list)   # issue dependencies: "blocked by" these numbers
    tracks: list[int] = field(default_factory=list)       # its task list: the issues it tracks


@dataclass
class Logged:
    method: str
    path: str
    status: int
    graphql: bool = False
    counted: bool = False     # spent rate limit
    prs: int = 0              # PRs asked for in a GraphQL query
    cost: int = 0             # GraphQL points
    body: Any = None          # the JSON sent (REST writes)
    auth: bool = False        # an Authorization header came with it


@dataclass
class Fault:
    kind: str                 # status | hold | secondary | malformed
    count: int
    match: Callable[[str, str], bool] | None = None
    status: int = 500
    seconds: float = 0.0
    retry_after: int | None = 60


class Bad(Exception):
    """A request the fake does not understand: answered 400 with the message."""


# -------------------------------------------------------------------------------------- GraphQL subset

_TOKENS = re.compile(r'(?P<skip>[\s,]+|#[^\n]*)|(?P<spread>\.\.\.)|(?P<punct>[!$():=@\[\]{}|])'
                     r'|(?P<name>[_A-Za-z][_0-9A-Za-z]*)|(?P<num>-?\d+)|(?P<str>"(?:[^"\\\n]|\\.)*")')


@dataclass
class Sel:
    kind: str                 # field | inline | spread
    name: str                 # field name, type condition or fragment name
    alias: str = ""
    args: dict[str, Any] = field(default_factory=dict)
    selections: list[Sel] | None = None


class Var:
    def __init__(self, name: str) -> None:
        self.name = name


class Enum(str):
    pass


class Parser:
    """Queries, variable definitions, fields with aliases and arguments, fragments; no directives."""

    def __init__(self, text: str) -> None:
        self.tokens: list[tuple[str, str]] = []
        pos = 0
        while pos < len(text):
            m = _TOKENS.match(text, pos)
            if not m:
                raise Bad(f"GraphQL syntax error at offset {pos}")
            pos = m.end()
            if m.lastgroup != "skip":
                self.tokens.append((m.lastgroup or "", m.group()))
        self.i = 0

    def peek(self) -> tuple[str, str]:
        return self.tokens[self.i] if self.i < len(self.tokens) else ("eof", "")

    def take(self, value: str | None = None, kind: str | None = None) -> str:
        k, v = self.peek()
        if (value is not None and v != value) or (kind is not None and k != kind) or k == "eof":
            raise Bad(f"GraphQL syntax error: expected {value or kind}, got {v or 'end of query'!r}")
        self.i += 1
        return v

    def document(self) -> tuple[list[Sel], dict[str, str], dict[str, tuple[str, list[Sel]]]]:
        operation, declared, fragments = None, {}, {}
        while self.peek()[0] != "eof":
            if self.peek()[1] == "fragment":
                self.take("fragment")
                name = self.take(kind="name")
                self.take("on")
                fragments[name] = (self.take(kind="name"), self.selection_set())
                continue
            if operation is not None:
                raise Bad("only one operation per document")
            if self.peek()[1] == "query":
                self.take("query")
                if self.peek()[0] == "name":
                    self.take()
                if self.peek()[1] == "(":
                    self.take("(")
                    while self.peek()[1] != ")":
                        self.take("$")
                        name = self.take(kind="name")
                        self.take(":")
                        declared[name] = self.type_ref()
                    self.take(")")
            elif self.peek()[1] != "{":
                raise Bad(f"unsupported operation {self.peek()[1]!r}")
            operation = self.selection_set()
        if operation is None:
            raise Bad("no operation")
        return operation, declared, fragments

    def type_ref(self) -> str:
        if self.peek()[1] == "[":
            self.take("[")
            inner = self.type_ref()
            self.take("]")
            text = f"[{inner}]"
        else:
            text = self.take(kind="name")
        if self.peek()[1] == "!":
            self.take("!")
            text += "!"
        return text

    def selection_set(self) -> list[Sel]:
        self.take("{")
        out = []
        while self.peek()[1] != "}":
            if self.peek()[0] == "spread":
                self.take()
                if self.peek()[1] == "on":
                    self.take("on")
                    out.append(Sel("inline", self.take(kind="name"), selections=self.selection_set()))
                else:
                    out.append(Sel("spread", self.take(kind="name")))
                continue
            name, alias = self.take(kind="name"), ""
            if self.peek()[1] == ":":
                self.take(":")
                alias, name = name, self.take(kind="name")
            args = {}
            if self.peek()[1] == "(":
                self.take("(")
                while self.peek()[1] != ")":
                    key = self.take(kind="name")
                    self.take(":")
                    args[key] = self.value()
                self.take(")")
            selections = self.selection_set() if self.peek()[1] == "{" else None
            out.append(Sel("field", name, alias, args, selections))
        self.take("}")
        if not out:
            raise Bad("empty selection set")
        return out

    def value(self) -> Any:
        kind, text = self.peek()
        if text == "$":
            self.take("$")
            return Var(self.take(kind="name"))
        if kind == "num":
            self.take()
            return int(text)
        if kind == "str":
            self.take()
            return json.loads(text)
        if text == "{":
            self.take("{")
            obj = {}
            while self.peek()[1] != "}":
                key = self.take(kind="name")
                self.take(":")
                obj[key] = self.value()
            self.take("}")
            return obj
        if text == "[":
            self.take("[")
            items = []
            while self.peek()[1] != "]":
                items.append(self.value())
            self.take("]")
            return items
        if kind == "name":
            self.take()
            return {"true": True, "false": False, "null": None}.get(text, Enum(text))
        raise Bad(f"GraphQL syntax error: unexpected {text!r}")


class Field:
    """A field that takes arguments: ``fn(args)`` gives its value; ``allowed`` are the argument names."""

    def __init__(self, fn: Callable[[dict[str, Any]], Any], allowed: set[str], required: set[str] = frozenset()):
        self.fn, self.allowed, self.required = fn, allowed, required


def _connection_cost(selections: list[Sel], fragments: dict, variables: dict, mult: int = 1) -> int:
    """GitHub's count of the requests a query needs: each connection counts once per parent node."""
    total = 0
    for sel in selections:
        if sel.kind == "spread":
            total += _connection_cost(fragments[sel.name][1], fragments, variables, mult)
        elif sel.kind == "inline":
            total += _connection_cost(sel.selections or [], fragments, variables, mult)
        elif sel.selections:
            size = next((sel.args[k] for k in ("first", "last") if k in sel.args), None)
            if isinstance(size, Var):
                size = variables.get(size.name)
            if isinstance(size, int):
                total += mult
                total += _connection_cost(sel.selections, fragments, variables, mult * size)
            else:
                total += _connection_cost(sel.selections, fragments, variables, mult)
    return total


# ------------------------------------------------------------------------------------------ the server


class FakeGitHub:
    def __init__(self, owner: str = "acme", repo: str = "app", token: str = TOKEN,
                 clock: Callable[[], float] = time.time, limit: int = 5000, graphql_limit: int = 5000) -> None:
        self.owner, self.repo, self.token, self.clock = owner, repo, token, clock
        self.full_name = f"{owner}/{repo}"
        self.prs: dict[int, PR] = {}
        self.issues: dict[int, IssueRec] = {}
        self.log: list[Logged] = []
        self.faults: list[Fault] = []
        self.after_read: dict[int, str] = {}
        self.limits = {"core": limit, "graphql": graphql_limit}
        self.remaining = dict(self.limits)
        self.reset = int(clock()) + 3600
        self.lock = threading.RLock()
        self.release = threading.Event()
        self._number = 0
        self._ids = 1000
        self._server: ThreadingHTTPServer | None = None
        self.port = 0
        self.blob_host = "localhost"

    # -- data helpers ------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _next(self) -> int:
        self._number += 1
        return self._number

    def _id(self) -> int:
        self._ids += 1
        return self._ids

    def add_pr(self, branch: str, **kw: Any) -> PR:
        with self.lock:
            n = self._next()
            kw.setdefault("head_sha", sha_of(f"{branch}-{n}-0"))
            kw.setdefault("head_repo", self.full_name)
            kw.setdefault("title", f"Work on {branch}")
            kw.setdefault("updated", int(self.clock()))
            pr = PR(number=n, branch=branch, **kw)
            for run in pr.checks:
                run.id = run.id or self._id()
            for t in pr.threads:
                t.id = t.id or f"PRRC_{self._id()}"
            self.prs[n] = pr
            return pr

    def add_issue(self, title: str, **kw: Any) -> IssueRec:
        with self.lock:
            issue = IssueRec(number=self._next(), title=title, **kw)
            self.issues[issue.number] = issue
            return issue

    def touch(self, pr: PR) -> None:
        """Something on the PR changed (a comment, a review, a label): ``updated_at`` moves on."""
        with self.lock:
            pr.updated = max(int(self.clock()), pr.updated + 1)

    def push(self, pr: PR, sha: str | None = None, checks: list[Run] | None = None) -> str:
        with self.lock:
            pr.head_sha = sha or sha_of(f"{pr.head_sha}+")
            if checks is not None:
                for run in checks:
                    run.id = run.id or self._id()
                pr.checks = checks
            self.touch(pr)
            return pr.head_sha

    def add_thread(self, pr: PR, thread: Thread) -> Thread:
        with self.lock:
            thread.id = thread.id or f"PRRC_{self._id()}"
            pr.threads.append(thread)
            self.touch(pr)
            return thread

    # -- faults ------------------------------------------------------------------------------------

    def _fault(self, kind: str, count: int, match: str | None, **kw: Any) -> None:
        test = (lambda m, p: re.search(match, f"{m} {p}") is not None) if match else None
        with self.lock:
            self.faults.append(Fault(kind, count, test, **kw))

    def fail(self, count: int = 1, status: int = 500, match: str | None = None) -> None:
        """The next ``count`` requests (matching ``match``, a regex over "METHOD /path") get ``status``."""
        self._fault("status", count, match, status=status)

    def hold(self, seconds: float, count: int = 1, match: str | None = None) -> None:
        """Answer the next ``count`` requests only after ``seconds`` (longer than a client timeout)."""
        self._fault("hold", count, match, seconds=seconds)

    def secondary_limit(self, retry_after: int | None = 60, count: int = 1, match: str | None = None) -> None:
        self._fault("secondary", count, match, retry_after=retry_after)

    def malformed(self, count: int = 1, match: str | None = None) -> None:
        self._fault("malformed", count, match)

    def push_after_read(self, pr: PR, sha: str | None = None) -> None:
        """Right after the next ``GET /pulls/N`` is answered, a new commit lands on the PR."""
        with self.lock:
            self.after_read[pr.number] = sha or sha_of(f"{pr.head_sha}+late")

    # -- log helpers -------------------------------------------------------------------------------

    def clear_log(self) -> None:
        with self.lock:
            self.log.clear()

    def graphql_requests(self) -> list[Logged]:
        return [r for r in self.log if r.graphql]

    def requests_to(self, pattern: str) -> list[Logged]:
        return [r for r in self.log if re.search(pattern, f"{r.method} {r.path}")]

    # -- server ------------------------------------------------------------------------------------

    def start(self) -> FakeGitHub:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                # headers and body leave in two writes: without this, Nagle + delayed ACK add 40 ms each
                self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def date_time_string(self, timestamp: float | None = None) -> str:
                return formatdate(fake.clock() if timestamp is None else timestamp, usegmt=True)

            def _handle(self) -> None:
                try:
                    fake._serve(self)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout test)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        self.release.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    # -- request handling --------------------------------------------------------------------------

    def _serve(self, h: BaseHTTPRequestHandler) -> None:
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length) if length else b""
        split = urlsplit(h.path)
        path, query = split.path, parse_qsl(split.query, keep_blank_values=True)
        method = h.command
        entry = Logged(method, h.path, 0, graphql=path == "/graphql", auth="Authorization" in h.headers)

        def reply(status: int, body: Any = None, headers: dict[str, str] | None = None, counted: bool = False,
                  resource: str = "core", raw_body: bytes | None = None) -> None:
            with self.lock:
                if counted:
                    self.remaining[resource] = max(0, self.remaining[resource] - (0 if entry.graphql else 1))
                entry.status, entry.counted = status, counted
                self.log.append(entry)
                rate = self._rate_headers(resource)
            data = raw_body if raw_body is not None else (b"" if body is None else json.dumps(body).encode())
            h.send_response(status)
            for k, v in {**rate, **(headers or {})}.items():
                h.send_header(k, v)
            if data or status not in (204, 304):
                h.send_header("Content-Type", "text/plain" if isinstance(body, str) else "application/json")
            h.send_header("Content-Length", str(len(data)))
            h.end_headers()
            h.wfile.write(data)

        if path.startswith("/_logs/"):  # the signed blob URL a job log redirects to: no token, no rate limit
            job = self._job(path.removeprefix("/_logs/"))
            fault = self._take_fault(method, path)
            if fault is not None and fault.kind == "status":
                reply(fault.status, {"message": "blob error"})
            elif job is None:
                reply(404, {"message": "Not Found"})
            else:
                reply(200, raw_body=job.log.encode("utf-8"), body="")
            return

        auth = h.headers.get("Authorization") or ""
        if auth not in (f"Bearer {self.token}", f"token {self.token}"):
            reply(401, {"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest"})
            return
        fault = self._take_fault(method, path)
        resource = "graphql" if entry.graphql else "core"
        if fault is not None:
            if fault.kind == "hold":
                self.release.wait(fault.seconds)
            elif fault.kind == "status":
                reply(fault.status, {"message": "Server Error"}, resource=resource)
                return
            elif fault.kind == "secondary":
                headers = {"retry-after": str(fault.retry_after)} if fault.retry_after is not None else {}
                reply(403, {"message": "You have exceeded a secondary rate limit. Please wait a few minutes "
                                       "before you try again."}, headers, resource=resource)
                return
            elif fault.kind == "malformed":
                reply(200, raw_body=b'{"data": {"repository": {"p0": {"number": 1, "sta', counted=True,
                      resource=resource)
                return
        with self.lock:
            if int(self.clock()) >= self.reset:
                self.reset = int(self.clock()) + 3600
                self.remaining = dict(self.limits)
            spent = self.remaining[resource] <= 0
        if spent:
            reply(403, {"message": "API rate limit exceeded"}, resource=resource)
            return
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            reply(400, {"message": "Problems parsing JSON"}, resource=resource)
            return
        if not entry.graphql:
            entry.body = body
        try:
            with self.lock:
                status, answer, headers = self._route(method, path, dict(query), len(query), body, entry)
        except Bad as exc:
            reply(400, {"message": str(exc)}, resource=resource)
            return
        if status == 200 and method == "GET" and answer is not None:
            data = json.dumps(answer).encode()
            etag = '"' + hashlib.sha256(data).hexdigest() + '"'
            headers = {**(headers or {}), "ETag": etag}
            if h.headers.get("If-None-Match") == etag:
                reply(304, None, headers, resource=resource)
                return
        if method == "GET" and (m := re.fullmatch(rf"/repos/{self.full_name}/pulls/(\d+)", path)):
            with self.lock:  # the answer is already made: the push lands between this read and what follows
                late = self.after_read.pop(int(m.group(1)), None)
                if late:
                    self.push(self.prs[int(m.group(1))], late)
        reply(status, answer, headers, counted=status < 500, resource=resource)

    def _take_fault(self, method: str, path: str) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.count > 0 and (fault.match is None or fault.match(method, path)):
                    fault.count -= 1
                    return fault
        return None

    def _rate_headers(self, resource: str) -> dict[str, str]:
        return {"x-ratelimit-limit": str(self.limits[resource]), "x-ratelimit-remaining": str(self.remaining[resource]),
                "x-ratelimit-reset": str(self.reset), "x-ratelimit-used": str(self.limits[resource] - self.remaining[resource]),
                "x-ratelimit-resource": resource}

    def _job(self, text: str) -> Run | None:
        if not text.isdigit():
            return None
        return next((r for pr in self.prs.values() for r in pr.checks
                     if r.id == int(text) and r.kind == "CheckRun" and r.actions), None)

    def _params(self, query: dict[str, str], count: int, allowed: dict[str, Callable[[str], bool]]) -> None:
        if count != len(query):
            raise Bad("a query parameter is repeated")
        for key, value in query.items():
            if key not in allowed:
                raise Bad(f"unknown query parameter '{key}'")
            if not allowed[key](value):
                raise Bad(f"invalid value for '{key}': {value!r}")

    def _route(self, method: str, path: str, query: dict[str, str], count: int, body: Any,
               entry: Logged) -> tuple[int, Any, dict[str, str] | None]:
        if path == "/graphql":
            if method != "POST":
                return 405, {"message": "Not Found"}, None
            return self._graphql(body, entry)
        prefix = f"/repos/{self.full_name}"
        if not path.startswith(prefix + "/"):
            return 404, {"message": "Not Found"}, None
        rest = path[len(prefix):]
        digits = lambda v: v.isdigit()
        routes: list[tuple[str, str, Callable[..., Any]]] = [
            ("GET", r"/pulls", self._list_pulls),
            ("GET", r"/pulls/(\d+)", self._get_pull),
            ("PUT", r"/pulls/(\d+)/merge", self._merge),
            ("GET", r"/issues", self._list_issues),
            ("GET", r"/issues/(\d+)", self._get_issue),
            ("PATCH", r"/issues/(\d+)", self._patch_issue),
            ("POST", r"/issues/(\d+)/comments", self._comment),
            ("GET", r"/actions/jobs/(\d+)/logs", self._job_logs),
        ]
        known_path = False
        for verb, pattern, fn in routes:
            if m := re.fullmatch(pattern, rest):
                known_path = True
                if verb == method:
                    if verb == "GET" and fn in (self._list_pulls, self._list_issues):
                        allowed = {"state": lambda v: v in ("open", "closed", "all"), "per_page": digits,
                                   "page": digits, "sort": lambda v: v in ("created", "updated"),
                                   "direction": lambda v: v in ("asc", "desc")}
                        if fn == self._list_issues:
                            allowed["labels"] = lambda v: bool(v)
                        self._params(query, count, allowed)
                        return fn(query)
                    if query:
                        raise Bad(f"unexpected query parameters {sorted(query)}")
                    return fn(int(m.group(1)), body) if m.groups() else fn(body)
        return (405 if known_path else 404), {"message": "Not Found"}, None

    # -- REST --------------------------------------------------------------------------------------

    def _html(self, kind: str, n: int) -> str:
        return f"https://github.com/{self.full_name}/{kind}/{n}"

    def _pull_json(self, pr: PR, full: bool) -> dict[str, Any]:
        data = {
            "number": pr.number, "title": pr.title, "state": "open" if pr.state == "OPEN" else "closed",
            "html_url": self._html("pull", pr.number), "updated_at": iso(pr.updated), "draft": pr.draft,
            "merged_at": iso(pr.updated) if pr.state == "MERGED" else None,
            "head": {"ref": pr.branch, "sha": pr.head_sha, "repo": {"full_name": pr.head_repo} if pr.head_repo else None},
            "base": {"ref": pr.base, "repo": {"full_name": self.full_name}},
        }
        if full:
            data.update(merged=pr.state == "MERGED", merge_commit_sha=pr.merge_commit_sha or None,
                        mergeable={"MERGEABLE": True, "CONFLICTING": False}.get(pr.mergeable),
                        mergeable_state=pr.merge_state.lower())
        return data

    def _list_pulls(self, query: dict[str, str]) -> tuple[int, Any, None]:
        state = query.get("state", "open")
        prs = [p for p in self.prs.values() if state == "all" or (p.state == "OPEN") == (state == "open")]
        key = (lambda p: p.updated) if query.get("sort") == "updated" else (lambda p: p.number)
        prs.sort(key=lambda p: (key(p), p.number), reverse=query.get("direction", "desc") == "desc")
        per_page, page = min(int(query.get("per_page", 30)), 100), int(query.get("page", 1))
        return 200, [self._pull_json(p, False) for p in prs[(page - 1) * per_page: page * per_page]], None

    def _get_pull(self, n: int, body: Any) -> tuple[int, Any, None]:
        pr = self.prs.get(n)
        return (200, self._pull_json(pr, True), None) if pr else (404, {"message": "Not Found"}, None)

    def _merge(self, n: int, body: Any) -> tuple[int, Any, None]:
        pr = self.prs.get(n)
        if pr is None:
            return 404, {"message": "Not Found"}, None
        if not isinstance(body, dict) or set(body) - {"sha", "merge_method", "commit_title", "commit_message"}:
            return 422, {"message": "Invalid request: unexpected keys"}, None
        if body.get("merge_method", "merge") not in ("merge", "squash", "rebase"):
            return 422, {"message": "Invalid merge_method"}, None
        if pr.state != "OPEN" or pr.draft or pr.mergeable == "CONFLICTING":
            return 405, {"message": "Pull Request is not mergeable"}, None
        if "sha" in body and body["sha"] != pr.head_sha:
            return 409, {"message": "Head branch was modified. Review and try the merge again."}, None
        if pr.merge_state == "BLOCKED":
            return 405, {"message": "At least 1 approving review is required by reviewers with write access."}, None
        pr.state, pr.merged_with = "MERGED", body.get("merge_method", "merge")
        pr.merge_commit_sha = sha_of(f"merge-{pr.number}-{pr.head_sha}")
        self.touch(pr)
        return 200, {"sha": pr.merge_commit_sha, "merged": True, "message": "Pull Request successfully merged"}, None

    def _issue_json(self, n: int) -> dict[str, Any] | None:
        if n in self.prs:
            pr = self.prs[n]
            return {"number": n, "title": pr.title, "body": "", "state": "open" if pr.state == "OPEN" else "closed",
                    "html_url": self._html("pull", n), "labels": [], "pull_request": {"url": self._html("pull", n)}}
        issue = self.issues.get(n)
        if issue is None:
            return None
        return {"number": n, "title": issue.title, "body": issue.body or None, "state": issue.state,
                "state_reason": issue.state_reason, "html_url": self._html("issues", n),
                "labels": [{"name": label} for label in issue.labels]}

    def _list_issues(self, query: dict[str, str]) -> tuple[int, Any, dict[str, str] | None]:
        state = query.get("state", "open")
        wanted = [x for x in query.get("labels", "").split(",") if x]
        numbers = sorted(set(self.issues) | set(self.prs), reverse=True)
        items = [d for n in numbers if (d := self._issue_json(n)) and (state == "all" or d["state"] == state)
                 and all(w in [lb["name"] for lb in d["labels"]] for w in wanted)]
        per_page, page = min(int(query.get("per_page", 30)), 100), int(query.get("page", 1))
        headers = None
        if page * per_page < len(items):
            nxt = "&".join(f"{k}={v}" for k, v in {**query, "page": str(page + 1)}.items())
            headers = {"Link": f'<{self.url}/repos/{self.full_name}/issues?{nxt}>; rel="next"'}
        return 200, items[(page - 1) * per_page: page * per_page], headers

    def _get_issue(self, n: int, body: Any) -> tuple[int, Any, None]:
        data = self._issue_json(n)
        return (200, data, None) if data else (404, {"message": "Not Found"}, None)

    def _patch_issue(self, n: int, body: Any) -> tuple[int, Any, None]:
        issue = self.issues.get(n)
        if issue is None:
            return 404, {"message": "Not Found"}, None
        if not isinstance(body, dict) or set(body) - {"state", "state_reason", "title", "body", "labels"} \
                or body.get("state", "open") not in ("open", "closed"):
            return 422, {"message": "Validation Failed"}, None
        issue.state = body.get("state", issue.state)
        issue.state_reason = body.get("state_reason", issue.state_reason)
        return 200, self._issue_json(n), None

    def _comment(self, n: int, body: Any) -> tuple[int, Any, None]:
        if not isinstance(body, dict) or set(body) != {"body"} or not isinstance(body["body"], str):
            return 422, {"message": "Validation Failed"}, None
        if n in self.prs:  # a conversation comment on the PR (not a review thread)
            self.prs[n].comments.append(body["body"])
            self.touch(self.prs[n])
        elif n in self.issues:
            self.issues[n].comments.append(body["body"])
        else:
            return 404, {"message": "Not Found"}, None
        return 201, {"id": self._id(), "body": body["body"], "html_url": self._html("issues", n)}, None

    def _job_logs(self, job: int, body: Any) -> tuple[int, Any, dict[str, str] | None]:
        if self._job(str(job)) is None:
            return 404, {"message": "Not Found"}, None
        # another host, as GitHub's signed blob URLs are: the client must not send the token there
        return 302, None, {"Location": f"http://{self.blob_host}:{self.port}/_logs/{job}?sig=abc"}

    # -- GraphQL -----------------------------------------------------------------------------------

    def _graphql(self, body: Any, entry: Logged) -> tuple[int, Any, None]:
        if not isinstance(body, dict) or set(body) - {"query", "variables"} or not isinstance(body.get("query"), str):
            raise Bad("a GraphQL request is {query, variables}")
        variables = body.get("variables") or {}
        operation, declared, fragments = Parser(body["query"]).document()
        for name in declared:
            if declared[name].endswith("!") and variables.get(name) is None:
                raise Bad(f"variable ${name} is required")
        if set(variables) - set(declared):
            raise Bad(f"undeclared variables {sorted(set(variables) - set(declared))}")
        cost = max(1, round(_connection_cost(operation, fragments, variables) / 100))
        with self.lock:
            self.remaining["graphql"] = max(0, self.remaining["graphql"] - cost)
            errors: list[dict] = []
            ctx = {"vars": variables, "declared": declared, "fragments": fragments, "errors": errors,
                   "cost": cost, "entry": entry}
            data = self._execute(operation, self._query_root(ctx), "Query", ctx, [])
        entry.cost = cost
        answer: dict[str, Any] = {"data": data}
        if errors:
            answer["errors"] = errors
        return 200, answer, None

    def _execute(self, selections: list[Sel], obj: dict[str, Any], typename: str, ctx: dict, path: list) -> dict:
        out: dict[str, Any] = {}
        for sel in selections:
            if sel.kind == "spread":
                if sel.name not in ctx["fragments"]:
                    raise Bad(f"unknown fragment {sel.name}")
                cond, subs = ctx["fragments"][sel.name]
                if cond == typename:
                    _merge(out, self._execute(subs, obj, typename, ctx, path))
                continue
            if sel.kind == "inline":
                if sel.name == typename:
                    _merge(out, self._execute(sel.selections or [], obj, typename, ctx, path))
                continue
            key = sel.alias or sel.name
            if sel.name == "__typename":
                out[key] = typename
                continue
            if sel.name not in obj:
                raise Bad(f"Field '{sel.name}' doesn't exist on type '{typename}'")
            value = obj[sel.name]
            if isinstance(value, Field):
                args = {k: (ctx["vars"].get(v.name) if isinstance(v, Var) else v) for k, v in sel.args.items()}
                if set(args) - value.allowed or value.required - set(args):
                    raise Bad(f"bad arguments {sorted(args)} for '{typename}.{sel.name}'")
                value = value.fn(args | {"__path": path + [key], "__ctx": ctx})
            elif sel.args:
                raise Bad(f"Field '{typename}.{sel.name}' takes no arguments")
            out[key] = self._resolve(value, sel, ctx, path + [key])
        return out

    def _resolve(self, value: Any, sel: Sel, ctx: dict, path: list) -> Any:
        if value is None:
            return None
        if isinstance(value, list):
            return [self._resolve(v, sel, ctx, path) for v in value]
        if isinstance(value, dict):
            if sel.selections is None:
                raise Bad(f"Field '{sel.name}' of an object type must have a selection of subfields")
            return self._execute(sel.selections, value, value.get("__typename", ""), ctx, path)
        if sel.selections is not None:
            raise Bad(f"Selections can't be made on scalars ('{sel.name}')")
        return value

    def _query_root(self, ctx: dict) -> dict[str, Any]:
        def repository(args: dict) -> Any:
            if (args.get("owner"), args.get("name")) != (self.owner, self.repo):
                ctx["errors"].append({"type": "NOT_FOUND", "path": args["__path"],
                                      "message": "Could not resolve to a Repository"})
                return None
            return self._repo_obj()

        rate = {"__typename": "RateLimit", "cost": ctx["cost"], "remaining": self.remaining["graphql"],
                "limit": self.limits["graphql"], "used": self.limits["graphql"] - self.remaining["graphql"],
                "resetAt": iso(self.reset)}
        return {"__typename": "Query", "rateLimit": rate,
                "repository": Field(repository, {"owner", "name"}, {"owner", "name"})}

    def _repo_obj(self) -> dict[str, Any]:
        def pull_request(args: dict) -> Any:
            args["__ctx"]["entry"].prs += 1
            pr = self.prs.get(args.get("number"))
            if pr is None:
                args["__ctx"]["errors"].append({
                    "type": "NOT_FOUND", "path": args["__path"],
                    "message": f"Could not resolve to a PullRequest with the number of {args.get('number')}."})
                return None
            return self._pr_obj(pr)

        def pull_requests(args: dict) -> Any:
            args["__ctx"]["entry"].prs += 1
            order = args.get("orderBy") or {}
            if order and order != {"field": "UPDATED_AT", "direction": "DESC"}:
                raise Bad("only orderBy {field: UPDATED_AT, direction: DESC} is supported")
            found = sorted((p for p in self.prs.values() if p.branch == args.get("headRefName")),
                           key=lambda p: p.updated, reverse=True)
            return {"__typename": "PullRequestConnection",
                    "nodes": [self._pr_obj(p) for p in found[: args.get("first") or 0]]}

        def issue(args: dict) -> Any:
            rec = self.issues.get(args.get("number"))
            if rec is None:
                args["__ctx"]["errors"].append({
                    "type": "NOT_FOUND", "path": args["__path"],
                    "message": f"Could not resolve to an Issue with the number of {args.get('number')}."})
                return None
            return self._issue_obj(rec)

        return {"__typename": "Repository", "nameWithOwner": self.full_name,
                "issue": Field(issue, {"number"}, {"number"}),
                "pullRequest": Field(pull_request, {"number"}, {"number"}),
                "pullRequests": Field(pull_requests, {"headRefName", "first", "orderBy"}, {"first"})}

    def _issue_obj(self, rec: IssueRec) -> dict[str, Any]:
        def linked(numbers: list[int]) -> Callable[[dict], Any]:
            def connection(args: dict) -> Any:
                nodes = [{"__typename": "Issue", "number": n, "state": self.issues[n].state.upper(),
                          "repository": {"__typename": "Repository", "nameWithOwner": self.full_name}}
                         for n in numbers[: args["first"]] if n in self.issues]
                return {"__typename": "IssueConnection", "nodes": nodes}
            return connection

        return {"__typename": "Issue", "number": rec.number, "title": rec.title, "state": rec.state.upper(),
                "blockedBy": Field(linked(rec.blocked_by), {"first"}, {"first"}),
                "trackedIssues": Field(linked(rec.tracks), {"first"}, {"first"})}

    def _pr_obj(self, pr: PR) -> dict[str, Any]:
        def threads(args: dict) -> Any:
            return {"__typename": "PullRequestReviewThreadConnection",
                    "nodes": [self._thread_obj(t, pr.number) for t in pr.threads[: args["first"]]]}

        def commits(args: dict) -> Any:
            return {"__typename": "PullRequestCommitConnection", "nodes": [
                {"__typename": "PullRequestCommit", "commit": {
                    "__typename": "Commit", "oid": pr.head_sha, "statusCheckRollup": self._rollup(pr)}}]}

        return {
            "__typename": "PullRequest", "number": pr.number, "url": self._html("pull", pr.number),
            "state": pr.state, "headRefName": pr.branch, "headRefOid": pr.head_sha, "baseRefName": pr.base,
            "updatedAt": iso(pr.updated), "title": pr.title,
            "headRepository": {"__typename": "Repository", "nameWithOwner": pr.head_repo} if pr.head_repo else None,
            "mergeable": pr.mergeable, "mergeStateStatus": pr.merge_state, "isDraft": pr.draft,
            "reviewDecision": pr.review,
            "reviewThreads": Field(threads, {"first"}, {"first"}),
            "commits": Field(commits, {"last"}, {"last"}),
        }

    def _thread_obj(self, t: Thread, number: int) -> dict[str, Any]:
        def comments(args: dict) -> Any:
            author = {"__typename": "Bot" if t.bot else "User", "login": t.author}
            return {"__typename": "PullRequestReviewCommentConnection", "nodes": [{
                "__typename": "PullRequestReviewComment", "id": t.id, "author": author,
                "authorAssociation": t.association, "body": t.body, "path": t.path, "line": t.line,
                "url": f"{self._html('pull', number)}#discussion_{t.id}"}][: args["first"]]}

        return {"__typename": "PullRequestReviewThread", "isResolved": t.resolved, "isOutdated": t.outdated,
                "comments": Field(comments, {"first"}, {"first"})}

    def _rollup(self, pr: PR) -> dict[str, Any] | None:
        if not pr.checks and pr.rollup is None:
            return None
        states = []
        for r in pr.checks:
            if r.kind == "StatusContext":
                states.append({"SUCCESS": "SUCCESS", "PENDING": "PENDING", "EXPECTED": "PENDING"}.get(r.conclusion or "",
                                                                                                    "FAILURE"))
            elif r.status != "COMPLETED":
                states.append("PENDING")
            else:
                states.append("SUCCESS" if r.conclusion in ("SUCCESS", "NEUTRAL", "SKIPPED") else "FAILURE")
        state = pr.rollup or ("FAILURE" if "FAILURE" in states else "PENDING" if "PENDING" in states else "SUCCESS")

        def contexts(args: dict) -> Any:
            nodes = []
            for r in pr.checks[: args["first"]]:
                if r.kind == "StatusContext":
                    nodes.append({"__typename": "StatusContext", "context": r.name, "state": r.conclusion,
                                  "targetUrl": f"https://ci.example.com/status/{r.id}"})
                else:
                    url = (f"https://github.com/{self.full_name}/actions/runs/{r.id * 7}/job/{r.id}" if r.actions
                           else f"https://ci.example.com/builds/{r.id}")
                    nodes.append({"__typename": "CheckRun", "name": r.name, "status": r.status,
                                  "conclusion": r.conclusion if r.status == "COMPLETED" else None,
                                  "detailsUrl": url, "databaseId": r.id})
            return {"__typename": "StatusCheckRollupContextConnection", "nodes": nodes}

        return {"__typename": "StatusCheckRollup", "state": state, "contexts": Field(contexts, {"first"}, {"first"})}


def _merge(into: dict, more: dict) -> None:
    for key, value in more.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value
