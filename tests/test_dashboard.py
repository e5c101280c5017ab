"""The dashboard through Flask's test client: pages and their headers, the JSON feeds, the write routes, verify."""
from __future__ import annotations

import re
import threading
import time
from types import SimpleNamespace

import pytest
from sqlalchemy import update

from conftest import empty_database
from modelbus.api.sampler import Sampler
from modelbus.api.verify_jobs import EXTENSION as VERIFY_JOBS
from modelbus.api.verify_jobs import VerifyJobs
from modelbus.app import App
from modelbus.db.engine import make_engine
from modelbus.db.schema import model_versions
from modelbus.settings import Settings
from modelbus.web import create_api
from serving_support import FAST_MLP, build, run_handlers, seed_models

TOKEN = "dash-token"
HOSTILE_ID = "<img src=x onerror=alert(1)>"
PAGES = ["/", "/models", "/models/mlp", "/models/mlp/versions/1?dataset=default", "/models/dtr", "/windows",
         "/models/dtr/versions/1", "/alerts", "/events", "/dead-letters"]


@pytest.fixture(scope="module", params=["sqlite", "mysql"])
def database(request, tmp_path_factory) -> str:
    """Four promoted models, a second mlp promoted by hand, an event with a hostile id and three dead letters."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('dashboard') / 'modelbus.db'}"
    else:
        url = request.getfixturevalue("mysql_url")
        engine = make_engine(url)
        empty_database(engine)
        engine.dispose()
    app = App(Settings(database_url=url))
    seed_models(app)
    build(app, "dtr")
    build(app, "mlp", params=dict(FAST_MLP, seed=9), promote=2)
    outcomes = app.publisher.post([{"type": "training", "payload": "3,4,5,6", "id": HOSTILE_ID},
                                   b"<script>alert(2)</script>", b"not json either", b"\xff\xfe<b>"], "test")
    assert [o.status for o in outcomes] == ["accepted", "rejected", "rejected", "rejected"]
    run_handlers(app)
    app.close()
    return url


@pytest.fixture
def app(database):
    application = App(Settings(database_url=database))
    yield application
    application.close()


@pytest.fixture
def client(app):
    flask_app = create_api(app)
    yield flask_app.test_client()
    flask_app.extensions["modelbus"].close()


@pytest.fixture
def secured(database):
    application = App(Settings(database_url=database, api_token=TOKEN))
    flask_app = create_api(application)
    yield flask_app.test_client()
    flask_app.extensions["modelbus"].close()
    application.close()


def error_code(response, status: int) -> str:
    assert response.status_code == status, response.get_data(as_text=True)
    return response.get_json()["error"]["code"]


# -- pages ----------------------------------------------------------------------------------


@pytest.mark.parametrize("path", PAGES)
def test_every_page_is_html_with_a_strict_script_policy_and_no_inline_script(client, path):
    response = client.get(path)
    assert response.status_code == 200 and response.mimetype == "text/html"
    policy = dict(part.strip().split(" ", 1) for part in response.headers["Content-Security-Policy"].split(";"))
    assert policy["script-src"] == "'self'" and policy["default-src"] == "'none'"
    assert "unsafe" not in policy["script-src"] and policy["frame-ancestors"] == "'none'"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    html = response.get_data(as_text=True)
    scripts = re.findall(r"<script\b([^>]*)>(.*?)</script>", html, re.S)
    assert scripts and all('src="/static/' in attrs and not body.strip() for attrs, body in scripts), scripts
    assert not re.search(r"\son[a-z]+\s*=", html), "no inline event handlers"


def test_the_chart_bundle_is_served_from_the_plotly_package(client):
    response = client.get("/static/vendor/plotly.min.js")
    assert response.status_code == 200 and response.mimetype == "text/javascript"
    assert b"plotly.js" in response.get_data()[:200]
    assert client.get("/static/dashboard/dashboard.js").status_code == 200
    assert client.get("/static/dashboard/dashboard.css").status_code == 200


def test_request_values_the_pages_repeat_are_escaped(client):
    hostile = '"><script>alert(1)</script>'
    html = client.get("/models/mlp", query_string={"dataset": hostile}).get_data(as_text=True)
    assert "<script>alert(1)</script>" not in html
    assert "&#34;&gt;&lt;script&gt;alert(1)&lt;/script&gt;" in html
    missing = client.get("/models/<img src=x onerror=alert(1)>")
    assert missing.status_code == 404 and missing.mimetype == "text/html"
    text = missing.get_data(as_text=True)
    assert "<img src=x" not in text and "&lt;img src=x onerror=alert(1)&gt;" in text


def test_the_version_page_shows_params_metrics_and_lineage(client, app):
    html = client.get("/models/mlp/versions/2?dataset=default").get_data(as_text=True)
    from modelbus.db import registry

    mv = registry.get_version(app.engine, "mlp", "default", 2)
    assert f"<code>{mv.lineage_digest}</code>" in html and f"<code>{mv.sha256}</code>" in html
    assert f'after={mv.first_position - 1}' in html and "type=training" in html
    assert "<th scope=\"row\">epochs</th><td><code>30</code></td>" in html
    assert 'id="chart-confusion"' in html and 'id="chart-classes"' in html
    assert client.get("/models/slr/versions/1?dataset=default").get_data(as_text=True).count("chart-confusion") == 0
    assert client.get("/models/mlp/versions/99").status_code == 404
    tree = client.get("/models/dtr/versions/1").get_data(as_text=True)
    assert '<span class="label">accuracy</span>' in tree and 'id="chart-confusion"' in tree
    assert '<th scope="row">depth</th>' in tree and '<th scope="row">leaves</th>' in tree
    assert "<th scope=\"row\">min_samples_leaf</th><td><code>20</code></td>" in tree
    assert client.get("/models/mlp/versions/1?dataset=nope").status_code == 404


# -- the JSON feeds -------------------------------------------------------------------------


def test_overview_reports_handlers_queue_dead_letters_models_and_samples(client, app):
    body = client.get("/api/dashboard/overview").get_json()
    head = app.store.head()
    assert body["log_head"] == head and body["mode"] == "embedded"
    assert {h["handler"]: h["lag"] for h in body["handlers"]} == {"builds": 0, "training_records": 0, "feedback": 0}
    assert body["build_queue"] == []
    assert {(m["model"], m["production"]) for m in body["models"]} == {("mlp", 2), ("dtr", 1), ("slr", 1), ("linear", 1)}
    reasons = {r["code"]: r["count"] for r in body["dead_letter_reasons"]}
    assert (reasons["not_json"], reasons["not_utf8"]) == (2, 1)
    assert body["dead_letters"] == app.store.dead_letter_count() == sum(reasons.values())
    assert body["series"]["head"] == [head] and body["series"]["ingest_rate"] == [None]
    assert body["builds"][0]["model"] == "mlp" and body["builds"][0]["version"] == 2

    # A build command no handler has reached yet is in the queue, oldest first.
    [queued] = app.publisher.post([{"type": "command", "payload": "build_slr", "id": "queued-slr"}], "test")
    try:
        queue = client.get("/api/dashboard/overview").get_json()["build_queue"]
        assert [(q["position"], q["model"], q["id"]) for q in queue] == [(queued.position, "slr", "queued-slr")]
    finally:
        run_handlers(app)


def test_model_histories_carry_each_version_and_every_production_move(client):
    [mlp] = client.get("/api/dashboard/models?model=mlp").get_json()["models"]
    assert (mlp["model"], mlp["dataset"], mlp["production"], mlp["metric"]) == ("mlp", "default", 2, "accuracy")
    assert [v["version"] for v in mlp["versions"]] == [1, 2]
    moves = [(p["version"], p["automatic"]) for p in mlp["promotions"] if p["status"] == "moved"]
    assert moves[0] == (1, True) and moves[-1][0] == 2
    assert [p["position"] for p in mlp["promotions"]] == sorted(p["position"] for p in mlp["promotions"])
    models = client.get("/api/dashboard/models").get_json()["models"]
    assert {m["model"]: m["metric"] for m in models} == {"mlp": "accuracy", "dtr": "accuracy", "slr": "r2",
                                                         "linear": "r2"}
    # A query parameter outside its declared values is a bad_param, as on every route.
    assert error_code(client.get("/api/dashboard/models?model=xgboost"), 400) == "bad_param"


def test_dead_letters_filter_by_reason_and_page_by_id(client):
    page = client.get("/api/dashboard/dead-letters?code=not_json&limit=1").get_json()
    assert page["total"] == 2 and len(page["errors"]) == 1 and page["next"] == page["errors"][0]["id"]
    assert page["errors"][0]["raw"] == "<script>alert(2)</script>"
    rest = client.get(f"/api/dashboard/dead-letters?code=not_json&after={page['next']}").get_json()
    assert [e["raw"] for e in rest["errors"]] == ["not json either"] and rest["next"] is None
    [binary] = client.get("/api/dashboard/dead-letters?code=not_utf8").get_json()["errors"]
    assert binary["raw_encoding"] == "base64" and binary["raw_bytes"] == 5
    assert {r["code"] for r in page["reasons"]} == {"not_json", "not_utf8"}
    assert error_code(client.get("/api/dashboard/dead-letters?limit=0"), 400) == "bad_param"


# -- write routes -----------------------------------------------------------------------------


def test_build_and_promote_queue_command_events(client, app):
    built = client.post("/api/models/slr/build", json={"dataset": "default", "params": {"seed": 3}})
    assert built.status_code == 202
    [row] = app.store.read(after=built.get_json()["position"] - 1, limit=1)
    assert (row.name, row.source, row.event_id) == ("build_slr", "http", built.get_json()["id"])
    promoted = client.post("/api/models/mlp/promote", json={"version": 1})
    assert promoted.status_code == 202
    [row] = app.store.read(after=promoted.get_json()["position"] - 1, limit=1)
    assert (row.name, row.source) == ("promote", "http")
    run_handlers(app)
    try:
        from modelbus.db import registry

        assert registry.aliases(app.engine)[("mlp", "default")] == 1
        assert registry.get_build(app.engine, event_id=built.get_json()["id"])["status"] == "ok"
    finally:
        client.post("/api/models/mlp/promote", json={"version": 2})
        run_handlers(app)


def test_write_routes_refuse_bad_requests_and_store_nothing_for_them(client, app):
    head = app.store.head()
    assert error_code(client.post("/api/models/mlp/promote", data="version=2"), 415) == "unsupported_media_type"
    assert error_code(client.post("/api/models/mlp/promote", json={"version": 2, "force": True}), 400) == "unknown_field"
    assert error_code(client.post("/api/models/mlp/promote", json={}), 400) == "missing_field"
    assert error_code(client.post("/api/models/mlp/promote", json=[1]), 400) == "not_object"
    assert error_code(client.post("/api/models/xgboost/build", json={}), 404) == "unknown_model"
    assert error_code(client.post("/api/models/mlp/build", data="{", content_type="application/json"), 400) == "not_json"
    assert app.store.head() == head
    # The parser judges the fields as for any command; a rejected command is a dead letter.
    dead = app.store.dead_letter_count()
    assert error_code(client.post("/api/models/mlp/promote", json={"version": "two"}), 400) == "bad_field"
    assert error_code(client.post("/api/models/mlp/build", json={"dataset": "a b"}), 400) == "bad_field"
    assert app.store.head() == head and app.store.dead_letter_count() == dead + 2


def test_write_routes_need_the_token_when_one_is_set(secured, database):
    assert error_code(secured.post("/api/models/mlp/build", json={}), 401) == "unauthorized"
    assert error_code(secured.post("/api/models/mlp/promote", json={"version": 2}), 401) == "unauthorized"
    assert error_code(secured.post("/api/models/mlp/versions/1/verify"), 401) == "unauthorized"
    wrong = {"Authorization": "Bearer nope"}
    assert error_code(secured.post("/api/models/mlp/promote", json={"version": 2}, headers=wrong), 401) == "unauthorized"
    ok = secured.post("/api/models/mlp/promote", json={"version": 2}, headers={"Authorization": f"Bearer {TOKEN}"})
    assert ok.status_code == 202
    # Reads stay open, as every read route of the API.
    assert secured.get("/api/models/mlp/versions/1/verify").status_code == 200
    assert secured.get("/").status_code == 200


def wait_for_verify(client, url: str, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        state = client.get(url).get_json()
        if state["state"] not in ("queued", "running") or time.monotonic() > deadline:
            return state
        time.sleep(0.1)


def test_verify_rebuilds_in_the_background_and_reports_identical(client):
    url = "/api/models/linear/versions/1/verify?dataset=default"
    assert client.get(url).get_json() == {"state": "never"}
    started = client.post(url)
    assert started.status_code == 202 and started.get_json()["state"] in ("queued", "running")
    done = wait_for_verify(client, url)
    assert done["state"] == "ok" and done["differences"] == [] and done["seconds"] >= 0
    assert error_code(client.get("/api/models/mlp/versions/99/verify"), 404) == "unknown_version"
    assert error_code(client.post("/api/models/mlp/versions/99/verify"), 404) == "unknown_version"
    assert error_code(client.get("/api/models/mlp/versions/2147483648/verify"), 400) == "out_of_range"


def test_verify_reports_a_tampered_version_as_a_mismatch(client, app):
    with app.engine.begin() as conn:
        original = conn.execute(model_versions.select().where(model_versions.c.model == "slr")).first().sha256
        conn.execute(update(model_versions).where(model_versions.c.model == "slr").values(sha256="0" * 64))
    try:
        url = "/api/models/slr/versions/1/verify"
        assert client.post(url).status_code == 202
        done = wait_for_verify(client, url)
        assert done["state"] == "mismatch"
        assert any(line.startswith("artifact sha256: recorded 0000") for line in done["differences"]), done
    finally:
        with app.engine.begin() as conn:
            conn.execute(update(model_versions).where(model_versions.c.model == "slr").values(sha256=original))


def test_a_verify_that_raises_is_reported_and_the_next_one_runs(client):
    calls = []
    release = threading.Event()

    def flaky(engine, recorded):
        calls.append(recorded.version)
        if len(calls) == 1:
            raise ConnectionError("the database went away")
        release.wait(10)
        return SimpleNamespace(ok=True, differences=[], notes=["a note"])

    client.application.extensions[VERIFY_JOBS] = VerifyJobs(run=flaky)
    url = "/api/models/mlp/versions/1/verify"
    client.post(url)
    failed = wait_for_verify(client, url)
    assert failed["state"] == "failed" and failed["error"] == "ConnectionError: the database went away"
    # A second click while one runs does not start another.
    assert client.post(url).get_json()["state"] in ("queued", "running")
    assert client.post(url).get_json()["state"] in ("queued", "running")
    release.set()
    final = wait_for_verify(client, url)
    assert (final["state"], final["notes"], "error" in final) == ("ok", ["a note"], False)
    assert calls == [1, 1]


# -- the sampler ------------------------------------------------------------------------------


class FlakyStore:
    """An event store whose head() fails while `down` is set (the sampler's fault)."""

    def __init__(self, store):
        self.store = store
        self.engine = store.engine
        self.down = False

    def head(self) -> int:
        if self.down:
            raise ConnectionError("database unreachable")
        return self.store.head()

    def dead_letter_count(self) -> int:
        return self.store.dead_letter_count()


def lag_growth(series) -> int:
    lag = series["lag"]["training_records"]
    return lag[-1] - lag[0]


def test_the_sampler_computes_rates_and_leaves_a_gap_when_the_store_fails(app, caplog):
    now = [1000.0]
    flaky = FlakyStore(app.store)
    metrics = SimpleNamespace(predictions=SimpleNamespace(collect=lambda: [SimpleNamespace(samples=[
        SimpleNamespace(name="modelbus_predictions_total", value=now[0] - 1000.0)])]))
    sampler = Sampler(flaky, metrics, interval=5.0, clock=lambda: now[0])
    head = app.store.head()
    assert sampler.sample()
    app.publisher.post([{"type": "training", "payload": f"1,2,3,{i}"} for i in range(10)], "test")
    now[0] += 5.0
    flaky.down = True
    assert not sampler.sample() and not sampler.sample()
    assert sum("reading the store failed" in r.message for r in caplog.records) == 1
    flaky.down = False
    sampler.sample_if_due()  # the last point is 5 s old: due
    sampler.sample_if_due()  # just sampled: not due
    series = sampler.series()
    assert series["head"] == [head, head + 10]
    assert series["ingest_rate"] == [None, 2.0] and series["prediction_rate"] == [None, 1.0]
    assert set(series["lag"]) == {"builds", "training_records", "feedback"} and lag_growth(series) == 10
    run_handlers(app)


def test_the_sampler_thread_keeps_going_after_a_failure(app):
    flaky = FlakyStore(app.store)
    flaky.down = True
    sampler = Sampler(flaky, None, interval=0.01)
    stop = threading.Event()
    thread = threading.Thread(target=sampler.run, args=(stop,))
    thread.start()
    time.sleep(0.05)
    flaky.down = False
    deadline = time.monotonic() + 5
    while not sampler.series()["t"] and time.monotonic() < deadline:
        time.sleep(0.01)
    stop.set()
    thread.join(5)
    assert sampler.series()["head"] and not thread.is_alive()


def test_the_feeds_answer_503_when_the_database_cannot_be_read(tmp_path):
    # A database file in a folder that does not exist: every read fails, as when the server is gone.
    application = App(Settings(database_url=f"sqlite:///{tmp_path / 'missing' / 'modelbus.db'}"), migrate=False)
    flask_app = create_api(application)
    client = flask_app.test_client()
    try:
        for path in ("/api/dashboard/overview", "/api/dashboard/models", "/api/dashboard/dead-letters"):
            assert error_code(client.get(path), 503) == "unavailable", path
        # The pages themselves need no database: they load and report the outage from their feeds.
        assert client.get("/").status_code == 200
        # The version page reads the registry itself: an HTML page saying so.
        page = client.get("/models/mlp/versions/1")
        assert page.status_code == 503 and page.mimetype == "text/html"
        assert "the registry cannot be read now (Outage)" in page.get_data(as_text=True)
    finally:
        flask_app.extensions["modelbus"].close()
        application.close()
