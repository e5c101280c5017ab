"""Run the benchmarks: `python -m bench` runs them all, `python -m bench ingest build` some."""
from __future__ import annotations

import importlib
import inspect
import pkgutil
import sys
import time
import traceback

import bench
from bench._table import table


def modules() -> list[str]:
    """Names of the bench modules that have a main(), in name order."""
    names = []
    for info in sorted(pkgutil.iter_modules(bench.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        if hasattr(importlib.import_module(f"bench.{info.name}"), "main"):
            names.append(info.name)
    return names


def run(argv: list[str]) -> int:
    """Run the named benchmarks (all when none are named); returns the exit code."""
    available = modules()
    wanted = argv or available
    unknown = [name for name in wanted if name not in available]
    if unknown:
        print(f"unknown benchmark {unknown[0]} (available: {', '.join(available)})", file=sys.stderr)
        return 2
    failed = []
    results: dict[str, object] = {}
    for name in wanted:
        print(f"== bench.{name}", flush=True)
        started = time.monotonic()
        try:
            entry = importlib.import_module(f"bench.{name}").main
            # Each runs with its defaults: the names given here are not its arguments.
            results[name] = entry([]) if inspect.signature(entry).parameters else entry()
        except Exception as exc:  # one broken benchmark does not hide the others' figures
            failed.append(name)
            traceback.print_exc()
            print(f"bench.{name} failed: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        print(f"== bench.{name} took {time.monotonic() - started:.1f}s\n", flush=True)
    print("== the issue's table (modelbus beside the baseline measured in this run)")
    for line in table(results):
        print(line)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
