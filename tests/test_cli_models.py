"""The model commands from a shell: send, a worker builds, models lists, verify confirms, lineage lists."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest
from sqlalchemy import update

from modelbus.db.engine import make_engine
from modelbus.db.schema import events
from tests.conftest import DARCEY

MODELBUS = str(Path(sys.executable).with_name("modelbus"))


@pytest.fixture
def env(tmp_path) -> dict[str, str]:
    """A clean environment pointing the CLI at a fresh SQLite file."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("MODELBUS_")}
    base["MODELBUS_DATABASE_URL"] = f"sqlite:///{tmp_path / 'cli.db'}"
    base["MODELBUS_LOG_LEVEL"] = "WARNING"
    return base


def run(env, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([MODELBUS, *args], env=env, capture_output=True, text=True, timeout=300)


@contextmanager
def worker(env, log_path: Path) -> Iterator[subprocess.Popen]:
    """A `modelbus worker` running the handlers on the store, stopped with SIGTERM at the end."""
    with open(log_path, "w") as log:
        proc = subprocess.Popen([MODELBUS, "worker"], env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            yield proc
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def test_send_build_models_verify_lineage(env, tmp_path):
    assert run(env, "send", "--csv", str(DARCEY), "--dataset", "darcey").returncode == 0
    sent = run(env, "send", '{"type":"command","payload":"build_mlp","dataset":"darcey"}')
    assert sent.returncode == 0, sent.stderr

    log_path = tmp_path / "worker.log"
    with worker(env, log_path):
        built = run(env, "build", "linear", "--dataset", "darcey", "--wait", "--timeout", "120")
        failed = run(env, "build", "slr", "--dataset", "empty", "--wait", "--timeout", "120")
    assert built.returncode == 0, built.stderr + log_path.read_text()
    assert "build_linear on 'darcey' accepted at position 476" in built.stdout
    assert "linear version 1 on 'darcey'" in built.stdout and "from 474 events - now production" in built.stdout

    assert failed.returncode == 1
    assert "build failed: dataset 'empty' has no training events before position" in failed.stderr
    bad = run(env, "build", "mlp", "--params", "{nope")
    assert bad.returncode == 2 and "--params" in bad.stderr

    listed = run(env, "models")
    assert listed.returncode == 0
    lines = listed.stdout.splitlines()
    assert len(lines) == 2 and all(line.startswith("* ") for line in lines)
    versions = {v["model"]: v for v in map(json.loads, run(env, "models", "--json").stdout.splitlines())}
    assert set(versions) == {"mlp", "linear"}
    mlp = versions["mlp"]
    assert (mlp["dataset"], mlp["version"], mlp["production"], mlp["n_events"]) == ("darcey", 1, True, 474)
    # The seed data set with default params (scikit-learn's MLPClassifier reaches about 0.6).
    assert mlp["metrics"]["accuracy"] >= 0.55
    builds = run(env, "models", "--builds").stdout
    assert "FAILED: dataset 'empty' has no training events" in builds

    ok = run(env, "verify", "mlp", "1", "--dataset", "darcey")
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith("OK: mlp version 1 on 'darcey' rebuilt identically from 474 events")
    assert mlp["sha256"] in ok.stdout
    assert "474/474" in ok.stderr  # the progress bar

    used = run(env, "lineage", "mlp", "1", "--dataset", "darcey", "--json")
    rows = [json.loads(line) for line in used.stdout.splitlines()]
    assert [r["position"] for r in rows] == list(range(1, 475))
    assert rows[0]["event"]["payload"] == "2,5,5,5"
    assert f"digest {mlp['lineage_digest']}" in used.stderr

    engine = make_engine(env["MODELBUS_DATABASE_URL"])
    with engine.begin() as conn:
        conn.execute(update(events).where(events.c.position == 5)
                     .values(payload='{"dataset":"darcey","payload":"9,9,9,0","type":"training"}'))
    engine.dispose()
    for model in ("mlp", "linear"):
        tampered = run(env, "verify", model, "1", "--dataset", "darcey", "--no-progress")
        assert tampered.returncode == 1
        assert f"MISMATCH: {model} version 1 on 'darcey' does not rebuild identically" in tampered.stderr
        assert "lineage digest: recorded" in tampered.stderr and "artifact sha256: recorded" in tampered.stderr

    missing = run(env, "verify", "slr", "1", "--dataset", "darcey")
    assert missing.returncode == 1 and "no slr version 1 on dataset 'darcey'" in missing.stderr


def test_build_wait_with_no_worker_builds_in_this_process(env):
    """Embedded, nothing runs the builds handler: `build --wait` builds here instead of waiting for nobody."""
    assert run(env, "send", "--csv", str(DARCEY)).returncode == 0
    built = run(env, "build", "linear", "--wait", "--timeout", "5")
    assert built.returncode == 0, built.stderr
    assert "no worker runs the builds handler: building here" in built.stderr
    assert "linear version 1 on 'default'" in built.stdout and "from 474 events - now production" in built.stdout
    # The handler went through the promotion too, and let its lease go.
    listed = run(env, "models")
    assert listed.stdout.startswith("* linear")
    again = run(env, "build", "linear", "--wait", "--timeout", "5")
    assert again.returncode == 0 and "linear version 2 on 'default'" in again.stdout, again.stderr
