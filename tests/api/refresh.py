"""Re-extract the pinned API descriptions the fakes are held to (tests/api/README.md says what and why).

Usage: python tests/api/refresh.py [--check]

Downloads, with ``npm pack`` (the npm registry's ordinary client), the pinned versions below and writes:

- ``github/schema.graphql``: GitHub's GraphQL SDL from ``@octokit/graphql-schema``, as published;
- ``github/rest-openapi.json``: the REST operations ao uses (:data:`REST_OPERATIONS`), each with its parameters,
  request body and responses, from ``@octokit/openapi``'s dereferenced ``api.github.com`` description (OpenAPI
  3.0.3; every ``$ref`` already inlined, so the subset stands alone);
- ``linear/schema.graphql``: Linear's GraphQL schema as SDL, converted from the TypeScript declarations that
  ``@linear/sdk`` generates from it (the package does not ship the SDL itself; see :func:`linear_sdl`);
- each package's license next to what came from it, and ``SOURCES.json`` (packages, versions, sha512).

``--check`` rebuilds everything in a temporary folder and exits 1 if it differs from what is committed.
To move to newer versions, change the pins below, run this script, run the tests, and commit the result.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent

GITHUB_GRAPHQL = ("@octokit/graphql-schema", "15.26.1")
GITHUB_OPENAPI = ("@octokit/openapi", "23.0.2")
LINEAR_SDK = ("@linear/sdk", "98.0.0")

# (method, path template) of every REST call ao makes (ao/plugins/scm/github.py, ao/plugins/tracker/github.py)
REST_OPERATIONS = [
    ("get", "/repos/{owner}/{repo}/pulls"),
    ("get", "/repos/{owner}/{repo}/pulls/{pull_number}"),
    ("put", "/repos/{owner}/{repo}/pulls/{pull_number}/merge"),
    ("get", "/repos/{owner}/{repo}/issues"),
    ("get", "/repos/{owner}/{repo}/issues/{issue_number}"),
    ("patch", "/repos/{owner}/{repo}/issues/{issue_number}"),
    ("post", "/repos/{owner}/{repo}/issues/{issue_number}/comments"),
    ("get", "/repos/{owner}/{repo}/issues/{issue_number}/dependencies/blocked_by"),
    ("get", "/repos/{owner}/{repo}/actions/jobs/{job_id}/logs"),
    ("get", "/repos/{owner}/{repo}/actions/workflows"),
]


def npm_pack(spec: tuple[str, str], into: Path) -> tuple[Path, str]:
    """The unpacked package folder and its sha512 integrity."""
    name, version = spec
    out = subprocess.run(["npm", "pack", "--json", f"{name}@{version}"], cwd=into, capture_output=True, text=True,
                         check=True).stdout
    info = json.loads(out)[0]
    folder = into / re.sub(r"\W", "_", name)
    folder.mkdir()
    with tarfile.open(into / info["filename"]) as tar:
        tar.extractall(folder, filter="data")
    return folder / "package", info["integrity"]


def rest_subset(description: dict) -> dict:
    paths: dict[str, dict] = {}
    for method, template in REST_OPERATIONS:
        operation = description["paths"][template][method]
        paths.setdefault(template, {})[method] = {
            k: operation[k] for k in ("operationId", "parameters", "requestBody", "responses") if k in operation}
    return {"openapi": description["openapi"], "info": description["info"], "paths": paths}


# ---------------------------------------------------------------------------------------------- Linear

_DECL = re.compile(r"^(?:/\*\*(?P<doc>(?:(?!\*/).)*?)\*/\n)?(?:type (?P<name>\w+) = (?P<rhs>[^\n]*)|declare enum (?P<enum>\w+) \{)",
                   re.M | re.S)
_FIELD = re.compile(r"^  (?:/\*\*(?P<doc>(?:(?!\*/).)*?)\*/\n  )?(?P<name>\w+)(?P<opt>\??): (?P<type>[^;\n]+);", re.M | re.S)
_ENUM_VALUE = re.compile(r"^  (?:/\*\*(?P<doc>(?:(?!\*/).)*?)\*/\n  )?\w+ = \"(?P<value>[^\"]+)\",", re.M | re.S)


def _doc(text: str | None, indent: str = "") -> str:
    if not text:
        return ""
    lines = [re.sub(r"^\s*\* ?", "", line).rstrip() for line in text.strip().splitlines()]
    body = "\n".join(lines).strip().replace('"""', '\\"""')
    return f'{indent}"""\n{indent}{body}\n{indent}"""\n' if body else ""


def _gql_type(ts: str, input_side: bool) -> str:
    ts = ts.strip()
    nullable = False
    for wrapper in ("InputMaybe<", "Maybe<"):
        if ts.startswith(wrapper) and ts.endswith(">"):
            ts, nullable = ts[len(wrapper):-1].strip(), True
            break
    if ts.startswith("Array<") and ts.endswith(">"):
        inner = _gql_type(ts[len("Array<"):-1], input_side)
        text = f"[{inner}]"
    elif m := re.fullmatch(r'Scalars\["(\w+)"\](?:\["(?:input|output)"\])?', ts):
        text = m.group(1)
    elif re.fullmatch(r"\w+", ts):
        text = ts
    else:
        raise ValueError(f"unexpected TypeScript type {ts!r}")
    return text if nullable else text + "!"


def linear_sdl(declarations: str) -> str:
    """Linear's SDL from the codegen TypeScript of ``@linear/sdk`` (``typescript`` plugin output).

    Object types carry ``__typename``; a field's arguments are the ``<Type><Field>Args`` type; ``Maybe<T>`` is a
    nullable output, ``InputMaybe<T>`` a nullable input, anything else non-null; ``Array<T>`` a list; ``A | B`` a
    union; ``Base & {...}`` an object implementing the interface ``Base``; ``declare enum`` an enum whose values
    are the string literals. What this cannot recover: argument defaults (the SDL's ``first: Int = 50``), and
    the original spelling of input and enum type names, which the codegen turned into pascal case (``IDComparator``
    reads ``IdComparator``); object type names come from ``__typename`` and are exact.
    """
    start = declarations.index("type Scalars = {")
    end = re.search(r"^type \w+Fragment = ", declarations, re.M).start()
    scalars_block = declarations[start:declarations.index("\n};", start)]
    scalars = re.findall(r"^  (\w+): ", scalars_block, re.M)
    text = declarations[declarations.index("\n};", start) + 3:end]
    blocks: dict[str, dict] = {}
    for m in _DECL.finditer(text):
        if m.group("enum"):
            body = text[m.end():text.index("\n}", m.end())]
            blocks[m.group("enum")] = {"kind": "enum", "doc": m.group("doc"),
                                       "values": [(v.group("value"), v.group("doc")) for v in _ENUM_VALUE.finditer(body)]}
            continue
        name, rhs = m.group("name"), m.group("rhs").strip()
        if "<" in name or rhs.startswith(("T", "Omit", "{ [")):
            continue  # the codegen's generic helpers (Maybe, Exact, MakeOptional...)
        if "{" not in rhs:
            members = [p.strip() for p in rhs.rstrip(";").split("|")]
            blocks[name] = {"kind": "union", "doc": m.group("doc"), "members": members}
            continue
        bases = [b.strip() for b in rhs[: rhs.index("{")].split("&") if b.strip()]
        body = text[m.end():text.index("\n};", m.end())]
        fields = [(f.group("name"), f.group("type"), f.group("doc")) for f in _FIELD.finditer("\n" + body + "\n")]
        typename = next((t for n, t, _ in fields if n == "__typename"), None)
        blocks[name] = {"kind": "object" if typename else "plain", "doc": m.group("doc"), "bases": bases,
                        "fields": [f for f in fields if f[0] != "__typename"],
                        "typename": typename.strip('?" ') if typename else name}
    interfaces = {b for blk in blocks.values() if blk["kind"] == "object" for b in blk["bases"]}
    args_types = set()
    for name, blk in blocks.items():
        if blk["kind"] == "object" or name in interfaces:
            for field, _, _ in blk["fields"]:
                args = f"{name}{field[0].upper()}{field[1:]}Args"
                if args in blocks:
                    args_types.add(args)
    out = ["schema {\n  query: Query\n  mutation: Mutation\n}\n"]
    for name in sorted(set(scalars) - {"ID", "String", "Boolean", "Int", "Float"}):
        out.append(f"scalar {name}\n")
    for name, blk in sorted(blocks.items()):
        if name in args_types:
            continue
        doc = _doc(blk["doc"])
        if blk["kind"] == "enum":
            values = "".join(f"{_doc(d, '  ')}  {v}\n" for v, d in blk["values"])
            out.append(f"{doc}enum {name} {{\n{values}}}\n")
        elif blk["kind"] == "union":
            out.append(f"{doc}union {name} = {' | '.join(blk['members'])}\n")
        else:
            if blk["kind"] == "object":
                keyword = "type"
            elif name in interfaces:
                keyword = "interface"
            else:
                keyword = "input"
            lines = []
            for field, ts, fdoc in blk["fields"]:
                args = blocks.get(f"{name}{field[0].upper()}{field[1:]}Args") if keyword != "input" else None
                arg_text = ""
                if args:
                    arg_text = "(" + ", ".join(f"{a}: {_gql_type(t, True)}" for a, t, _ in args["fields"]) + ")"
                lines.append(f"{_doc(fdoc, '  ')}  {field}{arg_text}: {_gql_type(ts, keyword == 'input')}\n")
            implements = f" implements {' & '.join(blk['bases'])}" if blk["bases"] else ""
            out.append(f"{doc}{keyword} {blk['typename']}{implements} {{\n{''.join(lines)}}}\n")
    return "\n".join(out)


# ------------------------------------------------------------------------------------------------- main


def build(target: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        sources = {}
        gh = target / "github"
        lin = target / "linear"
        gh.mkdir(parents=True, exist_ok=True)
        lin.mkdir(parents=True, exist_ok=True)

        pkg, integrity = npm_pack(GITHUB_GRAPHQL, work)
        shutil.copyfile(pkg / "schema.graphql", gh / "schema.graphql")
        shutil.copyfile(pkg / "LICENSE.md", gh / "LICENSE-octokit-graphql-schema.md")
        sources["github/schema.graphql"] = {"package": GITHUB_GRAPHQL[0], "version": GITHUB_GRAPHQL[1],
                                            "file": "schema.graphql", "integrity": integrity}

        pkg, integrity = npm_pack(GITHUB_OPENAPI, work)
        description = json.loads((pkg / "generated" / "api.github.com.deref.json").read_text(encoding="utf-8"))
        (gh / "rest-openapi.json").write_text(json.dumps(rest_subset(description), indent=1, sort_keys=True) + "\n",
                                              encoding="utf-8")
        shutil.copyfile(pkg / "LICENSE", gh / "LICENSE-octokit-openapi")
        sources["github/rest-openapi.json"] = {
            "package": GITHUB_OPENAPI[0], "version": GITHUB_OPENAPI[1], "file": "generated/api.github.com.deref.json",
            "integrity": integrity, "operations": [f"{m.upper()} {p}" for m, p in REST_OPERATIONS]}

        pkg, integrity = npm_pack(LINEAR_SDK, work)
        declarations = next((pkg / "dist").glob("index-*.d.mts")).read_text(encoding="utf-8")
        (lin / "schema.graphql").write_text(linear_sdl(declarations), encoding="utf-8")
        shutil.copyfile(pkg / "LICENSE", lin / "LICENSE-linear-sdk")
        sources["linear/schema.graphql"] = {"package": LINEAR_SDK[0], "version": LINEAR_SDK[1],
                                            "file": "dist/index-*.d.mts (converted to SDL)", "integrity": integrity}
        (target / "SOURCES.json").write_text(json.dumps(sources, indent=1, sort_keys=True) + "\n", encoding="utf-8")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the committed copies differ")
    args = parser.parse_args()
    if not args.check:
        build(HERE)
        print(f"wrote {HERE}/github and {HERE}/linear; run the tests, then commit")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        build(Path(tmp))
        differ = [str(p.relative_to(tmp)) for p in sorted(Path(tmp).rglob("*")) if p.is_file()
                  and (not (HERE / p.relative_to(tmp)).is_file()
                       or (HERE / p.relative_to(tmp)).read_bytes() != p.read_bytes())]
    print("\n".join(f"differs: {d}" for d in differ) or "up to date")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
