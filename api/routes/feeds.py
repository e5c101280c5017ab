"""The dashboard's JSON feeds: the overview, model histories and dead letters by reason."""
from __future__ import annotations

from flask import Blueprint, Response, current_app

from modelbus.api import dashboard_data as data
from modelbus.api.context import parts
from modelbus.api.errors import json_response
from modelbus.api.params import query
from modelbus.api.sampler import EXTENSION as SAMPLER
from modelbus.api.views import iso
from modelbus.db import alerts, feedback, registry
from modelbus.handlers.serving.alerting import alert_json
from modelbus.messages import http

bp = Blueprint("feeds", __name__)

RECENT_BUILDS = 10
RECENT_ALERTS = 10


@bp.get("/api/dashboard/overview")
def overview() -> Response:
    """The log head, handlers, build queue, recent builds, dead letters by reason, models, and recent history."""
    p = parts()
    store = p.store
    sampler = current_app.extensions[SAMPLER]
    sampler.sample_if_due()
    head = store.head()
    handlers = data.handler_rows(store, head)
    production = registry.aliases(store.engine)
    metrics = {(mv.model, mv.dataset, mv.version): mv.main_metric for mv in registry.list_versions(store.engine)}
    models = [{"model": m, "dataset": d, "production": v, "main_metric": metrics.get((m, d, v))}
              for (m, d), v in sorted(production.items())]
    builds = [{k: iso(v) for k, v in b.items()} for b in registry.builds(store.engine, limit=RECENT_BUILDS)]
    return json_response({
        "mode": "kafka" if p.config.kafka_mode else "embedded",
        "log_head": head,
        "handlers": handlers,
        "handler_failures": data.recent_failures(store.engine),
        "build_queue": data.build_queue(store, handlers),
        "builds": builds,
        "dead_letters": store.dead_letter_count(),
        "dead_letter_reasons": data.dead_letter_reasons(store),
        "models": models,
        "serving": [{"model": l.model, "dataset": l.dataset, "version": l.version} for l in p.serving.cache.loaded()],
        "series": sampler.series(),
        "alerts": {"counts": alerts.counts(store.engine),
                   "recent": [alert_json(a) for a in alerts.listed(store.engine, limit=RECENT_ALERTS)]},
        "feedback": feedback.status_counts(store.engine),
    })


@bp.get("/api/dashboard/windows")
def windows() -> Response:
    """Every declared window with its settings and status (closed rows, late events, watermark)."""
    from modelbus.db import windows as window_store
    from modelbus.handlers.log.windows import iso_ms

    p = parts()
    out = []
    for spec in p.config.windows:
        status = window_store.status(p.store.engine, spec.name, spec.stream)
        out.append({
            "name": spec.name, "stream": spec.stream, "kind": spec.kind, "size_ms": spec.size,
            "advance_ms": spec.advance, "gap_ms": spec.gap, "grace_ms": spec.grace,
            "columns": spec.columns, "dataset": spec.feature_dataset, "model": spec.model,
            "closed": status.closed, "late_events": status.late,
            "watermark": None if status.max_ts is None else iso_ms(status.max_ts - spec.grace),
        })
    return json_response({"windows": out})


@bp.get("/api/dashboard/models")
def model_histories() -> Response:
    """Per model and dataset: each version's main metric and time, and the promotions that moved production."""
    args = query(http.HistoryQuery)
    return json_response({"models": data.model_histories(parts().store.engine, args.model, args.dataset)})


@bp.get("/api/dashboard/dead-letters")
def dead_letters() -> Response:
    """Dead letters as /api/errors gives them, optionally of one reason (`code`), and the count of each reason."""
    args = query(http.DeadLetterQuery)
    store = parts().store
    page = data.dead_letter_page(store, args.after, args.limit, args.code)
    return json_response({**page, "reasons": data.dead_letter_reasons(store)})
