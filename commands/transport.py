"""Transports carry bytes to topics: Kafka (kafka-python) or in-process for the embedded default."""
from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from typing import Any, Callable, Iterable, Protocol

log = logging.getLogger(__name__)

Subscriber = Callable[[bytes, bytes | None], None]


class Transport(Protocol):
    """Publishes messages to named topics."""

    def publish(self, topic: str, value: bytes, key: bytes | None = None) -> None:
        """Queue one message for `topic`."""

    def publish_many(self, topic: str, messages: Iterable[tuple[bytes, bytes | None]]) -> None:
        """Queue (value, key) pairs for `topic`, in order."""

    def flush(self, timeout: float | None = None) -> None:
        """Block until every queued message is acknowledged; raise if one failed."""

    def close(self) -> None:
        """Release connections."""


class InProcessTransport:
    """Delivers each message synchronously to the subscribers of its topic in this process."""

    def __init__(self) -> None:
        self._subscribers: dict[str, list[Subscriber]] = defaultdict(list)
        self._lock = threading.Lock()

    def subscribe(self, topic: str, callback: Subscriber) -> None:
        """Call `callback(value, key)` for every later message on `topic`."""
        with self._lock:
            self._subscribers[topic].append(callback)

    def publish(self, topic: str, value: bytes, key: bytes | None = None) -> None:
        """Deliver to every subscriber now; a failing subscriber does not stop the others."""
        with self._lock:
            callbacks = list(self._subscribers.get(topic, ()))
        for callback in callbacks:
            try:
                callback(value, key)
            except Exception:
                log.exception("in-process subscriber of %s failed", topic)

    def publish_many(self, topic: str, messages: Iterable[tuple[bytes, bytes | None]]) -> None:
        """Deliver each (value, key) pair now, in order."""
        for value, key in messages:
            self.publish(topic, value, key)

    def flush(self, timeout: float | None = None) -> None:
        """Nothing is ever queued."""

    def close(self) -> None:
        """Nothing to release."""


class KafkaTransport:
    """A kafka-python producer that reports failed sends at flush and replaces itself after a failure.

    An idempotent producer that loses its broker's state (a broker restarted empty, a
    producer id expired) can fail for good ("InitProducerIdResponse: UnknownError") and
    refuse every later send; so any failed send closes it and the next publish starts a
    fresh one. The caller retries what failed: every caller's work is idempotent.
    """

    def __init__(self, bootstrap: str, *, timeout: float = 5.0, max_request_size: int = 2 * 1024 * 1024, **config):
        linger_ms = 5
        self.timeout = timeout
        self._config = dict(
            bootstrap_servers=bootstrap,
            acks="all",
            linger_ms=linger_ms,
            max_request_size=max_request_size,
            # Bounded waits: a broker that is down fails a send within `timeout` (an HTTP
            # caller gets a 503, a worker backs off) instead of after kafka-python's minutes.
            max_block_ms=int(timeout * 1000),
            request_timeout_ms=int(timeout * 1000),
            delivery_timeout_ms=int(timeout * 1000) + linger_ms,
            **config,
        )
        self._lock = threading.Lock()
        self._producer = None
        self._generation = 0
        self.replaced = 0
        # One process shares the producer between threads (ingest, predictor, HTTP); each
        # thread checks its own sends, so one thread's flush can neither take another's
        # failure nor let another report a lost message as sent.
        self._local = threading.local()

    def _pending(self) -> list:
        pending = getattr(self._local, "pending", None)
        if pending is None:
            pending = self._local.pending = []
        return pending

    def _current(self) -> tuple[Any, int]:
        with self._lock:
            if self._producer is None:
                from kafka import KafkaProducer

                self._producer = KafkaProducer(**self._config)
                self._generation += 1
            return self._producer, self._generation

    def _discard(self, generation: int, error: BaseException) -> None:
        """Close the producer of `generation` after a failed send, unless another thread already did."""
        from kafka.errors import MessageSizeTooLargeError

        if isinstance(error, MessageSizeTooLargeError):
            return  # one record's fault, not the producer's
        with self._lock:
            if self._producer is None or generation != self._generation:
                return
            old, self._producer = self._producer, None
            self.replaced += 1
        log.warning("a Kafka send failed (%s: %s); replacing the producer", type(error).__name__, error)
        try:
            old.close(timeout=0)
        except Exception:
            log.debug("closing the failed producer", exc_info=True)

    def publish(self, topic: str, value: bytes, key: bytes | None = None) -> None:
        """Queue one message; its acknowledgement is checked at this thread's next flush."""
        producer, generation = self._current()
        try:
            future = producer.send(topic, value=value, key=key)
        except Exception as exc:
            self._pending().clear()
            self._discard(generation, exc)
            raise
        self._pending().append((generation, future))

    def publish_many(self, topic: str, messages: Iterable[tuple[bytes, bytes | None]]) -> None:
        """Queue (value, key) pairs with one producer look-up; their acknowledgements are checked at this thread's next flush."""
        producer, generation = self._current()
        send, pending = producer.send, self._pending()
        try:
            for value, key in messages:
                pending.append((generation, send(topic, value=value, key=key)))
        except Exception as exc:
            pending.clear()
            self._discard(generation, exc)
            raise

    def flush(self, timeout: float | None = None) -> None:
        """Wait (at most `timeout`, default the transport's) for every message this thread queued; raise the first error."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        pending, self._local.pending = self._pending(), []
        for generation, future in pending:
            try:
                future.get(timeout=max(0.0, deadline - time.monotonic()))
            except Exception as exc:
                self._discard(generation, exc)
                raise

    def close(self) -> None:
        """Flush what is queued and close the connections."""
        with self._lock:
            producer, self._producer = self._producer, None
        if producer is not None:
            producer.close(timeout=self.timeout)
