"""The SQL store beyond the contract: its tables, its append retries, MySQL under concurrent writers."""
from __future__ import annotations

import random
import threading
from typing import Any, Sequence

import pytest
from sqlalchemy import Connection, func, select

from modelbus.db.engine import make_engine
from modelbus.db.errors import Conflict, Refused
from modelbus.db.events import ACCEPTED, EventStore, Schemas
from modelbus.db.schema import datasets, training_records
from modelbus.handlers.follow.follower import Follower
from modelbus.handlers.log.base import Handler
from modelbus.handlers.log.training import TrainingRecords
from tests.test_event_store import msg, training


def test_a_learned_dataset_width_is_kept_with_the_position_that_set_it(store):
    store.append([msg(training("1,2,3", dataset="triples")), msg(training("4,5", dataset="pairs"))])
    with store.engine.connect() as conn:
        rows = conn.execute(select(datasets.c.name, datasets.c.n_values, datasets.c.first_position)
                            .order_by(datasets.c.name)).all()
    assert [tuple(r) for r in rows] == [("pairs", 2, 2), ("triples", 3, 1)]


def test_append_retries_a_conflict_and_stores_once(store, monkeypatch):
    from modelbus.db import events

    real, calls = events.append_batch, []

    def busy_once(conn, items, schemas):
        calls.append(len(items))
        if len(calls) == 1:
            raise Conflict("lock wait timeout", error="OperationalError", code="1205")
        return real(conn, items, schemas)

    monkeypatch.setattr(events, "append_batch", busy_once)
    (outcome,) = store.append([msg(training("1,2,3,4"))])
    assert outcome.status == ACCEPTED and calls == [1, 1] and store.count() == 1


def test_append_does_not_retry_a_refusal(store, monkeypatch):
    from modelbus.db import events

    calls = []

    def refuse(conn, items, schemas):
        calls.append(1)
        raise Refused("out of range", error="DataError", code="1264")

    monkeypatch.setattr(events, "append_batch", refuse)
    with pytest.raises(Refused):
        store.append([msg(training("1,2,3,4"))])
    assert calls == [1] and store.head() == 0


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
