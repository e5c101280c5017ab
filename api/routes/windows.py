"""Windows over raw events: a declared window's closed rows (its feature rows) and its status."""
from __future__ import annotations

from flask import Blueprint, Response

from modelbus.api.context import parts
from modelbus.api.errors import ApiError, json_response
from modelbus.api.params import query
from modelbus.db import windows as window_store
from modelbus.handlers.log.windows import iso_ms, window_json
from modelbus.messages.http import WindowQuery

bp = Blueprint("windows", __name__)


def _cursor(after: str) -> tuple[int, str, int]:
    end, start, key = after.split(":", 2)
    return int(end), key, int(start)


@bp.get("/api/windows/<name>")
def list_windows(name: str) -> Response:
    """A page of one window's closed rows, ordered by end, key and start, and the window's status."""
    p = parts()
    spec = next((w for w in p.config.windows if w.name == name), None)
    if spec is None:
        known = ", ".join(w.name for w in p.config.windows) or "none declared"
        raise ApiError("not_found", f"window '{name}' is not declared (windows: {known})")
    page = query(WindowQuery)
    engine = p.store.engine
    rows = window_store.rows(engine, name, key=page.key, after=_cursor(page.after) if page.after else None,
                             limit=page.limit)
    last = rows[-1] if len(rows) == page.limit else None
    status = window_store.status(engine, name, spec.stream)
    watermark = None if status.max_ts is None else iso_ms(status.max_ts - spec.grace)
    return json_response({
        "rows": [window_json(spec, r["key"], r["start_ms"], r["end_ms"], r["values"]) for r in rows],
        "next": f"{last['end_ms']}:{last['start_ms']}:{last['key']}" if last else None,
        "status": {"kind": spec.kind, "stream": spec.stream, "watermark": watermark, "closed": status.closed,
                   "late_events": status.late},
    })
