"""The training-record projection: one row per valid training event, as the seed's training data."""
from __future__ import annotations

import json
from typing import Any, Sequence

from modelbus.db import training_records
from modelbus.db.contracts import Transaction
from modelbus.db.events import EventRow
from modelbus.handlers.log.base import Handler
from modelbus.messages.parse import parse_event_obj
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

    def apply(self, conn: Transaction, events: Sequence[EventRow], prepared: Any) -> None:
        """Insert one training_records row per training event."""
        rows = []
        for row in events:
            record = training_of(row)
            rows.append(
                {
                    "position": row.position,
                    "dataset": record.dataset,
                    "features": json.dumps(record.features),
                    "label": record.label,
                }
            )
        training_records.insert_records(conn, rows)

    def reset(self, conn: Transaction) -> None:
        """Empty the projection."""
        training_records.reset(conn)
