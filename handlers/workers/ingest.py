"""Ingest: event_topic into the log, a batch per transaction, offsets committed after the database."""
from __future__ import annotations

import base64
import logging
import threading
from collections import Counter
from dataclasses import dataclass
from typing import Sequence

from modelbus.commands.kafka import KafkaConfig
from modelbus.commands.report import rejected, store_and_report
from modelbus.commands.transport import Transport
from modelbus.db.engine import reachable
from modelbus.db.errors import LostConnection, Outage
from modelbus.db.events import DUPLICATE, EventStore, Incoming, Outcome, Source
from modelbus.handlers.follow.isolate import run_isolating
from modelbus.messages.errors import Rejected
from modelbus.messages.parse import parse_event
from modelbus.messages.types import event_id as event_id_of

log = logging.getLogger(__name__)


def incoming(raw: bytes, source: Source, max_bytes: int, event_id: str | None = None) -> Incoming:
    """Parse one raw message into an Incoming, keeping the rejection reason if it is invalid."""
    try:
        event = parse_event(raw, max_bytes)
    except Rejected as exc:
        return rejected(raw, source, exc)
    except Exception as exc:
        # The parser's own failure: this message must not hold back the others.
        log.exception("ingest: parsing the message at %s failed", source.describe())
        return rejected(raw, source, Rejected("unparseable", f"the message could not be parsed: {type(exc).__name__}"))
    return Incoming(raw=raw, source=source, event=event, event_id=event_id_of(event) or event_id)


def is_outage(exc: Exception, engine) -> bool:
    """True when the broker or the database, not a message, made a batch fail: retry it whole later."""
    # kafka-python's errors are matched by module: publishing to error_topic failed.
    if type(exc).__module__.startswith("kafka") or isinstance(exc, (ConnectionError, TimeoutError)):
        return True
    # The database did not answer, and said so (not a dropped connection, which a message too
    # big for the server causes as well as an outage does).
    if isinstance(exc, Outage) and not isinstance(exc, LostConnection):
        return True
    # A database that answers a trivial query now did not fail us: something in the batch did
    # (a value MySQL refuses, a row over max_allowed_packet that drops the connection).
    return not reachable(engine)


@dataclass(frozen=True)
class IngestConfig:
    """What ingest needs: the broker, its group, how many messages a transaction stores, the size limit."""

    kafka: KafkaConfig
    group: str = "modelbus-ingest"
    batch: int = 2000
    max_message_bytes: int = 64 * 1024


class IngestWorker:
    """Consumes event_topic in a consumer group and persists every message exactly once."""

    def __init__(self, config: IngestConfig, store: EventStore, transport: Transport):
        self.config = config
        self.store = store
        self.transport = transport
        self.counts: Counter[str] = Counter()
        self.ready = threading.Event()
        # topic -> the id of the incarnation the records handed to process() come from.
        self.topic_ids: dict[str, str] = {}

    def process(self, records: Sequence) -> list[Outcome]:
        """Store one polled batch (kafka-python ConsumerRecords, in offset order per partition).

        A message that makes its batch fail while the database is up (a value the store
        refuses, say) is found by halving the batch and becomes an 'unstorable' dead letter;
        everything else in the batch is stored.
        """
        items = [
            incoming(
                r.value if r.value is not None else b"",
                Source("kafka", r.topic, self.topic_ids.get(r.topic, ""), r.partition, r.offset),
                self.config.max_message_bytes,
            )
            for r in records
        ]
        pairs = list(zip(items, [r.key for r in records]))
        outcomes = run_isolating(pairs, self._store, self._unstorable, lambda exc: is_outage(exc, self.store.engine))
        redelivered = sum(1 for o in outcomes if (o.status == DUPLICATE and o.event_id is None) or not o.new)
        if redelivered:
            log.info("ingest: %d re-delivered messages were already in the log", redelivered)
        for outcome in outcomes:
            self.counts[outcome.status] += 1
        return outcomes

    def _store(self, pairs: Sequence[tuple[Incoming, bytes | None]]) -> list[Outcome]:
        items, keys = [p[0] for p in pairs], [p[1] for p in pairs]
        return store_and_report(self.store, self.transport, self.config.kafka.topics.errors, items, keys)

    def _unstorable(self, pair: tuple[Incoming, bytes | None], exc: Exception) -> list[Outcome]:
        """The message alone fails to store: keep it as a dead letter with the store's reason."""
        item, key = pair
        # The driver's message may quote the message's own bad characters.
        detail = str(exc)[:300].encode("utf-8", "backslashreplace").decode("utf-8")
        error = Rejected("unstorable", f"the store refused the message: {type(exc).__name__}: {detail}")
        log.warning("ingest: %s at %s", error.message, item.source.describe())
        try:
            return self._store([(rejected(item.raw, item.source, error), key)])
        except Exception as again:
            if is_outage(again, self.store.engine):
                raise
        # The store refuses the bytes even as a dead letter (a rule about their content): keep
        # them base64-encoded, so nothing is lost and nothing behind them waits.
        encoded = Rejected("unstorable", f"{error.message}; the dead letter keeps the message base64-encoded")
        return self._store([(rejected(base64.b64encode(item.raw), item.source, encoded), key)])

    def run(self, stop: threading.Event) -> None:
        """Poll, store, report, commit; until `stop` is set. Never dies on a message."""
        from modelbus.commands.kafka import TopicWatch, make_consumer, run_group

        watch = TopicWatch(self.config.kafka, [self.config.kafka.topics.events], "ingest", log)
        self.topic_ids = watch.ids
        consumer = make_consumer(self.config.kafka, self.config.group)
        run_group(
            consumer, [self.config.kafka.topics.events], stop,
            poll=lambda c: c.poll(timeout_ms=500, max_records=self.config.batch),
            process=self.process, log=log, name="ingest", doing="storing", ready=self.ready, watch=watch,
        )
