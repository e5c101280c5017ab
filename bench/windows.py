"""Window projection throughput against the ingest rate, on MySQL, in one run.

    python -m bench windows            # 100,000 raw events over 10,000 keys (MODELBUS_BENCH_RAW_EVENTS, _KEYS)

Ingest: the raw events parsed and appended to the log in batches of 2000, as the ingest worker
does after polling (Kafka left out, so this is an upper bound of ingest's rate). Projection: one
follower runs the window handler over the whole log, with a tumbling (10m), a hopping (10m every
2m) and a session (15m gap) window of three aggregates each configured; it commits open windows,
closed rows and its position per batch. Events are spread over one hour of event time, in order
up to 30 s (grace 1m), so nothing is late. The ratio projection/ingest must be at least 1.
"""
from __future__ import annotations

import os
import random
import time
import uuid

from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url

EVENTS = int(os.environ.get("MODELBUS_BENCH_RAW_EVENTS", "100000"))
KEYS = int(os.environ.get("MODELBUS_BENCH_KEYS", "10000"))
SPAN_MS = 3_600_000
DEFAULT_MYSQL = "mysql+pymysql://root@127.0.0.1:3306/test"
PAGES = ("main_page", "products_listing", "product_page", "product_gallery")


def window_specs() -> list[dict]:
    """One window of each kind over the pageviews stream."""
    aggregates = [{"name": "views", "fn": "count"},
                  {"name": "main_page_views", "fn": "count", "where": {"field": "event", "equals": "main_page"}},
                  {"name": "avg_amount", "fn": "avg", "field": "amount"}]
    return [
        {"name": "views_tumbling", "stream": "pageviews", "kind": "tumbling", "size": "10m", "grace": "1m",
         "aggregates": aggregates},
        {"name": "views_10m", "stream": "pageviews", "kind": "hopping", "size": "10m", "advance": "2m", "grace": "1m",
         "aggregates": aggregates},
        {"name": "sessions", "stream": "pageviews", "kind": "session", "gap": "15m", "grace": "1m",
         "aggregates": [{"name": "views", "fn": "count"}, {"name": "amount", "fn": "sum", "field": "amount"},
                        {"name": "duration", "fn": "duration"}]},
    ]


def raw_events(n: int = EVENTS, keys: int = KEYS, seed: int = 13) -> list[dict]:
    """n page views over `keys` users and one hour, each up to 30 s out of order."""
    rng = random.Random(seed)
    start = 1_795_428_000_000
    out = []
    for i in range(n):
        ts = start + i * SPAN_MS // n - rng.randrange(30_000)
        out.append({"type": "raw", "stream": "pageviews", "key": f"user-{rng.randrange(keys)}", "ts": ts,
                    "fields": {"event": rng.choice(PAGES), "amount": rng.randrange(1, 400) / 4}, "id": f"pv-{i}"})
    return out


def main() -> None:
    """Measure ingest and the window projection on a throw-away MySQL database; print both and the ratio."""
    from modelbus.app import App
    from modelbus.db.schema import window_rows
    from modelbus.handlers.follow.follower import Follower
    from modelbus.settings import Settings

    server = make_url(os.environ.get("MODELBUS_BENCH_MYSQL_URL") or os.environ.get("MODELBUS_TEST_MYSQL_URL")
                      or DEFAULT_MYSQL)
    name = f"modelbus_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"))
    try:
        url = server.set(database=name).render_as_string(hide_password=False)
        app = App(Settings(database_url=url, windows=window_specs()))
        events = raw_events()
        batch = app.settings.ingest_batch
        started = time.perf_counter()
        for i in range(0, len(events), batch):
            app.publisher.post(events[i:i + batch], "cli")
        ingest_seconds = time.perf_counter() - started
        [handler] = app.window_handlers(sinks=[])
        follower = Follower(app.store, handler)
        started = time.perf_counter()
        follower.catch_up()
        project_seconds = time.perf_counter() - started
        with app.engine.connect() as conn:
            closed = conn.execute(select(func.count()).select_from(window_rows)).scalar_one()
        ingest_rate, project_rate = len(events) / ingest_seconds, len(events) / project_seconds
        print(f"{len(events)} raw events over {KEYS} keys, 3 windows (tumbling, hopping, session)")
        print(f"ingest (parse + append, batches of {batch}): {ingest_seconds:.1f}s, {ingest_rate:,.0f} events/s")
        print(f"window projection (batches of {handler.batch_size}): {project_seconds:.1f}s, "
              f"{project_rate:,.0f} events/s, {closed:,} windows closed")
        print(f"projection/ingest: {project_rate / ingest_rate:.2f}")
        app.close()
    finally:
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
        admin.dispose()


if __name__ == "__main__":
    main()
