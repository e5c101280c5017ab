"""The interface every log handler implements."""
from __future__ import annotations

import threading
from typing import Any, Sequence

from modelbus.db.contracts import Transaction
from modelbus.db.events import EventRow


class Handler:
    """Applies events in log order; its effects and its position commit together."""

    #: Unique name; the key of its row in handler_positions.
    name: str = ""
    #: Only events of this type are read ("training", "command"), or all when None.
    event_type: str | None = None
    #: How many events one transaction applies at most.
    batch_size: int = 1000
    #: Whether `modelbus replay` resets and re-runs it by default.
    replayable: bool = True
    #: Whether it reads each event's source and received_at; without, the log is read lean (faster).
    reads_receipt: bool = True

    def take(self, events: Sequence[EventRow]) -> Sequence[EventRow]:
        """The leading part of `events` to apply in one transaction (default: all)."""
        return events

    def prepare(self, events: Sequence[EventRow], stop: threading.Event | None = None) -> Any:
        """Slow, read-only work done outside the transaction (a build trains here).

        Work that can take long raises builders.base.Cancelled once `stop` is set: the process
        is stopping, nothing of the batch commits and the next owner of the lease redoes it.
        """
        return None

    def apply(self, conn: Transaction, events: Sequence[EventRow], prepared: Any) -> None:
        """Write the effects of `events` inside the transaction that also moves the position.

        `conn` is the follower's open transaction (db.contracts.Transaction): on the SQL store a
        SQLAlchemy Connection, through which a handler with tables of its own writes them.
        """
        raise NotImplementedError

    def record_failure(self, conn: Transaction, event: EventRow, prepared: Any, reason: str) -> None:
        """Record, in this handler's own tables, what became of an event it cannot apply (default: nothing).

        Called inside the transaction that moves the position past the event and writes its
        handler_failures row; if it raises, the event is recorded in handler_failures only.
        """

    def reset(self, conn: Transaction) -> None:
        """Drop what this handler built, so a replay starts from an empty projection."""
        raise NotImplementedError

    def after_commit(self, events: Sequence[EventRow], prepared: Any) -> None:
        """Notify the outside world (model update notices) once the effects are committed."""
