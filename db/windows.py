"""The window projection's tables: each shard's watermarks and counters, open windows per key, closed rows."""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Sequence

from sqlalchemy import Connection, Engine, delete, insert, select, update

from modelbus.db.dialect import insert_plain, replace_many
from modelbus.db.events import utcnow
from modelbus.db.schema import window_open, window_rows, window_shards

_CHUNK = 500


@dataclass(frozen=True)
class ShardState:
    """What a window handler stored: its token, the streams' largest ts, (late, closed) per window, open windows."""

    token: int | None
    max_ts: dict[str, int]
    counters: dict[str, tuple[int, int]]
    open_rows: list[tuple[str, str]]


def token(conn: Connection, handler: str) -> int | None:
    """The token of the handler's last committed batch (None before its first)."""
    return conn.execute(select(window_shards.c.token).where(window_shards.c.handler == handler)).scalar_one_or_none()


def load(conn: Connection, handler: str) -> ShardState:
    """Everything a window handler needs to resume where its last committed batch left off."""
    row = conn.execute(select(window_shards).where(window_shards.c.handler == handler)).first()
    open_rows = [(k, s) for k, s in conn.execute(
        select(window_open.c.key, window_open.c.state).where(window_open.c.handler == handler))]
    if row is None:
        return ShardState(None, {}, {}, open_rows)
    counters = {name: (late, closed) for name, (late, closed) in json.loads(row.counters).items()}
    return ShardState(row.token, json.loads(row.watermarks), counters, open_rows)


def save(conn: Connection, handler: str, new_token: int, max_ts: dict[str, int],
         counters: dict[str, tuple[int, int]], deletes: Sequence[str], writes: Sequence[tuple[str, str]]) -> None:
    """Write one batch's state (its closed rows go in with insert_closed): keys without open windows
    deleted, the others' open windows replaced, watermarks and counters (and the new token) stored."""
    deletes = list(deletes)
    for start in range(0, len(deletes), _CHUNK):
        conn.execute(delete(window_open).where(window_open.c.handler == handler,
                                               window_open.c.key.in_(deletes[start:start + _CHUNK])))
    rows = [{"handler": handler, "key": key, "state": state} for key, state in writes]
    for start in range(0, len(rows), 5000):
        replace_many(conn, window_open, rows[start:start + 5000])
    values = {"token": new_token, "watermarks": json.dumps(max_ts, sort_keys=True),
              "counters": json.dumps({k: list(v) for k, v in counters.items()}, sort_keys=True),
              "updated_at": utcnow()}
    if conn.execute(update(window_shards).where(window_shards.c.handler == handler).values(**values)).rowcount == 0:
        conn.execute(insert(window_shards).values(handler=handler, **values))


def insert_closed(conn: Connection, closed: Sequence[tuple[str, int, str, int, str, str]]) -> None:
    """Add closed rows: (window, end_ms, key, start_ms, handler, aggregates JSON)."""
    insert_plain(conn, window_rows, ["window", "end_ms", "key", "start_ms", "handler", "aggregates"], list(closed))


def reset(conn: Connection, handler: str) -> None:
    """Drop what one window handler built (a replay rebuilds it)."""
    for table in (window_open, window_rows, window_shards):
        conn.execute(delete(table).where(table.c.handler == handler))


def rows(engine: Engine, window: str, *, key: str | None = None, after: tuple[int, str, int] | None = None,
         limit: int = 100) -> list[dict[str, Any]]:
    """Closed rows of a window ordered by end, key and start, after the cursor (end_ms, key, start_ms)."""
    c = window_rows.c
    query = select(c.key, c.start_ms, c.end_ms, c.aggregates).where(c.window == window)
    if key is not None:
        query = query.where(c.key == key)
    if after is not None:
        end, after_key, start = after
        query = query.where((c.end_ms > end) | ((c.end_ms == end) & ((c.key > after_key) | (
            (c.key == after_key) & (c.start_ms > start)))))
    query = query.order_by(c.end_ms, c.key, c.start_ms).limit(limit)
    with engine.connect() as conn:
        return [{"key": k, "start_ms": s, "end_ms": e, "values": json.loads(a)} for k, s, e, a in conn.execute(query)]


@dataclass(frozen=True)
class WindowStatus:
    """A window summed over its shards: closed rows, late events, its stream's largest ts."""

    closed: int
    late: int
    max_ts: int | None


def status(engine: Engine, window: str, stream: str) -> WindowStatus:
    """The status of one declared window, over every shard."""
    with engine.connect() as conn:
        closed = late = 0
        max_ts = None
        for watermarks, counters in conn.execute(select(window_shards.c.watermarks, window_shards.c.counters)):
            late_closed = json.loads(counters).get(window)
            if late_closed:
                late += late_closed[0]
                closed += late_closed[1]
            seen = json.loads(watermarks).get(stream)
            if seen is not None and (max_ts is None or seen > max_ts):
                max_ts = seen
    return WindowStatus(closed, late, max_ts)


def late_counts(engine: Engine) -> dict[str, int]:
    """Late events per window, over every shard (for /metrics)."""
    totals: dict[str, int] = {}
    with engine.connect() as conn:
        for (counters,) in conn.execute(select(window_shards.c.counters)):
            for window, (late, _closed) in json.loads(counters).items():
                totals[window] = totals.get(window, 0) + late
    return totals
