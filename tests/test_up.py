"""`modelbus up` as a user runs it: Kafka mode over Tansu and MySQL, both prediction paths, clean stop."""
from __future__ import annotations

import json
import re
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import requests
from confluent_kafka import Consumer, Producer

from modelbus.db import registry
from modelbus.db.engine import make_engine
from modelbus.db.events import EventStore
from modelbus.db.positions import states
from modelbus.broker import free_port
from tests.conftest import DARCEY, kafka_settings, settings_env

MODELBUS = str(Path(sys.executable).with_name("modelbus"))
README = (Path(__file__).resolve().parents[1] / "README.md").read_text()
TOPIC_FIELDS = {"event_topic": "events", "prediction_request_topic": "prediction_requests",
                "prediction_response_topic": "prediction_responses"}


def readme_python(name: str) -> str:
    """The Python block of the README marked `readme-test: name`."""
    match = re.search(rf"<!-- readme-test: {name} -->\s*```python\n(.*?)```", README, re.S)
    assert match, f"README has no python block marked readme-test: {name}"
    return match.group(1)


def wait_for_lines(proc: subprocess.Popen, lines: list[str], needles: set[str], timeout: float) -> None:
    """Read the process's log until each of `needles` has appeared in a line, in any order."""
    needles = set(needles)
    deadline = time.monotonic() + timeout
    while needles and time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            if proc.poll() is not None:
                raise AssertionError(f"exited {proc.returncode} before {sorted(needles)}:\n" + "".join(lines[-30:]))
            continue
        lines.append(line)
        needles = {n for n in needles if n not in line}
    if needles:
        raise AssertionError(f"no {sorted(needles)} within {timeout}s:\n" + "".join(lines[-30:]))


def test_up_in_kafka_mode_serves_both_paths_and_stops_cleanly(mysql_db, kafka_bootstrap, topics, tmp_path):
    settings = kafka_settings(mysql_db, kafka_bootstrap, topics)
    env = settings_env(settings)
    port = free_port()
    env["MODELBUS_API_PORT"] = str(port)
    up = subprocess.Popen([MODELBUS, "up"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          cwd=tmp_path)
    lines: list[str] = []
    try:
        wait_for_lines(up, lines, {"api ready", "predictor ready", "ingest ready", "handler builds ready"}, 60)

        # Events in through the CLI (Kafka mode: queued on event_topic) and a build.
        sent = subprocess.run([MODELBUS, "send", "--csv", str(DARCEY)], env=env, capture_output=True, text=True, timeout=120)
        assert sent.returncode == 0, sent.stderr
        assert "474 events: 474 queued" in sent.stdout
        # ... and one through a standard client (librdkafka), keyed by dataset like ours.
        producer = Producer({"bootstrap.servers": kafka_bootstrap})
        producer.produce(topics.events, b'{"type":"training","payload":"3,4,5,4"}', key=b"default")
        assert producer.flush(10) == 0
        built = subprocess.run([MODELBUS, "build", "slr", "--wait", "--timeout", "120"], env=env, capture_output=True,
                               text=True, timeout=180)
        assert built.returncode == 0, built.stdout + built.stderr

        # A client shell with only the broker set (no database URL) gets its build's outcome from
        # build_outcome_topic, and opens no database (no modelbus.db appears where it runs).
        client = {k: v for k, v in env.items() if k != "MODELBUS_DATABASE_URL"}
        client_dir = tmp_path / "client"
        client_dir.mkdir()
        mlp = subprocess.run([MODELBUS, "build", "mlp", "--wait", "--timeout", "120"], env=client, cwd=client_dir,
                             capture_output=True, text=True, timeout=180)
        assert mlp.returncode == 0, mlp.stdout + mlp.stderr
        assert re.search(r"mlp version 1 on 'default' \(uuid [0-9a-f-]{36}\) from 475 events - now production",
                         mlp.stdout), mlp.stdout
        assert "accuracy" in mlp.stdout
        assert list(client_dir.iterdir()) == []

        engine = make_engine(mysql_db)
        mv = registry.production(engine, "slr", "default")
        assert mv is not None and mv.n_events == 475

        # HTTP path, after the hot reload has reached the API.
        deadline = time.monotonic() + 10
        while True:
            answer = requests.get(f"http://127.0.0.1:{port}/api/predict/slr/3,4,5", timeout=5)
            if answer.status_code == 200 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert answer.status_code == 200, answer.text
        http = answer.json()
        assert (http["version"], http["modelid"], http["input"]) == (mv.version, mv.uuid, "3,4,5")

        # Kafka path, with librdkafka as a standard client.
        request_id = uuid.uuid4().hex
        producer.produce(topics.prediction_requests, json.dumps({"id": request_id, "model": "slr", "payload": "3,4,5"}),
                         key=request_id)
        producer.produce(topics.prediction_requests, b"not json", key=b"bad")
        producer.flush(10)
        consumer = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": f"reader-{request_id}",
                             "auto.offset.reset": "earliest"})
        consumer.subscribe([topics.prediction_responses])
        answers = {}
        deadline = time.monotonic() + 60
        while len(answers) < 2 and time.monotonic() < deadline:
            message = consumer.poll(1.0)
            if message is None or message.error():
                continue
            answers[message.key()] = json.loads(message.value())
        consumer.close()
        assert answers[request_id.encode()]["result"] == http["result"]
        assert answers[request_id.encode()]["version"] == mv.version
        assert answers[b"bad"]["error"]["code"] == "not_json"

        # The README's confluent-kafka example, as printed, on this broker and these topics.
        snippet = readme_python("confluent").replace("127.0.0.1:9092", kafka_bootstrap)
        for name in ("prediction_request_topic", "prediction_response_topic", "event_topic"):
            snippet = snippet.replace(f'"{name}"', f'"{getattr(topics, TOPIC_FIELDS[name])}"')
        example = subprocess.run([sys.executable, "-c", snippet], capture_output=True, text=True, timeout=120)
        assert example.returncode == 0, example.stderr
        printed = json.loads(example.stdout)
        assert printed["id"] == "r1" and printed["model"] == "mlp" and "result" in printed

        # `modelbus status` shows the real consumer lag: everything sent has been consumed.
        deadline = time.monotonic() + 30
        while True:
            status = json.loads(subprocess.run([MODELBUS, "status", "--json"], env=env, capture_output=True,
                                               text=True, timeout=60).stdout)
            ingest = [row for row in status["consumers"] if row["group"] == settings.ingest_group]
            if sum(row["lag"] for row in ingest) == 0 or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert ingest and all(row["lag"] == 0 and row["end"] == (row["committed"] or 0) for row in ingest), status
        # darcey, the librdkafka record, two build commands and the README example
        assert sum(row["end"] for row in ingest) == 478
    finally:
        started = time.monotonic()
        up.send_signal(signal.SIGTERM)
        try:
            code = up.wait(15)
        except subprocess.TimeoutExpired:
            up.kill()
            raise
        stopped = time.monotonic() - started
        lines.extend(up.stderr.readlines())
    assert code == 0, "".join(lines[-30:])
    assert stopped < 10, f"stopped in {stopped:.1f}s"

    # Nothing lost, positions committed: every handler is at the head of the log.
    store = EventStore(engine)
    assert store.count(type="training") == 476  # darcey, the librdkafka record, the README example
    head = store.head()
    assert {s.name: s.position for s in states(engine)} == {"builds": head, "training_records": head, "feedback": head}
    assert all(s.owner is None for s in states(engine)), "leases are released on a clean stop"
    engine.dispose()


def test_up_refuses_a_taken_port(tmp_path):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if not k.startswith("MODELBUS_")}
        env["MODELBUS_DATABASE_URL"] = f"sqlite:///{tmp_path / 'up.db'}"
        done = subprocess.run([MODELBUS, "up", "--port", str(port)], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}: the port is in use" in done.stderr
