"""The training_records projection's table: one row per valid training event."""
from __future__ import annotations

from typing import Any, Sequence

from sqlalchemy import Connection, delete

from modelbus.db.dialect import insert_rows
from modelbus.db.schema import training_records


def insert_records(conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
    """Add rows (position, dataset, features as JSON text, label) in the caller's transaction."""
    if rows:
        # Multi-row INSERTs rendered once (db.dialect.insert_rows): a replay writes every row again.
        columns = list(rows[0])
        insert_rows(conn, training_records, columns, [tuple(row[c] for c in columns) for row in rows])


def reset(conn: Connection) -> None:
    """Empty the projection, in the caller's transaction."""
    conn.execute(delete(training_records))
