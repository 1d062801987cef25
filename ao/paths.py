"""Where ao finds its data folders (rules/, schemas/, templates/, examples/, docs/) and where it keeps state."""

from __future__ import annotations

import functools
import os
from pathlib import Path

_PKG = Path(__file__).resolve().parent


@functools.cache
def data_folder(name: str) -> Path:
    """The built-in ``rules``, ``schemas`` or ``templates`` folder.

    An installed wheel carries them inside the package (``ao/_data``); a source checkout keeps them at the
    top level of the repository, beside the package.
    """
    installed = _PKG / "_data" / name
    if installed.is_dir():
        return installed
    return _PKG.parent / name


def doc(name: str) -> Path:
    """A page of ao's docs (``sandbox.md``), as a full path: an installed wheel carries them under
    ``ao/_data/docs``, so an error message can point at a file the user really has."""
    return data_folder("docs") / name


def xdg_config_home() -> Path:
    return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")


def xdg_cache_home() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")


STATE_ROOT = ".agent-orchestrator"


def data_dir_for(config_file: Path | str) -> Path:
    """The data dir of a config that sets none: ``~/.agent-orchestrator/<folder>-<hash>``, one per config file.

    Two repositories, each with its own ``ao config init``, so never share state, locks or tmux names. The
    hash is of the config file's resolved path (the folder name is only there to be readable): moving the
    file starts a new data dir, so a config that moves should set ``dataDir:`` to keep its sessions.
    """
    import hashlib
    import re

    resolved = Path(config_file).expanduser().resolve()
    digest = hashlib.sha256(str(resolved).encode()).hexdigest()[:8]
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", resolved.parent.name).strip("-.") or "config"
    return Path.home() / STATE_ROOT / f"{name}-{digest}"
