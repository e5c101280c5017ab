"""Every message of the bus, declared once: the parser validates with these models, and the API's
OpenAPI document and /api/schemas/<name> are generated from them.

Validators raise Rejected with our codes; pydantic's own errors (a missing or unknown field, a
wrong type, a bound) are mapped to the codes in one place, errors.rejected_from. The field order
of an event or request model is the order its rules are checked in: a message breaking several
rules is refused for the first.
"""
from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone
from typing import Annotated, Any, ClassVar, Literal, Mapping, Optional, Union

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    PlainValidator,
    StringConstraints,
    Tag,
    ValidationInfo,
)

from modelbus.messages.errors import PATTERN_MESSAGES, Rejected, int64_range_error
from modelbus.messages.text import INT64_MAX, INT64_MIN, field_name, int_text, json_type, shorten, shown
from modelbus.messages.types import BUILD_COMMANDS, COMMANDS, MODEL_KINDS
from modelbus.messages.values import MAX_VALUES, PLAIN_NUMBER, SPACE, parse_values

MAX_ID_CHARS = 128
# A category label (feedback, typed datasets) longer than this is refused.
MAX_LABEL_CHARS = 256
# Versions live in the registry's INT columns; a larger one would fail every apply (MySQL 1264).
VERSION_MAX = 2**31 - 1
# Ids of the events modelbus appends itself (automatic promotions, training events made from
# feedback, rebuilds asked by alert rules): a client id like these would silently suppress
# one of them (its event would look like a duplicate).
RESERVED_ID_PREFIXES = ("auto-promote:", "feedback:", "alert:")
SYSTEM = {"system": True}


def matching(pattern: str, message: str) -> StringConstraints:
    """A pattern a string must match (checked by pydantic, shown in the JSON Schema) and the message when it does not."""
    PATTERN_MESSAGES[pattern] = message
    return StringConstraints(pattern=pattern)


def _system(info: ValidationInfo) -> bool:
    """True when validating an event modelbus wrote itself or re-reads from its log."""
    return info.context is not None and info.context.get("system", False)


# --- fields -------------------------------------------------------------------------------

DATASET_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$"
Dataset = Annotated[
    str,
    StringConstraints(min_length=1, max_length=64),
    matching(DATASET_PATTERN,
             "dataset '{value}' must be letters, digits, '_', '.' or '-' and start with a letter or digit"),
    Field(description="Dataset name; every dataset has its own feature count and models.", examples=["default"]),
]
ModelKind = Annotated[Literal[MODEL_KINDS], Field(description="Model kind.")]  # type: ignore[valid-type]
BuildName = Literal[tuple(BUILD_COMMANDS)]  # type: ignore[valid-type]


def _integral(value: Any) -> Any:
    # JSON has one number type and JSON Schema calls 2.0 an integer: take it as 2.
    if type(value) is float and value.is_integer():
        return int(value)
    return value


Version = Annotated[int, Field(ge=1, le=VERSION_MAX, description="Model version (1, 2, ...)."), BeforeValidator(_integral)]
RequestId = Annotated[str, StringConstraints(min_length=1, max_length=MAX_ID_CHARS)]


# What str.strip() strips, as a regex class the JSON Schema can carry (\s differs between engines).
_WHITESPACE = "".join(f"\\u{ord(c):04x}" for c in map(chr, range(0x10000)) if c.isspace())
ID_PATTERN = rf"^[^{_WHITESPACE}](?:[\s\S]*[^{_WHITESPACE}])?$"


def _event_id(value: str, info: ValidationInfo) -> str:
    # MySQL compares ids with PAD SPACE: "x" and "x " would be one key there and two here.
    if value != value.strip():
        raise Rejected("bad_field", "field 'id' must not begin or end with whitespace")
    if value.startswith(RESERVED_ID_PREFIXES) and not _system(info):
        raise Rejected("bad_field", f"ids starting with '{value.split(':')[0]}:' are reserved for modelbus itself")
    return value


EventId = Annotated[
    str,
    StringConstraints(min_length=1, max_length=MAX_ID_CHARS),
    AfterValidator(_event_id),
    Field(description="Idempotency key: a second event with the same id is a duplicate and is not stored again. "
                      "No leading or trailing whitespace; ids starting with 'auto-promote:', 'feedback:' or 'alert:' "
                      "are reserved.",
          json_schema_extra={"pattern": ID_PATTERN,
                             "not": {"anyOf": [{"pattern": f"^{prefix}"} for prefix in RESERVED_ID_PREFIXES]}}),
]


def _ts(value: Any, info: ValidationInfo) -> Any:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        # A decoded message cannot hold these; an object built in Python can, and the
        # stored body must stay the JSON any reader of the log can parse.
        if isinstance(value, float) and not math.isfinite(value):
            raise Rejected("not_finite", f"field 'ts' {value} is not a finite number")
        if isinstance(value, int) and not INT64_MIN <= value <= INT64_MAX and not _system(info):
            raise int64_range_error("field 'ts'", int_text(value))
        return value
    if not isinstance(value, str) or len(value) > 64:
        raise Rejected("bad_field", "field 'ts' must be a number or a string of at most 64 characters")
    return value


Timestamp = Annotated[
    Any,
    PlainValidator(_ts, json_schema_input_type=Union[float, Annotated[str, StringConstraints(max_length=64)]]),
    Field(description="Event time, kept as given: a string, or a finite number (an integer within signed 64-bit)."),
]


# Event time of a raw event: ISO 8601 with an offset, or epoch milliseconds; kept as milliseconds.
# The JSON Schema's pattern is narrower than what the parser reads (datetime.fromisoformat with an
# offset): years 1000 to 9999, days up to 28, so that every string it admits is a valid time.
ISO_TIME_PATTERN = (r"^[1-9][0-9]{3}-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]"
                    r"(\.[0-9]{1,6})?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$")
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
EVENT_TIME_MIN_MS = (datetime(1, 1, 1, tzinfo=timezone.utc) - _EPOCH) // timedelta(milliseconds=1)
EVENT_TIME_MAX_MS = (datetime(9999, 12, 31, 23, 59, 59, 999000, tzinfo=timezone.utc) - _EPOCH) // timedelta(milliseconds=1)


def event_time_ms(value: Any) -> int:
    """A raw event's `ts` as epoch milliseconds: an ISO 8601 string with an offset, or an integer of milliseconds."""
    value = _integral(value)
    if isinstance(value, int) and not isinstance(value, bool):
        if not EVENT_TIME_MIN_MS <= value <= EVENT_TIME_MAX_MS:
            raise Rejected("out_of_range", f"field 'ts' is {int_text(value)} ms, outside years 1 to 9999")
        return value
    if isinstance(value, float):
        raise Rejected("bad_field", f"field 'ts' must be whole epoch milliseconds, got {shown(value)}")
    if not isinstance(value, str):
        raise Rejected("bad_field", f"field 'ts' must be an ISO 8601 string or epoch milliseconds, got {json_type(value)}")
    if len(value) > 64:
        raise Rejected("bad_field", f"field 'ts' must have at most 64 characters, got {len(value)}")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise Rejected("bad_field", f"field 'ts' '{shorten(value, 40)}' is not an ISO 8601 time") from None
    if moment.tzinfo is None:
        raise Rejected("bad_field", f"field 'ts' '{shorten(value, 40)}' has no UTC offset (add Z or +hh:mm)")
    ms = (moment - _EPOCH) // timedelta(milliseconds=1)
    if not EVENT_TIME_MIN_MS <= ms <= EVENT_TIME_MAX_MS:
        raise Rejected("out_of_range", f"field 'ts' '{shorten(value, 40)}' is outside years 1 to 9999 in UTC")
    return ms


EventTime = Annotated[
    int,
    PlainValidator(lambda value: event_time_ms(value),
                   json_schema_input_type=Union[Annotated[int, Field(ge=EVENT_TIME_MIN_MS, le=EVENT_TIME_MAX_MS)],
                                                Annotated[str, StringConstraints(pattern=ISO_TIME_PATTERN)]]),
    Field(description="Event time: ISO 8601 with an offset (\"2026-11-23T10:00:03Z\") or epoch milliseconds.",
          examples=["2026-11-23T10:00:03Z", 1795428003000]),
]

MAX_RAW_FIELDS = 100
MAX_FIELD_TEXT = 1024
FIELD_NAME_MAX = 64


def _raw_fields(value: Any, info: ValidationInfo) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise Rejected("bad_field", f"field 'fields' must be an object, got {json_type(value)}")
    if len(value) > MAX_RAW_FIELDS:
        raise Rejected("bad_field", f"field 'fields' has {len(value)} fields; the limit is {MAX_RAW_FIELDS}")
    for name, item in value.items():
        where = f"field 'fields.{field_name(name)}'"
        if not 0 < len(name) <= FIELD_NAME_MAX:
            raise Rejected("bad_field", f"field names in 'fields' must have 1 to {FIELD_NAME_MAX} characters, got {len(name)}")
        if isinstance(item, bool):
            continue
        if isinstance(item, int):
            if not INT64_MIN <= item <= INT64_MAX and not _system(info):
                raise int64_range_error(where, int_text(item))
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise Rejected("not_finite", f"{where} {item} is not a finite number")
        elif isinstance(item, str):
            if len(item) > MAX_FIELD_TEXT:
                raise Rejected("bad_field", f"{where} must have at most {MAX_FIELD_TEXT} characters, got {len(item)}")
        else:
            raise Rejected("bad_field", f"{where} must be a number, a string or a boolean, got {json_type(item)}")
    return value


_FieldValue = Union[bool, float, Annotated[str, StringConstraints(max_length=MAX_FIELD_TEXT)]]
RawFields = Annotated[
    dict[str, Any],
    PlainValidator(_raw_fields, json_schema_input_type=Annotated[
        dict[Annotated[str, StringConstraints(min_length=1, max_length=FIELD_NAME_MAX)], _FieldValue],
        Field(max_length=MAX_RAW_FIELDS)]),
    Field(description="Flat fields: numbers (integers within signed 64-bit), strings or booleans; no nesting, no null."),
]


def _window_key(value: str) -> str:
    # MySQL compares keys with PAD SPACE: "u1" and "u1 " would be one window there and two here.
    if value != value.strip():
        raise Rejected("bad_field", "field 'key' must not begin or end with whitespace")
    return value


StreamKey = Annotated[
    str,
    StringConstraints(min_length=1, max_length=MAX_ID_CHARS),
    AfterValidator(_window_key),
    Field(description="What windows group by (a user id): no leading or trailing whitespace.",
          json_schema_extra={"pattern": ID_PATTERN}),
]
# The dataset rule, written apart so errors name a stream (patterns key their messages).
STREAM_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
Stream = Annotated[
    str,
    StringConstraints(min_length=1, max_length=64),
    matching(STREAM_PATTERN, "stream '{value}' must be letters, digits, '_', '.' or '-' and start with a letter or digit"),
    Field(description="The stream the event belongs to; windows are declared per stream.", examples=["pageviews"]),
]


def csv_pattern(min_values: int) -> str:
    """The pattern of a CSV payload of at least `min_values` numbers, as the JSON Schema shows it.

    Narrower than what the parser reads (an integer part of at most 18 digits, an exponent of at
    most two digits), so that every string it admits is accepted: the parser's exact rule (finite,
    and an integer within int64) is not a regular language.
    """
    return rf"^{SPACE}{PLAIN_NUMBER}{SPACE}(?:,{SPACE}{PLAIN_NUMBER}{SPACE}){{{min_values - 1},}}$"


def _payload_schema(min_values: int) -> Any:
    # JSON Schema cannot tell an integer literal (bounded by int64) from a float one (bounded by
    # double): "number" it is, and the descriptions say the rest.
    number = Union[float, Annotated[str, StringConstraints(pattern=rf"^{SPACE}{PLAIN_NUMBER}{SPACE}$")]]
    return Union[
        Annotated[str, StringConstraints(pattern=csv_pattern(min_values)),
                  Field(description="Values as CSV, e.g. \"3,4,5\".")],
        Annotated[list[number], Field(min_length=min_values, max_length=MAX_VALUES)],
        Annotated[dict[str, Union[str, float, bool, None]],
                  Field(min_length=1, max_length=MAX_VALUES,
                        description="Values keyed by field name, for a dataset that declares typed fields "
                                    "(GET /api/datasets/<name>/schema).")],
    ]


def _fields(value: dict[str, Any]) -> dict[str, Any]:
    """A payload object's shape (the dataset's declaration checks its fields and types later)."""
    if not value:
        raise Rejected("bad_field", "payload is an empty object")
    if len(value) > MAX_VALUES:
        raise Rejected("bad_field", f"payload has {len(value)} fields; the limit is {MAX_VALUES}")
    for key, item in value.items():
        if isinstance(item, (dict, list)):
            raise Rejected("bad_field", f"payload.{field_name(key)}: expected a single value, got {json_type(item)}")
    return value


def _training_values(value: Any, info: ValidationInfo) -> tuple[float, ...] | dict[str, Any]:
    if isinstance(value, dict):
        return _fields(value)
    values = parse_values(value, bounded=not _system(info))
    if len(values) < 2:
        raise Rejected("bad_field", f"payload has {len(values)} value; a training record needs features and a label")
    return values


def _request_values(value: Any) -> tuple[float, ...] | dict[str, Any]:
    if isinstance(value, dict):
        return _fields(value)
    return parse_values(value)


TrainingValues = Annotated[
    tuple[float, ...],
    PlainValidator(_training_values, json_schema_input_type=_payload_schema(2)),
    Field(description="Feature values then the label: CSV text (\"3,4,5,6\") or an array of numbers; finite, "
                      f"integers within signed 64-bit, at most {MAX_VALUES} values. A dataset with typed fields "
                      "takes an object keyed by field name, the label included."),
]
Features = Annotated[
    tuple[float, ...],
    PlainValidator(_request_values, json_schema_input_type=_payload_schema(1)),
    Field(description="Feature values: CSV text (\"3,4,5\") or an array of numbers; the count must be the model's. "
                      "A model of a dataset with typed fields takes an object keyed by field name."),
]


def _params(params: Any, info: ValidationInfo) -> Optional[dict[str, Any]]:
    """An object of params, without numbers JSON from the bus could not carry (objects built in Python can)."""
    if params is None:
        return None
    if not isinstance(params, dict):
        raise Rejected("bad_field", f"field 'params' must be an object, got {json_type(params)}")
    if not params or _system(info):
        return params
    stack: list[tuple[str, Any]] = [("params", params)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, dict):
            stack.extend(reversed([(f"{path}.{key}", item) for key, item in value.items()]))
        elif isinstance(value, list):
            stack.extend(reversed([(f"{path}[{i}]", item) for i, item in enumerate(value)]))
        elif isinstance(value, bool):
            continue
        elif isinstance(value, int) and not INT64_MIN <= value <= INT64_MAX:
            raise int64_range_error(f"field '{path}'", int_text(value))
        elif isinstance(value, float) and not math.isfinite(value):
            raise Rejected("not_finite", f"field '{path}' {value} is not a finite number")
    return params


def _no_params(value: Any) -> None:
    if value is not None and not isinstance(value, dict):
        raise Rejected("bad_field", f"field 'params' must be an object, got {json_type(value)}")
    if value is not None:
        raise Rejected("bad_field", "field 'params' belongs to build commands, not to promote")
    return None


# --- event_topic --------------------------------------------------------------------------

_UNKNOWN_COMMAND = ("unknown_command", f"command '{{value}}' is unknown (known: {', '.join(sorted(COMMANDS))})")
_UNKNOWN_MODEL = ("unknown_model", f"model '{{value}}' is unknown (known: {', '.join(sorted(MODEL_KINDS))})")
UNKNOWN_TYPE = ("unknown_type", "type '{value}' is unknown (expected 'training', 'command', 'feedback' or 'raw')")


class Message(BaseModel):
    """A message a client sends: strict JSON types, no unknown fields."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)
    # How errors name the message, the field before which unknown fields are reported, the
    # fields that belong to a sibling message, and the codes of an unknown name by field.
    what: ClassVar[str] = "a message"
    unknown_before: ClassVar[Optional[str]] = None
    foreign: ClassVar[Mapping[str, str]] = {}
    names: ClassVar[Mapping[str, tuple[str, str]]] = {}


class _Event(Message):
    unknown_before: ClassVar[Optional[str]] = "payload"

    id: Optional[EventId] = None
    ts: Optional[Timestamp] = None
    dataset: Optional[Dataset] = Field(None, description="Default 'default'.")


class TrainingEvent(_Event):
    """A training record: feature values then the label (event_topic, POST /api/events)."""

    model_config = ConfigDict(title="TrainingEvent", json_schema_extra={"examples": [
        {"type": "training", "payload": "3,4,5,6"}]})
    what: ClassVar[str] = "a training event"

    type: Literal["training"]
    payload: TrainingValues


class BuildCommand(_Event):
    """Build a model of a kind from every training event of the dataset before this command."""

    model_config = ConfigDict(title="BuildCommand", json_schema_extra={"examples": [
        {"type": "command", "payload": "build_mlp", "params": {"epochs": 300, "hidden": [32, 32]}}]})
    what: ClassVar[str] = "a command"
    foreign: ClassVar[Mapping[str, str]] = {"model": "promote", "version": "promote"}
    names: ClassVar[Mapping[str, tuple[str, str]]] = {"payload": _UNKNOWN_COMMAND}

    type: Literal["command"]
    payload: BuildName  # type: ignore[valid-type]
    params: Annotated[Optional[dict[str, Any]], PlainValidator(_params, json_schema_input_type=Optional[dict[str, Any]])] = Field(
        None, description="Build params, checked by the builder when it runs (a bad one fails the build, "
                          "the event is stored): see /api/schemas/mlp_params, dtr_params, slr_params, linear_params.")


class PromoteCommand(_Event):
    """Move the production alias of (model, dataset) to a version."""

    model_config = ConfigDict(title="PromoteCommand", json_schema_extra={"examples": [
        {"type": "command", "payload": "promote", "model": "mlp", "version": 3}]})
    what: ClassVar[str] = "a command"
    names: ClassVar[Mapping[str, tuple[str, str]]] = {"payload": _UNKNOWN_COMMAND, "model": _UNKNOWN_MODEL}

    type: Literal["command"]
    payload: Literal["promote"]
    params: Annotated[None, PlainValidator(_no_params, json_schema_input_type=None)] = None
    model: ModelKind  # type: ignore[valid-type]
    version: Version


def _feedback_label(value: Any) -> float | str:
    # The dataset's label type is checked when the feedback is joined with its prediction:
    # only then is the dataset (and so its label type) known for sure.
    if isinstance(value, str):
        if not 1 <= len(value) <= MAX_LABEL_CHARS:
            raise Rejected("bad_field", f"field 'label' must be 1 to {MAX_LABEL_CHARS} characters")
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise Rejected("bad_field", f"field 'label' must be a number or a string, got {json_type(value)}")
    if isinstance(value, float) and not math.isfinite(value):
        raise Rejected("not_finite", f"field 'label' {value} is not a finite number")
    if isinstance(value, int) and not INT64_MIN <= value <= INT64_MAX:
        raise int64_range_error("field 'label'", int_text(value))
    return value


FeedbackLabel = Annotated[
    Any,
    PlainValidator(_feedback_label, json_schema_input_type=Union[float, Annotated[str, StringConstraints(
        min_length=1, max_length=MAX_LABEL_CHARS)]]),
    Field(description="The true label: a number, or a string for a dataset whose label is a category."),
]


class FeedbackEvent(Message):
    """Ground truth for an answered prediction, joined with it by the prediction's id."""

    model_config = ConfigDict(title="FeedbackEvent", json_schema_extra={"examples": [
        {"type": "feedback", "id": "r1", "label": 7}]})
    what: ClassVar[str] = "a feedback event"
    unknown_before: ClassVar[Optional[str]] = "label"

    type: Literal["feedback"]
    id: RequestId = Field(description="The id of the prediction this is the truth for (every answer carries one). "
                                      "Not an idempotency key: a second feedback for one prediction is kept "
                                      "and reported as a duplicate.")
    label: FeedbackLabel
    dataset: Optional[Dataset] = Field(None, description="Optional: the prediction's dataset, checked at the join.")
    ts: Optional[Timestamp] = None


class RawEvent(Message):
    """A raw event of a stream, the input of windows (event_topic, POST /api/events)."""

    model_config = ConfigDict(title="RawEvent", json_schema_extra={"examples": [
        {"type": "raw", "stream": "pageviews", "key": "u1", "ts": "2026-11-23T10:00:03Z",
         "fields": {"event": "product_page", "amount": 3.5}}]})
    what: ClassVar[str] = "a raw event"
    unknown_before: ClassVar[Optional[str]] = "stream"

    type: Literal["raw"]
    id: Optional[EventId] = None
    stream: Stream
    key: StreamKey
    ts: EventTime
    fields: RawFields = Field(default_factory=dict)


def event_tag(value: Any) -> Optional[str]:
    """Which event model a message is, by its type (and a command's payload)."""
    if not isinstance(value, dict):
        return None
    kind = value.get("type")
    if kind in ("training", "feedback", "raw"):
        return kind
    if kind == "command":
        name = value.get("payload")
        return "promote" if name == "promote" else "build"
    return None


Event = Annotated[
    Union[Annotated[TrainingEvent, Tag("training")], Annotated[BuildCommand, Tag("build")],
          Annotated[PromoteCommand, Tag("promote")], Annotated[FeedbackEvent, Tag("feedback")],
          Annotated[RawEvent, Tag("raw")]],
    Discriminator(event_tag),
]


# --- prediction_request_topic / prediction_response_topic -----------------------------------

class PredictionRequest(Message):
    """A request for one prediction (prediction_request_topic, POST /api/predict)."""

    model_config = ConfigDict(title="PredictionRequest", json_schema_extra={"examples": [
        {"model": "mlp", "payload": "3,4,5"}, {"model": "linear", "payload": [3, 4, 5], "id": "r1", "version": 2}]})
    what: ClassVar[str] = "a prediction request"
    unknown_before: ClassVar[Optional[str]] = "model"
    names: ClassVar[Mapping[str, tuple[str, str]]] = {"model": _UNKNOWN_MODEL}

    model: ModelKind  # type: ignore[valid-type]
    payload: Features
    dataset: Optional[Dataset] = Field(None, description="Default 'default'.")
    id: Optional[RequestId] = Field(None, description="Echoed in the answer; generated when absent.")
    version: Optional[Version] = Field(None, description="Pin a version instead of production.")


class Answer(BaseModel):
    """A message modelbus writes: documented (its JSON Schema lists every key it may have), and
    checked against what the writers produce by the tests, not on the way out."""

    model_config = ConfigDict(populate_by_name=True, extra="forbid")


class ErrorDetail(Answer):
    """Why a message or request was refused: a stable code and a precise reason."""

    code: str = Field(examples=["wrong_feature_count"])
    message: str


class ErrorAnswer(Answer):
    """Every HTTP error."""

    error: ErrorDetail


class Prediction(Answer):
    """The answer to a prediction request: the seed's keys and the version that answered."""

    id: str
    model: ModelKind  # type: ignore[valid-type]
    dataset: str
    version: int
    input: str = Field(description="The request's payload as CSV (a payload object as compact JSON).")
    result: Optional[Union[float, str]] = Field(
        description="The predicted label (mlp, dtr) or value, a category label's value as a string; null when the "
                    "model's output is not a finite number (inputs far outside its data).")
    accuracy: float = Field(description="The version's main metric: accuracy for mlp and dtr, holdout R² otherwise.")
    modelid: str = Field(description="The version's uuid.")
    prediction_date: str = Field(alias="prediction-date", examples=["2026-11-23 10:00:00"])
    probabilities: Optional[Union[list[Optional[float]], dict[str, Optional[float]]]] = Field(
        None, description="Classifiers (mlp, dtr) only, in the class order GET /api/models/<model> lists; null where not finite. "
                          "Keyed by label value when the label is a category.")
    label: Optional[str] = Field(None, description="The label's name, when the dataset declares labels.")


class PredictionError(Answer):
    """The answer to a request that cannot be answered, by its id when it could be read."""

    id: Optional[str]
    error: ErrorDetail


# --- error_topic and GET /api/errors ----------------------------------------------------------

class Source(Answer):
    """Where a message came from."""

    kind: str = Field(description="kafka, http, cli or system.")
    topic: Optional[str] = None
    partition: Optional[int] = None
    offset: Optional[int] = None


class RawView(Answer):
    """The head of a message's bytes: text when it is UTF-8, else base64."""

    raw: str = Field(description="The first 4 KiB of the message.")
    raw_encoding: Literal["utf-8", "base64"]
    raw_bytes: int = Field(description="The message's size.")
    truncated: bool


class DeadLetter(RawView):
    """A refused message as published on error_topic."""

    error: ErrorDetail
    source: Source
    received_at: str


class DeadLetterRecord(RawView):
    """A dead letter as GET /api/errors lists it."""

    id: int
    code: str
    reason: str
    source: Source
    received_at: str


# --- the registry: model versions, build outcomes, model updates ------------------------------

class Lineage(Answer):
    """The training events a version was built from."""

    first_position: Optional[int]
    last_position: Optional[int]
    n_events: Optional[int]
    digest: Optional[str]
    build_position: Optional[int]


class PromotionDecision(Answer):
    """What an automatic promotion decided: the newcomer and production scored on the same test rows."""

    status: Literal["moved", "kept", "failed"]
    reason: str
    candidate_score: Optional[float] = Field(description="The newcomer's main metric on its test rows.")
    production_version: Optional[int]
    production_score: Optional[float] = Field(description="Production's main metric on the same rows.")
    test_rows: Optional[int]


class LiveWindow(Answer):
    """Live metrics over the last N joined feedbacks."""

    n: int
    accuracy: Optional[float] = None
    mae: Optional[float] = None
    rmse: Optional[float] = None


class LiveMetrics(Answer):
    """How a version does after deployment: joined feedback and drift of its recent inputs."""

    feedback_count: int = Field(description="Feedback events joined with this version's predictions.")
    accuracy: Optional[float] = Field(None, description="Classifiers: the share of joined answers that were right.")
    mae: Optional[float] = Field(None, description="Regressions: mean absolute error of joined answers.")
    rmse: Optional[float] = Field(None, description="Regressions: root mean squared error of joined answers.")
    last: Optional[LiveWindow] = Field(None, description="The same over the last live_window joined feedbacks.")
    drift: Optional[dict[str, float]] = Field(
        description="Per feature, the population stability index of the last live_window recorded inputs against "
                    "the version's training rows (0.1: some shift, 0.25: large); null with too few inputs.")


class ModelVersionView(Answer):
    """A model version as GET /api/models/<model> shows it (no artifact)."""

    version: int
    uuid: str
    status: str
    production: bool
    main_metric: float
    params: dict[str, Any]
    metrics: dict[str, Any]
    sha256: Optional[str]
    lineage: Lineage
    versions: Optional[dict[str, str]] = Field(description="Python and library versions of the build.")
    created_at: str
    promotion: Optional[PromotionDecision] = Field(
        None, description="What its automatic promotion decided; null until the builds handler reaches it.")
    live: Optional[LiveMetrics] = Field(None, description="Live metrics from feedback, and input drift.")
    input_schema: Optional[dict[str, Any]] = Field(
        None, description="A typed dataset's fields the version was built with (features in order, label); "
                          "null for a numeric dataset.")
    label_values: Optional[list[str]] = Field(
        None, description="A category label's values, in the order of the probabilities' keys; null otherwise.")


class BuildOutcome(Answer):
    """What came of one build command, on build_outcome_topic keyed by the command's event id."""

    id: str
    position: int
    model: ModelKind  # type: ignore[valid-type]
    dataset: str
    status: Literal["ok", "failed"]
    reason: Optional[str]
    version: Optional[int]
    uuid: Optional[str]
    promoted: bool = Field(description="Whether the version became production (its automatic promotion moved it).")
    n_events: Optional[int]
    metrics: Optional[dict[str, Any]]
    promotion: Optional[PromotionDecision] = Field(
        None, description="What the automatic promotion decided (ok builds; announced once it is decided).")


class ModelUpdate(Answer):
    """A notice on model_update_topic that a production alias moved: serving processes reload."""

    model: ModelKind  # type: ignore[valid-type]
    dataset: str
    version: int
    uuid: str
    position: int


# The messages /api/schemas serves, by name.
MESSAGES: dict[str, Any] = {
    "event": Event,
    "training_event": TrainingEvent,
    "build_command": BuildCommand,
    "promote_command": PromoteCommand,
    "raw_event": RawEvent,
    "prediction_request": PredictionRequest,
    "prediction": Prediction,
    "prediction_error": PredictionError,
    "error": ErrorAnswer,
    "dead_letter": DeadLetter,
    "dead_letter_record": DeadLetterRecord,
    "model_version": ModelVersionView,
    "build_outcome": BuildOutcome,
    "model_update": ModelUpdate,
}
