"""The prediction worker's batch step without a broker: answers keyed like requests, dead letters once,
and a batch whose answers are not acknowledged is retried, never committed."""
from __future__ import annotations

import json
import logging
import threading
from types import SimpleNamespace

import pytest
from kafka.errors import KafkaTimeoutError

from modelbus.commands.kafka import KafkaConfig, Topics, process_until_done
from modelbus.handlers.serving.cache import ModelCache
from modelbus.handlers.serving.reload import apply_update
from modelbus.handlers.workers.predictor import PredictionWorker, PredictorConfig, dump_response
from serving_support import FakeRegistry


class RecordingTransport:
    """Keeps what was published; its flush fails `failures` times (a broker refusing the answers)."""

    def __init__(self, failures: int = 0):
        self.sent: list[tuple[str, bytes, bytes | None]] = []
        self.failures = failures
        self.flushes = 0

    def publish(self, topic, value, key=None):
        self.sent.append((topic, value, key))

    def publish_many(self, topic, messages):
        self.sent.extend((topic, value, key) for value, key in messages)

    def flush(self, timeout=None):
        self.flushes += 1
        if self.failures:
            self.failures -= 1
            raise KafkaTimeoutError("broker refused the batch")

    def close(self):
        pass


def record(offset: int, value: bytes | None, key: bytes | None) -> SimpleNamespace:
    return SimpleNamespace(topic="requests", partition=0, offset=offset, key=key, value=value)


def retried(worker: PredictionWorker, records, stop: threading.Event) -> bool:
    """The worker's batch step as its run loop calls it: retried until answered or stopped."""
    return process_until_done(worker.process, records, stop, log=logging.getLogger("test"), name="predictor", doing="answering")


@pytest.fixture
def worker_parts(store):
    registry = FakeRegistry()
    registry.add("slr")
    topics = Topics(prediction_requests="requests", prediction_responses="responses", errors="errors")
    # The batch step never reaches the broker: process() publishes through the test's transport.
    config = PredictorConfig(kafka=KafkaConfig(bootstrap="unused:9092", topics=topics))
    return config, store, ModelCache(registry)


def test_answers_are_keyed_like_requests_and_bad_ones_are_dead_lettered(worker_parts):
    config, store, cache = worker_parts
    transport = RecordingTransport()
    worker = PredictionWorker(config, store, cache, transport)
    records = [
        record(0, b'{"model":"slr","payload":"1,2,3","id":"a"}', b"ka"),
        record(1, b"not json", b"kb"),
        record(2, None, b"kc"),
        record(3, b'{"model":"slr","payload":"1,2","id":"d"}', None),
    ]
    answers = worker.process(records)
    responses = [(k, json.loads(v)) for t, v, k in transport.sent if t == "responses"]
    assert [k for k, _ in responses] == [b"ka", b"kb", b"kc", None]
    assert [a.get("error", {}).get("code") for _, a in responses] == [None, "not_json", "not_json", "wrong_feature_count"]
    assert responses[0][1] == answers[0] and responses[0][1]["version"] == 1
    notices = [json.loads(v) for t, v, _ in transport.sent if t == "errors"]
    assert [n["error"]["code"] for n in notices] == ["not_json", "not_json", "wrong_feature_count"]
    rows = store.dead_letters()
    assert [(r["code"], r["source_offset"], bytes(r["raw"])) for r in rows] == [
        ("not_json", 1, b"not json"), ("not_json", 2, b""), ("wrong_feature_count", 3, records[3].value)]
    assert worker.counts == {"ok": 1, "error:not_json": 2, "error:wrong_feature_count": 1}


def test_an_unacknowledged_batch_is_answered_again_and_dead_lettered_once(worker_parts):
    config, store, cache = worker_parts
    transport = RecordingTransport(failures=1)
    worker = PredictionWorker(config, store, cache, transport)
    records = [record(7, b'{"model":"slr","payload":"1,2,3","id":"a"}', b"k"), record(8, b"[]", b"k2")]
    with pytest.raises(KafkaTimeoutError):
        worker.process(records)
    assert retried(worker, records, threading.Event()) is True
    assert transport.flushes >= 3  # failed, then the dead-letter flush and the answers' flush
    answered = [json.loads(v)["id"] for t, v, _ in transport.sent if t == "responses"]
    assert answered[-2:] == ["a", None]  # at least once (the first attempt failed at its first flush)
    assert len(store.dead_letters()) == 1  # the request coordinate is unique


def test_a_stopping_worker_gives_up_the_retry_without_answering(worker_parts):
    config, store, cache = worker_parts
    worker = PredictionWorker(config, store, cache, RecordingTransport(failures=100))
    stop = threading.Event()
    stop.set()
    assert retried(worker, [record(1, b"{}", None)], stop) is False


def test_update_notices(worker_parts):
    _, _, cache = worker_parts
    assert apply_update(cache, b'{"model":"slr","dataset":"default","version":1,"uuid":"u","position":5}')
    assert cache.get("slr", "default").version == 1
    assert not apply_update(cache, b"garbage")
    assert not apply_update(cache, b'{"model":1,"dataset":"default"}')
    assert not apply_update(cache, None)


def test_responses_never_carry_nan():
    assert dump_response({"accuracy": float("nan"), "result": 1}) == b'{"accuracy":null,"result":1}'
