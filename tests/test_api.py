"""The Flask app through its test client: every route, auth, pagination and each error class."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest

from modelbus.web import create_api as create_app
from modelbus.builders import get_builder
from conftest import ROOT, empty_database
from modelbus.db import registry
from modelbus.db.engine import make_engine
from modelbus.handlers.serving.predict import parse_item, predict_batch
from modelbus.app import App
from modelbus.runtime import Services
from modelbus.settings import Settings
from serving_support import build, darcey_events, seed_models

SEED_KEYS = {"input", "result", "accuracy", "modelid", "prediction-date"}
BIG = "1" * 400
TOKEN = "s3cret-token"


@pytest.fixture(scope="module", params=["sqlite", "mysql"])
def database(request, tmp_path_factory) -> str:
    """A store holding darcey and one promoted version of each model (built once per module and database)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('api') / 'modelbus.db'}"
    else:
        url = request.getfixturevalue("mysql_url")
        engine = make_engine(url)
        empty_database(engine)
        engine.dispose()
    app = App(Settings(database_url=url))
    seed_models(app)
    app.close()
    return url


@pytest.fixture
def app(database):
    application = App(Settings(database_url=database))
    yield application
    application.close()


@pytest.fixture
def client(app):
    flask_app = create_app(app)
    yield flask_app.test_client()
    flask_app.extensions["modelbus"].close()


@pytest.fixture
def secured(database):
    application = App(Settings(database_url=database, api_token=TOKEN))
    flask_app = create_app(application)
    yield flask_app.test_client()
    flask_app.extensions["modelbus"].close()
    application.close()


def direct(app, kind: str, rows, dataset: str = "default"):
    mv = registry.production(app.engine, kind, dataset)
    model = get_builder(kind).load(mv.artifact)
    X = np.asarray(rows, dtype=np.float64)
    return mv, model.predict(X), model.predict_proba(X)


def assert_error(response, status: int, code: str, fragment: str = "") -> dict:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert body["error"]["code"] == code, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert fragment in body["error"]["message"]
    return body


# -- seed routes ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["mlp", "slr", "linear"])
def test_seed_predict_route_answers_like_the_model(app, client, kind):
    response = client.get(f"/api/predict/{kind}/3,4,5")
    assert response.status_code == 200
    body = response.get_json()
    mv, result, proba = direct(app, kind, [[3, 4, 5]])
    assert SEED_KEYS <= set(body)
    assert (body["model"], body["dataset"], body["version"], body["modelid"]) == (kind, "default", mv.version, mv.uuid)
    assert body["input"] == "3,4,5"
    assert body["accuracy"] == mv.main_metric
    assert body["result"] == pytest.approx(float(result[0]))
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", body["prediction-date"])
    if kind == "mlp":
        assert body["probabilities"] == pytest.approx(list(proba[0]))
    else:
        assert "probabilities" not in body


def test_seed_predict_route_options_and_errors(client):
    ok = client.get("/api/predict/mlp/3,4,5?version=1&id=abc").get_json()
    assert (ok["version"], ok["id"]) == (1, "abc")
    assert_error(client.get("/api/predict/tree/3,4,5"), 404, "unknown_model", "model 'tree' is unknown")
    assert_error(client.get("/api/predict/mlp/3,4,5?dataset=nope"), 404, "no_production_version", "dataset 'nope'")
    assert_error(client.get("/api/predict/mlp/3,4,5?version=99"), 404, "unknown_version", "no version 99")
    assert_error(client.get("/api/predict/mlp/3,4,5?version=two"), 400, "bad_field", "positive integer")
    assert_error(client.get("/api/predict/mlp/3,4"), 400, "wrong_feature_count", "expects 3 features")
    assert_error(client.get("/api/predict/mlp/3,x,5"), 400, "not_numeric", "'x' is not a number")
    assert_error(client.get("/api/predict/mlp/3,nan,5"), 400, "not_finite")
    assert_error(client.get("/api/predict/mlp/3,inf,5"), 400, "not_finite")


@pytest.mark.parametrize("command,kind", [("build_mlp", "mlp"), ("build_dtr", "dtr"), ("build_slr", "slr"),
                                          ("build_linear", "linear")])
def test_seed_build_routes_queue_a_command(app, client, command, kind):
    response = client.get(f"/api/{command}")
    assert response.status_code == 202
    body = response.get_json()
    assert body["status"] == "accepted" and body["id"] and body["position"] >= 1
    [row] = app.store.read(after=body["position"] - 1, limit=1)
    assert (row.type, row.name, row.event_id, row.source) == ("command", command, body["id"], "http")
    other = client.get(f"/api/{command}?dataset=judges").get_json()
    [row] = app.store.read(after=other["position"] - 1, limit=1)
    assert row.dataset == "judges"
    assert_error(client.get(f"/api/{command}?dataset=a%20b"), 400, "bad_field", "dataset 'a b'")


# -- POST /api/predict ----------------------------------------------------------------------


def test_post_predict_one_request(app, client):
    response = client.post("/api/predict", json={"model": "linear", "payload": [3, 4, 5], "id": "one"})
    assert response.status_code == 200
    body = response.get_json()
    _, result, _ = direct(app, "linear", [[3, 4, 5]])
    assert body["id"] == "one" and body["result"] == pytest.approx(float(result[0]))
    assert body["input"] == "3.0,4.0,5.0"


def test_post_predict_many_rows_in_order_with_per_item_errors(app, client):
    rows = [[i % 10, (2 * i) % 10, (3 * i) % 10] for i in range(40)]
    requests = [{"model": "mlp", "payload": r, "id": f"r{i}"} for i, r in enumerate(rows)]
    requests.insert(5, {"model": "mlp", "payload": "1,2", "id": "short"})
    requests.insert(9, 42)
    requests.append({"model": "slr", "payload": "3,4,5", "dataset": "nope", "id": "nods"})
    response = client.post("/api/predict", json=requests)
    assert response.status_code == 200
    answers = response.get_json()
    assert len(answers) == len(requests)
    assert answers[5]["error"]["code"] == "wrong_feature_count" and answers[5]["id"] == "short"
    assert answers[9] == {"id": None, "error": {"code": "not_object", "message": "message must be a JSON object, got number"}}
    assert answers[-1]["error"]["code"] == "no_production_version"
    good = [a for a in answers if "error" not in a]
    assert [a["id"] for a in good] == [f"r{i}" for i in range(40)]
    _, results, proba = direct(app, "mlp", rows)
    assert [a["result"] for a in good] == [int(r) for r in results]
    for a, p in zip(good, proba):
        assert a["probabilities"] == pytest.approx(list(p))


def test_post_predict_pins_version_and_dataset(client):
    body = client.post("/api/predict", json={"model": "slr", "payload": "3,4,5", "version": 1, "dataset": "default"}).get_json()
    assert (body["version"], body["dataset"]) == (1, "default")


# The ingest tests' malformed inputs, sent as predictions: each gets its own precise error,
# the same one the Kafka path gives (handlers.serving.predict: parse_item + predict_batch).
MALFORMED = [
    (b"\xff\xfe{}", 400, "not_utf8"),
    (b"{not json", 400, "not_json"),
    (b"", 400, "not_json"),
    (b'"mlp"', 400, "not_object"),
    (b"null", 400, "not_object"),
    (b'{"model":"tree","payload":"1,2,3"}', 404, "unknown_model"),
    (b'{"payload":"1,2,3"}', 400, "missing_field"),
    (b'{"model":"mlp"}', 400, "missing_field"),
    (b'{"model":"mlp","payload":"1,two,3"}', 400, "not_numeric"),
    (b'{"model":"mlp","payload":[1,true,3]}', 400, "not_numeric"),
    (b'{"model":"mlp","payload":"1,NaN,3"}', 400, "not_finite"),
    (b'{"model":"mlp","payload":[1,NaN,3]}', 400, "not_finite"),
    (b'{"model":"mlp","payload":[1,Infinity,3]}', 400, "not_finite"),
    (b'{"model":"mlp","payload":"1,inf,3"}', 400, "not_finite"),
    (f'{{"model":"mlp","payload":[1,{BIG},3]}}'.encode(), 400, "out_of_range"),
    (f'{{"model":"mlp","payload":"1,{BIG},3"}}'.encode(), 400, "out_of_range"),
    (b'{"model":"mlp","payload":[1,2,' + b"9" * 5000 + b"]}", 400, "out_of_range"),
    (b'{"model":"mlp","payload":"1,2,3","version":2147483648}', 400, "out_of_range"),
    (b'{"model":"mlp","payload":"1,2,3","version":99999999999999999999}', 400, "out_of_range"),
    (b'{"model":"mlp","payload":"1,2"}', 400, "wrong_feature_count"),
    (b'{"model":"mlp","payload":"1,2,3,4"}', 400, "wrong_feature_count"),
    (b'{"model":"mlp","payload":"1,2,3","extra":1}', 400, "unknown_field"),
    (b'{"model":"mlp","payload":"1,2,3","version":"2"}', 400, "bad_field"),
    (b'{"model":"mlp","payload":"1,2,3","id":5}', 400, "bad_field"),
    (b'{"model":"mlp","payload":""}', 400, "bad_field"),
    (json.dumps({"model": "mlp", "payload": ",".join(["1"] * 400_000)}).encode(), 413, "too_large"),
]


@pytest.mark.parametrize("raw,status,code", MALFORMED, ids=[c for _, _, c in MALFORMED])
def test_malformed_predictions_get_precise_errors_like_kafka(app, client, raw, status, code):
    response = client.post("/api/predict", data=raw, content_type="application/json")
    body = assert_error(response, status, code)
    serving = client.application.extensions["modelbus"]
    [kafka_answer] = predict_batch(serving.cache, [parse_item(raw, app.settings.max_message_bytes)])
    assert body["error"] == kafka_answer["error"]


def test_numbers_out_of_range_on_the_seed_route(client):
    assert_error(client.get(f"/api/predict/mlp/1,{BIG},3"), 400, "out_of_range", "payload value 2 is 111111111111...")
    assert_error(client.get(f"/api/predict/mlp/3,4,5?version={BIG}"), 400, "out_of_range", "'version' is 1111")
    assert_error(client.get(f"/api/predict/mlp/3,4,5?version={'9' * 5000}"), 400, "out_of_range", "5000 characters")
    assert_error(client.get("/api/predict/mlp/3,4,5?version=2147483648"), 400, "out_of_range", "at most 2147483647")
    assert_error(client.get("/api/predict/mlp/3,4,5?version=-3"), 400, "bad_field", "positive integer, got -3")
    # str.isdigit() takes superscripts that int() refuses: this was a 500.
    assert_error(client.get("/api/predict/mlp/3,4,5?version=%C2%B2"), 400, "bad_field", "positive integer")
    assert client.get("/api/predict/mlp/3,4,5?version=001").get_json()["version"] == 1


def test_numbers_out_of_range_in_a_list_of_predictions(client):
    body = f'[{{"model":"mlp","payload":"3,4,5"}},{{"model":"mlp","payload":[1,{BIG},3]}}]'
    assert_error(client.post("/api/predict", data=body, content_type="application/json"), 400, "out_of_range",
                 "field '[1].payload[1]'")


def test_malformed_seed_route_inputs(client):
    assert_error(client.get("/api/predict/mlp/" + ",".join(["1"] * 3) + ",%FF"), 400, "not_numeric")
    assert_error(client.get("/api/predict/mlp/"), 404, "not_found")


def test_predict_list_errors(client):
    assert_error(client.post("/api/predict", json=[]), 400, "bad_request", "at least one")
    assert_error(client.post("/api/predict", data=b"[1,2", content_type="application/json"), 400, "not_json")
    assert_error(client.post("/api/predict", data=b"[1,NaN]", content_type="application/json"), 400, "not_finite")


# -- events ---------------------------------------------------------------------------------


def test_post_one_event_and_a_list(app, client):
    response = client.post("/api/events", json={"type": "training", "payload": "3,4,5,6", "id": "ev-1"})
    assert response.status_code == 202
    body = response.get_json()
    assert (body["status"], body["id"]) == ("accepted", "ev-1")
    again = client.post("/api/events", json={"type": "training", "payload": "3,4,5,6", "id": "ev-1"}).get_json()
    assert (again["status"], again["position"]) == ("duplicate", body["position"])
    response = client.post("/api/events", json=[
        {"type": "training", "payload": [1, 2, 3, 4]},
        {"type": "training", "payload": "1,2"},
        {"type": "command", "payload": "build_slr", "params": {"seed": 3}},
    ])
    assert response.status_code == 202
    outcomes = response.get_json()
    assert [o["status"] for o in outcomes] == ["accepted", "rejected", "accepted"]
    assert outcomes[1]["error"]["code"] == "wrong_feature_count"
    assert outcomes[2]["position"] == outcomes[0]["position"] + 1


@pytest.mark.parametrize(
    "raw,status,code",
    [
        (b"\xff\xfe{}", 400, "not_utf8"),
        (b"{not json", 400, "not_json"),
        (b"5", 400, "not_object"),
        (b'{"type":"training"}', 400, "missing_field"),
        (b'{"type":"training","payload":"1,2,x,4"}', 400, "not_numeric"),
        (b'{"type":"training","payload":"1,2,NaN,4"}', 400, "not_finite"),
        (b'{"type":"training","payload":"1,2,3"}', 400, "wrong_feature_count"),
        (b'{"type":"command","payload":"build_tree"}', 400, "unknown_command"),
        (f'{{"type":"training","payload":[1,2,{BIG},4]}}'.encode(), 400, "out_of_range"),
        (b'{"type":"training","payload":[1,2,' + b"9" * 5000 + b",4]}", 400, "out_of_range"),
        (f'{{"type":"training","payload":"1,2,{BIG},4"}}'.encode(), 400, "out_of_range"),
        (b'{"type":"command","payload":"promote","model":"linear","version":2147483648}', 400, "out_of_range"),
        (b'{"type":"training","payload":"1,2,3,4","ts":-9223372036854775809}', 400, "out_of_range"),
        (b'{"type":"command","payload":"build_mlp","params":{"seed":18446744073709551616}}', 400, "out_of_range"),
        (f'[{{"type":"training","payload":"1,2,3,4"}},{{"type":"training","payload":[{BIG},1,1,1]}}]'.encode(), 400,
         "out_of_range"),
        (json.dumps({"type": "training", "payload": ",".join(["1"] * 400_000)}).encode(), 413, "too_large"),
    ],
)
def test_bad_events_are_rejected_and_dead_lettered(app, client, raw, status, code):
    before = app.store.dead_letter_count()
    assert_error(client.post("/api/events", data=raw, content_type="application/json"), status, code)
    if status != 413:  # an over-size body is refused before it is read
        assert app.store.dead_letter_count() == before + 1
        [row] = app.store.dead_letters(after=0, limit=100_000)[-1:]
        assert (row["code"], row["source"], bytes(row["raw"])) == (code, "http", raw)


def test_event_list_errors(client):
    assert_error(client.post("/api/events", json=[]), 400, "bad_request", "empty")


def test_get_events_pages_through_the_log(app, client):
    head = app.store.head()
    seen, after, pages = [], 0, 0
    while True:
        body = client.get(f"/api/events?after={after}&limit=200").get_json()
        assert body["head"] >= head
        seen.extend(e["position"] for e in body["events"])
        pages += 1
        if body["next"] is None:
            break
        assert body["next"] == body["events"][-1]["position"]
        after = body["next"]
    assert seen == sorted(seen) and seen[: head] == list(range(1, head + 1))
    assert pages >= 3
    first = client.get("/api/events?limit=1").get_json()["events"][0]
    assert first["position"] == 1 and first["type"] == "training" and first["event"]["payload"]
    builds = client.get("/api/events?name=build_mlp&limit=1000").get_json()["events"]
    assert builds and all(e["name"] == "build_mlp" for e in builds)
    assert client.get("/api/events?type=command&dataset=default").status_code == 200
    assert_error(client.get("/api/events?limit=0"), 400, "bad_param", "between 1 and 1000")
    assert_error(client.get("/api/events?limit=5000"), 400, "bad_param")
    assert_error(client.get("/api/events?after=x"), 400, "bad_param", "must be an integer")


@pytest.mark.parametrize("route", ["/api/events?after=", "/api/events?limit=", "/api/errors?after=",
                                   "/api/errors?limit=", "/api/models/mlp?builds="])
def test_every_numeric_query_parameter_is_bounded(client, route):
    assert_error(client.get(route + BIG), 400, "out_of_range", "111111111111...1111 (400 characters), outside")
    assert_error(client.get(route + "9" * 5000), 400, "out_of_range")
    assert_error(client.get(route + "-9223372036854775809"), 400, "out_of_range")
    if "after" in route:  # positions and dead-letter ids go up to int64
        assert client.get(route + "9223372036854775807").status_code == 200
    else:
        assert_error(client.get(route + "9223372036854775807"), 400, "bad_param", "must be between")
    assert_error(client.get(route + "-1"), 400, "bad_param", "must be between")
    for text in ("1_0", "1.5", "%C2%B2", "+", "0x10"):
        assert_error(client.get(route + text), 400, "bad_param", "must be an integer")


def test_get_errors_pages_through_dead_letters(app, client):
    for i in range(5):
        client.post("/api/events", data=b"\xff" + str(i).encode(), content_type="application/json")
    total = app.store.dead_letter_count()
    ids, after = [], 0
    while True:
        body = client.get(f"/api/errors?after={after}&limit=2").get_json()
        assert body["total"] == total
        ids.extend(e["id"] for e in body["errors"])
        if body["next"] is None:
            break
        after = body["next"]
    assert len(ids) == total and ids == sorted(ids)
    last = client.get(f"/api/errors?after={ids[-2]}").get_json()["errors"][0]
    assert (last["code"], last["raw_encoding"], last["source"]) == ("not_utf8", "base64", {"kind": "http"})
    assert_error(client.get("/api/errors?limit=-1"), 400, "bad_param")


# -- models ---------------------------------------------------------------------------------


def test_models_listing(app, client):
    body = client.get("/api/models").get_json()
    by_kind = {m["model"]: m for m in body["models"] if m["dataset"] == "default"}
    assert set(by_kind) == {"mlp", "slr", "linear"}
    for kind, entry in by_kind.items():
        mv = registry.production(app.engine, kind, "default")
        assert entry["production"] == mv.version
        assert entry["production_version"]["uuid"] == mv.uuid
        assert entry["production_version"]["main_metric"] == mv.main_metric


def test_one_model_with_versions_metrics_lineage_and_builds(app, client):
    body = client.get("/api/models/mlp").get_json()
    assert body["model"] == "mlp"
    [default] = [d for d in body["datasets"] if d["dataset"] == "default"]
    v1 = default["versions"][0]
    assert v1["version"] == 1 and "accuracy" in v1["metrics"] and v1["params"]["hidden"] == [8]
    assert v1["lineage"]["n_events"] == len(darcey_events()) and v1["lineage"]["digest"]
    assert v1["sha256"] and v1["versions"]["torch"]
    assert any(v["production"] for v in default["versions"])
    assert body["builds"] and body["builds"][0]["model"] == "mlp"
    assert client.get("/api/models/mlp?dataset=nope").get_json()["datasets"] == []
    assert_error(client.get("/api/models/tree"), 404, "unknown_model")


# -- operations -----------------------------------------------------------------------------


def test_healthz(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "ok" and body["mode"] == "embedded" and body["log_head"] > 0


def test_healthz_reports_an_unreachable_database(tmp_path):
    application = App(Settings(database_url=f"sqlite:///{tmp_path / 'gone.db'}"))
    flask_app = create_app(application)
    (tmp_path / "gone.db").unlink()
    (tmp_path / "gone.db").mkdir()  # now not even openable as a database
    application.engine.dispose()
    assert_error(flask_app.test_client().get("/healthz"), 503, "unavailable", "database is unreachable")
    application.close()


def test_metrics(client):
    client.get("/api/predict/mlp/3,4,5")
    client.get("/api/predict/mlp/3,4")
    client.get("/api/build_slr")
    text = client.get("/metrics").get_data(as_text=True)
    assert 'modelbus_http_requests_total{method="GET",route="/api/predict/<model>/<csv>",status="200"} 1.0' in text
    assert 'modelbus_http_request_duration_seconds_bucket{le="0.1",method="GET",route="/api/predict/<model>/<csv>"}' in text
    assert 'modelbus_predictions_total{dataset="default",model="mlp",outcome="ok"} 1.0' in text
    assert 'outcome="wrong_feature_count"' in text
    assert 'modelbus_builds_requested_total{model="slr"} 1.0' in text
    assert "modelbus_log_head " in text
    assert 'modelbus_handler_lag_events{handler="builds"}' in text
    assert 'modelbus_builds{model="mlp",status="ok"}' in text
    assert 'modelbus_serving_version{dataset="default",model="mlp"} 1.0' in text
    assert "modelbus_prediction_batch_size_bucket" in text


def test_each_app_has_its_own_metrics_registry(app):
    first, second = create_app(app), create_app(app)
    first.test_client().get("/healthz")
    assert "modelbus_http_requests_total" in second.test_client().get("/metrics").get_data(as_text=True)
    assert 'route="/healthz"' not in second.test_client().get("/metrics").get_data(as_text=True)
    for flask_app in (first, second):
        flask_app.extensions["modelbus"].close()


def test_unknown_routes_and_methods_are_json_errors(client):
    assert_error(client.get("/nope"), 404, "not_found", "no route for GET /nope")
    response = client.post("/api/models")
    assert_error(response, 405, "method_not_allowed", "allowed: GET")
    assert "GET" in response.headers["Allow"]
    assert_error(client.delete("/api/events"), 405, "method_not_allowed")


def test_an_unexpected_exception_is_a_json_500(app, caplog):
    flask_app = create_app(app)

    @flask_app.get("/boom")
    def boom():
        raise RuntimeError("kaput")

    response = flask_app.test_client().get("/boom")
    assert_error(response, 500, "internal")
    assert "kaput" not in response.get_data(as_text=True)
    assert any("unexpected error answering GET /boom" in r.getMessage() for r in caplog.records)
    flask_app.extensions["modelbus"].close()


def test_a_body_over_the_list_limit_is_413(client, app):
    raw = b"[" + b" " * (app.settings.max_message_bytes * 64 + 10) + b"]"
    assert_error(client.post("/api/predict", data=raw, content_type="application/json"), 413, "too_large")


# -- auth -----------------------------------------------------------------------------------


def test_write_routes_need_the_bearer_token(secured):
    event = {"type": "training", "payload": "3,4,5,6"}
    for response in (
        secured.post("/api/events", json=event),
        secured.post("/api/events", json=event, headers={"Authorization": "Bearer wrong"}),
        secured.post("/api/events", json=event, headers={"Authorization": TOKEN}),
        secured.get("/api/build_mlp"),
        secured.get("/api/build_linear", headers={"Authorization": "Basic " + TOKEN}),
    ):
        assert_error(response, 401, "unauthorized", "Bearer")
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert secured.post("/api/events", json=event, headers=auth).status_code == 202
    assert secured.get("/api/build_slr", headers=auth).status_code == 202
    # Reads and predictions stay open.
    assert secured.get("/api/predict/mlp/3,4,5").status_code == 200
    assert secured.post("/api/predict", json={"model": "mlp", "payload": "3,4,5"}).status_code == 200
    assert secured.get("/api/events?limit=1").status_code == 200


# -- OpenAPI --------------------------------------------------------------------------------


@pytest.mark.parametrize("secure", [False, True])
def test_openapi_document_matches_the_routes(client, secured, secure):
    client = secured if secure else client
    doc = client.get("/openapi.json").get_json()
    assert doc["openapi"].startswith("3.")
    assert client.get("/swagger.json").get_json() == doc
    routes = set()
    for rule in client.application.url_map.iter_rules():
        # The dashboard's HTML pages and assets are not API routes; its JSON routes are documented.
        if rule.endpoint == "static" or rule.endpoint.startswith("dashboard."):
            continue
        path = re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", rule.rule)
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            routes.add((path, method.lower()))
    documented = {(path, method) for path, ops in doc["paths"].items() for method in ops}
    assert routes == documented
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            assert op["responses"], (path, method)
            names = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
            assert names == set(re.findall(r"{(\w+)}", path)), path
            writes = (method == "post" and (path == "/api/events" or path.startswith("/api/models/"))
                      or path.startswith("/api/build_"))
            # Only a server with a token needs one.
            assert ("security" in op) == (writes and secure), path
    refs = set(re.findall(r'"#/components/schemas/(\w+)"', json.dumps(doc)))
    assert refs <= set(doc["components"]["schemas"])


# -- hot reload in the embedded default -------------------------------------------------------


def test_promotion_reaches_the_api_through_the_in_process_notice(tmp_path):
    application = App(Settings(database_url=f"sqlite:///{tmp_path / 'reload.db'}"))
    seed_models(application)
    flask_app = create_app(application)
    services = Services()
    flask_app.extensions["modelbus"].start(services.start)
    client = flask_app.test_client()
    assert client.get("/api/predict/mlp/3,4,5").get_json()["version"] == 1
    swaps = flask_app.extensions["modelbus"].cache.swaps
    # The in-process transport delivers the build handler's notice synchronously, so the
    # swap has happened when the handlers return: no polling involved.
    build(application, "mlp", params={"epochs": 20, "hidden": [4], "seed": 11}, promote=2)
    assert flask_app.extensions["modelbus"].cache.swaps > swaps
    body = client.get("/api/predict/mlp/3,4,5").get_json()
    assert body["version"] == 2
    assert body["modelid"] == registry.get_version(application.engine, "mlp", "default", 2).uuid
    services.stop.set()
    services.wait(timeout=10)
    flask_app.extensions["modelbus"].close()
    application.close()


def test_a_broker_that_is_down_is_a_503_not_a_500(tmp_path):
    """Kafka mode with nothing listening at the bootstrap: writes answer 503 and say why."""
    from modelbus.broker import free_port

    application = App(Settings(database_url=f"sqlite:///{tmp_path / 'down.db'}",
                               kafka_bootstrap=f"127.0.0.1:{free_port()}"))
    flask_app = create_app(application)
    try:
        response = flask_app.test_client().post("/api/events", data=b'{"type":"training","payload":"3,4,5,6"}')
        assert_error(response, 503, "unavailable", "retry later")
    finally:
        flask_app.extensions["modelbus"].close()
        application.close()


# -- schemas and docs -----------------------------------------------------------------------


def test_every_message_schema_is_served_and_describes_the_messages(client):
    import jsonschema_rs

    names = client.get("/api/schemas").get_json()["schemas"]
    assert {"event", "prediction_request", "prediction", "dead_letter", "model_version", "build_outcome",
            "model_update", "mlp_params", "slr_params", "linear_params"} <= set(names)
    schemas = {}
    for name in names:
        response = client.get(f"/api/schemas/{name}")
        assert response.status_code == 200, name
        schemas[name] = jsonschema_rs.validator_for(response.get_json())
    for path in sorted((ROOT / "messages").glob("*.json")):
        message = json.loads(path.read_text())
        assert schemas["prediction_request" if path.name.startswith(("predict", "typed_predict")) else "event"].is_valid(message), path
    assert not schemas["event"].is_valid({"type": "command", "payload": "build_mlp", "model": "mlp"})
    assert not schemas["event"].is_valid({"type": "training", "payload": "3,4,5", "id": " x"})
    assert schemas["mlp_params"].is_valid({"hidden": [8], "batch_size": None})
    assert not schemas["mlp_params"].is_valid({"hidden": [0]})
    assert_error(client.get("/api/schemas/nope"), 404, "not_found", "known: ")


def test_swagger_ui_is_served_from_the_installed_package(client):
    page = client.get("/docs")
    assert page.status_code == 200 and page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    assert "/openapi.json" in html and "cdn" not in html.lower()
    for asset in re.findall(r'(?:src|href)="/docs/([^"]+)"', html):
        response = client.get(f"/docs/{asset}")
        assert response.status_code == 200 and len(response.get_data()) > 100, asset
    assert client.get("/docs/swagger-ui-bundle.js").mimetype == "text/javascript"
    assert_error(client.get("/docs/..%2Fapp.py"), 404, "not_found")


@pytest.mark.parametrize("route, fragment", [
    ("/api/events?type=AAA", "'type' must be one of training, command, feedback, raw, got 'AAA'"),
    ("/api/events?name=build_tree", "'name' must be one of training, build_mlp"),
    ("/api/events?after=", "'after' must be an integer, got ''"),
    ("/api/events?dataset=a%20b", "dataset 'a b' must be letters"),
    ("/api/events?dataset=", "'dataset' must have 1 to 64 characters, got 0"),
    ("/api/errors?limit=", "'limit' must be an integer"),
    ("/api/models/mlp?builds=1001", "'builds' must be between 0 and 1000, got 1001"),
    ("/api/models/mlp?dataset=", "'dataset'"),
])
def test_query_parameters_are_read_through_their_declarations(client, route, fragment):
    # An empty or unknown value used to be ignored: a typo listed everything, or nothing.
    assert_error(client.get(route), 400, "bad_param", fragment)
