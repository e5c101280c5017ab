"""After deployment on a real store (SQLite and MariaDB): predictions recorded, feedback joined before or
after its prediction, unmatched/duplicate/invalid feedback reported, live metrics, alert rules, replay."""
from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select, update

from modelbus.app import App
from modelbus.db import feedback as feedback_rows
from modelbus.db import predictions
from modelbus.db.engine import make_engine
from modelbus.db.schema import feedback
from modelbus.db.schema import predictions as predictions_table
from modelbus.handlers.follow.replay import replay_handler
from modelbus.handlers.log.feedback import join_pending
from modelbus.messages.alerts import class_key
from modelbus.settings import Settings
from modelbus.web import create_api
from serving_support import darcey_events, run_handlers, seed_models

LIKELY_5 = {"name": "likely-5", "model": "mlp", "on": "prediction", "class": "5", "above": 0.5}


@pytest.fixture
def fresh(db_url) -> str:
    """darcey and one promoted version of each model kind; no predictions, feedback or alerts yet."""
    app = App(Settings(database_url=db_url))
    seed_models(app)
    app.close()
    return db_url


def make(url: str, **settings):
    app = App(Settings(database_url=url, **settings))
    flask_app = create_api(app)
    return app, flask_app, flask_app.extensions["modelbus"]


def predict_rows(client, rows: list[str], prefix: str = "p") -> list[dict]:
    answers = []
    for i, row in enumerate(rows):
        response = client.post("/api/predict", json={"model": "mlp", "payload": row, "id": f"{prefix}{i}"})
        assert response.status_code == 200, response.get_data(as_text=True)
        answers.append(response.get_json())
    return answers


def post(client, body) -> dict:
    response = client.post("/api/events", json=body)
    assert response.status_code in (200, 202), response.get_data(as_text=True)
    return response.get_json()


def test_fifty_answers_and_their_truth_give_live_accuracy_training_events_and_alerts(fresh):
    app, flask_app, serving = make(fresh, alerts=[LIKELY_5])
    client = flask_app.test_client()
    darcey = [e["payload"].rsplit(",", 1) for e in darcey_events()[100:150]]
    answers = predict_rows(client, [features for features, _ in darcey])
    assert all(a["id"] == f"p{i}" for i, a in enumerate(answers))
    assert serving.recorder.flush()
    assert serving.recorder.recorded == 50
    trained_before = app.store.count(type="training")
    for i, (_, label) in enumerate(darcey):
        post(client, {"type": "feedback", "id": f"p{i}", "label": int(label)})
    run_handlers(app)

    right = sum(a["result"] == int(label) for a, (_, label) in zip(answers, darcey))
    detail = client.get("/api/models/mlp").get_json()
    [v1] = [v for d in detail["datasets"] for v in d["versions"] if v["production"]]
    assert v1["live"]["feedback_count"] == 50
    assert v1["live"]["accuracy"] == pytest.approx(right / 50)
    assert v1["live"]["last"] == {"n": 50, "accuracy": pytest.approx(right / 50)}
    assert v1["live"]["drift"] is None  # 50 recorded inputs are too few for a meaningful PSI

    assert app.store.count(type="training") == trained_before + 50
    made = app.store.read(after=0, limit=10_000, type="training")
    from_feedback = [r for r in made if r.source == "feedback"]
    assert sorted(r.event_id for r in from_feedback) == sorted(f"feedback:p{i}" for i in range(50))

    # The class order of probabilities is the one GET /api/models/mlp lists.
    classes = [class_key(c) for c in v1["metrics"]["classes"]]
    likely = {a["id"] for a in answers if a["probabilities"][classes.index("5")] > 0.5}
    assert likely, "the test needs answers that make the rule fire"
    listed = client.get("/api/alerts?limit=1000").get_json()
    assert sorted(a["prediction_id"] for a in listed["alerts"]) == sorted(likely)
    assert listed["counts"] == {"likely-5": len(likely)}
    metrics = client.get("/metrics").get_data(as_text=True)
    assert f'modelbus_live_accuracy{{dataset="default",model="mlp",version="1"}} {right / 50}' in metrics
    assert 'modelbus_live_feedback{dataset="default",model="mlp",version="1"} 50.0' in metrics
    assert f'modelbus_alerts{{rule="likely-5"}} {float(len(likely))}' in metrics
    serving.close()
    app.close()


def test_feedback_before_its_prediction_joins_when_the_prediction_is_recorded(fresh):
    app, flask_app, serving = make(fresh)
    client = flask_app.test_client()
    post(client, {"type": "feedback", "id": "early", "label": 5})
    run_handlers(app)
    [row] = feedback_rows.listed(app.engine)
    assert row["status"] == "pending"
    [answer] = predict_rows(client, ["3,4,5"], prefix="early-not-this")
    client.post("/api/predict", json={"model": "mlp", "payload": "3,4,5", "id": "early"})
    serving.recorder.flush()
    assert join_pending(app.engine, app.feedback_config, app.store.schemas) == 1
    [row] = feedback_rows.listed(app.engine)
    assert row["status"] == "joined" and row["model"] == "mlp" and row["version"] == 1
    assert app.store.position_of("feedback:early") is not None
    serving.close()
    app.close()


def test_unmatched_duplicate_and_invalid_feedback_are_reported(fresh):
    app, flask_app, serving = make(fresh, feedback_join_window_seconds=60)
    client = flask_app.test_client()
    predict_rows(client, ["3,4,5"], prefix="d")
    serving.recorder.flush()
    for body in ({"type": "feedback", "id": "d0", "label": 4}, {"type": "feedback", "id": "d0", "label": 5},
                 {"type": "feedback", "id": "nobody", "label": 4},
                 {"type": "feedback", "id": "d0", "label": "four"},
                 {"type": "feedback", "id": "d0", "label": 4, "dataset": "other"}):
        post(client, body)
    run_handlers(app)
    statuses = [(r["prediction_id"], r["status"]) for r in feedback_rows.listed(app.engine)]
    assert statuses == [("d0", "joined"), ("d0", "duplicate"), ("nobody", "pending"), ("d0", "duplicate"),
                        ("d0", "invalid")]
    # The window passes: a feedback whose prediction never came is unmatched, not silently dropped.
    with app.engine.begin() as conn:
        conn.execute(update(feedback).where(feedback.c.prediction_id == "nobody")
                     .values(received_at=feedback_rows_received(app) - timedelta(seconds=120)))
    join_pending(app.engine, app.feedback_config, app.store.schemas)
    page = client.get("/api/feedback").get_json()
    assert page["counts"] == {"joined": 1, "duplicate": 2, "unmatched": 1, "invalid": 1}
    unmatched = client.get("/api/feedback?status=unmatched").get_json()["feedback"]
    assert [r["prediction_id"] for r in unmatched] == ["nobody"] and "join window" in unmatched[0]["reason"]
    assert app.store.count(type="training") == 474 + 1
    serving.close()
    app.close()


def feedback_rows_received(app):
    with app.engine.connect() as conn:
        return conn.execute(select(feedback.c.received_at).limit(1)).scalar_one()


def test_a_string_label_for_a_numeric_prediction_is_invalid_with_a_reason(fresh):
    app, flask_app, serving = make(fresh)
    client = flask_app.test_client()
    predict_rows(client, ["3,4,5"], prefix="s")
    serving.recorder.flush()
    post(client, {"type": "feedback", "id": "s0", "label": "Adelie"})
    run_handlers(app)
    [row] = feedback_rows.listed(app.engine)
    assert row["status"] == "invalid" and "is not a number" in row["reason"]
    serving.close()
    app.close()


def test_replay_reproduces_the_feedback_projection_and_adds_no_events(fresh):
    app, flask_app, serving = make(fresh)
    client = flask_app.test_client()
    predict_rows(client, ["3,4,5", "7,8,9", "1,2,3"], prefix="r")
    serving.recorder.flush()
    for i, label in enumerate((4, 8, 2)):
        post(client, {"type": "feedback", "id": f"r{i}", "label": label})
    post(client, {"type": "feedback", "id": "r0", "label": 4})
    run_handlers(app)
    before = [{k: v for k, v in r.items() if k != "joined_at"} for r in feedback_rows.listed(app.engine)]
    head = app.store.head()
    [handler] = [h for h in app.handlers() if h.name == "feedback"]
    replay_handler(app.store, handler, progress=False)
    after = [{k: v for k, v in r.items() if k != "joined_at"} for r in feedback_rows.listed(app.engine)]
    assert after == before and app.store.head() == head
    serving.close()
    app.close()


def test_recording_waits_out_a_database_that_refuses_and_loses_nothing(fresh):
    app, flask_app, serving = make(fresh)
    client = flask_app.test_client()
    recorder = serving.recorder
    good = recorder.engine
    recorder.engine = make_engine("mysql+pymysql://root@127.0.0.1:1/none")  # nothing listens there
    predict_rows(client, ["3,4,5", "7,8,9"], prefix="w")
    assert recorder.flush() is False and recorder.backlog == 2
    recorder.engine = good
    assert recorder.flush() is True and recorder.backlog == 0
    with good.connect() as conn:
        assert sorted(conn.execute(select(predictions_table.c.id)).scalars()) == ["w0", "w1"]
    serving.close()
    app.close()


def test_a_live_accuracy_rule_fires_once_per_window_and_a_rebuild_rule_posts_one_build(fresh):
    rules = [{"name": "bad-mlp", "model": "mlp", "on": "live_accuracy", "below": 1.01, "window": 5,
              "action": "rebuild"}]
    app, flask_app, serving = make(fresh, alerts=rules)
    client = flask_app.test_client()
    darcey = [e["payload"].rsplit(",", 1) for e in darcey_events()[:12]]
    predict_rows(client, [f for f, _ in darcey], prefix="l")
    serving.recorder.flush()
    for i, (_, label) in enumerate(darcey):
        post(client, {"type": "feedback", "id": f"l{i}", "label": int(label)})
    run_handlers(app)
    monitor = app.monitor()
    first = monitor.check()
    assert [a["subject"] for a in first] == ["mlp/default/v1/feedback/2"]
    assert monitor.check() == []  # the same window: deduplicated
    builds = [r for r in app.store.read(after=0, limit=10_000, type="command") if r.source == "alert"]
    assert [r.event_id for r in builds] == ["alert:bad-mlp:mlp/default/v1/feedback/2"]
    serving.close()
    app.close()


def test_a_drift_rule_fires_on_inputs_far_from_the_training_rows(fresh):
    rules = [{"name": "x0-drift", "model": "mlp", "on": "drift", "feature": "x0", "above": 0.25, "window": 100}]
    app, flask_app, serving = make(fresh, alerts=rules)
    client = flask_app.test_client()
    predict_rows(client, ["50,4,5"] * 100, prefix="far")
    serving.recorder.flush()
    [alert] = app.monitor().check()
    assert alert["rule"] == "x0-drift" and alert["value"] > 0.25 and alert["subject"] == "mlp/default/v1/predictions/1"
    assert predictions.count(app.engine, "mlp", "default", 1) == 100
    detail = client.get("/api/models/mlp").get_json()
    [v1] = [v for d in detail["datasets"] for v in d["versions"] if v["production"]]
    assert v1["live"]["drift"]["x0"] > 0.25 and v1["live"]["drift"]["x1"] > 0.25  # every x1 is 4: drifted too
    serving.close()
    app.close()
