"""The predictions table: every answered prediction, written in batches, kept for a retention period."""
from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Sequence

from sqlalchemy import Connection, Engine, delete, func, select

from modelbus.db.dialect import insert_ignore
from modelbus.db.schema import predictions

_COLUMNS = (predictions.c.id, predictions.c.model, predictions.c.dataset, predictions.c.version,
            predictions.c.features, predictions.c.result, predictions.c.probabilities, predictions.c.created_at)


def insert(conn: Connection, rows: Sequence[dict[str, Any]]) -> int:
    """Store answered predictions (first answer per id wins: a re-delivered request is not counted twice)."""
    return insert_ignore(conn, predictions, list(rows))


def _row(row: Any) -> dict[str, Any]:
    m = dict(row._mapping)
    m["features"] = json.loads(m["features"])
    m["result"] = json.loads(m["result"])
    m["probabilities"] = json.loads(m["probabilities"]) if m["probabilities"] else None
    return m


def by_ids(conn: Connection, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The recorded predictions among `ids`, by id."""
    found: dict[str, dict[str, Any]] = {}
    unique = sorted(set(ids))
    for start in range(0, len(unique), 500):
        chunk = unique[start:start + 500]
        for row in conn.execute(select(*_COLUMNS).where(predictions.c.id.in_(chunk))):
            found[row.id] = _row(row)
    return found


def recent_features(engine: Engine, model: str, dataset: str, version: int, limit: int) -> list[Any]:
    """The inputs of a version's last `limit` recorded predictions, newest first."""
    query = (select(predictions.c.features)
             .where(predictions.c.model == model, predictions.c.dataset == dataset, predictions.c.version == version)
             .order_by(predictions.c.seq.desc()).limit(limit))
    with engine.connect() as conn:
        return [json.loads(features) for (features,) in conn.execute(query)]


def count(engine: Engine, model: str, dataset: str, version: int) -> int:
    """How many predictions of a version are recorded (within the retention period)."""
    query = select(func.count()).select_from(predictions).where(
        predictions.c.model == model, predictions.c.dataset == dataset, predictions.c.version == version)
    with engine.connect() as conn:
        return int(conn.execute(query).scalar_one())


def listed(engine: Engine, *, model: str | None = None, dataset: str | None = None, limit: int = 100,
           before: int | None = None) -> list[dict[str, Any]]:
    """Recorded predictions, newest first, paged by `before` (a seq)."""
    query = select(predictions.c.seq, *_COLUMNS).order_by(predictions.c.seq.desc()).limit(limit)
    if model:
        query = query.where(predictions.c.model == model)
    if dataset:
        query = query.where(predictions.c.dataset == dataset)
    if before is not None:
        query = query.where(predictions.c.seq < before)
    with engine.connect() as conn:
        return [_row(row) for row in conn.execute(query)]


def purge(engine: Engine, before: datetime, batch: int = 10_000) -> int:
    """Delete predictions older than `before`, a batch per transaction; how many were deleted."""
    total = 0
    while True:
        with engine.begin() as conn:
            oldest = select(predictions.c.seq).where(predictions.c.created_at < before).order_by(
                predictions.c.seq).limit(batch)
            seqs = [seq for (seq,) in conn.execute(oldest)]
            if not seqs:
                return total
            conn.execute(delete(predictions).where(predictions.c.seq.in_(seqs)))
            total += len(seqs)


def reset(conn: Connection) -> None:
    """Forget every recorded prediction (tests)."""
    conn.execute(delete(predictions))
