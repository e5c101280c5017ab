"""`modelbus up`: every part of the configured mode in one process, sharing one App."""
from __future__ import annotations

import logging
import os
import shlex
import sys
import threading
import time
from pathlib import Path
from typing import Callable
from urllib.parse import urlsplit

from modelbus.app import App
from modelbus.messages.types import MAIN_METRICS
from modelbus.runtime import Services
from modelbus.settings import Settings

log = logging.getLogger("modelbus")

DEMO_ROWS = ("3,4,5", "7,8,9")


def ingest_config(settings: Settings):
    """The ingest worker's config from the settings."""
    from modelbus.handlers.workers.ingest import IngestConfig

    return IngestConfig(kafka=settings.kafka, group=settings.ingest_group, batch=settings.ingest_batch,
                        max_message_bytes=settings.max_message_bytes)


def predictor_config(settings: Settings):
    """The prediction worker's config from the settings."""
    from modelbus.handlers.workers.predictor import PredictorConfig

    return PredictorConfig(kafka=settings.kafka, group=settings.predictor_group, batch=settings.predict_batch,
                           wait_ms=settings.predict_wait_ms, max_message_bytes=settings.max_message_bytes)


def start_ingest(app: App, services: Services) -> None:
    """Consume event_topic into the log (Kafka mode; the topics must exist)."""
    from modelbus.handlers.workers.ingest import IngestWorker

    services.start("ingest", IngestWorker(ingest_config(app.settings), app.store, app.transport).run)
    log.info("ingest ready: consuming %s from %s", app.settings.topics.events, app.settings.kafka_bootstrap)


def start_handlers(app: App, services: Services) -> None:
    """Follow the log with every handler; each releases its lease when the process stops."""
    from modelbus.handlers.follow.follower import Follower

    for handler in app.handlers():
        follower = Follower(app.store, handler, poll_seconds=app.settings.handler_poll_seconds)
        services.at_exit(follower.release)
        services.start(f"handler-{handler.name}", follower.run)
        log.info("handler %s ready", handler.name)
    # Pending feedback, live-metric and drift rules, retention: beside the handlers that feed them.
    services.start("monitor", app.monitor().run)


def start_predictor(app: App, services: Services, cache=None, shared_recorder=None) -> None:
    """Answer prediction requests (Kafka mode; the topics must exist).

    Given a cache (the API's), the predictor shares it and its reload threads; without one it
    loads its own and starts the reload threads for it. Registry reads go through the API's
    engine either way: seconds of timeout and a circuit breaker, so a frozen database makes
    a batch back off instead of waiting out a worker's long timeout.
    """
    from modelbus.handlers.serving.cache import ModelCache
    from modelbus.handlers.serving.predict import dataset_labels
    from modelbus.handlers.serving.registry import DbRegistry
    from modelbus.handlers.workers.predictor import PredictionWorker
    from modelbus.handlers.workers.updates import reload_targets

    settings = app.settings
    loaded = ""
    if cache is None:
        cache = ModelCache(DbRegistry(app.api_engine))
        loaded = f"{cache.warm()} production models loaded; "
        for name, target in reload_targets(settings.kafka, app.transport, cache, settings.topics.model_updates):
            services.start(name, target)
    recorder = shared_recorder
    if recorder is None:
        recorder = app.recorder(app.api_engine)
        if recorder is not None:
            services.start("prediction-recorder", recorder.run)
    worker = PredictionWorker(predictor_config(settings), app.store, cache, app.transport,
                              dataset_labels(settings.datasets), recorder=recorder)
    services.start("predictor", worker.run)
    log.info("predictor ready: %sconsuming %s, answering on %s", loaded, settings.topics.prediction_requests,
             settings.topics.prediction_responses)


def start_parts(app: App, services: Services, *, api: bool = True, scheduler: bool = True):
    """Start ingest and predictor (Kafka mode), the handlers, the API and the scheduler; returns the API server."""
    settings = app.settings
    serving = server = flask_app = None
    if api:
        from modelbus.api.server import ApiServer
        from modelbus.web import create_api

        flask_app = create_api(app)
        serving = flask_app.extensions["modelbus"]
        server = ApiServer(flask_app, settings.api_host, settings.api_port, settings.api_threads)

    if settings.kafka_mode:
        from modelbus.commands.kafka import create_topics

        create_topics(settings.kafka)
        start_ingest(app, services)
        # The predictor shares the API's model cache, so one set of reload threads serves both.
        start_predictor(app, services, serving.cache if serving is not None else None,
                        serving.recorder if serving is not None else None)

    start_handlers(app, services)

    if serving is not None and server is not None:
        from modelbus.api.app import sampler

        serving.start(services.start)
        services.start("dashboard-sampler", sampler(flask_app).run)
        services.start("api", server.run)
        log.info("api ready at %s", server.url)

    if scheduler:
        from modelbus.cron.scheduler import run_scheduler

        if settings.schedule:
            services.start("scheduler", lambda stop: run_scheduler(app.publisher, app.settings.schedule, stop))
            log.info("scheduler ready: %d jobs", len(settings.schedule))
        else:
            log.info("scheduler: no jobs configured (setting 'schedule')")
    return server, serving


def _cli_path() -> str:
    script = Path(sys.executable).with_name("modelbus")
    try:
        shown = os.path.relpath(script)
    except ValueError:
        shown = str(script)
    return shown if shown.startswith((".", "/")) else f"./{shown}"


def examples(base_url: str) -> list[str]:
    """Commands that work as printed against this process."""
    cli = shlex.quote(_cli_path())
    return [
        f"curl -s {base_url}/api/predict/mlp/{DEMO_ROWS[0]}",
        f"curl -s -X POST {base_url}/api/predict -H 'Content-Type: application/json' "
        f"-d '{{\"model\":\"linear\",\"payload\":\"{DEMO_ROWS[1]}\"}}'",
        f"{cli} send '{{\"type\":\"training\",\"payload\":\"3,4,5,4\"}}'",
        f"{cli} build mlp --wait",
        f"{cli} predict mlp {DEMO_ROWS[0]}",
        f"{cli} models",
        f"{cli} status",
    ]


def _demo_feedback(app: App, base_url: str, echo: Callable[[str], None]) -> None:
    """Answer demo predictions over HTTP (so they are recorded) and send their truth as feedback."""
    import json
    import urllib.request

    from modelbus.demo import feedback_rounds

    from modelbus.db import registry

    # A build's promotion is decided after its outcome is announced: wait for mlp's production version.
    deadline = time.monotonic() + 60
    while registry.aliases(app.engine).get(("mlp", "default")) is None:
        if time.monotonic() > deadline:
            echo("demo: mlp has no production version; no predictions for the feedback loop")
            return
        time.sleep(0.1)
    rounds = feedback_rounds()
    request = urllib.request.Request(f"{base_url}/api/predict", data=json.dumps([r for r, _ in rounds]).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            answers = json.loads(response.read())
    except OSError as exc:
        echo(f"demo: predictions for the feedback loop failed: {exc}")
        return
    answered = [(a, f) for a, (_, f) in zip(answers, rounds) if "error" not in a]
    right = sum(a["result"] == f["label"] for a, f in answered)
    outcomes = app.publisher.post([f for _, f in answered], source="cli")
    sent = sum(o.status == "accepted" for o in outcomes)
    echo(f"demo: {len(answered)} mlp predictions answered over HTTP ({right} right), {sent} feedback events sent: "
         "live metrics on each version's page and in `modelbus models`")


def load_demo(app: App, stop: threading.Event, base_url: str | None, echo: Callable[[str], None]) -> None:
    """Post the demo data and its builds, wait for the builds, then print example commands."""
    from modelbus.db import registry
    from modelbus.demo import post_demo

    result = post_demo(app.publisher, source="cli")
    echo(f"demo: {sum(result.rows.values())} training rows posted ({dict(result.rows)})")
    for command, event_id in result.build_ids.items():
        build = None
        while build is None and not stop.is_set():
            build = registry.get_build(app.engine, event_id=event_id)
            if build is None:
                stop.wait(0.2)
        if build is None:
            return
        if build["status"] == "ok":
            mv = registry.get_version(app.engine, command.removeprefix("build_"), build["dataset"], build["version"])
            metric = "" if mv is None else f" ({MAIN_METRICS[mv.model]} {mv.main_metric:.3f})"
            echo(f"demo: {command} -> version {build['version']}{metric}")
        else:
            echo(f"demo: {command} failed: {build['reason']}")
    if base_url:
        _demo_feedback(app, base_url, echo)
        port = urlsplit(base_url).port
        echo(f"dashboard: {base_url}/  (or: {shlex.quote(_cli_path())} open --port {port})")
        echo("try:")
        for line in examples(base_url):
            echo(f"  {line}")
