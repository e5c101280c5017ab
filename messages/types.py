"""Typed messages of the bus: training records, commands, raw events and prediction requests."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

BUILD_COMMANDS = {"build_mlp": "mlp", "build_slr": "slr", "build_linear": "linear"}


COMMANDS = (*BUILD_COMMANDS, "promote")


MODEL_KINDS = tuple(BUILD_COMMANDS.values())


DEFAULT_DATASET = "default"


# Not frozen: a frozen dataclass's __init__ costs twice as much, and ingest builds one per event.
@dataclass(slots=True)
class Training:
    """A training record: feature values and the label (the last value)."""

    dataset: str
    features: tuple[float, ...]
    label: float
    body: dict[str, Any] = field(compare=False, repr=False)

    type = "training"
    name = "training"

    @property
    def values(self) -> int:
        """How many values the payload carries (features plus the label)."""
        return len(self.features) + 1


@dataclass(slots=True)
class Command:
    """A command: build a model of a kind, or move the production alias."""

    name: str
    dataset: str
    params: dict[str, Any] | None
    model: str | None
    version: int | None
    body: dict[str, Any] = field(compare=False, repr=False)

    type = "command"

    @property
    def kind(self) -> str | None:
        """The model kind a build command builds (None for promote)."""
        return BUILD_COMMANDS.get(self.name)


@dataclass(slots=True)
class Raw:
    """A raw event of a stream: a key, its event time in epoch milliseconds, and flat fields."""

    stream: str
    key: str
    ts_ms: int
    fields: dict[str, Any]
    body: dict[str, Any] = field(compare=False, repr=False)

    type = "raw"
    name = "raw"

    @property
    def dataset(self) -> str:
        """The log's dataset column holds a raw event's stream (reads filter on it)."""
        return self.stream


Event = Training | Command | Raw


def event_id(event: Event) -> str | None:
    """The client's idempotency key, if it gave one."""
    return event.body.get("id")


@dataclass(frozen=True)
class PredictionRequest:
    """A request for one prediction: model, dataset, feature values, optional version."""

    model: str
    dataset: str
    features: tuple[float, ...]
    payload: str
    id: str | None
    version: int | None
