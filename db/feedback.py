"""The feedback table: each feedback event's join with its prediction, and live metrics read from it."""
from __future__ import annotations

import json
from typing import Any, Sequence

from sqlalchemy import Connection, Engine, and_, case, delete, func, select, update

from modelbus.db.schema import feedback

JOINED, PENDING, UNMATCHED, DUPLICATE, INVALID = "joined", "pending", "unmatched", "duplicate", "invalid"
STATUSES = (JOINED, PENDING, UNMATCHED, DUPLICATE, INVALID)


def insert(conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
    """Add feedback rows (label as JSON text) in the caller's transaction."""
    if rows:
        conn.execute(feedback.insert(), list(rows))


def settle(conn: Connection, position: int, **values: Any) -> bool:
    """Give a pending feedback its outcome; False when it is no longer pending."""
    result = conn.execute(update(feedback).where(feedback.c.position == position, feedback.c.status == PENDING)
                          .values(**values))
    return result.rowcount == 1


def joined_ids(conn: Connection, ids: Sequence[str]) -> set[str]:
    """The prediction ids among `ids` that a feedback already joined."""
    found: set[str] = set()
    unique = sorted(set(ids))
    for start in range(0, len(unique), 500):
        query = select(feedback.c.prediction_id).where(feedback.c.prediction_id.in_(unique[start:start + 500]),
                                                       feedback.c.status == JOINED)
        found.update(pid for (pid,) in conn.execute(query))
    return found


def pending(conn: Connection, limit: int = 1000) -> list[dict[str, Any]]:
    """The oldest feedback still waiting for its prediction."""
    query = (select(feedback).where(feedback.c.status == PENDING).order_by(feedback.c.position).limit(limit))
    return [_row(row) for row in conn.execute(query)]


def _row(row: Any) -> dict[str, Any]:
    m = dict(row._mapping)
    m["label"] = json.loads(m["label"])
    return m


def _stats(conn: Connection, where: Any, last: int | None) -> dict[str, Any]:
    source = feedback
    if last is not None:
        source = (select(feedback).where(where).order_by(feedback.c.position.desc()).limit(last)).subquery()
        where = None
    c = source.c
    query = select(func.count(), func.sum(case((c.correct.is_(True), 1), else_=0)), func.count(c.correct),
                   func.sum(func.abs(c.error)), func.sum(c.error * c.error), func.count(c.error))
    if where is not None:
        query = query.where(where)
    n, right, judged, abs_sum, sq_sum, errors = conn.execute(query.select_from(source)).one()
    out: dict[str, Any] = {"feedback_count": int(n or 0)}
    if judged:
        out["accuracy"] = float(right) / judged
    if errors:
        out["mae"] = float(abs_sum) / errors
        out["rmse"] = (float(sq_sum) / errors) ** 0.5
    return out


def live_stats(engine: Engine, model: str, dataset: str, version: int, last: int) -> dict[str, Any]:
    """Joined feedback of a version: count and accuracy (classifiers) or MAE/RMSE, whole life and last `last`."""
    where = and_(feedback.c.model == model, feedback.c.dataset == dataset, feedback.c.version == version,
                 feedback.c.status == JOINED)
    with engine.connect() as conn:
        life = _stats(conn, where, None)
        if life["feedback_count"]:
            recent = _stats(conn, where, last)
            life["last"] = {"n": recent.pop("feedback_count"), **recent}
    return life


def versions_with_feedback(engine: Engine) -> list[tuple[str, str, int]]:
    """Every (model, dataset, version) some feedback joined."""
    query = (select(feedback.c.model, feedback.c.dataset, feedback.c.version).where(feedback.c.status == JOINED)
             .group_by(feedback.c.model, feedback.c.dataset, feedback.c.version))
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(query)]


def status_counts(engine: Engine) -> dict[str, int]:
    """How many feedback events ended in each status."""
    query = select(feedback.c.status, func.count()).group_by(feedback.c.status)
    with engine.connect() as conn:
        return {status: int(n) for status, n in conn.execute(query)}


def listed(engine: Engine, *, status: str | None = None, after: int = 0, limit: int = 100) -> list[dict[str, Any]]:
    """Feedback rows in log order after a position, optionally of one status."""
    query = select(feedback).where(feedback.c.position > after).order_by(feedback.c.position).limit(limit)
    if status:
        query = query.where(feedback.c.status == status)
    with engine.connect() as conn:
        return [_row(row) for row in conn.execute(query)]


def reset(conn: Connection) -> None:
    """Empty the projection, in the caller's transaction."""
    conn.execute(delete(feedback))
