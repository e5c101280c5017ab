"""A build command arriving through Kafka while its dataset is still being ingested by two workers."""
from __future__ import annotations

import json
import threading
import time

from kafka import KafkaProducer

from modelbus.up import ingest_config
from modelbus.commands.kafka import create_topics
from modelbus.commands.transport import InProcessTransport
from modelbus.db import registry
from modelbus.db.engine import make_engine
from modelbus.db.events import EventStore, Schemas
from modelbus.db.lineage import LineageHasher, lineage_events
from modelbus.handlers.workers.ingest import IngestWorker
from modelbus.handlers.log.verify import verify_version
from tests.conftest import kafka_settings
from tests.registry_support import linear_rows, run_builds

PARTITIONS = 2
BEFORE, AFTER = 300, 300
DEADLINE = 90.0


def wait_for(condition, what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_build_during_ingest_uses_exactly_the_events_before_it_with_two_workers(db_url, kafka_bootstrap, topics):
    settings = kafka_settings(db_url, kafka_bootstrap, topics)
    create_topics(settings.kafka, PARTITIONS, [topics.events, topics.errors])
    stop = threading.Event()
    workers, threads, engines = [], [], []
    for _ in range(2):
        # One engine each, as two worker processes would have.
        engine = make_engine(db_url)
        worker = IngestWorker(ingest_config(settings), EventStore(engine, Schemas(declared={"default": 4})), InProcessTransport())
        thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
        thread.start()
        workers.append(worker)
        threads.append(thread)
        engines.append(engine)
    store = EventStore(make_engine(db_url), Schemas(declared={"default": 4}))
    try:
        wait_for(lambda: all(w.ready.is_set() for w in workers), "both ingest workers to get partitions")
        rows = linear_rows(BEFORE + AFTER, seed=40)
        producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, linger_ms=5)
        sent: list[tuple[str, int, int]] = []  # (id, partition, order sent)
        command_order = BEFORE

        def produce(order: int, obj: dict, partition: int) -> None:
            producer.send(topics.events, json.dumps(obj).encode(), partition=partition)
            sent.append((obj["id"], partition, order))

        for i, row in enumerate(rows):
            if i == command_order:
                produce(i, {"type": "command", "payload": "build_linear", "id": "the-build"}, 1)
            produce(i + (i >= command_order), {"type": "training", "id": f"t-{i}",
                                                "payload": ",".join(repr(float(v)) for v in row)}, i % PARTITIONS)
            if i % 25 == 24:
                # Small bursts, so the workers store batches while later ones are still being produced.
                producer.flush()
                time.sleep(0.02)
        producer.flush()
        producer.close()
        wait_for(lambda: store.count() == BEFORE + AFTER + 1, "every event to be ingested")
        assert store.dead_letter_count() == 0
        assert sum(w.counts["accepted"] for w in workers) == BEFORE + AFTER + 1
        assert all(w.counts["accepted"] > 0 for w in workers)  # both shared the partitions
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
        for engine in engines:
            engine.dispose()

    run_builds(store)
    (command,) = store.read(limit=10, name="build_linear")
    training = store.read(limit=10_000, type="training")
    before = [r for r in training if r.position < command.position]
    position_of = {r.event_id: r.position for r in training}
    mv = registry.get_version(store.engine, "linear", "default", 1)
    assert mv is not None and mv.build_position == command.position

    # Exactly the training events before the command in the log: no more, no fewer.
    assert [e["position"] for e in lineage_events(store.engine, "default", command.position)] == [
        r.position for r in before]
    hasher = LineageHasher()
    for row in before:
        hasher.update(row.position, row.payload)
    assert (mv.first_position, mv.last_position, mv.n_events, mv.lineage_digest) == (
        before[0].position, before[-1].position, len(before), hasher.result().digest)
    assert 0 < len(before) < BEFORE + AFTER
    # Within the command's partition the log keeps Kafka's order: what was sent before it is in,
    # what was sent after it is out. The other partition is interleaved however ingest went.
    same_partition = [(order, position_of[eid]) for eid, partition, order in sent if partition == 1 and eid != "the-build"]
    assert all((pos < command.position) == (order < command_order) for order, pos in same_partition)
    assert verify_version(store.engine, mv).ok
