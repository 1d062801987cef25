"""The environment of everything ao starts that runs code it did not write: agents, ``postCreate`` commands and
the local SCM's CI command (COORDINATION interface 1).

ao's own environment holds its secrets (notifier tokens, the webhook HMAC secret, ``GITHUB_TOKEN``, an SMTP
password...). An agent reads untrusted issue text and CI runs code the agent pushed, so neither inherits it:
each gets a *complete* environment built here from an allowlist of names that carry no secret, plus the names
a config adds explicitly (``passEnv``, top level and per project), plus ao's own session variables.
Runtimes pass it as the whole environment (tmux: ``env -i`` reading the values from a 0600 file, never a
command line; the process runtime: ``env=``; docker: an ``--env-file`` of these only).
"""

from __future__ import annotations

import os
import re
from typing import Any, Iterable, Mapping

# What a terminal program needs to run as the user would run it, and nothing secret: locale, terminal, paths,
# identity for git commits. SSH_AUTH_SOCK lets an agent push with the user's SSH agent (a capability, not a
# readable secret); the proxy variables let it reach the network where a proxy is required.
ALLOWED = (
    "PATH", "HOME", "USER", "LOGNAME", "SHELL", "TERM", "COLORTERM", "TERMINFO", "TERMINFO_DIRS",
    "LANG", "LANGUAGE", "LC_*", "TZ", "TMPDIR", "EDITOR", "VISUAL", "PAGER",
    "XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_RUNTIME_DIR",
    "GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL", "EMAIL",
    "SSH_AUTH_SOCK", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy",
    "AO_TMUX_SOCKET",
)
NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\*?$")  # passEnv entries: a name, or a prefix ending in *


def pass_names(config: Any, project: Any | None = None) -> list[str]:
    """The names a config adds to the allowlist: top-level ``passEnv``, then the project's."""
    names = list((getattr(config, "data", None) or {}).get("passEnv") or [])
    if project is not None:
        names += list((getattr(project, "raw", None) or {}).get("passEnv") or [])
    return names


def allowed_environment(extra_names: Iterable[str] = (), env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The variables of ``env`` (default: ao's own) whose names are allowlisted or in ``extra_names``."""
    env = os.environ if env is None else env
    patterns = [*ALLOWED, *extra_names]
    exact = {p for p in patterns if not p.endswith("*")}
    prefixes = tuple(p[:-1] for p in patterns if p.endswith("*"))
    return {k: v for k, v in env.items() if k in exact or (prefixes and k.startswith(prefixes))}


def agent_environment(config: Any, project: Any, session_vars: Mapping[str, str],
                      env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The complete environment of an agent process (and of the project's ``postCreate`` commands)."""
    out = allowed_environment(pass_names(config, project), env)
    out.setdefault("PATH", os.defpath)
    out.setdefault("TERM", "xterm-256color")
    out.update(session_vars)
    return out


def ci_environment(extra_names: Iterable[str] = (), ci_vars: Mapping[str, str] | None = None,
                   env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The complete environment of a CI command: the allowlist, the config's names, ``CI=true`` and the job's."""
    out = allowed_environment(extra_names, env)
    out.setdefault("PATH", os.defpath)
    out.pop("SSH_AUTH_SOCK", None)  # CI runs code the agent pushed: it pushes nothing
    out.update({"CI": "true", **(ci_vars or {})})
    return out
