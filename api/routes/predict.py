"""Predictions: the seed's GET route and POST /api/predict (one request or a list)."""
from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, request

from modelbus.api.context import BATCH_BODY_FACTOR, parts
from modelbus.api.errors import ApiError, answer_response, json_response
from modelbus.api.params import raw_body, version_arg
from modelbus.handlers.serving.predict import parse_item, parse_item_obj
from modelbus.messages.errors import Rejected
from modelbus.messages.jsonutil import canonical_json
from modelbus.messages.parse import loads

bp = Blueprint("predict", __name__)


@bp.get("/api/predict/<model>/<csv>")
def predict_seed(model: str, csv: str) -> Response:
    """The seed's prediction route: /api/predict/mlp/3,4,5."""
    obj: dict[str, Any] = {"model": model, "payload": csv}
    for key in ("dataset", "version", "id"):
        if key in request.args:
            obj[key] = version_arg(request.args[key]) if key == "version" else request.args[key]
    [answer] = parts().serving.predict([parse_item_obj(obj)])
    return answer_response(answer)


@bp.post("/api/predict")
def post_predict() -> Response:
    """One request object gives one answer; a list gives a list of answers in order."""
    p = parts()
    max_bytes = p.config.max_message_bytes
    raw, is_list = raw_body(max_bytes)
    if not is_list:
        [answer] = p.serving.predict([parse_item(raw, max_bytes)])
        return answer_response(answer)
    try:
        values = loads(raw, max_bytes * BATCH_BODY_FACTOR)
    except Rejected as exc:
        raise ApiError(exc.code, exc.message) from None
    if not isinstance(values, list) or not values:
        raise ApiError("bad_request", "a list of predictions must hold at least one request")
    limit = p.config.predict_batch * BATCH_BODY_FACTOR
    if len(values) > limit:
        raise ApiError("too_large", f"{len(values)} requests; the limit is {limit}")
    items = [parse_item(canonical_json(value).encode(), max_bytes) for value in values]
    return json_response(p.serving.predict(items))
