"""A dataset's payloads: its typed fields and the JSON Schemas of its training and prediction payloads."""
from __future__ import annotations

from flask import Blueprint, Response

from modelbus.api.context import parts
from modelbus.api.errors import ApiError, json_response
from modelbus.messages.datasets import dataset_payloads

bp = Blueprint("datasets", __name__)


@bp.get("/api/datasets/<name>/schema")
def dataset_schema(name: str) -> Response:
    """The declared (or learned) shape of a dataset's payloads, as JSON Schemas."""
    p = parts()
    schema = p.config.typed.get(name)
    declared = name in p.config.widths
    width = p.config.widths[name] if declared else p.store.expected_values(name)
    if width is None:
        raise ApiError("not_found", f"dataset '{name[:64]}' is not declared and has no training records yet")
    payloads = dataset_payloads(width, schema)
    return json_response({
        "dataset": name,
        "declared": declared,
        "features": width - 1,
        "input_schema": schema.as_dict() if schema is not None else None,
        "training_payload": payloads["training"],
        "prediction_payload": payloads["prediction"],
    })
