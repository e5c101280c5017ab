"""The prediction worker: prediction_request_topic in micro-batches, answers on prediction_response_topic.

Mirrors the ingest worker: a consumer group shares the partitions, a batch's answers (and
the dead letters of its bad requests) are acknowledged before its offsets are committed.
Kafka is reached through modelbus.commands.kafka only; the serving logic is handlers.serving.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from modelbus.commands.kafka import KafkaConfig
from modelbus.commands.report import rejected, store_and_report
from modelbus.commands.transport import Transport
from modelbus.db.events import EventStore, Source
from modelbus.handlers.follow.isolate import run_isolating
from modelbus.handlers.serving.cache import ModelCache
from modelbus.handlers.serving.predict import (
    REGISTRY_UNAVAILABLE,
    error_response,
    parse_item,
    predict_batch,
)
from modelbus.handlers.workers.ingest import is_outage
from modelbus.messages.errors import Rejected
from modelbus.messages.jsonutil import compact_json_bytes

log = logging.getLogger(__name__)


class RegistryUnavailable(RuntimeError):
    """The registry could not be read for a request: the database's fault, retry the batch."""


def dump_response(answer: Mapping[str, Any]) -> bytes:
    """An answer as compact JSON; a non-finite metric becomes null (JSON has no NaN)."""
    return compact_json_bytes(answer)


@dataclass(frozen=True)
class PredictorConfig:
    """What the predictor needs: the broker, its group, the micro-batch size and wait, the size limit."""

    kafka: KafkaConfig
    group: str = "modelbus-predictor"
    batch: int = 256
    wait_ms: int = 10
    max_message_bytes: int = 64 * 1024


class PredictionWorker:
    """Consumes prediction requests in a consumer group and answers every one, good or bad."""

    def __init__(self, config: PredictorConfig, store: EventStore, cache: ModelCache, transport: Transport,
                 labels: Mapping[str, Mapping[str, str]] | None = None, recorder: Any = None):
        self.config = config
        self.store = store
        self.cache = cache
        self.transport = transport
        self.labels = labels
        # handlers.serving.record.PredictionRecorder (its thread started by the caller), or None.
        self.recorder = recorder
        self.counts: Counter[str] = Counter()
        self.batches = 0
        self.ready = threading.Event()
        # topic -> the id of the incarnation the records handed to process() come from.
        self.topic_ids: dict[str, str] = {}
        # Requests of the batch in hand already answered, so a retry (its dead letters could
        # not be stored yet) does not answer them again.
        self._answered: set[tuple[str, int, int]] = set()

    def _source(self, record) -> Source:
        return Source("kafka", record.topic, self.topic_ids.get(record.topic, ""), record.partition, record.offset)

    def process(self, records: Sequence) -> list[dict[str, Any]]:
        """Answer one batch of ConsumerRecords; dead-letter the bad ones; wait for the broker's acks.

        A request that makes its batch fail while the database and the broker are up is found
        by halving the batch, answered with an 'internal' error and kept as a dead letter.
        """
        answers = run_isolating(list(records), self._answer, self._unanswerable, self._is_outage)
        self._answered.clear()
        for answer in answers:
            self.counts["error:" + answer["error"]["code"] if "error" in answer else "ok"] += 1
        self.batches += 1
        return answers

    def _is_outage(self, exc: Exception) -> bool:
        return isinstance(exc, RegistryUnavailable) or is_outage(exc, self.store.engine)

    def _publish_answers(self, records: Sequence, answers: Sequence[dict[str, Any]]) -> None:
        answered = self._answered
        fresh = [(r, a) for r, a in zip(records, answers) if (r.topic, r.partition, r.offset) not in answered]
        self.transport.publish_many(self.config.kafka.topics.prediction_responses,
                                    [(dump_response(a), r.key) for r, a in fresh])
        self.transport.flush()
        answered.update((r.topic, r.partition, r.offset) for r, _ in fresh)

    def _answer(self, records: Sequence) -> list[dict[str, Any]]:
        raws = [r.value if r.value is not None else b"" for r in records]
        items = [parse_item(raw, self.config.max_message_bytes) for raw in raws]
        answers = predict_batch(self.cache, items, labels=self.labels)
        if any(a.get("error", {}).get("code") == REGISTRY_UNAVAILABLE for a in answers):
            # Not the requests' fault: leave the batch uncommitted and retry until the database is back.
            raise RegistryUnavailable("the model registry is unreachable")
        # Answers first: a database that cannot take the dead letters right now delays the
        # offset commit, not the good answers.
        self._publish_answers(records, answers)
        if self.recorder is not None:
            self.recorder.record(items, answers)
        rejects, reject_keys = [], []
        for record, raw, answer in zip(records, raws, answers):
            if "error" in answer:
                error = Rejected(answer["error"]["code"], answer["error"]["message"])
                # rejected() keeps a huge request's head only: a row over the server's packet
                # limit would fail the batch again on every retry.
                rejects.append(rejected(raw, self._source(record), error))
                reject_keys.append(record.key)
        if rejects:
            # The dead-letter rows are unique per request coordinate, so a re-delivered
            # batch does not store them twice; error_topic gets them again (at least once).
            store_and_report(self.store, self.transport, self.config.kafka.topics.errors, rejects, reject_keys)
        return answers

    def _unanswerable(self, record, exc: Exception) -> list[dict[str, Any]]:
        """The request alone fails: answer it with an 'internal' error and keep it as a dead letter."""
        raw = record.value if record.value is not None else b""
        detail = str(exc)[:300].encode("utf-8", "backslashreplace").decode("utf-8")
        error = Rejected("internal", f"the request could not be answered: {type(exc).__name__}: {detail}")
        log.warning("predictor: %s at %s", error.message, self._source(record).describe())
        try:
            request_id = parse_item(raw, self.config.max_message_bytes).id
        except Exception:
            request_id = None
        answer = error_response(request_id, error)
        self._publish_answers([record], [answer])
        store_and_report(self.store, self.transport, self.config.kafka.topics.errors,
                         [rejected(raw, self._source(record), error)], [record.key])
        return [answer]

    def _poll_batch(self, consumer) -> dict:
        """Up to predict_batch records: what is there now, then more until predict_wait_ms passes."""
        limit = self.config.batch
        polled = consumer.poll(timeout_ms=500, max_records=limit)
        if not polled:
            return {}
        count = sum(len(v) for v in polled.values())
        deadline = time.monotonic() + self.config.wait_ms / 1000
        while count < limit:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            more = consumer.poll(timeout_ms=max(1, int(remaining * 1000)), max_records=limit - count)
            for tp, records in more.items():
                polled.setdefault(tp, []).extend(records)
                count += len(records)
        return polled

    def run(self, stop: threading.Event) -> None:
        """Poll, answer, commit; until `stop` is set. Never dies on a request."""
        from modelbus.commands.kafka import (
            TopicWatch,
            kafka_transport,
            make_consumer,
            run_group,
        )

        watch = TopicWatch(self.config.kafka, [self.config.kafka.topics.prediction_requests], "predictor", log)
        self.topic_ids = watch.ids
        # Request/response wants short fetches; Tansu holds a fetch for the whole wait even
        # when data arrives, so the fetch wait is the micro-batch wait (at least 5 ms:
        # shorter overloads the broker).
        consumer = make_consumer(
            self.config.kafka,
            self.config.group,
            fetch_max_wait_ms=max(5, self.config.wait_ms),
            max_poll_records=self.config.batch,
        )
        # A producer of its own: offsets are committed after *these* answers are acknowledged,
        # and a transport shared with other threads (modelbus up) may have its flush check
        # another thread's sends and miss ours.
        shared, self.transport = self.transport, kafka_transport(self.config.kafka)
        try:
            run_group(
                consumer, [self.config.kafka.topics.prediction_requests], stop,
                poll=self._poll_batch, process=self.process, log=log, name="predictor", doing="answering",
                ready=self.ready, watch=watch,
            )
        finally:
            own, self.transport = self.transport, shared
            own.close()
