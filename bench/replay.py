"""Replay and a build's read of the log against a raw table scan of the same rows, on MySQL.

    python -m bench replay
    python -m bench.replay --rows 100000

N training events (4 values each) go into a throw-away MySQL database. Timed: (a) the raw
scan, PyMySQL's unbuffered cursor reading position and payload of every training row (the
baseline); (b) `replay` of the training_records handler (reset, read, parse, project, commit);
(c) a build's read of its training data and lineage (db.lineage.load_training). Rates in
rows per second and their ratio to the scan (goal for replay: >= 0.7).
"""
from __future__ import annotations

import argparse
import json
import os
import time
import uuid

DEFAULT_MYSQL = "mysql+pymysql://root@127.0.0.1:3306/"
ROWS = int(os.environ.get("MODELBUS_BENCH_REPLAY_ROWS", "100000"))

def raw_scan(url: str) -> tuple[int, float]:
    """(a) PyMySQL alone, unbuffered: every training row's position and payload; rows and seconds."""
    import pymysql
    import pymysql.cursors
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    conn = pymysql.connect(host=parsed.host, port=parsed.port or 3306, user=parsed.username,
                           password=parsed.password or "", database=parsed.database, charset="utf8mb4",
                           cursorclass=pymysql.cursors.SSCursor)
    try:
        started = time.perf_counter()
        with conn.cursor() as cur:
            cur.execute("SELECT position, payload FROM events WHERE dataset = 'default' AND name = 'training'"
                        " AND type = 'training' ORDER BY position")
            count = sum(1 for _ in cur)
        return count, time.perf_counter() - started
    finally:
        conn.close()

def measure(url: str, rows: int) -> dict:
    """Append the rows, then time the scan, the replay and the build's read."""
    from bench.build import _append, synthetic
    from modelbus.db.engine import make_engine
    from modelbus.db.events import EventStore, Schemas
    from modelbus.db.lineage import load_training
    from modelbus.db.migrate import upgrade
    from modelbus.handlers.follow.replay import replay_handler
    from modelbus.handlers.log.training import TrainingRecords

    engine = make_engine(url)
    upgrade(engine)
    store = EventStore(engine, Schemas())
    data = synthetic(rows)
    _append(store, data, "default")
    head = store.head()
    scanned, scan_seconds = raw_scan(url)
    assert scanned == rows, (scanned, rows)
    started = time.perf_counter()
    applied = replay_handler(store, TrainingRecords(), progress=False)
    replay_seconds = time.perf_counter() - started
    started = time.perf_counter()
    training, lineage = load_training(engine, "default", head + 1)
    read_seconds = time.perf_counter() - started
    assert training is not None and len(training.y) == rows and lineage.n_events == rows
    engine.dispose()
    scan_rate = rows / scan_seconds
    return {"rows": rows, "scan_rows_per_s": round(scan_rate), "replay_rows_per_s": round(applied / replay_seconds),
            "replay_over_scan": round(applied / replay_seconds / scan_rate, 2),
            "build_read_rows_per_s": round(rows / read_seconds),
            "build_read_over_scan": round(rows / read_seconds / scan_rate, 2)}

def main(argv: list[str] | None = None) -> dict:
    """Print and return the figures."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    parser = argparse.ArgumentParser(prog="python -m bench.replay")
    parser.add_argument("--rows", type=int, default=ROWS)
    parser.add_argument("--mysql", default=os.environ.get("MODELBUS_BENCH_MYSQL_URL", DEFAULT_MYSQL))
    args = parser.parse_args(argv)
    base = make_url(args.mysql)
    name = f"modelbus_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"))
    try:
        result = measure(base.set(database=name).render_as_string(hide_password=False), args.rows)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
        admin.dispose()
    print(json.dumps(result), flush=True)
    print(f"replay: {result['rows']:,} training rows on MySQL: raw scan {result['scan_rows_per_s']:,} rows/s;"
          f" replay training_records {result['replay_rows_per_s']:,} rows/s (ratio {result['replay_over_scan']:.2f},"
          f" goal >= 0.7); a build's read {result['build_read_rows_per_s']:,} rows/s"
          f" (ratio {result['build_read_over_scan']:.2f})", flush=True)
    return result

if __name__ == "__main__":
    main()

