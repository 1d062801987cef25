"""Plugins: one module per plugin under ``ao/plugins/<slot>/`` (runtime, workspace, agent, tracker, scm).

Each slot's ``__init__`` defines the interface (a ``Protocol`` plus the records it passes) and ``get(name)``,
which imports the one plugin module asked for, so a command pays only for the plugins it uses. Plugins do
I/O; they never call the engine and never touch the session store: :mod:`ao.sessions` wires them together.
"""

from __future__ import annotations

import importlib
from typing import Any

from ao.errors import AoError, did_you_mean


def load(slot: str, name: str, modules: dict[str, str], **options: Any) -> Any:
    """Instantiate plugin ``name`` of ``slot``: ``modules`` maps plugin names to module names in the slot."""
    if name not in modules:
        raise AoError(f"unknown {slot} plugin '{name}'{did_you_mean(name, modules)}; available: {', '.join(modules)}")
    module = importlib.import_module(f"ao.plugins.{slot}.{modules[name]}")
    return module.plugin(**options)
