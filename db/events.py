"""The event store: appends in serialised position order, dead letters, reads of the log."""
from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import cached_property
from typing import TYPE_CHECKING, Iterable, Iterator, Mapping, Sequence

from sqlalchemy import Connection, Engine, func, insert, select, update

from modelbus.db.dialect import insert_rows, lock_log_head
from modelbus.db.engine import reachable
from modelbus.db.errors import Conflict, ConstraintViolation, LostConnection
from modelbus.db.schema import datasets, dead_letters, events, log_head
from modelbus.messages.errors import Rejected
from modelbus.messages.jsonutil import canonical_json
from modelbus.messages.datasets import InputSchema
from modelbus.messages.parse import check_record
from modelbus.messages.types import Event, Training

if TYPE_CHECKING:
    from modelbus.db.failures import SqlFailures
    from modelbus.db.positions import SqlPositions
    from modelbus.db.registry import SqlRegistry

log = logging.getLogger(__name__)

ACCEPTED, DUPLICATE, REJECTED = "accepted", "duplicate", "rejected"
_CHUNK = 500


def utcnow() -> datetime:
    """The current UTC time as the naive datetime the store keeps."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


SOURCE_COLUMNS = ("source", "source_topic", "source_topic_id", "source_partition", "source_offset")
# The columns of an appended event, in the order append_batch builds its rows.
_INSERT_COLUMNS = ("position", "event_id", "type", "name", "dataset", "payload", "received_at", *SOURCE_COLUMNS)


@dataclass(frozen=True)
class Source:
    """Where a message came from: a Kafka coordinate, or an entry point (http, cli, cron, system)."""

    kind: str
    topic: str | None = None
    topic_id: str | None = None
    partition: int | None = None
    offset: int | None = None

    @property
    def coordinate(self) -> tuple[str, str, int, int] | None:
        """The unique (topic, topic id, partition, offset) of a Kafka message."""
        if self.topic is None or self.partition is None or self.offset is None:
            return None
        return (self.topic, self.topic_id or "", self.partition, self.offset)

    def columns(self) -> dict[str, object]:
        """The source columns of an events or dead_letters row."""
        return dict(zip(SOURCE_COLUMNS, self.column_values()))

    def column_values(self) -> tuple:
        """The source columns' values, in SOURCE_COLUMNS order."""
        coord = self.coordinate
        if coord is None:
            return (self.kind, None, None, None, None)
        return (self.kind, *coord)

    def describe(self) -> dict[str, object]:
        """The source as shown on error_topic and in the API."""
        if self.coordinate is None:
            return {"kind": self.kind}
        return {"kind": self.kind, "topic": self.topic, "partition": self.partition, "offset": self.offset}


@dataclass
class Incoming:
    """One message offered to the log: parsed into an event, or rejected with a reason."""

    raw: bytes
    source: Source
    event: Event | None = None
    error: Rejected | None = None
    event_id: str | None = None


@dataclass
class Outcome:
    """What became of one Incoming: accepted at a position, a duplicate, or a dead letter."""

    status: str
    event_id: str | None = None
    position: int | None = None
    error: Rejected | None = None
    # False when a re-delivered rejected message's dead letter was stored before.
    new: bool = True


@dataclass(frozen=True)
class EventRow:
    """One row of the log."""

    position: int
    event_id: str
    type: str
    name: str
    dataset: str
    payload: str
    source: str
    # None when read lean (EventStore.read(lean=True)): a handler that does not need when it was received.
    received_at: datetime | None


def event_json(row: EventRow) -> dict:
    """A log row as the API and `modelbus events --json` show it, the event parsed."""
    return {
        "position": row.position,
        "id": row.event_id,
        "type": row.type,
        "name": row.name,
        "dataset": row.dataset,
        "source": row.source,
        "received_at": row.received_at.isoformat(),
        "event": json.loads(row.payload),
    }


@dataclass
class Schemas:
    """Value counts (features plus label) per dataset: declared in settings, else learned from the log;
    and the typed fields of the datasets that declare them."""

    declared: Mapping[str, int] = field(default_factory=dict)
    auto: bool = True
    typed: Mapping[str, InputSchema] = field(default_factory=dict)


_EVENT_COLUMNS = (
    events.c.position,
    events.c.event_id,
    events.c.type,
    events.c.name,
    events.c.dataset,
    events.c.payload,
    events.c.source,
    events.c.received_at,
)


def _chunks(items: Sequence, size: int = _CHUNK) -> Iterable[Sequence]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _existing_coordinates(conn: Connection, table, coords: list[tuple]) -> dict[tuple, int | None]:
    """Coordinates of `coords` already stored in `table`, mapped to their log position."""
    found: dict[tuple, int | None] = {}
    by_partition: dict[tuple, list[int]] = defaultdict(list)
    for topic, topic_id, partition, offset in coords:
        by_partition[(topic, topic_id, partition)].append(offset)
    key_col = table.c.position if table is events else table.c.id
    for (topic, topic_id, partition), offsets in by_partition.items():
        rows = conn.execute(
            select(table.c.source_offset, key_col).where(
                table.c.source_topic == topic,
                table.c.source_topic_id == topic_id,
                table.c.source_partition == partition,
                table.c.source_offset.between(min(offsets), max(offsets)),
            )
        )
        for offset, key in rows:
            found[(topic, topic_id, partition, offset)] = key if table is events else None
    return found


def _existing_ids(conn: Connection, ids: list[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    for chunk in _chunks(sorted(set(ids))):
        found.update(conn.execute(select(events.c.event_id, events.c.position).where(events.c.event_id.in_(chunk))).all())
    return found


def _dataset_values(conn: Connection, names: set[str]) -> dict[str, int]:
    if not names:
        return {}
    return dict(conn.execute(select(datasets.c.name, datasets.c.n_values).where(datasets.c.name.in_(sorted(names)))).all())


def append_batch(conn: Connection, items: Sequence[Incoming], schemas: Schemas) -> list[Outcome]:
    """Store a batch in one transaction: new events get consecutive positions, rejects become dead letters."""
    # Lock the log head first: appenders queue here, so positions are handed out in
    # commit order and every check below sees the commits of those before us.
    lock_log_head(conn, log_head)
    head = conn.execute(select(log_head.c.position).where(log_head.c.id == 1)).scalar_one()

    coords = [i.source.coordinate for i in items if i.source.coordinate is not None]
    stored_events = _existing_coordinates(conn, events, coords) if coords else {}
    stored_dead = _existing_coordinates(conn, dead_letters, coords) if coords else {}
    stored_ids = _existing_ids(conn, [i.event_id for i in items if i.event and i.event_id])
    training_sets = {i.event.dataset for i in items if isinstance(i.event, Training)}
    learned = _dataset_values(conn, training_sets - set(schemas.declared))

    now = utcnow()
    outcomes: list[Outcome] = []
    event_rows: list[tuple] = []
    dead_rows: list[dict] = []
    new_datasets: list[dict] = []
    for item in items:
        coord = item.source.coordinate
        if coord is not None and coord in stored_events:
            outcomes.append(Outcome(DUPLICATE, position=stored_events[coord]))
            continue
        error = item.error
        if error is None and item.event is not None and item.event_id in stored_ids:
            outcomes.append(Outcome(DUPLICATE, event_id=item.event_id, position=stored_ids[item.event_id]))
            continue
        if error is None and isinstance(item.event, Training):
            name = item.event.dataset
            expected = schemas.declared.get(name, learned.get(name))
            if expected is None and not schemas.auto:
                error = Rejected("unknown_dataset", f"dataset '{name}' is not declared and auto_datasets is off")
            else:
                try:
                    check_record(item.event, expected, schemas.typed.get(name))
                except Rejected as exc:
                    error = exc
        if error is not None:
            seen = coord is not None and coord in stored_dead
            if not seen:
                dead_rows.append(
                    {"code": error.code, "reason": error.message, "raw": item.raw, "received_at": now, **item.source.columns()}
                )
                if coord is not None:
                    stored_dead[coord] = None
            outcomes.append(Outcome(REJECTED, error=error, new=not seen))
            continue
        event = item.event
        assert event is not None
        head += 1
        event_id = item.event_id or uuid.uuid4().hex
        if isinstance(event, Training) and event.dataset not in schemas.declared and event.dataset not in learned:
            learned[event.dataset] = event.values
            new_datasets.append({"name": event.dataset, "n_values": event.values, "first_position": head, "created_at": now})
        event_rows.append(
            (head, event_id, event.type, event.name, event.dataset, canonical_json(event.body), now,
             *item.source.column_values())
        )
        stored_ids[event_id] = head
        if coord is not None:
            stored_events[coord] = head
        outcomes.append(Outcome(ACCEPTED, event_id=event_id, position=head))

    if new_datasets:
        conn.execute(insert(datasets), new_datasets)
    insert_rows(conn, events, _INSERT_COLUMNS, event_rows)
    if dead_rows:
        conn.execute(insert(dead_letters), dead_rows)
    if event_rows:
        conn.execute(update(log_head).where(log_head.c.id == 1).values(position=head))
    return outcomes


# What a retried append clears: another appender holding the log head or racing for a key
# (two workers during a rebalance; the retry re-reads what it committed), a dropped connection.
_RETRIED = (Conflict, ConstraintViolation, LostConnection)


class _Appends:
    """Local appends to one log, counted, so followers in the process wake at once."""

    def __init__(self) -> None:
        self.changed = threading.Condition()
        self.generation = 0


class EventStore:
    """The log in a database, shared by every entry point and follower in a process.

    The SQL implementation of db.contracts.Store: the event log, with the handler positions,
    handler failures and registry of the same database, and the transactions they share.
    """

    def __init__(self, engine: Engine, schemas: Schemas | None = None):
        self.engine = engine
        self.schemas = schemas or Schemas()
        self._appends = _Appends()

    def using(self, engine: Engine) -> EventStore:
        """The same log through another engine (the API's); its appends still wake this process's followers."""
        other = EventStore(engine, self.schemas)
        other._appends = self._appends
        return other

    # The parts kept beside the log are imported when first used: their modules import this one.
    @cached_property
    def positions(self) -> SqlPositions:
        """The handler positions and leases kept in this database."""
        from modelbus.db.positions import SqlPositions

        return SqlPositions(self.engine)

    @cached_property
    def failures(self) -> SqlFailures:
        """The handler failures kept in this database."""
        from modelbus.db.failures import SqlFailures

        return SqlFailures(self.engine)

    @cached_property
    def registry(self) -> SqlRegistry:
        """The model registry kept in this database."""
        from modelbus.db.registry import SqlRegistry

        return SqlRegistry(self.engine)

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """One unit of work: everything written through the yielded connection commits together, or nothing."""
        with self.engine.begin() as conn:
            yield conn

    def reachable(self) -> bool:
        """True when the database answers a trivial query now."""
        return reachable(self.engine)

    def append(self, items: Sequence[Incoming], attempts: int = 5) -> list[Outcome]:
        """Append a batch atomically, retrying conflicts and dropped connections; wakes local followers."""
        for attempt in range(1, attempts + 1):
            try:
                with self.engine.begin() as conn:
                    outcomes = append_batch(conn, items, self.schemas)
                break
            except _RETRIED as exc:
                if attempt == attempts:
                    raise
                log.warning("append conflict (%s), retrying", exc)
                time.sleep(0.05 * attempt)
        if any(o.status == ACCEPTED for o in outcomes):
            appends = self._appends
            with appends.changed:
                appends.generation += 1
                appends.changed.notify_all()
        return outcomes

    def append_in(self, tx: Connection, items: Sequence[Incoming]) -> list[Outcome]:
        """Append inside the caller's transaction `tx` (a handler's effect); followers find it by polling."""
        return append_batch(tx, items, self.schemas)

    def wait_for_append(self, generation: int, timeout: float) -> int:
        """Block until a local append after `generation` or the timeout; returns the new generation."""
        appends = self._appends
        with appends.changed:
            appends.changed.wait_for(lambda: appends.generation != generation, timeout)
            return appends.generation

    @property
    def generation(self) -> int:
        """A counter of local appends, for wait_for_append."""
        return self._appends.generation

    def expected_values(self, dataset: str) -> int | None:
        """How many values a training record of `dataset` must carry, if known yet."""
        if dataset in self.schemas.declared:
            return self.schemas.declared[dataset]
        with self.engine.connect() as conn:
            return _dataset_values(conn, {dataset}).get(dataset)

    def head(self) -> int:
        """The last position in the log (0 when empty)."""
        with self.engine.connect() as conn:
            return conn.execute(select(log_head.c.position).where(log_head.c.id == 1)).scalar_one()

    def read(
        self,
        after: int = 0,
        limit: int = 1000,
        *,
        until: int | None = None,
        type: str | None = None,
        name: str | None = None,
        names: Sequence[str] | None = None,
        dataset: str | None = None,
        conn: Connection | None = None,
        lean: bool = False,
    ) -> list[EventRow]:
        """Events with position > after (and <= until), in position order; `names` keeps events of those names.

        `lean` reads neither source nor received_at (they come back "" and None): a third less to
        convert per row, for a handler that reads only the events (the window projection)."""
        query = select(*(_EVENT_COLUMNS[:6] if lean else _EVENT_COLUMNS)).where(events.c.position > after)
        if until is not None:
            query = query.where(events.c.position <= until)
        if type is not None:
            query = query.where(events.c.type == type)
        if name is not None:
            query = query.where(events.c.name == name)
        if names is not None:
            query = query.where(events.c.name.in_(sorted(names)))
        if dataset is not None:
            query = query.where(events.c.dataset == dataset)
        query = query.order_by(events.c.position).limit(limit)
        unread: tuple[str, None] | tuple[()] = ("", None) if lean else ()
        if conn is not None:
            return [EventRow(*row, *unread) for row in conn.execute(query)]
        with self.engine.connect() as own:
            return [EventRow(*row, *unread) for row in own.execute(query)]

    def count(self, **filters: str) -> int:
        """How many events match the column filters."""
        query = select(func.count()).select_from(events)
        for column, value in filters.items():
            query = query.where(events.c[column] == value)
        with self.engine.connect() as conn:
            return conn.execute(query).scalar_one()

    def position_of(self, event_id: str) -> int | None:
        """The log position of the event with this id, or None when the log has no such event."""
        with self.engine.connect() as conn:
            return conn.execute(select(events.c.position).where(events.c.event_id == event_id)).scalar_one_or_none()

    def dead_letters(self, after: int = 0, limit: int = 100, code: str | None = None) -> list[dict]:
        """Dead letters with id > after (of reason `code` when given), oldest first."""
        query = select(dead_letters).where(dead_letters.c.id > after)
        if code is not None:
            query = query.where(dead_letters.c.code == code)
        with self.engine.connect() as conn:
            return [dict(row._mapping) for row in conn.execute(query.order_by(dead_letters.c.id).limit(limit))]

    def dead_letter_count(self, code: str | None = None) -> int:
        """How many dead letters are stored (of reason `code` when given)."""
        query = select(func.count()).select_from(dead_letters)
        if code is not None:
            query = query.where(dead_letters.c.code == code)
        with self.engine.connect() as conn:
            return conn.execute(query).scalar_one()

    def dead_letter_reasons(self) -> list[tuple[str, int, datetime]]:
        """(reason code, how many, the latest one's time) of every reason stored."""
        query = select(dead_letters.c.code, func.count(), func.max(dead_letters.c.received_at)).group_by(
            dead_letters.c.code)
        with self.engine.connect() as conn:
            return [(c, n, t) for c, n, t in conn.execute(query)]
