"""The Flask app: the seed's routes, the JSON API, health, metrics, the OpenAPI document, message schemas and the dashboard."""
from __future__ import annotations

import time

from flask import Flask, Response, g, request

from modelbus.api.context import BATCH_BODY_FACTOR, EXTENSION, ApiParts
from modelbus.api.errors import register_error_handlers
from modelbus.api.routes import (
    actions,
    dashboard,
    datasets,
    events,
    feeds,
    models,
    monitoring,
    ops,
    predict,
    schemas,
    windows,
)
from modelbus.api.sampler import EXTENSION as SAMPLER
from modelbus.api.sampler import Sampler
from modelbus.api.verify_jobs import EXTENSION as VERIFY_JOBS
from modelbus.api.verify_jobs import VerifyJobs


def create_app(parts: ApiParts) -> Flask:
    """The Flask app over `parts` (the wiring builds them: modelbus.web.create_api).

    Hot reload threads are not started here: call `flask_app.extensions["modelbus"].start(...)`
    (modelbus api and modelbus up do), and run the dashboard's sampler, `sampler(flask_app).run`,
    as a thread (without it the dashboard samples when it is polled).
    """
    flask_app = Flask("modelbus")
    flask_app.config["MAX_CONTENT_LENGTH"] = parts.config.max_message_bytes * BATCH_BODY_FACTOR
    flask_app.json.sort_keys = False  # type: ignore[attr-defined]
    flask_app.extensions[EXTENSION] = parts
    flask_app.extensions["modelbus"] = parts.serving
    flask_app.extensions["modelbus.metrics"] = parts.metrics
    flask_app.extensions[SAMPLER] = Sampler(parts.store, parts.metrics)
    flask_app.extensions[VERIFY_JOBS] = VerifyJobs()
    metrics = parts.metrics

    @flask_app.before_request
    def _start_timer() -> None:
        g.started = time.perf_counter()

    @flask_app.after_request
    def _count(response: Response) -> Response:
        rule = request.url_rule.rule if request.url_rule is not None else "unmatched"
        metrics.requests.labels(request.method, rule, str(response.status_code)).inc()
        started = getattr(g, "started", None)
        if started is not None:
            metrics.latency.labels(request.method, rule).observe(time.perf_counter() - started)
        return response

    register_error_handlers(flask_app)
    for blueprint in (predict.bp, events.bp, models.bp, monitoring.bp, datasets.bp, ops.bp, schemas.bp, feeds.bp,
                      actions.bp, dashboard.bp, windows.bp):
        flask_app.register_blueprint(blueprint)
    return flask_app


def sampler(flask_app: Flask) -> Sampler:
    """The dashboard's sampler of `flask_app`, for the wiring to run as a thread."""
    return flask_app.extensions[SAMPLER]
