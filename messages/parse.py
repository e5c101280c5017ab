"""One validator for every entry point: raw bytes or JSON objects to typed messages, by the declared schemas."""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError

from modelbus.messages.datasets import InputSchema
from modelbus.messages.decode import DEFAULT_MAX_BYTES, loads
from modelbus.messages.errors import Rejected, name_rejected, rejected_from
from modelbus.messages.jsonutil import compact_json
from modelbus.messages.schemas import (
    MAX_ID_CHARS,
    SYSTEM,
    UNKNOWN_TYPE,
    VERSION_MAX,
    BuildCommand,
    FeedbackEvent,
    PromoteCommand,
    RawEvent,
    TrainingEvent,
)
from modelbus.messages.schemas import (
    PredictionRequest as RequestMessage,
)
from modelbus.messages.text import INT64_MAX, INT64_MIN, json_type, shorten
from modelbus.messages.types import (
    ANY_DATASET,
    DEFAULT_DATASET,
    Command,
    Event,
    Feedback,
    PredictionRequest,
    Raw,
    Training,
)
from modelbus.messages.values import parse_values

__all__ = [
    "DEFAULT_MAX_BYTES", "INT64_MAX", "INT64_MIN", "MAX_ID_CHARS", "VERSION_MAX", "check_feature_count", "check_record", "loads",
    "parse_event", "parse_event_obj", "parse_request", "parse_request_obj", "parse_values", "shorten",
    "stored_training_values", "typed_record",
]

_COMMANDS: dict[str, type[BaseModel]] = {"promote": PromoteCommand}


def _require_object(obj: Any) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise Rejected("not_object", f"message must be a JSON object, got {json_type(obj)}")
    return obj


def _validate(model: type[BaseModel], obj: dict[str, Any], context: dict[str, Any] | None) -> Any:
    try:
        return model.__pydantic_validator__.validate_python(obj, context=context)
    except ValidationError as exc:
        raise rejected_from(exc, model, obj) from None


def parse_event_obj(obj: Any, *, system: bool = False) -> Event:
    """Validate one event given as a decoded JSON value; the stored body has `dataset` filled in.

    `system` admits the ids modelbus reserves for its own events, and re-reads of stored
    ones, which keep the number ranges accepted when they were stored (a version beyond the
    registry's columns is refused even there: no handler could apply it).
    """
    obj = _require_object(obj)
    kind = obj.get("type")
    context = SYSTEM if system else None
    if kind == "training":
        training = _validate(TrainingEvent, obj, context)
        dataset = training.dataset or DEFAULT_DATASET
        values = training.payload
        if isinstance(values, dict):
            return Training(dataset=dataset, features=(), label=None, body={**obj, "dataset": dataset}, fields=values)
        return Training(dataset=dataset, features=values[:-1], label=values[-1], body={**obj, "dataset": dataset})
    if kind == "feedback":
        feedback = _validate(FeedbackEvent, obj, context)
        return Feedback(prediction_id=feedback.id, label=feedback.label, dataset=feedback.dataset or ANY_DATASET, body=obj)
    if kind == "raw":
        raw = _validate(RawEvent, obj, context)
        return Raw(stream=raw.stream, key=raw.key, ts_ms=raw.ts, fields=raw.fields, body=obj)
    if kind != "command":
        raise name_rejected("type", kind, UNKNOWN_TYPE)
    name = obj.get("payload")
    # An unknown command is checked as a build command, whose errors rank it after the fields before it.
    command = _validate(_COMMANDS.get(name, BuildCommand) if isinstance(name, str) else BuildCommand, obj, context)
    dataset = command.dataset or DEFAULT_DATASET
    if name == "promote":
        return Command(name=name, dataset=dataset, params=None, model=command.model, version=command.version,
                       body={**obj, "dataset": dataset})
    return Command(name=name, dataset=dataset, params=obj.get("params"), model=None, version=None,
                   body={**obj, "dataset": dataset})


def parse_event(raw: bytes | str, max_bytes: int = DEFAULT_MAX_BYTES) -> Event:
    """Validate one event message as it arrives on event_topic."""
    return parse_event_obj(loads(raw, max_bytes))


def parse_request_obj(obj: Any) -> PredictionRequest:
    """Validate one prediction request given as a decoded JSON value."""
    request = _validate(RequestMessage, _require_object(obj), None)
    payload = obj["payload"]
    if isinstance(payload, dict):
        return PredictionRequest(model=request.model, dataset=request.dataset or DEFAULT_DATASET, features=(),
                                 payload=compact_json(payload), id=request.id, version=request.version,
                                 fields=payload)
    return PredictionRequest(
        model=request.model,
        dataset=request.dataset or DEFAULT_DATASET,
        features=request.payload,
        payload=payload if isinstance(payload, str) else ",".join(map(repr, request.payload)),
        id=request.id,
        version=request.version,
    )


def parse_request(raw: bytes | str, max_bytes: int = DEFAULT_MAX_BYTES) -> PredictionRequest:
    """Validate one prediction request as it arrives on prediction_request_topic."""
    return parse_request_obj(loads(raw, max_bytes))


def check_record(event: Training, dataset_values: int | None, schema: InputSchema | None) -> None:
    """Check a training record against its dataset: typed fields when it declares them, else the value count.

    A payload object's values are filled into the record's features and label, in declared order.
    """
    if schema is not None:
        if event.fields is not None:
            values = schema.features_of(event.fields, label=True)
            event.features, event.label = values[:-1], values[-1]
            return
        if not schema.numeric:
            raise Rejected("bad_field", f"dataset '{event.dataset}' declares category fields: send the payload as "
                                        f"a JSON object keyed by field name ({', '.join(schema.names)}, "
                                        f"{schema.label[0]})")
    elif event.fields is not None:
        raise Rejected("bad_field", f"dataset '{event.dataset}' declares no typed fields: send the payload as CSV "
                                    "text or an array of numbers, or declare the fields in the settings")
    check_feature_count(event, dataset_values)


def typed_record(event: Training, schema: InputSchema | None) -> Training:
    """A record re-read from the log, with a payload object's values filled in by the dataset's schema."""
    check_record(event, None, schema)
    return event


def check_feature_count(event: Training, dataset_values: int | None) -> None:
    """Reject a training record whose value count differs from its dataset's."""
    if dataset_values is not None and event.values != dataset_values:
        raise Rejected(
            "wrong_feature_count",
            f"payload has {event.values} values; dataset '{event.dataset}' expects {dataset_values}",
        )


# The fields of a stored training event that stored_training_values reads (ts and id change no value).
_PLAIN_FIELDS = frozenset({"type", "payload", "dataset", "id", "ts"})


def stored_training_values(obj: Any, dataset: str) -> tuple[float, ...] | None:
    """The values (features, then the label) of a training event re-read from the log, when it has
    the plain shape ingest stores (a CSV payload, no typed fields, its own dataset); else None.

    The event was validated when it was stored: these are the values parse_event_obj(obj,
    system=True) gives, without its per-field checks. Anything else takes the strict parser.
    """
    if type(obj) is not dict or obj.get("type") != "training" or obj.get("dataset") != dataset:
        return None
    payload = obj.get("payload")
    if type(payload) is not str or not _PLAIN_FIELDS.issuperset(obj):
        return None
    try:
        values = parse_values(payload, bounded=False)
    except Rejected:
        return None
    return values if len(values) >= 2 else None
