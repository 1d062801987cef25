"""Where ao finds its data folders (rules/, schemas/, templates/) and where it keeps state."""

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


def xdg_config_home() -> Path:
    return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")


def default_data_dir() -> Path:
    """``$AO_HOME``, else ``~/.agent-orchestrator`` (SPEC section 2)."""
    home = os.environ.get("AO_HOME")
    return Path(home).expanduser() if home else Path.home() / ".agent-orchestrator"
