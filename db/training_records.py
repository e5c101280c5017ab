"""The training_records projection's table: one row per valid training event."""
from __future__ import annotations

from typing import Any, Sequence

from sqlalchemy import Connection, delete, insert

from modelbus.db.schema import training_records


def insert_records(conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
    """Add rows (position, dataset, features as JSON text, label) in the caller's transaction."""
    if rows:
        conn.execute(insert(training_records), list(rows))


def reset(conn: Connection) -> None:
    """Empty the projection, in the caller's transaction."""
    conn.execute(delete(training_records))
