"""Events in and out: POST /api/events, the seed's build routes, the log and the dead letters."""
from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, request

from modelbus.api.context import BATCH_BODY_FACTOR, parts
from modelbus.api.errors import ApiError, json_response
from modelbus.api.params import query, raw_body, require_token
from modelbus.api.views import dead_letter_json
from modelbus.commands.publish import outcome_json
from modelbus.db.events import REJECTED, event_json
from modelbus.messages.errors import Rejected
from modelbus.messages.http import EventQuery, PageQuery
from modelbus.messages.jsonutil import canonical_json
from modelbus.messages.parse import loads
from modelbus.messages.types import BUILD_COMMANDS

bp = Blueprint("events", __name__)


def _queue_build(command: str) -> Response:
    p = parts()
    require_token(p.config.api_token)
    event: dict[str, Any] = {"type": "command", "payload": command}
    if "dataset" in request.args:
        event["dataset"] = request.args["dataset"]
    [outcome] = p.publisher().post([event], "http")
    p.metrics.events.labels(outcome.status).inc()
    if outcome.status == REJECTED:
        assert outcome.error is not None
        raise ApiError(outcome.error.code, outcome.error.message)
    p.metrics.builds_requested.labels(BUILD_COMMANDS[command]).inc()
    return json_response(outcome_json(outcome), 202)


for _command in BUILD_COMMANDS:
    bp.add_url_rule(f"/api/{_command}", f"seed_{_command}", lambda command=_command: _queue_build(command),
                    methods=["GET"])


@bp.post("/api/events")
def post_events() -> Response:
    """One event or a list; 202 with the outcome(s); a rejected single event is a 4xx."""
    p = parts()
    require_token(p.config.api_token)
    max_bytes = p.config.max_message_bytes
    raw, is_list = raw_body(max_bytes)
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
    outcomes = p.publisher().post(items, "http")
    for outcome in outcomes:
        p.metrics.events.labels(outcome.status).inc()
    if not is_list:
        [outcome] = outcomes
        if outcome.status == REJECTED:
            assert outcome.error is not None
            raise ApiError(outcome.error.code, outcome.error.message)
        return json_response(outcome_json(outcome), 202)
    return json_response([outcome_json(o) for o in outcomes], 202)


@bp.get("/api/events")
def list_events() -> Response:
    """The log, oldest first, paginated by position."""
    store = parts().store
    page = query(EventQuery)
    filters = {k: v for k, v in page.model_dump(include={"type", "name", "dataset"}).items() if v is not None}
    rows = store.read(after=page.after, limit=page.limit, **filters)
    next_after = rows[-1].position if len(rows) == page.limit else None
    return json_response({"events": [event_json(row) for row in rows], "next": next_after, "head": store.head()})


@bp.get("/api/errors")
def list_errors() -> Response:
    """The dead letters, oldest first, paginated by id."""
    store = parts().store
    page = query(PageQuery)
    rows = store.dead_letters(after=page.after, limit=page.limit)
    next_after = rows[-1]["id"] if len(rows) == page.limit else None
    return json_response({"errors": [dead_letter_json(r) for r in rows], "next": next_after,
                          "total": store.dead_letter_count()})
