"""The HTTP API's query parameters and answers, declared once: the routes read their parameters
through these models and the OpenAPI document is generated from them."""
from __future__ import annotations

from typing import Annotated, Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from modelbus.messages.schemas import (
    Answer,
    Dataset,
    DeadLetterRecord,
    ErrorDetail,
    ModelKind,
    ModelVersionView,
    RequestId,
    StreamKey,
    Version,
    matching,
)
from modelbus.messages.text import INT64_MAX
from modelbus.messages.types import COMMANDS

MAX_PAGE = 1000
# A window page's cursor: end_ms:start_ms:key of the last row of the page before.
WINDOW_CURSOR = r"^-?[0-9]{1,18}:-?[0-9]{1,18}:[\s\S]+$"
DEFAULT_PAGE = 100


class Query(BaseModel):
    """Query parameters: each is optional, and an empty value is refused like any other bad one."""

    model_config = ConfigDict(extra="ignore", frozen=True)


class PageQuery(Query):
    """A page of a list that grows at its end, oldest first."""

    after: int = Field(0, ge=0, le=INT64_MAX,
                       description="Return items after this cursor (position or id): `next` of the previous page.")
    limit: int = Field(DEFAULT_PAGE, ge=1, le=MAX_PAGE, description="Page size.")


class EventQuery(PageQuery):
    """Filters of GET /api/events."""

    type: Optional[Literal["training", "command", "feedback", "raw"]] = Field(None, description="Only events of this type.")
    name: Optional[Literal[("training", *COMMANDS, "feedback", "raw")]] = Field(  # type: ignore[valid-type]
        None, description="Only events of this name (a command's payload, training, feedback or raw).")
    dataset: Optional[Dataset] = Field(None, description="Only events of this dataset (a raw event's stream).")


class WindowQuery(Query):
    """A page of a window's closed rows, ordered by end, key and start."""

    key: Optional[StreamKey] = Field(None, description="Only this key's windows.")
    after: Optional[Annotated[str, StringConstraints(min_length=1, max_length=200), matching(
        WINDOW_CURSOR, "query parameter 'after' must be the `next` of a previous page, got '{value}'")]] = Field(
        None, description="Return rows after this cursor: `next` of the previous page.")
    limit: int = Field(DEFAULT_PAGE, ge=1, le=MAX_PAGE, description="Page size.")


class AlertQuery(Query):
    """Filters of GET /api/alerts: newest first, paged by id."""

    rule: Optional[str] = Field(None, min_length=1, max_length=64, description="Only this rule's alerts.")
    model: Optional[ModelKind] = Field(None, description="Only this model kind.")  # type: ignore[valid-type]
    before: Optional[int] = Field(None, ge=1, le=INT64_MAX,
                                  description="Return alerts older than this id: `next` of the previous page.")
    limit: int = Field(DEFAULT_PAGE, ge=1, le=MAX_PAGE, description="Page size.")


class FeedbackQuery(PageQuery):
    """Filters of GET /api/feedback: oldest first, paged by log position."""

    status: Optional[Literal["joined", "pending", "unmatched", "duplicate", "invalid"]] = Field(
        None, description="Only feedback that ended so.")


class ModelQuery(Query):
    """Filters of GET /api/models/<model>."""

    dataset: Optional[Dataset] = Field(None, description="Only this dataset.")
    builds: int = Field(50, ge=0, le=MAX_PAGE, description="How many build attempts to list, newest first.")


class PredictQuery(Query):
    """Options of the seed's prediction route, read as the fields of a prediction request."""

    dataset: Optional[Dataset] = Field(None, description="Dataset (default 'default').")
    version: Optional[Version] = Field(None, description="Pin a model version instead of production.")
    id: Optional[RequestId] = Field(None, description="Request id echoed in the answer.")


class BuildQuery(Query):
    """Options of the seed's build routes, read as the fields of a build command."""

    dataset: Optional[Dataset] = Field(None, description="Dataset to build (default 'default').")


# --- answers ----------------------------------------------------------------------------------

class Outcome(Answer):
    """What became of one posted event."""

    status: Literal["accepted", "duplicate", "queued", "rejected"] = Field(
        description="accepted into the log, a duplicate of an id already there, queued on event_topic (Kafka "
                    "mode), or rejected (and kept as a dead letter).")
    id: Optional[str] = None
    position: Optional[int] = Field(None, description="Its log position (embedded mode).")
    error: Optional[ErrorDetail] = None


class EventRecord(Answer):
    """A log row with its event."""

    position: int
    id: Optional[str]
    type: Literal["training", "command", "feedback", "raw"]
    name: str
    dataset: str
    source: str
    received_at: str
    event: dict[str, Any] = Field(description="The event as stored (canonical JSON, dataset filled in).")


class WindowRow(Answer):
    """One closed window: its key, bounds and aggregates in declared order (also on window_topic)."""

    window: str
    dataset: str = Field(description="The dataset these rows are feature rows of.")
    key: str
    start: str = Field(description="Window start, ISO 8601 UTC (a session's first event).", examples=["2026-11-23T10:00:00.000Z"])
    end: str = Field(description="Window end, ISO 8601 UTC: exclusive for tumbling and hopping, a session's last event.")
    start_ms: int
    end_ms: int
    columns: list[str] = Field(description="The aggregates' names, in declared order.")
    values: list[Optional[Union[float, int]]] = Field(
        description="The aggregates in declared order; null for min, max or avg of no value.")


class WindowStatusView(Answer):
    """Where a window stands, over every shard."""

    kind: Literal["tumbling", "hopping", "session"]
    stream: str
    watermark: Optional[str] = Field(description="The stream's largest ts minus the grace (ISO 8601); null before any event.")
    closed: int = Field(description="Windows closed (rows).")
    late_events: int = Field(description="Events that arrived for an already-closed window (counted, not dropped silently).")


class WindowPage(Answer):
    """A page of a window's closed rows, and its status."""

    rows: list[WindowRow]
    next: Optional[str] = Field(description="`after` of the next page; null at the end.")
    status: WindowStatusView


class EventPage(Answer):
    """A page of the log."""

    events: list[EventRecord]
    next: Optional[int] = Field(description="`after` of the next page; null at the end.")
    head: int = Field(description="The last position of the log.")


class ErrorPage(Answer):
    """A page of dead letters."""

    errors: list[DeadLetterRecord]
    next: Optional[int] = Field(description="`after` of the next page; null at the end.")
    total: int


class AlertRecord(Answer):
    """One firing of an alert rule (also published on alert_topic in Kafka mode)."""

    rule: str
    subject: str = Field(description="What it fired on: a prediction id, or model/dataset/vN/feedback|predictions/<window>.")
    kind: Literal["prediction", "live_accuracy", "live_mae", "live_rmse", "drift"]
    model: ModelKind  # type: ignore[valid-type]
    dataset: str
    version: Optional[int] = None
    prediction_id: Optional[str] = None
    value: Optional[float] = Field(None, description="The value past the threshold (a probability, a metric, a PSI).")
    detail: str = Field(description="The rule in words.")
    action: Literal["alert", "rebuild"]
    created_at: str
    id: Optional[int] = None


class AlertPage(Answer):
    """A page of alerts, newest first."""

    alerts: list[AlertRecord]
    next: Optional[int] = Field(description="`before` of the next page; null at the end.")
    counts: dict[str, int] = Field(description="Firings per rule, in all.")


class FeedbackRecord(Answer):
    """A feedback event and what became of it."""

    position: int
    prediction_id: str
    dataset: str
    label: Any
    status: Literal["joined", "pending", "unmatched", "duplicate", "invalid"]
    reason: Optional[str]
    model: Optional[str]
    version: Optional[int]
    correct: Optional[bool]
    error: Optional[float] = Field(description="Regressions: the answer minus the label.")
    received_at: str
    joined_at: Optional[str]


class FeedbackPage(Answer):
    """A page of feedback, oldest first."""

    feedback: list[FeedbackRecord]
    next: Optional[int] = Field(description="`after` of the next page; null at the end.")
    counts: dict[str, int] = Field(description="Feedback events per status, in all.")


class Served(Answer):
    """A version this process has in memory."""

    model: ModelKind  # type: ignore[valid-type]
    dataset: str
    version: int
    uuid: str


class ModelSummary(Answer):
    """One model and dataset."""

    model: ModelKind  # type: ignore[valid-type]
    dataset: str
    production: Optional[int]
    versions: int
    latest: int
    production_version: Optional[ModelVersionView]


class ModelList(Answer):
    """Every model and dataset, and what this process serves."""

    models: list[ModelSummary]
    serving: list[Served]


class DatasetVersions(Answer):
    """The versions of a model on one dataset."""

    dataset: str
    production: Optional[int]
    versions: list[ModelVersionView]


class BuildRecord(Answer):
    """One build attempt."""

    position: int
    event_id: str
    model: ModelKind  # type: ignore[valid-type]
    dataset: str
    status: Literal["ok", "failed"]
    reason: Optional[str]
    version: Optional[int]
    params: Optional[dict[str, Any]]
    n_events: Optional[int]
    requested_at: str
    started_at: str
    finished_at: str
    load_seconds: Optional[float]
    fit_seconds: Optional[float]


class ModelDetail(Answer):
    """One model's versions per dataset and its recent build attempts."""

    model: ModelKind  # type: ignore[valid-type]
    datasets: list[DatasetVersions]
    builds: list[BuildRecord]


class Health(Answer):
    """The process is up and its database answers."""

    status: Literal["ok"]
    mode: Literal["embedded", "kafka"]
    log_head: int
    serving: list[str] = Field(description="model/dataset/vN of each version in memory.")


class DatasetSchemaView(Answer):
    """What a dataset's payloads look like: its typed fields when it declares them, and their JSON Schemas."""

    dataset: str
    declared: bool = Field(description="Declared in the settings (else learned from its first training record).")
    features: Optional[int] = Field(description="Feature count; null for an undeclared dataset with no records yet.")
    input_schema: Optional[dict[str, Any]] = Field(
        description="The typed fields: features (name and type, in order) and the label; null for a numeric dataset.")
    training_payload: Optional[dict[str, Any]] = Field(description="JSON Schema of a training event's payload.")
    prediction_payload: Optional[dict[str, Any]] = Field(description="JSON Schema of a prediction request's payload.")


class SchemaList(Answer):
    """The names /api/schemas/<name> serves."""

    schemas: list[str]


# --- the dashboard's routes -------------------------------------------------------------------


class DeadLetterQuery(PageQuery):
    """A page of dead letters, optionally of one reason."""

    code: Optional[str] = Field(None, min_length=1, max_length=32,
                                description="Only dead letters with this reason (error code).")


class HistoryQuery(Query):
    """Which model histories to return."""

    model: Optional[ModelKind] = Field(None, description="Only this model kind.")  # type: ignore[valid-type]
    dataset: Optional[Dataset] = Field(None, description="Only this dataset.")


class VerifyQuery(Query):
    """The dataset of the version to verify."""

    dataset: Optional[Dataset] = Field(None, description="Dataset (default 'default').")


class BuildRequest(BaseModel):
    """The body of POST /api/models/<model>/build: the build command's optional dataset and params."""

    model_config = ConfigDict(extra="forbid")

    dataset: Optional[Dataset] = Field(None, description="Dataset to build (default 'default').")
    params: Optional[dict[str, Any]] = Field(None, description="Build params (see /api/schemas/<model>_params).")


class PromoteRequest(BaseModel):
    """The body of POST /api/models/<model>/promote: the version to make production."""

    model_config = ConfigDict(extra="forbid")

    version: Version  # type: ignore[valid-type]
    dataset: Optional[Dataset] = Field(None, description="Dataset (default 'default').")


class VerifyState(Answer):
    """This process's latest verify of a version."""

    state: Literal["never", "queued", "running", "ok", "mismatch", "failed"]
    differences: Optional[list[str]] = None
    notes: Optional[list[str]] = None
    error: Optional[str] = None
    requested_at: Optional[str] = None
    started_at: Optional[str] = None
    finished_at: Optional[str] = None
    seconds: Optional[float] = None
