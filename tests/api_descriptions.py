"""The published API descriptions our fakes are held to (tests/api/, see tests/api/README.md), loaded once.

- :func:`github_schema` and :func:`linear_schema`: GitHub's and Linear's GraphQL schemas, for graphql-core to
  validate and execute queries against.
- :class:`RestDescription`: the REST operations ao uses, from GitHub's OpenAPI description; it matches a request
  to its operation, validates its parameters and body, completes a fake's partial answer into a full object of
  the described shape, and validates the answer. Validation is openapi-schema-validator's (jsonschema with
  OpenAPI 3.0's ``nullable``, ``readOnly``/``writeOnly`` and formats), never ours.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

API = Path(__file__).resolve().parent / "api"
_MISSING: Any = object()


@lru_cache(maxsize=1)
def github_schema() -> Any:
    """GitHub's SDL as published. It defines ``EnterpriseOwnerInfo.repositoryDeployKeySetting`` twice and has
    ids deprecated on types whose interface does not deprecate them, which graphql-core's strict SDL checks
    refuse; GitHub serves it as it is, so we take it as valid (``assume_valid``) rather than edit it."""
    from graphql import build_schema

    return build_schema((API / "github" / "schema.graphql").read_text(encoding="utf-8"), assume_valid_sdl=True,
                        assume_valid=True)


@lru_cache(maxsize=1)
def linear_schema() -> Any:
    from graphql import build_schema

    return build_schema((API / "linear" / "schema.graphql").read_text(encoding="utf-8"))


def graphql_errors(errors: list[Any]) -> list[dict[str, Any]]:
    """graphql-core errors as a GraphQL server writes them (``type`` at the top level, as GitHub does)."""
    out = []
    for error in errors:
        item = error.formatted
        original = getattr(error, "original_error", None)
        if getattr(original, "type", None):
            item["type"] = original.type
        if getattr(original, "extensions", None):
            item["extensions"] = original.extensions
        out.append(item)
    return out


class ResolverError(Exception):
    """Raised by a fake's resolver: becomes a GraphQL error with GitHub's ``type`` (NOT_FOUND...) or Linear's
    ``extensions``."""

    def __init__(self, message: str, type: str = "", extensions: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.type, self.extensions = type, extensions


def connection(items: list[Any], args: dict[str, Any], limit: int = 100) -> dict[str, Any]:
    """A Relay connection page of ``items`` for ``first/after`` or ``last/before`` (cursors are positions)."""
    first, last, after, before = (args.get(k) for k in ("first", "last", "after", "before"))
    start = int(after.removeprefix("c")) + 1 if after else 0
    end = int(before.removeprefix("c")) if before else len(items)
    window = list(range(start, min(end, len(items))))
    if first is not None:
        window = window[:first]
    if last is not None:
        window = window[-last:] if last else []
    page = [items[i] for i in window]
    return {"nodes": page, "edges": [{"cursor": f"c{i}", "node": items[i]} for i in window],
            "totalCount": len(items),
            "pageInfo": {"hasNextPage": bool(window) and window[-1] < min(end, len(items)) - 1,
                         "hasPreviousPage": bool(window) and window[0] > start,
                         "startCursor": f"c{window[0]}" if window else None,
                         "endCursor": f"c{window[-1]}" if window else None}}


# ---------------------------------------------------------------------------------------------- REST


@dataclass
class Operation:
    method: str
    template: str
    spec: dict[str, Any]
    pattern: re.Pattern = field(init=False)

    def __post_init__(self) -> None:
        self.pattern = re.compile(re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(self.template)) + "$")

    @property
    def parameters(self) -> dict[tuple[str, str], dict[str, Any]]:
        return {(p["in"], p["name"]): p for p in self.spec.get("parameters", [])}


class Invalid(Exception):
    """A request the description does not allow: the fake answers 400/422 with the message."""


def _coerce(text: str, schema: dict[str, Any]) -> Any:
    kind = schema.get("type")
    try:
        if kind == "integer":
            return int(text)
        if kind == "number":
            return float(text)
    except ValueError:
        return text  # the validator says it is not a number
    if kind == "boolean":
        return {"true": True, "false": False}.get(text, text)
    return text


def _nullable_enums(node: Any) -> None:
    """OpenAPI 3.0.3: "``nullable: true`` adds null to the allowed values", enums included. GitHub relies on it
    (``state_reason: null`` on an open issue, with an enum of reasons); the validator checks ``enum`` as JSON
    Schema does, without null. So null is added to such enums, as the specification says it is."""
    if isinstance(node, dict):
        if node.get("nullable") and isinstance(node.get("enum"), list) and None not in node["enum"]:
            node["enum"] = [*node["enum"], None]
        for value in node.values():
            _nullable_enums(value)
    elif isinstance(node, list):
        for value in node:
            _nullable_enums(value)


class RestDescription:
    """GitHub's REST operations ao uses (``tests/api/github/rest-openapi.json``)."""

    def __init__(self) -> None:
        data = json.loads((API / "github" / "rest-openapi.json").read_text(encoding="utf-8"))
        _nullable_enums(data)
        self.operations = [Operation(method.upper(), template, spec)
                           for template, methods in data["paths"].items() for method, spec in methods.items()]
        self._validators: dict[tuple[int, str], Any] = {}
        self._valid: set[tuple[int, str]] = set()
        self._examples: dict[int, Any] = {}

    def match(self, method: str, path: str) -> tuple[Operation | None, dict[str, str], bool]:
        """(the operation, its path parameters, whether the path exists for another method)."""
        known = False
        for op in self.operations:
            m = op.pattern.match(path)
            if m:
                known = True
                if op.method == method:
                    return op, m.groupdict(), True
        return None, {}, known

    def _validator(self, schema: dict[str, Any], direction: str) -> Any:
        from openapi_schema_validator import OAS30ReadValidator, OAS30WriteValidator, oas30_format_checker

        key = (id(schema), direction)
        if key not in self._validators:
            kind = OAS30ReadValidator if direction == "read" else OAS30WriteValidator
            self._validators[key] = kind(schema, format_checker=oas30_format_checker)
        return self._validators[key]

    def problems(self, schema: dict[str, Any], value: Any, direction: str) -> list[str]:
        """What is wrong with ``value`` against ``schema`` (memoised: a fake answers the same objects often)."""
        text = json.dumps(value, sort_keys=True)
        key = (id(schema), hashlib.sha256(text.encode()).hexdigest())
        if key in self._valid:
            return []
        errors = [f"{'/'.join(str(p) for p in e.absolute_path) or '(top)'}: {e.message[:300]}"
                  for e in self._validator(schema, direction).iter_errors(value)]
        if not errors:
            self._valid.add(key)
        return errors

    def check_request(self, op: Operation, path_params: dict[str, str], query: list[tuple[str, str]],
                      body: Any) -> None:
        """Raises :class:`Invalid` for a parameter or body the operation does not describe or allow. Beyond the
        description (which lets a server ignore unknown query parameters and body keys), an unknown one is refused
        too: ao sending it would be a bug."""
        params = op.parameters
        for name, value in path_params.items():
            spec = params[("path", name)]
            self._raise(self.problems(spec["schema"], _coerce(value, spec["schema"]), "write"), f"path parameter {name}")
        seen = set()
        for name, value in query:
            spec = params.get(("query", name))
            if spec is None:
                raise Invalid(f"{op.spec['operationId']} has no query parameter '{name}'")
            if name in seen:
                raise Invalid(f"query parameter '{name}' given twice")
            seen.add(name)
            self._raise(self.problems(spec["schema"], _coerce(value, spec["schema"]), "write"), f"query parameter {name}")
        for (where, name), spec in params.items():
            if where == "query" and spec.get("required") and name not in seen:
                raise Invalid(f"query parameter '{name}' is required")
        request = op.spec.get("requestBody")
        if request is None:
            if body is not None:
                raise Invalid(f"{op.spec['operationId']} takes no body")
            return
        if body is None:
            if request.get("required"):
                raise Invalid("a body is required")
            return
        schema = request["content"]["application/json"]["schema"]
        self._raise(self.problems(schema, body, "write"), "body")
        if isinstance(body, dict) and "properties" in schema:
            unknown = sorted(set(body) - set(schema["properties"]))
            if unknown:
                raise Invalid(f"{op.spec['operationId']} has no body field {unknown}")

    @staticmethod
    def _raise(problems: list[str], what: str) -> None:
        if problems:
            raise Invalid(f"invalid {what}: {problems[0]}")

    def response_schema(self, op: Operation, status: int) -> tuple[bool, dict[str, Any] | None]:
        """(whether the description lists ``status`` for the operation, the JSON schema of its body)."""
        answer = op.spec["responses"].get(str(status))
        if answer is None:
            return False, None
        content = (answer.get("content") or {}).get("application/json")
        return True, (content or {}).get("schema")

    # -- full answers from partial ones --------------------------------------------------------------

    def complete(self, schema: dict[str, Any], value: Any = _MISSING) -> Any:
        """``value`` with every field the schema requires and ``value`` lacks filled in with a plain value of its
        type (null where the schema allows it): fakes give the fields ao reads, the description the rest."""
        if "allOf" in schema:
            merged: dict[str, Any] = {"type": "object", "properties": {}, "required": []}
            for part in schema["allOf"]:
                part = self._merged(part)
                merged["properties"].update(part.get("properties", {}))
                merged["required"] += [r for r in part.get("required", []) if r not in merged["required"]]
            return self.complete({**{k: v for k, v in schema.items() if k != "allOf"}, **merged}, value)
        for key in ("oneOf", "anyOf"):
            if key in schema:
                if value is _MISSING:
                    return None if schema.get("nullable") else self.complete(schema[key][0])
                if value is None:
                    return None
                for option in schema[key]:
                    try:
                        candidate = self.complete(option, value)
                    except (TypeError, AttributeError):
                        continue
                    if not self.problems(option, candidate, "read"):
                        return candidate
                return value  # nothing fits: the validator will say why
        if value is None:
            return None
        if value is _MISSING:
            if id(schema) not in self._examples:
                self._examples[id(schema)] = self._example(schema)
            return copy.deepcopy(self._examples[id(schema)])
        if isinstance(value, dict) and (schema.get("type") == "object" or "properties" in schema):
            props = schema.get("properties", {})
            out = {k: self.complete(props[k], v) if k in props else v for k, v in value.items()}
            for name in schema.get("required", []):
                if name not in out:
                    out[name] = self.complete(props.get(name, {}))
            return out
        if isinstance(value, list) and "items" in schema:
            return [self.complete(schema["items"], v) for v in value]
        return value

    def _merged(self, schema: dict[str, Any]) -> dict[str, Any]:
        if "allOf" not in schema:
            return schema
        props, required = {}, []
        for part in schema["allOf"]:
            part = self._merged(part)
            props.update(part.get("properties", {}))
            required += part.get("required", [])
        return {"type": "object", "properties": props, "required": required}

    def _example(self, schema: dict[str, Any]) -> Any:
        if schema.get("nullable"):
            return None
        if "enum" in schema:
            return schema["enum"][0]
        kind = schema.get("type")
        if kind == "object" or "properties" in schema:
            props = schema.get("properties", {})
            return {name: self.complete(props.get(name, {})) for name in schema.get("required", [])}
        if kind == "array":
            return []
        if kind == "string":
            return {"date-time": "2026-01-01T00:00:00Z", "uri": "https://api.github.com/", "date": "2026-01-01",
                    "email": "octocat@github.com", "uri-template": "https://api.github.com/"}.get(
                        schema.get("format", ""), "")
        if kind in ("integer", "number"):
            return max(0, schema.get("minimum", 1))
        if kind == "boolean":
            return False
        return {}


@lru_cache(maxsize=1)
def github_rest() -> RestDescription:
    return RestDescription()
