"""Validation against ao's JSON Schemas, with every error placed at a file position."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from ao import paths
from ao.errors import Problem, did_you_mean
from ao.yamlsrc import Source


@functools.lru_cache(maxsize=None)
def load(name: str) -> dict[str, Any]:
    return json.loads((paths.data_folder("schemas") / name).read_text(encoding="utf-8"))


@functools.lru_cache(maxsize=None)
def _validator(name: str) -> Any:
    import jsonschema

    schema = load(name)
    cls = jsonschema.validators.validator_for(schema)
    return cls(schema)


def problems_for(src: Source, data: Any, name: str, root: tuple = ()) -> list[Problem]:
    """Every schema error in ``data`` (which sits at ``root`` inside ``src``), clearest message first.

    Data that validated once is remembered (:func:`_known_valid`): every command loads the config, and
    importing jsonschema and validating costs more than the rest of a quick command like ``ao status``."""
    key = _key(name, data)
    if key is not None and _known_valid(key):
        return []
    problems: set[Problem] = set()
    for error in _validator(name).iter_errors(data):
        for leaf in _leaves(error):
            problems.update(_describe(src, leaf, root))
    if not problems and key is not None:
        _remember_valid(key)
    return sorted(problems)


def _cache_dir() -> Path:
    return paths.xdg_cache_home() / "ao" / "valid"


def _key(name: str, data: Any) -> str | None:
    """A digest of the schema, ao's version and the data: the same key can only mean the same verdict."""
    import hashlib

    from ao import __version__

    try:
        text = json.dumps(data, sort_keys=True, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError):
        return None  # not plain JSON data: always validate
    schema = (paths.data_folder("schemas") / name).read_bytes()
    return hashlib.sha256(b"\0".join([__version__.encode(), name.encode(), schema, text.encode()])).hexdigest()


def _known_valid(key: str) -> bool:
    return (_cache_dir() / key).exists()


CACHE_ENTRIES = 500  # verdicts kept; past this the folder starts afresh (a miss costs one validation)


def _remember_valid(key: str) -> None:
    import os
    import shutil

    try:
        folder = _cache_dir()
        if folder.is_dir() and sum(1 for _ in os.scandir(folder)) >= CACHE_ENTRIES:
            shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / key).touch()
    except OSError:  # a read-only home: validate every time, that is all
        pass


def _leaves(error: Any) -> list[Any]:
    """For an if/then/allOf wrapper, the errors inside it; they point at the real mistake."""
    if error.validator in ("allOf", "then", "anyOf", "oneOf") and error.context:
        if error.validator in ("anyOf", "oneOf"):
            # Show the alternative that got furthest, rather than "is not valid under any of".
            best = max(error.context, key=lambda e: (len(e.absolute_path), -len(e.schema_path)))
            return _leaves(best) if len(best.absolute_path) > len(error.absolute_path) else [error]
        return [leaf for e in error.context for leaf in _leaves(e)]
    return [error]


def _describe(src: Source, error: Any, root: tuple) -> list[Problem]:
    path = root + tuple(error.absolute_path)
    schema = error.schema if isinstance(error.schema, dict) else {}
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = list((schema.get("properties") or {}).keys())
        extra = [k for k in error.instance if k not in allowed]
        out = []
        for key in extra:
            out.append(src.problem(path + (key,), f"unknown key '{key}'{did_you_mean(key, allowed)}", key=True))
        return out
    if error.validator == "required":
        missing = error.message.split("'")[1] if error.message.count("'") >= 2 else ""
        choices = ((schema.get("properties") or {}).get(missing) or {}).get("enum")
        text = f"'{missing}' is required" + (f" (one of: {', '.join(map(str, choices))})" if choices else "")
        return [src.problem(path, text, key=bool(path))]
    if "propertyNames" in error.relative_schema_path:  # jsonschema reports the failing name at its parent
        return [src.problem(path + (str(error.instance),), f"invalid name {error.instance!r}: must match "
                                                          f"{schema.get('pattern', '')}", key=True)]
    if error.validator == "enum":
        choices = ", ".join(str(c) for c in error.validator_value)
        hint = did_you_mean(error.instance, error.validator_value)
        return [src.problem(path, f"{error.instance!r} is not one of: {choices}{hint}")]
    if "x-error" in schema and error.validator in ("pattern", "minimum", "type"):
        return [src.problem(path, f"{schema['x-error']} (got {error.instance!r})")]
    if error.validator == "type":
        wanted = error.validator_value
        wanted = " or ".join(wanted) if isinstance(wanted, list) else wanted
        got = _kind(error.instance) + ("" if error.instance is None else f" {error.instance!r}")
        return [src.problem(path, f"expected {wanted}, got {got}")]
    if error.validator == "minimum":
        return [src.problem(path, f"must be at least {error.validator_value} (got {error.instance!r})")]
    if error.validator == "minProperties" and error.validator_value == 1:
        return [src.problem(path, "must not be empty")]
    return [src.problem(path, error.message)]


def _kind(value: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean", int: "an integer",
            float: "a number", type(None): "nothing"}.get(type(value), type(value).__name__)
