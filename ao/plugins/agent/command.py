"""The generic agent (SPEC 8): ``agentConfig.command`` is run as written, and the prompt is typed in once it
is up (``promptDelivery: send``, the default) or not at all (``none``). Tests and demos use it.

Also home to the small command-line helpers the specific agents share.
"""

from __future__ import annotations

import json
import os
import re
import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ao.agentfiles import open_regular, read_regular
from ao.errors import AoError
from ao.plugins.agent import BaseAgent, LaunchContext

PERMISSIONS = ("default", "skip", "auto-edit", "plan")
DELIVERIES = ("send", "none")
# Linux refuses one argument longer than 128 KiB (MAX_ARG_STRLEN) with E2BIG: a larger prompt goes in as a
# short instruction to read it from a file in the workspace (git-ignored) instead.
ARG_LIMIT = 100_000
LARGE_PROMPT = ".ao-prompt.md"


def large_prompt(prompt: str, workspace: Path) -> str:
    """Put a prompt too long to type or pass as an argument in a git-ignored file in the workspace (written
    without following a link the agent may have put there) and say where it is."""
    from ao.ledger import atomic_write

    path = workspace / LARGE_PROMPT
    atomic_write(path, prompt)
    exclude(workspace, LARGE_PROMPT)
    return (f"Your instructions are too long for a command line, so they are in the file {path}. "
            "Read that file first and follow it.")


def prompt_argument(prompt_file: Path, workspace: Path | None = None) -> str:
    """``"$(cat '/path/prompt.md')"``: the launch script's shell reads the prompt file into one argument, so
    the prompt (issue text included) never becomes part of a command line ao writes. A prompt too large
    for one argument is copied into the workspace and the argument says where it is."""
    try:
        size = prompt_file.lstat().st_size
    except OSError:
        size = 0
    if size > ARG_LIMIT and workspace is not None:
        try:
            prompt = read_regular(prompt_file).decode("utf-8", "replace")
        except OSError as exc:
            raise AoError(f"{prompt_file}: cannot read the prompt: {exc.strerror or exc}") from None
        return shlex.quote(large_prompt(prompt, workspace))
    return f'"$(cat {shlex.quote(str(prompt_file))})"'


def exclude(workspace: Path, pattern: str) -> None:
    """Add ``pattern`` to the repository's ``info/exclude`` (shared by its worktrees), so files an agent
    keeps in the workspace never show as changes and are never committed. Best effort: not a git folder,
    nothing to do.

    The workspace's ``.git`` is the agent's to rewrite, and may point at any repository on this machine: ao
    writes only into the workspace's own git folder (a clone), or into the repository that holds this
    worktree's record: a ``worktrees/<name>`` folder of that repository itself (not one whose ``commondir``
    points elsewhere) whose ``gitdir`` names this workspace back. Forging that needs write access to the
    repository, which is then within the agent's reach anyway."""
    from ao import git
    from ao.agentfiles import within

    try:
        gitdir, common_dir = git.run(["rev-parse", "--absolute-git-dir", "--git-common-dir"], cwd=workspace,
                                     untrusted=True).splitlines()[:2]
    except (AoError, ValueError):
        return
    common = Path(common_dir) if Path(common_dir).is_absolute() else workspace / common_dir
    path = common / "info" / "exclude"
    own_record = os.path.realpath(common) == os.path.realpath(Path(gitdir).parent.parent) \
        and _names_back(Path(gitdir), workspace)
    if not (within(workspace, path) or own_record):
        return
    try:
        text = read_regular(path).decode("utf-8", "replace")
        if pattern not in text.splitlines():
            from ao.ledger import atomic_write

            atomic_write(path, text + ("" if not text or text.endswith("\n") else "\n") + pattern + "\n")
    except (OSError, AoError):
        pass


def _names_back(gitdir: Path, workspace: Path) -> bool:
    """Whether a worktree's git dir is this workspace's: its ``gitdir`` file names the workspace's ``.git``."""
    try:
        named = read_regular(gitdir / "gitdir").decode("utf-8", "replace").strip()
    except OSError:
        return False
    return bool(named) and os.path.realpath(named) == os.path.realpath(workspace / ".git")


def read_new_lines(path: Path, offset: int, cap: int = 8 << 20) -> tuple[list[dict[str, Any]], int]:
    """The JSON objects on the complete lines of ``path`` after byte ``offset`` (at most ``cap`` bytes),
    and the offset to read on from. A half-written last line is left for next time; other lines that are
    not JSON objects are skipped."""
    try:
        with open_regular(path) as f:
            size = f.seek(0, 2)
            if size < offset:
                offset = 0  # replaced or truncated: read it again from the start
            f.seek(offset)
            data = f.read(min(size - offset, cap))
    except OSError:
        return [], offset
    end = data.rfind(b"\n") + 1
    out = []
    for raw in data[:end].split(b"\n"):
        if not raw.strip():
            continue
        try:
            value = json.loads(raw)
        except ValueError:
            continue
        if isinstance(value, dict):
            out.append(value)
    return out, offset + end


def same_text(received: Any, sent: str) -> bool:
    """Whether what an agent recorded is the text ao sent (after the cleaning a send applies; terminals and
    agents change line ends and trailing spaces, so whitespace runs compare equal)."""
    if not isinstance(received, str):
        return False
    from ao.templates import clean

    def norm(text: str) -> str:
        return " ".join(clean(text, len(text) + 1).split())

    return norm(received) == norm(sent)


def iso_time(value: Any) -> float | None:
    """Epoch seconds of an ISO 8601 timestamp ("2026-12-03T06:40:50.257Z"), None if it is not one."""
    from datetime import datetime

    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def update_json(path: Path, change: Callable[[dict[str, Any]], None]) -> None:
    """Read-modify-write a JSON object file that another program also writes (an agent's own state file):
    atomically, keeping its mode, and only if it did not change while we worked (else try again)."""
    from ao.ledger import atomic_write

    for _ in range(5):
        try:
            before = read_regular(path)
            data = json.loads(before) if before.strip() else {}
        except (OSError, ValueError) as exc:
            raise AoError(f"{path}: cannot read it as JSON ({exc}); not changing it") from None
        if not isinstance(data, dict):
            raise AoError(f"{path}: not a JSON object; not changing it")
        change(data)
        after = json.dumps(data, indent=2) + "\n"
        if json.loads(before or b"{}") == data:
            return
        try:
            current = read_regular(path)
            mode = path.lstat().st_mode & 0o777 if current else 0o600
        except OSError:
            continue  # replaced meanwhile; the next round reads what is there now
        if current != before:
            continue  # the agent wrote it meanwhile: start again from its version
        atomic_write(path, after, mode)
        return
    raise AoError(f"{path} keeps changing; could not update it")


_VERSION = re.compile(r"(\d+)\.(\d+)(?:\.(\d+))?")
_versions: dict[tuple[str, float], str | None] = {}


def installed_version(program: str) -> str | None:
    """The version of an agent CLI on PATH, read from its package (npm's package.json, a Python
    distribution's metadata) without starting it; ``--version`` only when neither is there. Cached per
    executable and mtime."""
    import shutil

    exe = shutil.which(program)
    if exe is None:
        return None
    real = Path(os.path.realpath(exe))
    try:
        key = (str(real), real.stat().st_mtime)
    except OSError:
        return None
    if key not in _versions:
        _versions[key] = _package_version(real) or _run_version(exe)
    return _versions[key]


def _package_version(real: Path) -> str | None:
    for folder in list(real.parents)[:4]:
        manifest = folder / "package.json"
        if manifest.is_file():
            try:
                version = json.loads(manifest.read_text(encoding="utf-8")).get("version")
            except (OSError, ValueError, AttributeError):
                return None
            return version if isinstance(version, str) else None
    venv = real.parent.parent  # <venv>/bin/aider
    for dist in venv.glob("lib/python*/site-packages/*.dist-info"):
        if dist.name.startswith(real.name.split(".")[0].replace("-", "_")):
            match = _VERSION.search(dist.name)
            if match:
                return match.group(0)
    return None


def _run_version(exe: str) -> str | None:
    import subprocess

    try:
        out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=10,
                             stdin=subprocess.DEVNULL).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = _VERSION.search(out)
    return match.group(0) if match else None


def version_at_least(version: str | None, minimum: tuple[int, int], unknown: bool = True) -> bool:
    """Whether ``version`` is ``minimum`` or newer; ``unknown`` when it cannot be read (by default the benefit
    of the doubt: signals are still checked as they are read; a launch flag an old CLI would refuse is not)."""
    match = _VERSION.search(version or "")
    if match is None:
        return unknown
    return (int(match.group(1)), int(match.group(2))) >= minimum


def join(argv: Sequence[str]) -> str:
    return " ".join(shlex.quote(a) for a in argv)


def permission_flags(agent: str, settings: Mapping[str, Any], flags: Mapping[str, Sequence[str]]) -> list[str]:
    """The flags for ``agentConfig.permissions``; a mode the agent has no flag for adds nothing."""
    mode = settings.get("permissions") or "default"
    if mode not in PERMISSIONS:
        raise AoError(f"agentConfig.permissions '{mode}' is not one of {', '.join(PERMISSIONS)} (agent {agent})")
    return list(flags.get(mode, ()))


def model_flags(settings: Mapping[str, Any], flag: str = "--model") -> list[str]:
    model = settings.get("model")
    return [flag, str(model)] if model else []


@dataclass
class CommandAgent(BaseAgent):
    name: str = "command"

    def prompt_delivery(self, settings: dict[str, Any]) -> str:
        delivery = settings.get("promptDelivery") or "send"
        if delivery not in DELIVERIES:
            raise AoError(f"agentConfig.promptDelivery '{delivery}' is not one of {', '.join(DELIVERIES)}")
        return delivery

    def launch_command(self, ctx: LaunchContext) -> str:
        command = ctx.settings.get("command")
        if not isinstance(command, str) or not command.strip():
            raise AoError("agent 'command' needs agentConfig.command: the shell command line that starts the agent")
        # The user's own shell line, run as written; resuming runs it again (it has no conversation to continue).
        return command


def plugin(**options: Any) -> CommandAgent:
    return CommandAgent(**options)
