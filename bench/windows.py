"""Window projection throughput against the ingest rate, on MySQL, in one run.

    python -m bench windows            # 100,000 raw events over 10,000 keys (MODELBUS_BENCH_RAW_EVENTS, _KEYS)

Ingest: the raw events produced to a throw-away Tansu broker, then `modelbus worker --no-handlers`
stores them in the log (timed as bench.ingest times it, from the first stored batch). Projection: one
follower runs the window handler over the whole log, with a tumbling (10m), a hopping (10m every
2m) and a session (15m gap) window of three aggregates each configured; it commits open windows,
closed rows and its position per batch; then again with the keys split into 2 shards, one
process each (how it scales out). Events are spread over one hour of event time, in order up to
30 s (grace 1m), and keyed by stream like the publisher's, so they stay in order on one partition
and nothing is late. The issue's goal is a ratio projection/ingest of at least 1 (measured 0.74 to
0.91 in one process, 0.74 to 1.37 in 2, on a shared 2-core machine; README, Benchmarks).
"""
from __future__ import annotations

import multiprocessing
import os
import random
import time
import uuid
from typing import Any

from sqlalchemy import func, select

EVENTS = int(os.environ.get("MODELBUS_BENCH_RAW_EVENTS", "100000"))
KEYS = int(os.environ.get("MODELBUS_BENCH_KEYS", "10000"))
SHARDS = int(os.environ.get("MODELBUS_BENCH_WINDOW_SHARDS", "2"))
SPAN_MS = 3_600_000
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


def produce_keyed(bootstrap: str, topic: str, values: list[bytes]) -> None:
    """Send the events keyed by their stream, as modelbus's publisher does: one partition keeps their order."""
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5, batch_size=64 * 1024)
    for value in values:
        producer.send(topic, value=value, key=b"pageviews")
    producer.flush()
    producer.close()


def _run_shard(url: str, shards: int, shard: int, start: Any, done: Any) -> None:
    """One process following one shard's window handler to the head (started together by `start`)."""
    from modelbus.app import App
    from modelbus.handlers.follow.follower import Follower
    from modelbus.settings import Settings

    app = App(Settings(database_url=url, windows=window_specs(), window_shards=shards, window_shard_ids=[shard]))
    [handler] = app.window_handlers(sinks=[])
    follower = Follower(app.store, handler)
    start.wait()
    follower.catch_up()
    follower.release()
    done.put(time.perf_counter())
    app.close()


def run_shards(url: str, shards: int) -> float:
    """Seconds for `shards` processes, one shard each, to project the whole log."""
    context = multiprocessing.get_context("spawn")
    start, done = context.Event(), context.Queue()
    processes = [context.Process(target=_run_shard, args=(url, shards, shard, start, done)) for shard in range(shards)]
    for process in processes:
        process.start()
    time.sleep(3)  # every process imported modelbus and opened its database
    began = time.perf_counter()
    start.set()
    finished = [done.get(timeout=600) for _ in processes]
    for process in processes:
        process.join()
    return max(finished) - began


def main() -> None:
    """Ingest the raw events from Tansu, project them, in one and in SHARDS processes; print the rates and ratios."""
    import orjson

    from bench.ingest import PARTITIONS, services, worker_subprocess
    from modelbus.app import App
    from modelbus.commands.kafka import Topics, create_topics
    from modelbus.db import windows as window_store
    from modelbus.db.schema import window_rows
    from modelbus.handlers.follow.follower import Follower
    from modelbus.settings import Settings

    events = raw_events()
    with services() as (bootstrap, url):
        tag = uuid.uuid4().hex[:8]
        settings = Settings(database_url=url, kafka_bootstrap=bootstrap, windows=window_specs(),
                            topics=Topics(events=f"bench-raw-{tag}", errors=f"bench-errors-{tag}"),
                            ingest_group=f"bench-windows-{tag}", kafka_session_timeout_ms=6000, kafka_heartbeat_ms=1000)
        create_topics(settings.kafka, PARTITIONS, [settings.topics.events, settings.topics.errors])
        produce_keyed(bootstrap, settings.topics.events, [orjson.dumps(event) for event in events])
        ingest_rate, _cpu = worker_subprocess(settings, len(events))

        app = App(Settings(database_url=url, windows=window_specs()))
        [handler] = app.window_handlers(sinks=[])
        follower = Follower(app.store, handler)
        started = time.perf_counter()
        follower.catch_up()
        project_seconds = time.perf_counter() - started
        follower.release()
        with app.engine.connect() as conn:
            closed = conn.execute(select(func.count()).select_from(window_rows)).scalar_one()
        late = sum(window_store.late_counts(app.engine).values())
        with app.engine.begin() as conn:
            handler.reset(conn)
        sharded_seconds = run_shards(url, SHARDS)
        with app.engine.connect() as conn:
            again = conn.execute(select(func.count()).select_from(window_rows)).scalar_one()
        assert again == closed, f"{SHARDS} shards closed {again} windows, one handler {closed}"
        app.close()
    project_rate, sharded_rate = len(events) / project_seconds, len(events) / sharded_seconds
    print(f"windows: {len(events):,} raw events over {KEYS:,} keys, a tumbling, a hopping and a session window")
    print(f"  ingest     modelbus worker, Tansu -> MySQL      {ingest_rate:>9,.0f} events/s")
    print(f"  projection one process (batches of {handler.batch_size})   {project_rate:>9,.0f} events/s "
          f"({project_seconds:.1f} s, {closed:,} windows closed, {late} late events)")
    print(f"  projection {SHARDS} shards, {SHARDS} processes              {sharded_rate:>9,.0f} events/s "
          f"({sharded_seconds:.1f} s)")
    print(f"  projection/ingest = {project_rate / ingest_rate:.2f} (one process), "
          f"{sharded_rate / ingest_rate:.2f} ({SHARDS} processes)", flush=True)


if __name__ == "__main__":
    main()
