"""The data folders reach an installed copy: a built wheel carries them under ao/_data."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_wheel_carries_rules_schemas_and_templates(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path), str(ROOT)], check=True, capture_output=True)
    [wheel] = tmp_path.glob("ao-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for folder in ("rules", "schemas", "templates"):
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
