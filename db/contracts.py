"""The storage contracts: what the rest of modelbus relies on, whichever database keeps the data.

The SQL implementations satisfy them on SQLite and MySQL: db.events.EventStore (a Store),
db.positions.SqlPositions, db.failures.SqlFailures and db.registry.SqlRegistry. The suites
tests/test_event_store.py, test_positions.py, test_failures.py and test_registry.py are what
any backend must pass. Every method raises db.errors' exceptions for a database failure, never
a driver's.

Transactions. A handler's effects and its position commit together: the follower opens a
unit of work with Store.transaction() and hands its Transaction to the handler and to the
writes that belong to it (HandlerPositions.advance and reset, HandlerFailures.record and
reset, the Registry's writes, EventLog.append_in). On the SQL store a Transaction is the
SQLAlchemy Connection of the transaction, through which a handler with tables of its own
(handlers.log.training) writes them too; nothing else looks inside it.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any, ContextManager, Protocol, Sequence, runtime_checkable

from modelbus.db.events import EventRow, Incoming, Outcome
from modelbus.db.failures import Failure
from modelbus.db.positions import HandlerState
from modelbus.db.registry import ModelVersion


@runtime_checkable
class Transaction(Protocol):
    """An open unit of work of a Store: what is written through it commits together, or nothing."""


@runtime_checkable
class EventLog(Protocol):
    """The log: appended in one total order (positions 1, 2, 3, ... without gaps), read by position."""

    def append(self, items: Sequence[Incoming]) -> list[Outcome]:
        """Store a batch atomically: new events get consecutive positions, re-deliveries and repeated ids
        are duplicates, rejects become dead letters (stored once per Kafka coordinate)."""

    def append_in(self, tx: Transaction, items: Sequence[Incoming]) -> list[Outcome]:
        """As append, inside the caller's transaction (a handler appending an event as its effect)."""

    def head(self) -> int:
        """The last position (0 when the log is empty)."""

    def read(self, after: int = 0, limit: int = 1000, *, until: int | None = None, type: str | None = None,
             name: str | None = None, names: Sequence[str] | None = None,
             dataset: str | None = None, lean: bool = False) -> list[EventRow]:
        """Events with position > after (and <= until), matching the filters, in position order
        (`lean`: without source and received_at, "" and None)."""

    def count(self, **filters: str) -> int:
        """How many events match the column filters (type, name, dataset, event_id, source)."""

    def position_of(self, event_id: str) -> int | None:
        """The position of the event with this id, or None."""

    def expected_values(self, dataset: str) -> int | None:
        """How many values a training record of `dataset` must carry, if known yet."""

    def dead_letters(self, after: int = 0, limit: int = 100, code: str | None = None) -> list[dict]:
        """Dead letters with id > after (of one reason when given), oldest first (code, reason, raw, source
        columns, received_at)."""

    def dead_letter_count(self, code: str | None = None) -> int:
        """How many dead letters are stored (of one reason when given)."""

    def dead_letter_reasons(self) -> list[tuple[str, int, datetime]]:
        """(reason code, count, latest time) of every reason stored."""

    @property
    def generation(self) -> int:
        """A counter of this process's appends, for wait_for_append."""

    def wait_for_append(self, generation: int, timeout: float) -> int:
        """Block until an append of this process after `generation`, or the timeout; the new generation."""


@runtime_checkable
class HandlerPositions(Protocol):
    """How far each handler has applied the log, and which process holds its lease."""

    def ensure(self, name: str) -> None:
        """Create the handler's row at position 0 if it does not exist (safe to race)."""

    def claim(self, name: str, owner: str, seconds: float) -> int | None:
        """Take or renew the lease for `seconds`; the handler's position, or None while another owner holds it."""

    def release(self, name: str, owner: str) -> None:
        """Give the lease up (a no-op unless `owner` holds it)."""

    def advance(self, tx: Transaction, name: str, owner: str, old: int, new: int) -> None:
        """Move the position from `old` to `new` inside `tx`; db.positions.LostLease if either changed under us."""

    def reset(self, tx: Transaction, name: str, owner: str) -> None:
        """Set the position back to 0 inside `tx` (a replay); LostLease unless `owner` holds the lease."""

    def states(self) -> list[HandlerState]:
        """Every handler's row, by name."""


@runtime_checkable
class HandlerFailures(Protocol):
    """Log events a handler could not apply and moved past, keyed by handler and position."""

    def record(self, tx: Transaction, handler: str, event: EventRow, failure: Failure) -> None:
        """Store one failure inside `tx`, the transaction that moves the handler past the event."""

    def reset(self, tx: Transaction, handler: str) -> None:
        """Forget a handler's failures inside `tx` (a replay records them again)."""

    def count(self) -> int:
        """How many failures are recorded, for every handler."""

    def recent(self, limit: int = 5, handler: str | None = None) -> list[dict]:
        """The latest failures, newest position first (handler, position, event_id, error, code, message, failed_at)."""


@runtime_checkable
class Registry(Protocol):
    """Model versions with artifacts and lineage, build attempts, promotions and production aliases.

    Reads stand alone; writes belong to the build handler's transaction `tx`.
    """

    def get_version(self, model: str, dataset: str, version: int) -> ModelVersion | None:
        """One version with its artifact, or None."""

    def production(self, model: str, dataset: str) -> ModelVersion | None:
        """The version behind the production alias of (model, dataset), with its artifact, or None."""

    def list_versions(self, model: str | None = None, dataset: str | None = None) -> list[ModelVersion]:
        """Every version without its artifact, by model, dataset and version."""

    def aliases(self) -> dict[tuple[str, str], int]:
        """(model, dataset) -> the production version."""

    def alias_generation(self) -> int:
        """A number that changes whenever any alias moves (0 for none)."""

    def builds(self, model: str | None = None, dataset: str | None = None, limit: int = 50) -> list[dict]:
        """Build attempts, newest log position first."""

    def get_build(self, *, event_id: str | None = None, position: int | None = None) -> dict | None:
        """The build attempt of one command, or None while it is pending."""

    def promotion_history(self, model: str | None = None, dataset: str | None = None, limit: int = 50) -> list[dict]:
        """Promote commands and what came of them (moved, kept, failed), newest first."""

    def next_version(self, tx: Transaction, model: str, dataset: str) -> int:
        """The number the next version of (model, dataset) gets."""

    def insert_version(self, tx: Transaction, mv: ModelVersion) -> None:
        """Store a new version with its artifact."""

    def insert_seed_rows(self, tx: Transaction, mv: ModelVersion) -> None:
        """The seed system's rows of a version (training_log; linear_model for slr)."""

    def insert_build(self, tx: Transaction, **row: Any) -> None:
        """Record one build attempt (position, event_id, model, dataset, status, reason, version, params, ...)."""

    def version_main_metric(self, tx: Transaction, model: str, dataset: str, version: int) -> tuple[str, float] | None:
        """(uuid, main metric) of a version, or None when it does not exist."""

    def current_production(self, tx: Transaction, model: str, dataset: str) -> tuple[int, float] | None:
        """(version, main metric) behind the production alias, or None."""

    def move_alias(self, tx: Transaction, model: str, dataset: str, version: int, position: int) -> None:
        """Point the production alias at `version`, recording the promote event's position."""

    def insert_promotion(self, tx: Transaction, **row: Any) -> None:
        """Record what came of one promote command."""

    def reset(self, tx: Transaction) -> None:
        """Empty the registry (a replay of the build handler rebuilds it)."""


@runtime_checkable
class Store(EventLog, Protocol):
    """One database: the log, with the handler positions, failures and registry kept beside it,
    and the transactions they share."""

    @property
    def positions(self) -> HandlerPositions:
        """The handlers' positions and leases."""

    @property
    def failures(self) -> HandlerFailures:
        """The handlers' failures."""

    @property
    def registry(self) -> Registry:
        """The model registry."""

    def transaction(self) -> ContextManager[Transaction]:
        """Open a unit of work; it commits when the block ends, or rolls back when the block raises."""

    def reachable(self) -> bool:
        """True when the database answers now (a failure elsewhere was then the data's, not an outage)."""
