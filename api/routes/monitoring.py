"""After deployment: the alerts rules raised and what became of each feedback event."""
from __future__ import annotations

from flask import Blueprint, Response

from modelbus.api.context import parts
from modelbus.api.errors import json_response
from modelbus.api.params import query
from modelbus.api.views import iso
from modelbus.db import alerts, feedback
from modelbus.handlers.serving.alerting import alert_json
from modelbus.messages.http import AlertQuery, FeedbackQuery

bp = Blueprint("monitoring", __name__)


@bp.get("/api/alerts")
def list_alerts() -> Response:
    """Alerts, newest first, paginated by id."""
    engine = parts().store.engine
    options = query(AlertQuery)
    rows = alerts.listed(engine, rule=options.rule, model=options.model, before=options.before, limit=options.limit)
    next_before = rows[-1]["id"] if len(rows) == options.limit else None
    return json_response({"alerts": [alert_json(r) for r in rows], "next": next_before,
                          "counts": alerts.counts(engine)})


@bp.get("/api/feedback")
def list_feedback() -> Response:
    """Feedback events and their joins, oldest first, paginated by log position."""
    engine = parts().store.engine
    page = query(FeedbackQuery)
    rows = feedback.listed(engine, status=page.status, after=page.after, limit=page.limit)
    next_after = rows[-1]["position"] if len(rows) == page.limit else None
    shown = [{k: iso(v) if k in ("received_at", "joined_at") else v for k, v in r.items()} for r in rows]
    return json_response({"feedback": shown, "next": next_after, "counts": feedback.status_counts(engine)})
