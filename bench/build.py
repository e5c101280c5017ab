"""Build and verify cost: an mlp on 100,000 training events through the build handler, then verify.

    python -m bench build
    python -m bench.build --rows 100000 --mysql mysql+pymysql://root@127.0.0.1:3306/   (the default server)

Synthetic data: 3 features, 11 classes (0..10, like darcey's scores), a noisy function of the
features. The events go into a throw-away SQLite store (and, with --mysql, a throw-away
database on that server); the build command follows them. Timed: the build handler from
reading the log to the committed version (split into reading the log and fitting), and
`verify` of that version (reading the lineage again, refitting, comparing). Also the
holdout accuracy on darcey.csv with default params.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DARCEY = ROOT / "data" / "darcey.csv"
LOCAL_MYSQL = "mysql+pymysql://root@127.0.0.1:3306/"
ROWS = int(os.environ.get("MODELBUS_BENCH_BUILD_ROWS", "100000"))


def synthetic(n: int, seed: int = 0) -> np.ndarray:
    """n rows of 3 features and a class 0..10 that depends on them with noise."""
    rng = np.random.default_rng(seed)
    X = rng.uniform(0, 10, size=(n, 3)).round(2)
    y = np.clip(np.rint(X.mean(axis=1) + rng.normal(0, 0.8, n)), 0, 10)
    return np.column_stack([X, y])


def _append(store, rows: np.ndarray, dataset: str) -> float:
    from modelbus.db.events import Source
    from modelbus.handlers.workers.ingest import incoming

    started = time.perf_counter()
    for start in range(0, len(rows), 5000):
        items = [incoming(json.dumps({"type": "training", "dataset": dataset,
                                      "payload": ",".join(f"{v:g}" for v in row)}).encode(), Source("bench"), 65536)
                 for row in rows[start:start + 5000]]
        store.append(items)
    return time.perf_counter() - started


def measure(url: str, rows: np.ndarray, dataset: str = "bench", params: dict | None = None) -> dict:
    """Append rows and a build_mlp command, build it with the handler, verify it; the figures."""
    from modelbus.db import registry
    from modelbus.db.engine import make_engine
    from modelbus.db.events import EventStore, Schemas, Source
    from modelbus.db.migrate import upgrade
    from modelbus.handlers.log.build import BuildHandler
    from modelbus.handlers.workers.ingest import incoming
    from modelbus.handlers.follow.follower import Follower
    from modelbus.handlers.log.verify import verify_version

    engine = make_engine(url)
    upgrade(engine)
    store = EventStore(engine, Schemas())
    append_seconds = _append(store, rows, dataset)
    command = {"type": "command", "payload": "build_mlp", "dataset": dataset}
    if params:
        command["params"] = params
    store.append([incoming(json.dumps(command).encode(), Source("bench"), 65536)])
    import modelbus.builders.mlp  # noqa: F401  (torch's import is not part of a build in a running worker)

    started = time.perf_counter()
    Follower(store, BuildHandler(engine), "bench").catch_up()
    build_seconds = time.perf_counter() - started
    (attempt,) = registry.builds(engine, "mlp", dataset)
    assert attempt["status"] == "ok", attempt["reason"]
    mv = registry.get_version(engine, "mlp", dataset, attempt["version"])
    started = time.perf_counter()
    check = verify_version(engine, mv)
    verify_seconds = time.perf_counter() - started
    engine.dispose()
    direct = direct_fit_seconds(rows, params)
    return {
        "rows": len(rows),
        "direct_fit_seconds": round(direct, 2),
        "build_over_direct_fit": round(build_seconds / direct, 2),
        "verify_over_build": round(verify_seconds / build_seconds, 2),
        "append_seconds": round(append_seconds, 2),
        "build_seconds": round(build_seconds, 2),
        "read_log_seconds": round(attempt["load_seconds"], 2),
        "fit_seconds": round(attempt["fit_seconds"], 2),
        "verify_seconds": round(verify_seconds, 2),
        "verify_ok": check.ok,
        "accuracy": round(mv.metrics["accuracy"], 4),
        "artifact_bytes": len(mv.artifact or b""),
    }


def direct_fit_seconds(rows: np.ndarray, params: dict | None = None) -> float:
    """The baseline: the same fit straight from numpy arrays, without the log or the registry."""
    from modelbus.builders import TrainingData, get_builder

    data = TrainingData.from_rows(rows, np.arange(1, len(rows) + 1))
    started = time.perf_counter()
    get_builder("mlp").fit(data, params)
    return time.perf_counter() - started


def darcey_accuracy() -> float:
    """Holdout accuracy of the default mlp on darcey.csv (474 rows, keyed by line number)."""
    from modelbus.builders import TrainingData, get_builder

    rows = np.loadtxt(DARCEY, delimiter=",", ndmin=2)
    return get_builder("mlp").fit(TrainingData.from_rows(rows, np.arange(1, len(rows) + 1))).metrics["accuracy"]


def _mysql(server: str, rows: np.ndarray) -> dict:
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    base = make_url(server)
    name = f"modelbus_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"))
    try:
        return measure(base.set(database=name).render_as_string(hide_password=False), rows)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
        admin.dispose()


def main(argv: list[str] | None = None) -> dict | None:
    """Print the figures, one JSON object per store; returns MySQL's (None when skipped)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=ROWS)
    parser.add_argument("--mysql", default=os.environ.get("MODELBUS_BENCH_MYSQL_URL", LOCAL_MYSQL),
                        help="A MySQL server URL (no database): also measure there, in a throw-away database "
                             "('' to skip).")
    args = parser.parse_args(argv)
    print(json.dumps({"darcey_default_accuracy": round(darcey_accuracy(), 4)}), flush=True)
    rows = synthetic(args.rows)
    workdir = tempfile.mkdtemp(prefix="modelbus-bench-build-")
    try:
        print(json.dumps({"store": "sqlite", **measure(f"sqlite:///{workdir}/modelbus.db", rows)}), flush=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if args.mysql:
        result = {"store": "mysql", **_mysql(args.mysql, rows)}
        print(json.dumps(result), flush=True)
        return result
    return None


if __name__ == "__main__":
    main()
