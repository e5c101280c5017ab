"""HTTP serving measured with wrk: POST /api/predict against a bare Flask endpoint on the same server.

    python -m bench http
    python -m bench.http --seconds 10 --connections 10 --workers 1 2

For each worker count, `modelbus api --workers N` (1: waitress in-process; more: gunicorn's
pre-fork workers, api_threads threads each) answers one-row POST /api/predict (mlp) from
wrk (Debian's `wrk`, installed by scripts/ensure-wrk.sh when absent) over `--connections`
keep-alive connections; the baseline is a bare Flask endpoint (parse the JSON body, answer a
constant JSON) on the same server with the same worker and thread count, measured in this
run. Prints requests/s, the ratio (goal >= 0.7) and the resident memory of the API processes
and of `modelbus up --demo`. The store is a throw-away MySQL database with the demo models.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

ROOT = Path(__file__).resolve().parents[1]
BODY = {"model": "mlp", "payload": "3,4,5"}
DEFAULT_MYSQL = "mysql+pymysql://root@127.0.0.1:3306/"
THREADS = 8


def ensure_wrk() -> str:
    """The wrk binary, installed with apt when absent (scripts/ensure-wrk.sh)."""
    subprocess.run([str(ROOT / "scripts" / "ensure-wrk.sh")], check=True)
    return "wrk"


@contextmanager
def seeded_mysql(server: str) -> Iterator[str]:
    """A throw-away MySQL database holding the demo data and a production mlp, slr and linear."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    from bench.predict import _seed_models
    from modelbus.app import App
    from modelbus.settings import Settings

    base = make_url(server)
    name = f"modelbus_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"))
    try:
        url = base.set(database=name).render_as_string(hide_password=False)
        app = App(Settings(database_url=url))
        _seed_models(app)
        app.close()
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
        admin.dispose()


def bare_app():
    """The baseline: a Flask endpoint that parses the JSON body and answers a constant JSON object."""
    from flask import Flask, jsonify, request

    flask_app = Flask("bare")

    @flask_app.post("/api/predict")
    def predict():
        body = request.get_json()
        return jsonify({"id": body.get("id"), "result": 1.0, "version": 1})

    return flask_app


def serve_bare(port: int, workers: int, threads: int) -> None:
    """Run the bare endpoint as `modelbus api` would serve it: waitress for 1 worker, else gunicorn."""
    if workers == 1:
        import logging

        from waitress import serve

        logging.getLogger("waitress.queue").setLevel(logging.ERROR)  # "task queue depth" under load is expected

        serve(bare_app(), host="127.0.0.1", port=port, threads=threads, channel_timeout=60, ident="bare")
        return
    from modelbus.prefork import PreforkServer, bind

    PreforkServer(bare_app, bind("127.0.0.1", port), workers=workers, threads=threads).run()


def _env(url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELBUS_")}
    env.update(MODELBUS_DATABASE_URL=url, MODELBUS_LOG_LEVEL="WARNING", PYTHONUNBUFFERED="1", **extra)
    return env


def _wait_up(port: int, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    import requests

    deadline = time.monotonic() + timeout
    while True:
        try:
            if requests.post(f"http://127.0.0.1:{port}/api/predict", json=BODY, timeout=5).status_code == 200:
                return
        except (requests.ConnectionError, requests.Timeout):
            pass  # not listening yet, or still loading torch and the model
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("the server did not start")
        time.sleep(0.2)


def wrk(port: int, seconds: float, connections: int, threads: int = 2) -> float:
    """Requests per second wrk gets from one-row POST /api/predict (non-2xx answers fail the run)."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(f'wrk.method = "POST"\nwrk.body = {json.dumps(json.dumps(BODY))}\n'
                     'wrk.headers["Content-Type"] = "application/json"\n')
    try:
        # A short warm-up (connections, first batches), then the measured run.
        for duration in (max(1, int(seconds / 5)), int(seconds)):
            out = subprocess.run(["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "-s", script.name,
                                  f"http://127.0.0.1:{port}/api/predict"], capture_output=True, text=True, check=True)
        if "Non-2xx" in out.stdout or "Socket errors" in out.stdout:
            raise RuntimeError(f"wrk saw errors:\n{out.stdout}")
        return float(re.search(r"Requests/sec:\s+([\d.]+)", out.stdout).group(1))
    finally:
        os.unlink(script.name)


def memory_kib(pid: int) -> dict[str, int]:
    """Resident (RSS) and proportional (PSS: shared pages split among their processes) size in KiB."""
    out = {}
    with open(f"/proc/{pid}/smaps_rollup") as rollup:
        for line in rollup:
            key, _, rest = line.partition(":")
            if key in ("Rss", "Pss"):
                out[key.lower()] = int(rest.split()[0])
    return out


def children(pid: int) -> list[int]:
    """The child processes of pid (gunicorn's workers of its master)."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def measure(url: str, workers: int, seconds: float, connections: int) -> dict:
    """modelbus api and the bare endpoint at one worker count: requests/s, ratio, memory of an API worker."""
    from modelbus.broker import free_port

    rates: dict[str, float] = {}
    memory: dict[str, int] = {}
    for kind in ("bare", "modelbus"):
        port = free_port()
        if kind == "bare":
            cmd = [sys.executable, "-m", "bench.http", "--serve-bare", str(port), "--workers", str(workers)]
        else:
            cmd = [sys.executable, "-m", "modelbus.cli", "api", "--port", str(port), "--workers", str(workers),
                   "--threads", str(THREADS)]
        proc = subprocess.Popen(cmd, cwd=ROOT, env=_env(url), stdout=subprocess.DEVNULL)
        try:
            _wait_up(port, proc)
            rates[kind] = wrk(port, seconds, connections)
            if kind == "modelbus":
                worker = (children(proc.pid) or [proc.pid])[0]
                memory = memory_kib(worker)
        finally:
            proc.terminate()
            proc.wait(30)
    return {"workers": workers, "modelbus_rps": round(rates["modelbus"]), "bare_rps": round(rates["bare"]),
            "ratio": round(rates["modelbus"] / rates["bare"], 2),
            "worker_rss_mib": round(memory["rss"] / 1024), "worker_pss_mib": round(memory["pss"] / 1024)}


def up_demo_memory(settle: float = 5.0) -> dict:
    """Resident size of `modelbus up --demo` (embedded, SQLite) once the demo's builds answer."""
    from modelbus.broker import free_port

    workdir = tempfile.mkdtemp(prefix="modelbus-bench-up-")
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "modelbus.cli", "up", "--demo", "--port", str(port)], cwd=workdir,
                            env=_env(f"sqlite:///{workdir}/modelbus.db"), stdout=subprocess.PIPE, text=True)
    try:
        for line in proc.stdout:
            if line.startswith("try:"):  # the demo printed its example commands: builds are done
                break
        _wait_up(port, proc)
        time.sleep(settle)
        mem = memory_kib(proc.pid)
    finally:
        proc.terminate()
        proc.wait(30)
        subprocess.run(["rm", "-rf", workdir], check=False)
    return {"rss_mib": round(mem["rss"] / 1024), "pss_mib": round(mem["pss"] / 1024)}


def main(argv: list[str] | None = None) -> list[dict]:
    """Print one line per worker count and the memory figures; returns the rows."""
    parser = argparse.ArgumentParser(prog="python -m bench.http")
    parser.add_argument("--seconds", type=float, default=float(os.environ.get("MODELBUS_BENCH_HTTP_SECONDS", "10")))
    parser.add_argument("--connections", type=int, default=10)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--mysql", default=os.environ.get("MODELBUS_BENCH_MYSQL_URL", DEFAULT_MYSQL))
    parser.add_argument("--serve-bare", type=int, help=argparse.SUPPRESS)  # internal: run the baseline server
    args = parser.parse_args(argv if argv is not None else sys.argv[1:])
    if args.serve_bare:
        serve_bare(args.serve_bare, args.workers[0], THREADS)
        return []
    ensure_wrk()
    rows = []
    print(f"http: wrk, {args.connections} connections, {args.seconds:g} s, one-row POST /api/predict (mlp), "
          f"{THREADS} threads per worker ({os.cpu_count()} CPUs)", flush=True)
    with seeded_mysql(args.mysql) as url:
        for workers in args.workers:
            row = measure(url, workers, args.seconds, args.connections)
            rows.append(row)
            server = "waitress" if workers == 1 else "gunicorn"
            print(f"  {workers} worker{'s' if workers > 1 else ' '} ({server:<8}) modelbus {row['modelbus_rps']:>7,} req/s"
                  f"   bare Flask {row['bare_rps']:>7,} req/s   ratio {row['ratio']:.2f} (goal >= 0.7)"
                  f"   one API worker: RSS {row['worker_rss_mib']} MiB, PSS {row['worker_pss_mib']} MiB", flush=True)
    up = up_demo_memory()
    print(f"  memory: modelbus up --demo RSS {up['rss_mib']} MiB (PSS {up['pss_mib']} MiB)", flush=True)
    rows.append({"up_demo": up})
    return rows


if __name__ == "__main__":
    main()
