"""The event store, run once on SQLite and once on MySQL (the `store` fixture is parametrised)."""
from __future__ import annotations

import json
import random
import threading
from typing import Any, Sequence

from sqlalchemy import Connection, func, select

from modelbus.messages.parse import parse_event
from modelbus.db.engine import make_engine
from modelbus.db.events import ACCEPTED, DUPLICATE, REJECTED, EventStore, Incoming, Schemas, Source
from modelbus.db.schema import datasets, training_records
from modelbus.handlers.log.base import Handler
from modelbus.handlers.workers.ingest import incoming
from modelbus.handlers.follow.follower import Follower
from modelbus.handlers.log.training import TrainingRecords


def kafka_source(offset: int, partition: int = 0, topic: str = "event_topic", topic_id: str = "t1") -> Source:
    return Source("kafka", topic, topic_id, partition, offset)


def msg(raw: bytes | str, source: Source | None = None, event_id: str | None = None) -> Incoming:
    raw = raw.encode() if isinstance(raw, str) else raw
    return incoming(raw, source or Source("test"), 64 * 1024, event_id)


def training(values: str, **extra: Any) -> str:
    return json.dumps({"type": "training", "payload": values, **extra})


def test_valid_events_get_consecutive_positions(store):
    outcomes = store.append([msg(training("1,2,3,4")), msg('{"type":"command","payload":"build_mlp"}'), msg(training("5,6,7,8"))])
    assert [o.status for o in outcomes] == [ACCEPTED] * 3
    assert [o.position for o in outcomes] == [1, 2, 3]
    assert store.head() == 3
    rows = store.read()
    assert [(r.position, r.type, r.name) for r in rows] == [(1, "training", "training"), (2, "command", "build_mlp"), (3, "training", "training")]
    assert json.loads(rows[0].payload) == {"type": "training", "payload": "1,2,3,4", "dataset": "default"}
    assert store.append([msg(training("9,9,9,9"))])[0].position == 4


def test_redelivered_kafka_message_is_stored_once(store):
    first = store.append([msg(training("1,2,3,4"), kafka_source(10))])
    again = store.append([msg(training("1,2,3,4"), kafka_source(10)), msg(training("1,2,3,5"), kafka_source(11))])
    assert first[0].status == ACCEPTED
    assert (again[0].status, again[0].position) == (DUPLICATE, first[0].position)
    assert again[1].status == ACCEPTED
    assert store.count() == 2


def test_same_offset_on_another_partition_topic_or_topic_id_is_new(store):
    outcomes = store.append(
        [
            msg(training("1,2,3,4"), kafka_source(0)),
            msg(training("1,2,3,4"), kafka_source(0, partition=1)),
            msg(training("1,2,3,4"), kafka_source(0, topic="other")),
            # A recreated topic (or a restarted Tansu) starts its offsets again under a new id.
            msg(training("1,2,3,4"), kafka_source(0, topic_id="t2")),
        ]
    )
    assert [o.status for o in outcomes] == [ACCEPTED] * 4


def test_client_id_is_an_idempotency_key_within_and_across_batches(store):
    outcomes = store.append([msg(training("1,2,3,4", id="a")), msg(training("1,2,3,4", id="a"))])
    assert [o.status for o in outcomes] == [ACCEPTED, DUPLICATE]
    later = store.append([msg(training("9,9,9,9", id="a"), kafka_source(5))])
    assert (later[0].status, later[0].position, later[0].event_id) == (DUPLICATE, 1, "a")
    assert store.count() == 1
    assert store.read()[0].event_id == "a"


def test_events_without_id_get_a_generated_unique_id(store):
    outcomes = store.append([msg(training("1,2,3,4")) for _ in range(3)])
    assert len({o.event_id for o in outcomes}) == 3


def test_rejects_become_dead_letters_with_raw_bytes_reason_and_source(store):
    raw = b"\xff not utf8"
    outcomes = store.append([msg(raw, kafka_source(3)), msg(training("1,2,3,4"), kafka_source(4))])
    assert [o.status for o in outcomes] == [REJECTED, ACCEPTED]
    assert outcomes[0].error.code == "not_utf8"
    (letter,) = store.dead_letters()
    assert letter["raw"] == raw
    assert letter["code"] == "not_utf8"
    assert letter["reason"] == outcomes[0].error.message
    assert (letter["source"], letter["source_topic"], letter["source_partition"], letter["source_offset"]) == ("kafka", "event_topic", 0, 3)
    assert store.head() == 1


def test_redelivered_reject_is_dead_lettered_once(store):
    store.append([msg(b"nope", kafka_source(7))])
    again = store.append([msg(b"nope", kafka_source(7))])
    assert again[0].status == REJECTED and again[0].new is False
    assert store.dead_letter_count() == 1


def test_wrong_feature_count_for_a_declared_dataset(store):
    outcomes = store.append([msg(training("1,2,3"))])
    assert outcomes[0].status == REJECTED
    assert outcomes[0].error.message == "payload has 3 values; dataset 'default' expects 4"
    assert store.dead_letters()[0]["code"] == "wrong_feature_count"


def test_an_undeclared_dataset_learns_its_width_from_its_first_record(store):
    outcomes = store.append(
        [
            msg(training("1,2", dataset="pairs")),
            msg(training("1,2,3", dataset="pairs")),
            msg(training("3,4", dataset="pairs")),
        ]
    )
    assert [o.status for o in outcomes] == [ACCEPTED, REJECTED, ACCEPTED]
    assert outcomes[1].error.message == "payload has 3 values; dataset 'pairs' expects 2"
    assert store.expected_values("pairs") == 2
    later = store.append([msg(training("1,2,3", dataset="pairs"))])
    assert later[0].status == REJECTED
    with store.engine.connect() as conn:
        assert conn.execute(select(datasets.c.n_values, datasets.c.first_position).where(datasets.c.name == "pairs")).one() == (2, 1)


def test_commands_do_not_fix_a_dataset_width(store):
    store.append([msg('{"type":"command","payload":"build_mlp","dataset":"later"}')])
    assert store.expected_values("later") is None


def test_without_auto_datasets_an_undeclared_dataset_is_rejected(engine):
    store = EventStore(engine, Schemas(declared={"default": 4}, auto=False))
    outcome = store.append([msg(training("1,2", dataset="other"))])[0]
    assert (outcome.status, outcome.error.code) == (REJECTED, "unknown_dataset")


def test_read_filters_and_bounds(store):
    store.append(
        [
            msg(training("1,2,3,4")),
            msg('{"type":"command","payload":"build_slr"}'),
            msg(training("1,2", dataset="b")),
            msg('{"type":"command","payload":"build_mlp","dataset":"b"}'),
        ]
    )
    assert [r.position for r in store.read(type="command")] == [2, 4]
    assert [r.position for r in store.read(dataset="b")] == [3, 4]
    assert [r.position for r in store.read(name="build_slr")] == [2]
    assert [r.position for r in store.read(after=1, until=3)] == [2, 3]
    assert [r.position for r in store.read(limit=2)] == [1, 2]
    assert store.count(type="training") == 2
    assert store.count(dataset="b", type="command") == 1


def test_unicode_survives_the_round_trip(store):
    ident = "événement-🚀"
    store.append([msg(training("1,2,3,4", id=ident))])
    row = store.read()[0]
    assert row.event_id == ident
    assert json.loads(row.payload)["id"] == ident


def test_stored_payload_is_canonical_and_reparses(store):
    store.append([msg(b'{ "payload" : [1, 2.5, 3, 4],  "type":"training" }')])
    payload = store.read()[0].payload
    assert payload == '{"dataset":"default","payload":[1,2.5,3,4],"type":"training"}'
    assert parse_event(payload).features == (1.0, 2.5, 3.0)


class Recorder(Handler):
    """Remembers every position it was given, to prove each event arrives exactly once."""

    name = "recorder"
    batch_size = 37

    def __init__(self) -> None:
        self.seen: list[int] = []
        self._pending: list[int] = []

    def apply(self, conn: Connection, events: Sequence, prepared: Any) -> None:
        self._pending = [e.position for e in events]

    def after_commit(self, events: Sequence, prepared: Any) -> None:
        self.seen.extend(self._pending)

    def reset(self, conn: Connection) -> None:
        self.seen.clear()


def test_concurrent_writers_on_mysql_while_handlers_follow(mysql_db):
    """8 threads append while two handlers follow: each sees every event exactly once, in order."""
    engine = make_engine(mysql_db, pool_size=12)
    store = EventStore(engine, Schemas(declared={"default": 4}))
    writers, batches, per_batch = 8, 25, 20
    stop = threading.Event()
    recorder, projection = Recorder(), TrainingRecords()
    followers = [Follower(store, recorder, poll_seconds=0.01), Follower(store, projection, poll_seconds=0.01)]
    threads = [threading.Thread(target=f.run, args=(stop,)) for f in followers]
    for t in threads:
        t.start()

    errors: list[BaseException] = []

    def write(n: int) -> None:
        rng = random.Random(n)
        try:
            for b in range(batches):
                # Varying batch sizes make transactions of different length commit out of start order.
                size = rng.randint(1, per_batch)
                store.append([msg(training(f"{n},{b},{i},{i % 3}", id=f"w{n}-{b}-{i}")) for i in range(size)])
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    pool = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    assert not errors
    head = store.head()
    deadline = threading.Event()
    for _ in range(300):
        if followers[0].position() == head and followers[1].position() == head:
            break
        deadline.wait(0.1)
    stop.set()
    for t in threads:
        t.join()

    assert store.count() == head
    assert recorder.seen == list(range(1, head + 1))
    with engine.connect() as conn:
        positions = conn.execute(select(training_records.c.position).order_by(training_records.c.position)).scalars().all()
        assert conn.execute(select(func.count()).select_from(training_records)).scalar_one() == head
    assert positions == list(range(1, head + 1))
    engine.dispose()
