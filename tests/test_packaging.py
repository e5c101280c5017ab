"""The distribution installs one top-level package, `modelbus`, whose parts are the repository's root folders."""
from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_a_built_wheel_holds_only_the_modelbus_package(tmp_path):
    # Built from a copy of the tracked files: setuptools leaves a build/ folder where it builds.
    source = tmp_path / "source"
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    for name in tracked:
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                            str(tmp_path), str(source)], capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr
    (wheel,) = tmp_path.glob("modelbus-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {name.split("/")[0] for name in names}
    assert tops == {"modelbus", next(t for t in tops if t.endswith(".dist-info"))}, sorted(tops)
    for expected in ("modelbus/cli/__init__.py", "modelbus/messages/parse.py", "modelbus/handlers/serving/cache.py",
                     "modelbus/db/migrations/env.py", "modelbus/db/migrations/versions/0001_event_log.py",
                     "modelbus/messages/build_mlp.json", "modelbus/api/templates/base.html",
                     "modelbus/api/templates/version.html", "modelbus/api/static/dashboard.js",
                     "modelbus/api/static/dashboard.css"):
        assert any(name.startswith(expected.rsplit(".", 1)[0]) for name in names), expected


def test_every_package_folder_is_in_the_distribution():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    mapping = config["package-dir"]
    found = set()
    for package, folder in mapping.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            relative = init.parent.relative_to(ROOT / folder)
            found.add(".".join([package, *relative.parts]))
    assert found - listed == set(), "add these to [tool.setuptools] packages in pyproject.toml"
