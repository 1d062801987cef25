"""The data folders reach an installed copy: a built wheel carries them under ao/_data."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_wheel_carries_rules_schemas_templates_examples_and_docs(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path), str(ROOT)], check=True, capture_output=True)
    [wheel] = tmp_path.glob("ao-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for folder in ("rules", "schemas", "templates", "examples", "docs"):
        shipped = {p.relative_to(ROOT).as_posix() for p in (ROOT / folder).rglob("*") if p.is_file()}
        assert shipped, folder
        assert {f"ao/_data/{name}" for name in shipped} <= names
    assert "ao/cli/__init__.py" in names
    # the dashboard's pages, script, styles and vendored xterm.js (with its license): no build step, no CDN
    web = {p.relative_to(ROOT).as_posix() for folder in ("static", "templates")
           for p in (ROOT / "ao" / "web" / folder).rglob("*") if p.is_file() and "__pycache__" not in p.parts}
    assert {"ao/web/static/app.js", "ao/web/static/vendor/xterm/xterm.js", "ao/web/static/vendor/xterm/LICENSE",
            "ao/web/templates/board.html.j2"} <= web <= names


def test_data_folder_prefers_the_installed_copy(tmp_path, monkeypatch):
    from ao import paths

    fake_pkg = tmp_path / "ao"
    (fake_pkg / "_data" / "rules").mkdir(parents=True)
    monkeypatch.setattr(paths, "_PKG", fake_pkg)
    paths.data_folder.cache_clear()
    try:
        assert paths.data_folder("rules") == fake_pkg / "_data" / "rules"
        assert paths.data_folder("schemas") == tmp_path / "schemas"  # a source checkout: beside the package
    finally:
        paths.data_folder.cache_clear()


def _user_facing_strings(path: Path):
    """(line, text) of every string a user can see from ``path``: every string constant but the docstrings of
    modules, classes and functions, which only maintainers read, except a CLI command's, which is its --help."""
    import ast

    tree = ast.parse(path.read_text())
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                is_command = isinstance(node, ast.FunctionDef) and any(
                    "command" in ast.unparse(d) for d in node.decorator_list)
                if not is_command:
                    docstrings.add(id(first.value))
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            yield node.lineno, node.value


def test_nothing_ao_says_or_ships_points_at_a_file_an_installed_ao_lacks():
    """Issue 14: no reference to files that don't ship. The docs ship (ao/_data/docs, cited by full path through
    ``paths.doc``); the SPEC, the README and the checkout's tests and benchmarks do not."""
    import re
    import tomllib

    include = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["hatch"]["build"]["targets"]["wheel"]
    assert include["force-include"]["docs"] == "ao/_data/docs"
    relative = re.compile(r"(?<![\w-])(?:docs|tests|bench)/|\bSPEC\b|\bREADME\b")
    bad = [f"{p.relative_to(ROOT)}:{line}: {text!r}" for p in sorted((ROOT / "ao").rglob("*.py"))
           for line, text in _user_facing_strings(p)
           if relative.search(text) and text != "README.md"]  # ao demo writes a README.md of its own
    assert not bad, "cite docs by paths.doc(NAME), never a checkout-relative path:\n" + "\n".join(bad)

    # every docs/NAME.md named in the package or in the data it ships is a page that ships; so is every paths.doc
    data = [p for folder in ("rules", "schemas", "templates", "examples") for p in (ROOT / folder).rglob("*")
            if p.is_file()]
    texts = {p.relative_to(ROOT).as_posix(): p.read_text() for p in [*(ROOT / "ao").rglob("*.py"), *data]}
    cited = {name for text in texts.values() for name in re.findall(r"\bdocs/([\w.-]+\.md)", text)}
    cited |= {name for text in texts.values() for name in re.findall(r"paths\.doc\(['\"]([\w.-]+)['\"]\)", text)}
    assert "sandbox.md" in cited
    assert {name for name in cited if not (ROOT / "docs" / name).is_file()} == set()
    # and the data a user reads (the examples, the built-in rules) cites no SPEC section
    assert [p for p in data if re.search(r"\bSPEC\b", p.read_text())] == []
