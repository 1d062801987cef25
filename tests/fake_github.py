"""A strict fake of the GitHub API ao uses, on 127.0.0.1, held to GitHub's published descriptions.

- **GraphQL** is executed by graphql-core against GitHub's own SDL (``tests/api/github/schema.graphql``, from
  ``@octokit/graphql-schema``): a field, argument, type or variable GitHub would reject is rejected here, with
  GitHub's answer (HTTP 200, ``errors``, no ``data``), and recorded in :attr:`FakeGitHub.rejected` (the test
  fixtures fail on any). A connection without ``first``/``last``, or asking for more than 100, is refused as
  GitHub refuses it. A query costs what GitHub's formula says (connection requests / 100, at least 1).
- **REST** requests are matched to the operations of GitHub's OpenAPI description (``tests/api/github/
  rest-openapi.json``, from ``@octokit/openapi``); their path and query parameters and bodies are validated
  against it (and unknown ones refused), and every answer an operation gives is completed into the full
  object the description defines and validated against it. A violation on our side is recorded in
  :attr:`FakeGitHub.violations` and answered 500.

What is not an operation's answer is GitHub's front door: 401 without the token, 301 for a renamed repository
or a transferred issue, 304 for a matching ``If-None-Match`` (no rate limit spent), primary and secondary rate
limits, and the faults tests inject.

The real cases the fake can produce (docs/github.md, "What GitHub really returns"): ``reviewDecision`` null with
a changes-requested review (:meth:`FakeGitHub.review`; ``decision`` is whatever the test sets, null by default,
as in a repository that does not require reviews), a null ``statusCheckRollup`` until the first check exists
(:meth:`FakeGitHub.push` without checks), renamed repositories (:meth:`rename`) and transferred issues
(:meth:`transfer`), a GHE.com or GHES layout (``host=``/``prefix=``), deleted authors (``author=None``), more
than 50 checks or threads (paged), ``STALE`` check runs, primary and secondary rate limits.

Every request is logged (:attr:`FakeGitHub.log`). Faults: :meth:`fail`, :meth:`hold`, :meth:`secondary_limit`,
:meth:`primary_limit`, :meth:`malformed`, :meth:`push_after_read`, :meth:`between_queries`.
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
from urllib.parse import parse_qsl, urlencode, urlsplit

from api_descriptions import Invalid, ResolverError, connection, github_rest, github_schema, graphql_errors
from httpkit import start_server, stop_server

TOKEN = "ghp_fakeToken0123456789abcdefABCDEF0123"
MAX_PAGE = 100   # GitHub's limit for first/last


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(int(epoch), timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def sha_of(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()


# ------------------------------------------------------------------------------------------------ data


@dataclass
class Run:
    """A check on a commit: a CheckRun (GitHub Actions unless ``actions=False``) or, with
    ``kind="StatusContext"``, a commit status (``conclusion`` is then its state)."""

    name: str
    conclusion: str | None = "SUCCESS"    # CheckRun: SUCCESS FAILURE STALE ...; StatusContext: SUCCESS PENDING ...
    status: str = "COMPLETED"             # CheckRun: QUEUED IN_PROGRESS COMPLETED
    kind: str = "CheckRun"
    actions: bool = True
    log: str = ""
    id: int = 0
    workflow: str = "CI"                  # the Actions workflow it belongs to (names repeat across workflows)


@dataclass
class Thread:
    body: str
    author: str | None = "alice"          # None: a deleted account (GraphQL ``author: null``)
    association: str = "MEMBER"
    bot: bool = False
    resolved: bool = False
    outdated: bool = False
    path: str = "src/app.py"
    line: int | None = 3
    id: str = ""


@dataclass
class Review:
    author: str | None = "alice"
    state: str = "APPROVED"               # APPROVED CHANGES_REQUESTED COMMENTED DISMISSED
    body: str = ""
    association: str = "MEMBER"
    bot: bool = False
    commit: str = ""                      # the head it was given on (the head when added)
    id: str = ""
    at: int = 0


@dataclass
class PR:
    number: int
    branch: str
    head_sha: str
    base: str = "main"
    state: str = "OPEN"                   # OPEN CLOSED MERGED
    draft: bool = False
    mergeable: str = "MERGEABLE"          # MERGEABLE CONFLICTING UNKNOWN
    merge_state: str = "CLEAN"            # CLEAN DIRTY BEHIND BLOCKED UNKNOWN UNSTABLE HAS_HOOKS DRAFT
    decision: str | None = None           # reviewDecision: null unless the base requires reviews
    rollup: str | None = None             # overrides the state computed from ``checks``
    checks: list[Run] = field(default_factory=list)
    threads: list[Thread] = field(default_factory=list)
    reviews: list[Review] = field(default_factory=list)
    head_repo: str = ""                   # "": the same repository; another name: a fork; None-like "gone"
    title: str = ""
    updated: int = 0
    created: int = 0
    merge_commit_sha: str = ""
    merged_with: str = ""
    comments: list[str] = field(default_factory=list)
    author: str = "agent-bot"


@dataclass
class IssueRec:
    number: int
    title: str
    body: str = ""
    state: str = "open"
    labels: list[str] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)
    state_reason: str | None = None
    sub_issues: list[int] = field(default_factory=list)   # its sub-issues (children)
    tracks: list[int] = field(default_factory=list)       # the issues its task list tracks
    blocked_by: list[int] = field(default_factory=list)   # its "blocked by" dependencies (issue dependencies)


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
    host: str = ""            # the Host header


@dataclass
class Fault:
    kind: str                 # status | hold | secondary | malformed
    count: int
    match: Callable[[str, str], bool] | None = None
    status: int = 500
    seconds: float = 0.0
    retry_after: int | None = 60


# ------------------------------------------------------------------------------------------ the server


class FakeGitHub:
    """One repository (plus the repositories issues were transferred to) on 127.0.0.1.

    ``host``: the API host the client must name in ``Host`` (a GHE.com host, ``api.acme.ghe.com``; the client
    reaches us through a transport that maps it here); ``prefix``: GitHub Enterprise Server's ``/api/v3``
    (GraphQL then at ``/api/graphql``)."""

    def __init__(self, owner: str = "acme", repo: str = "app", token: str = TOKEN,
                 clock: Callable[[], float] = time.time, limit: int = 5000, graphql_limit: int = 5000,
                 host: str | None = None, prefix: str = "") -> None:
        self.owner, self.repo, self.token, self.clock = owner, repo, token, clock
        self.host, self.prefix = host, prefix.rstrip("/")
        self.repo_id = 4242
        self.prs: dict[int, PR] = {}
        self.issues: dict[int, IssueRec] = {}
        self.elsewhere: dict[int, tuple[str, dict[int, IssueRec]]] = {}   # repo id -> (name, issues)
        self.moved_issues: dict[int, tuple[int, int]] = {}                # number -> (repo id, number there)
        self.old_names: set[str] = set()
        self.workflows: list[dict[str, str]] = [{"name": "CI", "path": ".github/workflows/ci.yml", "state": "active"}]
        self.default_commits: list[tuple[str, list[Run]]] = []           # newest first: (sha, checks)
        self.log: list[Logged] = []
        self.rejected: list[str] = []        # GraphQL documents GitHub would refuse (and their errors)
        self.violations: list[str] = []      # REST requests or answers outside the OpenAPI description
        self.faults: list[Fault] = []
        self.after_read: dict[int, str] = {}
        self.after_graphql: list[Callable[[], Any]] = []
        self.limits = {"core": limit, "graphql": graphql_limit}
        self.remaining = dict(self.limits)
        self.reset = int(clock()) + 3600
        self.limit_status = 403
        self.redirect_host: str | None = None  # 301s point at another host (what a client must never follow)
        self.lock = threading.RLock()
        self.release = threading.Event()
        self._number = 0
        self._ids = 1000
        self._server: ThreadingHTTPServer | None = None
        self.port = 0
        self.blob_host = "localhost"

    # -- data helpers ------------------------------------------------------------------------------

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.repo}"

    @property
    def url(self) -> str:
        """The base URL to configure (``scm.baseUrl``)."""
        return f"http://127.0.0.1:{self.port}{self.prefix}"

    @property
    def api_root(self) -> str:
        """Where this fake's REST API lives, as the client sees it (for Location headers and Link pages)."""
        return f"http://{self.host}{self.prefix}" if self.host else self.url

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
            kw.setdefault("title", f"Work on {branch}")
            kw.setdefault("updated", int(self.clock()))
            kw.setdefault("created", kw["updated"])
            pr = PR(number=n, branch=branch, **kw)
            for run in pr.checks:
                run.id = run.id or self._id()
            for t in pr.threads:
                t.id = t.id or f"PRRT_{self._id()}"
            for r in pr.reviews:
                self._fill_review(pr, r)
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
        """A new head commit. Without ``checks`` it has none yet: ``statusCheckRollup`` is null, as on GitHub
        right after a push."""
        with self.lock:
            pr.head_sha = sha or sha_of(f"{pr.head_sha}+")
            for run in checks or []:
                run.id = run.id or self._id()
            pr.checks = list(checks or [])
            self.touch(pr)
            return pr.head_sha

    def add_check(self, pr: PR, run: Run) -> Run:
        """A check starts reporting on the head (does not change ``updated_at``, as on GitHub)."""
        with self.lock:
            run.id = run.id or self._id()
            pr.checks.append(run)
            return run

    def add_thread(self, pr: PR, thread: Thread) -> Thread:
        with self.lock:
            thread.id = thread.id or f"PRRT_{self._id()}"
            pr.threads.append(thread)
            self.touch(pr)
            return thread

    def _fill_review(self, pr: PR, review: Review) -> None:
        review.id = review.id or f"PRR_{self._id()}"
        review.commit = review.commit or pr.head_sha
        review.at = review.at or int(self.clock())

    def review(self, pr: PR, author: str | None = "alice", state: str = "APPROVED", body: str = "", **kw: Any) -> Review:
        """A submitted review (on the current head unless ``commit=``). ``reviewDecision`` does not change: set
        ``pr.decision`` for a base that requires reviews."""
        with self.lock:
            review = Review(author=author, state=state, body=body, **kw)
            self._fill_review(pr, review)
            pr.reviews.append(review)
            self.touch(pr)
            return review

    def rename(self, owner: str, repo: str) -> None:
        """The repository is renamed (or transferred): REST requests to the old name get a 301 to
        ``/repositories/{id}/...``; GraphQL ``repository(owner:, name:)`` follows renames (``followRenames``
        defaults to true)."""
        with self.lock:
            self.old_names.add(self.full_name.lower())
            self.owner, self.repo = owner, repo

    def transfer(self, issue: IssueRec, to: str = "acme/other", repo_id: int = 777) -> int:
        """The issue moves to another repository (same host): its old URL answers 301 there."""
        with self.lock:
            del self.issues[issue.number]
            name, issues = self.elsewhere.setdefault(repo_id, (to, {}))
            number = max(issues, default=0) + 1
            issues[number] = IssueRec(number=number, title=issue.title, body=issue.body, state=issue.state,
                                      labels=issue.labels)
            self.moved_issues[issue.number] = (repo_id, number)
            return number

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

    def secondary_limit(self, retry_after: int | None = 60, count: int = 1, match: str | None = None,
                        status: int = 403) -> None:
        """GitHub's secondary (abuse) limit: 403 or 429, with ``retry-after`` or without."""
        self._fault("secondary", count, match, retry_after=retry_after, status=status)

    def primary_limit(self, resource: str = "core", reset_in: int = 1800, status: int = 403) -> None:
        """The hourly budget of ``resource`` is spent until ``reset_in`` seconds from now: REST answers ``status``
        (403 or 429) with ``x-ratelimit-remaining: 0``; GraphQL answers a ``RATE_LIMITED`` error."""
        with self.lock:
            self.remaining[resource] = 0
            self.reset = int(self.clock()) + reset_in
            self.limit_status = status

    def malformed(self, count: int = 1, match: str | None = None) -> None:
        self._fault("malformed", count, match)

    def push_after_read(self, pr: PR, sha: str | None = None) -> None:
        """Right after the next ``GET /pulls/N`` is answered, a new commit lands on the PR."""
        with self.lock:
            self.after_read[pr.number] = sha or sha_of(f"{pr.head_sha}+late")

    def between_queries(self, change: Callable[[], Any]) -> None:
        """Right after the next GraphQL query is answered, ``change`` runs: the world moves between two reads
        (the first page of a PR's reviews, say, and the next)."""
        with self.lock:
            self.after_graphql.append(change)

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
        github_schema()  # parse once, before the first request's clock starts
        github_rest()

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

        self._server = start_server(Handler, self.port)
        self.port = self._server.server_address[1]
        return self

    def stop(self) -> None:
        self.release.set()
        stop_server(self._server)
        self._server = None

    # -- request handling --------------------------------------------------------------------------

    def _serve(self, h: BaseHTTPRequestHandler) -> None:
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length) if length else b""
        split = urlsplit(h.path)
        path, query = split.path, parse_qsl(split.query, keep_blank_values=True)
        method = h.command
        graphql_path = "/api/graphql" if self.prefix else "/graphql"
        entry = Logged(method, h.path, 0, graphql=path == graphql_path, auth="Authorization" in h.headers,
                       host=h.headers.get("Host", ""))

        def reply(status: int, body: Any = None, headers: dict[str, str] | None = None, counted: bool = False,
                  resource: str = "core", raw_body: bytes | None = None) -> None:
            with self.lock:
                if counted and not entry.graphql:
                    self.remaining[resource] = max(0, self.remaining[resource] - 1)
                entry.status, entry.counted = status, counted
                self.log.append(entry)
                rate = self._rate_headers(resource)
            data = raw_body if raw_body is not None else (b"" if body is None else json.dumps(body).encode())
            h.send_response(status)
            for k, v in {**rate, **(headers or {})}.items():
                h.send_header(k, v)
            if data or status not in (204, 304):
                h.send_header("Content-Type", "text/plain" if isinstance(body, str) else "application/json; charset=utf-8")
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
        if self.host is not None and entry.host.split(":")[0] != self.host:
            reply(404, {"message": f"this fake serves the API host {self.host}, not {entry.host or 'no Host'}"})
            return
        auth = h.headers.get("Authorization") or ""
        if auth not in (f"Bearer {self.token}", f"token {self.token}"):
            reply(401, {"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest",
                        "status": "401"})
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
                reply(fault.status, {"message": "You have exceeded a secondary rate limit. Please wait a few "
                                                "minutes before you try again.",
                                     "documentation_url": "https://docs.github.com/rest/overview/rate-limits-for-"
                                                          "the-rest-api#about-secondary-rate-limits"},
                      headers, resource=resource)
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
            message = "API rate limit exceeded for user ID 1."
            if entry.graphql:
                reply(200, {"errors": [{"type": "RATE_LIMITED", "message": message}]}, resource=resource)
            else:
                reply(self.limit_status, {"message": message, "documentation_url": "https://docs.github.com/rest/"
                                          "overview/rate-limits-for-the-rest-api"}, resource=resource)
            return
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            reply(400, {"message": "Problems parsing JSON"}, resource=resource)
            return
        if entry.graphql:
            if method != "POST":
                reply(404, {"message": "Not Found"}, resource=resource)
                return
            status, answer = self._graphql(body, entry)
            with self.lock:  # the answer is already made: the change lands between this query and the next
                changes, self.after_graphql = self.after_graphql[:1], self.after_graphql[1:]
                for change in changes:
                    change()
            reply(status, answer, counted=True, resource=resource)
            return
        entry.body = body
        status, answer, headers = self._rest(method, path, query, body)
        if status == 200 and method == "GET" and answer is not None:
            data = json.dumps(answer).encode()
            etag = '"' + hashlib.sha256(data).hexdigest() + '"'
            headers = {**(headers or {}), "ETag": etag}
            if h.headers.get("If-None-Match") == etag:
                reply(304, None, headers, resource=resource)
                return
        if method == "GET" and (m := re.fullmatch(r".*/pulls/(\d+)", path)) and status == 200:
            with self.lock:  # the answer is already made: the push lands between this read and what follows
                late = self.after_read.pop(int(m.group(1)), None)
                if late:
                    self.push(self.prs[int(m.group(1))], late, checks=self.prs[int(m.group(1))].checks)
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

    # -- REST --------------------------------------------------------------------------------------

    def _moved(self, status: int, path: str, query: list[tuple[str, str]]) -> tuple[int, Any, dict[str, str]]:
        root = self.api_root if self.redirect_host is None else f"http://{self.redirect_host}:{self.port}{self.prefix}"
        location = f"{root}{path}" + (f"?{urlencode(query)}" if query else "")  # as GitHub: the query kept
        return status, {"message": "Moved Permanently", "url": location,
                        "documentation_url": "https://docs.github.com/rest/guides/best-practices-for-using-the-rest-api"
                                             "#follow-redirects"}, {"Location": location}

    def _rest(self, method: str, path: str, query: list[tuple[str, str]], body: Any
              ) -> tuple[int, Any, dict[str, str] | None]:
        if self.prefix:
            if not path.startswith(self.prefix + "/"):
                return 404, {"message": "Not Found"}, None
            path = path[len(self.prefix):]
        with self.lock:
            m = re.match(r"/repos/([^/]+/[^/]+)(/.*)?$", path)
            if m and m.group(1).lower() in self.old_names:  # a renamed repository: 301 to its id
                return self._moved(301, f"/repositories/{self.repo_id}{m.group(2) or ''}", query)
            m = re.match(r"/repositories/(\d+)(/.*)?$", path)
            repo_id = int(m.group(1)) if m else self.repo_id
            if m:
                if repo_id != self.repo_id and repo_id not in self.elsewhere:
                    return 404, {"message": "Not Found"}, None
                owner_repo = self.full_name if repo_id == self.repo_id else self.elsewhere[repo_id][0]
                path = f"/repos/{owner_repo}{m.group(2) or ''}"
            m = re.fullmatch(r"/repos/[^/]+/[^/]+/issues/(\d+)(/.*)?", path)
            if m and repo_id == self.repo_id and int(m.group(1)) in self.moved_issues:
                target, number = self.moved_issues[int(m.group(1))]
                return self._moved(301, f"/repositories/{target}/issues/{number}{m.group(2) or ''}", query)
            rest = github_rest()
            op, params, known = rest.match(method, path)
            if op is None:
                return (405 if known else 404), {"message": "Not Found"}, None
            owner_repo = f"{params['owner']}/{params['repo']}".lower()
            names = {self.full_name.lower(): self.repo_id, **{n.lower(): i for i, (n, _) in self.elsewhere.items()}}
            if owner_repo not in names:
                return 404, {"message": "Not Found"}, None
            try:
                rest.check_request(op, params, query, body)
            except Invalid as exc:
                self.violations.append(f"{method} {path}: {exc}")
                return 422, {"message": f"Invalid request: {exc}"}, None
            handler = getattr(self, "_op_" + op.spec["operationId"].replace("/", "_").replace("-", "_"))
            status, partial, headers = handler(names[owner_repo], params, dict(query), body)
            if status == 404 and partial == {"message": "Not Found"}:
                return 404, partial, headers  # GitHub's answer to anything missing or hidden, listed or not
            listed, schema = rest.response_schema(op, status)
            if not listed:
                self.violations.append(f"{method} {path}: {op.spec['operationId']} does not answer {status}")
                return 500, {"message": f"the fake answered {status}, which the description does not list"}, None
            answer = partial if schema is None or partial is None else rest.complete(schema, partial)
            problems = rest.problems(schema, answer, "read") if schema is not None and answer is not None else []
            if problems:
                self.violations.append(f"{method} {path}: answer {status}: {problems[0]}")
                return 500, {"message": f"the fake's answer breaks the description: {problems[0]}"}, None
            return status, answer, headers

    def _html(self, kind: str, n: int, repo: str | None = None) -> str:
        return f"https://github.com/{repo or self.full_name}/{kind}/{n}"

    def _user(self, login: str | None, bot: bool = False) -> dict[str, Any] | None:
        if login is None:
            return None
        return {"login": login, "id": int(hashlib.sha1(login.encode()).hexdigest()[:6], 16), "type": "Bot" if bot else "User",
                "html_url": f"https://github.com/{login}", "node_id": f"U_{login}"}

    def _repo_json(self, name: str, repo_id: int) -> dict[str, Any]:
        owner = name.split("/")[0]
        return {"id": repo_id, "node_id": f"R_{repo_id}", "name": name.split("/")[1], "full_name": name,
                "owner": self._user(owner), "private": False, "html_url": f"https://github.com/{name}",
                "url": f"{self.api_root}/repos/{name}", "default_branch": "main", "fork": name != self.full_name}

    def _pull_json(self, pr: PR, full: bool) -> dict[str, Any]:
        base_repo = self._repo_json(self.full_name, self.repo_id)
        if pr.head_repo == "gone":
            head_repo = None  # the fork was deleted
        elif pr.head_repo and pr.head_repo != self.full_name:
            head_repo = self._repo_json(pr.head_repo, self.repo_id + 1 + sum(map(ord, pr.head_repo)))
        else:
            head_repo = base_repo
        data = {
            "number": pr.number, "id": 90000 + pr.number, "node_id": f"PR_{pr.number}", "title": pr.title,
            "state": "open" if pr.state == "OPEN" else "closed", "locked": False, "user": self._user(pr.author),
            "html_url": self._html("pull", pr.number), "url": f"{self.api_root}/repos/{self.full_name}/pulls/{pr.number}",
            "created_at": iso(pr.created), "updated_at": iso(pr.updated), "draft": pr.draft,
            "closed_at": iso(pr.updated) if pr.state != "OPEN" else None,
            "merged_at": iso(pr.updated) if pr.state == "MERGED" else None,
            "merge_commit_sha": pr.merge_commit_sha or None, "author_association": "MEMBER", "labels": [],
            "head": {"ref": pr.branch, "sha": pr.head_sha, "label": f"{self.owner}:{pr.branch}", "repo": head_repo,
                     "user": self._user(self.owner)},
            "base": {"ref": pr.base, "sha": sha_of(pr.base), "label": f"{self.owner}:{pr.base}", "repo": base_repo,
                     "user": self._user(self.owner)},
        }
        if full:
            data.update(merged=pr.state == "MERGED",
                        mergeable={"MERGEABLE": True, "CONFLICTING": False}.get(pr.mergeable),
                        mergeable_state=pr.merge_state.lower(), commits=1, additions=1, deletions=0, changed_files=1,
                        comments=len(pr.comments), review_comments=len(pr.threads))
        return data

    def _op_pulls_list(self, repo_id: int, params: dict, query: dict[str, str], body: Any) -> tuple:
        state = query.get("state", "open")
        prs = [p for p in self.prs.values() if state == "all" or (p.state == "OPEN") == (state == "open")]
        key = (lambda p: p.updated) if query.get("sort") == "updated" else (lambda p: p.created)
        prs.sort(key=lambda p: (key(p), p.number), reverse=query.get("direction", "desc") == "desc")
        per_page, page = int(query.get("per_page", 30)), int(query.get("page", 1))
        return 200, [self._pull_json(p, False) for p in prs[(page - 1) * per_page: page * per_page]], None

    def _op_pulls_get(self, repo_id: int, params: dict, query: dict, body: Any) -> tuple:
        pr = self.prs.get(int(params["pull_number"]))
        return (200, self._pull_json(pr, True), None) if pr else (404, {"message": "Not Found"}, None)

    def _op_pulls_merge(self, repo_id: int, params: dict, query: dict, body: Any) -> tuple:
        pr = self.prs.get(int(params["pull_number"]))
        body = body or {}
        if pr is None:
            return 404, {"message": "Not Found"}, None
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

    def _issue_json(self, repo_id: int, n: int) -> dict[str, Any] | None:
        if repo_id == self.repo_id and n in self.prs:
            pr = self.prs[n]
            return {"number": n, "id": 80000 + n, "node_id": f"I_{n}", "title": pr.title, "body": None,
                    "state": "open" if pr.state == "OPEN" else "closed", "html_url": self._html("pull", n),
                    "url": f"{self.api_root}/repos/{self.full_name}/issues/{n}", "labels": [],
                    "user": self._user(pr.author), "created_at": iso(pr.created), "updated_at": iso(pr.updated),
                    "pull_request": {"url": f"{self.api_root}/repos/{self.full_name}/pulls/{n}",
                                     "html_url": self._html("pull", n), "diff_url": None, "patch_url": None}}
        name, issues = (self.full_name, self.issues) if repo_id == self.repo_id else self.elsewhere[repo_id]
        issue = issues.get(n)
        if issue is None:
            return None
        blockers = [issues[b] for b in issue.blocked_by if b in issues]
        blocking = [i for i in issues.values() if n in i.blocked_by]
        return {"number": n, "id": 70000 + n + repo_id, "node_id": f"I_{repo_id}_{n}", "title": issue.title,
                "body": issue.body or None, "state": issue.state, "state_reason": issue.state_reason,
                "html_url": self._html("issues", n, name), "url": f"{self.api_root}/repos/{name}/issues/{n}",
                "repository_url": f"{self.api_root}/repos/{name}",
                "issue_dependencies_summary": {  # open ones, and all
                    "blocked_by": sum(b.state == "open" for b in blockers), "total_blocked_by": len(blockers),
                    "blocking": sum(i.state == "open" for i in blocking), "total_blocking": len(blocking)},
                "user": self._user("octocat"), "created_at": iso(self.clock()), "updated_at": iso(self.clock()),
                "labels": [{"name": label, "id": i + 1, "node_id": f"L_{i}", "url": "https://api.github.com/",
                            "color": "ededed", "default": False, "description": None}
                           for i, label in enumerate(issue.labels)]}

    def _op_issues_list_for_repo(self, repo_id: int, params: dict, query: dict[str, str], body: Any) -> tuple:
        state = query.get("state", "open")
        wanted = [x for x in query.get("labels", "").split(",") if x]
        numbers = sorted(set(self.issues) | set(self.prs), reverse=True)
        items = [d for n in numbers if (d := self._issue_json(repo_id, n)) and (state == "all" or d["state"] == state)
                 and all(w in [lb["name"] for lb in d["labels"]] for w in wanted)]
        per_page, page = int(query.get("per_page", 30)), int(query.get("page", 1))
        headers = None
        if page * per_page < len(items):
            nxt = "&".join(f"{k}={v}" for k, v in {**query, "page": str(page + 1)}.items())
            headers = {"Link": f'<{self.api_root}/repos/{self.full_name}/issues?{nxt}>; rel="next"'}
        return 200, items[(page - 1) * per_page: page * per_page], headers

    def _op_issues_get(self, repo_id: int, params: dict, query: dict, body: Any) -> tuple:
        data = self._issue_json(repo_id, int(params["issue_number"]))
        return (200, data, None) if data else (404, {"message": "Not Found"}, None)

    def _op_issues_list_dependencies_blocked_by(self, repo_id: int, params: dict, query: dict[str, str], body: Any
                                                ) -> tuple:
        issues = self.issues if repo_id == self.repo_id else self.elsewhere[repo_id][1]
        issue = issues.get(int(params["issue_number"]))
        if issue is None:
            return 404, {"message": "Not Found"}, None
        items = [d for b in issue.blocked_by if (d := self._issue_json(repo_id, b))]
        per_page, page = int(query.get("per_page", 30)), int(query.get("page", 1))
        return 200, items[(page - 1) * per_page: page * per_page], None

    def _op_issues_update(self, repo_id: int, params: dict, query: dict, body: Any) -> tuple:
        n = int(params["issue_number"])
        issues = self.issues if repo_id == self.repo_id else self.elsewhere[repo_id][1]
        issue = issues.get(n)
        if issue is None:
            return 404, {"message": "Not Found"}, None
        issue.state = (body or {}).get("state", issue.state)
        issue.state_reason = (body or {}).get("state_reason", issue.state_reason)
        return 200, self._issue_json(repo_id, n), None

    def _op_issues_create_comment(self, repo_id: int, params: dict, query: dict, body: Any) -> tuple:
        n = int(params["issue_number"])
        issues = self.issues if repo_id == self.repo_id else self.elsewhere[repo_id][1]
        if repo_id == self.repo_id and n in self.prs:  # a conversation comment on the PR (not a review thread)
            self.prs[n].comments.append(body["body"])
            self.touch(self.prs[n])
        elif n in issues:
            issues[n].comments.append(body["body"])
        else:
            return 404, {"message": "Not Found"}, None
        cid = self._id()
        return 201, {"id": cid, "node_id": f"IC_{cid}", "body": body["body"], "html_url": self._html("issues", n),
                     "url": f"{self.api_root}/repos/{self.full_name}/issues/comments/{cid}",
                     "issue_url": f"{self.api_root}/repos/{self.full_name}/issues/{n}", "user": self._user("ao-bot"),
                     "created_at": iso(self.clock()), "updated_at": iso(self.clock()),
                     "author_association": "MEMBER"}, None

    def _op_actions_download_job_logs_for_workflow_run(self, repo_id: int, params: dict, query: dict, body: Any
                                                       ) -> tuple:
        if self._job(params["job_id"]) is None:
            return 404, {"message": "Not Found"}, None
        # another host, as GitHub's signed blob URLs are: the client must not send the token there
        return 302, None, {"Location": f"http://{self.blob_host}:{self.port}/_logs/{params['job_id']}?sig=abc"}

    def _op_actions_list_repo_workflows(self, repo_id: int, params: dict, query: dict[str, str], body: Any) -> tuple:
        flows = [{"id": i + 1, "node_id": f"W_{i}", "name": w["name"], "path": w["path"], "state": w["state"],
                  "url": f"{self.api_root}/repos/{self.full_name}/actions/workflows/{i + 1}",
                  "html_url": f"https://github.com/{self.full_name}/actions", "badge_url": "https://github.com/",
                  "created_at": iso(0), "updated_at": iso(0)} for i, w in enumerate(self.workflows)]
        per_page, page = int(query.get("per_page", 30)), int(query.get("page", 1))
        return 200, {"total_count": len(flows), "workflows": flows[(page - 1) * per_page: page * per_page]}, None

    # -- GraphQL -----------------------------------------------------------------------------------

    def _graphql(self, body: Any, entry: Logged) -> tuple[int, dict[str, Any]]:
        from graphql import GraphQLError, execute, parse, validate

        if not isinstance(body, dict) or set(body) - {"query", "variables", "operationName"} \
                or not isinstance(body.get("query"), str):
            return 400, {"message": "Problems parsing JSON"}
        schema = github_schema()
        try:
            document = parse(body["query"])
        except GraphQLError as exc:
            return self._refuse(body["query"], [{"message": exc.message, "locations": exc.formatted.get("locations")}])
        errors = validate(schema, document)
        if errors:
            return self._refuse(body["query"], graphql_errors(errors))
        variables = body.get("variables") or {}
        try:
            cost = graphql_cost(schema, document, variables)
        except ResolverError as exc:
            return self._refuse(body["query"], [{"type": exc.type, "message": str(exc)}])
        with self.lock:
            self.remaining["graphql"] = max(0, self.remaining["graphql"] - cost)
            ctx = {"cost": cost, "entry": entry}
            result = execute(schema, document, root_value=self._query_root(ctx), variable_values=variables,
                             operation_name=body.get("operationName"))
        entry.cost = cost
        answer: dict[str, Any] = {"data": result.data}
        if result.errors:
            answer["errors"] = graphql_errors(result.errors)
            if result.data is None and all(e.path is None for e in result.errors):  # variables that do not fit
                return self._refuse(body["query"], answer["errors"])            # their types: refused first
            unexpected = [e for e in answer["errors"] if not e.get("type")]
            if unexpected:  # a resolver of ours failed, or a non-null field had no value: a fake bug
                self.violations.append(f"GraphQL execution: {unexpected[0]['message']}")
        return 200, answer

    def _refuse(self, query: str, errors: list[dict[str, Any]]) -> tuple[int, dict[str, Any]]:
        self.rejected.append(f"{errors[0].get('message')}\n{query}")
        return 200, {"errors": errors}

    def _query_root(self, ctx: dict) -> dict[str, Any]:
        def repository(info: Any, owner: str, name: str, followRenames: bool = True) -> Any:
            full = f"{owner}/{name}".lower()
            if full == self.full_name.lower() or (followRenames and full in self.old_names):
                return self._repo_obj(ctx)
            raise ResolverError(f"Could not resolve to a Repository with the name '{owner}/{name}'.", "NOT_FOUND")

        def rate_limit(info: Any, dryRun: bool = False) -> dict[str, Any]:
            return {"cost": ctx["cost"], "remaining": self.remaining["graphql"], "limit": self.limits["graphql"],
                    "used": self.limits["graphql"] - self.remaining["graphql"], "resetAt": iso(self.reset),
                    "nodeCount": 0}

        return {"rateLimit": rate_limit, "repository": repository}

    def _repo_obj(self, ctx: dict) -> dict[str, Any]:
        def pull_request(info: Any, number: int) -> Any:
            ctx["entry"].prs += 1
            pr = self.prs.get(number)
            if pr is None:
                raise ResolverError(f"Could not resolve to a PullRequest with the number of {number}.", "NOT_FOUND")
            return self._pr_obj(pr)

        def pull_requests(info: Any, **args: Any) -> Any:
            ctx["entry"].prs += 1
            found = [p for p in self.prs.values() if args.get("headRefName") in (None, p.branch)
                     and (not args.get("states") or p.state in args["states"])]
            order = args.get("orderBy") or {"field": "CREATED_AT", "direction": "ASC"}
            key = {"UPDATED_AT": lambda p: p.updated, "CREATED_AT": lambda p: p.created}[order["field"]]
            found.sort(key=lambda p: (key(p), p.number), reverse=order["direction"] == "DESC")
            return connection([self._pr_obj(p) for p in found], args)

        def history(info: Any, **args: Any) -> Any:
            return connection([self._commit_obj(sha, runs) for sha, runs in self.default_commits], args)

        def issue(info: Any, number: int) -> Any:
            rec = self.issues.get(number)
            if rec is None:
                raise ResolverError(f"Could not resolve to an Issue with the number of {number}.", "NOT_FOUND")
            return self._issue_obj(rec)

        head = self.default_commits[0][0] if self.default_commits else sha_of("main")
        return {"id": f"R_{self.repo_id}", "nameWithOwner": self.full_name, "name": self.repo,
                "pullRequest": pull_request, "pullRequests": pull_requests, "issue": issue,
                "defaultBranchRef": {"name": "main", "target": {"__typename": "Commit", "oid": head,
                                                                 "history": history}}}

    def _issue_obj(self, rec: IssueRec) -> dict[str, Any]:
        def linked(numbers: list[int]) -> Any:
            return lambda info, **args: connection([self._issue_obj(self.issues[n]) for n in numbers
                                                    if n in self.issues], args)

        return {"__typename": "Issue", "id": f"I_{rec.number}", "number": rec.number, "title": rec.title,
                "state": rec.state.upper(), "repository": {"__typename": "Repository", "nameWithOwner": self.full_name},
                "subIssues": linked(rec.sub_issues), "trackedIssues": linked(rec.tracks)}

    def _actor(self, login: str | None, bot: bool) -> dict[str, Any] | None:
        return None if login is None else {"__typename": "Bot" if bot else "User", "login": login}

    def _pr_obj(self, pr: PR) -> dict[str, Any]:
        def threads(info: Any, **args: Any) -> Any:
            return connection([self._thread_obj(t, pr.number) for t in pr.threads], args)

        def latest_reviews(info: Any, **args: Any) -> Any:
            latest: dict[Any, Review] = {}
            for r in sorted(pr.reviews, key=lambda r: r.at):
                if r.state in ("APPROVED", "CHANGES_REQUESTED", "DISMISSED"):
                    latest[r.author or f"ghost-{r.id}"] = r
            return connection([self._review_obj(r, pr.number) for r in latest.values()], args)

        def commits(info: Any, **args: Any) -> Any:
            return connection([{"commit": self._commit_obj(pr.head_sha, pr.checks, pr.rollup)}], args)

        same = not pr.head_repo or pr.head_repo == self.full_name
        return {
            "id": f"PR_{pr.number}", "number": pr.number, "url": self._html("pull", pr.number),
            "state": pr.state, "headRefName": pr.branch, "headRefOid": pr.head_sha, "baseRefName": pr.base,
            "updatedAt": iso(pr.updated), "title": pr.title, "isCrossRepository": not same,
            "headRepository": None if pr.head_repo == "gone" else {
                "nameWithOwner": self.full_name if same else pr.head_repo},
            "mergeable": pr.mergeable, "mergeStateStatus": pr.merge_state, "isDraft": pr.draft,
            "reviewDecision": pr.decision, "reviewThreads": threads, "latestOpinionatedReviews": latest_reviews,
            "commits": commits,
        }

    def _review_obj(self, r: Review, number: int) -> dict[str, Any]:
        return {"id": r.id, "state": r.state, "body": r.body, "authorAssociation": r.association,
                "author": self._actor(r.author, r.bot), "commit": {"oid": r.commit},
                "submittedAt": iso(r.at), "url": f"{self._html('pull', number)}#pullrequestreview-{r.id}"}

    def _thread_obj(self, t: Thread, number: int) -> dict[str, Any]:
        def comments(info: Any, **args: Any) -> Any:
            return connection([{
                "id": t.id.replace("PRRT", "PRRC"), "author": self._actor(t.author, t.bot),
                "authorAssociation": t.association, "body": t.body, "path": t.path, "line": t.line,
                "url": f"{self._html('pull', number)}#discussion_{t.id}"}], args)

        return {"id": t.id, "isResolved": t.resolved, "isOutdated": t.outdated, "comments": comments}

    def _commit_obj(self, sha: str, runs: list[Run], rollup: str | None = None) -> dict[str, Any]:
        return {"__typename": "Commit", "oid": sha, "statusCheckRollup": self._rollup(sha, runs, rollup)}

    def _rollup(self, sha: str, runs: list[Run], override: str | None) -> dict[str, Any] | None:
        if not runs and override is None:
            return None  # as GitHub: no rollup until the first check or status exists
        states = []
        for r in runs:
            if r.kind == "StatusContext":
                states.append({"SUCCESS": "SUCCESS", "PENDING": "PENDING", "EXPECTED": "PENDING"}.get(r.conclusion or "",
                                                                                                    "FAILURE"))
            elif r.status != "COMPLETED":
                states.append("PENDING")
            else:
                states.append("SUCCESS" if r.conclusion in ("SUCCESS", "NEUTRAL", "SKIPPED") else "FAILURE")
        state = override or ("FAILURE" if "FAILURE" in states else "PENDING" if "PENDING" in states else "SUCCESS")

        def contexts(info: Any, **args: Any) -> Any:
            nodes = []
            for r in runs:
                if r.kind == "StatusContext":
                    nodes.append({"__typename": "StatusContext", "context": r.name, "state": r.conclusion,
                                  "targetUrl": f"https://ci.example.com/status/{r.id}"})
                else:
                    url = (f"https://github.com/{self.full_name}/actions/runs/{r.id * 7}/job/{r.id}" if r.actions
                           else f"https://ci.example.com/builds/{r.id}")
                    suite = {"workflowRun": {"workflow": {"name": r.workflow}} if r.actions else None}
                    nodes.append({"__typename": "CheckRun", "name": r.name, "status": r.status,
                                  "conclusion": r.conclusion if r.status == "COMPLETED" else None,
                                  "detailsUrl": url, "databaseId": r.id, "checkSuite": suite})
            return connection(nodes, args)

        return {"id": f"SCR_{sha[:10]}", "state": state, "contexts": contexts}


# ------------------------------------------------------------------------------------------- GraphQL cost


def graphql_cost(schema: Any, document: Any, variables: dict[str, Any]) -> int:
    """GitHub's rate-limit cost of a query: each connection counts once per node of its parent connections
    (``first``/``last`` taken as reached), summed, divided by 100, at least 1. Raises :class:`ResolverError`
    as GitHub refuses a connection without ``first``/``last`` or with more than 100."""
    from graphql import (FieldNode, FragmentDefinitionNode, FragmentSpreadNode, InlineFragmentNode,
                         OperationDefinitionNode, get_named_type, value_from_ast_untyped)

    fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}

    def size(node: FieldNode, name: str) -> int | None:
        for arg in node.arguments or ():
            if arg.name.value == name:
                value = value_from_ast_untyped(arg.value, variables)
                return value if isinstance(value, int) else None
        return None

    def walk(selection_set: Any, parent: Any, mult: int) -> int:
        total = 0
        for sel in selection_set.selections if selection_set else ():
            if isinstance(sel, FragmentSpreadNode):
                frag = fragments[sel.name.value]
                total += walk(frag.selection_set, schema.type_map[frag.type_condition.name.value], mult)
            elif isinstance(sel, InlineFragmentNode):
                cond = schema.type_map[sel.type_condition.name.value] if sel.type_condition else parent
                total += walk(sel.selection_set, cond, mult)
            elif isinstance(sel, FieldNode) and sel.selection_set is not None:
                fields = getattr(parent, "fields", {})
                definition = fields.get(sel.name.value)
                if definition is None:
                    continue
                target = get_named_type(definition.type)
                if target.name.endswith("Connection"):
                    first, last = size(sel, "first"), size(sel, "last")
                    if first is None and last is None:
                        raise ResolverError(f"You must provide a `first` or `last` value to properly paginate the "
                                            f"`{sel.name.value}` connection.", "MISSING_PAGINATION_BOUNDARIES")
                    n = first if first is not None else last
                    if not 0 <= n <= MAX_PAGE:
                        raise ResolverError(f"Requesting {n} records on the `{sel.name.value}` connection exceeds "
                                            f"the `{'first' if first is not None else 'last'}` limit of 100 records.",
                                            "EXCESSIVE_PAGINATION")
                    total += mult + walk(sel.selection_set, target, mult * n)
                else:
                    total += walk(sel.selection_set, target, mult)
        return total

    requests = sum(walk(d.selection_set, schema.query_type, 1) for d in document.definitions
                   if isinstance(d, OperationDefinitionNode))
    return max(1, round(requests / 100))
