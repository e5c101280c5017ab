"""A frozen MariaDB (connections open, no byte moving) behind a real waitress server: every
database-backed route answers 503 within its timeout, predictions from memory go on, and
everything recovers on its own once the database answers again."""
from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Iterator

import pytest
import requests
from sqlalchemy.engine import make_url

from modelbus.web import create_api as create_app
from modelbus.api.server import ApiServer
from modelbus.db.engine import breaker_of, make_engine
from modelbus.db.events import EventStore
from modelbus.app import App
from modelbus.runtime import Services
from modelbus.settings import Settings
from serving_support import seed_models
from tcp_proxy import FreezableProxy

# Short timeouts keep the test fast; the bound the test checks scales with them.
API_DB_TIMEOUT = 1.5
POOL_WAIT = 0.5
THREADS = 6
# What a 503 may take on top of the timeout on a busy 2-core machine.
SLACK = 2.5
# Once the breaker is open a refusal involves no database at all.
AT_ONCE = 1.0

DB_ROUTES = [
    ("GET", "/healthz"),
    ("GET", "/api/events?limit=5"),
    ("GET", "/api/errors"),
    ("GET", "/api/models"),
    ("GET", "/api/models/mlp"),
    ("POST", "/api/events"),
    ("GET", "/api/build_mlp"),
    ("GET", "/api/build_slr"),
    ("GET", "/api/build_linear"),
]


@pytest.fixture
def seeded(mysql_db) -> str:
    """The MySQL store with darcey and one production version of each model."""
    app = App(Settings(database_url=mysql_db))
    seed_models(app)
    app.close()
    return mysql_db


@contextmanager
def served(app: App, threads: int) -> Iterator[str]:
    """The app's API on a free port with hot reload, as `modelbus api` runs it; yields its base URL."""
    flask_app = create_app(app)
    serving = flask_app.extensions["modelbus"]
    server = ApiServer(flask_app, "127.0.0.1", 0, threads)
    services = Services()
    serving.start(services.start)
    services.start("api", server.run)
    try:
        yield server.url
    finally:
        services.stop.set()
        services.wait(timeout=10)
        serving.close()


def call(base: str, method: str, path: str) -> tuple[requests.Response, float]:
    """One request on its own connection, and how long its answer took."""
    body = {"type": "training", "payload": "3,4,5,6", "id": f"frozen-{uuid.uuid4().hex}"}
    started = time.monotonic()
    response = requests.request(method, base + path, json=body if method == "POST" else None, timeout=30)
    return response, time.monotonic() - started


def assert_unavailable(response: requests.Response, took: float, bound: float, what: str) -> None:
    assert response.status_code == 503, f"{what}: {response.status_code} {response.text}"
    assert response.headers["Content-Type"] == "application/json"
    assert response.json()["error"]["code"] == "unavailable", f"{what}: {response.text}"
    assert took < bound, f"{what} took {took:.2f}s (bound {bound:.2f}s)"


def predict_ok(base: str, expected: dict[str, float]) -> float:
    """A prediction of each loaded model, answered as usual; returns the slowest answer's time."""
    slowest = 0.0
    for kind, result in expected.items():
        response, took = call(base, "GET", f"/api/predict/{kind}/3,4,5")
        assert response.status_code == 200, response.text
        assert response.json()["result"] == result
        slowest = max(slowest, took)
    return slowest


def test_a_frozen_database_gets_503_within_the_timeout_and_predictions_go_on(seeded):
    target = make_url(seeded)
    with FreezableProxy(target.host, target.port or 3306) as proxy:
        settings = Settings(database_url=proxy.url(seeded), api_db_timeout=API_DB_TIMEOUT,
                            api_db_pool_timeout=POOL_WAIT, api_threads=THREADS)
        app = App(settings)
        with served(app, THREADS) as base:
            # Healthy: every route answers, and the pool holds connections that will go silent.
            for method, path in DB_ROUTES:
                response, _ = call(base, method, path)
                assert response.status_code in (200, 202), f"{method} {path}: {response.text}"
            expected = {kind: requests.get(f"{base}/api/predict/{kind}/3,4,5", timeout=10).json()["result"]
                        for kind in ("mlp", "slr", "linear")}
            breaker = breaker_of(app.api_engine)
            assert breaker is not None and not breaker.is_open

            proxy.freeze()
            frozen_at = time.monotonic()
            # A model that is not loaded is looked up in the registry: that caller waits for
            # the database, no one else does.
            with ThreadPoolExecutor(max_workers=1) as one:
                miss = one.submit(call, base, "GET", "/api/predict/mlp/3,4,5?dataset=elsewhere")
                time.sleep(0.2)
                slowest = predict_ok(base, expected)
                assert not miss.done(), "the registry read did not wait for the frozen database"
                assert slowest < AT_ONCE, f"a prediction from memory took {slowest:.2f}s"
                response, took = miss.result()
            assert response.status_code == 503 and response.json()["error"]["code"] == "registry_unavailable"
            assert took < API_DB_TIMEOUT + SLACK, f"the registry read took {took:.2f}s"
            assert breaker.is_open

            # Many requests at once, more than the server has threads: each answers 503 at once
            # now that the outage is known, and predictions are answered among them.
            burst = DB_ROUTES * 4
            with ThreadPoolExecutor(max_workers=len(burst)) as pool:
                answers = list(pool.map(lambda route: (route, *call(base, *route)), burst))
                slowest = predict_ok(base, expected)
            for (method, path), response, took in answers:
                assert_unavailable(response, took, AT_ONCE, f"{method} {path}")
            assert slowest < AT_ONCE, f"a prediction took {slowest:.2f}s among the refused requests"
            metrics = requests.get(f"{base}/metrics", timeout=10)
            assert metrics.status_code == 200 and "modelbus_http_requests_total" in metrics.text
            assert breaker.trips == 1
            assert proxy.frozen and time.monotonic() - frozen_at < 15

            proxy.thaw()
            thawed_at = time.monotonic()
            while requests.get(f"{base}/healthz", timeout=10).status_code != 200:
                assert time.monotonic() - thawed_at < API_DB_TIMEOUT + 5, "no recovery after the thaw"
                time.sleep(0.1)
            for method, path in DB_ROUTES:
                response, _ = call(base, method, path)
                assert response.status_code in (200, 202), f"after the thaw, {method} {path}: {response.text}"
            assert predict_ok(base, expected) < AT_ONCE
            assert not breaker.is_open
        app.close()


def test_concurrent_requests_on_a_database_that_just_froze_are_bounded(seeded):
    """Before the first timeout nothing is known: a burst larger than the thread pool still ends within the bound."""
    target = make_url(seeded)
    with FreezableProxy(target.host, target.port or 3306) as proxy:
        settings = Settings(database_url=proxy.url(seeded), api_db_timeout=API_DB_TIMEOUT,
                            api_db_pool_timeout=POOL_WAIT, api_threads=THREADS)
        app = App(settings)
        event_id = f"retried-{uuid.uuid4().hex}"
        with served(app, THREADS) as base:
            for method, path in DB_ROUTES:
                assert call(base, method, path)[0].status_code in (200, 202)
            proxy.freeze()
            started = time.monotonic()
            burst = DB_ROUTES * 3
            with ThreadPoolExecutor(max_workers=len(burst) + 1) as pool:
                answers = [pool.submit(call, base, *route) for route in burst]
                write = pool.submit(lambda: requests.post(f"{base}/api/events", timeout=30, json={
                    "type": "training", "payload": "3,4,5,6", "id": event_id}))
                predictions = [call(base, "GET", "/api/predict/linear/3,4,5") for _ in range(5)]
                results = [f.result() for f in answers]
            whole = time.monotonic() - started
            for (method, path), (response, took) in zip(burst, results):
                assert_unavailable(response, took, API_DB_TIMEOUT + POOL_WAIT + SLACK, f"{method} {path}")
            assert write.result().status_code == 503
            # Server threads waiting on the database are released by the timeout, then the
            # breaker answers the rest: the burst does not queue for timeout after timeout.
            assert whole < API_DB_TIMEOUT + POOL_WAIT + SLACK, f"the burst took {whole:.2f}s"
            for response, took in predictions:
                assert response.status_code == 200, response.text
                assert took < API_DB_TIMEOUT + POOL_WAIT + SLACK
            proxy.thaw()
            deadline = time.monotonic() + API_DB_TIMEOUT + 5
            while requests.get(f"{base}/healthz", timeout=10).status_code != 200:
                assert time.monotonic() < deadline, "no recovery after the thaw"
                time.sleep(0.1)
            # The write refused during the freeze is retried with its id: stored once.
            retried = requests.post(f"{base}/api/events", timeout=10,
                                    json={"type": "training", "payload": "3,4,5,6", "id": event_id})
            assert retried.status_code == 202, retried.text
        app.close()
    engine = make_engine(seeded)
    assert EventStore(engine).count(event_id=event_id) == 1
    engine.dispose()
