"""Transports carry bytes to topics: Kafka (kafka-python) or in-process for the embedded default."""
from __future__ import annotations

import logging
import threading
from collections import defaultdict
from typing import Callable, Protocol

log = logging.getLogger(__name__)

Subscriber = Callable[[bytes, bytes | None], None]


class Transport(Protocol):
    """Publishes messages to named topics."""

    def publish(self, topic: str, value: bytes, key: bytes | None = None) -> None:
        """Queue one message for `topic`."""

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

    def flush(self, timeout: float | None = None) -> None:
        """Nothing is ever queued."""

    def close(self) -> None:
        """Nothing to release."""


class KafkaTransport:
    """A kafka-python producer that reports failed sends at flush."""

    def __init__(self, bootstrap: str, *, max_request_size: int = 2 * 1024 * 1024, **config):
        from kafka import KafkaProducer

        self._producer = KafkaProducer(
            bootstrap_servers=bootstrap,
            acks="all",
            linger_ms=5,
            max_request_size=max_request_size,
            **config,
        )
        # One process shares the producer between threads (ingest, predictor, HTTP); each
        # thread checks its own sends, so one thread's flush can neither take another's
        # failure nor let another report a lost message as sent.
        self._local = threading.local()

    def _pending(self) -> list:
        pending = getattr(self._local, "pending", None)
        if pending is None:
            pending = self._local.pending = []
        return pending

    def publish(self, topic: str, value: bytes, key: bytes | None = None) -> None:
        """Queue one message; its acknowledgement is checked at this thread's next flush."""
        self._pending().append(self._producer.send(topic, value=value, key=key))

    def flush(self, timeout: float | None = 30.0) -> None:
        """Wait for every message this thread queued; raise the first send error."""
        self._producer.flush(timeout=timeout)
        pending, self._local.pending = self._pending(), []
        for future in pending:
            future.get(timeout=timeout)

    def close(self) -> None:
        """Flush what is queued and close the connections."""
        self._producer.close(timeout=10)
