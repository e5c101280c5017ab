"""Faults an operator meets in Kafka mode, injected for real: a broker that restarts empty (Tansu keeps
nothing on disk, as a topic deleted and created again on a real cluster), and poison values on both
topics. Each test has a broker of its own, on a port it restarts on, and MariaDB behind."""
from __future__ import annotations

import base64
import json
import re
import time
from collections import Counter
from pathlib import Path

import pytest
import requests
from kafka import KafkaProducer

from modelbus.commands.kafka import create_topics, topic_ids
from conftest import kafka_settings, settings_env
from kafka_support import DEADLINE, Worker, counts, read_topic, stored, wait_stored, wait_until
from modelbus.app import App
from modelbus.broker import free_port, start_broker, stop_broker
from modelbus.settings import Settings
from serving_support import Proc, seed_models

NEW_INCARNATION = "is a new incarnation on the broker"


class Broker:
    """A Tansu broker on a fixed port that the test can restart (and so empty)."""

    def __init__(self, log_dir: Path):
        self.port = free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.log_file = log_dir / "tansu.log"
        self.proc = start_broker("127.0.0.1", self.port, self.log_file)

    def restart(self) -> None:
        """Stop it and start it again on the same port: every topic, offset and group is gone."""
        stop_broker(self.proc)
        self.proc = start_broker("127.0.0.1", self.port, self.log_file)

    def stop(self) -> None:
        stop_broker(self.proc)


@pytest.fixture
def broker(tmp_path):
    own = Broker(tmp_path)
    yield own
    own.stop()


def seeded(mysql_db: str, broker: Broker, topics, **extra) -> tuple[Settings, int]:
    """Kafka settings on `broker`, its topics, one promoted version of each model; and the log head."""
    settings = kafka_settings(mysql_db, broker.bootstrap, topics, predict_batch=64, **extra)
    create_topics(settings.kafka)
    embedded = App(Settings(database_url=mysql_db))
    seed_models(embedded)
    embedded.close()
    return settings, counts(mysql_db)[0]


def training(i: int) -> bytes:
    """A training record whose payload says which one it is."""
    return json.dumps({"type": "training", "payload": f"{i % 7},{i % 5},{i},{i % 3}"}).encode()


def send(bootstrap: str, topic: str, values: list[bytes], keys: list[bytes] | None = None) -> None:
    """Produce every value with a fresh producer (as a client started after the restart would)."""
    client = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    futures = [client.send(topic, value=v, key=keys[i] if keys else None) for i, v in enumerate(values)]
    client.flush()
    for future in futures:
        future.get(timeout=30)
    client.close()


def test_broker_restarted_empty_during_ingest_every_event_stored_once(mysql_db, broker, topics):
    """1,000 events, the broker restarts empty, 3,000 events and 50 rejects: each stored once, none skipped."""
    settings = kafka_settings(mysql_db, broker.bootstrap, topics)
    create_topics(settings.kafka)
    worker = Worker(settings_env(settings))
    try:
        worker.wait_assigned()
        old_id = topic_ids(settings.kafka, [topics.events])[topics.events]
        # A reject before the restart too, so the worker's error_topic producer has a producer id
        # that the restarted broker no longer knows.
        send(broker.bootstrap, topics.events, [training(i) for i in range(1000)] + [b"garbage before"])
        wait_stored(mysql_db, 1000, 1, [worker])

        broker.restart()
        restarted = time.monotonic()
        # Nobody re-creates the topics by hand: the producer's first send and the worker do.
        send(broker.bootstrap, topics.events, [training(i) for i in range(1000, 4000)])
        send(broker.bootstrap, topics.events, [b"garbage %d" % i for i in range(50)])
        wait_stored(mysql_db, 4000, 51, [worker])
        recovery = time.monotonic() - restarted
        time.sleep(2.0)  # a late second copy would show up here
        assert counts(mysql_db) == (4000, 51), worker.log()

        rows, dead, head = stored(mysql_db)
        assert head == 4000 and [r["position"] for r in rows] == list(range(1, 4001))
        payloads = Counter(json.loads(r["payload"])["payload"] for r in rows)
        assert payloads == Counter(json.loads(training(i))["payload"] for i in range(4000))
        new_id = topic_ids(settings.kafka, [topics.events])[topics.events]
        assert new_id and new_id != old_id
        # Each event is stored under the incarnation it was read from.
        assert Counter(r["source_topic_id"] for r in rows) == {old_id: 1000, new_id: 3000}
        assert Counter(d["source_topic_id"] for d in dead) == {old_id: 1, new_id: 50}
        assert {d["code"] for d in dead} == {"not_json"}
        # error_topic came back too (its producer was replaced): each reject is on it, at least once
        # (a batch read again from the new topic's beginning reports its rejects again).
        errors = read_topic(broker.bootstrap, topics.errors, 50)
        assert {e["error"]["code"] for e in errors} == {"not_json"}
        assert {(e["source"]["partition"], e["source"]["offset"]) for e in errors} == {
            (d["source_partition"], d["source_offset"]) for d in dead if d["source_topic_id"] == new_id}
        assert any(NEW_INCARNATION in line for line in worker.lines), worker.log()
        assert worker.alive, worker.log()
        print(f"ingest recovered {recovery:.1f}s after the broker restart")
    finally:
        assert worker.stop() == 0, worker.log()


API_READY = re.compile(r"api ready at (http://\S+)")


def _post_event(url: str, body: dict, deadline: float) -> tuple[int, list[float]]:
    """POST until accepted or the deadline; the status and how long each refused attempt took."""
    refused = []
    while True:
        started = time.monotonic()
        try:
            response = requests.post(f"{url}/api/events", json=body, timeout=30)
            status = response.status_code
        except requests.RequestException:
            status = 0
        if status == 202:
            return status, refused
        refused.append(time.monotonic() - started)
        assert status == 503, f"a broker outage is a 503, got {status}"
        if time.monotonic() > deadline:
            return status, refused
        time.sleep(0.5)


def test_broker_restarted_empty_under_modelbus_up_every_request_answered(mysql_db, broker, topics):
    """`modelbus up` (ingest, predictor, API) through a broker restart: every request sent after it is
    answered, POST /api/events works again, and events posted over HTTP are stored once each."""
    settings, head_before = seeded(mysql_db, broker, topics, predict_wait_ms=10)
    head_before += 1  # the event posted before the restart
    up = Proc(["up", "--port", "0", "--no-scheduler"], settings_env(settings), "modelbus up")
    try:
        url = API_READY.search(up.wait_for("api ready at")).group(1)
        up.wait_for("predictor: partitions assigned")

        def requests_for(prefix: str, n: int) -> tuple[list[bytes], list[bytes]]:
            ids = [f"{prefix}-{i}" for i in range(n)]
            return ([json.dumps({"id": i, "model": "mlp", "payload": f"{i[-1]},4,5"}).encode() for i in ids],
                    [i.encode() for i in ids])

        # The API's producer, like the predictor's, gets a producer id the restarted broker will not know.
        assert requests.post(f"{url}/api/events", json={"type": "training", "payload": "1,2,3,4", "id": "http-before"},
                             timeout=30).status_code == 202
        values, keys = requests_for("before", 100)
        send(broker.bootstrap, topics.prediction_requests, values, keys)
        answered = read_topic(broker.bootstrap, topics.prediction_responses, 100)
        assert {a["id"] for a in answered} == {k.decode() for k in keys}

        broker.restart()
        restarted = time.monotonic()
        status, refused = _post_event(url, {"type": "training", "payload": "1,2,3,4", "id": "http-0"},
                                      time.monotonic() + DEADLINE)
        assert status == 202, up.log()
        values, keys = requests_for("after", 330)
        send(broker.bootstrap, topics.prediction_requests, values, keys)
        # While the broker was unreachable or its topics missing, each refusal came within seconds.
        assert all(seconds < 12 for seconds in refused), refused
        for i in range(1, 50):
            assert requests.post(f"{url}/api/events", json={"type": "training", "payload": f"{i},2,3,4",
                                                            "id": f"http-{i}"}, timeout=30).status_code == 202

        def answered_after() -> bool:
            got = read_topic(broker.bootstrap, topics.prediction_responses, 330, timeout=5)
            return {k.decode() for k in keys} <= {a["id"] for a in got if "error" not in a}

        wait_until(answered_after, DEADLINE, "every request sent after the restart to be answered", [up])
        recovery = time.monotonic() - restarted
        wait_stored(mysql_db, head_before + 50, 0, [up])
        time.sleep(2.0)
        rows, _, _ = stored(mysql_db)
        http_ids = Counter(json.loads(r["payload"]).get("id") for r in rows if r["position"] > head_before)
        assert http_ids == Counter(f"http-{i}" for i in range(50))
        assert any(NEW_INCARNATION in line for line in up.lines), up.log()
        assert up.alive, up.log()
        print("\n".join(line for line in up.lines if "replacing the producer" in line))
        print(f"modelbus up answered again {recovery:.1f}s after the broker restart; "
              f"{len(refused)} POSTs refused meanwhile, the slowest in {max(refused, default=0):.1f}s")
    finally:
        assert up.stop() == 0, up.log()


BIG = "9" * 400


def test_poison_values_on_both_topics_are_dead_letters_and_nothing_behind_them_waits(mysql_db, broker, topics):
    """A 400-digit integer on event_topic and on prediction_request_topic: a dead letter with its reason
    (and an error answer), and every message after it is stored or answered."""
    settings, head_before = seeded(mysql_db, broker, topics, predict_wait_ms=10)
    up = Proc(["up", "--no-api", "--no-scheduler"], settings_env(settings), "modelbus up")
    try:
        up.wait_for("ingest: partitions assigned")
        up.wait_for("predictor: partitions assigned")
        poison = f'{{"type":"training","payload":[1,2,{BIG},4]}}'.encode()
        # One partition, so the good ones come after the poison in the same batch.
        client = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
        for value in [poison] + [training(i) for i in range(20)]:
            client.send(topics.events, value=value, partition=0)
        bad_request = f'{{"id":"poison","model":"mlp","payload":[1,{BIG},3]}}'.encode()
        for i, value in enumerate([bad_request] + [json.dumps({"id": f"ok-{i}", "model": "mlp", "payload": "3,4,5"}).encode()
                                                   for i in range(20)]):
            client.send(topics.prediction_requests, value=value, key=b"k%d" % i, partition=0)
        client.flush()
        client.close()

        wait_stored(mysql_db, head_before + 20, 2, [up])
        answers = read_topic(broker.bootstrap, topics.prediction_responses, 21)
        by_id = {a["id"]: a for a in answers}
        assert by_id["poison"]["error"]["code"] == "out_of_range", by_id["poison"]
        assert all("result" in by_id[f"ok-{i}"] for i in range(20))
        _, dead, _ = stored(mysql_db)
        assert sorted((d["source_topic_id"] is not None, d["code"]) for d in dead) == [(True, "out_of_range")] * 2
        assert {bytes(d["raw"]) for d in dead} == {poison, bad_request}
        assert up.alive, up.log()
    finally:
        assert up.stop() == 0, up.log()


REFUSE_EVENT = """CREATE TRIGGER refuse_marked_event BEFORE INSERT ON events FOR EACH ROW
IF NEW.payload LIKE '%refuse-%' THEN SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'the store refuses this event'; END IF"""
REFUSE_DEAD_LETTER = """CREATE TRIGGER refuse_marked_dead_letter BEFORE INSERT ON dead_letters FOR EACH ROW
IF (NEW.code = 'wrong_feature_count' AND NEW.raw LIKE '%refuse-me%')
   OR (NEW.code = 'unstorable' AND NEW.raw LIKE '%refuse-always%') THEN
SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'the store refuses this dead letter'; END IF"""


def test_a_message_the_database_refuses_is_isolated_and_everything_else_goes_on(mysql_db, broker, topics):
    """MariaDB refuses one event (a trigger: a rule the parser cannot know) and one request's dead letter:
    the batch is split until that message is alone, it becomes a dead letter, and the rest is stored
    and answered."""
    from sqlalchemy import text

    from modelbus.db.engine import make_engine

    settings, head_before = seeded(mysql_db, broker, topics, predict_wait_ms=50)
    engine = make_engine(mysql_db)
    with engine.begin() as conn:
        conn.execute(text(REFUSE_EVENT))
        conn.execute(text(REFUSE_DEAD_LETTER))
    up = Proc(["up", "--no-api", "--no-scheduler"], settings_env(settings), "modelbus up")
    try:
        up.wait_for("ingest: partitions assigned")
        up.wait_for("predictor: partitions assigned")
        refused = json.dumps({"type": "training", "payload": "1,2,3,4", "id": "refuse-me"}).encode()
        # Refused as an event and, as it is, as a dead letter too.
        always = json.dumps({"type": "training", "payload": "1,2,3,4", "id": "refuse-always"}).encode()
        bad = json.dumps({"id": "refuse-me", "model": "mlp", "payload": "1,2"}).encode()
        client = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all", linger_ms=50)
        for value in [training(i) for i in range(10)] + [refused, always] + [training(i) for i in range(10, 20)]:
            client.send(topics.events, value=value, partition=0)
        requests_sent = [json.dumps({"id": f"ok-{i}", "model": "mlp", "payload": "3,4,5"}).encode() for i in range(20)]
        for value in requests_sent[:10] + [bad] + requests_sent[10:]:
            client.send(topics.prediction_requests, value=value, key=b"k", partition=0)
        client.flush()
        client.close()

        wait_stored(mysql_db, head_before + 20, 3, [up])
        answers = read_topic(broker.bootstrap, topics.prediction_responses, 21)
        by_id = {a["id"]: a for a in answers}
        assert all("result" in by_id[f"ok-{i}"] for i in range(20))
        assert by_id["refuse-me"]["error"]["code"] == "wrong_feature_count"
        _, dead, _ = stored(mysql_db)
        assert sorted(d["code"] for d in dead) == ["internal", "unstorable", "unstorable"]
        kept = sorted(bytes(d["raw"]) for d in dead if d["code"] == "unstorable")
        assert kept == sorted([refused, base64.b64encode(always)])
        internal = next(d for d in dead if d["code"] == "internal")
        assert bytes(internal["raw"]) == bad
        assert any("splitting it to find the item at fault" in line for line in up.lines), up.log()
        assert up.alive, up.log()
    finally:
        with engine.begin() as conn:
            conn.execute(text("DROP TRIGGER IF EXISTS refuse_marked_event"))
            conn.execute(text("DROP TRIGGER IF EXISTS refuse_marked_dead_letter"))
        engine.dispose()
        assert up.stop() == 0, up.log()
