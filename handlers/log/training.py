"""The training-record projection: one row per valid training event, as the seed's training data."""
from __future__ import annotations

import json
from typing import Any, Mapping, Sequence

import orjson

from modelbus.db import training_records
from modelbus.db.contracts import Transaction
from modelbus.db.events import EventRow
from modelbus.handlers.log.base import Handler
from modelbus.messages.datasets import InputSchema
from modelbus.messages.errors import Rejected
from modelbus.messages.parse import parse_event_obj, stored_training_values, typed_record
from modelbus.messages.types import Training


def training_of(row: EventRow) -> Training:
    """The training record stored in a log row."""
    event = parse_event_obj(json.loads(row.payload), system=True)
    if not isinstance(event, Training):
        raise ValueError(f"event {row.position} is a {event.type}, not a training record")
    return event


class TrainingRecords(Handler):
    """Projects training events into the training_records table."""

    name = "training_records"
    event_type = "training"
    batch_size = 5000

    def __init__(self, datasets: Mapping[str, InputSchema] | None = None):
        """`datasets`: the typed fields of the datasets that declare them, to order a payload object's values."""
        self.datasets = dict(datasets or {})

    def _row(self, row: EventRow) -> dict[str, Any]:
        # A plain stored record (the common case) skips the strict parser: it was checked on the way in.
        try:
            plain = stored_training_values(orjson.loads(row.payload), row.dataset)
        except orjson.JSONDecodeError:
            plain = None
        if plain is not None:
            return {"position": row.position, "dataset": row.dataset, "features": json.dumps(plain[:-1]),
                    "label": plain[-1], "label_category": None}
        record = training_of(row)
        if record.fields is not None:
            try:
                typed_record(record, self.datasets.get(record.dataset))
            except Rejected:
                # Stored under an earlier declaration: kept as written, with no label column.
                return {"position": row.position, "dataset": record.dataset, "features": json.dumps(record.fields),
                        "label": None, "label_category": None}
        label = record.label
        return {
            "position": row.position,
            "dataset": record.dataset,
            # Typed values are kept: a category as its string.
            "features": json.dumps(record.features),
            "label": None if isinstance(label, str) else label,
            "label_category": label if isinstance(label, str) else None,
        }

    def apply(self, conn: Transaction, events: Sequence[EventRow], prepared: Any) -> None:
        """Insert one training_records row per training event."""
        training_records.insert_records(conn, [self._row(row) for row in events])

    def reset(self, conn: Transaction) -> None:
        """Empty the projection."""
        training_records.reset(conn)
