"""Ingest throughput, Tansu -> MySQL: the real worker against raw kafka-python and PyMySQL.

    python -m bench ingest                 # 100,000 messages (MODELBUS_BENCH_MESSAGES)
    python -m bench.ingest --profile       # (c) in-process under cProfile, top functions

(a) kafka-python consumes every message, nothing else; (b) PyMySQL executemany writes as
many rows into a scratch table shaped like `events`; (c) `modelbus worker --no-handlers`
takes them from Tansu into `events`. Each rate is timed from the first message or row
to the last, so group joins and process start-up are left out. A throw-away Tansu
broker and MySQL database are made and removed.
"""
from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import random
import subprocess
import sys
import threading
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parents[1]
MESSAGES = int(os.environ.get("MODELBUS_BENCH_MESSAGES", "100000"))
PARTITIONS = int(os.environ.get("MODELBUS_BENCH_PARTITIONS", "3"))
DEFAULT_MYSQL = "mysql+pymysql://root@127.0.0.1:3306/test"


@contextmanager
def services() -> Iterator[tuple[str, str]]:
    """A Tansu broker on a free port and an empty, migrated MySQL database; both removed after."""
    from modelbus.db.engine import make_engine
    from modelbus.db.migrate import upgrade
    from modelbus.broker import throwaway_broker

    server = make_url(os.environ.get("MODELBUS_BENCH_MYSQL_URL") or os.environ.get("MODELBUS_TEST_MYSQL_URL") or DEFAULT_MYSQL)
    name = f"modelbus_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"))
    try:
        with throwaway_broker() as bootstrap:
            url = server.set(database=name).render_as_string(hide_password=False)
            engine = make_engine(url)
            upgrade(engine)
            engine.dispose()
            yield bootstrap, url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
        admin.dispose()


def seed_messages(n: int, seed: int = 1) -> list[bytes]:
    """Seed-format events: training records for 'default' (3 features + label), 1% build commands."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        if rng.random() < 0.01:
            obj = {"type": "command", "payload": rng.choice(["build_mlp", "build_slr"])}
        else:
            obj = {"type": "training", "payload": ",".join(str(rng.randint(0, 10)) for _ in range(4))}
        if i % 4 == 0:
            obj["id"] = f"bench-{i}"
        out.append(json.dumps(obj, separators=(",", ":")).encode())
    return out


def produce(bootstrap: str, topic: str, values: list[bytes]) -> float:
    """Send every message (spread over the partitions); returns messages per second."""
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5, batch_size=64 * 1024)
    started = time.perf_counter()
    for i, value in enumerate(values):
        producer.send(topic, value=value, partition=i % PARTITIONS)
    producer.flush()
    elapsed = time.perf_counter() - started
    producer.close()
    return len(values) / elapsed


def consume_raw(bootstrap: str, topic: str, n: int, **config) -> float:
    """(a) kafka-python alone: poll until n messages arrived; messages per second."""
    from kafka import KafkaConsumer, TopicPartition

    from modelbus.commands.kafka import KafkaConfig, make_consumer

    # The worker's consumer settings, without a group (no join to wait for).
    consumer: KafkaConsumer = make_consumer(KafkaConfig(bootstrap=bootstrap), None, **config)
    partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
    consumer.assign(partitions)
    consumer.seek_to_beginning(*partitions)
    got = first = 0
    started = None
    while got < n:
        polled = consumer.poll(timeout_ms=500, max_records=2000)
        got += sum(len(r) for r in polled.values())
        if polled and started is None:
            # The first poll's messages start the clock, as the worker's first batch does.
            started, first = time.perf_counter(), got
    elapsed = time.perf_counter() - started
    consumer.close()
    if got == first:
        raise SystemExit(f"all {n} messages came in the first poll: too few to time, use more messages")
    return (got - first) / elapsed


SCRATCH = """
CREATE TABLE bench_rows (
  position BIGINT NOT NULL PRIMARY KEY,
  event_id VARCHAR(128) NOT NULL,
  type VARCHAR(16) NOT NULL,
  name VARCHAR(32) NOT NULL,
  dataset VARCHAR(64) NOT NULL,
  payload MEDIUMTEXT NOT NULL,
  source VARCHAR(16) NOT NULL,
  source_topic VARCHAR(249),
  source_topic_id VARCHAR(36),
  source_partition INT,
  source_offset BIGINT,
  received_at DATETIME(6) NOT NULL,
  UNIQUE KEY uq_id (event_id),
  UNIQUE KEY uq_source (source_topic, source_topic_id, source_partition, source_offset),
  KEY ix_dataset (dataset, name, position)
) ENGINE=InnoDB CHARACTER SET utf8mb4 COLLATE utf8mb4_bin
"""


def executemany_raw(url: str, values: list[bytes]) -> float:
    """(b) PyMySQL alone: one executemany of every row into a table shaped like `events`; rows per second."""
    import pymysql

    parsed = make_url(url)
    conn = pymysql.connect(
        host=parsed.host, port=parsed.port or 3306, user=parsed.username, password=parsed.password or "",
        database=parsed.database, charset="utf8mb4",
    )
    now = time.strftime("%Y-%m-%d %H:%M:%S")
    rows = [
        (i + 1, uuid.uuid4().hex, "training", "training", "default", v.decode(), "kafka", "bench", "x", i % PARTITIONS, i // PARTITIONS, now)
        for i, v in enumerate(values)
    ]
    try:
        with conn.cursor() as cur:
            cur.execute(SCRATCH)
            started = time.perf_counter()
            cur.executemany(
                "INSERT INTO bench_rows (position, event_id, type, name, dataset, payload, source, source_topic,"
                " source_topic_id, source_partition, source_offset, received_at) VALUES"
                " (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                rows,
            )
            conn.commit()
            elapsed = time.perf_counter() - started
            cur.execute("DROP TABLE bench_rows")
    finally:
        conn.close()
    return len(rows) / elapsed


def _head(engine) -> int:
    from modelbus.db.schema import log_head

    with engine.connect() as conn:
        return conn.execute(select(log_head.c.position)).scalar_one()


def _worker_env(settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELBUS_")}
    env.update(
        MODELBUS_DATABASE_URL=settings.database_url,
        MODELBUS_KAFKA_BOOTSTRAP=settings.kafka_bootstrap,
        MODELBUS_INGEST_GROUP=settings.ingest_group,
        MODELBUS_KAFKA_SESSION_TIMEOUT_MS=str(settings.kafka_session_timeout_ms),
        MODELBUS_KAFKA_HEARTBEAT_MS=str(settings.kafka_heartbeat_ms),
        MODELBUS_LOG_LEVEL="WARNING",
    )
    for field, value in settings.topics.model_dump().items():
        env[f"MODELBUS_TOPICS__{field.upper()}"] = value
    return env


def cpu_seconds(pid: int | None = None) -> float:
    """CPU time (user + system, every thread) of a process so far; NaN where /proc is missing."""
    try:
        with open(f"/proc/{pid or 'self'}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def watch_head(engine, n: int, alive, pid: int | None = None, timeout: float = 300.0) -> tuple[float, float]:
    """Poll the log head until it reaches n: events per second from the first stored batch,
    and the worker's CPU microseconds per event over the same stretch."""
    started = first = cpu = None
    deadline = time.monotonic() + timeout
    while True:
        head = _head(engine)
        now = time.perf_counter()
        if head and started is None:
            started, first, cpu = now, head, cpu_seconds(pid)
        if head >= n:
            if now <= started:
                return float("nan"), float("nan")
            return (head - first) / (now - started), 1e6 * (cpu_seconds(pid) - cpu) / (head - first)
        if not alive() or time.monotonic() > deadline:
            raise RuntimeError(f"the worker stopped at {head} of {n} events")
        time.sleep(0.02)


def worker_subprocess(settings, n: int) -> tuple[float, float]:
    """(c) `modelbus worker --no-handlers` from Tansu into `events`; events/s and CPU us/event."""
    from modelbus.db.engine import make_engine

    engine = make_engine(settings.database_url)
    proc = subprocess.Popen(
        [sys.executable, "-m", "modelbus.cli", "worker", "--no-handlers"], cwd=ROOT, env=_worker_env(settings)
    )
    try:
        return watch_head(engine, n, lambda: proc.poll() is None, proc.pid)
    finally:
        proc.terminate()
        proc.wait(30)
        engine.dispose()


def worker_in_process(settings, n: int, profile: bool) -> tuple[float, float]:
    """(c) IngestWorker in this process (optionally profiled); events/s and CPU us/event (whole process)."""
    from modelbus.commands.transport import KafkaTransport
    from modelbus.db.engine import make_engine
    from modelbus.db.events import EventStore, Schemas
    from modelbus.handlers.workers.ingest import IngestWorker
    from modelbus.up import ingest_config

    engine = make_engine(settings.database_url)
    transport = KafkaTransport(settings.kafka_bootstrap)
    worker = IngestWorker(ingest_config(settings), EventStore(engine, Schemas(declared={"default": 4})), transport)
    stop = threading.Event()
    profiler = cProfile.Profile() if profile else None

    def run() -> None:
        if profiler:
            profiler.enable()
        try:
            worker.run(stop)
        finally:
            if profiler:
                profiler.disable()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        return watch_head(engine, n, thread.is_alive)
    finally:
        stop.set()
        thread.join(30)
        transport.close()
        engine.dispose()
        if profiler:
            pstats.Stats(profiler).sort_stats("cumulative").print_stats(30)
            pstats.Stats(profiler).sort_stats("tottime").print_stats(25)


def main(argv: list[str] | None = None) -> dict[str, float]:
    """Produce MESSAGES to Tansu, then time (a), (b) and (c); print and return the rates."""
    from modelbus.commands.kafka import create_topics
    from modelbus.settings import Settings, Topics

    parser = argparse.ArgumentParser(prog="python -m bench.ingest")
    parser.add_argument("--in-process", action="store_true", help="Run (c) as an IngestWorker thread here.")
    parser.add_argument("--profile", action="store_true", help="Profile (c) in-process with cProfile.")
    args = parser.parse_args(argv or [])
    n = MESSAGES
    values = seed_messages(n)
    with services() as (bootstrap, url):
        tag = uuid.uuid4().hex[:8]
        settings = Settings(
            database_url=url,
            kafka_bootstrap=bootstrap,
            topics=Topics(
                events=f"bench-events-{tag}", prediction_requests=f"bench-req-{tag}",
                prediction_responses=f"bench-resp-{tag}", errors=f"bench-errors-{tag}",
                model_updates=f"bench-updates-{tag}",
            ),
            ingest_group=f"bench-ingest-{tag}",
            kafka_session_timeout_ms=6000,
            kafka_heartbeat_ms=1000,
        )
        create_topics(settings.kafka, PARTITIONS)
        rates = {"produce": produce(bootstrap, settings.topics.events, values)}
        rates["a_consume"] = consume_raw(bootstrap, settings.topics.events, n)
        rates["b_executemany"] = executemany_raw(url, values)
        if args.in_process or args.profile:
            rates["c_worker"], rates["c_cpu_us"] = worker_in_process(settings, n, args.profile)
        else:
            rates["c_worker"], rates["c_cpu_us"] = worker_subprocess(settings, n)
    rates["c_over_a"] = rates["c_worker"] / rates["a_consume"]
    rates["c_over_b"] = rates["c_worker"] / rates["b_executemany"]
    where = "in-process IngestWorker" if args.in_process or args.profile else "modelbus worker --no-handlers"
    print(f"ingest: {n:,} messages over {PARTITIONS} partitions, Tansu -> MySQL ({os.cpu_count()} CPUs)")
    print(f"  produce    kafka-python producer         {rates['produce']:>9,.0f} msg/s")
    print(f"  (a) raw    kafka-python consume          {rates['a_consume']:>9,.0f} msg/s")
    print(f"  (b) raw    PyMySQL executemany           {rates['b_executemany']:>9,.0f} rows/s")
    print(f"  (c) real   {where:<30} {rates['c_worker']:>9,.0f} events/s into MySQL"
          f" ({rates['c_cpu_us']:.0f} us CPU per event)")
    print(f"  (c)/(a) = {rates['c_over_a']:.2f}   (c)/(b) = {rates['c_over_b']:.2f}", flush=True)
    return rates


if __name__ == "__main__":
    main(sys.argv[1:])
