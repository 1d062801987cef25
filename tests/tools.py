"""External tools some test tiers need (real agent CLIs, dockerd, Chromium), installed by ``.ci/setup.d/``.

Locally a missing tool skips its tests with the command that installs it; under CI (``CI`` set) it fails
them instead, so a tier can never pass CI by silently not running.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

TOOLS = Path(os.environ.get("AO_TOOLS") or Path.home() / ".cache" / "ao-tools")


def require(path_or_name: str | Path | None, what: str, install: str) -> None:
    """Skip (locally) or fail (CI) unless ``path_or_name`` names something that exists."""
    import shutil

    found = path_or_name is not None and (Path(path_or_name).exists() or shutil.which(str(path_or_name)))
    if found:
        return
    message = f"{what} is not installed; {install}"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)
