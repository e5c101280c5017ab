#!/usr/bin/env python3
"""Regenerate the CLI reference in README.md from the commands' --help (tests/test_readme.py checks it)."""
from pathlib import Path

from modelbus.cli import main
from modelbus.cli.reference import update_readme

if __name__ == "__main__":
    readme = Path(__file__).resolve().parents[1] / "README.md"
    print("README.md updated" if update_readme(readme, main) else "README.md already current")
