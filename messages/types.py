"""Typed messages of the bus: training records, commands, raw events and prediction requests."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

BUILD_COMMANDS = {"build_mlp": "mlp", "build_dtr": "dtr", "build_slr": "slr", "build_linear": "linear"}


COMMANDS = (*BUILD_COMMANDS, "promote")


MODEL_KINDS = tuple(BUILD_COMMANDS.values())


# The main metric of each kind (its builder's main_metric): what promotion compares, what pages show.
MAIN_METRICS = {"mlp": "accuracy", "dtr": "accuracy", "slr": "r2", "linear": "r2"}


DEFAULT_DATASET = "default"


# Not frozen: a frozen dataclass's __init__ costs twice as much, and ingest builds one per event.
@dataclass(slots=True)
class Training:
    """A training record: feature values and the label (the last value).

    A payload object (a dataset with typed fields) comes as `fields`; check_record fills
    `features` and `label` from it, in the declared order, once the dataset's schema is known.
    """

    dataset: str
    features: tuple[float | str, ...]
    label: float | str | None
    body: dict[str, Any] = field(compare=False, repr=False)
    fields: dict[str, Any] | None = field(default=None, compare=False)

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
class Feedback:
    """Ground truth for an answered prediction: its id and the true label."""

    prediction_id: str
    label: float | str
    # ANY_DATASET when the feedback does not name one.
    dataset: str
    body: dict[str, Any] = field(compare=False, repr=False)

    type = "feedback"
    name = "feedback"


# The events column of a feedback that did not name its dataset (the join finds it).
ANY_DATASET = ""


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


Event = Training | Command | Feedback | Raw


def event_id(event: Event) -> str | None:
    """The client's idempotency key, if it gave one (a feedback's id names its prediction, so it has none)."""
    if isinstance(event, Feedback):
        return None
    return event.body.get("id")


@dataclass(frozen=True)
class PredictionRequest:
    """A request for one prediction: model, dataset, feature values, optional version.

    A payload object comes as `fields`; the model that answers checks it against its input schema.
    """

    model: str
    dataset: str
    features: tuple[float, ...]
    payload: str
    id: str | None
    version: int | None
    fields: dict[str, Any] | None = None
