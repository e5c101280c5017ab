"""The training data of a build, read from the log, and its lineage (positions, count, digest)."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np
from sqlalchemy import Connection, Engine, select

from modelbus.builders.base import BuildError, TrainingData
from modelbus.db.events import EventRow
from modelbus.db.schema import events
from modelbus.messages.errors import Rejected
from modelbus.messages.datasets import InputSchema
from modelbus.messages.parse import parse_event_obj, typed_record
from modelbus.messages.types import Training

# Rows fetched per round trip while streaming the log.
STREAM_ROWS = 5000


@dataclass(frozen=True)
class Lineage:
    """Which training events a build used: first and last position, count and digest."""

    first_position: int | None
    last_position: int | None
    n_events: int
    digest: str


class LineageHasher:
    """SHA-256 over "<position>\\t<payload>\\n" of each event, in position order."""

    def __init__(self) -> None:
        self._sha = hashlib.sha256()
        self.first: int | None = None
        self.last: int | None = None
        self.count = 0

    def update(self, position: int, payload: str) -> None:
        """Add one event; payloads are the canonical JSON the log stores, which has no raw newline."""
        self._sha.update(f"{position}\t{payload}\n".encode("utf-8"))
        if self.first is None:
            self.first = position
        self.last = position
        self.count += 1

    def result(self) -> Lineage:
        """The lineage of the events added so far."""
        return Lineage(self.first, self.last, self.count, self._sha.hexdigest())


def _training_query(dataset: str, before: int):
    return (
        select(events.c.position, events.c.event_id, events.c.type, events.c.name, events.c.dataset,
               events.c.payload, events.c.source, events.c.received_at)
        .where(events.c.dataset == dataset, events.c.name == "training", events.c.type == "training",
               events.c.position < before)
        .order_by(events.c.position)
    )


def _training(row: EventRow, schema: InputSchema | None) -> Training:
    """The training record of a log row, or BuildError (a row altered in the database, or a payload
    object that does not fit the dataset's typed fields as declared now)."""
    try:
        record = parse_event_obj(json.loads(row.payload), system=True)
    except (Rejected, ValueError) as exc:
        raise BuildError(f"event {row.position} is not a valid training record: {exc}") from None
    if not isinstance(record, Training):
        raise BuildError(f"event {row.position} is stored as training but holds a {record.type}")
    if record.fields is not None or schema is not None:
        try:
            typed_record(record, schema)
        except Rejected as exc:
            raise BuildError(f"event {row.position} does not fit dataset '{record.dataset}': {exc}") from None
    return record


def stream_training(conn: Connection, dataset: str, before: int) -> Iterator[EventRow]:
    """Training events of `dataset` with position < `before`, in position order, fetched in chunks."""
    result = conn.execution_options(stream_results=True, yield_per=STREAM_ROWS).execute(_training_query(dataset, before))
    for row in result:
        yield EventRow(*row)


def load_training(engine: Engine, dataset: str, before: int,
                  progress: Callable[[int], None] | None = None,
                  schema: InputSchema | None = None) -> tuple[TrainingData | None, Lineage]:
    """The training data of a build at log position `before` and its lineage; data is None when there is none.

    `schema` is the dataset's typed fields, when it declares them: the data then carries it and
    typed values. BuildError when a stored event is not a training record or rows disagree on their length.
    """
    hasher = LineageHasher()
    values: list[float | str] = []
    positions: list[int] = []
    width: int | None = None
    with engine.connect() as conn:
        for row in stream_training(conn, dataset, before):
            hasher.update(row.position, row.payload)
            record = _training(row, schema)
            if width is None:
                width = record.values
            elif record.values != width:
                raise BuildError(f"event {row.position} has {record.values} values where the dataset's "
                                 f"earlier records have {width}")
            values.extend(record.features)
            values.append(record.label)
            positions.append(row.position)
            if progress is not None and hasher.count % 1000 == 0:
                progress(1000)
    if progress is not None and hasher.count % 1000:
        progress(hasher.count % 1000)
    lineage = hasher.result()
    if not positions:
        return None, lineage
    if schema is not None:
        matrix = np.asarray(values, dtype=object).reshape(len(positions), width)
        return TrainingData(X=matrix[:, :-1], y=matrix[:, -1], keys=np.asarray(positions), schema=schema), lineage
    matrix = np.asarray(values, dtype=np.float64).reshape(len(positions), width)
    return TrainingData.from_rows(matrix, positions), lineage


def lineage_events(engine: Engine, dataset: str, before: int, limit: int | None = None) -> list[dict]:
    """The training events a build at `before` uses, as JSON-ready dicts (position, id, source, event)."""
    query = _training_query(dataset, before)
    if limit is not None:
        query = query.limit(limit)
    with engine.connect() as conn:
        return [
            {"position": row.position, "id": row.event_id, "source": row.source,
             "received_at": row.received_at.isoformat(), "event": json.loads(row.payload)}
            for row in conn.execute(query)
        ]
