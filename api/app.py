"""The Flask app: the seed's routes, the JSON API, health, metrics and the OpenAPI document."""
from __future__ import annotations

import base64
import functools
import hmac
import json
import logging
import re
import threading
import time
from typing import Any, Callable

from flask import Flask, Response, g, request
from werkzeug.exceptions import HTTPException

from modelbus.commands.messages import BUILD_COMMANDS, MODEL_KINDS, Rejected, canonical_json
from modelbus.commands.parse import INT64_MAX, INT64_MIN, loads, shorten
from modelbus.commands.publish import EventPublisher, outcome_json
from modelbus.db.breaker import DatabaseUnavailable
from modelbus.db.events import REJECTED, event_json
from modelbus.handlers.ingest import ERROR_RAW_LIMIT
from modelbus.handlers.predict import (
    DbRegistry,
    Item,
    MicroBatcher,
    ModelCache,
    dataset_labels,
    parse_item,
    parse_item_obj,
    predict_batch,
    resolve,
)

from modelbus.api.metrics import KafkaIngestLag, Metrics
from modelbus.api.openapi import openapi_document

log = logging.getLogger(__name__)

# A list body (many events or many predictions) may hold this many messages' worth of bytes.
BATCH_BODY_FACTOR = 64
MAX_PAGE = 1000
DEFAULT_PAGE = 100

_QUERY_INT_RE = re.compile(r"[+-]?[0-9]+")

# Prediction and event errors by code; any code not listed is a 400.
STATUS = {
    "unauthorized": 401,
    "not_found": 404,
    "unknown_model": 404,
    "unknown_version": 404,
    "no_production_version": 404,
    "method_not_allowed": 405,
    "too_large": 413,
    "model_unavailable": 503,
    "prediction_failed": 500,
    "internal": 500,
    "unavailable": 503,
    "registry_unavailable": 503,
}


# The code of an HTTP error by status, for Flask's and waitress's own errors alike.
HTTP_ERROR_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    431: "headers_too_large",
    500: "internal",
    501: "not_implemented",
}


def http_error_code(status: int, reason: str) -> str:
    """The error code of an HTTP error raised by the server or Flask rather than by a route."""
    return HTTP_ERROR_CODES.get(status) or reason.lower().replace(" ", "_")


class ApiError(Exception):
    """An error answered as {"error": {"code", "message"}} with its HTTP status."""

    def __init__(self, code: str, message: str, status: int | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status or STATUS.get(code, 400)


def error_body(code: str, message: str) -> dict[str, Any]:
    """The JSON body of every error."""
    return {"error": {"code": code, "message": message}}


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A JSON response (compact, UTF-8, no NaN)."""
    try:
        text = json.dumps(body, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except ValueError:
        from modelbus.handlers.predictor import _finite

        text = json.dumps(_finite(body), separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return Response(text, status=status, mimetype="application/json", headers=headers)


class Serving:
    """What the API needs to answer predictions: the model cache and the micro-batcher."""

    def __init__(self, app: Any, registry: Any = None, metrics: Metrics | None = None):
        self.app = app
        self.settings = app.settings
        self.registry = registry if registry is not None else DbRegistry(app.api_engine)
        self.metrics = metrics
        self.cache = ModelCache(self.registry, on_swap=metrics.on_swap if metrics else None)
        self.labels = dataset_labels(self.settings.datasets)
        # No added wait: concurrent HTTP requests queue while a batch runs and share the
        # next one, so batches grow with the load without slowing a lone request.
        self.batcher = MicroBatcher(self._run, max_batch=self.settings.predict_batch, max_wait=0.0)
        self._started = False

    def _run(self, items: list[Item]) -> list[dict[str, Any]]:
        if self.metrics is not None:
            self.metrics.batch_size.observe(len(items))
        return predict_batch(self.cache, items, labels=self.labels)

    def predict(self, items: list[Item]) -> list[dict[str, Any]]:
        """Answers for parsed items, through the shared batcher."""
        # A model not in memory is read from the registry here, in the caller's thread: in
        # the batcher's thread a slow or silent database would hold up every concurrent
        # caller, those whose model is loaded too.
        for item in items:
            resolve(self.cache, item)
        answers = self.batcher.submit(items)
        if self.metrics is not None:
            self.metrics.count_answers(answers)
        return answers

    def start(self, start: Callable[[str, Callable[[threading.Event], None]], None]) -> None:
        """Start hot reload (model-update notices and alias polling) with a Services-like `start`."""
        from modelbus.handlers.predictor import reload_targets

        if self._started:
            return
        self._started = True
        try:
            self.cache.warm()
        except Exception:
            log.exception("loading the production models at start failed; they load on first use")
        for name, target in reload_targets(self.settings, self.app.transport, self.cache):
            start(name, target)

    def close(self) -> None:
        """Stop the batcher thread."""
        self.batcher.close()


def _query_int(name: str, value: str) -> int | None:
    """A query value as an integer, None when it is not one; out_of_range beyond int64, as in a message."""
    # ASCII digits only: int() would also take "1_000", " 7" and other scripts' digits.
    if not _QUERY_INT_RE.fullmatch(value):
        return None
    # Judged by length first, so a 5000-digit value is never converted (nor refused by int()).
    if len(value.lstrip("+-").lstrip("0")) > 19 or not INT64_MIN <= int(value) <= INT64_MAX:
        raise ApiError("out_of_range",
                       f"query parameter '{name}' is {shorten(value)}, outside the signed 64-bit integer range")
    return int(value)


def _int_arg(name: str, default: int, low: int, high: int) -> int:
    value = request.args.get(name)
    if value is None or value == "":
        return default
    number = _query_int(name, value)
    if number is None:
        raise ApiError("bad_param", f"query parameter '{name}' must be an integer, got '{shorten(value, 40)}'")
    if not low <= number <= high:
        raise ApiError("bad_param", f"query parameter '{name}' must be between {low} and {high}, got {number}")
    return number


def _version_arg(value: str) -> Any:
    # A version from a URL is text; the parser wants the JSON integer (and judges its range).
    number = _query_int("version", value)
    return value if number is None else number


def _raw_body(max_single: int) -> tuple[bytes, bool]:
    """The request body and whether it is a list; a single message obeys the per-message limit."""
    raw = request.get_data(cache=False)
    is_list = raw.lstrip()[:1] == b"["
    limit = max_single * BATCH_BODY_FACTOR if is_list else max_single
    if len(raw) > limit:
        raise ApiError("too_large", f"message is {len(raw)} bytes; the limit is {limit}")
    return raw, is_list


def _iso(value: Any) -> Any:
    return value.isoformat() if hasattr(value, "isoformat") else value


def version_json(mv: Any, production: int | None) -> dict[str, Any]:
    """A registry version as the API shows it (no artifact)."""
    return {
        "version": mv.version,
        "uuid": mv.uuid,
        "status": mv.status,
        "production": production == mv.version,
        "main_metric": mv.main_metric,
        "params": mv.params,
        "metrics": mv.metrics,
        "sha256": getattr(mv, "sha256", None),
        "lineage": {
            "first_position": getattr(mv, "first_position", None),
            "last_position": getattr(mv, "last_position", None),
            "n_events": getattr(mv, "n_events", None),
            "digest": getattr(mv, "lineage_digest", None),
            "build_position": getattr(mv, "build_position", None),
        },
        "versions": getattr(mv, "versions", None),
        "created_at": _iso(mv.created_at),
    }


def dead_letter_json(row: dict[str, Any]) -> dict[str, Any]:
    """A dead letter as the API shows it: the raw message as text, or base64 when it is not UTF-8."""
    raw = bytes(row["raw"])
    head = raw[:ERROR_RAW_LIMIT]
    try:
        shown, encoding = head.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        shown, encoding = base64.b64encode(head).decode("ascii"), "base64"
    source: dict[str, Any] = {"kind": row["source"]}
    if row.get("source_topic"):
        source.update(topic=row["source_topic"], partition=row["source_partition"], offset=row["source_offset"])
    return {
        "id": row["id"],
        "code": row["code"],
        "reason": row["reason"],
        "source": source,
        "raw": shown,
        "raw_encoding": encoding,
        "raw_bytes": len(raw),
        "truncated": len(raw) > ERROR_RAW_LIMIT,
        "received_at": _iso(row["received_at"]),
    }


def _is_outage(exc: Exception) -> bool:
    """An error of the database or the broker (the caller may retry), not a bug of ours."""
    from sqlalchemy.exc import DBAPIError
    from sqlalchemy.exc import TimeoutError as PoolTimeout

    # kafka-python's errors are matched by module so the API never imports Kafka.
    # ConnectionError includes db.breaker.DatabaseUnavailable; PoolTimeout is a wait for a
    # pooled connection while the others are busy.
    return (isinstance(exc, (DBAPIError, PoolTimeout, TimeoutError, ConnectionError))
            or type(exc).__module__.startswith("kafka"))


def _outage_message(exc: Exception) -> str:
    if isinstance(exc, DatabaseUnavailable):
        return str(exc)
    return f"a backing service is unavailable ({type(exc).__name__}); retry later"


def create_app(app: Any, *, registry: Any = None, serving: Serving | None = None) -> Flask:
    """The Flask app of one modelbus process (`app` is a modelbus.app.App).

    Hot reload threads are not started here: call `flask_app.extensions["modelbus"].start(...)`
    (modelbus api and modelbus up do).
    """
    settings = app.settings
    # Every request reads and writes through the API's engine (timeouts of seconds, circuit
    # breaker); appends still wake this process's followers at once.
    store = app.store.using(app.api_engine)
    kafka_lag = KafkaIngestLag(settings) if settings.kafka_mode else None
    metrics = Metrics(store, kafka_lag)
    serving = serving or Serving(app, registry, metrics)
    flask_app = Flask("modelbus")
    flask_app.config["MAX_CONTENT_LENGTH"] = settings.max_message_bytes * BATCH_BODY_FACTOR
    flask_app.json.sort_keys = False  # type: ignore[attr-defined]
    flask_app.extensions["modelbus"] = serving
    flask_app.extensions["modelbus.metrics"] = metrics
    max_bytes = settings.max_message_bytes
    reg = serving.registry

    @functools.cache
    def publisher() -> EventPublisher:
        # Made on first use: in Kafka mode it needs the producer.
        return EventPublisher(settings, store, app.transport)

    def require_token() -> None:
        token = settings.api_token
        if token is None:
            return
        header = request.headers.get("Authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
            raise ApiError("unauthorized", "this route needs 'Authorization: Bearer <token>' (MODELBUS_API_TOKEN)")

    # -- bookkeeping and errors ----------------------------------------------------------

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

    @flask_app.errorhandler(ApiError)
    def _api_error(exc: ApiError) -> Response:
        headers = {"WWW-Authenticate": 'Bearer realm="modelbus"'} if exc.status == 401 else None
        return json_response(error_body(exc.code, exc.message), exc.status, headers)

    @flask_app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        code = http_error_code(exc.code or 500, exc.name or "error")
        message = exc.description or exc.name
        if exc.code == 404:
            message = f"no route for {request.method} {request.path}"
        elif exc.code == 405:
            allowed = ", ".join(sorted(m for m in (exc.valid_methods or []) if m not in ("HEAD", "OPTIONS")))
            message = f"{request.method} is not allowed on {request.path} (allowed: {allowed})"
        elif exc.code == 413:
            message = f"request body is larger than {flask_app.config['MAX_CONTENT_LENGTH']} bytes"
        response = json_response(error_body(code, message), exc.code or 500)
        if exc.code == 405 and exc.valid_methods:
            response.headers["Allow"] = ", ".join(exc.valid_methods)
        return response

    @flask_app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        if _is_outage(exc):
            # A refusal of the open breaker was logged once, when it opened.
            if not isinstance(exc, DatabaseUnavailable):
                log.warning("%s %s: a backing service is unavailable: %s", request.method, request.path, exc)
            return json_response(error_body("unavailable", _outage_message(exc)), 503)
        log.exception("unexpected error answering %s %s", request.method, request.path)
        return json_response(error_body("internal", "internal error; the server log has the details"), 500)

    def answer_one(answer: dict[str, Any]) -> Response:
        if "error" in answer:
            return json_response(answer, STATUS.get(answer["error"]["code"], 400))
        return json_response(answer)

    # -- seed routes ------------------------------------------------------------------------

    @flask_app.get("/api/predict/<model>/<csv>")
    def predict_seed(model: str, csv: str) -> Response:
        obj: dict[str, Any] = {"model": model, "payload": csv}
        for key in ("dataset", "version", "id"):
            if key in request.args:
                obj[key] = _version_arg(request.args[key]) if key == "version" else request.args[key]
        [answer] = serving.predict([parse_item_obj(obj)])
        return answer_one(answer)

    def queue_build(command: str) -> Response:
        require_token()
        event: dict[str, Any] = {"type": "command", "payload": command}
        if "dataset" in request.args:
            event["dataset"] = request.args["dataset"]
        [outcome] = publisher().post([event], "http")
        metrics.events.labels(outcome.status).inc()
        if outcome.status == REJECTED:
            assert outcome.error is not None
            raise ApiError(outcome.error.code, outcome.error.message)
        metrics.builds_requested.labels(BUILD_COMMANDS[command]).inc()
        return json_response(outcome_json(outcome), 202)

    for command in BUILD_COMMANDS:
        flask_app.add_url_rule(f"/api/{command}", f"seed_{command}", lambda command=command: queue_build(command),
                               methods=["GET"])

    # -- JSON API ---------------------------------------------------------------------------

    @flask_app.post("/api/events")
    def post_events() -> Response:
        require_token()
        raw, is_list = _raw_body(max_bytes)
        items: list[Any] = [raw]
        if is_list:
            try:
                values = loads(raw, max_bytes * BATCH_BODY_FACTOR)
            except Rejected:
                values = None  # not a JSON list after all: answered as one bad message
            if isinstance(values, list):
                if not values:
                    raise ApiError("bad_request", "the list of events is empty")
                # Each element goes through the same parser (and size limit) as a Kafka message.
                items = [canonical_json(v).encode() for v in values]
            else:
                is_list = False
        outcomes = publisher().post(items, "http")
        for outcome in outcomes:
            metrics.events.labels(outcome.status).inc()
        if not is_list:
            [outcome] = outcomes
            if outcome.status == REJECTED:
                assert outcome.error is not None
                raise ApiError(outcome.error.code, outcome.error.message)
            return json_response(outcome_json(outcome), 202)
        return json_response([outcome_json(o) for o in outcomes], 202)

    @flask_app.post("/api/predict")
    def post_predict() -> Response:
        raw, is_list = _raw_body(max_bytes)
        if not is_list:
            item = parse_item(raw, max_bytes)
            [answer] = serving.predict([item])
            return answer_one(answer)
        try:
            values = loads(raw, max_bytes * BATCH_BODY_FACTOR)
        except Rejected as exc:
            raise ApiError(exc.code, exc.message) from None
        if not isinstance(values, list) or not values:
            raise ApiError("bad_request", "a list of predictions must hold at least one request")
        if len(values) > settings.predict_batch * BATCH_BODY_FACTOR:
            raise ApiError("too_large", f"{len(values)} requests; the limit is {settings.predict_batch * BATCH_BODY_FACTOR}")
        items = []
        for value in values:
            encoded = canonical_json(value).encode()
            items.append(parse_item(encoded, max_bytes))
        return json_response(serving.predict(items))

    @flask_app.get("/api/models")
    def list_models() -> Response:
        production = reg.aliases()
        grouped: dict[tuple[str, str], list[Any]] = {}
        for mv in reg.list_versions():
            grouped.setdefault((mv.model, mv.dataset), []).append(mv)
        models = []
        for (model, dataset), versions in sorted(grouped.items()):
            current = production.get((model, dataset))
            prod = next((v for v in versions if v.version == current), None)
            models.append({
                "model": model,
                "dataset": dataset,
                "production": current,
                "versions": len(versions),
                "latest": versions[-1].version,
                "production_version": version_json(prod, current) if prod is not None else None,
            })
        serving_now = [
            {"model": l.model, "dataset": l.dataset, "version": l.version, "uuid": l.uuid} for l in serving.cache.loaded()
        ]
        return json_response({"models": models, "serving": serving_now})

    @flask_app.get("/api/models/<model>")
    def show_model(model: str) -> Response:
        if model not in MODEL_KINDS:
            raise ApiError("unknown_model", f"model '{model}' is unknown (known: {', '.join(sorted(MODEL_KINDS))})")
        dataset = request.args.get("dataset") or None
        limit = _int_arg("builds", 50, 0, MAX_PAGE)
        production = reg.aliases()
        grouped: dict[str, list[Any]] = {}
        for mv in reg.list_versions(model, dataset):
            grouped.setdefault(mv.dataset, []).append(mv)
        datasets = [
            {
                "dataset": name,
                "production": production.get((model, name)),
                "versions": [version_json(mv, production.get((model, name))) for mv in versions],
            }
            for name, versions in sorted(grouped.items())
        ]
        builds = [{k: _iso(v) for k, v in b.items()} for b in reg.builds(model, dataset, limit)] if limit else []
        return json_response({"model": model, "datasets": datasets, "builds": builds})

    @flask_app.get("/api/events")
    def list_events() -> Response:
        after = _int_arg("after", 0, 0, 2**63 - 1)
        limit = _int_arg("limit", DEFAULT_PAGE, 1, MAX_PAGE)
        filters = {k: request.args[k] for k in ("type", "name", "dataset") if request.args.get(k)}
        rows = store.read(after=after, limit=limit, **filters)
        events = [event_json(row) for row in rows]
        next_after = rows[-1].position if len(rows) == limit else None
        return json_response({"events": events, "next": next_after, "head": store.head()})

    @flask_app.get("/api/errors")
    def list_errors() -> Response:
        after = _int_arg("after", 0, 0, 2**63 - 1)
        limit = _int_arg("limit", DEFAULT_PAGE, 1, MAX_PAGE)
        rows = store.dead_letters(after=after, limit=limit)
        next_after = rows[-1]["id"] if len(rows) == limit else None
        return json_response({"errors": [dead_letter_json(r) for r in rows], "next": next_after,
                              "total": store.dead_letter_count()})

    @flask_app.get("/healthz")
    def healthz() -> Response:
        try:
            head = store.head()
        except Exception as exc:
            if not isinstance(exc, DatabaseUnavailable):  # the breaker said so once, when it opened
                log.warning("health check: the database is unreachable: %s", exc)
            detail = str(exc) if isinstance(exc, DatabaseUnavailable) else type(exc).__name__
            raise ApiError("unavailable", f"the database is unreachable: {detail}") from None
        return json_response({
            "status": "ok",
            "mode": "kafka" if settings.kafka_mode else "embedded",
            "log_head": head,
            "serving": [f"{l.model}/{l.dataset}/v{l.version}" for l in serving.cache.loaded()],
        })

    @flask_app.get("/metrics")
    def prometheus() -> Response:
        return Response(metrics.render(), mimetype="text/plain; version=0.0.4; charset=utf-8")

    @flask_app.get("/openapi.json")
    def openapi() -> Response:
        return json_response(openapi_document(settings))

    flask_app.add_url_rule("/swagger.json", "swagger", openapi, methods=["GET"])
    return flask_app
