"""`modelbus api --workers 2` as a user runs it: gunicorn's workers on MySQL, answers, hot reload, a clean stop."""
from __future__ import annotations

import json
import re
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import requests
from sqlalchemy import func, select

from conftest import settings_env
from modelbus.app import App
from modelbus.broker import free_port
from modelbus.builders import get_builder
from modelbus.db import registry
from modelbus.db.schema import predictions
from modelbus.settings import Settings
from serving_support import Proc, build, seed_models

ROWS = [[i % 11, (i * 3) % 11, (i * 7) % 11] for i in range(64)]


def cpu_ticks(pid: int) -> int:
    """User + system clock ticks a process has used."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def expected(engine, kind: str) -> tuple[int, np.ndarray]:
    """The production version of kind and its answers to ROWS, from the registry's artifact."""
    mv = registry.production(engine, kind, "default")
    return mv.version, get_builder(kind).load(mv.artifact).predict(np.array(ROWS, dtype=float))


def burst(base: str, kind: str) -> list[dict]:
    """Every row of ROWS as its own single-row request, 8 at a time, each on a new connection."""
    def one(row: list[int]) -> dict:
        response = requests.post(f"{base}/api/predict", json={"model": kind, "payload": row}, timeout=60)
        assert response.status_code == 200, response.text
        return response.json()

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(one, ROWS))


@pytest.fixture
def seeded(mysql_db):
    app = App(Settings(database_url=mysql_db))
    seed_models(app)
    yield app
    app.close()


def test_two_workers_answer_concurrently_follow_a_promotion_and_stop_on_sigterm(seeded, tmp_path):
    app = seeded
    port = free_port()
    env = settings_env(app.settings)
    env["MODELBUS_LOG_LEVEL"] = "INFO"
    proc = Proc(["api", "--port", str(port), "--workers", "2", "--threads", "4"], env, "modelbus api --workers 2",
                cwd=tmp_path)
    base = f"http://127.0.0.1:{port}"
    try:
        proc.wait_for("api ready at", 90)
        proc.wait_for("Booting worker", 60, after=proc.lines.index(proc.wait_for("Booting worker", 60)) + 1)
        workers = sorted({int(p) for line in proc.lines for p in re.findall(r"Booting worker with pid: (\d+)", line)})
        assert len(workers) == 2, proc.log()

        # Answers: each single-row request, concurrently, equals the production artifact's answer.
        version, want = expected(app.engine, "slr")
        before = [cpu_ticks(pid) for pid in workers]
        answers = burst(base, "slr")
        assert [a["version"] for a in answers] == [version] * len(ROWS)
        assert [a["result"] for a in answers] == pytest.approx([float(v) for v in want])
        many = requests.post(f"{base}/api/predict", json=[{"model": "slr", "payload": r} for r in ROWS[:5]], timeout=60)
        assert [a["result"] for a in many.json()] == pytest.approx([float(v) for v in want[:5]])
        # Both processes did work: each answered some of the burst.
        assert all(cpu_ticks(pid) > b for pid, b in zip(workers, before)), proc.log()

        # A request gunicorn cannot parse is answered before the app, as JSON like every error.
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            sock.sendall(b"NOT A REQUEST\r\n\r\n")
            raw = b""
            while chunk := sock.recv(65536):
                raw += chunk
        head, body = raw.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 400") and b"application/json" in head, raw
        assert json.loads(body)["error"]["code"] == "bad_request"

        # A promotion reaches both workers (each its own cache and alias poll), and then every answer.
        seen = len(proc.lines)
        build(app, "slr", promote=version + 1)
        assert registry.production(app.engine, "slr", "default").version == version + 1
        deadline = time.monotonic() + 30
        while sum(f"serving v{version + 1} for slr/default" in line for line in proc.lines[seen:]) < 2:
            assert time.monotonic() < deadline, proc.log()
            time.sleep(0.1)
        new_version, new_want = expected(app.engine, "slr")
        answers = burst(base, "slr")
        assert [a["version"] for a in answers] == [new_version] * len(ROWS)
        assert [a["result"] for a in answers] == pytest.approx([float(v) for v in new_want])
    finally:
        code = proc.stop()
    # SIGTERM: the master stops its workers, each flushes its recorder, and the command exits 0.
    assert code == 0, proc.log()
    assert any("api stopped" in line for line in proc.lines), proc.log()
    assert not any("Traceback" in line for line in proc.lines), proc.log()
    with app.engine.connect() as conn:
        recorded = conn.execute(select(func.count()).select_from(predictions)).scalar_one()
    assert recorded >= 2 * len(ROWS) + 5
