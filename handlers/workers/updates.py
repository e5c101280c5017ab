"""model_update_topic read by every serving process, and the threads that keep its model cache current."""
from __future__ import annotations

import logging
import threading
from typing import Callable

from modelbus.backoff import backoff
from modelbus.commands.kafka import KafkaConfig
from modelbus.commands.transport import Transport
from modelbus.handlers.serving.cache import ModelCache
from modelbus.handlers.serving.reload import apply_update, poll_aliases

log = logging.getLogger(__name__)


class UpdateListener:
    """Reads model_update_topic from its end, in this process only, and reloads the cache."""

    def __init__(self, kafka: KafkaConfig, cache: ModelCache):
        self.kafka = kafka
        self.cache = cache
        self.ready = threading.Event()
        self.applied = 0

    def run(self, stop: threading.Event) -> None:
        """Follow the topic until `stop` is set; a broker outage is waited out (the alias poll covers it)."""
        from modelbus.commands.kafka import consumer_at_end

        failures = 0
        while not stop.is_set():
            # Every process must see every notice, so no consumer group: a group of one with a
            # unique id would do the same, but its first join costs seconds on Tansu.
            try:
                consumer = consumer_at_end(self.kafka, self.kafka.topics.model_updates)
            except Exception as exc:
                failures += 1
                log.warning("model updates: cannot read %s (%s); retrying in %.0fs", self.kafka.topics.model_updates,
                            exc, backoff(failures))
                stop.wait(backoff(failures))
                continue
            failures = 0
            self.ready.set()
            try:
                while not stop.is_set():
                    for records in consumer.poll(timeout_ms=500).values():
                        for record in records:
                            if apply_update(self.cache, record.value):
                                self.applied += 1
            except Exception as exc:
                log.warning("model updates: reading %s failed (%s); starting again", self.kafka.topics.model_updates,
                            exc)
            finally:
                consumer.close(autocommit=False)


def reload_targets(kafka: KafkaConfig | None, transport: Transport, cache: ModelCache,
                   model_updates: str = "model_update_topic") -> list[tuple[str, Callable[[threading.Event], None]]]:
    """The threads that keep a serving process's cache current: notices plus the polling fallback."""
    targets: list[tuple[str, Callable[[threading.Event], None]]] = [("alias-poll", poll_aliases(cache))]
    if kafka is not None:
        targets.append(("model-updates", UpdateListener(kafka, cache).run))
    elif hasattr(transport, "subscribe"):
        # Embedded: the build handler's notice reaches this process synchronously.
        transport.subscribe(model_updates, lambda value, key: apply_update(cache, value))
    return targets
