"""The dashboard's write routes: build, promote and verify (need the API token when one is set)."""
from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app, request

from modelbus.api.context import parts
from modelbus.api.errors import ApiError, json_response
from modelbus.api.params import query, raw_body, require_token
from modelbus.api.verify_jobs import EXTENSION as VERIFY_JOBS
from modelbus.commands.publish import outcome_json
from modelbus.db import registry
from modelbus.db.events import REJECTED
from modelbus.messages import http
from modelbus.messages.errors import Rejected
from modelbus.messages.parse import VERSION_MAX, loads
from modelbus.messages.types import DEFAULT_DATASET, MODEL_KINDS

bp = Blueprint("actions", __name__)


def _model(model: str) -> str:
    if model not in MODEL_KINDS:
        raise ApiError("unknown_model", f"model '{model}' is unknown (known: {', '.join(sorted(MODEL_KINDS))})")
    return model


def _body(allowed: set[str]) -> dict[str, Any]:
    """The JSON object of a write request; JSON only, so a cross-site form cannot post it."""
    if not request.is_json:
        raise ApiError("unsupported_media_type", "send the body as JSON with 'Content-Type: application/json'", 415)
    max_bytes = parts().config.max_message_bytes
    raw, _ = raw_body(max_bytes)
    try:
        body = loads(raw, max_bytes) if raw.strip() else {}
    except Rejected as exc:
        raise ApiError(exc.code, exc.message) from None
    if not isinstance(body, dict):
        raise ApiError("not_object", "the body must be a JSON object")
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise ApiError("unknown_field", f"unknown field '{unknown[0]}' (allowed: {', '.join(sorted(allowed))})")
    return body


def _post(event: dict[str, Any]) -> Response:
    p = parts()
    [outcome] = p.publisher().post([event], "http")
    p.metrics.events.labels(outcome.status).inc()
    if outcome.status == REJECTED:
        assert outcome.error is not None
        raise ApiError(outcome.error.code, outcome.error.message)
    return json_response(outcome_json(outcome), 202)


@bp.post("/api/models/<model>/build")
def build(model: str) -> Response:
    """Queue a build command of `model` ({"dataset", "params"} optional); 202 with the event's outcome."""
    require_token(parts().config.api_token)
    _model(model)
    body = _body(set(http.BuildRequest.model_fields))
    event = {"type": "command", "payload": f"build_{model}", **body}
    response = _post(event)
    parts().metrics.builds_requested.labels(model).inc()
    return response


@bp.post("/api/models/<model>/promote")
def promote(model: str) -> Response:
    """Queue a promote command ({"version", "dataset"}); the builds handler moves production when it applies it."""
    require_token(parts().config.api_token)
    _model(model)
    body = _body(set(http.PromoteRequest.model_fields))
    if "version" not in body:
        raise ApiError("missing_field", "field 'version' is required")
    return _post({"type": "command", "payload": "promote", "model": model, **body})


def _key(model: str, version: int) -> tuple[str, str, int]:
    if version > VERSION_MAX:
        raise ApiError("out_of_range", f"version {version} is above {VERSION_MAX}")
    return _model(model), query(http.VerifyQuery).dataset or DEFAULT_DATASET, version


@bp.post("/api/models/<model>/versions/<int:version>/verify")
def start_verify(model: str, version: int) -> Response:
    """Rebuild the version from its lineage in the background (`?dataset=`); 202 with the run's state."""
    require_token(parts().config.api_token)
    key = _key(model, version)
    engine = parts().store.engine
    recorded = registry.get_version(engine, *key)
    if recorded is None:
        raise ApiError("unknown_version", f"no {key[0]} version {version} on dataset '{key[1]}'")
    return json_response(current_app.extensions[VERIFY_JOBS].start(key, engine, recorded), 202)


@bp.get("/api/models/<model>/versions/<int:version>/verify")
def verify_state(model: str, version: int) -> Response:
    """The state of this process's latest verify of the version: never, queued, running, ok, mismatch, failed."""
    key = _key(model, version)
    if not any(mv.version == version for mv in registry.list_versions(parts().store.engine, key[0], key[1])):
        raise ApiError("unknown_version", f"no {key[0]} version {version} on dataset '{key[1]}'")
    return json_response(current_app.extensions[VERIFY_JOBS].state(key))
