"""Posting events from the entry points (HTTP, CLI, cron): into the log directly, or via event_topic."""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from modelbus.commands.report import error_message, store_and_report
from modelbus.commands.transport import Transport
from modelbus.db.events import REJECTED, EventStore, Incoming, Outcome, Source
from modelbus.messages.errors import Rejected
from modelbus.messages.jsonutil import canonical_json
from modelbus.messages.datasets import InputSchema
from modelbus.messages.parse import check_record, loads, parse_event_obj
from modelbus.messages.types import Feedback, Training
from modelbus.messages.types import event_id as event_id_of

QUEUED = "queued"


@dataclass(frozen=True)
class PublisherConfig:
    """Where events go and what is checked before: Kafka or the store, topics, limits, declared widths."""

    kafka_mode: bool = False
    events_topic: str = "event_topic"
    errors_topic: str = "error_topic"
    max_message_bytes: int = 64 * 1024
    # Values (features plus label) of each declared dataset's training records.
    declared_widths: Mapping[str, int] = field(default_factory=dict)
    # The typed fields of the datasets that declare them.
    typed: Mapping[str, InputSchema] = field(default_factory=dict)


class EventPublisher:
    """Validates events once, then appends them (embedded) or publishes them to event_topic (Kafka)."""

    def __init__(self, config: PublisherConfig, store: EventStore | None, transport: Transport | None = None):
        """`store` may be None in Kafka mode only: rejects then go to error_topic alone, and only
        the declared datasets' widths are checked before publishing."""
        if store is None and not config.kafka_mode:
            raise ValueError("the embedded default appends to the store: a store is required")
        self.config = config
        self.store = store
        self.transport = transport if config.kafka_mode else None
        # Dead letters and error_topic notices for entry-point rejects go through the
        # same transport as ingest's; None in the embedded default.
        self._errors = transport if config.kafka_mode else None

    def _parse(self, obj: Any, source: Source) -> Incoming:
        raw = obj if isinstance(obj, (bytes, str)) else canonical_json(obj)
        raw_bytes = raw.encode() if isinstance(raw, str) else raw
        try:
            value = loads(raw_bytes, self.config.max_message_bytes) if isinstance(obj, (bytes, str)) else obj
            event = parse_event_obj(value)
        except Rejected as exc:
            return Incoming(raw=raw_bytes, source=source, error=exc)
        if isinstance(event, Feedback):
            # Its `id` names the prediction; the log gives the event an id of its own when it stores it.
            return Incoming(raw=raw_bytes, source=source, event=event)
        event_id = event_id_of(event) or uuid.uuid4().hex
        # Kafka carries the id in the body, so a re-sent event is a duplicate there too.
        event.body["id"] = event_id
        return Incoming(raw=raw_bytes, source=source, event=event, event_id=event_id)

    def post(self, events: Sequence[Any], source: str) -> list[Outcome]:
        """Post events given as JSON objects, strings or bytes; one Outcome per event, in order.

        An invalid event is reported back and, like every entry point's rejects, kept as a
        dead letter (and sent to error_topic in Kafka mode): invalid input is never dropped.
        """
        items = [self._parse(obj, Source(source)) for obj in events]
        if self.transport is None:
            return store_and_report(self.store, None, self.config.errors_topic, items)
        return self._publish(items)

    def _expected_values(self, dataset: str) -> int | None:
        if self.store is not None:
            return self.store.expected_values(dataset)
        return self.config.declared_widths.get(dataset)

    def _publish(self, items: list[Incoming]) -> list[Outcome]:
        assert self.transport is not None
        widths: dict[str, int | None] = {}
        for item in items:
            if isinstance(item.event, Training):
                name = item.event.dataset
                if name not in widths:
                    widths[name] = self._expected_values(name)
                try:
                    check_record(item.event, widths[name], self.config.typed.get(name))
                except Rejected as exc:
                    item.error, item.event = exc, None
        outcomes: list[Outcome] = []
        rejects = [i for i in items if i.error is not None]
        if rejects and self.store is not None:
            store_and_report(self.store, self._errors, self.config.errors_topic, rejects)
        elif rejects:
            for item in rejects:
                assert item.error is not None
                self.transport.publish(self.config.errors_topic, error_message(item.raw, item.source, item.error))
        for item in items:
            if item.error is not None:
                outcomes.append(Outcome(REJECTED, error=item.error))
                continue
            assert item.event is not None
            # Keyed by dataset: one dataset's events share a partition, so a build
            # command is never ingested before the training records sent ahead of it.
            self.transport.publish(
                self.config.events_topic,
                canonical_json(item.event.body).encode(),
                key=item.event.dataset.encode(),
            )
            outcomes.append(Outcome(QUEUED, event_id=item.event_id))
        self.transport.flush()
        return outcomes


def outcome_json(outcome: Outcome) -> dict[str, Any]:
    """An Outcome as the HTTP API and `modelbus send --json` print it."""
    body: dict[str, Any] = {"status": outcome.status}
    if outcome.event_id is not None:
        body["id"] = outcome.event_id
    if outcome.position is not None:
        body["position"] = outcome.position
    if outcome.error is not None:
        body["error"] = outcome.error.as_dict()
    return body

