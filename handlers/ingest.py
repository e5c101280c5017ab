"""Ingest: event_topic into the log, a batch per transaction, offsets committed after the database."""
from __future__ import annotations

import base64
import json
import logging
import threading
from collections import Counter
from typing import Sequence

from commands.messages import Rejected
from commands.parse import parse_event
from commands.transport import Transport
from db.events import DUPLICATE, REJECTED, EventStore, Incoming, Outcome, Source, utcnow
from modelbus.settings import Settings

log = logging.getLogger(__name__)

# error_topic carries the reason and enough of the message to recognise it; the full
# bytes are in dead_letters (a broker's message size limit would refuse a 1 MB echo).
ERROR_RAW_LIMIT = 4096
# A broker may deliver far bigger messages than we accept (Tansu takes 20 MB), but MySQL
# refuses a statement over max_allowed_packet (16 MiB on MariaDB 10.11) by dropping the
# connection, and a retried batch would fail forever. Dead letters keep this much.
DEAD_LETTER_RAW_LIMIT = 4 * 1024 * 1024


def error_message(raw: bytes, source: Source, error: Rejected) -> bytes:
    """The JSON published on error_topic for one rejected message."""
    head = raw[:ERROR_RAW_LIMIT]
    try:
        raw.decode("utf-8")
        # Only a character cut in two at the limit is dropped.
        shown, encoding = head.decode("utf-8", "ignore"), "utf-8"
    except UnicodeDecodeError:
        shown, encoding = base64.b64encode(head).decode("ascii"), "base64"
    body = {
        "error": error.as_dict(),
        "source": source.describe(),
        "raw": shown,
        "raw_encoding": encoding,
        "raw_bytes": len(raw),
        "truncated": len(raw) > ERROR_RAW_LIMIT,
        "received_at": utcnow().isoformat(timespec="milliseconds") + "Z",
    }
    return json.dumps(body, separators=(",", ":")).encode()


def incoming(raw: bytes, source: Source, max_bytes: int, event_id: str | None = None) -> Incoming:
    """Parse one raw message into an Incoming, keeping the rejection reason if it is invalid."""
    try:
        event = parse_event(raw, max_bytes)
    except Rejected as exc:
        return rejected(raw, source, exc)
    return Incoming(raw=raw, source=source, event=event, event_id=event.body.get("id") or event_id)


def rejected(raw: bytes, source: Source, error: Rejected) -> Incoming:
    """A dead-letter Incoming; a huge message keeps only its head (the reason says how big it was)."""
    if len(raw) > DEAD_LETTER_RAW_LIMIT:
        error = Rejected(error.code, f"{error.message} (the dead letter keeps its first {DEAD_LETTER_RAW_LIMIT} bytes)")
        raw = raw[:DEAD_LETTER_RAW_LIMIT]
    return Incoming(raw=raw, source=source, error=error)


def _poison(exc: Exception) -> bool:
    """True when a message's content, not the database or the broker, made a batch fail."""
    from sqlalchemy.exc import DataError, IntegrityError, SQLAlchemyError

    # DataError: MySQL refused a value (incorrect string, too long). A plain ValueError
    # (UnicodeEncodeError for a lone surrogate the JSON parser let through) comes from
    # binding the row; retrying either can only fail again. An IntegrityError that outlived
    # the store's retries (which re-read what other writers committed) is a key the database
    # equates with a stored one although Python does not (a collation rule): also content.
    return isinstance(exc, (DataError, IntegrityError)) or (
        isinstance(exc, (ValueError, TypeError)) and not isinstance(exc, SQLAlchemyError)
    )


def store_and_report(
    store: EventStore, transport: Transport | None, error_topic: str, items: Sequence[Incoming], keys: Sequence[bytes | None] | None = None
) -> list[Outcome]:
    """Append a batch, then publish its rejects to error_topic and wait for the broker's acks."""
    outcomes = store.append(items)
    if transport is not None:
        published = 0
        for index, (item, outcome) in enumerate(zip(items, outcomes)):
            # Re-delivered rejects are published again: a crash may have fallen between
            # the database commit and the broker's ack (at-least-once on error_topic).
            if outcome.status == REJECTED:
                key = keys[index] if keys else None
                transport.publish(error_topic, error_message(item.raw, item.source, outcome.error), key)
                published += 1
        if published:
            transport.flush()
    return outcomes


class IngestWorker:
    """Consumes event_topic in a consumer group and persists every message exactly once."""

    def __init__(self, settings: Settings, store: EventStore, transport: Transport):
        self.settings = settings
        self.store = store
        self.transport = transport
        self.counts: Counter[str] = Counter()
        self.ready = threading.Event()
        self._topic_ids: dict[str, str] = {}

    def _refresh_topic_ids(self) -> None:
        from commands.kafka import topic_ids

        self._topic_ids = topic_ids(self.settings, [self.settings.topics.events])

    def process(self, records: Sequence) -> list[Outcome]:
        """Store one polled batch (kafka-python ConsumerRecords, in offset order per partition)."""
        items = [
            incoming(
                r.value if r.value is not None else b"",
                Source("kafka", r.topic, self._topic_ids.get(r.topic, ""), r.partition, r.offset),
                self.settings.max_message_bytes,
            )
            for r in records
        ]
        keys = [r.key for r in records]
        try:
            outcomes = store_and_report(self.store, self.transport, self.settings.topics.errors, items, keys)
        except Exception as exc:
            if not _poison(exc):
                raise
            log.warning("ingest: a batch of %d cannot be stored (%s: %s); storing it message by message", len(items), type(exc).__name__, exc)
            outcomes = self._store_one_by_one(items, keys)
        redelivered = sum(1 for o in outcomes if (o.status == DUPLICATE and o.event_id is None) or not o.new)
        if redelivered:
            log.info("ingest: %d re-delivered messages were already in the log", redelivered)
        for outcome in outcomes:
            self.counts[outcome.status] += 1
        return outcomes

    def _store_one_by_one(self, items: Sequence[Incoming], keys: Sequence[bytes | None]) -> list[Outcome]:
        """Store each message alone; one the store refuses becomes an 'unstorable' dead letter."""
        outcomes = []
        for item, key in zip(items, keys):
            try:
                outcomes += store_and_report(self.store, self.transport, self.settings.topics.errors, [item], [key])
            except Exception as exc:
                if not _poison(exc):
                    raise
                error = Rejected("unstorable", f"the store refused the message: {type(exc).__name__}: {str(exc)[:300]}")
                log.warning("ingest: %s at %s", error.message, item.source.describe())
                dead = rejected(item.raw, item.source, error)
                outcomes += store_and_report(self.store, self.transport, self.settings.topics.errors, [dead], [key])
        return outcomes

    def run(self, stop: threading.Event) -> None:
        """Poll, store, report, commit; until `stop` is set. Never dies on a message."""
        from commands.kafka import make_consumer, run_group

        self._refresh_topic_ids()
        consumer = make_consumer(self.settings, self.settings.ingest_group)
        run_group(
            consumer, [self.settings.topics.events], stop,
            poll=lambda c: c.poll(timeout_ms=500, max_records=self.settings.ingest_batch),
            process=self.process, log=log, name="ingest", doing="storing",
            on_assigned=self._refresh_topic_ids, ready=self.ready,
        )
