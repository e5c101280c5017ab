"""Prediction throughput: Kafka with micro-batching against batch size 1, and HTTP under concurrent load.

    python -m bench predict
    python -m bench.predict --requests 20000 --http-seconds 10 --http-clients 16

(a) `modelbus predictor` answers requests already waiting on prediction_request_topic
(mlp, the default [32, 32] network), once with predict_batch=256 / predict_wait_ms=10
and once with predict_batch=1 / predict_wait_ms=0 (the baseline: one poll, forward
pass, acknowledged send and offset commit per request). Rates are timed from the first
answer to the last, so process start and the group join are left out.
(b) `modelbus api` (waitress, 8 threads) answers POST /api/predict from a second
process: one client in sequence (the baseline), then many concurrent clients, then
concurrent clients sending 50 rows per request.
A throw-away Tansu broker and SQLite store are made and removed.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

ROOT = Path(__file__).resolve().parents[1]
REQUESTS = int(os.environ.get("MODELBUS_BENCH_PREDICTIONS", "20000"))
BASELINE_REQUESTS = int(os.environ.get("MODELBUS_BENCH_PREDICTIONS_BATCH1", "2000"))
PARTITIONS = 3
ROWS_PER_REQUEST = 50


@contextmanager
def services() -> Iterator[tuple[str, str]]:
    """A Tansu broker on a free port and a SQLite store holding one production version of each model."""
    from modelbus.app import App
    from modelbus.broker import throwaway_broker
    from modelbus.settings import Settings

    workdir = tempfile.mkdtemp(prefix="modelbus-bench-")
    url = f"sqlite:///{workdir}/modelbus.db"
    try:
        with throwaway_broker() as bootstrap:
            app = App(Settings(database_url=url))
            _seed_models(app)
            app.close()
            yield bootstrap, url
    finally:
        for name in os.listdir(workdir):
            os.unlink(os.path.join(workdir, name))
        os.rmdir(workdir)


def _seed_models(app) -> None:
    """The demo data set in the log and a build of each model with default params."""
    from modelbus.handlers.follow.follower import Follower
    from modelbus.demo import training_events

    events = list(training_events())
    events += [{"type": "command", "payload": f"build_{kind}"} for kind in ("mlp", "slr", "linear")]
    outcomes = app.publisher.post(events, "cli")
    assert all(o.status == "accepted" for o in outcomes), "the demo data was refused"
    followers = [Follower(app.store, handler, "bench") for handler in app.handlers()]
    while any(f.position() < app.store.head() for f in followers):
        for follower in followers:
            follower.catch_up()


def _env(bootstrap: str | None, url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELBUS_")}
    env.update(MODELBUS_DATABASE_URL=url, MODELBUS_LOG_LEVEL="ERROR", PYTHONUNBUFFERED="1",
               MODELBUS_KAFKA_SESSION_TIMEOUT_MS="6000", MODELBUS_KAFKA_HEARTBEAT_MS="1000")
    if bootstrap:
        env["MODELBUS_KAFKA_BOOTSTRAP"] = bootstrap
    env.update(extra)
    return env


def _requests(n: int, seed: int = 3) -> list[bytes]:
    import random

    rng = random.Random(seed)
    return [
        json.dumps({"model": "mlp", "payload": ",".join(str(rng.randint(0, 10)) for _ in range(3)), "id": f"b{i}"}).encode()
        for i in range(n)
    ]


def kafka_rate(bootstrap: str, url: str, n: int, batch: int, wait_ms: int, **extra_env: str) -> float:
    """Answers per second of one `modelbus predictor` on n waiting requests."""
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition

    from modelbus.commands.kafka import create_topics
    from modelbus.settings import Settings, Topics

    tag = uuid.uuid4().hex[:8]
    topics = Topics(events=f"ev-{tag}", prediction_requests=f"req-{tag}", prediction_responses=f"resp-{tag}",
                    errors=f"err-{tag}", model_updates=f"upd-{tag}")
    settings = Settings(database_url=url, kafka_bootstrap=bootstrap, topics=topics)
    create_topics(settings.kafka, PARTITIONS)
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5, batch_size=64 * 1024)
    for i, value in enumerate(_requests(n)):
        producer.send(topics.prediction_requests, value=value, key=f"k{i}".encode())
    producer.flush()
    producer.close()

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    parts = [TopicPartition(topics.prediction_responses, p) for p in range(PARTITIONS)]
    consumer.assign(parts)
    consumer.seek_to_beginning(*parts)
    env = _env(bootstrap, url, MODELBUS_PREDICT_BATCH=str(batch), MODELBUS_PREDICT_WAIT_MS=str(wait_ms),
               MODELBUS_PREDICTOR_GROUP=f"bench-{tag}",
               **{f"MODELBUS_TOPICS__{k.upper()}": v for k, v in topics.model_dump().items()}, **extra_env)
    proc = subprocess.Popen([sys.executable, "-c", "from modelbus.cli import main; main()", "predictor"],
                            cwd=ROOT, env=env)
    got, first, started, errors = 0, 0, None, 0
    try:
        deadline = time.monotonic() + 600
        while got < n:
            if proc.poll() is not None:
                raise RuntimeError(f"the predictor exited with {proc.returncode}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {got} of {n} answers after 600 s")
            polled = consumer.poll(timeout_ms=500, max_records=5000)
            records = [r for rs in polled.values() for r in rs]
            if records and started is None:
                # The first poll's answers start the clock; they are not counted in the rate.
                started, first = time.perf_counter(), len(records)
            got += len(records)
            errors += sum(1 for r in records if b'"error"' in r.value)
        elapsed = time.perf_counter() - started
    finally:
        proc.terminate()
        proc.wait(30)
        consumer.close()
    if errors:
        raise RuntimeError(f"{errors} error answers")
    return (got - first) / elapsed


def produce_rate(bootstrap: str, n: int) -> float:
    """The baseline of the batched predictor: kafka-python alone producing n answer-sized messages, msg/s."""
    from kafka import KafkaProducer

    from modelbus.commands.kafka import KafkaConfig, create_topics

    topic = f"produce-{uuid.uuid4().hex[:8]}"
    create_topics(KafkaConfig(bootstrap=bootstrap), PARTITIONS, topics=[topic])
    answer = json.dumps({"id": "b1", "input": "3.0,4.0,5.0", "result": 5.0, "accuracy": 0.61, "model": "mlp",
                         "dataset": "default", "version": 1, "modelid": str(uuid.uuid4()),
                         "prediction-date": "2026-11-24 04:00:00"}).encode()
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5, batch_size=64 * 1024)
    producer.send(topic, value=answer, key=b"k").get(30)  # connected and the topic's leaders known
    started = time.perf_counter()
    for i in range(n):
        producer.send(topic, value=answer, key=f"k{i}".encode())
    producer.flush()
    elapsed = time.perf_counter() - started
    producer.close()
    return n / elapsed


def load(base: str, clients: int, seconds: float, rows: int) -> dict:
    """Run in the second process: `clients` threads POST /api/predict for `seconds`; counts answers."""
    import requests

    body = ({"model": "mlp", "payload": "3,4,5"} if rows == 1
            else [{"model": "mlp", "payload": [i % 11, (i * 3) % 11, (i * 7) % 11]} for i in range(rows)])
    counts = [0] * clients
    failures = [0] * clients
    stop = threading.Event()

    def client(index: int) -> None:
        with requests.Session() as session:
            while not stop.is_set():
                response = session.post(f"{base}/api/predict", json=body, timeout=60)
                if response.status_code == 200:
                    counts[index] += 1
                else:
                    failures[index] += 1

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    for thread in threads:
        thread.start()
    time.sleep(min(1.0, seconds / 5))  # warm-up: connections, first batches
    first = sum(counts)
    started = time.perf_counter()
    time.sleep(seconds)
    done = sum(counts) - first
    elapsed = time.perf_counter() - started
    stop.set()
    for thread in threads:
        thread.join(60)
    return {"requests_per_s": done / elapsed, "rows_per_s": done * rows / elapsed, "failures": sum(failures)}


def http_rates(url: str, clients: int, seconds: float, loads: tuple[tuple[int, int], ...] | None = None,
               **extra_env: str) -> list[tuple[str, dict]]:
    """`modelbus api` under the three loads (or the given (clients, rows) ones), each generated by a second process."""
    import requests

    from modelbus.broker import free_port

    port = free_port()
    api = subprocess.Popen([sys.executable, "-c", "from modelbus.cli import main; main()", "api", "--port", str(port)],
                           cwd=ROOT, env=_env(None, url, **extra_env))
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if requests.get(f"{base}/api/predict/mlp/3,4,5", timeout=5).status_code == 200:
                    break
            except (requests.ConnectionError, requests.Timeout):
                pass  # not listening yet, or still loading torch and the model
            if api.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("modelbus api did not start")
            time.sleep(0.2)
        results = []
        for n_clients, rows in loads or ((1, 1), (clients, 1), (clients, ROWS_PER_REQUEST)):
            name = f"{n_clients} client{'s' if n_clients > 1 else ''}, {rows} row{'s' if rows > 1 else ''}/request"
            out = subprocess.run(
                [sys.executable, "-m", "bench.predict", "--load", base, "--http-clients", str(n_clients),
                 "--http-seconds", str(seconds), "--rows", str(rows)],
                cwd=ROOT, capture_output=True, text=True, timeout=seconds + 120,
            )
            if out.returncode != 0:
                raise RuntimeError(f"the load generator failed: {out.stderr[-2000:]}")
            results.append((name, json.loads(out.stdout.strip().splitlines()[-1])))
        return results
    finally:
        api.terminate()
        api.wait(30)


def main(argv: list[str] | None = None) -> dict | None:
    """Measure and print the rates and their ratios to the baselines; returns the Kafka figures."""
    parser = argparse.ArgumentParser(prog="python -m bench.predict")
    parser.add_argument("--requests", type=int, default=REQUESTS, help="Kafka requests with batching")
    parser.add_argument("--baseline-requests", type=int, default=BASELINE_REQUESTS, help="Kafka requests at batch size 1")
    parser.add_argument("--http-clients", type=int, default=16)
    parser.add_argument("--http-seconds", type=float, default=10.0)
    parser.add_argument("--kafka-only", action="store_true", help="Measure the Kafka predictor only, not HTTP.")
    parser.add_argument("--rows", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--load", help=argparse.SUPPRESS)  # internal: run as the load generator
    args = parser.parse_args(argv if argv is not None else [a for a in sys.argv[1:] if a != "predict"])
    if args.load:
        print(json.dumps(load(args.load, args.http_clients, args.http_seconds, args.rows)))
        return None
    print(f"cpus: {os.cpu_count()}; kafka: {args.requests} requests batched, {args.baseline_requests} at batch size 1")
    with services() as (bootstrap, url):
        batched = kafka_rate(bootstrap, url, args.requests, batch=256, wait_ms=10)
        single = kafka_rate(bootstrap, url, args.baseline_requests, batch=1, wait_ms=0)
        produced = produce_rate(bootstrap, args.requests)
        print(f"kafka  raw kafka-python produce (baseline)         {produced:10,.0f} msg/s")
        print(f"kafka  predictor, batched / raw produce            {batched / produced:10.2f}   (goal >= 0.5)")
        print(f"kafka  predictor, predict_batch=1 (baseline)       {single:10,.0f} predictions/s")
        print(f"kafka  predictor, predict_batch=256, wait 10 ms    {batched:10,.0f} predictions/s   x{batched / single:.1f}")
        if args.kafka_only:
            return {"batched": batched, "batch1": single, "produce": produced}
        results = http_rates(url, args.http_clients, args.http_seconds)
    base_rps = results[0][1]["requests_per_s"]
    for index, (name, result) in enumerate(results):
        ratio = "" if index == 0 else f"   x{result['rows_per_s'] / base_rps:.1f} rows/s vs baseline"
        label = "(baseline)" if index == 0 else ""
        print(f"http   POST /api/predict, {name:<28} {label:<10} {result['requests_per_s']:8,.0f} requests/s "
              f"{result['rows_per_s']:9,.0f} rows/s{ratio}" + (f"   {result['failures']} failed" if result["failures"] else ""))
    return {"batched": batched, "batch1": single, "produce": produced}


if __name__ == "__main__":
    main()
