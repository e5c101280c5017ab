"""What the API is built from: a small config and the parts it calls, handed over by the wiring."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from flask import current_app

from modelbus.commands.publish import EventPublisher
from modelbus.db.events import EventStore
from modelbus.messages.datasets import InputSchema
from modelbus.messages.windows import WindowSpec

# A list body (many events or many predictions) may hold this many messages' worth of bytes.
BATCH_BODY_FACTOR = 64
EXTENSION = "modelbus.api"


@dataclass(frozen=True)
class ApiConfig:
    """The settings the API reads."""

    max_message_bytes: int = 64 * 1024
    predict_batch: int = 256
    api_token: str | None = None
    kafka_mode: bool = False
    labels: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    # Live metrics and drift over the last this many joined feedbacks / recorded predictions.
    live_window: int = 500
    # Values (features plus label) of each declared dataset, and the typed fields of those that declare them.
    widths: Mapping[str, int] = field(default_factory=dict)
    typed: Mapping[str, InputSchema] = field(default_factory=dict)
    windows: Sequence[WindowSpec] = ()


@dataclass
class ApiParts:
    """The objects the routes use; `publisher` is called on first use (in Kafka mode it opens a producer)."""

    config: ApiConfig
    store: EventStore
    publisher: Callable[[], EventPublisher]
    serving: Any  # modelbus.api.serving.Serving
    metrics: Any  # modelbus.api.metrics.Metrics


def parts() -> ApiParts:
    """The parts of the app handling the current request."""
    return current_app.extensions[EXTENSION]
