"""What the dashboard reads of the store: handler lag, the build queue, dead letters by reason, model histories."""
from __future__ import annotations

from typing import Any

from modelbus.api.views import dead_letter_json, iso
from modelbus.db import failures, positions, registry
from modelbus.db.events import EventStore, utcnow
from modelbus.messages.types import BUILD_COMMANDS, MAIN_METRICS

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
    rows = store.read(after=done, limit=QUEUE_LIMIT, names=list(BUILD_COMMANDS))
    return [{"position": r.position, "id": r.event_id, "model": BUILD_COMMANDS[r.name], "dataset": r.dataset,
             "requested_at": iso(r.received_at)} for r in rows]


def dead_letter_reasons(store: EventStore) -> list[dict[str, Any]]:
    """How many dead letters each reason (error code) has, most first, with the latest one's time."""
    rows = store.dead_letter_reasons()
    return sorted(({"code": c, "count": n, "latest": iso(t)} for c, n, t in rows), key=lambda r: (-r["count"], r["code"]))


def dead_letter_page(store: EventStore, after: int, limit: int, code: str | None) -> dict[str, Any]:
    """A page of dead letters after id `after`, optionally of one reason; `next` as in /api/errors."""
    rows = store.dead_letters(after=after, limit=limit, code=code)
    total = store.dead_letter_count(code=code)
    return {"errors": [dead_letter_json(r) for r in rows], "next": rows[-1]["id"] if len(rows) == limit else None,
            "total": total}


def recent_failures(engine: Any, limit: int = 5) -> dict[str, Any]:
    """How many log events the handlers moved past without applying, and the latest few."""
    return {"count": failures.count(engine),
            "recent": [{k: iso(v) for k, v in f.items()} for f in failures.recent(engine, limit)]}


def model_histories(engine: Any, model: str | None = None, dataset: str | None = None) -> list[dict[str, Any]]:
    """Per model and dataset: every version's main metric and time, and every promotion (the alias history)."""
    production = registry.aliases(engine)
    grouped: dict[tuple[str, str], dict[str, Any]] = {}
    for mv in registry.list_versions(engine, model, dataset):
        entry = grouped.setdefault((mv.model, mv.dataset), {
            "model": mv.model, "dataset": mv.dataset, "production": production.get((mv.model, mv.dataset)),
            "metric": MAIN_METRICS[mv.model], "versions": [], "promotions": []})
        entry["versions"].append({"version": mv.version, "main_metric": mv.main_metric, "created_at": iso(mv.created_at),
                                  "n_events": mv.n_events, "build_position": mv.build_position})
    # Every promote command ever recorded; the history of one model is rarely long.
    for row in reversed(registry.promotion_history(engine, model, dataset, limit=10_000)):
        entry = grouped.get((row["model"], row["dataset"]))
        if entry is not None:
            entry["promotions"].append({k: iso(v) for k, v in row.items() if k not in ("model", "dataset")})
    return [grouped[key] for key in sorted(grouped)]
