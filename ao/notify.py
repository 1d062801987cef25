"""Notifiers (SPEC 7): a notifier's config as an Apprise URL, the :class:`Notification` record, and sending
one notification to one notifier.

Every plugin except ``webhook`` and ``log`` is delivered through Apprise, from the URL that
:func:`apprise_url` builds; the builders are pure string code (no Apprise import), so ``ao config validate``
checks every notifier's keys quickly, and the same code path builds the URL that is really used.

``webhook`` is posted with httpx rather than Apprise's ``json://``: Apprise's JSON plugin sends its own
envelope (version, title, message, type, attachments), and integrations need ours (id, type, priority,
session, project, title, body, pr_url, timestamp), with the notification id as an idempotency key.
``log`` writes to the console and ``<dataDir>/logs/orchestrator.log``; the outbox adds the event.

Queueing, concurrency, timeouts and retries are the outbox's business (:mod:`ao.outbox`); a
:class:`Notifier` only makes one attempt and raises :class:`DeliveryError` when it fails.

Secrets: notifier values usually come from ``${ENV}``. They are never put in an error message, and
:func:`secret_fragments` lists every form in which they could still show up (inside the Apprise URL, a
token cut out of a webhook URL, URL-quoted) so events and logs can scrub them.
"""

from __future__ import annotations

import functools
import hashlib
import re
import secrets as secrets_mod
import sys
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

from ao import events
from ao.durations import DurationError, parse_duration
from ao.errors import Problem

if TYPE_CHECKING:
    from ao.actions import Action
    from ao.config import Config
    from ao.yamlsrc import Source

PLUGINS = ("desktop", "slack", "discord", "webhook", "email", "ntfy", "telegram", "teams", "apprise", "log")
BUILTIN = ("desktop", "log")  # usable by name without a notifiers: entry (SPEC 7)
DEFAULT_TIMEOUT = 10.0  # seconds, per notifier and attempt; `timeout:` overrides
PRIORITY_DEFAULT = "info"
# Apprise's notification types colour and label the message; our priorities map onto them.
_APPRISE_TYPES = {"urgent": "failure", "action": "info", "warning": "warning", "info": "info"}
_NTFY_PRIORITIES = {"urgent": "max", "action": "high", "warning": "default", "info": "low"}
# HTTP statuses worth retrying; any other 4xx means the request itself is wrong and will stay wrong.
_RETRYABLE_4XX = {408, 425, 429}


class NotifierConfigError(ValueError):
    """A notifier's settings cannot work. ``key`` is the offending key ('' for the notifier itself)."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key
        self.message = message


class DeliveryError(Exception):
    """One attempt failed. ``permanent``: retrying cannot help (bad settings, service unavailable here)."""

    def __init__(self, message: str, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


# ------------------------------------------------------------------------------------------ notification

@dataclass(frozen=True)
class Notification:
    """What a human is told, and where to. ``type`` is the reaction key, ``escalation`` or ``test``."""

    id: str
    type: str
    priority: str
    session: str | None
    project: str | None
    title: str
    body: str
    pr_url: str | None
    timestamp: float
    notifiers: tuple[str, ...]

    def payload(self) -> dict[str, Any]:
        """The JSON a ``webhook`` notifier posts."""
        return {"id": self.id, "type": self.type, "priority": self.priority, "session": self.session,
                "project": self.project, "title": self.title, "body": self.body, "pr_url": self.pr_url,
                "timestamp": events.iso(self.timestamp)}

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["notifiers"] = list(self.notifiers)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Notification":
        return cls(**{**data, "notifiers": tuple(data["notifiers"])})


def notification_id(project: str, session: str | None, reaction: str, occurrence: str, kind: str,
                    budget: int = 0) -> str:
    """Deterministic: the same decision, taken again (say after a crash before the ledger was saved), gets
    the same id, and the outbox does not queue it twice. ``budget`` (when the ledger budget began) tells a
    situation that cleared and came back apart from a repeat, so the return is not dropped as a duplicate."""
    key = "\x1f".join([project, session or "", reaction, occurrence, kind, str(budget)])
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]


def routed(names: Iterable[str]) -> tuple[str, ...]:
    """Each name once, in order; never nowhere."""
    return tuple(dict.fromkeys(names)) or ("log",)


def from_action(action: "Action", now: float) -> Notification:
    """The notification of a ``notify`` or ``escalate`` action (the engine has rendered and routed it)."""
    kind = "escalation" if action.action == "escalate" else action.reaction
    return Notification(
        id=notification_id(action.project, action.session, action.reaction, action.occurrence, action.action,
                           action.budget),
        type=kind, priority=action.priority or PRIORITY_DEFAULT, session=action.session, project=action.project,
        title=action.title, body=action.text, pr_url=(action.fact or {}).get("pr_url") or None, timestamp=now,
        notifiers=routed(action.notifiers))


def build_test_notification(priority: str, notifiers: Iterable[str], now: float,
                            project: str | None = None) -> Notification:
    """``ao notify test``: rendered from ``templates/test-notification.md.j2``; a fresh id each time."""
    from ao import templates

    text = templates.render_named("test-notification.md.j2", {"project_id": project or "", "priority": priority})
    title, body = templates.split_title(text)
    return Notification(id=f"test-{int(now)}-{secrets_mod.token_hex(4)}", type="test", priority=priority,
                        session=None, project=project, title=title, body=body, pr_url=None, timestamp=now,
                        notifiers=routed(notifiers))


# ---------------------------------------------------------------------------------------- Apprise URLs

_SLACK = re.compile(r"^https?://hooks\.slack\.com/services/([A-Za-z0-9]+)/([A-Za-z0-9]+)/([A-Za-z0-9]+)/?$")
_SLACK_NATIVE = re.compile(r"^https?://hooks\.slack-gov\.com/services/[A-Za-z0-9]+/[A-Za-z0-9]+/[A-Za-z0-9]+/?$"
                           r"|^https?://hooks\.slack\.com/(?:workflows|triggers)/[A-Za-z0-9][A-Za-z0-9/_-]+/?(?:\?.+)?$")
_DISCORD = re.compile(r"^https?://discord(?:app)?\.com/api/webhooks/([0-9]+)/([A-Za-z0-9_-]+)/?$")
# Apprise 2 dropped the Office 365 connector plugin (Microsoft retired those webhooks); Teams is reached
# through a Workflows (Power Automate) webhook, which Apprise parses from its https URL.
_TEAMS = re.compile(r"^https?://[A-Za-z0-9_.-]+(?::[1-9][0-9]{0,4})?"
                    r"(?:/powerautomate/automations/direct(?:/cu/[0-9]+)?)?"
                    r"/workflows/[A-Za-z0-9_-]+/triggers/manual/paths/invoke/?\?.+$")
_TEAMS_LEGACY = re.compile(r"^https?://([a-z0-9-]+\.)?(webhook\.office\.com|outlook\.office(365)?\.com)/", re.I)
_TELEGRAM_TOKEN = re.compile(r"^[0-9]+:[A-Za-z0-9_-]+$")
_TELEGRAM_CHAT = re.compile(r"^(-?[0-9]+|@[A-Za-z0-9_]{4,})$")
_NTFY_TOPIC = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_EMAIL = re.compile(r"^[^@\s,]+@[^@\s,]+\.[A-Za-z]{2,}$")
_HOST = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$|^\[[0-9A-Fa-f:.]+\]$")

Issues = list[tuple[str, str]]  # (key, message)


def desktop_urls(platform: str | None = None) -> tuple[str, ...]:
    """The Apprise desktop services to try on this platform, best first."""
    platform = platform or sys.platform
    if platform == "darwin":
        return ("macosx://",)
    if platform.startswith("win"):
        return ("windows://",)
    return ("dbus://", "glib://", "gnome://", "kde://")


def _q(value: Any) -> str:
    return quote(str(value), safe="")


def _http_url(value: Any, key: str, issues: Issues) -> Any:
    parts = urlsplit(str(value))
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        issues.append((key, f"{key} has an invalid port"))
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        issues.append((key, f"{key} must be an http(s) URL with a host"))
        return None
    return parts


def _slack(cfg: Mapping[str, Any], issues: Issues) -> str | None:
    hook = str(cfg.get("webhook", ""))
    m = _SLACK.match(hook)
    if m:
        user = f"{_q(cfg['username'])}@" if cfg.get("username") else ""
        channel = f"/{_q(cfg['channel'])}" if cfg.get("channel") else ""
        return f"slack://{user}{m.group(1)}/{m.group(2)}/{m.group(3)}{channel}"
    if _SLACK_NATIVE.match(hook):  # workflow, trigger and government webhooks: Apprise reads them as they are
        for key in ("channel", "username"):
            if cfg.get(key):
                issues.append((key, f"{key} only works with an incoming webhook "
                                    "(https://hooks.slack.com/services/T.../B.../...)"))
        return hook
    issues.append(("webhook", "webhook must be a Slack incoming webhook URL: "
                              "https://hooks.slack.com/services/T.../B.../..."))
    return None


def _discord(cfg: Mapping[str, Any], issues: Issues) -> str | None:
    m = _DISCORD.match(str(cfg.get("webhook", "")))
    if not m:
        issues.append(("webhook", "webhook must be a Discord webhook URL: https://discord.com/api/webhooks/ID/TOKEN"))
        return None
    user = f"{_q(cfg['username'])}@" if cfg.get("username") else ""
    return f"discord://{user}{m.group(1)}/{m.group(2)}"


def _teams(cfg: Mapping[str, Any], issues: Issues) -> str | None:
    hook = str(cfg.get("webhook", ""))
    if _TEAMS.match(hook):
        return hook
    if _TEAMS_LEGACY.match(hook):
        issues.append(("webhook", "Microsoft retired Office 365 connector webhooks; add a Teams 'Workflows' "
                                  "webhook and use its URL (…/workflows/ID/triggers/manual/paths/invoke?…)"))
    else:
        issues.append(("webhook", "webhook must be a Teams Workflows (Power Automate) webhook URL: "
                                  "https://HOST/workflows/ID/triggers/manual/paths/invoke?api-version=…&sig=…"))
    return None


def _webhook(cfg: Mapping[str, Any], issues: Issues) -> str | None:
    parts = _http_url(cfg.get("url", ""), "url", issues)
    for header in cfg.get("headers") or {}:
        if not re.match(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$", str(header)):
            issues.append(("headers", f"'{header}' is not a valid HTTP header name"))
    if parts is None:
        return None
    # What Apprise would use (its JSON plugin); delivery posts our own payload with httpx instead.
    scheme = "jsons" if parts.scheme == "https" else "json"
    return f"{scheme}://{parts.netloc}{parts.path}" + (f"?{parts.query}" if parts.query else "")


def _email(cfg: Mapping[str, Any], issues: Issues) -> str | None:
    host, _, port = str(cfg.get("smtp", "")).partition(":")
    if not _HOST.match(host):
        issues.append(("smtp", "smtp must be a host name or host:port (no scheme, no path)"))
    if port and not (port.isdigit() and 0 < int(port) < 65536):
        issues.append(("smtp", "the port in smtp must be a number from 1 to 65535"))
    to = cfg.get("to")
    to = [to] if isinstance(to, str) else list(to or [])
    for i, address in enumerate(to):
        if not _EMAIL.match(str(address).strip()):
            issues.append(("to", f"to: address {i + 1} is not an e-mail address"))
    sender = cfg.get("from")
    user = cfg.get("username")
    if sender is not None and not _EMAIL.match(str(sender)):
        issues.append(("from", "from must be an e-mail address"))
    if sender is None and not (user and _EMAIL.match(str(user))):
        issues.append(("from", "set from: (the sender address); it can only be left out when username is one"))
    if cfg.get("password") and not user:
        issues.append(("password", "password needs a username"))
    secure = cfg.get("secure", "starttls")
    if issues:
        return None
    scheme = "mailto" if secure == "none" else "mailtos"
    port = port or {"ssl": "465", "starttls": "587", "none": "25"}[secure]
    auth = ""
    if user:
        auth = _q(user) + (f":{_q(cfg['password'])}" if cfg.get("password") else "") + "@"
    query = {"to": ",".join(str(a).strip() for a in to), "from": str(sender or user),
             "mode": {"ssl": "ssl", "starttls": "starttls", "none": "insecure"}[secure], "smtp": host}
    return f"{scheme}://{auth}{host}:{port}?" + urlencode(query, quote_via=quote, safe="@,")


def _ntfy(cfg: Mapping[str, Any], issues: Issues) -> str | None:
    topic = str(cfg.get("topic", ""))
    if not _NTFY_TOPIC.match(topic):
        issues.append(("topic", "topic must be 1 to 64 letters, digits, '-' or '_'"))
    parts = _http_url(cfg.get("server", "https://ntfy.sh"), "server", issues)
    if parts is not None and parts.path.strip("/"):
        issues.append(("server", "server must be scheme://host[:port], without a path"))
    if issues:
        return None
    scheme = "ntfys" if parts.scheme == "https" else "ntfy"
    query = {"format": "markdown"}
    if cfg.get("token"):
        query.update(auth="token", token=str(cfg["token"]))
    return f"{scheme}://{parts.netloc}/{topic}?" + urlencode(query, quote_via=quote, safe="")


def _telegram(cfg: Mapping[str, Any], issues: Issues) -> str | None:
    token, chat = str(cfg.get("token", "")), str(cfg.get("chatId", ""))
    if not _TELEGRAM_TOKEN.match(token):
        issues.append(("token", "token must be a bot token from @BotFather: DIGITS:LETTERS"))
    if not _TELEGRAM_CHAT.match(chat):
        issues.append(("chatId", "chatId must be a chat id (a number, negative for groups) or a @channel name"))
    return None if issues else f"tgram://{token}/{_q(chat)}"


def _raw(cfg: Mapping[str, Any], issues: Issues) -> str | None:
    url = str(cfg.get("url", ""))
    if not re.match(r"^[A-Za-z0-9+.-]+://", url):
        issues.append(("url", "url must be an Apprise URL (scheme://...)"))
        return None
    return url


_BUILDERS = {"slack": _slack, "discord": _discord, "teams": _teams, "webhook": _webhook, "email": _email,
             "ntfy": _ntfy, "telegram": _telegram, "apprise": _raw}


def _build(name: str, cfg: Mapping[str, Any]) -> tuple[str | None, Issues]:
    plugin = cfg.get("plugin", name)
    issues: Issues = []
    if plugin not in PLUGINS:
        return None, [("plugin", f"unknown notifier plugin '{plugin}'")]
    if "timeout" in cfg:
        try:
            if parse_duration(cfg["timeout"]) < 1:
                issues.append(("timeout", "timeout must be at least 1s"))
        except DurationError as exc:
            issues.append(("timeout", str(exc)))
    if plugin == "log":
        return None, issues
    if plugin == "desktop":
        return desktop_urls()[0], issues
    return _BUILDERS[plugin](cfg, issues), issues


def apprise_url(name: str, notifier_cfg: Mapping[str, Any]) -> str | None:
    """The Apprise URL of a notifier; None for ``log``, which is not an Apprise service. For ``webhook``
    it is the equivalent ``json(s)://`` URL, although delivery posts our own payload (see module doc).
    Raises :class:`NotifierConfigError` for settings that cannot work; never with a value in the message."""
    url, issues = _build(name, notifier_cfg)
    if issues:
        raise NotifierConfigError(*issues[0])
    return url


def config_problems(src: "Source", notifiers: Mapping[str, Any]) -> list[Problem]:
    """Every notifier setting that cannot work, positioned, for ``ao config validate``."""
    problems = []
    for name, cfg in notifiers.items():
        for key, message in _build(name, cfg)[1]:
            path = ("notifiers", name, key) if key in cfg else ("notifiers", name)
            problems.append(src.problem(path, f"notifier '{name}': {message}"))
    return problems


def timeout_of(cfg: Mapping[str, Any]) -> float:
    try:
        return float(parse_duration(cfg["timeout"])) if "timeout" in cfg else DEFAULT_TIMEOUT
    except DurationError:
        return DEFAULT_TIMEOUT


def settings_for(config: "Config", name: str) -> dict[str, Any] | None:
    """A notifier's settings: its notifiers: entry, or the built-in plugin of that name; None if unknown."""
    if name in config.notifiers:
        return dict(config.notifiers[name])
    if name in BUILTIN:
        return {"plugin": name}
    return None


# ------------------------------------------------------------------------------------------------ secrets

def _looks_secret(part: str) -> bool:
    """A token-like piece of a secret (not 'services', 'webhooks' or 'Bearer')."""
    return len(part) >= 8 and (any(c.isdigit() for c in part) or sum(c.isupper() for c in part) >= 2
                               or len(part) >= 16)


def secret_fragments(values: Iterable[str]) -> set[str]:
    """Every form in which secret values can appear in derived text: whole, URL-quoted, and the token-like
    pieces of a secret URL (Apprise URLs rearrange them: slack://A/B/C from .../services/A/B/C)."""
    out: set[str] = set()
    for value in values:
        if not value:
            continue
        pieces = {value}
        if "://" in value:
            parts = urlsplit(value)
            pieces.update(parts.path.split("/"))
            pieces.update(p for p in (parts.username, parts.password) if p)
            pieces.update(x for pair in parse_qsl(parts.query) for x in pair)
        else:
            pieces.update(re.split(r"[/:@?&=,;\s]+", value))
        for piece in pieces:
            if piece == value or _looks_secret(piece):
                out.update({piece, _q(piece)})
    return {s for s in out if len(s) >= 4}


def secrets_of(config: "Config") -> set[str]:
    return secret_fragments(config.secrets())


# ------------------------------------------------------------------------------------------------ sending

@functools.cache
def _apprise() -> Any:
    """Apprise, imported on first use (it takes a few hundred ms). Its log records are kept from the root
    logger: they can name hosts, and what a human needs is in our own events and log lines."""
    import logging
    import warnings

    # Apprise 2.2 imports the deprecated imghdr when it loads plugins: not ours to report
    warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"apprise(\.|$)")
    import apprise

    logger = logging.getLogger("apprise")
    logger.propagate = False
    logger.addHandler(logging.NullHandler())
    return apprise


def _with_timeouts(url: str, timeout: float) -> str:
    """Apprise's connect and read timeouts (``cto``/``rto``) for URL-scheme services, unless set."""
    if url.startswith(("http://", "https://")) or "://" not in url:
        return url  # native webhook URLs: their query belongs to the service
    parts = urlsplit(url)
    have = {k for k, _ in parse_qsl(parts.query)}
    extra = {k: f"{timeout:g}" for k in ("cto", "rto") if k not in have}
    if not extra:
        return url
    return url + ("&" if parts.query else ("?" if not url.endswith("?") else "")) + urlencode(extra)


def _apprise_error(result: Any, plugin: str) -> str:
    logs = getattr(result, "logs", None)
    messages = []
    if callable(logs):
        for entry in logs():
            level = str(getattr(entry, "level", ""))
            if level in ("WARNING", "ERROR", "CRITICAL") or level.isdigit() and int(level) >= 30:
                messages.append(str(getattr(entry, "message", entry)))
    status = getattr(getattr(result, "status", None), "name", "")
    text = "; ".join(dict.fromkeys(messages)) or f"Apprise reported {status.lower() or 'a failure'}"
    return f"{plugin}: {text}"


@functools.cache
def _notify_takes_timeout() -> bool:
    import inspect

    return "timeout" in inspect.signature(_apprise().Apprise.notify).parameters


@dataclass
class Notifier:
    """One configured notifier. :meth:`send` makes one attempt, within about ``timeout`` seconds."""

    name: str
    plugin: str
    settings: dict[str, Any]
    timeout: float = DEFAULT_TIMEOUT
    data_dir: Path | None = None
    console: Any = events.STDERR
    secrets: frozenset[str] = frozenset()
    _client: Any = field(default=None, repr=False)
    _client_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def send(self, n: Notification) -> None:
        if self.plugin == "log":
            self._send_log(n)
        elif self.plugin == "webhook":
            self._send_webhook(n)
        else:
            self._send_apprise(n)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    # -- log ---------------------------------------------------------------------------------------

    def _send_log(self, n: Notification) -> None:
        if self.data_dir is None:
            raise DeliveryError("the log notifier needs a data dir", permanent=True)
        where = f" {n.session}" if n.session and n.session not in n.title else ""  # titles usually name it
        link = f" {n.pr_url}" if n.pr_url else ""
        events.log(self.data_dir, f"[{n.priority}]{where} {n.title}{link}", detail=n.body, console=self.console,
                   secrets=self.secrets)

    # -- webhook -----------------------------------------------------------------------------------

    def _http(self) -> Any:
        with self._client_lock:  # one pooled client per notifier, shared by the outbox's worker threads
            if self._client is None:
                import httpx

                from ao import __version__

                self._client = httpx.Client(timeout=httpx.Timeout(self.timeout), follow_redirects=False,
                                            headers={"User-Agent": f"ao/{__version__}"})
            return self._client

    def _send_webhook(self, n: Notification) -> None:
        import httpx

        url = str(self.settings.get("url", ""))
        headers = {str(k): str(v) for k, v in (self.settings.get("headers") or {}).items()}
        headers.setdefault("Idempotency-Key", n.id)  # retries carry the same key: receivers can deduplicate
        try:
            response = self._http().post(url, json=n.payload(), headers=headers)
        except httpx.TimeoutException:
            raise DeliveryError(f"webhook: no answer within {self.timeout:g}s") from None
        except httpx.HTTPError as exc:  # never the URL: it may hold a token
            reason = str(exc) or type(exc).__name__
            raise DeliveryError(f"webhook: {type(exc).__name__}: {reason}") from None
        if 200 <= response.status_code < 300:
            return
        # scrubbed before it is cut: a cut could leave a piece of a secret that no longer matches it
        detail = " ".join(events.scrub(response.text[:4000], self.secrets).split())[:200]
        code = response.status_code
        permanent = 400 <= code < 500 and code not in _RETRYABLE_4XX
        raise DeliveryError(f"webhook: HTTP {code} {response.reason_phrase}" + (f": {detail}" if detail else ""),
                            permanent=permanent)

    # -- Apprise -----------------------------------------------------------------------------------

    def _send_apprise(self, n: Notification) -> None:
        apprise = _apprise()
        try:
            url = apprise_url(self.name, {**self.settings, "plugin": self.plugin})
        except NotifierConfigError as exc:
            raise DeliveryError(f"{self.plugin}: {exc.message}", permanent=True) from None
        if self.plugin == "ntfy":  # ntfy has priorities of its own: urgent ones ring, info ones stay quiet
            url = f"{url}&priority={_NTFY_PRIORITIES.get(n.priority, 'default')}"
        candidates = desktop_urls() if self.plugin == "desktop" else (_with_timeouts(str(url), self.timeout),)
        # A fresh Apprise object per attempt: its plugin objects keep state and are not documented as
        # thread-safe, and the outbox sends from several threads.
        target = apprise.Apprise()
        if not any(target.add(candidate) for candidate in candidates):
            if self.plugin == "desktop":
                raise DeliveryError("desktop notifications are not available on this machine (Apprise found no "
                                    "working desktop service: " + ", ".join(candidates) + ")", permanent=True)
            raise DeliveryError(f"{self.plugin}: Apprise cannot use this notifier's URL", permanent=True)
        kwargs: dict[str, Any] = {"body": n.body or n.title, "title": n.title,
                                  "notify_type": _APPRISE_TYPES.get(n.priority, "info"),
                                  "body_format": apprise.NotifyFormat.MARKDOWN}
        if _notify_takes_timeout():
            kwargs["timeout"] = self.timeout
        result = target.notify(**kwargs)
        if not result:
            raise DeliveryError(_apprise_error(result, self.plugin))


def build_notifiers(config: "Config", data_dir: Path | None = None, console: Any = events.STDERR,
                    secrets: Iterable[str] | None = None) -> dict[str, Notifier]:
    """Every notifier the config can route to: its notifiers: entries and the built-in desktop and log."""
    secret_set = frozenset(secrets_of(config) if secrets is None else secrets)
    out = {}
    for name in [*config.notifiers, *(b for b in BUILTIN if b not in config.notifiers)]:
        cfg = settings_for(config, name) or {}
        out[name] = Notifier(name=name, plugin=cfg.get("plugin", name), settings=cfg, timeout=timeout_of(cfg),
                             data_dir=data_dir or config.data_dir, console=console, secrets=secret_set)
    return out
