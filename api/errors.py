"""Every error of the API as JSON {"error": {"code", "message"}} with its HTTP status."""
from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException

from modelbus.db.breaker import DatabaseUnavailable
from modelbus.db.errors import StorageError
from modelbus.messages.jsonutil import compact_json

log = logging.getLogger(__name__)

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
    return Response(compact_json(body), status=status, mimetype="application/json", headers=headers)


def answer_response(answer: dict[str, Any]) -> Response:
    """One prediction answer: 200, or the status of its error code."""
    if "error" in answer:
        return json_response(answer, STATUS.get(answer["error"]["code"], 400))
    return json_response(answer)


def is_outage(exc: Exception) -> bool:
    """An error of the database or the broker (the caller may retry), not a bug of ours."""
    # Every failure of a database call is a db.errors.StorageError (an open breaker's refusal
    # and a wait for a pooled connection included). kafka-python's errors are matched by
    # module so the API never imports Kafka.
    return (isinstance(exc, (StorageError, TimeoutError, ConnectionError))
            or type(exc).__module__.startswith("kafka"))


def _outage_message(exc: Exception) -> str:
    if isinstance(exc, DatabaseUnavailable):
        return str(exc)
    return f"a backing service is unavailable ({type(exc).__name__}); retry later"


def register_error_handlers(flask_app: Flask) -> None:
    """Answer ApiError, Flask's HTTP errors, outages (503) and bugs (500) as JSON."""

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
        if is_outage(exc):
            # A refusal of the open breaker was logged once, when it opened.
            if not isinstance(exc, DatabaseUnavailable):
                log.warning("%s %s: a backing service is unavailable: %s", request.method, request.path, exc)
            return json_response(error_body("unavailable", _outage_message(exc)), 503)
        log.exception("unexpected error answering %s %s", request.method, request.path)
        return json_response(error_body("internal", "internal error; the server log has the details"), 500)
