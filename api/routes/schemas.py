"""The declared messages as JSON Schema (/api/schemas/<name>) and Swagger UI for the OpenAPI document (/docs)."""
from __future__ import annotations

from flask import Blueprint, Response, request

from modelbus.api import assets
from modelbus.api.errors import ApiError, json_response
from modelbus.api.schemas import json_schema, names

bp = Blueprint("schemas", __name__)


@bp.get("/api/schemas")
def list_schemas() -> Response:
    """The names of the messages with a JSON Schema."""
    return json_response({"schemas": names()})


@bp.get("/api/schemas/<name>")
def show_schema(name: str) -> Response:
    """One message's JSON Schema."""
    schema = json_schema(name)
    if schema is None:
        raise ApiError("not_found", f"no schema named '{name[:64]}' (known: {', '.join(names())})")
    return json_response(schema)


@bp.get("/docs")
def docs() -> Response:
    """Swagger UI over /openapi.json."""
    return Response(assets.PAGE.format(root=request.script_root), mimetype="text/html")


@bp.get("/docs/<asset>")
def docs_asset(asset: str) -> Response:
    """One of Swagger UI's files, from the installed wheel."""
    if asset not in assets.ASSETS:
        raise ApiError("not_found", f"no file '{asset[:64]}' in /docs")
    response = Response(assets.read(asset), mimetype=assets.ASSETS[asset])
    response.cache_control.max_age = 3600
    return response
