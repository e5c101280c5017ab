"""The training data of a build, read from the log, and its lineage (positions, count, digest)."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import orjson
from sqlalchemy import Engine, select

from modelbus.builders.base import BuildError, TrainingData
from modelbus.db.events import EventRow
from modelbus.db.schema import events
from modelbus.messages.errors import Rejected
from modelbus.messages.datasets import InputSchema
from modelbus.messages.parse import parse_event_obj, stored_training_values, typed_record
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

    def update_many(self, rows: Sequence[tuple[int, str]]) -> None:
        """Add (position, payload) pairs in order: the same digest as update() on each, in one call."""
        if not rows:
            return
        self._sha.update("".join([f"{position}\t{payload}\n" for position, payload in rows]).encode("utf-8"))
        if self.first is None:
            self.first = rows[0][0]
        self.last = rows[-1][0]
        self.count += len(rows)

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
    query = (select(events.c.position, events.c.payload)
             .where(events.c.dataset == dataset, events.c.name == "training", events.c.type == "training",
                    events.c.position < before)
             .order_by(events.c.position))
    with engine.connect() as conn:
        result = conn.execution_options(stream_results=True, yield_per=STREAM_ROWS).execute(query)
        for rows in result.partitions():
            hasher.update_many(rows)
            for position, payload in rows:
                # Every stored event was validated on the way in: one in the plain shape ingest
                # stores gives its values without the strict parser (which would give the same
                # ones); anything else, or a typed dataset, is parsed as before.
                plain = None
                if schema is None:
                    try:
                        plain = stored_training_values(orjson.loads(payload), dataset)
                    except orjson.JSONDecodeError:
                        plain = None
                if plain is None:
                    record = _training(EventRow(position, "", "training", "training", dataset, payload, "", None),
                                       schema)
                    plain = (*record.features, record.label)
                if width is None:
                    width = len(plain)
                elif len(plain) != width:
                    raise BuildError(f"event {position} has {len(plain)} values where the dataset's "
                                     f"earlier records have {width}")
                values.extend(plain)
                positions.append(position)
            if progress is not None:
                progress(len(rows))
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
