"""`modelbus api` as a user runs it: waitress on a real socket, seed routes and the JSON API over HTTP."""
from __future__ import annotations

import numpy as np
import pytest
import requests

from builders import get_builder
from conftest import settings_env
from db import registry
from db.engine import make_engine
from modelbus.app import App
from modelbus.broker import free_port
from modelbus.settings import Settings
from serving_support import Proc, seed_models

TOKEN = "socket-token"


@pytest.fixture(scope="module")
def seeded(tmp_path_factory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('apiserver') / 'modelbus.db'}"
    app = App(Settings(database_url=url))
    seed_models(app)
    app.close()
    return url


@pytest.fixture
def server(seeded, tmp_path):
    port = free_port()
    env = settings_env(Settings(database_url=seeded))
    env["MODELBUS_API_TOKEN"] = TOKEN
    proc = Proc(["api", "--port", str(port), "--threads", "4"], env, "modelbus api", cwd=tmp_path)
    try:
        proc.wait_for("api ready at", 90)
        yield f"http://127.0.0.1:{port}", proc
    finally:
        proc.stop()


def test_modelbus_api_answers_the_seed_routes_and_the_json_api(seeded, server):
    base, proc = server
    engine = make_engine(seeded)
    with requests.Session() as http:
        # Seed prediction route, each model.
        for kind in ("mlp", "slr", "linear"):
            response = http.get(f"{base}/api/predict/{kind}/3,4,5", timeout=30)
            assert response.status_code == 200, response.text
            body = response.json()
            mv = registry.production(engine, kind, "default")
            expected = get_builder(kind).load(mv.artifact).predict(np.array([[3.0, 4.0, 5.0]]))[0]
            assert body["result"] == pytest.approx(float(expected))
            assert (body["version"], body["modelid"], body["accuracy"]) == (mv.version, mv.uuid, mv.main_metric)
            assert {"input", "result", "accuracy", "modelid", "prediction-date"} <= set(body)
        # Seed build route: a write, so it needs the token.
        assert http.get(f"{base}/api/build_slr", timeout=30).status_code == 401
        queued = http.get(f"{base}/api/build_slr", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
        assert queued.status_code == 202 and queued.json()["status"] == "accepted"
        # JSON API.
        many = http.post(f"{base}/api/predict", json=[{"model": "mlp", "payload": "3,4,5", "id": "a"},
                                                       {"model": "mlp", "payload": "3,4", "id": "b"}], timeout=30)
        assert many.status_code == 200
        assert [a.get("error", {}).get("code") for a in many.json()] == [None, "wrong_feature_count"]
        event = http.post(f"{base}/api/events", json={"type": "training", "payload": "3,4,5,6"},
                          headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
        assert event.status_code == 202 and event.json()["position"] > 0
        bad = http.post(f"{base}/api/events", data=b"{nope", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "not_json"
        assert http.get(f"{base}/api/errors", timeout=30).json()["errors"][-1]["code"] == "not_json"
        assert http.get(f"{base}/api/events?limit=2", timeout=30).json()["next"] == 2
        models = http.get(f"{base}/api/models", timeout=30).json()["models"]
        assert {m["model"] for m in models} == {"mlp", "slr", "linear"}
        assert http.get(f"{base}/api/models/linear", timeout=30).json()["datasets"][0]["versions"]
        assert http.get(f"{base}/healthz", timeout=30).json()["status"] == "ok"
        assert "modelbus_http_requests_total" in http.get(f"{base}/metrics", timeout=30).text
        assert http.get(f"{base}/openapi.json", timeout=30).json()["openapi"].startswith("3.")
        missing = http.get(f"{base}/api/nothing", timeout=30)
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
        assert response.headers["Server"] == "modelbus"
    engine.dispose()
    assert proc.stop() == 0
    assert any("api stopped" in line for line in proc.lines), proc.log()


def test_modelbus_api_refuses_a_taken_port(seeded, server, tmp_path):
    base, _ = server
    port = base.rsplit(":", 1)[1]
    other = Proc(["api", "--port", port], settings_env(Settings(database_url=seeded)), "second api", cwd=tmp_path)
    assert other.proc.wait(60) != 0
    other.stop()
    assert any("cannot listen" in line for line in other.lines), other.log()


def test_modelbus_predictor_needs_kafka(tmp_path):
    from click.testing import CliRunner

    from modelbus.cli import main

    result = CliRunner().invoke(main, ["--database-url", f"sqlite:///{tmp_path / 'x.db'}", "predictor"],
                                env={"MODELBUS_KAFKA_BOOTSTRAP": ""})
    assert result.exit_code == 1
    assert "set MODELBUS_KAFKA_BOOTSTRAP" in result.output
