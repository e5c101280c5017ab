"""The HTTP API of one process, wired from its App: the API's own engine, the publisher, hot reload."""
from __future__ import annotations

import functools
from typing import Any

from flask import Flask

from modelbus.api.app import create_app
from modelbus.api.context import ApiConfig, ApiParts
from modelbus.api.metrics import KafkaIngestLag, Metrics
from modelbus.api.serving import Serving
from modelbus.app import App
from modelbus.commands.publish import EventPublisher
from modelbus.handlers.serving.predict import dataset_labels
from modelbus.handlers.serving.registry import DbRegistry


def api_config(app: App) -> ApiConfig:
    """The API's settings."""
    s = app.settings
    return ApiConfig(max_message_bytes=s.max_message_bytes, predict_batch=s.predict_batch, api_token=s.api_token,
                     kafka_mode=s.kafka_mode, labels=dataset_labels(s.datasets),
                     live_window=s.live_window, widths=s.declared_widths, typed=s.input_schemas,
                     windows=tuple(s.windows))


def create_api(app: App, *, registry: Any = None, serving: Serving | None = None) -> Flask:
    """The Flask app of `app`; `registry` replaces the database's registry reads (tests)."""
    from modelbus.handlers.workers.updates import reload_targets

    config = api_config(app)
    # Every request reads and writes through the API's engine (timeouts of seconds, circuit
    # breaker); appends still wake this process's followers at once.
    store = app.store.using(app.api_engine)
    metrics = Metrics(store, KafkaIngestLag(app.settings.kafka, app.settings.ingest_group) if config.kafka_mode else None,
                      live_window=config.live_window)
    if serving is None:
        serving = Serving(registry if registry is not None else DbRegistry(app.api_engine),
                          predict_batch=config.predict_batch, labels=config.labels, metrics=metrics,
                          reload_targets=lambda cache: reload_targets(
                              app.settings.kafka if config.kafka_mode else None, app.transport, cache,
                              app.settings.topics.model_updates),
                          recorder=app.recorder(app.api_engine))

    if serving.recorder is not None:
        metrics.watch_recorder(serving.recorder)

    @functools.cache
    def publisher() -> EventPublisher:
        # Made on first use: in Kafka mode it needs the producer.
        return EventPublisher(app.publisher_config, store, app.transport)

    return create_app(ApiParts(config=config, store=store, publisher=publisher, serving=serving, metrics=metrics))
