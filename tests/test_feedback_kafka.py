"""The after-deployment loop over Tansu and MariaDB: predictions answered by `modelbus predictor` and
recorded, their truth sent on event_topic, joined into training events by `modelbus worker`, an alert
rule that asks for a rebuild, and the rebuilt version answering; alerts published on alert_topic."""
from __future__ import annotations

import json

from conftest import kafka_settings, settings_env
from kafka_support import producer, read_topic, wait_until
from modelbus.app import App
from modelbus.commands.kafka import create_topics
from modelbus.db import feedback as feedback_rows
from modelbus.db import registry
from modelbus.db.engine import make_engine
from modelbus.db.events import EventStore
from modelbus.settings import Settings
from serving_support import Proc, darcey_events, seed_models

RULE = {"name": "mlp-live", "model": "mlp", "on": "live_accuracy", "below": 1.01, "window": 20, "action": "rebuild"}
N = 20


def send(bootstrap: str, topic: str, objs: list[dict]) -> None:
    client = producer(bootstrap)
    for obj in objs:
        client.send(topic, json.dumps(obj).encode())
    client.flush()
    client.close()


def test_predict_feedback_training_rebuild_and_the_new_version_answering(mysql_db, kafka_bootstrap, topics):
    settings = kafka_settings(mysql_db, kafka_bootstrap, topics, predict_wait_ms=10, monitor_interval=0.5)
    create_topics(settings.kafka, 1)
    embedded = App(Settings(database_url=mysql_db))
    seed_models(embedded)
    embedded.close()
    env = settings_env(settings)
    env["MODELBUS_ALERTS"] = json.dumps([RULE])
    procs = [Proc(["worker"], env, "modelbus worker"), Proc(["predictor"], env, "modelbus predictor")]
    try:
        procs[1].wait_for("predictor: partitions assigned", 90)
        procs[0].wait_for("ingest: partitions assigned", 90)
        rows = [e["payload"].rsplit(",", 1) for e in darcey_events()[200:200 + N]]
        send(kafka_bootstrap, topics.prediction_requests,
                [{"model": "mlp", "payload": features, "id": f"k{i}"} for i, (features, _) in enumerate(rows)])
        answers = {a["id"]: a for a in read_topic(kafka_bootstrap, topics.prediction_responses, N)}
        assert set(answers) == {f"k{i}" for i in range(N)}

        send(kafka_bootstrap, topics.events,
                [{"type": "feedback", "id": f"k{i}", "label": int(label)} for i, (_, label) in enumerate(rows)])
        engine = make_engine(mysql_db)
        store = EventStore(engine)

        def joined() -> bool:
            return feedback_rows.status_counts(engine).get("joined", 0) == N
        wait_until(joined, 60, lambda: f"{N} joined feedbacks, have {feedback_rows.status_counts(engine)}", procs)
        made = [r.event_id for r in store.read(after=0, limit=10_000, type="training") if r.source == "feedback"]
        assert sorted(made) == sorted(f"feedback:k{i}" for i in range(N))
        right = sum(answers[f"k{i}"]["result"] == int(label) for i, (_, label) in enumerate(rows))
        stats = feedback_rows.live_stats(engine, "mlp", "default", 1, N)
        assert stats["feedback_count"] == N and abs(stats["accuracy"] - right / N) < 1e-12

        # The rule fires once for the window of 20 and posts one rebuild, built on the new training events.
        def rebuilt():
            return registry.get_version(engine, "mlp", "default", 2)
        v2 = wait_until(rebuilt, 90, "the rebuild asked by the rule", procs)
        assert v2.n_events == 474 + N
        [alert] = read_topic(kafka_bootstrap, topics.alerts, 1)
        assert (alert["rule"], alert["subject"], alert["action"]) == ("mlp-live", "mlp/default/v1/feedback/1", "rebuild")

        send(kafka_bootstrap, topics.prediction_requests,
                [{"model": "mlp", "payload": "3,4,5", "id": "after", "version": 2}])
        answered = {a["id"]: a for a in read_topic(kafka_bootstrap, topics.prediction_responses, N + 1)}
        assert answered["after"]["version"] == 2 and answered["after"]["modelid"] == v2.uuid
        engine.dispose()
    finally:
        for proc in procs:
            proc.stop()
