"""The event-log contract (db.contracts.EventLog and Store): what any backend must pass.

Each test runs on every backend of conftest.BACKENDS and uses the store only through the
contract; what is particular to the SQL store is in test_sql_store.py.
"""
from __future__ import annotations

import json
import threading
from typing import Any

import pytest

from modelbus.db.contracts import EventLog, HandlerFailures, HandlerPositions, Registry, Store
from modelbus.db.events import ACCEPTED, DUPLICATE, REJECTED, Incoming, Schemas, Source
from modelbus.messages.parse import parse_event
from modelbus.handlers.workers.ingest import incoming


def kafka_source(offset: int, partition: int = 0, topic: str = "event_topic", topic_id: str = "t1") -> Source:
    return Source("kafka", topic, topic_id, partition, offset)


def msg(raw: bytes | str, source: Source | None = None, event_id: str | None = None) -> Incoming:
    raw = raw.encode() if isinstance(raw, str) else raw
    return incoming(raw, source or Source("test"), 64 * 1024, event_id)


def training(values: str, **extra: Any) -> str:
    return json.dumps({"type": "training", "payload": values, **extra})


def test_the_store_keeps_every_contract(store):
    assert isinstance(store, Store) and isinstance(store, EventLog)
    assert isinstance(store.positions, HandlerPositions)
    assert isinstance(store.failures, HandlerFailures)
    assert isinstance(store.registry, Registry)
    assert store.reachable()


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


def test_commands_do_not_fix_a_dataset_width(store):
    store.append([msg('{"type":"command","payload":"build_mlp","dataset":"later"}')])
    assert store.expected_values("later") is None


def test_without_auto_datasets_an_undeclared_dataset_is_rejected(store_with):
    store = store_with(Schemas(declared={"default": 4}, auto=False))
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
    # Lean: the same events, without source and received_at.
    full, lean = store.read(dataset="b"), store.read(dataset="b", lean=True)
    assert [(r.position, r.event_id, r.type, r.name, r.dataset, r.payload) for r in lean] == [
        (r.position, r.event_id, r.type, r.name, r.dataset, r.payload) for r in full]
    assert {(r.source, r.received_at) for r in lean} == {("", None)} and all(r.received_at for r in full)


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


def test_position_of_and_count_by_id(store):
    store.append([msg(training("1,2,3,4", id="a")), msg(training("1,2,3,5", id="b"))])
    assert (store.position_of("b"), store.position_of("nope")) == (2, None)
    assert store.count(event_id="a") == 1 and store.count(event_id="nope") == 0


def test_dead_letters_page_by_id(store):
    store.append([msg(f"bad {i}".encode(), kafka_source(i)) for i in range(5)])
    first = store.dead_letters(limit=2)
    assert [bytes(d["raw"]) for d in first] == [b"bad 0", b"bad 1"]
    rest = store.dead_letters(after=first[-1]["id"])
    assert [bytes(d["raw"]) for d in rest] == [b"bad 2", b"bad 3", b"bad 4"]
    assert store.dead_letter_count() == 5 and store.head() == 0


def test_append_in_commits_with_the_transaction_or_not_at_all(store):
    store.append([msg(training("1,2,3,4"))])
    with pytest.raises(RuntimeError):
        with store.transaction() as tx:
            (outcome,) = store.append_in(tx, [msg(training("5,6,7,8", id="inside"))])
            assert outcome.position == 2
            raise RuntimeError("the handler failed after appending")
    assert (store.head(), store.position_of("inside")) == (1, None)
    with store.transaction() as tx:
        store.append_in(tx, [msg(training("5,6,7,8", id="inside"))])
    assert (store.head(), store.position_of("inside")) == (2, 2)


def test_an_accepted_append_wakes_waiting_followers(store):
    generation = store.generation
    woke: list[int] = []
    waiter = threading.Thread(target=lambda: woke.append(store.wait_for_append(generation, 30)))
    waiter.start()
    store.append([msg(training("1,2,3,4"))])
    waiter.join(30)
    assert woke and woke[0] != generation
    # Nothing new (a duplicate, a dead letter): nobody is woken for nothing.
    now = store.generation
    store.append([msg(training("1,2,3,4", id=store.read()[0].event_id)), msg(b"bad")])
    assert store.wait_for_append(now, 0) == now


def test_awkward_text_and_a_batch_over_one_statement_come_back_exactly(store):
    # MySQL appends render their rows into multi-row INSERTs: quotes, backslashes, percent
    # signs and non-ASCII must survive, and a batch bigger than one statement is split.
    awkward = ["it's", 'a "quote"', "back\\slash", "100% %s %(x)s", "é 😀 \u2028 x", "\x00nul", "line\nbreak"]
    wide = ",".join(["1.25"] * 9_999 + ["0"])  # 50 kB, the most values a record may carry
    items = [msg(training("1,2,3,4", id=text)) for text in awkward]
    items += [msg(training(wide, id=f"wide-{i}", dataset="wide"), kafka_source(i)) for i in range(40)]
    outcomes = store.append(items)
    assert [o.status for o in outcomes] == [ACCEPTED] * len(items)
    rows = store.read(limit=100)
    assert [r.event_id for r in rows] == awkward + [f"wide-{i}" for i in range(40)]
    assert [json.loads(r.payload)["payload"] for r in rows] == ["1,2,3,4"] * len(awkward) + [wide] * 40
    assert store.append([msg(training(wide, dataset="wide"), kafka_source(39))])[0].status == DUPLICATE
