"""`modelbus predict` and `modelbus open` as a user runs them: real processes on a seeded SQLite store."""
from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import settings_env
from modelbus.app import App
from modelbus.broker import free_port
from modelbus.builders import get_builder
from modelbus.db import registry
from modelbus.db.engine import make_engine
from modelbus.settings import Settings
from serving_support import FAST_MLP, Proc, build, seed_models

MODELBUS = str(Path(sys.executable).with_name("modelbus"))


@pytest.fixture(scope="module")
def seeded(tmp_path_factory) -> str:
    """darcey, a promoted version of each model, and a second mlp version that is not promoted."""
    url = f"sqlite:///{tmp_path_factory.mktemp('predict') / 'modelbus.db'}"
    app = App(Settings(database_url=url))
    seed_models(app)
    build(app, "mlp", params=dict(FAST_MLP, seed=21), promote=1)
    app.close()
    return url


@pytest.fixture
def env(seeded, tmp_path) -> dict[str, str]:
    return settings_env(Settings(database_url=seeded))


def run(env, *args: str, stdin: str | None = None, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([MODELBUS, *args], env=env, input=stdin, capture_output=True, text=True, timeout=120, cwd=cwd)


def expected(url: str, kind: str, rows: list[list[float]], version: int | None = None) -> tuple[object, list[float]]:
    engine = make_engine(url)
    mv = registry.get_version(engine, kind, "default", version) if version else registry.production(engine, kind, "default")
    engine.dispose()
    return mv, [float(v) for v in get_builder(kind).load(mv.artifact).predict(np.asarray(rows, dtype=np.float64))]


def test_predict_answers_rows_from_the_registry_in_process(seeded, env, tmp_path):
    done = run(env, "predict", "mlp", "3,4,5", "7,8,9", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    mv, results = expected(seeded, "mlp", [[3, 4, 5], [7, 8, 9]])
    lines = done.stdout.splitlines()
    assert [line.split(" -> ")[0] for line in lines] == [f"mlp v{mv.version} on 'default': 3,4,5",
                                                         f"mlp v{mv.version} on 'default': 7,8,9"]
    assert [float(line.split(" -> ")[1].split()[0]) for line in lines] == results
    assert "serving v" not in done.stderr  # no server chatter on a CLI answer

    answers = [json.loads(line) for line in run(env, "predict", "linear", "3,4,5", "--json").stdout.splitlines()]
    mv, results = expected(seeded, "linear", [[3, 4, 5]])
    assert [(a["model"], a["version"], a["modelid"]) for a in answers] == [("linear", mv.version, mv.uuid)]
    assert answers[0]["result"] == pytest.approx(results[0])
    assert {"input", "result", "accuracy", "modelid", "prediction-date", "id"} <= set(answers[0])


def test_predict_reads_a_file_of_rows_and_pins_a_version(seeded, env, tmp_path):
    rows = tmp_path / "rows.csv"
    rows.write_text("craig,len,bruno\n3,4,5\n\n7,8,9\n")
    done = run(env, "predict", "mlp", "-f", str(rows), "--version", "2", "--json")
    assert done.returncode == 0, done.stderr
    assert "line 1 has no numeric value, skipped as the header" in done.stderr
    answers = [json.loads(line) for line in done.stdout.splitlines()]
    mv, results = expected(seeded, "mlp", [[3, 4, 5], [7, 8, 9]], version=2)
    assert [(a["version"], a["result"]) for a in answers] == [(2, results[0]), (2, results[1])]
    from_stdin = run(env, "predict", "mlp", "-f", "-", "--version", "2", stdin="3,4,5\n")
    assert from_stdin.returncode == 0 and f"mlp v2 on 'default': 3,4,5 -> {results[0]:g}" in from_stdin.stdout


def test_predict_answers_the_good_rows_and_exits_1_for_bad_ones(env):
    done = run(env, "predict", "mlp", "3,4,5", "3,x,5", "1,2")
    assert done.returncode == 1
    assert len(done.stdout.splitlines()) == 1 and "3,4,5 ->" in done.stdout
    assert "3,x,5: not_numeric: payload value 2 'x' is not a number" in done.stderr
    assert "1,2: wrong_feature_count" in done.stderr and "2 of 3 rows failed" in done.stderr
    as_json = run(env, "predict", "mlp", "3,4,5", "--dataset", "nope", "--json")
    assert as_json.returncode == 1 and json.loads(as_json.stdout)["error"]["code"] == "no_production_version"
    pinned = run(env, "predict", "mlp", "3,4,5", "--version", "9")
    assert pinned.returncode == 1 and "unknown_version" in pinned.stderr
    nothing = run(env, "predict", "mlp")
    assert nothing.returncode == 2 and "give rows of feature values" in nothing.stderr
    missing = run(env, "predict", "mlp", "-f", "/nonexistent/rows.csv")
    assert missing.returncode == 1 and "cannot read /nonexistent/rows.csv" in missing.stderr
    assert "Traceback" not in missing.stderr + nothing.stderr + done.stderr


@pytest.fixture
def api(seeded, tmp_path):
    port = free_port()
    proc = Proc(["api", "--port", str(port), "--threads", "2"], settings_env(Settings(database_url=seeded)),
                "modelbus api", cwd=tmp_path)
    try:
        proc.wait_for("api ready at", 90)
        yield port
    finally:
        proc.stop()


def test_predict_and_open_against_a_running_api(seeded, env, api, tmp_path):
    url = f"http://127.0.0.1:{api}"
    remote = run(env, "predict", "mlp", "3,4,5", "3,x,5", "--url", url, "--json")
    local = run(env, "predict", "mlp", "3,4,5", "3,x,5", "--json")
    assert remote.returncode == local.returncode == 1
    drop = ("id", "prediction-date")
    assert ([{k: v for k, v in json.loads(line).items() if k not in drop} for line in remote.stdout.splitlines()]
            == [{k: v for k, v in json.loads(line).items() if k not in drop} for line in local.stdout.splitlines()])

    # `open` prints the URL; without a display it starts no browser, with one it does.
    marker = tmp_path / "opened"
    browser = tmp_path / "browser.sh"
    browser.write_text(f"#!/bin/sh\necho \"$1\" > {marker}\n")
    browser.chmod(browser.stat().st_mode | stat.S_IEXEC)
    headless = {k: v for k, v in env.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    headless.update(BROWSER=str(browser), MODELBUS_API_PORT=str(api))
    opened = run(headless, "open")
    assert (opened.returncode, opened.stdout) == (0, f"http://127.0.0.1:{api}/\n") and not marker.exists()
    shown = run({**headless, "DISPLAY": ":99"}, "open", "--url", url)
    assert shown.returncode == 0, shown.stderr
    assert marker.read_text().strip() == f"{url}/"


def test_predict_and_open_say_when_nothing_answers(env):
    closed = f"http://127.0.0.1:{free_port()}"
    done = run(env, "predict", "mlp", "3,4,5", "--url", closed)
    assert done.returncode == 1 and f"cannot reach {closed}/api/predict" in done.stderr and "Traceback" not in done.stderr
    opened = run(env, "open", "--url", closed, "--no-browser")
    assert opened.returncode == 1 and opened.stdout == f"{closed}/\n"
    assert "nothing answers at" in opened.stderr and "modelbus up" in opened.stderr
