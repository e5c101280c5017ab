"""Ingest on real services: kafka-python produces to Tansu, `modelbus worker --no-handlers`
subprocesses consume into MariaDB. Each test starts as few workers as it can: a consumer
group join on Tansu takes about half of session_timeout_ms (3 s here)."""
from __future__ import annotations

import json
import random
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable

import pytest

from modelbus.commands.kafka import create_topics, topic_ids
from conftest import kafka_settings, settings_env
from kafka_support import (DEADLINE, PENDING, Worker, counts, produce, producer, read_topic, stored, wait_stored,
                           wait_until)
from modelbus.broker import BrokerUnavailable, start_broker
from modelbus.settings import Topics

PARTITIONS = 4
EVENT = "event"  # the expected outcome of a valid message; rejects expect their reason code
DUPLICATE = "duplicate"  # a valid message whose client id an earlier one in its partition used


@dataclass
class Msg:
    """One message to produce, what the worker must make of it, and where it landed."""

    value: bytes | None
    expect: str
    obj: dict | None = None
    partition: int | None = None
    offset: int | None = None

    @property
    def coordinate(self) -> tuple[int, int]:
        return (self.partition, self.offset)


# ---------------------------------------------------------------- messages


def _json(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _values(rng: random.Random, n: int = 4) -> str:
    return ",".join(str(rng.randint(0, 10)) if rng.random() < 0.8 else f"{rng.uniform(0, 10):.3f}" for _ in range(n))


def valid_message(rng: random.Random) -> Msg:
    """A seed-format training record (3 features + label) or build command, optional fields mixed in."""
    if rng.random() < 0.9:
        obj: dict[str, Any] = {"type": "training", "payload": _values(rng)}
    else:
        obj = {"type": "command", "payload": rng.choice(["build_mlp", "build_slr"])}
        if rng.random() < 0.3:
            obj["params"] = {"epochs": rng.randint(1, 5), "seed": rng.randint(0, 9)}
    if rng.random() < 0.3:
        obj["id"] = f"id-{uuid.UUID(int=rng.getrandbits(128)).hex}"
    if rng.random() < 0.2:
        obj["dataset"] = "default"
    if rng.random() < 0.1:
        obj["ts"] = rng.choice([1795430573.5, "2026-11-23T10:00:00Z"])
    return Msg(_json(obj), EVENT, obj)


# Every class of garbage, each as (reason code, a factory of the raw value).
GARBAGE: list[tuple[str, Callable[[random.Random], bytes | None]]] = [
    ("not_utf8", lambda r: b'{"type":"training","payload":"1,2,3,\xff"}'),
    ("not_utf8", lambda r: bytes([0xC3, 0x28, r.randint(0x80, 0xFF)])),
    ("not_json", lambda r: b"type=training payload=1,2,3,4"),
    ("not_json", lambda r: b'{"type":"training","payload":"1,2,3,4"'),
    ("not_json", lambda r: b""),
    ("not_json", lambda r: None),  # a tombstone: a record with a null value
    ("not_object", lambda r: b"[1,2,3,4]"),
    ("not_object", lambda r: b'"1,2,3,4"'),
    ("not_object", lambda r: b"null"),
    ("not_object", lambda r: str(r.randint(0, 99)).encode()),
    ("unknown_type", lambda r: _json({"type": "prediction", "payload": "1,2,3"})),
    ("missing_field", lambda r: _json({"payload": _values(r)})),
    ("missing_field", lambda r: _json({"type": "training"})),
    ("not_numeric", lambda r: _json({"type": "training", "payload": "1,two,3,4"})),
    ("not_numeric", lambda r: _json({"type": "training", "payload": [1, "x", 3, 4]})),
    ("not_finite", lambda r: _json({"type": "training", "payload": "1,NaN,3,4"})),
    ("not_finite", lambda r: _json({"type": "training", "payload": "1,2,-inf,4"})),
    ("not_finite", lambda r: b'{"type":"training","payload":[1,2,Infinity,4]}'),
    ("not_finite", lambda r: b'{"type":"training","payload":[1,2,1e999,4]}'),
    ("wrong_feature_count", lambda r: _json({"type": "training", "payload": _values(r, 3)})),
    ("wrong_feature_count", lambda r: _json({"type": "training", "payload": _values(r, 5)})),
    ("unknown_command", lambda r: _json({"type": "command", "payload": "build_xgboost"})),
    ("unknown_field", lambda r: _json({"type": "training", "payload": _values(r), "label": 1})),
    ("too_large", lambda r: _json({"type": "training", "payload": "1,2,3,4", "ts": "x" * 70_000})),
]


def garbage_message(rng: random.Random) -> Msg:
    """One invalid message of a random class."""
    code, make = rng.choice(GARBAGE)
    return Msg(make(rng), code)


def seed_messages(rng: random.Random, n: int, garbage: float, duplicates: int = 0, partitions: int = PARTITIONS) -> list[Msg]:
    """n messages in partition order: valid ones, garbage, and client-id duplicates of earlier ones."""
    msgs: list[Msg] = []
    with_ids: list[Msg] = []
    for _ in range(n - duplicates):
        msg = garbage_message(rng) if rng.random() < garbage else valid_message(rng)
        msg.partition = rng.randrange(partitions)
        msgs.append(msg)
        if msg.obj and "id" in msg.obj:
            with_ids.append(msg)
    for _ in range(duplicates):
        # Same partition, later offset: the first one is stored, this one is dropped.
        original = rng.choice(with_ids)
        obj = {**original.obj, "payload": _values(rng) if original.obj["type"] == "training" else original.obj["payload"]}
        index = rng.randrange(msgs.index(original) + 1, len(msgs) + 1)
        msgs.insert(index, Msg(_json(obj), DUPLICATE, obj, original.partition))
    return msgs


# ---------------------------------------------------------------- workers


@pytest.fixture
def kafka_env(mysql_db, kafka_bootstrap, topics):
    """Settings, subprocess environment and topics (event topic with PARTITIONS partitions)."""
    settings = kafka_settings(mysql_db, kafka_bootstrap, topics)
    create_topics(settings.kafka, PARTITIONS)
    workers: list[Worker] = []
    yield settings, settings_env(settings), workers
    for worker in workers:
        if worker.alive:
            worker.kill()


# ---------------------------------------------------------------- reading back


def expected_payload(obj: dict) -> dict:
    """The stored body of a valid message: as sent, with the dataset filled in."""
    return {**obj, "dataset": obj.get("dataset", "default")}


def check_log(rows: list[dict], head: int, valid: list[Msg], topic: str, topic_id: str) -> None:
    """The valid messages are in the log once each, positions gap-free and in partition order."""
    assert [r["position"] for r in rows] == list(range(1, len(rows) + 1)), "positions must be gap-free"
    assert head == len(rows)
    assert Counter((r["source_partition"], r["source_offset"]) for r in rows) == Counter(m.coordinate for m in valid)
    by_coordinate = {m.coordinate: m for m in valid}
    for row in rows:
        assert (row["source"], row["source_topic"], row["source_topic_id"]) == ("kafka", topic, topic_id)
        assert json.loads(row["payload"]) == expected_payload(by_coordinate[row["source_partition"], row["source_offset"]].obj)
    for partition in {r["source_partition"] for r in rows}:
        offsets = [r["source_offset"] for r in rows if r["source_partition"] == partition]
        assert offsets == sorted(offsets), f"partition {partition} is out of order in the log"


def check_dead_letters(dead: list[dict], invalid: list[Msg], topic_id: str) -> None:
    """Every invalid message is one dead letter with its reason code and its raw bytes."""
    assert Counter((d["source_partition"], d["source_offset"], d["code"]) for d in dead) == Counter(
        (*m.coordinate, m.expect) for m in invalid
    )
    raw = {m.coordinate: m.value or b"" for m in invalid}
    for letter in dead:
        assert letter["raw"] == raw[letter["source_partition"], letter["source_offset"]]
        assert letter["source_topic_id"] == topic_id


# ---------------------------------------------------------------- tests


def test_end_to_end_10k_mixed_messages(kafka_env):
    """10,000 seed-format messages with garbage of every class: every count exact."""
    settings, env, workers = kafka_env
    rng = random.Random(2)
    msgs = seed_messages(rng, 10_000, garbage=0.15, duplicates=50)
    produce(settings.kafka_bootstrap, settings.topics.events, msgs)
    valid = [m for m in msgs if m.expect == EVENT]
    invalid = [m for m in msgs if m.expect not in (EVENT, DUPLICATE)]
    assert {m.expect for m in invalid} == {code for code, _ in GARBAGE}, "every garbage class is present"

    worker = Worker(env)
    workers.append(worker)
    wait_stored(settings.database_url, len(valid), len(invalid), workers)
    errors = read_topic(settings.kafka_bootstrap, settings.topics.errors, len(invalid))
    assert worker.alive, worker.log()
    assert worker.stop() == 0, worker.log()

    rows, dead, head = stored(settings.database_url)
    topic_id = topic_ids(settings.kafka, [settings.topics.events])[settings.topics.events]
    assert topic_id, "Tansu names each topic incarnation"
    assert len(rows) == len(valid) and len(dead) == len(invalid)
    check_log(rows, head, valid, settings.topics.events, topic_id)
    check_dead_letters(dead, invalid, topic_id)
    # One error_topic message per reject, with its reason and source coordinate.
    assert Counter((e["source"]["partition"], e["source"]["offset"], e["error"]["code"]) for e in errors) == Counter(
        (*m.coordinate, m.expect) for m in invalid
    )


def test_sigkilled_worker_stores_every_message_exactly_once(kafka_env):
    """SIGKILL at random points while consuming; after restarts nothing is lost or doubled."""
    settings, env, workers = kafka_env
    # Small batches make many commits, so the kills land between them as well as inside.
    # A killed member holds its partitions until its session times out: a shorter
    # session makes each restart's join quicker (Tansu: about half of it, plus the wait).
    env = {**env, "MODELBUS_INGEST_BATCH": "200", "MODELBUS_KAFKA_SESSION_TIMEOUT_MS": "3000", "MODELBUS_KAFKA_HEARTBEAT_MS": "500"}
    rng = random.Random(7)
    kills = 3
    msgs = seed_messages(rng, 20_000, garbage=0.05)
    sent: list[Msg] = []
    done = threading.Event()

    def feed() -> None:
        # Produce all along (~1000/s) while the workers die and restart, so each
        # restarted worker finds a backlog and every kill finds one consuming.
        client = producer(settings.kafka_bootstrap)
        for start in range(0, len(msgs), 100):
            produce(settings.kafka_bootstrap, settings.topics.events, msgs[start : start + 100], client)
            sent.extend(msgs[start : start + 100])
            if not done.is_set():
                time.sleep(0.1)
        client.close()

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    killed_at: list[tuple] = []
    in_window = 1  # this kill falls between a database commit and its offset commit
    try:
        for kill in range(kills):
            worker = Worker(env, f"worker {len(workers) + 1}", commit_delay=0.5 if kill == in_window else 0.0)
            workers.append(worker)
            worker.wait_assigned()
            before = counts(settings.database_url)[0]
            wait_until(lambda: counts(settings.database_url)[0] > before, DEADLINE, "the worker to store events", [worker])
            time.sleep(rng.uniform(0.05, 1.5))
            if kill == in_window:
                worker.wait_for(PENDING, after=len(worker.lines))
            worker.kill()
            killed_at.append((len(sent), counts(settings.database_url)))
    finally:
        done.set()
        feeder.join(60)
    assert len(sent) == len(msgs)
    assert len(killed_at) == kills

    last = Worker(env, "final worker")
    workers.append(last)
    valid = [m for m in msgs if m.expect == EVENT]
    invalid = [m for m in msgs if m.expect != EVENT]
    wait_stored(settings.database_url, len(valid), len(invalid), workers)
    time.sleep(1.0)  # let a re-delivery that would double something show up
    assert last.stop() == 0, last.log()
    # The batch stored but not committed when the worker died came again and was dropped.
    assert sum(w.redelivered() for w in workers[in_window + 1 :]) > 0, "\n".join(w.log() for w in workers)

    rows, dead, head = stored(settings.database_url)
    topic_id = topic_ids(settings.kafka, [settings.topics.events])[settings.topics.events]
    check_log(rows, head, valid, settings.topics.events, topic_id)
    check_dead_letters(dead, invalid, topic_id)
    # The payload multiset too: a message stored twice under two coordinates would show here.
    assert Counter(r["payload"] for r in rows) == Counter(
        json.dumps(expected_payload(m.obj), sort_keys=True, separators=(",", ":")) for m in valid
    )
    # error_topic is at-least-once: a kill between the database commit and the
    # broker's ack publishes a reject again; none may be missing.
    errors = read_topic(settings.kafka_bootstrap, settings.topics.errors, len(invalid))
    reported = {(e["source"]["partition"], e["source"]["offset"], e["error"]["code"]) for e in errors}
    assert reported == {(*m.coordinate, m.expect) for m in invalid}


def test_two_workers_split_the_partitions(kafka_env):
    """Two workers in one group each own a non-empty share and together store each message once."""
    settings, env, workers = kafka_env
    # Topics nobody made yet: the two workers race to create them (with the worker's
    # default of 3 partitions) and neither may fail on it.
    fresh = Topics(**{field: f"{name}-fresh" for field, name in settings.topics.model_dump().items()})
    settings = settings.model_copy(update={"topics": fresh})
    env = settings_env(settings)
    partitions = 3
    first, second = Worker(env, "worker A"), Worker(env, "worker B")
    workers += [first, second]

    def split() -> bool:
        a, b = first.assignments(), second.assignments()
        return bool(a and b and a[-1] and b[-1] and sorted(a[-1] + b[-1]) == list(range(partitions)))

    wait_until(split, DEADLINE, "the group to split the partitions between both workers", workers)
    shares = first.assignments()[-1], second.assignments()[-1]

    rng = random.Random(3)
    msgs = seed_messages(rng, 6_000, garbage=0.1, partitions=partitions)
    produce(settings.kafka_bootstrap, settings.topics.events, msgs)
    valid = [m for m in msgs if m.expect == EVENT]
    invalid = [m for m in msgs if m.expect != EVENT]
    wait_stored(settings.database_url, len(valid), len(invalid), workers)
    time.sleep(1.0)
    # Neither rebalanced while storing: each consumed exactly its share.
    assert (first.assignments()[-1], second.assignments()[-1]) == shares, "\n".join(w.log() for w in workers)
    assert first.stop() == 0 and second.stop() == 0, "\n".join(w.log() for w in workers)

    rows, dead, head = stored(settings.database_url)
    topic_id = topic_ids(settings.kafka, [settings.topics.events])[settings.topics.events]
    check_log(rows, head, valid, settings.topics.events, topic_id)
    check_dead_letters(dead, invalid, topic_id)
    for share in shares:
        assert any(r["source_partition"] in share for r in rows)


BAD_INPUT = [
    ("not_utf8", b'{"type":"training","payload":"1,2,3,\xc3\x28"}'),
    ("not_json", b"{type: training, payload: 1,2,3,4}"),
    ("not_object", b'[{"type":"training","payload":"1,2,3,4"}]'),
    ("unknown_type", b'{"type":"trainig","payload":"1,2,3,4"}'),
    ("missing_field", b'{"type":"training"}'),
    ("not_numeric", b'{"type":"training","payload":"1,2,three,4"}'),
    ("not_finite", b'{"type":"training","payload":"1,2,NaN,4"}'),
    ("not_finite", b'{"type":"training","payload":"inf,2,3,4"}'),
    ("wrong_feature_count", b'{"type":"training","payload":"1,2,3"}'),
    # 1 MB: over the 64 KiB message limit, under Tansu's and the producer's (raised) ones.
    ("too_large", b'{"type":"training","payload":"' + b"1," * (512 * 1024 - 20) + b'4"}'),
]


# Messages the parser lets through or the broker delivers although the store cannot keep
# them whole; they used to stall ingest in an endless retry of their batch.
POISON = [
    # A lone surrogate is valid JSON but not Unicode: no database can bind it.
    b'{"type":"training","payload":"1,2,3,4","id":"\\ud800"}',
    # Over MariaDB's 16 MiB max_allowed_packet; Tansu delivers it all the same.
    b"y" * (17 * 1024 * 1024),
]


def test_each_bad_input_class_has_its_reason_and_the_worker_survives(kafka_env):
    """Every bad input class becomes a dead letter and an error_topic message with its own code."""
    settings, env, workers = kafka_env
    worker = Worker(env)
    workers.append(worker)
    big = BAD_INPUT[-1][1]
    assert 1_000_000 <= len(big) <= 1_100_000
    msgs = [Msg(raw, code, partition=i % PARTITIONS) for i, (code, raw) in enumerate(BAD_INPUT)]
    poison = [Msg(raw, "any", partition=i) for i, raw in enumerate(POISON)]
    # After the garbage, on every partition: a valid record proves the worker went on.
    after = [valid_message(random.Random(p)) for p in range(PARTITIONS)]
    for p, msg in enumerate(after):
        msg.partition = p
    produce(settings.kafka_bootstrap, settings.topics.events, msgs + poison + after)

    rejects = len(msgs) + len(poison)
    wait_stored(settings.database_url, len(after), rejects, [worker])
    errors = read_topic(settings.kafka_bootstrap, settings.topics.errors, rejects)
    assert worker.alive, worker.log()
    assert worker.stop() == 0, worker.log()

    rows, dead, _ = stored(settings.database_url)
    topic_id = topic_ids(settings.kafka, [settings.topics.events])[settings.topics.events]
    check_log(rows, len(rows), after, settings.topics.events, topic_id)
    assert len(dead) == len(errors) == rejects
    # The dead letter keeps the whole message, the 1 MB one included.
    coordinates = {m.coordinate for m in msgs}
    check_dead_letters([d for d in dead if (d["source_partition"], d["source_offset"]) in coordinates], msgs, topic_id)
    errors_of = [e for e in errors if (e["source"]["partition"], e["source"]["offset"]) in coordinates]
    assert Counter(e["error"]["code"] for e in errors_of) == Counter(code for code, _ in BAD_INPUT)
    for error in errors:
        assert error["error"]["message"], "each reject says why"
        # The echo is truncated, so error_topic stays far below the broker's message limit.
        assert error["raw_size"] < 16 * 1024
    for error in errors_of:
        sent = next(m for m in msgs if m.coordinate == (error["source"]["partition"], error["source"]["offset"]))
        assert error["raw_bytes"] == len(sent.value)
    large = next(e for e in errors if e["error"]["code"] == "too_large" and e["raw_bytes"] == len(big))
    assert large["truncated"]
    assert large["error"]["message"] == f"message is {len(big)} bytes; the limit is {settings.max_message_bytes}"
    binary = next(e for e in errors_of if e["error"]["code"] == "not_utf8")
    assert binary["raw_encoding"] == "base64"

    # The poison messages are dead letters too; the huge one keeps its first 4 MiB.
    letters = {(d["source_partition"], d["source_offset"]): d for d in dead}
    surrogate, huge = (letters[m.coordinate] for m in poison)
    assert surrogate["raw"] == POISON[0]
    assert surrogate["code"] == "not_utf8"  # the parser catches it; 'unstorable' is the backstop
    assert huge["code"] == "too_large" and huge["raw"] == POISON[1][: 4 * 1024 * 1024]


def test_a_second_broker_on_a_busy_port_is_refused(kafka_bootstrap):
    """`modelbus broker` on a port in use fails instead of reporting the other broker as its own."""
    host, port = kafka_bootstrap.rsplit(":", 1)
    with pytest.raises(BrokerUnavailable, match="cannot listen"):
        start_broker(host, int(port))
