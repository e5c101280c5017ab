"""Handler positions and leases: which handler has applied the log up to where, and who runs it."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, Engine, insert, or_, select, update

from modelbus.db.errors import ConstraintViolation
from modelbus.db.events import utcnow
from modelbus.db.schema import handler_positions


class LostLease(RuntimeError):
    """Another process took over the handler, or its position was reset under us."""


@dataclass(frozen=True)
class HandlerState:
    """A handler's row: its position and the process holding its lease."""

    name: str
    position: int
    owner: str | None
    lease_expires: datetime | None
    updated_at: datetime


def ensure(engine: Engine, name: str) -> None:
    """Create the handler's row at position 0 if it does not exist."""
    with engine.connect() as conn:
        if conn.execute(select(handler_positions.c.name).where(handler_positions.c.name == name)).first():
            return
    # The insert is the transaction's first statement, so on SQLite it waits for the
    # write lock (busy_timeout) instead of failing to upgrade a read snapshot.
    try:
        with engine.begin() as conn:
            conn.execute(insert(handler_positions).values(name=name, position=0, updated_at=utcnow()))
    except ConstraintViolation:
        pass  # another process created it first


def claim(engine: Engine, name: str, owner: str, seconds: float) -> int | None:
    """Take or renew the lease; returns the handler's position, or None if another owner holds it."""
    now = utcnow()
    with engine.begin() as conn:
        result = conn.execute(
            update(handler_positions)
            .where(
                handler_positions.c.name == name,
                or_(
                    handler_positions.c.owner == owner,
                    handler_positions.c.owner.is_(None),
                    handler_positions.c.lease_expires < now,
                ),
            )
            .values(owner=owner, lease_expires=now + timedelta(seconds=seconds))
        )
        if result.rowcount != 1:
            return None
        return conn.execute(select(handler_positions.c.position).where(handler_positions.c.name == name)).scalar_one()


def release(engine: Engine, name: str, owner: str) -> None:
    """Give the lease up so another process can take over at once."""
    with engine.begin() as conn:
        conn.execute(
            update(handler_positions)
            .where(handler_positions.c.name == name, handler_positions.c.owner == owner)
            .values(owner=None, lease_expires=None)
        )


def advance(conn: Connection, name: str, owner: str, old: int, new: int) -> None:
    """Move the position from `old` to `new` inside the caller's transaction, or raise LostLease."""
    result = conn.execute(
        update(handler_positions)
        .where(
            handler_positions.c.name == name,
            handler_positions.c.owner == owner,
            handler_positions.c.position == old,
        )
        .values(position=new, updated_at=utcnow())
    )
    if result.rowcount != 1:
        raise LostLease(f"handler {name}: lease or position {old} changed under {owner}")


def reset(conn: Connection, name: str, owner: str) -> None:
    """Set the position back to 0 (for replay), inside the caller's transaction."""
    result = conn.execute(
        update(handler_positions)
        .where(handler_positions.c.name == name, handler_positions.c.owner == owner)
        .values(position=0, updated_at=utcnow())
    )
    if result.rowcount != 1:
        raise LostLease(f"handler {name}: lease not held by {owner}")


def states(engine: Engine) -> list[HandlerState]:
    """Every handler's row."""
    with engine.connect() as conn:
        rows = conn.execute(select(handler_positions).order_by(handler_positions.c.name))
        return [HandlerState(**row._mapping) for row in rows]


class SqlPositions:
    """The handler positions of one database (db.contracts.HandlerPositions): this module bound to an engine."""

    def __init__(self, engine: Engine):
        self.engine = engine

    def ensure(self, name: str) -> None:
        """Create the handler's row at position 0 if it does not exist."""
        ensure(self.engine, name)

    def claim(self, name: str, owner: str, seconds: float) -> int | None:
        """Take or renew the lease; the handler's position, or None while another owner holds it."""
        return claim(self.engine, name, owner, seconds)

    def release(self, name: str, owner: str) -> None:
        """Give the lease up (a no-op unless `owner` holds it)."""
        release(self.engine, name, owner)

    def advance(self, tx: Connection, name: str, owner: str, old: int, new: int) -> None:
        """Move the position from `old` to `new` inside `tx`, or raise LostLease."""
        advance(tx, name, owner, old, new)

    def reset(self, tx: Connection, name: str, owner: str) -> None:
        """Set the position back to 0 inside `tx`, or raise LostLease."""
        reset(tx, name, owner)

    def states(self) -> list[HandlerState]:
        """Every handler's row, by name."""
        return states(self.engine)
