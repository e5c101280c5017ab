"""The foundation's CLI as a user runs it: real processes on a temporary SQLite store, and Tansu."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from modelbus.db.engine import make_engine
from modelbus.db.events import EventStore
from modelbus.broker import BrokerUnavailable, free_port, wait_for_port
from tests.conftest import DARCEY

MODELBUS = str(Path(sys.executable).with_name("modelbus"))


@pytest.fixture
def env(tmp_path) -> dict[str, str]:
    """A clean environment pointing the CLI at a fresh SQLite file."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("MODELBUS_")}
    base["MODELBUS_DATABASE_URL"] = f"sqlite:///{tmp_path / 'cli.db'}"
    return base


def run(env, *args: str, stdin: str | None = None, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([MODELBUS, *args], env=env, input=stdin, capture_output=True, text=True, timeout=120, cwd=cwd)


def stored(env) -> EventStore:
    return EventStore(make_engine(env["MODELBUS_DATABASE_URL"]))


def test_send_from_arguments_then_read_the_log(env):
    done = run(env, "send", '{"type":"training","payload":"3,4,5,6"}', '{"type":"command","payload":"build_mlp"}')
    assert done.returncode == 0, done.stderr
    assert "event 1: accepted (position 1)" in done.stdout
    assert "2 events: 2 accepted" in done.stdout
    shown = run(env, "events", "--json")
    rows = [json.loads(line) for line in shown.stdout.splitlines()]
    assert [(r["position"], r["name"], r["source"]) for r in rows] == [(1, "training", "cli"), (2, "build_mlp", "cli")]
    assert rows[0]["event"] == {"dataset": "default", "id": rows[0]["id"], "payload": "3,4,5,6", "type": "training"}


def test_send_from_a_file_and_from_stdin(env, tmp_path):
    lines = tmp_path / "events.jsonl"
    lines.write_text('{"type":"training","payload":"1,2,3,4"}\n\n{"type":"training","payload":"5,6,7,8"}\n')
    array = tmp_path / "events.json"
    array.write_text(json.dumps([{"type": "training", "payload": [1, 1, 1, 1]}, {"type": "command", "payload": "build_slr"}]))
    assert run(env, "send", "-f", str(lines)).returncode == 0
    assert run(env, "send", "--file", str(array)).returncode == 0
    assert run(env, "send", stdin='{"type":"command","payload":"build_linear"}\n').returncode == 0
    assert [r.name for r in stored(env).read()] == ["training", "training", "training", "build_slr", "build_linear"]


def test_send_the_seed_message_files(env):
    root = Path(__file__).resolve().parents[1] / "messages"
    files = sorted(root.glob("build_*.json"))
    if not files:
        pytest.fail("messages/ has no build_*.json files")
    for path in files:
        assert run(env, "send", "-f", str(path)).returncode == 0
    assert {r.name for r in stored(env).read()} >= {"build_mlp", "build_slr"}


def test_send_csv_skips_the_header_and_fixes_the_dataset(env):
    done = run(env, "send", "--csv", str(DARCEY), "--dataset", "darcey")
    assert done.returncode == 0, done.stderr
    assert "474 events: 474 accepted" in done.stdout
    store = stored(env)
    assert store.count(dataset="darcey", type="training") == 474
    assert store.expected_values("darcey") == 4


def test_rejected_events_are_explained_and_dead_lettered(env):
    done = run(env, "send", '{"type":"training","payload":"3,4,5,6"}', '{"type":"training","payload":"3,4,5"}', "nope")
    assert done.returncode == 1
    assert "event 2: rejected: payload has 3 values; dataset 'default' expects 4" in done.stderr
    assert "event 3: rejected: message is not JSON" in done.stderr
    assert "3 events: 1 accepted, 2 rejected" in done.stdout
    store = stored(env)
    assert store.count() == 1
    # Like every entry point's rejects, they are kept as dead letters with their reason.
    letters = store.dead_letters()
    assert [(d["source"], d["code"], d["raw"]) for d in letters] == [
        ("cli", "wrong_feature_count", b'{"type":"training","payload":"3,4,5"}'),
        ("cli", "not_json", b"nope"),
    ]
    assert "wrong_feature_count" in run(env, "errors").stdout


def test_send_with_an_id_twice_is_one_event(env):
    event = '{"type":"command","payload":"build_mlp","id":"nightly-1"}'
    assert run(env, "send", event).returncode == 0
    again = run(env, "send", "--json", event)
    assert json.loads(again.stdout) == {"status": "duplicate", "id": "nightly-1", "position": 1}
    assert stored(env).count() == 1


def test_events_filters_and_last(env):
    run(env, "send", *[json.dumps({"type": "training", "payload": [i, i, i, i % 2]}) for i in range(30)], '{"type":"command","payload":"build_mlp"}')
    last = run(env, "events", "--last", "3", "--json")
    assert [json.loads(l)["position"] for l in last.stdout.splitlines()] == [29, 30, 31]
    commands = run(env, "events", "--type", "command")
    assert commands.stdout.count("\n") == 1 and "build_mlp" in commands.stdout
    assert "the log ends at position 31" in commands.stderr


def test_replay_with_a_progress_bar(env):
    run(env, "send", "--csv", str(DARCEY))
    done = run(env, "replay")
    assert done.returncode == 0, done.stderr
    assert "training_records: replayed 474 events" in done.stdout
    assert "replay training_records" in done.stderr and "474/474" in done.stderr
    assert run(env, "replay", "--handler", "nope").returncode == 2


def test_db_commands(env):
    assert "current none" in run(env, "db", "current").stdout
    upgraded = run(env, "db", "upgrade")
    assert upgraded.returncode == 0 and "database at revision" in upgraded.stdout
    assert "INFO" not in upgraded.stderr


def test_bad_configuration_is_a_clear_error(env):
    bad = dict(env, MODELBUS_INGEST_BATCH="lots")
    done = run(bad, "events")
    assert done.returncode == 1
    assert "bad configuration" in done.stderr and "ingest_batch" in done.stderr


def test_broker_starts_creates_topics_and_stops_on_sigterm(env):
    port = free_port()
    proc = subprocess.Popen([MODELBUS, "broker", "--port", str(port), "--partitions", "2"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_port("127.0.0.1", port, 20)
        ready = proc.stdout.readline()
        assert ready.startswith(f"broker ready at 127.0.0.1:{port}")
        assert "event_topic" in proc.stdout.readline()
        kafka_env = dict(env, MODELBUS_KAFKA_BOOTSTRAP=f"127.0.0.1:{port}")
        listed = run(kafka_env, "topics", "create")
        assert listed.returncode == 0, listed.stderr
        assert "event_topic: exists" in listed.stdout and "error_topic: exists" in listed.stdout
        queued = run(kafka_env, "send", "--json", '{"type":"training","payload":"3,4,5,6","id":"k1"}')
        assert json.loads(queued.stdout) == {"status": "queued", "id": "k1"}
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
    with pytest.raises(BrokerUnavailable):
        wait_for_port("127.0.0.1", port, 1)
