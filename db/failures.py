"""Handler failures: log events a handler could not apply and moved past, with the reason."""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, Engine, delete, func, insert, select

from modelbus.db.errors import StorageError
from modelbus.db.events import EventRow, utcnow
from modelbus.db.schema import handler_failures

# A MySQL TEXT holds 64 KiB; a reason longer than this says nothing more useful.
MESSAGE_LIMIT = 2000


@dataclass(frozen=True)
class Failure:
    """Why an exception happened, as the table stores it: error class, driver code, message."""

    error: str
    code: str | None
    message: str

    def __str__(self) -> str:
        code = f" {self.code}" if self.code else ""
        return f"{self.error}{code}: {self.message}"


def describe(exc: BaseException) -> Failure:
    """The error class, code and message of an exception, without SQL statements or parameters.

    A database's error is named by its driver's class and code (DataError 1264, IntegrityError
    SQLITE_CONSTRAINT_UNIQUE), as db.errors keeps them.
    """
    if isinstance(exc, StorageError):
        return Failure(exc.error, exc.code, _clip(exc.reason))
    code = getattr(exc, "code", None)  # a parser's Rejected has a stable code
    return Failure(type(exc).__name__, code if isinstance(code, str) else None, _clip(str(exc)))


def _clip(text: str) -> str:
    return text if len(text) <= MESSAGE_LIMIT else text[: MESSAGE_LIMIT - 3] + "..."


def record(conn: Connection, handler: str, event: EventRow, failure: Failure) -> None:
    """Store one failure inside the transaction that moves the handler past the event."""
    conn.execute(
        insert(handler_failures).values(
            handler=handler,
            position=event.position,
            event_id=event.event_id,
            error=failure.error[:64],
            code=failure.code[:32] if failure.code else None,
            message=failure.message,
            failed_at=utcnow(),
        )
    )


def reset(conn: Connection, handler: str) -> None:
    """Forget a handler's failures (a replay records them again)."""
    conn.execute(delete(handler_failures).where(handler_failures.c.handler == handler))


def count(engine: Engine) -> int:
    """How many failures are recorded, for every handler."""
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(handler_failures)).scalar_one()


def recent(engine: Engine, limit: int = 5, handler: str | None = None) -> list[dict]:
    """The latest failures, newest log position first."""
    query = select(handler_failures)
    if handler is not None:
        query = query.where(handler_failures.c.handler == handler)
    query = query.order_by(handler_failures.c.position.desc(), handler_failures.c.handler).limit(limit)
    with engine.connect() as conn:
        return [dict(row._mapping) for row in conn.execute(query)]


class SqlFailures:
    """The handler failures of one database (db.contracts.HandlerFailures): this module bound to an engine."""

    def __init__(self, engine: Engine):
        self.engine = engine

    def record(self, tx: Connection, handler: str, event: EventRow, failure: Failure) -> None:
        """Store one failure inside `tx`, the transaction that moves the handler past the event."""
        record(tx, handler, event, failure)

    def reset(self, tx: Connection, handler: str) -> None:
        """Forget a handler's failures inside `tx`."""
        reset(tx, handler)

    def count(self) -> int:
        """How many failures are recorded, for every handler."""
        return count(self.engine)

    def recent(self, limit: int = 5, handler: str | None = None) -> list[dict]:
        """The latest failures, newest log position first."""
        return recent(self.engine, limit, handler)
