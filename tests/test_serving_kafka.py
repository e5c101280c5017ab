"""Serving over Tansu and MariaDB: `modelbus predictor` answers kafka-python requests, bad requests get
precise errors and dead letters on both paths, and a promotion reaches both paths without a failed answer."""
from __future__ import annotations

import json
import random
import threading
import time
from typing import Any

import numpy as np
import pytest
import requests
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from modelbus.web import create_api as create_app
from modelbus.builders import get_builder
from modelbus.commands.kafka import create_topics
from conftest import kafka_settings, settings_env
from modelbus.db import registry
from modelbus.db.engine import make_engine
from modelbus.db.events import Source
from modelbus.handlers.workers.ingest import incoming
from modelbus.app import App
from modelbus.broker import free_port
from modelbus.settings import Settings
from serving_support import Proc, run_handlers, seed_models

N_REQUESTS = 5000


@pytest.fixture
def env(mysql_db, kafka_bootstrap, topics):
    """Kafka settings on a store holding darcey and one promoted version of each model."""
    settings = kafka_settings(mysql_db, kafka_bootstrap, topics, predict_batch=256, predict_wait_ms=10)
    create_topics(settings.kafka, 3)
    embedded = App(Settings(database_url=mysql_db))
    seed_models(embedded)
    embedded.close()
    procs: list[Proc] = []
    yield settings, procs
    for proc in procs:
        proc.stop()


def producer(settings) -> KafkaProducer:
    # Room for the 1 MB request (the default request limit is 1 MiB).
    return KafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all", linger_ms=5,
                         max_request_size=4 * 1024 * 1024)


class Responses:
    """Reads prediction_response_topic from the beginning, in a thread, keyed by message key."""

    def __init__(self, settings):
        self.by_key: dict[bytes, list[tuple[float, dict]]] = {}
        self.stop = threading.Event()
        topic = settings.topics.prediction_responses
        self.consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=None,
                                      enable_auto_commit=False, fetch_max_wait_ms=10)
        parts = self.consumer.partitions_for_topic(topic)
        assert parts, f"{topic} does not exist"
        assigned = [TopicPartition(topic, p) for p in parts]
        self.consumer.assign(assigned)
        self.consumer.seek_to_beginning(*assigned)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            for records in self.consumer.poll(timeout_ms=200).values():
                now = time.monotonic()
                for record in records:
                    self.by_key.setdefault(record.key, []).append((now, json.loads(record.value)))

    def wait(self, keys: set[bytes], timeout: float, procs: list[Proc]) -> None:
        deadline = time.monotonic() + timeout
        while not keys <= set(self.by_key):
            if time.monotonic() > deadline:
                missing = len(keys - set(self.by_key))
                pytest.fail(f"{missing} of {len(keys)} responses missing after {timeout:.0f}s\n"
                            + "\n".join(p.log() for p in procs))
            time.sleep(0.1)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        self.consumer.close()


def start_predictor(settings, procs: list[Proc]) -> Proc:
    proc = Proc(["predictor"], settings_env(settings), "modelbus predictor")
    procs.append(proc)
    proc.wait_for("predictor: partitions assigned", 90)
    return proc


def test_5000_requests_get_5000_answers_equal_to_the_model(env):
    settings, procs = env
    engine = make_engine(settings.database_url)
    production = {kind: registry.production(engine, kind, "default") for kind in ("mlp", "slr", "linear")}
    models = {kind: get_builder(kind).load(mv.artifact) for kind, mv in production.items()}
    start_predictor(settings, procs)
    responses = Responses(settings)
    rng = random.Random(4)
    sent: dict[bytes, dict[str, Any]] = {}
    client = producer(settings)
    for i in range(N_REQUESTS):
        kind = ("mlp", "slr", "linear")[i % 3]
        row = [rng.randint(0, 10) if rng.random() < 0.7 else round(rng.uniform(0, 10), 3) for _ in range(3)]
        request: dict[str, Any] = {"model": kind, "payload": ",".join(map(str, row)) if i % 2 else row, "id": f"req-{i}"}
        if i % 10 == 0:
            request["version"] = 1
        if i % 7 == 0:
            request["dataset"] = "default"
        key = f"key-{i}".encode()
        sent[key] = request | {"row": row}
        client.send(settings.topics.prediction_requests, json.dumps(request).encode(), key=key)
    client.flush()
    client.close()
    responses.wait(set(sent), 180, procs)
    responses.close()
    assert len(responses.by_key) == N_REQUESTS
    for key, request in sent.items():
        answers = responses.by_key[key]
        assert all(a == answers[0][1] for _, a in answers)  # a redelivery answers the same
        answer = answers[0][1]
        kind, mv = request["model"], production[request["model"]]
        assert "error" not in answer, answer
        assert (answer["id"], answer["model"], answer["dataset"]) == (request["id"], kind, "default")
        assert (answer["version"], answer["modelid"], answer["accuracy"]) == (mv.version, mv.uuid, mv.main_metric)
        X = np.array([request["row"]], dtype=np.float64)
        assert answer["result"] == pytest.approx(float(models[kind].predict(X)[0]), rel=1e-9, abs=1e-9)
        if kind == "mlp":
            assert answer["probabilities"] == pytest.approx(list(models[kind].predict_proba(X)[0]), abs=1e-6)
    engine.dispose()


def _json(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


# The ingest tests' malformed classes, as prediction requests: (expected code, raw value).
MALFORMED: list[tuple[str, bytes | None]] = [
    ("not_utf8", b'{"model":"mlp","payload":"1,2,\xff"}'),
    ("not_utf8", bytes([0xC3, 0x28, 0x90])),
    ("not_json", b"model=mlp payload=1,2,3"),
    ("not_json", b'{"model":"mlp","payload":"1,2,3"'),
    ("not_json", b""),
    ("not_json", None),  # a tombstone
    ("not_object", b"[1,2,3]"),
    ("not_object", b'"1,2,3"'),
    ("not_object", b"null"),
    ("not_object", b"42"),
    ("unknown_model", _json({"model": "xgboost", "payload": "1,2,3", "id": "m1"})),
    ("missing_field", _json({"payload": "1,2,3", "id": "m2"})),
    ("missing_field", _json({"model": "mlp", "id": "m3"})),
    ("not_numeric", _json({"model": "mlp", "payload": "1,two,3", "id": "m4"})),
    ("not_numeric", _json({"model": "slr", "payload": [1, "x", 3], "id": "m5"})),
    ("not_finite", _json({"model": "mlp", "payload": "1,NaN,3", "id": "m6"})),
    ("not_finite", _json({"model": "linear", "payload": "1,2,-inf", "id": "m7"})),
    ("not_finite", b'{"model":"mlp","payload":[1,2,Infinity],"id":"m8"}'),
    ("not_finite", b'{"model":"mlp","payload":[1,2,1e999],"id":"m9"}'),
    ("wrong_feature_count", _json({"model": "mlp", "payload": "1,2", "id": "m10"})),
    ("wrong_feature_count", _json({"model": "linear", "payload": "1,2,3,4,5", "id": "m11"})),
    ("no_production_version", _json({"model": "mlp", "payload": "1,2,3", "dataset": "elsewhere", "id": "m12"})),
    ("unknown_version", _json({"model": "slr", "payload": "1,2,3", "version": 42, "id": "m13"})),
    ("unknown_field", _json({"model": "mlp", "payload": "1,2,3", "label": 1, "id": "m14"})),
    ("bad_field", _json({"model": "mlp", "payload": "1,2,3", "version": "1", "id": "m15"})),
    ("too_large", _json({"model": "mlp", "payload": ",".join(["1"] * 500_000), "id": "m16"})),  # 1 MB
]


def test_malformed_requests_get_precise_errors_and_dead_letters_on_both_paths(env):
    settings, procs = env
    assert len(MALFORMED[-1][1]) > 1_000_000
    predictor = start_predictor(settings, procs)
    responses = Responses(settings)
    client = producer(settings)
    keys = {}
    good_key = b"good-after"
    for i, (code, raw) in enumerate(MALFORMED):
        key = f"bad-{i}".encode()
        keys[key] = (code, raw)
        client.send(settings.topics.prediction_requests, raw, key=key)
    client.send(settings.topics.prediction_requests, _json({"model": "mlp", "payload": "3,4,5"}), key=good_key)
    client.flush()
    client.close()
    responses.wait(set(keys) | {good_key}, 120, procs)
    responses.close()
    assert predictor.alive
    assert "error" not in responses.by_key[good_key][0][1]

    http_app = App(Settings(database_url=settings.database_url))
    flask_app = create_app(http_app)
    http = flask_app.test_client()
    for key, (code, raw) in keys.items():
        answer = responses.by_key[key][0][1]
        assert answer["error"]["code"] == code, (raw[:80] if raw else raw, answer)
        expected_id = json.loads(raw).get("id") if code not in ("not_utf8", "not_json", "not_object") else None
        assert expected_id is None or expected_id.startswith("m")
        assert answer["id"] == expected_id
        # The HTTP path gives the same error for the same bytes.
        if raw is not None:
            body = http.post("/api/predict", data=raw, content_type="application/json").get_json()
            if isinstance(body, list):
                # An array is a list of requests over HTTP: each of its items is rejected instead.
                assert raw.startswith(b"[") and {a["error"]["code"] for a in body} == {code}
            else:
                assert body["error"] == answer["error"], (code, body, answer)
    flask_app.extensions["modelbus"].close()

    # Every bad request is a dead letter with its Kafka coordinate, and a notice on error_topic.
    rows = [r for r in http_app.store.dead_letters(after=0, limit=1000) if r["source_topic"] == settings.topics.prediction_requests]
    assert sorted(r["code"] for r in rows) == sorted(code for code, _ in MALFORMED)
    assert {bytes(r["raw"]) for r in rows} == {raw or b"" for _, raw in MALFORMED}
    http_app.close()
    errors = KafkaConsumer(settings.topics.errors, bootstrap_servers=settings.kafka_bootstrap, group_id=None,
                           auto_offset_reset="earliest", consumer_timeout_ms=5000)
    notices = [json.loads(m.value) for m in errors]
    errors.close()
    assert sorted(n["error"]["code"] for n in notices) == sorted(code for code, _ in MALFORMED)
    assert all(n["source"]["topic"] == settings.topics.prediction_requests for n in notices)


def test_a_promotion_reaches_both_paths_within_2_seconds_without_a_failed_answer(env, tmp_path):
    settings, procs = env
    port = free_port()
    api_env = settings_env(settings)
    api_env["MODELBUS_API_PORT"] = str(port)
    api = Proc(["api", "--threads", "4"], api_env, "modelbus api", cwd=tmp_path)
    procs.append(api)
    start_predictor(settings, procs)
    api.wait_for("api ready at", 90)
    base = f"http://127.0.0.1:{port}"

    # A Kafka-mode App that runs the build handler here: its notices go out on model_update_topic.
    builder = App(settings)
    promoted_at: list[float] = []
    publish = builder.publish_model_update

    def timed_publish(update) -> None:
        promoted_at.append(time.monotonic())
        publish(update)

    builder.publish_model_update = timed_publish  # type: ignore[method-assign]

    stop = threading.Event()
    http_answers: list[tuple[float, dict]] = []
    kafka_sent: dict[bytes, float] = {}
    responses = Responses(settings)

    def http_client() -> None:
        with requests.Session() as session:
            while not stop.is_set():
                sent = time.monotonic()
                response = session.post(f"{base}/api/predict", json={"model": "mlp", "payload": "3,4,5"}, timeout=30)
                http_answers.append((sent, response.json() | {"status": response.status_code}))
                time.sleep(0.01)

    def kafka_client() -> None:
        client = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap, linger_ms=0)
        i = 0
        while not stop.is_set():
            key = f"hot-{i}".encode()
            kafka_sent[key] = time.monotonic()
            client.send(settings.topics.prediction_requests, _json({"model": "mlp", "payload": "3,4,5", "id": key.decode()}), key=key)
            client.flush()
            i += 1
            time.sleep(0.01)
        client.close()

    clients = [threading.Thread(target=http_client), threading.Thread(target=kafka_client)]
    for thread in clients:
        thread.start()
    try:
        time.sleep(2.0)
        # Build v2 and promote it explicitly (auto-promotion depends on the metric).
        for obj in ({"type": "command", "payload": "build_mlp", "params": {"epochs": 25, "hidden": [6], "seed": 21}},
                    {"type": "command", "payload": "promote", "model": "mlp", "version": 2}):
            builder.store.append([incoming(_json(obj), Source("test"), settings.max_message_bytes)])
        run_handlers(builder)
        assert promoted_at, "the build handler sent no model update"
        time.sleep(3.0)
    finally:
        stop.set()
        for thread in clients:
            thread.join(30)
    responses.wait(set(kafka_sent), 60, procs)
    responses.close()
    builder.close()
    moved = promoted_at[0]
    v2 = registry.get_version(make_engine(settings.database_url), "mlp", "default", 2)

    for path, answers in (
        ("http", [(sent, a) for sent, a in http_answers]),
        ("kafka", [(kafka_sent[k], v[0][1]) for k, v in responses.by_key.items() if k in kafka_sent]),
    ):
        assert answers, path
        failed = [a for _, a in answers if "error" in a or a.get("status", 200) != 200]
        assert failed == [], (path, failed[:3])
        assert {a["version"] for _, a in answers} == {1, 2}, path
        # Every request sent 2 s after the promotion is answered by v2; none before the move by v2.
        late = [a for sent, a in answers if sent > moved + 2.0]
        assert late and all(a["version"] == 2 and a["modelid"] == v2.uuid for a in late), path
        early = [a for sent, a in answers if sent < moved - 0.5]
        assert early and all(a["version"] == 1 for a in early), path
        switched = min(sent for sent, a in answers if a["version"] == 2)
        assert switched - moved < 2.0, (path, switched - moved)
        print(f"{path}: first v2 answer for a request sent {switched - moved:+.3f}s after the promotion; "
              f"{len(answers)} answers, none failed")
    log = "\n".join(api.lines)
    assert "serving v2 for mlp/default" in log or "model update mlp/default v2" in log
