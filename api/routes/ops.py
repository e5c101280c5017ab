"""Operations: health, Prometheus metrics and the OpenAPI document."""
from __future__ import annotations

import logging

from flask import Blueprint, Response

from modelbus.api.context import parts
from modelbus.api.errors import ApiError, json_response
from modelbus.api.openapi import openapi_document
from modelbus.db.breaker import DatabaseUnavailable

log = logging.getLogger(__name__)

bp = Blueprint("ops", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    """200 with the log head and what is served; 503 when the database is unreachable."""
    p = parts()
    try:
        head = p.store.head()
    except Exception as exc:
        if not isinstance(exc, DatabaseUnavailable):  # the breaker said so once, when it opened
            log.warning("health check: the database is unreachable: %s", exc)
        detail = str(exc) if isinstance(exc, DatabaseUnavailable) else type(exc).__name__
        raise ApiError("unavailable", f"the database is unreachable: {detail}") from None
    return json_response({
        "status": "ok",
        "mode": "kafka" if p.config.kafka_mode else "embedded",
        "log_head": head,
        "serving": [f"{l.model}/{l.dataset}/v{l.version}" for l in p.serving.cache.loaded()],
    })


@bp.get("/metrics")
def prometheus() -> Response:
    """Prometheus text exposition."""
    return Response(parts().metrics.render(), mimetype="text/plain; version=0.0.4; charset=utf-8")


@bp.get("/openapi.json")
def openapi() -> Response:
    """The OpenAPI 3.1 document (write routes need the bearer token when one is set)."""
    return json_response(openapi_document(parts().config.api_token is not None))


bp.add_url_rule("/swagger.json", "swagger", openapi, methods=["GET"])
