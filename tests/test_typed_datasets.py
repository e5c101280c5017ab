"""Typed datasets end to end on MariaDB: palmerpenguins with island and sex as categories and species as the label."""
from __future__ import annotations

import csv
import importlib.resources
import io
import json

import pytest
from pydantic import ValidationError
from sqlalchemy import select

from modelbus.app import App
from modelbus.db import registry
from modelbus.db.schema import training_records
from modelbus.handlers.log.verify import verify_version
from modelbus.settings import Settings
from modelbus.web import create_api
from serving_support import build, run_handlers

FEATURES = {"island": "category", "bill_length_mm": "number", "bill_depth_mm": "number",
            "flipper_length_mm": "number", "body_mass_g": "number", "sex": "category"}
PENGUINS = {"penguins": {"features": FEATURES, "label": {"name": "species", "type": "category"}}}
MLP = {"epochs": 300, "hidden": [16], "lr": 0.02}


def penguin_payloads() -> tuple[list[dict], int]:
    """The palmerpenguins rows as typed payloads, and how many rows were dropped for a missing value (NA)."""
    text = importlib.resources.files("palmerpenguins").joinpath("data/penguins.csv").read_text()
    payloads, dropped = [], 0
    for row in csv.DictReader(io.StringIO(text)):
        if any(row[name] == "NA" for name in (*FEATURES, "species")):
            dropped += 1
            continue
        payload = {name: row[name] if kind == "category" else float(row[name]) for name, kind in FEATURES.items()}
        payloads.append({**payload, "species": row["species"]})
    return payloads, dropped


@pytest.fixture
def app(mysql_db):
    application = App(Settings(database_url=mysql_db, datasets=PENGUINS))
    yield application
    application.close()


def post(app, payloads):
    events = [{"type": "training", "dataset": "penguins", "payload": p} for p in payloads]
    return app.publisher.post(events, "test")


def test_settings_declare_typed_fields_in_toml_and_json(tmp_path, monkeypatch):
    toml = tmp_path / "modelbus.toml"
    toml.write_text('[datasets.penguins]\nfeatures = { island = "category", bill_length_mm = "number" }\n'
                    'label = { name = "species", type = "category" }\n[datasets.default]\nfeatures = 3\n')
    monkeypatch.setenv("MODELBUS_CONFIG", str(toml))
    settings = Settings()
    schema = settings.input_schemas["penguins"]
    assert schema.features == (("island", "category"), ("bill_length_mm", "number"))
    assert schema.label == ("species", "category")
    assert settings.declared_widths == {"penguins": 3, "default": 4}
    monkeypatch.setenv("MODELBUS_DATASETS", json.dumps(PENGUINS))
    assert Settings().input_schemas["penguins"].names == list(FEATURES)
    with pytest.raises(ValidationError, match="colour"):
        Settings(datasets={"x": {"features": {"a": "colour"}}})
    with pytest.raises(ValidationError, match="also declared as a feature"):
        Settings(datasets={"x": {"features": {"a": "number"}, "label": {"name": "a"}}})


def test_bad_typed_records_are_rejected_naming_the_field(app):
    good = penguin_payloads()[0][0]
    cases = [
        ({**good, "island": 3}, "bad_field", "payload.island: expected a string category, got 3"),
        ({**good, "sex": None}, "bad_field", "payload.sex: expected a string category, got null (a missing value)"),
        ({**good, "bill_length_mm": "long"}, "not_numeric", 'payload.bill_length_mm: expected a number, got "long"'),
        ({k: v for k, v in good.items() if k != "species"}, "missing_field", "payload.species is required"),
        ({**good, "colour": "blue"}, "unknown_field", "payload.colour is not a field of this dataset"),
        ({**good, "island": ""}, "bad_field", "payload.island: a category must have 1 to 255 characters"),
    ]
    outcomes = post(app, [payload for payload, _, _ in cases])
    for outcome, (_, code, message) in zip(outcomes, cases):
        assert outcome.status == "rejected"
        assert outcome.error.code == code and outcome.error.message.startswith(message), outcome.error.message
    (csv_outcome,) = app.publisher.post([{"type": "training", "dataset": "penguins", "payload": "1,2,3,4,5,6,7"}], "t")
    assert csv_outcome.error.code == "bad_field" and "JSON object keyed by field name" in csv_outcome.error.message
    (untyped,) = app.publisher.post([{"type": "training", "payload": {"a": 1, "b": 2}}], "test")
    assert untyped.error.code == "bad_field" and "declares no typed fields" in untyped.error.message
    assert app.store.head() == 0  # nothing stored, every reject is a dead letter


def test_penguins_train_mlp_and_answer_species_names(app):
    payloads, dropped = penguin_payloads()
    assert (len(payloads), dropped) == (333, 11)
    assert all(o.status == "accepted" for o in post(app, payloads))
    build(app, "mlp", "penguins", params=MLP)
    build(app, "linear", "penguins")

    mv = registry.production(app.engine, "mlp", "penguins")
    accuracy = mv.metrics["accuracy"]
    print(f"penguins mlp holdout accuracy: {accuracy:.4f} on {mv.metrics['test_size']} rows")
    assert accuracy >= 0.9
    assert mv.metrics["label_values"] == ["Adelie", "Chinstrap", "Gentoo"]
    assert verify_version(app.engine, mv).ok

    # The projection keeps typed values: categories as strings, a category label in label_category.
    with app.engine.connect() as conn:
        first = conn.execute(select(training_records).order_by(training_records.c.position).limit(1)).one()
    assert json.loads(first.features)[0] == payloads[0]["island"] and first.label_category == payloads[0]["species"]
    assert first.label is None

    flask_app = create_api(app)
    client = flask_app.test_client()
    try:
        gentoo = next(p for p in payloads if p["species"] == "Gentoo")
        request = {k: v for k, v in gentoo.items() if k != "species"}
        answer = client.post("/api/predict", json={"model": "mlp", "dataset": "penguins", "payload": request}).get_json()
        assert answer["result"] == "Gentoo", answer
        assert set(answer["probabilities"]) == {"Adelie", "Chinstrap", "Gentoo"}
        assert answer["probabilities"]["Gentoo"] == max(answer["probabilities"].values())

        unseen = client.post("/api/predict", json={"model": "mlp", "dataset": "penguins",
                                                   "payload": {**request, "island": "Atlantis"}}).get_json()
        assert unseen["result"] in {"Adelie", "Chinstrap", "Gentoo"}
        metrics = client.get("/metrics").get_data(as_text=True)
        assert 'modelbus_unknown_category_total{dataset="penguins",feature="island",model="mlp"} 1.0' in metrics

        bad = client.post("/api/predict", json={"model": "mlp", "dataset": "penguins",
                                                "payload": {**request, "island": 3}})
        assert bad.status_code == 400
        assert bad.get_json()["error"] == {"code": "bad_field",
                                           "message": "payload.island: expected a string category, got 3"}
        csv_request = client.post("/api/predict", json={"model": "mlp", "dataset": "penguins", "payload": "1,2,3"})
        assert "JSON object keyed by field name" in csv_request.get_json()["error"]["message"]

        detail = client.get("/api/models/mlp?dataset=penguins").get_json()
        version = detail["datasets"][0]["versions"][0]
        assert version["input_schema"]["features"][0] == {"name": "island", "type": "category"}
        assert version["input_schema"]["label"] == {"name": "species", "type": "category"}
        assert version["label_values"] == ["Adelie", "Chinstrap", "Gentoo"]
        builds = client.get("/api/models/linear?dataset=penguins").get_json()["builds"]
        assert builds[0]["status"] == "failed"
        assert "linear needs a numeric label; this dataset's label 'species' is a category" in builds[0]["reason"]

        schema = client.get("/api/datasets/penguins/schema").get_json()
        assert schema["features"] == 6 and schema["declared"] is True
        assert schema["prediction_payload"]["required"] == list(FEATURES)
        assert schema["training_payload"]["properties"]["species"] == {"type": "string", "minLength": 1,
                                                                       "maxLength": 255}
        assert client.get("/api/datasets/nowhere/schema").status_code == 404
    finally:
        flask_app.extensions["modelbus"].close()


def test_penguins_train_dtr_and_feedback_with_species_names_joins_and_trains(app):
    payloads, _ = penguin_payloads()
    assert all(o.status == "accepted" for o in post(app, payloads))
    build(app, "dtr", "penguins")
    mv = registry.production(app.engine, "dtr", "penguins")
    print(f"penguins dtr holdout accuracy: {mv.metrics['accuracy']:.4f} on {mv.metrics['test_size']} rows")
    assert mv.metrics["accuracy"] >= 0.9
    assert verify_version(app.engine, mv).ok

    flask_app = create_api(app)
    client = flask_app.test_client()
    serving = flask_app.extensions["modelbus"]
    try:
        rows = payloads[:20]
        for i, row in enumerate(rows):
            request = {k: v for k, v in row.items() if k != "species"}
            answer = client.post("/api/predict", json={"model": "dtr", "dataset": "penguins", "payload": request,
                                                       "id": f"peng-{i}"}).get_json()
            assert answer["result"] in {"Adelie", "Chinstrap", "Gentoo"}, answer
        assert serving.recorder.flush()
        right = 0
        for i, row in enumerate(rows):
            client.post("/api/events", json={"type": "feedback", "id": f"peng-{i}", "label": row["species"]})
        client.post("/api/events", json={"type": "feedback", "id": "peng-0", "label": 3})
        run_handlers(app)
        for f in client.get("/api/feedback?status=joined").get_json()["feedback"]:
            right += f["correct"]
        live = client.get("/api/models/dtr?dataset=penguins").get_json()["datasets"][0]["versions"][0]["live"]
        assert live["feedback_count"] == 20 and live["accuracy"] == pytest.approx(right / 20)
        made = [r for r in app.store.read(after=0, limit=10_000, type="training") if r.source == "feedback"]
        assert len(made) == 20 and json.loads(made[0].payload)["payload"]["species"] == rows[0]["species"]
        assert client.get("/api/feedback?status=duplicate").get_json()["counts"]["duplicate"] == 1
    finally:
        serving.close()
