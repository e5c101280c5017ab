"""Assembles the parts for a process: store, transport, publisher, handlers."""
from __future__ import annotations

import logging
from datetime import timedelta
from functools import cached_property

from sqlalchemy import Engine

from modelbus.commands.kafka import kafka_transport
from modelbus.commands.publish import EventPublisher, PublisherConfig
from modelbus.commands.transport import InProcessTransport, Transport
from modelbus.db.engine import DbTimeouts, is_sqlite, make_engine
from modelbus.db.events import EventStore, Schemas
from modelbus.db.migrate import upgrade
from modelbus.handlers.log.base import Handler
from modelbus.messages.jsonutil import canonical_json, compact_json
from modelbus.settings import Settings

log = logging.getLogger(__name__)

# Connections the API's engine holds besides one per server thread: the serving cache's
# reload threads and, in `modelbus up`, the Kafka predictor read the registry through it.
API_EXTRA_CONNECTIONS = 4


class App:
    """The parts one modelbus process shares, built lazily from its settings."""

    def __init__(self, settings: Settings, *, migrate: bool = True):
        self.settings = settings
        self._migrate = migrate

    @cached_property
    def engine(self) -> Engine:
        """The database of workers, the CLI and migrations, opened (and migrated) on first use."""
        settings = self.settings
        engine = make_engine(settings.database_url, DbTimeouts(
            connect=settings.db_connect_timeout, io=settings.db_timeout, pool=settings.db_pool_timeout))
        if self._migrate:
            upgrade(engine)
        return engine

    @cached_property
    def store(self) -> EventStore:
        """The event log on `engine`, with the declared datasets' widths."""
        return EventStore(self.engine, Schemas(declared=self.settings.declared_widths, auto=self.settings.auto_datasets,
                                                typed=self.settings.input_schemas))

    @cached_property
    def api_engine(self) -> Engine:
        """The engine of HTTP requests (and of the serving cache's registry reads) on MySQL.

        Its own engine, because no one set of timeouts suits both: a worker may legitimately
        wait minutes on one statement (the migration lock, a lock wait behind another
        appender, replay emptying a large projection) and a frozen database costs it only a
        pause, while an HTTP caller and a server thread must not wait more than a few
        seconds. So: api_db_timeout for every read and write and for connecting, and a
        circuit breaker that refuses at once while the server is known not to answer, so
        after the first timeout no request holds a server thread on it. A connection per
        server thread (and a few for the reload threads) means a healthy burst never waits
        for the pool; api_db_pool_timeout bounds the wait when it would. SQLite has no
        server to freeze: the API shares the one engine.
        """
        if is_sqlite(self.engine):
            return self.engine
        s = self.settings
        timeouts = DbTimeouts(connect=min(s.db_connect_timeout, s.api_db_timeout), io=s.api_db_timeout,
                              pool=s.api_db_pool_timeout)
        return make_engine(s.database_url, timeouts, breaker=True,
                           pool_size=s.api_threads + API_EXTRA_CONNECTIONS)

    @cached_property
    def transport(self) -> Transport:
        """Kafka when a bootstrap is configured, else the in-process transport."""
        if self.settings.kafka_bootstrap:
            return kafka_transport(self.settings.kafka)
        return InProcessTransport()

    @property
    def publisher_config(self) -> PublisherConfig:
        """What the publisher needs of the settings."""
        s = self.settings
        return PublisherConfig(kafka_mode=s.kafka_mode, events_topic=s.topics.events, errors_topic=s.topics.errors,
                               max_message_bytes=s.max_message_bytes, declared_widths=s.declared_widths,
                               typed=s.input_schemas)

    @cached_property
    def publisher(self) -> EventPublisher:
        """Where the entry points post events."""
        return EventPublisher(self.publisher_config, self.store, self.transport)

    @cached_property
    def client_publisher(self) -> EventPublisher:
        """The CLI's publisher: in Kafka mode it needs no database (the worker checks what needs the log)."""
        if self.settings.kafka_mode:
            return EventPublisher(self.publisher_config, None, self.transport)
        return self.publisher

    def handlers(self) -> list[Handler]:
        """Every log handler, in the order they should run."""
        from modelbus.handlers.log.build import BuildHandler
        from modelbus.handlers.log.feedback import FeedbackJoin
        from modelbus.handlers.log.training import TrainingRecords

        return [TrainingRecords(self.settings.input_schemas), BuildHandler(self.engine, datasets=self.settings.input_schemas,
                                                notify=self.publish_model_update,
                                                announce=self.publish_build_outcome,
                                                min_test_rows=self.settings.promotion_min_test_rows),
                FeedbackJoin(self.feedback_config, self.store.schemas), *self.window_handlers()]

    @property
    def feedback_config(self):
        """How feedback joins predictions (handlers.log.feedback.FeedbackConfig)."""
        from modelbus.handlers.log.feedback import FeedbackConfig

        s = self.settings
        return FeedbackConfig(join_window=timedelta(seconds=s.feedback_join_window_seconds),
                              to_training=s.feedback_to_training)

    def recorder(self, engine: Engine):
        """A prediction recorder writing through `engine`, or None when recording is off."""
        from modelbus.handlers.serving.record import PredictionRecorder

        if not self.settings.record_predictions:
            return None
        return PredictionRecorder(engine, rules=self.settings.alerts, announce=self.publish_alert)

    def monitor(self):
        """The after-deployment loop of a process that follows the log (handlers.serving.monitor.Monitor)."""
        from modelbus.handlers.serving.monitor import Monitor, MonitorConfig

        s = self.settings
        config = MonitorConfig(interval=s.monitor_interval, retention=timedelta(days=s.prediction_retention_days))
        return Monitor(self.engine, config, self.feedback_config, self.store.schemas, s.alerts, self.publish_alert)

    def publish_alert(self, alert: dict) -> None:
        """Announce a new alert on alert_topic, keyed by its rule."""
        self.transport.publish(self.settings.topics.alerts, canonical_json(alert).encode(), key=alert["rule"].encode())
        self.transport.flush()

    def window_handlers(self, sinks: list | None = None) -> list[Handler]:
        """One window handler per shard this process follows (none without declared windows).

        `sinks` (handlers.log.windows.WindowSink) are told about every committed closed window;
        by default window_topic's publisher and, when a window names a model, its predictor.
        """
        from modelbus.handlers.log.windows import TopicSink, WindowHandler

        s = self.settings
        if not s.windows:
            return []
        if sinks is None:
            sinks = [TopicSink(self.publish_window, self.transport.flush, s.windows)]
            if any(w.model for w in s.windows):
                sinks.append(self.window_predictor())
        return [WindowHandler(s.windows, shard=shard, shards=s.window_shards, sinks=sinks)
                for shard in s.owned_window_shards]

    def window_predictor(self):
        """Predicts closed windows with their model, records and publishes the answers (handlers.serving.windows)."""
        from modelbus.handlers.serving.cache import ModelCache
        from modelbus.handlers.serving.predict import dataset_labels
        from modelbus.handlers.serving.registry import DbRegistry
        from modelbus.handlers.serving.windows import WindowPredictor

        return WindowPredictor(ModelCache(DbRegistry(self.engine)), self.settings.windows, self.publish_answer,
                               recorder=self.recorder(self.engine), labels=dataset_labels(self.settings.datasets))

    def publish_answer(self, answer: dict) -> None:
        """Put one answer on prediction_response_topic, keyed by its id, as the predictor does."""
        self.transport.publish(self.settings.topics.prediction_responses, compact_json(answer).encode(),
                               key=str(answer.get("id") or "").encode())
        self.transport.flush()

    def publish_window(self, message: bytes, key: bytes) -> None:
        """Put one closed window on window_topic, keyed by its key (flushed once per batch)."""
        self.transport.publish(self.settings.topics.windows, message, key=key)

    def publish_model_update(self, update) -> None:
        """Announce an alias move (db.registry.ModelUpdate) on model_update_topic, keyed by model:dataset."""
        self.transport.publish(self.settings.topics.model_updates, update.to_json(), key=update.key.encode())
        self.transport.flush()

    def publish_build_outcome(self, report: dict) -> None:
        """Announce what came of a build command on build_outcome_topic, keyed by the command's event id."""
        self.transport.publish(self.settings.topics.build_outcomes, canonical_json(report).encode(), key=report["id"].encode())
        self.transport.flush()

    def close(self) -> None:
        """Flush the transport and drop pooled connections."""
        if "transport" in self.__dict__:
            self.transport.close()
        if "api_engine" in self.__dict__ and self.api_engine is not self.__dict__.get("engine"):
            self.api_engine.dispose()
        if "engine" in self.__dict__:
            self.engine.dispose()
