"""The registry: every model with its production version, and one model's versions and builds."""
from __future__ import annotations

from typing import Any

from flask import Blueprint, Response

from modelbus.api.context import parts
from modelbus.api.errors import ApiError, json_response
from modelbus.api.params import query
from modelbus.api.views import iso, version_json
from modelbus.handlers.serving.live import live_view
from modelbus.messages.http import ModelQuery
from modelbus.messages.types import MODEL_KINDS

bp = Blueprint("models", __name__)


@bp.get("/api/models")
def list_models() -> Response:
    """Every model and dataset with its production version, and what this process serves."""
    serving = parts().serving
    registry = serving.registry
    production = registry.aliases()
    grouped: dict[tuple[str, str], list[Any]] = {}
    for mv in registry.list_versions():
        grouped.setdefault((mv.model, mv.dataset), []).append(mv)
    models = []
    for (model, dataset), versions in sorted(grouped.items()):
        current = production.get((model, dataset))
        prod = next((v for v in versions if v.version == current), None)
        live = _live(prod) if prod is not None else None
        models.append({
            "model": model,
            "dataset": dataset,
            "production": current,
            "versions": len(versions),
            "latest": versions[-1].version,
            "production_version": version_json(prod, current, live=live) if prod is not None else None,
        })
    serving_now = [
        {"model": l.model, "dataset": l.dataset, "version": l.version, "uuid": l.uuid} for l in serving.cache.loaded()
    ]
    return json_response({"models": models, "serving": serving_now})


@bp.get("/api/models/<model>")
def show_model(model: str) -> Response:
    """One model's versions per dataset, and its recent builds."""
    if model not in MODEL_KINDS:
        raise ApiError("unknown_model", f"model '{model}' is unknown (known: {', '.join(sorted(MODEL_KINDS))})")
    registry = parts().serving.registry
    options = query(ModelQuery)
    dataset, limit = options.dataset, options.builds
    production = registry.aliases()
    promotions = registry.automatic_promotions(model, dataset)
    grouped: dict[str, list[Any]] = {}
    for mv in registry.list_versions(model, dataset):
        grouped.setdefault(mv.dataset, []).append(mv)
    datasets = [
        {
            "dataset": name,
            "production": production.get((model, name)),
            "versions": [version_json(mv, production.get((model, name)), promotions.get((model, name, mv.version)),
                                      _live(mv)) for mv in versions],
        }
        for name, versions in sorted(grouped.items())
    ]
    builds = [{k: iso(v) for k, v in b.items()} for b in registry.builds(model, dataset, limit)] if limit else []
    return json_response({"model": model, "datasets": datasets, "builds": builds})


def _live(mv: Any) -> dict[str, Any]:
    """A version's live metrics and drift, from this process's store."""
    p = parts()
    return live_view(p.store.engine, mv, p.config.live_window)
