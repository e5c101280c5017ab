"""model_update_topic read by every serving process, and the threads that keep its model cache current."""
from __future__ import annotations

import logging
import threading
from typing import Callable

from modelbus.commands.transport import Transport
from modelbus.handlers.serving.cache import ModelCache
from modelbus.handlers.serving.reload import apply_update, poll_aliases

from modelbus.settings import Settings

log = logging.getLogger(__name__)


class UpdateListener:
    """Reads model_update_topic from its end, in this process only, and reloads the cache."""

    def __init__(self, settings: Settings, cache: ModelCache):
        self.settings = settings
        self.cache = cache
        self.ready = threading.Event()
        self.applied = 0

    def run(self, stop: threading.Event) -> None:
        """Follow the topic until `stop` is set."""
        from kafka.structs import TopicPartition
        from modelbus.commands.kafka import create_topics, make_consumer

        topic = self.settings.topics.model_updates
        # Every process must see every notice, so no consumer group: a group of one with a
        # unique id would do the same, but its first join costs seconds on Tansu.
        consumer = make_consumer(self.settings, None)
        try:
            partitions = None
            while partitions is None and not stop.is_set():
                partitions = consumer.partitions_for_topic(topic)
                if partitions is None:
                    create_topics(self.settings, topics=[topic])
                    stop.wait(0.2)
            if stop.is_set():
                return
            assigned = [TopicPartition(topic, p) for p in sorted(partitions)]
            consumer.assign(assigned)
            consumer.seek_to_end(*assigned)
            for tp in assigned:
                consumer.position(tp)  # resolve "end" now, so a notice sent after ready is seen
            self.ready.set()
            while not stop.is_set():
                for records in consumer.poll(timeout_ms=500).values():
                    for record in records:
                        if apply_update(self.cache, record.value):
                            self.applied += 1
        finally:
            consumer.close(autocommit=False)


def reload_targets(settings: Settings, transport: Transport, cache: ModelCache) -> list[tuple[str, Callable[[threading.Event], None]]]:
    """The threads that keep a serving process's cache current: notices plus the polling fallback."""
    targets: list[tuple[str, Callable[[threading.Event], None]]] = [("alias-poll", poll_aliases(cache))]
    if settings.kafka_mode:
        targets.append(("model-updates", UpdateListener(settings, cache).run))
    elif hasattr(transport, "subscribe"):
        # Embedded: the build handler's notice reaches this process synchronously.
        transport.subscribe(settings.topics.model_updates, lambda value, key: apply_update(cache, value))
    return targets
