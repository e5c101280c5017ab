"""Followers, leases and replay on SQLite and MySQL."""
from __future__ import annotations

import json
import threading
from typing import Any, Sequence

import pytest
from sqlalchemy import Connection, select

from modelbus.db import positions
from modelbus.db.positions import LostLease
from modelbus.db.schema import training_records
from modelbus.handlers.follow.replay import replay_handler
from modelbus.handlers.follow.follower import Follower
from modelbus.handlers.log.training import TrainingRecords
from tests.test_event_store import msg, training


def projection(engine) -> list[tuple]:
    with engine.connect() as conn:
        rows = conn.execute(select(training_records).order_by(training_records.c.position))
        return [(r.position, r.dataset, json.loads(r.features), r.label) for r in rows]


def fill(store, n: int = 50) -> None:
    items = []
    for i in range(n):
        items.append(msg(training(f"{i},{i + 1},{i + 2},{i % 4}")))
        if i % 10 == 9:
            items.append(msg('{"type":"command","payload":"build_mlp"}'))
    store.append(items)


def test_projection_follows_the_log_and_skips_other_types(store):
    fill(store)
    follower = Follower(store, TrainingRecords())
    assert follower.catch_up() == 50
    assert follower.position() == store.head() == 55
    rows = projection(store.engine)
    assert len(rows) == 50
    assert rows[0] == (1, "default", [0.0, 1.0, 2.0], 0.0)
    # Commands are not training records, and the position still reaches the head.
    assert 11 not in {r[0] for r in rows}


def test_a_failing_apply_moves_neither_projection_nor_position(store):
    fill(store, 10)

    class Broken(TrainingRecords):
        def apply(self, conn, events, prepared):
            super().apply(conn, events, prepared)
            # An environmental failure (OSError), not the events': nothing is set aside.
            raise OSError("disk on fire")

    follower = Follower(store, Broken())
    with pytest.raises(OSError):
        follower.step()
    assert follower.position() == 0
    assert projection(store.engine) == []
    # The same events apply once when the handler works again: resume where it stopped.
    assert Follower(store, TrainingRecords(), follower.owner).catch_up() == 10
    assert len(projection(store.engine)) == 10


def test_run_retries_after_a_failure_without_doubling(store):
    fill(store, 30)
    failures = {"left": 2}

    class Flaky(TrainingRecords):
        batch_size = 7

        def apply(self, conn, events, prepared):
            if failures["left"] and events[0].position > 10:
                failures["left"] -= 1
                raise ConnectionError("transient")
            super().apply(conn, events, prepared)

    follower = Follower(store, Flaky(), poll_seconds=0.01)
    stop = threading.Event()
    thread = threading.Thread(target=follower.run, args=(stop,))
    thread.start()
    for _ in range(200):
        if follower.position() == store.head():
            break
        stop.wait(0.1)
    stop.set()
    thread.join()
    assert failures["left"] == 0
    rows = projection(store.engine)
    assert [r[0] for r in rows] == sorted({r[0] for r in rows})
    assert len(rows) == 30


def test_only_the_lease_holder_works(store):
    fill(store, 5)
    first = Follower(store, TrainingRecords(), "first")
    second = Follower(store, TrainingRecords(), "second")
    assert first.step() == 5
    store.append([msg(training("1,1,1,1"))])
    assert second.step() is None
    positions.release(store.engine, "training_records", "first")
    assert second.step() == 1
    assert len(projection(store.engine)) == 6


def test_an_expired_lease_is_taken_over(store):
    fill(store, 3)
    stale = Follower(store, TrainingRecords(), "stale", lease_seconds=-1)
    assert stale.step() == 3
    assert Follower(store, TrainingRecords(), "fresh").step() == 0


def test_losing_the_lease_mid_batch_rolls_the_batch_back(store):
    fill(store, 4)

    class Slow(TrainingRecords):
        def prepare(self, events, stop=None):
            # Another process resets the position while this one is working.
            with store.engine.begin() as conn:
                positions.reset(conn, "training_records", "me")
                conn.execute(
                    positions.handler_positions.update()
                    .where(positions.handler_positions.c.name == "training_records")
                    .values(owner="thief")
                )

    with pytest.raises(LostLease):
        Follower(store, Slow(), "me").step()
    assert projection(store.engine) == []


def test_replay_rebuilds_an_identical_projection(store):
    fill(store, 120)
    store.append([msg(training("7,8", dataset="pairs")), msg(training("9,10", dataset="pairs"))])
    follower = Follower(store, TrainingRecords())
    follower.catch_up()
    positions.release(store.engine, "training_records", follower.owner)
    original = projection(store.engine)
    assert len(original) == 122
    with store.engine.begin() as conn:
        conn.execute(training_records.delete().where(training_records.c.position < 40))
    assert replay_handler(store, TrainingRecords(), progress=False) == 122
    assert projection(store.engine) == original


def test_replay_refuses_while_another_process_holds_the_lease(store):
    fill(store, 2)
    positions.ensure(store.engine, "training_records")
    assert positions.claim(store.engine, "training_records", "busy", 60) == 0
    with pytest.raises(LostLease, match="running in another process"):
        replay_handler(store, TrainingRecords(), wait_seconds=0.5, progress=False)


class Counting(TrainingRecords):
    name = "counting"
    batch_size = 3

    def __init__(self) -> None:
        self.batches: list[list[int]] = []

    def apply(self, conn: Connection, events: Sequence, prepared: Any) -> None:
        self.batches.append([e.position for e in events])


def test_batches_respect_the_handler_batch_size(store):
    fill(store, 8)
    handler = Counting()
    Follower(store, handler).catch_up()
    assert [len(b) for b in handler.batches] == [3, 3, 2]


def test_the_widest_accepted_record_fits_the_projection(store):
    """10,000 values (the parser's limit) are ~70 KB of JSON: more than a MySQL TEXT column holds."""
    # "100," in the message (40 KB, under the 64 KiB message limit) is "100.0, " when projected.
    values = ",".join(["100"] * 10_000)
    (outcome,) = store.append([msg(training(values, dataset="wide"))])
    assert outcome.status == "accepted"
    follower = Follower(store, TrainingRecords())
    assert follower.catch_up() == 1
    ((position, dataset, features, label),) = projection(store.engine)
    assert (dataset, len(features), label) == ("wide", 9_999, 100.0)


def test_stopping_during_a_long_prepare_releases_the_lease(store):
    """SIGTERM mid-build: the process exits within its timeout and the next owner need not wait out the lease."""
    from modelbus.runtime import Services

    fill(store, 3)
    release = threading.Event()

    class Slow(TrainingRecords):
        def prepare(self, events, stop=None):
            release.wait(30)  # a long build that does not look at the stop event

    services = Services()
    follower = Follower(store, Slow(), "stopping", poll_seconds=0.01)
    services.start("slow", follower.run)
    services.at_exit(follower.release)
    for _ in range(100):
        if positions.states(store.engine)[0].owner == "stopping":
            break
        release.wait(0.05)
    services.stop.set()
    assert services.wait(timeout=0.5)
    (state,) = positions.states(store.engine)
    assert (state.owner, state.position) == (None, 0)
    # The abandoned batch cannot commit after another process took over.
    assert Follower(store, TrainingRecords(), "next").step() == 3
    release.set()
    for thread in services._threads:
        thread.join(10)
    assert [r[0] for r in projection(store.engine)] == [1, 2, 3]
