"""The GitHub SCM (SPEC 8): a rate-limit-aware API client and the observer that spends it carefully.

Per poll cycle, for all of a project's sessions at once (docs/github.md has the numbers):

1. The guard: one conditional ``GET /repos/{o}/{r}/pulls?state=all&sort=updated`` with the ETag of the last
   answer. A 304 costs no rate limit and says no PR was created, pushed to, commented on, reviewed or closed.
   The list also maps head branches to PR numbers (same-repository PRs only: a fork's branch of the same
   name is not ours).
2. One GraphQL query per 50 PRs (aliased ``pullRequest(number:)`` fields) for the PRs that need it: those
   the guard shows changed, plus those whose answer cannot be settled by the guard (CI pending, mergeability
   still being computed) and open PRs last read more than ``fullRefresh`` ago (the base branch moving makes
   conflicts without touching the PR list).
3. The log tails of failing GitHub Actions checks, once per head SHA and check (cached in ``state_dir``).

ETags, the last views, log tails and the rate-limit state live in ``state_dir/github.json``, so ``ao poll``
(one cycle per process) gains from them as much as ``ao start`` does. Nothing is saved from a failed cycle
except the rate-limit state: the next cycle re-asks everything the failed one would have.

httpx is imported lazily (in the client's constructor): the CLI must start fast.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable
from urllib.parse import quote, urlsplit

from ao.errors import AoError
from ao.plugins.scm import TRUSTED_ASSOCIATIONS, Check, Comment, MergeError, PRView, Review, ScmContext

if TYPE_CHECKING:
    import httpx

DEFAULT_API = "https://api.github.com"
TOKEN_HINT = "set GITHUB_TOKEN (or GH_TOKEN) or run `gh auth login`"
MERGE_METHODS = ("squash", "merge", "rebase")
BATCH = 50                   # PRs per GraphQL query: keeps one query's cost and answer size moderate
PAGE = 100                   # the guard's page size (GitHub's maximum)
FULL_REFRESH = 600           # seconds: re-read open PRs this often even when the guard says nothing changed
LOOKUP_FIRST = 3             # PRs per head-branch lookup (a closed PR and its reopened successor)
REVIEWS_PAGE = 50            # latest reviews per reviewer, review threads and check contexts per page: a
THREADS_PAGE = 50            # thread costs a request for its first comment, so 50 keeps 50 PRs near 27 points
CONTEXTS_PAGE = 100          # contexts sit under the head commit alone: 100 cost as little as 1
MORE_ROUNDS = 20             # rounds of next pages per cycle (1,000 threads, 2,000 checks on one PR)
CI_EVIDENCE_COMMITS = 20     # recent commits of the default branch, and recent PRs, looked at for checks
HAS_CI_TTL = 3600            # seconds a "the repository has CI" answer is reused
NO_CHECKS_GRACE = 60         # scm.noChecksGrace: "no checks" counts as settled this long after a push (no CI)
NO_CHECKS_WATCH = 600        # a head with no checks in a repository with CI is re-read every cycle this long
LOG_TAIL_BYTES = 256 * 1024  # of a job log, only this much of the end is kept while it downloads
MAX_REDIRECTS = 3            # renamed repository, transferred issue: one hop each
SECONDARY_WAIT = 60          # seconds, GitHub's "at least one minute" without retry-after; doubled per repeat
SECONDARY_WAIT_CAP = 960
STATE_VERSION = 1

_ACTIONS_JOB = re.compile(r"/actions/runs/\d+/jobs?/\d+")
_LOG_TIMESTAMP = re.compile(r"^\ufeff?\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z ?", re.MULTILINE)


class GitHubError(AoError):
    """A GitHub request failed; the message says which and why (never the token)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class RateLimited(GitHubError):
    """GitHub asked us to wait (secondary limit, or the hourly budget is spent): no request is made until
    ``until`` (epoch seconds)."""

    def __init__(self, message: str, until: float) -> None:
        super().__init__(message, 429)
        self.until = until


# ----------------------------------------------------------------------------------------- token, URLs


def api_urls(base_url: str | None = None) -> tuple[str, str]:
    """(REST base, GraphQL endpoint) for ``scm.baseUrl``.

    - ``https://api.github.com`` (the default; ``https://github.com`` means it too): GraphQL at ``/graphql``;
    - GHE.com (data residency), ``https://api.SUBDOMAIN.ghe.com`` or ``https://SUBDOMAIN.ghe.com``: REST at
      ``https://api.SUBDOMAIN.ghe.com``, GraphQL at ``/graphql`` there (no ``/api/v3``);
    - GitHub Enterprise Server, ``https://HOST/api/v3`` (a bare ``https://HOST`` is taken as it): GraphQL at
      ``https://HOST/api/graphql``;
    - any other URL (a test server): as written, GraphQL at ``BASE/graphql``.
    """
    base = str(base_url or DEFAULT_API).strip().rstrip("/")
    parts = urlsplit(base)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise AoError(f"scm.baseUrl '{base}' is not an http(s) URL; use e.g. {DEFAULT_API} or https://HOST/api/v3")
    if parts.query or parts.fragment or "@" in parts.netloc:
        raise AoError(f"scm.baseUrl '{base}' must be a plain URL (no user, query or fragment)")
    host = (parts.hostname or "").lower()
    if host in ("github.com", "www.github.com"):
        base = DEFAULT_API
    elif host.endswith(".ghe.com"):
        if parts.path not in ("", "/"):
            raise AoError(f"scm.baseUrl '{base}': a GHE.com API has no path; use https://api.{host.removeprefix('api.')}")
        base = f"{parts.scheme}://{host if host.startswith('api.') else 'api.' + host}"
        return base, base + "/graphql"
    elif parts.scheme == "https" and not parts.path and host != "api.github.com":
        base += "/api/v3"
    if base == DEFAULT_API:
        return base, base + "/graphql"
    if base.endswith("/api/v3"):
        return base, base[: -len("/v3")] + "/graphql"
    return base, base + "/graphql"


def token_host(base_url: str) -> str | None:
    """The host ``gh auth token --hostname`` knows the token by; None for github.com and test servers."""
    host = (urlsplit(base_url).hostname or "").lower()
    if host in ("api.github.com", "github.com", "127.0.0.1", "localhost", "::1"):
        return None
    return host.removeprefix("api.") if host.endswith(".ghe.com") else host


def resolve_token(base_url: str = DEFAULT_API, env: dict[str, str] | None = None) -> str:
    """``GITHUB_TOKEN``, else ``GH_TOKEN``, else ``gh auth token`` (for an Enterprise or GHE.com host:
    ``--hostname``)."""
    env = dict(os.environ) if env is None else env
    for name in ("GITHUB_TOKEN", "GH_TOKEN"):
        if env.get(name, "").strip():
            return env[name].strip()
    command = ["gh", "auth", "token"]
    if (host := token_host(base_url)) is not None:
        command += ["--hostname", host]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=15, env=env,
                              stdin=subprocess.DEVNULL, check=False)
    except FileNotFoundError:
        raise AoError(f"no GitHub token: {TOKEN_HINT} (the gh CLI is not installed)") from None
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise AoError(f"no GitHub token: `gh auth token` failed ({type(exc).__name__}); {TOKEN_HINT}") from None
    token = done.stdout.strip() if done.returncode == 0 else ""
    if not token or any(c.isspace() for c in token):
        # gh's stderr says why (not logged in); its stdout is never shown: it may hold a token
        why = " ".join(done.stderr.split())[:200] if done.returncode else "it printed no token"
        raise AoError(f"no GitHub token: `gh auth token` failed ({why}); {TOKEN_HINT}")
    return token


def parse_time(value: Any) -> float | None:
    """Epoch seconds from GitHub's ISO 8601 times (``2024-05-01T12:00:00Z``)."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(timezone.utc).timestamp()
    except ValueError:
        return None


# ------------------------------------------------------------------------------------------ rate limits


@dataclass
class Budget:
    """One rate-limit resource (``core``, ``graphql``...) as GitHub last reported it."""

    limit: int | None = None
    remaining: int | None = None
    reset: float | None = None      # epoch seconds when ``remaining`` goes back to ``limit``
    cycle_cost: float = 0.0         # what one observation cycle spends (a moving average)


@dataclass
class RateLimits:
    """What GitHub said about our budget, plus a block after a secondary limit. Serialisable: persisted so the
    next process (``ao poll``) keeps honouring a ``retry-after``."""

    budgets: dict[str, Budget] = field(default_factory=dict)
    blocked_until: float = 0.0
    blocked_reason: str = ""
    secondary_streak: int = 0   # secondary limits in a row without retry-after: each waits twice as long
    spent: dict[str, int] = field(default_factory=dict)   # in the current cycle

    RESERVE = 0.1        # of the hourly limit, kept for merges, comments and other tools on the same token
    MIN_RESERVE = 50
    EMA = 0.3            # weight of the newest cycle in ``cycle_cost``

    def get(self, resource: str) -> Budget:
        return self.budgets.setdefault(resource, Budget())

    def from_headers(self, headers: Any, counted: bool) -> None:
        resource = headers.get("x-ratelimit-resource") or "core"
        budget = self.get(resource)
        for name, attr in (("x-ratelimit-limit", "limit"), ("x-ratelimit-remaining", "remaining")):
            if (value := headers.get(name)) is not None and value.strip().isdigit():
                setattr(budget, attr, int(value))
        if (reset := headers.get("x-ratelimit-reset")) is not None and reset.strip().isdigit():
            budget.reset = float(reset)
        if counted and resource != "graphql":  # a GraphQL query's cost comes from its rateLimit field
            self.spend(resource, 1)

    def from_graphql(self, rate: Any) -> None:
        if not isinstance(rate, dict):
            return
        budget = self.get("graphql")
        if isinstance(rate.get("remaining"), int):
            budget.remaining = rate["remaining"]
        if isinstance(rate.get("limit"), int):
            budget.limit = rate["limit"]
        if (reset := parse_time(rate.get("resetAt"))) is not None:
            budget.reset = reset
        self.spend("graphql", rate["cost"] if isinstance(rate.get("cost"), int) else 1)

    def spend(self, resource: str, points: int) -> None:
        self.spent[resource] = self.spent.get(resource, 0) + points

    def begin_cycle(self) -> None:
        self.spent = {}

    def end_cycle(self) -> None:
        for resource in set(self.budgets) | set(self.spent):
            budget, used = self.get(resource), self.spent.get(resource, 0)
            budget.cycle_cost = used if not budget.cycle_cost else \
                (1 - self.EMA) * budget.cycle_cost + self.EMA * used
        self.spent = {}

    def block(self, until: float, reason: str) -> None:
        if until > self.blocked_until:
            self.blocked_until, self.blocked_reason = until, reason

    def blocked(self, resource: str, now: float) -> tuple[float, str] | None:
        """(until, why) when no request for ``resource`` may be made now."""
        if now < self.blocked_until:
            return self.blocked_until, self.blocked_reason
        budget = self.budgets.get(resource)
        if budget and budget.remaining == 0 and budget.reset and now < budget.reset:
            return budget.reset, f"the hourly {resource} rate limit is spent"
        return None

    def backoff(self, now: float, interval: float = 30.0) -> float:
        """Extra seconds the poller should wait before its next cycle, on top of its ``interval``.

        0 while polling every ``interval`` at the measured cost of a cycle leaves the budget (less a reserve
        for merges, comments and other tools sharing the token) lasting until the reset; otherwise what
        stretches the gap between cycles so that it does; the rest of the window once only the reserve is
        left; and the rest of a secondary-limit block.
        """
        wait = max(0.0, self.blocked_until - now)
        for budget in self.budgets.values():
            if budget.remaining is None or budget.reset is None or budget.reset <= now:
                continue
            window = budget.reset - now
            reserve = max(self.MIN_RESERVE, int((budget.limit or 0) * self.RESERVE))
            usable = budget.remaining - reserve
            if usable <= 0:
                wait = max(wait, window)
                continue
            gap = window * max(budget.cycle_cost, 1.0) / usable  # spread what is left over the window
            wait = max(wait, gap - interval)
        return round(max(wait, 0.0), 1)

    def to_json(self) -> dict[str, Any]:
        return {"budgets": {k: asdict(v) for k, v in self.budgets.items()}, "blocked_until": self.blocked_until,
                "blocked_reason": self.blocked_reason, "secondary_streak": self.secondary_streak}

    @classmethod
    def from_json(cls, data: Any) -> RateLimits:
        rates = cls()
        if not isinstance(data, dict):
            return rates
        try:
            rates.budgets = {str(k): Budget(**v) for k, v in (data.get("budgets") or {}).items()}
            rates.blocked_until = float(data.get("blocked_until") or 0)
            rates.blocked_reason = str(data.get("blocked_reason") or "")
            rates.secondary_streak = int(data.get("secondary_streak") or 0)
        except (TypeError, ValueError):
            return cls()
        return rates


# ------------------------------------------------------------------------------------------------ client


def _origin(url: Any) -> tuple[str, str, int | None]:
    return (url.scheme, url.host, url.port)


def _clock_text(epoch: float) -> str:
    return datetime.fromtimestamp(epoch).strftime("%H:%M:%S")


class GitHubClient:
    """A small synchronous GitHub REST + GraphQL client on ``httpx.Client``.

    Every request: a timeout; connection failures retried by httpx's transport; 5xx answers, timeouts and
    network errors retried with capped exponential backoff (reads only, or writes that never left); the
    rate-limit headers recorded in :attr:`rate_limit`; redirects on the API's own host followed with the token
    (a renamed repository, a transferred issue), never to another host; the primary limit (``remaining`` 0)
    blocks every request until GitHub's reset, a secondary limit until ``retry-after`` (or a minute, doubling
    while it repeats), raising :class:`RateLimited` without asking. ``sleep`` and ``clock`` are injectable so
    tests never wait; ``transport`` too (tests reach a fake GHE.com host through it).
    """

    def __init__(self, token: str | None = None, base_url: str | None = None, *, timeout: float = 15.0,
                 attempts: int = 3, backoff_base: float = 1.0, backoff_cap: float = 10.0,
                 sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.time,
                 rate_limit: RateLimits | None = None, transport: httpx.BaseTransport | None = None) -> None:
        import httpx

        from ao import __version__

        self.base_url, self.graphql_url = api_urls(base_url)
        self._token = token if token is not None else resolve_token(self.base_url)
        self.timeout, self.attempts = timeout, max(1, attempts)
        self.backoff_base, self.backoff_cap = backoff_base, backoff_cap
        self.sleep, self.clock = sleep, clock
        self.rate_limit = rate_limit if rate_limit is not None else RateLimits()
        self._http = httpx.Client(
            base_url=self.base_url, timeout=httpx.Timeout(timeout), follow_redirects=False,
            transport=transport or httpx.HTTPTransport(retries=2),  # connect failures: the request never left
            headers={"Authorization": f"Bearer {self._token}", "Accept": "application/vnd.github+json",
                     "X-GitHub-Api-Version": "2022-11-28", "User-Agent": f"ao/{__version__}"})
        self._origin = _origin(httpx.URL(self.base_url))

    def __repr__(self) -> str:  # never the token
        return f"GitHubClient({self.base_url!r})"

    def close(self) -> None:
        self._http.close()

    def backoff(self, now: float | None = None, interval: float = 30.0) -> float:
        return self.rate_limit.backoff(self.clock() if now is None else now, interval)

    # -- requests ----------------------------------------------------------------------------------

    def _scrub(self, text: str) -> str:
        return text.replace(self._token, "***") if self._token else text

    def _check_blocked(self, resource: str, what: str) -> None:
        if (hit := self.rate_limit.blocked(resource, self.clock())) is not None:
            until, why = hit
            raise RateLimited(f"GitHub: {why}; not sending {what} until {_clock_text(until)} "
                              f"({math.ceil(until - self.clock())}s)", until)

    def message(self, response: httpx.Response) -> str:
        """GitHub's error message for a response, one cleaned line."""
        from ao.templates import clean

        text = ""
        try:
            body = response.json()
            if isinstance(body, dict):
                text = str(body.get("message") or "")
                errors = body.get("errors")
                if isinstance(errors, list) and errors and isinstance(errors[0], dict) and errors[0].get("message"):
                    text += f" ({errors[0]['message']})"
        except ValueError:
            text = response.text if response.headers.get("content-type", "").startswith("text/") else ""
        return " ".join(clean(self._scrub(text), 300).split())

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One request, following GitHub's redirects on the API's own origin (301 renamed repository or
        transferred issue, 302/307/308): same method, body and token. A redirect to another host is an error:
        the token is never sent there, and no API answer of ours lives there."""
        response = self._http.request(method, path, **kwargs)
        for _ in range(MAX_REDIRECTS):
            if response.status_code not in (301, 302, 307, 308) or "location" not in response.headers:
                return response
            target = response.url.join(response.headers["location"])
            if _origin(target) != self._origin:
                raise GitHubError(f"GitHub redirected {method} {urlsplit(path).path or path} to another host "
                                  f"({target.host}); not following it with the token", response.status_code)
            response.close()
            self.rate_limit.from_headers(response.headers, counted=True)
            if target.query:  # GitHub's Location keeps the query string: the parameters are in it already
                kwargs = {**kwargs, "params": None}
            response = self._http.request(method, target, **kwargs)
        return response

    def request(self, method: str, path: str, *, params: dict[str, Any] | None = None, json: Any = None,
                etag: str | None = None, retry: bool | None = None, resource: str = "core") -> httpx.Response:
        """One API call with retries, same-host redirects and rate-limit handling; any status below 500 is
        returned to the caller (304, 404, 409...) except 401 and rate limits, which raise. ``retry`` defaults
        to GET only: a POST that timed out may have been done. ``response.url`` is where the answer came from."""
        import httpx

        retry = method in ("GET", "HEAD") if retry is None else retry
        what = f"{method} {urlsplit(path).path or path}"
        headers = {"If-None-Match": etag} if etag else None
        attempt = 0
        while True:
            self._check_blocked(resource, what)
            try:
                response = self._send(method, path, params=params, json=json, headers=headers)
            except httpx.TimeoutException:
                problem, status = f"no answer from GitHub within {self.timeout:g}s ({what})", 0
            except httpx.TransportError as exc:
                problem, status = self._scrub(f"cannot reach GitHub ({what}): {type(exc).__name__}: {exc}"), 0
            else:
                code = response.status_code
                self.rate_limit.from_headers(response.headers, counted=code != 304 and code < 500)
                if code < 500:
                    self._raise_for_limits(response, what)
                    return response
                detail = self.message(response)
                problem = f"GitHub answered {what} with HTTP {code}" + (f": {detail}" if detail else "")
                status = code
            attempt += 1
            if not retry or attempt >= self.attempts:
                raise GitHubError(problem + (f" (after {attempt} attempts)" if attempt > 1 else ""), status)
            self.sleep(min(self.backoff_base * 2 ** (attempt - 1), self.backoff_cap))

    def _raise_for_limits(self, response: httpx.Response, what: str) -> None:
        """401, and GitHub's two rate limits told apart (docs/github.md): the primary limit is a 403 or 429 with
        ``x-ratelimit-remaining: 0`` (wait until ``x-ratelimit-reset``); a secondary limit is a 403 or 429 with
        ``retry-after``, or saying so (wait ``retry-after``, else a minute, doubling while it repeats)."""
        code = response.status_code
        if code == 401:
            raise GitHubError(f"GitHub rejected the token (HTTP 401 on {what}): {TOKEN_HINT}", 401)
        if code not in (403, 429):
            if code < 400:
                self.rate_limit.secondary_streak = 0
            return
        message = self.message(response)
        now = self.clock()
        after = response.headers.get("retry-after", "").strip()
        if response.headers.get("x-ratelimit-remaining") == "0" and not after.isdigit():
            resource = response.headers.get("x-ratelimit-resource") or "core"
            budget = self.rate_limit.get(resource)
            budget.remaining = 0
            reset = budget.reset if budget.reset and budget.reset > now else now + SECONDARY_WAIT
            budget.reset = reset
            raise RateLimited(f"GitHub's primary rate limit for {resource} is spent ({what}); no {resource} "
                              f"requests until it resets at {_clock_text(reset)}", reset)
        if after.isdigit() or code == 429 or "secondary rate limit" in message.lower():
            if after.isdigit():
                wait = int(after)
            else:
                wait = min(SECONDARY_WAIT * 2 ** self.rate_limit.secondary_streak, SECONDARY_WAIT_CAP)
                self.rate_limit.secondary_streak += 1
            self.rate_limit.block(now + wait, "GitHub's secondary rate limit")
            raise RateLimited(f"GitHub's secondary rate limit was hit on {what}: no requests for {wait}s "
                              f"(until {_clock_text(now + wait)})", now + wait)

    def json_of(self, response: httpx.Response, what: str) -> Any:
        try:
            return response.json()
        except ValueError:
            raise GitHubError(f"GitHub answered {what} with malformed JSON ({len(response.content)} bytes, "
                              f"HTTP {response.status_code})", response.status_code) from None

    def rest(self, method: str, path: str, *, ok: tuple[int, ...] = (200,), **kwargs: Any) -> Any:
        """A REST call whose answer must have one of the ``ok`` statuses; its JSON (``None`` for 204)."""
        response = self.request(method, path, **kwargs)
        what = f"{method} {path.split('?')[0]}"
        if response.status_code not in ok:
            detail = self.message(response)
            raise GitHubError(f"GitHub answered {what} with HTTP {response.status_code}"
                              + (f": {detail}" if detail else ""), response.status_code)
        return None if response.status_code == 204 else self.json_of(response, what)

    def graphql(self, query: str, variables: dict[str, Any] | None = None) -> tuple[dict[str, Any], list[dict]]:
        """(data, errors) of a GraphQL query (retried like a GET: queries only read). Partial answers come
        back with their errors (a PR number that does not exist is one); no data at all raises."""
        what = "the GraphQL query"
        response = self.request("POST", self.graphql_url, json={"query": query, "variables": variables or {}},
                                retry=True, resource="graphql")
        body = self.json_of(response, what)
        if response.status_code != 200:
            detail = self.message(response)
            raise GitHubError(f"GitHub answered {what} with HTTP {response.status_code}"
                              + (f": {detail}" if detail else ""), response.status_code)
        if not isinstance(body, dict):
            raise GitHubError(f"GitHub answered {what} with something that is not a GraphQL response")
        data, errors = body.get("data"), body.get("errors") or []
        errors = [e for e in errors if isinstance(e, dict)] if isinstance(errors, list) else []
        if isinstance(data, dict):
            self.rate_limit.from_graphql(data.get("rateLimit"))
        if any(e.get("type") == "RATE_LIMITED" for e in errors):
            budget = self.rate_limit.get("graphql")
            budget.remaining = 0
            until = budget.reset if budget.reset and budget.reset > self.clock() else self.clock() + 60
            raise RateLimited(f"GitHub's hourly GraphQL rate limit is spent; it resets at {_clock_text(until)}",
                              until)
        if not isinstance(data, dict):
            first = self._scrub(str(errors[0].get("message", ""))) if errors else "no data"
            raise GitHubError(f"GitHub rejected {what}: {' '.join(first.split())[:300]}")
        return data, errors

    def download_tail(self, path: str, limit: int = LOG_TAIL_BYTES) -> str:
        """The last ``limit`` bytes of a (redirected) download, e.g. a job log; no retries: callers treat a
        failure as "no log". httpx drops the Authorization header when a redirect leaves the API host."""
        import httpx

        what = f"GET {path}"
        self._check_blocked("core", what)
        tail = b""
        try:
            with self._http.stream("GET", path, follow_redirects=True) as response:
                for past in response.history:
                    self.rate_limit.from_headers(past.headers, counted=True)
                if not response.history:
                    self.rate_limit.from_headers(response.headers, counted=response.status_code != 304)
                    self._raise_for_limits(response, what)
                if response.status_code != 200:
                    raise GitHubError(f"GitHub answered {what} with HTTP {response.status_code}",
                                      response.status_code)
                for chunk in response.iter_bytes():
                    tail = (tail + chunk)[-limit:]
        except httpx.HTTPError as exc:
            raise GitHubError(self._scrub(f"cannot download {what}: {type(exc).__name__}")) from None
        return tail.decode("utf-8", errors="replace")


# --------------------------------------------------------------------------------------------- GraphQL

PAGE_INFO = "pageInfo { hasNextPage endCursor }"
FRAGMENTS = {
    "review": "fragment review on PullRequestReview { id state body url authorAssociation "
              "author { login __typename } commit { oid } }",
    "thread": "fragment thread on PullRequestReviewThread { isResolved comments(first: 1) { nodes { id "
              "author { login __typename } authorAssociation body path line url } } }",
    "context": "fragment context on StatusCheckRollupContext { __typename "
               "... on CheckRun { databaseId name conclusion status detailsUrl checkSuite { workflowRun { workflow "
               "{ name } } } } ... on StatusContext { context state targetUrl } }",
}
# (the connection's field, page size, where it sits under a pullRequest, what a page holds)
CONNECTIONS = {
    "reviews": ("latestOpinionatedReviews", REVIEWS_PAGE, "{}", "review"),
    "threads": ("reviewThreads", THREADS_PAGE, "{}", "thread"),
    "contexts": ("contexts", CONTEXTS_PAGE, "commits(last: 1) {{ nodes {{ commit {{ oid statusCheckRollup {{ state {} "
                 "}} }} }} }}", "context"),
}


def _connection(kind: str, after: str | None = None) -> str:
    field, size, around, fragment = CONNECTIONS[kind]
    cursor = f", after: {after}" if after else ""
    return around.format(f"{field}(first: {size}{cursor}) {{ {PAGE_INFO} nodes {{ ...{fragment} }} }}")


PR_FIELDS = ("number url state headRefName headRefOid baseRefName updatedAt isCrossRepository mergeable "
             "mergeStateStatus isDraft reviewDecision " + " ".join(_connection(k) for k in CONNECTIONS))


def _document(params: list[str], fields: list[str], fragments: dict[str, str]) -> str:
    body = "\n".join(fields)
    used: list[str] = []  # the fragments the fields use, directly or through another (GraphQL refuses unused ones)
    while new := [t for n, t in fragments.items() if t not in used
                  and re.search(rf"\.\.\.{n}\b", body + " ".join(used))]:
        used += new
    return (f"query({', '.join(['$owner: String!', '$name: String!', *params])}) {{\n"
            f"  rateLimit {{ cost remaining resetAt }}\n  repository(owner: $owner, name: $name) {{\n{body}\n  }}\n}}\n"
            + "\n".join(used) + "\n")


def batch_query(items: list[tuple[str, int | str]]) -> tuple[str, dict[str, Any]]:
    """One query for up to :data:`BATCH` PRs: ``("number", 12)`` reads PR 12 as ``p<i>``; ``("branch",
    "feat")`` looks the PRs of head branch ``feat`` up as ``b<i>`` (branch names travel as variables)."""
    fields, params, variables = [], [], {}
    for i, (kind, key) in enumerate(items):
        if kind == "number":
            fields.append(f"    p{i}: pullRequest(number: {int(key)}) {{ ...pr }}")
        else:
            params.append(f"$b{i}: String!")
            variables[f"b{i}"] = str(key)
            fields.append(f"    b{i}: pullRequests(headRefName: $b{i}, first: {LOOKUP_FIRST}, "
                          f"orderBy: {{field: UPDATED_AT, direction: DESC}}) {{ nodes {{ ...pr }} }}")
    return _document(params, fields, {"pr": f"fragment pr on PullRequest {{ {PR_FIELDS} }}", **FRAGMENTS}), variables


def more_query(wanted: list[tuple[int, str, str]]) -> tuple[str, dict[str, Any]]:
    """The next pages of connections that had more than a page: ``(PR number, "reviews" | "threads" |
    "contexts", cursor)`` each, as ``m<i>`` (with the PR's ``updatedAt`` and head, to tell it did not change)."""
    fields, params, variables = [], [], {}
    for i, (number, kind, cursor) in enumerate(wanted):
        params.append(f"$c{i}: String!")
        variables[f"c{i}"] = cursor
        fields.append(f"    m{i}: pullRequest(number: {int(number)}) {{ updatedAt headRefOid "
                      f"{_connection(kind, f'$c{i}')} }}")
    return _document(params, fields, FRAGMENTS), variables


CI_EVIDENCE_QUERY = _document([], [
    f"    defaultBranchRef {{ target {{ ... on Commit {{ history(first: {CI_EVIDENCE_COMMITS}) {{ nodes {{ "
    "statusCheckRollup { state } } } } } }",
    f"    pullRequests(first: {CI_EVIDENCE_COMMITS}, orderBy: {{field: UPDATED_AT, direction: DESC}}) {{ nodes {{ "
    "commits(last: 1) { nodes { commit { statusCheckRollup { state } } } } } }"], {})


_PR_STATES = {"OPEN": "open", "MERGED": "merged", "CLOSED": "closed"}
_RUN_PASSING = {"SUCCESS", "NEUTRAL", "SKIPPED"}
_REVIEW_STATES = {"APPROVED": "approved", "CHANGES_REQUESTED": "changes_requested"}


def _nodes(value: Any) -> list[dict]:
    nodes = value.get("nodes") if isinstance(value, dict) else None
    return [n for n in nodes if isinstance(n, dict)] if isinstance(nodes, list) else []


def _rollup(pr: dict) -> tuple[dict | None, dict]:
    """The head commit's statusCheckRollup (None: no check or status yet) and the commit."""
    commits = _nodes(pr.get("commits"))
    commit = commits[-1].get("commit") if commits and isinstance(commits[-1].get("commit"), dict) else {}
    rollup = commit.get("statusCheckRollup")
    return (rollup if isinstance(rollup, dict) else None), commit


def _page(pr: dict, kind: str) -> dict | None:
    """The connection ``kind`` of a pullRequest node (None when it is not there)."""
    if kind == "contexts":
        rollup = _rollup(pr)[0]
        return rollup.get("contexts") if rollup else None
    value = pr.get(CONNECTIONS[kind][0])
    return value if isinstance(value, dict) else None


def _incomplete(pr: dict, kind: str) -> bool:
    """Whether the connection ``kind`` was not read whole: the PR changed between its pages, or the rounds of
    next pages ran out (:meth:`GitHubSCM._more_pages`)."""
    page = _page(pr, kind)
    info = page.get("pageInfo") if page else None
    return bool(page and (page.get("incomplete") or (isinstance(info, dict) and info.get("hasNextPage"))))


@dataclass(frozen=True)
class Trust:
    """Whose words reach agents: authors whose association is listed (``scm.trustedAssociations``, default
    OWNER, MEMBER, COLLABORATOR), or whose login is (``scm.trustedLogins``: org members whose association
    GitHub reports as CONTRIBUTOR or NONE, for instance)."""

    associations: frozenset[str] = frozenset(TRUSTED_ASSOCIATIONS)
    logins: frozenset[str] = frozenset()

    def __call__(self, association: str, login: str | None) -> bool:
        return association in self.associations or (login is not None and login.lower() in self.logins)


def _author(node: dict) -> tuple[str | None, bool]:
    """(login, is a bot) of a comment's or review's author; login None for a deleted account (``author: null``)."""
    author = node.get("author") if isinstance(node.get("author"), dict) else None
    if author is None:
        return None, False
    login = str(author.get("login") or "") or None
    return login, author.get("__typename") == "Bot" or bool(login and login.endswith("[bot]"))


def check_of(node: dict) -> tuple[Check, int | None]:
    """A rollup context as a Check, plus the Actions job id whose log to fetch when it failed."""
    if node.get("__typename") == "StatusContext":
        state = {"SUCCESS": "passing", "PENDING": "pending", "EXPECTED": "pending"}.get(node.get("state"), "failing")
        name = str(node.get("context") or "status")
        return Check(name=name, state=state, url=str(node.get("targetUrl") or ""), id=f"status:{name}",
                     conclusion=str(node.get("state") or "")), None
    status, conclusion = node.get("status"), node.get("conclusion")
    if status != "COMPLETED" or conclusion is None:
        state = "pending"
    else:  # STALE too: GitHub gave up on it; it will not pass by waiting (re-run it, or push)
        state = "passing" if conclusion in _RUN_PASSING else "failing"
    url = str(node.get("detailsUrl") or "")
    run_id = node.get("databaseId") if isinstance(node.get("databaseId"), int) else None
    job = run_id if run_id is not None and _ACTIONS_JOB.search(url) else None
    suite = node.get("checkSuite") if isinstance(node.get("checkSuite"), dict) else {}
    run = suite.get("workflowRun") if isinstance(suite.get("workflowRun"), dict) else {}
    workflow = str((run.get("workflow") or {}).get("name") or "") if isinstance(run.get("workflow"), dict) else ""
    name = str(node.get("name") or "check")
    return Check(name=f"{workflow} / {name}" if workflow else name, state=state, url=url,
                 id=str(run_id) if run_id is not None else name, conclusion=str(conclusion or status or "")), job


def comment_of(node: dict, trust: Trust) -> Comment:
    """A review comment, or the body of a review, as a Comment (trusted or not, bot or not)."""
    from ao.templates import clean

    login, bot = _author(node)
    association = str(node.get("authorAssociation") or "NONE")
    return Comment(
        id=str(node.get("id") or ""), author=login or "ghost", body=clean(str(node.get("body") or ""), 20_000),
        association=association, trusted=trust(association, login), bot=bot,
        path=str(node.get("path") or ""), line=node.get("line") if isinstance(node.get("line"), int) else None,
        url=str(node.get("url") or ""))


def thread_comment(thread: dict, trust: Trust) -> Comment | None:
    """The first comment of an unresolved review thread (``None`` for a resolved or empty thread)."""
    if thread.get("isResolved"):
        return None
    first = next(iter(_nodes(thread.get("comments"))), None)
    return comment_of(first, trust) if first is not None else None


def review_of(node: dict, trust: Trust) -> Review | None:
    """A reviewer's latest opinion; None for a dismissed one (no opinion left)."""
    state = _REVIEW_STATES.get(str(node.get("state")))
    if state is None:
        return None
    login, bot = _author(node)
    association = str(node.get("authorAssociation") or "NONE")
    commit = node.get("commit") if isinstance(node.get("commit"), dict) else {}
    return Review(id=str(node.get("id") or ""), author=login or "ghost", state=state,
                  commit=str(commit.get("oid") or ""), trusted=trust(association, login), association=association,
                  bot=bot, url=str(node.get("url") or ""))


@dataclass
class Read:
    """One PR as GraphQL answered: the view plus what decides when to read it again."""

    view: PRView
    updated_at: str
    settled: bool
    jobs: dict[str, int]   # failing check's id -> Actions job id
    no_checks: bool = False  # statusCheckRollup is null: CI is decided by the SCM (has the repository CI?)


def read_pr(branch: str, node: dict, trust: Trust, accept_stale: bool = False) -> Read:
    from ao.merging import review_verdict

    head = str(node.get("headRefOid") or "")
    rollup, commit = _rollup(node)
    checks, jobs = [], {}
    for ctx in _nodes(rollup.get("contexts")) if rollup else []:
        check, job = check_of(ctx)
        checks.append(check)
        if check.state == "failing" and job is not None:
            jobs[check.id] = job
    state = _PR_STATES.get(str(node.get("state")), "closed")
    reviews = [r for n in _nodes(node.get("latestOpinionatedReviews")) if (r := review_of(n, trust)) is not None]
    comments = [c for t in _nodes(node.get("reviewThreads")) if (c := thread_comment(t, trust)) is not None]
    # a request for changes says what to change in its body as often as in line comments: it is a comment too
    comments += [comment_of(n, trust) for n in _nodes(node.get("latestOpinionatedReviews"))
                 if n.get("state") == "CHANGES_REQUESTED" and str(n.get("body") or "").strip()]
    mergeable, merge_state = node.get("mergeable"), node.get("mergeStateStatus")
    if mergeable == "CONFLICTING" or merge_state == "DIRTY":
        mergeability = "conflicting"
    elif mergeable == "MERGEABLE" and merge_state != "UNKNOWN":
        mergeability = "mergeable"
    else:
        mergeability = "unknown"
    view = PRView(
        branch=branch, state=state, number=int(node.get("number") or 0), url=str(node.get("url") or ""),
        head_sha=head, base_branch=str(node.get("baseRefName") or ""), draft=bool(node.get("isDraft")),
        conflicts=mergeability == "conflicting", behind=merge_state == "BEHIND", checks=checks, comments=comments,
        reviews=reviews, mergeability=mergeability, blocked=merge_state == "BLOCKED")
    view.review, view.review_note = review_verdict(reviews, head, decision=str(node.get("reviewDecision") or ""),
                                                   accept_stale=accept_stale)
    partial = [kind for kind in CONNECTIONS if _incomplete(node, kind)]
    if "reviews" in partial and view.review != "changes_requested":
        # a request for changes may sit on a page not read: no approval (and no "no review") from part of a list
        view.review, view.review_note = "pending", (f"the reviews could not all be read ({len(reviews)} so far: the "
                                                    "PR changed between their pages, or they are more than a "
                                                    "cycle reads); read again next cycle")
    short = head[:7]
    if rollup is not None:
        failing = [c for c in checks if c.state == "failing"]
        pending = [c for c in checks if c.state == "pending"]
        oid = str(commit.get("oid") or "")
        if oid and oid != head:
            view.ci, view.ci_note = "pending", f"the checks GitHub reports are for {oid[:7]}, not the head {short}"
        elif failing or rollup.get("state") in ("FAILURE", "ERROR"):
            view.ci = "failing"
            view.ci_note = f"failed on {short}: " + (", ".join(f"{c.name} ({c.conclusion.lower()})" for c in failing)
                                                     or f"GitHub's rollup is {rollup.get('state')}")
        elif rollup.get("state") == "SUCCESS" and not pending:
            view.ci, view.ci_note = "passing", f"all {len(checks)} checks passed on {short}"
        else:
            view.ci = "pending"
            view.ci_note = f"{len(pending) or 'some'} of {len(checks)} checks still running on {short}"
    # what the PR list cannot announce: CI finishing, GitHub finishing its mergeability computation
    # (with no rollup at all, the SCM decides CI and narrows this: GitHubSCM._no_checks)
    settled = state != "open" or ((view.ci != "pending" or rollup is None) and mergeability != "unknown"
                                  and not partial)
    return Read(view, str(node.get("updatedAt") or ""), settled, jobs, no_checks=rollup is None and state == "open")


@dataclass
class Guard:
    """What the conditional PR list said."""

    pulls: dict[str, dict]   # head branch -> {number, updated_at, open} (same-repository PRs only)
    page_full: bool          # the page may not hold every PR
    newest: str              # updated_at of the page's newest and oldest PR (any repository)
    oldest: str
    etag: str
    changed: bool            # False: a 304, nothing on the list changed
    date: float | None       # GitHub's clock (the Date header)


def _duration(settings: dict[str, Any], key: str, default: int) -> float:
    from ao.durations import DurationError, parse_duration

    try:
        value = parse_duration(settings.get(key, default))
    except DurationError as exc:
        raise AoError(f"scm.{key}: {exc}") from None
    if value < 0:
        raise AoError(f"scm.{key} must not be negative")
    return value


def _date(response: httpx.Response) -> float | None:
    from email.utils import parsedate_to_datetime

    try:
        return parsedate_to_datetime(response.headers.get("date", "")).timestamp()
    except (TypeError, ValueError, IndexError):
        return None


def view_from_json(data: dict[str, Any]) -> PRView:
    data = dict(data)
    data["checks"] = [Check(**c) for c in data.get("checks") or []]
    data["comments"] = [Comment(**c) for c in data.get("comments") or []]
    data["reviews"] = [Review(**r) for r in data.get("reviews") or []]
    return PRView(**data)


# ------------------------------------------------------------------------------------------------- SCM


class GitHubSCM:
    """The ``github`` SCM plugin: :meth:`observe` every branch of a project per cycle, :meth:`merge` pinned to
    the observed head, :meth:`comment`. The client (and the token) is made on first use."""

    name = "github"

    def __init__(self, ctx: ScmContext, *, client: GitHubClient | None = None,
                 sleep: Callable[[float], None] = time.sleep, timeout: float = 15.0,
                 poll_interval: float = 30.0) -> None:
        if not ctx.repo or not re.fullmatch(r"[^/\s]+/[^/\s]+", ctx.repo):
            raise AoError(f"project '{ctx.project}': the github SCM needs `repo: owner/name` "
                          f"(got {ctx.repo!r})")
        self.ctx = ctx
        self.owner, self.repo_name = ctx.repo.split("/")
        settings = ctx.settings or {}
        self.base_url = api_urls(settings.get("baseUrl"))[0]  # a bad URL fails here, before any token lookup
        self.merge_method = str(settings.get("mergeMethod") or "squash")
        if self.merge_method not in MERGE_METHODS:
            raise AoError(f"scm.mergeMethod '{self.merge_method}' is not one of {', '.join(MERGE_METHODS)}")
        associations, logins = settings.get("trustedAssociations"), settings.get("trustedLogins") or []
        # an explicit empty list trusts nobody (but the listed logins): their comments go to humans only
        self.trust = Trust(
            frozenset(str(a).upper() for a in (TRUSTED_ASSOCIATIONS if associations is None else associations)),
            frozenset(str(login).lower() for login in logins))
        self.accept_stale = bool(settings.get("staleApprovals", False))
        self.full_refresh = _duration(settings, "fullRefresh", FULL_REFRESH)
        self.no_checks_grace = _duration(settings, "noChecksGrace", NO_CHECKS_GRACE)
        self.clock, self._sleep, self._timeout, self.poll_interval = ctx.clock, sleep, timeout, poll_interval
        self.path = Path(ctx.state_dir) / "github.json"
        self._state = self._load()
        self.rate_limit = RateLimits.from_json(self._state.get("rates"))
        self._client = client
        if client is not None:
            client.rate_limit = self.rate_limit

    @property
    def client(self) -> GitHubClient:
        if self._client is None:
            self._client = GitHubClient(base_url=self.base_url, sleep=self._sleep, clock=self.clock,
                                        timeout=self._timeout, rate_limit=self.rate_limit)
        return self._client

    @property
    def _repo_path(self) -> str:
        """``/repos/OWNER/NAME``, or where GitHub said the repository moved to (``/repositories/ID``) once a
        request followed its 301: one request a cycle again, not two."""
        moved = self._state.get("repo_path")
        return moved if isinstance(moved, str) and moved.startswith("/repositories/") else \
            f"/repos/{quote(self.owner, safe='')}/{quote(self.repo_name, safe='')}"

    def invalidate(self, branches: list[str] | None = None) -> None:
        """A webhook said these branches (None: all) changed: re-read them next cycle whatever the guard
        says (a finished check run does not change the pull request list the guard watches)."""
        views = self._state.get("views") or {}
        for branch in views if branches is None else branches:
            if branch in views:
                views[branch]["settled"] = False

    def backoff(self, now: float | None = None) -> float:
        """Extra seconds the poller should wait before the next cycle, on top of ``poll_interval`` (0 while the
        budget is ample; see :meth:`RateLimits.backoff`)."""
        return self.rate_limit.backoff(self.clock() if now is None else now, self.poll_interval)

    # -- state -------------------------------------------------------------------------------------

    def _load(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}  # none yet, or unreadable: start afresh (it is only a cache)
        if not isinstance(data, dict) or data.get("version") != STATE_VERSION or data.get("repo") != self.ctx.repo \
                or data.get("base") != self.base_url:
            return {"rates": data.get("rates")} if isinstance(data, dict) else {}
        views = data.get("views") if isinstance(data.get("views"), dict) else {}
        for branch, record in list(views.items()):
            try:
                view_from_json(record["view"])
                float(record.get("observed_at") or 0)
                float(record.get("head_seen") or 0)
            except (KeyError, TypeError, ValueError, AttributeError):
                del views[branch]  # an unreadable record is read again from GitHub
        data["views"] = views
        if not isinstance(data.get("logs"), dict):
            data["logs"] = {}
        return data

    def _save(self) -> None:
        from ao.ledger import atomic_write

        self._state.update(version=STATE_VERSION, repo=self.ctx.repo, base=self.base_url,
                           rates=self.rate_limit.to_json())
        atomic_write(self.path, json.dumps(self._state, separators=(",", ":"), sort_keys=True))

    def _moved(self, response: httpx.Response, suffix: str) -> None:
        """Remember where a redirected request under the repository path ended (``/repositories/ID``)."""
        base = urlsplit(self.base_url).path.rstrip("/")
        final = response.url.path
        if response.url.path != f"{base}{self._repo_path}{suffix}" and final.endswith(suffix):
            moved = final[len(base):len(final) - len(suffix)] if final.startswith(base) else ""
            if re.fullmatch(r"/repositories/\d+", moved):
                self._state["repo_path"] = moved

    # -- observe -----------------------------------------------------------------------------------

    def _guard(self) -> Guard:
        """The PR list, asked conditionally: a 304 reuses the stored entries and costs nothing."""
        st = self._state
        stored = st.get("pulls") if isinstance(st.get("pulls"), dict) else None
        etag = st.get("etag") if stored is not None else None
        what = f"GET {self._repo_path}/pulls"
        response = self.client.request("GET", f"{self._repo_path}/pulls", etag=etag, params={
            "state": "all", "sort": "updated", "direction": "desc", "per_page": PAGE})
        self._moved(response, "/pulls")
        if response.status_code == 304 and stored is not None:
            return Guard(stored, bool(st.get("page_full")), str(st.get("newest") or ""), "", str(etag), False,
                         _date(response))
        if response.status_code in (403, 404):
            detail = self.client.message(response)
            raise GitHubError(f"GitHub has no repository {self.ctx.repo}, or the token cannot read it "
                              f"(HTTP {response.status_code} on {what}" + (f": {detail})" if detail else ")"),
                              response.status_code)
        if response.status_code != 200:
            detail = self.client.message(response)
            raise GitHubError(f"GitHub answered {what} with HTTP {response.status_code}"
                              + (f": {detail}" if detail else ""), response.status_code)
        items = self.client.json_of(response, what)
        if not isinstance(items, list):
            raise GitHubError(f"GitHub answered {what} with something that is not a list of PRs")
        pulls: dict[str, dict] = {}
        stamps = []
        for item in items:
            try:
                head, updated = item["head"], str(item["updated_at"])
                entry = {"number": int(item["number"]), "updated_at": updated, "open": item["state"] == "open"}
                head_repo = (head.get("repo") or {}).get("id")
                base_repo = item["base"]["repo"]["id"]
                ref = str(head["ref"])
            except (KeyError, TypeError, ValueError, AttributeError):
                raise GitHubError(f"GitHub answered {what} with a PR entry of an unexpected shape") from None
            stamps.append(updated)
            if head_repo is None or head_repo != base_repo:
                # a fork's branch that happens to share the name (or a deleted fork): not one of our sessions.
                # Ids, not names: a renamed repository keeps its id.
                continue
            # the list is newest first: the first PR of a branch wins, unless a later one is still open
            if ref not in pulls or (entry["open"] and not pulls[ref]["open"]):
                pulls[ref] = entry
        return Guard(pulls, len(items) >= PAGE, max(stamps, default=""), min(stamps, default=""),
                     str(response.headers.get("etag") or ""), True, _date(response))

    def _plan(self, branches: list[str], pulls: dict[str, dict], page_full: bool, covered: bool,
              now: float) -> tuple[list[tuple[str, int | str]], dict[str, str]]:
        """Which PRs to read (``("number", n)`` or ``("branch", b)``) and which branches to (re)use from the
        stored views. ``covered``: every PR changed since the last cycle is on the guard's page."""
        views = self._state.get("views") or {}
        wanted: list[tuple[str, int | str]] = []
        keep: dict[str, str] = {}
        for branch in branches:
            prev = views.get(branch)
            entry = pulls.get(branch)
            stale = prev is not None and prev["view"]["state"] == "open" and (
                not prev.get("settled") or now - float(prev.get("observed_at") or 0) >= self.full_refresh)
            if entry is not None:
                fresh = prev is not None and prev["view"]["number"] == entry["number"] \
                    and prev.get("updated_at") == entry["updated_at"]
                if fresh and not stale:
                    keep[branch] = "unchanged"
                else:
                    wanted.append(("number", entry["number"]))
            elif prev is not None and prev["view"]["number"]:  # a PR that fell off the guard's page
                if covered and not stale:
                    keep[branch] = "unchanged"
                else:
                    wanted.append(("number", prev["view"]["number"]))
            elif not page_full or (prev is not None and covered):
                keep[branch] = "none"  # the page holds every PR (or every new one): this branch has none
            else:
                wanted.append(("branch", branch))
        return wanted, keep

    def observe(self, branches: list[str]) -> dict[str, PRView]:
        """Every branch's PR (``PRView(branch)`` when it has none). Raises a GitHubError (an AoError) when
        GitHub cannot be read; nothing stored changes then, so the next cycle asks again."""
        branches = list(dict.fromkeys(str(b) for b in branches if b))
        if not branches:
            return {}  # nothing to watch: not even the guard
        now = self.clock()
        self.rate_limit.begin_cycle()
        try:
            result = self._observe(branches, now)
        except AoError:
            self._save_rates_only()
            raise
        except (KeyError, TypeError, ValueError, AttributeError) as exc:  # an answer of an unexpected shape
            self._save_rates_only()
            raise GitHubError(f"GitHub's answer about {self.ctx.repo} had an unexpected shape "
                              f"({type(exc).__name__}); the cycle is skipped") from None
        self.rate_limit.end_cycle()
        self._save()
        return result

    def _save_rates_only(self) -> None:
        self.rate_limit.end_cycle()
        try:
            on_disk = json.loads(self.path.read_text(encoding="utf-8"))
            on_disk = on_disk if isinstance(on_disk, dict) else {}
        except (OSError, ValueError):
            on_disk = {}
        from ao.ledger import atomic_write

        on_disk["rates"] = self.rate_limit.to_json()
        atomic_write(self.path, json.dumps(on_disk, separators=(",", ":"), sort_keys=True))

    def _observe(self, branches: list[str], now: float) -> dict[str, PRView]:
        st = self._state
        guard = self._guard()
        pulls, page_full = guard.pulls, guard.page_full
        previous_newest = str(st.get("newest") or "")
        # updated_at only grows: when the page reaches back to what the last cycle had seen, every PR changed
        # since then is on it. Only a burst of more than a page of changes makes us re-read off-page PRs.
        covered = not guard.changed or not page_full or bool(previous_newest and guard.oldest <= previous_newest)
        wanted, keep = self._plan(branches, pulls, page_full, covered, now)
        reads = self._read(wanted)

        views_state = st.get("views") or {}
        new_views: dict[str, dict] = {}
        out: dict[str, PRView] = {}
        by_number = {key: r for (kind, key), r in reads.items() if kind == "number"}
        for branch in branches:
            if keep.get(branch) == "unchanged":
                record = views_state[branch]
                out[branch] = view_from_json(record["view"])
                new_views[branch] = record
                continue
            if keep.get(branch) == "none":
                out[branch] = PRView(branch)
                new_views[branch] = {"view": asdict(out[branch]), "observed_at": now, "settled": True}
                continue
            entry = pulls.get(branch)
            prev = views_state.get(branch) or {}
            number = entry["number"] if entry else prev.get("view", {}).get("number")
            read = by_number.get(number) if number else reads.get(("branch", branch))
            if read is None:  # no such PR (any more), or no PR for the branch
                out[branch] = PRView(branch)
                new_views[branch] = {"view": asdict(out[branch]), "observed_at": now, "settled": True}
                continue
            read.view.branch = branch
            # when ao first saw this head: the grace period for "no checks" counts from here (never earlier
            # than the push, whatever GitHub's clock or the commit's dates say)
            head_seen = float(prev["head_seen"]) if prev.get("head") == read.view.head_sha and prev.get("head_seen") \
                else now
            if read.no_checks:
                self._no_checks(read, now - head_seen, now)
            self._attach_logs(read, now)
            out[branch] = read.view
            updated = entry["updated_at"] if entry else read.updated_at
            # updated_at has whole seconds: a change later in the second we read in would keep the list (and
            # its ETag) as it is, so a PR read that close to its last change is read once more
            recent = guard.date is not None and (parse_time(updated) or 0) >= guard.date - 1
            new_views[branch] = {"view": asdict(read.view), "observed_at": now, "settled": read.settled and not recent,
                                 "updated_at": updated, "head": read.view.head_sha, "head_seen": head_seen}
        heads = {v.head_sha for v in out.values() if v.head_sha}
        st["logs"] = {k: v for k, v in (st.get("logs") or {}).items() if k.split(":")[0] in heads}
        st.update(views=new_views, pulls=pulls, page_full=page_full, newest=max(guard.newest, previous_newest),
                  etag=guard.etag)
        return out

    def _read(self, wanted: list[tuple[str, int | str]]) -> dict[tuple[str, Any], Read]:
        """Batched GraphQL: one query per :data:`BATCH` PRs, then the next pages of any review, thread or check
        list longer than a page (all of them, in as few queries as there are pages)."""
        nodes: dict[tuple[str, Any], dict] = {}
        wanted = list(dict.fromkeys(wanted))
        for start in range(0, len(wanted), BATCH):
            chunk = wanted[start:start + BATCH]
            query, variables = batch_query(chunk)
            repo = self._repository(query, variables)
            for i, (kind, key) in enumerate(chunk):
                if kind == "number":
                    node = repo.get(f"p{i}")
                    if isinstance(node, dict):
                        nodes[(kind, key)] = node
                    continue
                found = [n for n in _nodes(repo.get(f"b{i}")) if n.get("isCrossRepository") is False]
                node = next((n for n in found if n.get("state") == "OPEN"), found[0] if found else None)
                if node is not None:
                    nodes[(kind, key)] = node
        self._more_pages(list(nodes.values()))
        return {key: read_pr(str(key[1]) if key[0] == "branch" else "", node, self.trust, self.accept_stale)
                for key, node in nodes.items()}

    def _repository(self, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        data, _errors = self.client.graphql(query, {"owner": self.owner, "name": self.repo_name, **variables})
        repo = data.get("repository")
        if not isinstance(repo, dict):
            raise GitHubError(f"GitHub has no repository {self.ctx.repo} (or the token cannot see it)")
        return repo

    def _more_pages(self, prs: list[dict]) -> None:
        """Fetch the rest of every connection that said ``hasNextPage`` and append it to its PR's node."""
        for _ in range(MORE_ROUNDS):
            wanted = []
            for pr in prs:
                for kind in CONNECTIONS:
                    page = _page(pr, kind)
                    info = page.get("pageInfo") if page else None
                    if isinstance(info, dict) and info.get("hasNextPage") and info.get("endCursor"):
                        wanted.append((pr, kind, str(info["endCursor"])))
            if not wanted:
                return
            for start in range(0, len(wanted), BATCH):
                chunk = wanted[start:start + BATCH]
                query, variables = more_query([(int(pr["number"]), kind, cursor) for pr, kind, cursor in chunk])
                repo = self._repository(query, variables)
                for i, (pr, kind, _cursor) in enumerate(chunk):
                    node = repo.get(f"m{i}")
                    more = _page(node, kind) if isinstance(node, dict) else None
                    page = _page(pr, kind)
                    if page is None:
                        continue
                    if more is None or any(node.get(k) != pr.get(k) for k in ("updatedAt", "headRefOid")):
                        # the PR (or its head commit) changed meanwhile: its pages no longer fit together, and
                        # what was read is not the whole list (read_pr: not settled, no approval from it)
                        page["incomplete"] = True
                        page["pageInfo"] = {"hasNextPage": False}
                        continue
                    page["nodes"] = _nodes(page) + _nodes(more)
                    page["pageInfo"] = more.get("pageInfo") or {"hasNextPage": False}
        # the rounds ran out: a page still saying hasNextPage is incomplete (read_pr)

    def _no_checks(self, read: Read, waited: float, now: float) -> None:
        """CI of a head with no check and no status at all (``statusCheckRollup: null``): pending if the
        repository has CI (its checks have not started yet) or the push is younger than ``noChecksGrace``;
        ``none``, settled, only for a repository that provably has no CI once the grace has passed."""
        from ao.durations import format_duration

        view, short = read.view, read.view.head_sha[:7]
        has_ci, why = self._has_ci(now)
        if has_ci:
            view.ci, view.ci_note = "pending", f"no check has reported on {short} yet, and the repository has CI ({why})"
            read.settled = read.settled and waited >= NO_CHECKS_WATCH  # then only webhooks and full refreshes
        elif waited < self.no_checks_grace:
            view.ci = "pending"
            view.ci_note = (f"no check on {short} yet; the repository shows no CI ({why}), so this settles "
                            f"{format_duration(int(self.no_checks_grace))} after the push (scm.noChecksGrace)")
            read.settled = False
        else:
            view.ci = "none"
            view.ci_note = (f"the repository has no CI ({why}), and no check reported on {short} within "
                            f"{format_duration(int(self.no_checks_grace))} of the push")

    def _has_ci(self, now: float) -> tuple[bool, str]:
        """Whether the repository has CI: an active workflow, or a check or status on any of the recent commits
        of its default branch or of its recently updated PRs. "Yes" is kept for an hour; "no" is asked again
        whenever it matters (once per cycle at most). Anything that cannot be told counts as "yes"."""
        cached = self._state.get("has_ci") if isinstance(self._state.get("has_ci"), dict) else {}
        at = float(cached.get("at") or 0)
        if cached and (at == now or (cached.get("value") and now - at < HAS_CI_TTL)):
            return bool(cached["value"]), str(cached.get("why") or "")
        value, why = self._ask_has_ci()
        self._state["has_ci"] = {"value": value, "why": why, "at": now}
        return value, why

    def _ask_has_ci(self) -> tuple[bool, str]:
        st = self._state
        suffix = "/actions/workflows"
        response = self.client.request("GET", f"{self._repo_path}{suffix}", params={"per_page": 100},
                                       etag=st.get("workflows_etag") if isinstance(st.get("workflows"), list) else None)
        if response.status_code == 200:
            body = self.client.json_of(response, f"GET {suffix}")
            flows = body.get("workflows") if isinstance(body, dict) else None
            if not isinstance(flows, list):
                return True, "GitHub's list of workflows had an unexpected shape, so CI is assumed"
            st["workflows"] = [str(w.get("name") or w.get("path") or "?") for w in flows
                               if isinstance(w, dict) and w.get("state") == "active"]
            st["workflows_etag"] = str(response.headers.get("etag") or "")
        elif response.status_code == 404:
            st["workflows"] = []  # Actions turned off for the repository: no workflow can run
            st.pop("workflows_etag", None)
        elif response.status_code != 304:
            return True, f"cannot list its workflows (HTTP {response.status_code}), so CI is assumed"
        active = st.get("workflows") or []
        if active:
            return True, f"active workflow {active[0]!r}" + (f" and {len(active) - 1} more" if len(active) > 1 else "")
        repo = self._repository(CI_EVIDENCE_QUERY, {})
        target = ((repo.get("defaultBranchRef") or {}).get("target") or {})
        commits = [n for n in _nodes(target.get("history")) if n.get("statusCheckRollup")]
        prs = [n for n in _nodes(repo.get("pullRequests")) if _rollup(n)[0] is not None]
        if commits or prs:
            where = "recent commits of the default branch" if commits else "recently updated PRs"
            return True, f"checks on {where}"
        return False, (f"no active workflow, and no check on the {CI_EVIDENCE_COMMITS} latest commits of the "
                       f"default branch or the {CI_EVIDENCE_COMMITS} latest PRs")

    def _attach_logs(self, read: Read, now: float) -> None:
        """Log tails of failing Actions checks, by check run id (names repeat across workflows): fetched once
        per head SHA and run, then cached; a failed fetch is not fatal (no tail; tried again after
        ``fullRefresh``)."""
        from ao.templates import LOG_CAP, clean

        logs = self._state.setdefault("logs", {})
        for check in read.view.checks:
            job = read.jobs.get(check.id)
            if job is None:
                continue
            key = f"{read.view.head_sha}:{job}"
            cached = logs.get(key)
            if isinstance(cached, dict) and (cached.get("ok") or now < float(cached.get("retry_at") or 0)):
                check.log_tail = str(cached.get("tail") or "")
                continue
            try:
                text = self.client.download_tail(f"{self._repo_path}/actions/jobs/{job}/logs")
            except RateLimited:
                raise
            except GitHubError:
                logs[key] = {"ok": False, "tail": "", "retry_at": now + self.full_refresh}
                continue
            check.log_tail = clean(_LOG_TIMESTAMP.sub("", text), LOG_CAP, tail=True).strip("\n")
            logs[key] = {"ok": True, "tail": check.log_tail}

    # -- actions -----------------------------------------------------------------------------------

    def merge(self, view: PRView, method: str | None = None) -> str:
        """Re-read the PR, refuse if it moved on, then merge with ``view.head_sha`` pinned (GitHub refuses with
        409 if the head changes in between). Returns the merge commit's sha."""
        method = method or self.merge_method
        if method not in MERGE_METHODS:
            raise MergeError(f"unknown merge method '{method}'; use one of {', '.join(MERGE_METHODS)}")
        if not view.number or not view.head_sha:
            raise MergeError(f"branch {view.branch} has no observed PR to merge")
        where = f"PR #{view.number} ({self.ctx.repo})"
        path = f"{self._repo_path}/pulls/{view.number}"
        try:
            pr = self.client.rest("GET", path)
            head = str(pr["head"]["sha"])
            state, merged = pr.get("state"), bool(pr.get("merged"))
        except (KeyError, TypeError):
            raise MergeError(f"{where}: GitHub's answer had an unexpected shape; not merged") from None
        except GitHubError as exc:
            raise MergeError(f"{where}: cannot re-read it before merging: {exc}") from None
        if head != view.head_sha:
            raise MergeError(f"{where} was pushed to since it was observed (head {view.head_sha[:7]} is now "
                             f"{head[:7]}); not merged, the next cycle will look at the new commits")
        if merged:  # a merge whose answer was lost: done, with the pinned head
            return str(pr.get("merge_commit_sha") or "")
        if state != "open":
            raise MergeError(f"{where} is {state}; not merged")
        if pr.get("draft"):
            raise MergeError(f"{where} is a draft; not merged")
        if pr.get("mergeable") is False:
            raise MergeError(f"{where} is not mergeable ({pr.get('mergeable_state') or 'conflicts'}); not merged")
        try:
            response = self.client.request("PUT", f"{path}/merge", json={"sha": view.head_sha, "merge_method": method})
        except GitHubError as exc:
            raise MergeError(f"{where}: merge request failed: {exc}") from None
        if response.status_code == 200:
            body = self.client.json_of(response, "the merge")
            if isinstance(body, dict) and body.get("merged") is not False:
                return str(body.get("sha") or "")
        detail = self.client.message(response) or f"HTTP {response.status_code}"
        if response.status_code == 409:
            raise MergeError(f"{where} changed while merging (GitHub: {detail}); not merged")
        if response.status_code == 405:
            raise MergeError(f"{where} cannot be merged (GitHub: {detail})")
        raise MergeError(f"{where} was not merged (GitHub, HTTP {response.status_code}: {detail})")

    def comment(self, view: PRView, text: str) -> None:
        if not view.number:
            raise AoError(f"branch {view.branch} has no PR to comment on")
        self.client.rest("POST", f"{self._repo_path}/issues/{view.number}/comments", ok=(201,),
                         json={"body": text[:65_000]})


def plugin(ctx: ScmContext, **options: Any) -> GitHubSCM:
    return GitHubSCM(ctx, **options)
