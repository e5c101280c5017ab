"""The alerts table: one row per firing of a rule, unique per rule and subject."""
from __future__ import annotations

from typing import Any, Sequence

from sqlalchemy import Connection, Engine, delete, func, select

from modelbus.db.dialect import insert_ignore
from modelbus.db.schema import alerts


def fire(conn: Connection, rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Store firings; those whose (rule, subject) fired before are skipped. The new ones are returned."""
    return [row for row in rows if insert_ignore(conn, alerts, [row]) == 1]


def listed(engine: Engine, *, rule: str | None = None, model: str | None = None, before: int | None = None,
           limit: int = 100) -> list[dict[str, Any]]:
    """Alerts, newest first, paged by `before` (an alert id)."""
    query = select(alerts).order_by(alerts.c.id.desc()).limit(limit)
    if rule:
        query = query.where(alerts.c.rule == rule)
    if model:
        query = query.where(alerts.c.model == model)
    if before is not None:
        query = query.where(alerts.c.id < before)
    with engine.connect() as conn:
        return [dict(row._mapping) for row in conn.execute(query)]


def counts(engine: Engine) -> dict[str, int]:
    """Firings per rule."""
    with engine.connect() as conn:
        return {rule: int(n) for rule, n in conn.execute(select(alerts.c.rule, func.count()).group_by(alerts.c.rule))}


def reset(conn: Connection) -> None:
    """Forget every alert (tests)."""
    conn.execute(delete(alerts))
