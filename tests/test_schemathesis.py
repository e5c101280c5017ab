"""A bounded schemathesis run of every check against a real `modelbus api`: the server and its
OpenAPI document agree (no server error, no schema mismatch), with and without the API token."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import pytest

from conftest import settings_env
from modelbus.app import App
from modelbus.broker import free_port
from modelbus.settings import Settings
from serving_support import ROOT, Proc, seed_models

TOKEN = "schemathesis-token"
TESTS = ROOT / "tests"
# Small and seeded: the whole module runs in well under a minute, the same cases every time.
MAX_EXAMPLES = 15
SEED = 2


@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    """A SQLite store holding darcey and a promoted version of each model kind, so predictions succeed."""
    path = tmp_path_factory.mktemp("schemathesis") / "seeded.db"
    app = App(Settings(database_url=f"sqlite:///{path}"))
    seed_models(app)
    app.close()
    return path


def schemathesis(url: str, cwd, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "schemathesis_hooks",
           "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, "-m", "schemathesis.cli", "--config-file", str(TESTS / "schemathesis.toml"), "run",
               url, "--checks", "all", "--max-examples", str(MAX_EXAMPLES), "--seed", str(SEED),
               "--generation-database", "none", "--workers", "1", "--no-color", *args]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=240)


@pytest.mark.parametrize("token, header", [(TOKEN, True), (TOKEN, False), (None, False)],
                         ids=["token-given", "token-missing", "no-token"])
def test_the_server_conforms_to_its_openapi_document(seeded, tmp_path, token, header):
    database = tmp_path / "modelbus.db"
    shutil.copy(seeded, database)  # every run starts from the same state
    env = settings_env(Settings(database_url=f"sqlite:///{database}"))
    if token:
        env["MODELBUS_API_TOKEN"] = token
    port = free_port()
    api = Proc(["api", "--port", str(port), "--threads", "4"], env, "modelbus api", cwd=tmp_path)
    try:
        api.wait_for("api ready at", 90)
        args = ["--header", f"Authorization: Bearer {token}"] if header else []
        run = schemathesis(f"http://127.0.0.1:{port}/openapi.json", tmp_path, *args)
    finally:
        api.stop()
    summary = run.stdout[-3000:]
    assert run.returncode == 0, summary + run.stderr[-2000:]
    generated, passed = map(int, re.search(r"(\d+) generated, (\d+) passed", summary).groups())
    assert generated == passed > 100, summary
    assert "Traceback" not in "\n".join(api.lines), api.log()
