"""Assembles the parts for a process: store, transport, publisher, handlers."""
from __future__ import annotations

import logging
from functools import cached_property

from commands.kafka import kafka_transport
from commands.publish import EventPublisher
from commands.transport import InProcessTransport, Transport
from db.engine import make_engine
from db.events import EventStore, Schemas
from db.migrate import upgrade
from handlers.base import Handler
from modelbus.settings import Settings

log = logging.getLogger(__name__)


class App:
    """The parts one modelbus process shares, built lazily from its settings."""

    def __init__(self, settings: Settings, *, migrate: bool = True):
        self.settings = settings
        self.engine = make_engine(settings.database_url)
        if migrate:
            upgrade(self.engine)
        declared = {name: schema.features + 1 for name, schema in settings.datasets.items()}
        self.store = EventStore(self.engine, Schemas(declared=declared, auto=settings.auto_datasets))

    @cached_property
    def transport(self) -> Transport:
        """Kafka when a bootstrap is configured, else the in-process transport."""
        if self.settings.kafka_bootstrap:
            return kafka_transport(self.settings)
        return InProcessTransport()

    @cached_property
    def publisher(self) -> EventPublisher:
        """Where the entry points post events."""
        return EventPublisher(self.settings, self.store, self.transport)

    def handlers(self) -> list[Handler]:
        """Every log handler, in the order they should run."""
        from handlers.build import BuildHandler
        from handlers.training import TrainingRecords

        return [TrainingRecords(), BuildHandler(self.engine, notify=self.publish_model_update)]

    def publish_model_update(self, update) -> None:
        """Announce an alias move (db.registry.ModelUpdate) on model_update_topic, keyed by model:dataset."""
        self.transport.publish(self.settings.topics.model_updates, update.to_json(), key=update.key.encode())
        self.transport.flush()

    def close(self) -> None:
        """Flush the transport and drop pooled connections."""
        if "transport" in self.__dict__:
            self.transport.close()
        self.engine.dispose()
