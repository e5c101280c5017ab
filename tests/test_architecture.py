"""The layers hold: import-linter's contracts (pyproject.toml) over the package as it is installed."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def assemble(target: Path) -> Path:
    """The `modelbus` package laid out as a wheel installs it (the root folders mapped into it)."""
    mapping = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    # Parents first, so a subpackage's folder lands inside its parent's.
    for package, folder in sorted(mapping.items(), key=lambda item: item[0].count(".")):
        destination = target.joinpath(*package.split("."))
        shutil.copytree(ROOT / folder, destination, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return target


def test_import_contracts_hold(tmp_path):
    site = assemble(tmp_path / "site")
    env = {**os.environ, "PYTHONPATH": str(site)}
    linted = subprocess.run([str(Path(sys.executable).with_name("lint-imports")), "--config", str(ROOT / "pyproject.toml"),
                             "--no-cache"], cwd=site, env=env, capture_output=True, text=True, timeout=120)
    assert linted.returncode == 0, linted.stdout + linted.stderr
    assert "0 broken" in linted.stdout, linted.stdout
