"""What the dashboard reads of the store: handler lag, the build queue, dead letters by reason, model histories."""
from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, func, select

from modelbus.api.views import dead_letter_json, iso
from modelbus.db import failures, positions, registry
from modelbus.db.events import EventStore, utcnow
from modelbus.db.schema import dead_letters, events
from modelbus.messages.types import BUILD_COMMANDS

# The handler whose position says which build commands are still waiting.
BUILDS_HANDLER = "builds"
QUEUE_LIMIT = 50


def handler_rows(store: EventStore, head: int) -> list[dict[str, Any]]:
    """Each handler's position, lag behind `head`, lease holder and last move."""
    now = utcnow()
    rows = []
    for state in positions.states(store.engine):
        leased = state.owner is not None and state.lease_expires is not None and state.lease_expires > now
        rows.append({
            "handler": state.name,
            "position": state.position,
            "lag": max(0, head - state.position),
            "owner": state.owner if leased else None,
            "updated_at": iso(state.updated_at),
        })
    return rows


def build_queue(store: EventStore, handlers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Build commands in the log that the builds handler has not reached yet, oldest first."""
    done = next((h["position"] for h in handlers if h["handler"] == BUILDS_HANDLER), 0)
    query = (select(events.c.position, events.c.event_id, events.c.name, events.c.dataset, events.c.received_at)
             .where(events.c.position > done, events.c.name.in_(sorted(BUILD_COMMANDS)))
             .order_by(events.c.position).limit(QUEUE_LIMIT))
    with store.engine.connect() as conn:
        rows = conn.execute(query).all()
    return [{"position": p, "id": i, "model": BUILD_COMMANDS[n], "dataset": d, "requested_at": iso(r)}
            for p, i, n, d, r in rows]


def dead_letter_reasons(store: EventStore) -> list[dict[str, Any]]:
    """How many dead letters each reason (error code) has, most first, with the latest one's time."""
    query = (select(dead_letters.c.code, func.count(), func.max(dead_letters.c.received_at))
             .group_by(dead_letters.c.code))
    with store.engine.connect() as conn:
        rows = conn.execute(query).all()
    return sorted(({"code": c, "count": n, "latest": iso(t)} for c, n, t in rows), key=lambda r: (-r["count"], r["code"]))


def dead_letter_page(store: EventStore, after: int, limit: int, code: str | None) -> dict[str, Any]:
    """A page of dead letters after id `after`, optionally of one reason; `next` as in /api/errors."""
    query = select(dead_letters).where(dead_letters.c.id > after)
    count = select(func.count()).select_from(dead_letters)
    if code is not None:
        query = query.where(dead_letters.c.code == code)
        count = count.where(dead_letters.c.code == code)
    with store.engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(query.order_by(dead_letters.c.id).limit(limit))]
        total = conn.execute(count).scalar_one()
    return {"errors": [dead_letter_json(r) for r in rows], "next": rows[-1]["id"] if len(rows) == limit else None,
            "total": total}


def recent_failures(engine: Engine, limit: int = 5) -> dict[str, Any]:
    """How many log events the handlers moved past without applying, and the latest few."""
    return {"count": failures.count(engine),
            "recent": [{k: iso(v) for k, v in f.items()} for f in failures.recent(engine, limit)]}


def model_histories(engine: Engine, model: str | None = None, dataset: str | None = None) -> list[dict[str, Any]]:
    """Per model and dataset: every version's main metric and time, and every promotion (the alias history)."""
    production = registry.aliases(engine)
    grouped: dict[tuple[str, str], dict[str, Any]] = {}
    for mv in registry.list_versions(engine, model, dataset):
        entry = grouped.setdefault((mv.model, mv.dataset), {
            "model": mv.model, "dataset": mv.dataset, "production": production.get((mv.model, mv.dataset)),
            "metric": "accuracy" if mv.model == "mlp" else "r2", "versions": [], "promotions": []})
        entry["versions"].append({"version": mv.version, "main_metric": mv.main_metric, "created_at": iso(mv.created_at),
                                  "n_events": mv.n_events, "build_position": mv.build_position})
    # Every promote command ever recorded; the history of one model is rarely long.
    for row in reversed(registry.promotion_history(engine, model, dataset, limit=10_000)):
        entry = grouped.get((row["model"], row["dataset"]))
        if entry is not None:
            entry["promotions"].append({k: iso(v) for k, v in row.items() if k not in ("model", "dataset")})
    return [grouped[key] for key in sorted(grouped)]
