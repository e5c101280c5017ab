"""`modelbus api` as a user runs it: waitress on a real socket, seed routes and the JSON API over HTTP."""
from __future__ import annotations

import json
import socket

import numpy as np
import pytest
import requests
from waitress.adjustments import Adjustments

from modelbus.api.context import BATCH_BODY_FACTOR
from modelbus.builders import get_builder
from conftest import settings_env
from modelbus.db import registry
from modelbus.db.engine import make_engine
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


def raw_exchange(base: str, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send raw bytes on a new connection; the status, headers and body of the answer.

    Each request here is sized so the server has read all of it when it answers: a server
    closing with bytes unread resets the connection, and the answer may be lost with it.
    """
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in header_lines)}
    return int(status_line.split()[1]), headers, body


def test_errors_the_server_answers_before_the_app_are_json_too(server):
    """waitress refuses these itself (bad framing, sizes over the limits); the body is still the API's JSON."""
    base, _ = server
    limit = Settings().max_message_bytes * BATCH_BODY_FACTOR
    # A 10 MB upload, as a client sends it: refused as it arrives.
    response = requests.post(f"{base}/api/events", data=b"x" * (10 * 1024 * 1024), timeout=30)
    assert response.status_code == 413 and response.headers["Content-Type"] == "application/json"
    assert response.json() == {"error": {"code": "too_large", "message": f"request body is larger than {limit} bytes"}}

    max_header = Adjustments.max_request_header_size
    chunk = limit + 1 - len(f"{limit:x}\r\n")  # framed, exactly one byte over the limit
    cases = [
        (b"GARBAGE\r\n\r\n", 400, "bad_request", "malformed http request: start line is invalid"),
        (b"GET /healthz HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n", 400, "bad_request", "invalid header"),
        (b"POST /api/events HTTP/1.1\r\nHost: x\r\nContent-Length: nine\r\n\r\n", 400, "bad_request",
         "content-length is invalid"),
        (b"POST /api/events HTTP/1.1\r\nHost: x\r\nContent-Length: 10485760\r\n\r\n", 413, "too_large",
         f"larger than {limit} bytes"),
        (b"POST /api/events HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
         + f"{chunk:x}\r\n".encode() + b"x" * chunk, 413, "too_large", f"larger than {limit} bytes"),
        (b"POST /api/events HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400, "bad_request",
         "invalid chunk size"),
        (b"POST /api/events HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 501, "not_implemented",
         "transfer-encoding"),
    ]
    padding = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: "
    cases.append((padding + b"a" * (max_header - len(padding)), 431, "headers_too_large",
                  f"larger than {max_header} bytes"))
    for raw, status, code, words in cases:
        got, headers, body = raw_exchange(base, raw)
        what = raw[:60]
        assert (got, headers.get("content-type")) == (status, "application/json"), (what, got, body[:200])
        error = json.loads(body)["error"]
        assert error["code"] == code, (what, error)
        assert words in error["message"].lower(), (what, error)
    # The app's own 413 (a body under the server's cap, over the per-message limit) agrees.
    over = requests.post(f"{base}/api/events", data=b"{" + b" " * Settings().max_message_bytes + b"}", timeout=30,
                         headers={"Authorization": f"Bearer {TOKEN}"})
    assert over.status_code == 413 and over.json()["error"]["code"] == "too_large"
