"""Helpers for the Kafka tests: producing, `modelbus worker` subprocesses, reading the store and topics back."""
from __future__ import annotations

import json
import re
import time
from typing import Any, Callable, Iterable

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from sqlalchemy import func, select

from modelbus.db.engine import make_engine
from modelbus.db.schema import dead_letters, events, log_head
from serving_support import CLI_MAIN, Proc

DEADLINE = 90.0


def producer(bootstrap: str) -> KafkaProducer:
    """A producer allowed to send the huge messages (its default request limit is 1 MiB)."""
    return KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5, max_request_size=32 * 1024 * 1024)


def produce(bootstrap: str, topic: str, msgs: list, client: KafkaProducer | None = None) -> None:
    """Send every message to its partition, in list order; record each one's offset."""
    own = client is None
    client = client or producer(bootstrap)
    # A null value (tombstone) needs a key.
    futures = [
        client.send(topic, value=m.value, key=b"tombstone" if m.value is None else None, partition=m.partition)
        for m in msgs
    ]
    client.flush()
    for msg, future in zip(msgs, futures):
        metadata = future.get(timeout=30)
        msg.partition, msg.offset = metadata.partition, metadata.offset
    if own:
        client.close()


# The real worker with a pause between each database commit and the offset commit that
# follows it, announced in the log: a SIGKILL there must make the next worker find that
# batch re-delivered and store none of it twice.
DELAYED_COMMIT = """
import logging, sys, time
from kafka import KafkaConsumer

commit = KafkaConsumer.commit


def delayed(self, *args, **kwargs):
    logging.getLogger("test").warning("offsets pending: batch stored, offsets not committed")
    time.sleep(%r)
    return commit(self, *args, **kwargs)


KafkaConsumer.commit = delayed
from modelbus.cli import main

sys.argv[0] = "modelbus"
main()
"""
PENDING = "offsets pending: batch stored, offsets not committed"
REDELIVERED = re.compile(r"ingest: (\d+) re-delivered messages were already in the log")


class Worker(Proc):
    """A `modelbus worker --no-handlers` subprocess whose log is collected as it runs."""

    ASSIGNED = re.compile(r"ingest: partitions assigned \[([0-9, ]*)\]")
    # The kill must land inside the commit_delay window that a PENDING line opens.
    POLL_SECONDS = 0.005

    def __init__(self, env: dict[str, str], name: str = "worker", commit_delay: float = 0.0):
        script = DELAYED_COMMIT % commit_delay if commit_delay else CLI_MAIN
        super().__init__(["worker", "--no-handlers"], env, name, script=script)

    def assignments(self) -> list[list[int]]:
        """Every partition assignment the worker logged, oldest first."""
        found = []
        for line in list(self.lines):
            match = self.ASSIGNED.search(line)
            if match:
                found.append(sorted(int(p) for p in match.group(1).split(",") if p.strip()))
        return found

    def redelivered(self) -> int:
        """How many re-delivered messages the worker found already stored."""
        return sum(int(m.group(1)) for line in list(self.lines) if (m := REDELIVERED.search(line)))

    def wait_assigned(self, timeout: float = DEADLINE) -> list[int]:
        """Block until the worker has joined its group; returns its partitions."""
        wait_until(lambda: self.assignments(), timeout, "the worker to join its consumer group", [self])
        return self.assignments()[-1]

    def kill(self) -> None:
        """SIGKILL: no chance to finish the batch in hand or to leave the group."""
        self.proc.kill()
        self.proc.wait(10)
        self._reader.join(5)


def wait_until(check: Callable[[], Any], timeout: float, what: str | Callable[[], str],
               workers: Iterable[Proc] = ()) -> Any:
    """Poll `check` until it returns something true; fail with the workers' logs and `what` on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            logs = "\n".join(w.log() for w in workers)
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what() if callable(what) else what}\n{logs}")
        time.sleep(0.2)


def stored(url: str) -> tuple[list[dict], list[dict], int]:
    """Every event and dead letter in the store, and the log head."""
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            rows = [
                dict(r._mapping)
                for r in conn.execute(
                    select(
                        events.c.position,
                        events.c.payload,
                        events.c.source,
                        events.c.source_topic,
                        events.c.source_topic_id,
                        events.c.source_partition,
                        events.c.source_offset,
                    ).order_by(events.c.position)
                )
            ]
            dead = [
                dict(r._mapping)
                for r in conn.execute(
                    select(
                        dead_letters.c.code,
                        dead_letters.c.raw,
                        dead_letters.c.source_topic_id,
                        dead_letters.c.source_partition,
                        dead_letters.c.source_offset,
                    ).order_by(dead_letters.c.id)
                )
            ]
            head = conn.execute(select(log_head.c.position)).scalar_one()
    finally:
        engine.dispose()
    return rows, dead, head


def counts(url: str) -> tuple[int, int]:
    """(events, dead letters) stored so far."""
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return (
                conn.execute(select(func.count()).select_from(events)).scalar_one(),
                conn.execute(select(func.count()).select_from(dead_letters)).scalar_one(),
            )
    finally:
        engine.dispose()


def wait_stored(url: str, n_events: int, n_dead: int, workers: Iterable[Worker]) -> None:
    """Block until exactly this many events and dead letters are stored."""
    def done() -> bool:
        have = counts(url)
        return have[0] >= n_events and have[1] >= n_dead

    wait_until(done, DEADLINE, lambda: f"{n_events} events and {n_dead} dead letters (stored: {counts(url)})", workers)


def read_topic(bootstrap: str, topic: str, at_least: int, timeout: float = 30.0) -> list[dict]:
    """Every message on `topic` (JSON), once at least `at_least` arrived and a quiet second passed."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=100)
    partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
    if not partitions:  # not created yet (a broker that just restarted)
        consumer.close()
        return []
    consumer.assign(partitions)
    consumer.seek_to_beginning(*partitions)
    got: list[dict] = []
    deadline = time.monotonic() + timeout
    quiet_since = None
    try:
        while time.monotonic() < deadline:
            polled = consumer.poll(timeout_ms=300)
            for records in polled.values():
                got.extend({"raw_size": len(r.value), **json.loads(r.value)} for r in records)
            if polled:
                quiet_since = None
            elif len(got) >= at_least:
                quiet_since = quiet_since or time.monotonic()
                if time.monotonic() - quiet_since > 1.0:
                    break
    finally:
        consumer.close()
    return got


