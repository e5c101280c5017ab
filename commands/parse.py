"""One validator for every entry point: raw bytes or JSON objects to typed messages."""
from __future__ import annotations

import json
import math
import re
from typing import Any

from commands.messages import (
    BUILD_COMMANDS,
    COMMANDS,
    DEFAULT_DATASET,
    MODEL_KINDS,
    Command,
    Event,
    PredictionRequest,
    Rejected,
    Training,
)

DEFAULT_MAX_BYTES = 64 * 1024
MAX_ID_CHARS = 128
MAX_VALUES = 10_000
# Ids of the events modelbus appends itself: a client id like these would silently
# suppress an automatic promotion (its event would look like a duplicate).
RESERVED_ID_PREFIXES = ("auto-promote:",)
_DATASET_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
# Python's float() also takes "1_000", "nan" and "infinity"; a number on the bus is
# what JSON and CSV writers produce, nothing more.
_NUMBER_RE = re.compile(r"^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$")
_NON_FINITE = {"nan", "+nan", "-nan", "inf", "+inf", "-inf", "infinity", "+infinity", "-infinity"}

_EVENT_FIELDS = {
    "training": {"type", "payload", "id", "dataset", "ts"},
    "command": {"type", "payload", "id", "dataset", "ts", "params", "model", "version"},
}
_REQUEST_FIELDS = {"model", "payload", "id", "dataset", "version"}


def _reject_constant(token: str) -> Any:
    raise Rejected("not_finite", f"{token} is not a finite number")


def _finite_float(token: str) -> float:
    value = float(token)
    if not math.isfinite(value):
        raise Rejected("not_finite", f"{token} is not a finite number")
    return value


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise Rejected("bad_field", f"field '{key}' appears twice")
        obj[key] = value
    return obj


def loads(raw: bytes | str, max_bytes: int = DEFAULT_MAX_BYTES) -> Any:
    """Decode and parse one JSON document strictly (UTF-8, no NaN, no duplicate keys, bounded size)."""
    size = len(raw.encode() if isinstance(raw, str) else raw)
    if size > max_bytes:
        raise Rejected("too_large", f"message is {size} bytes; the limit is {max_bytes}")
    if isinstance(raw, bytes):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise Rejected("not_utf8", f"message is not UTF-8: {exc.reason} at byte {exc.start}") from None
    else:
        text = raw
    try:
        value = json.loads(
            text,
            parse_constant=_reject_constant,
            parse_float=_finite_float,
            object_pairs_hook=_unique_keys,
        )
    except json.JSONDecodeError as exc:
        raise Rejected("not_json", f"message is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:
        raise Rejected("not_json", "message is not JSON: nested too deeply") from None
    # JSON may escape a lone UTF-16 surrogate ("\ud800"), which is not Unicode and which no
    # database can store; the cheap text test keeps the walk off the common path.
    if "\\ud" in text or "\\uD" in text:
        _reject_surrogates(value)
    return value


def _reject_surrogates(value: Any) -> None:
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise Rejected(
                "not_utf8", f"message has a lone surrogate \\u{ord(value[exc.start]):04x}, which is not valid Unicode"
            ) from None
    elif isinstance(value, dict):
        for key, item in value.items():
            _reject_surrogates(key)
            _reject_surrogates(item)
    elif isinstance(value, list):
        for item in value:
            _reject_surrogates(item)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _require_object(obj: Any) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise Rejected("not_object", f"message must be a JSON object, got {_json_type(obj)}")
    return obj


def _check_fields(obj: dict[str, Any], allowed: set[str], what: str) -> None:
    unknown = sorted(set(obj) - allowed)
    if unknown:
        raise Rejected(
            "unknown_field",
            f"unknown field '{unknown[0]}' in {what} (allowed: {', '.join(sorted(allowed))})",
        )


def _string(obj: dict[str, Any], key: str, *, required: bool, max_len: int = MAX_ID_CHARS) -> str | None:
    if key not in obj or obj[key] is None:
        if required:
            raise Rejected("missing_field", f"field '{key}' is required")
        return None
    value = obj[key]
    if not isinstance(value, str):
        raise Rejected("bad_field", f"field '{key}' must be a string, got {_json_type(value)}")
    if not value or len(value) > max_len:
        raise Rejected("bad_field", f"field '{key}' must have 1 to {max_len} characters, got {len(value)}")
    return value


def _dataset(obj: dict[str, Any]) -> str:
    value = _string(obj, "dataset", required=False, max_len=64)
    if value is None:
        return DEFAULT_DATASET
    if not _DATASET_RE.match(value):
        raise Rejected(
            "bad_field",
            f"dataset '{value}' must be letters, digits, '_', '.' or '-' and start with a letter or digit",
        )
    return value


def _number(token: Any, index: int) -> float:
    if isinstance(token, bool) or not isinstance(token, (int, float, str)):
        raise Rejected("not_numeric", f"payload value {index + 1} is {_json_type(token)}, not a number")
    if isinstance(token, str):
        text = token.strip()
        if text.lower() in _NON_FINITE:
            raise Rejected("not_finite", f"payload value {index + 1} '{text}' is not a finite number")
        if not _NUMBER_RE.match(text):
            shown = text if len(text) <= 40 else text[:40] + "..."
            raise Rejected("not_numeric", f"payload value {index + 1} '{shown}' is not a number")
        token = text
    value = float(token)
    if not math.isfinite(value):
        raise Rejected("not_finite", f"payload value {index + 1} '{token}' is not a finite number")
    return value


def parse_values(payload: Any) -> tuple[float, ...]:
    """Numbers from a seed CSV payload ("3,4,5") or a JSON array ([3, 4, 5])."""
    if isinstance(payload, str):
        if not payload.strip():
            raise Rejected("bad_field", "payload is empty")
        tokens: list[Any] = payload.split(",")
    elif isinstance(payload, list):
        if not payload:
            raise Rejected("bad_field", "payload is empty")
        tokens = payload
    else:
        raise Rejected(
            "bad_field", f"field 'payload' must be a CSV string or an array of numbers, got {_json_type(payload)}"
        )
    if len(tokens) > MAX_VALUES:
        raise Rejected("bad_field", f"payload has {len(tokens)} values; the limit is {MAX_VALUES}")
    return tuple(_number(token, i) for i, token in enumerate(tokens))


def _ts(obj: dict[str, Any]) -> None:
    value = obj.get("ts")
    if value is None or isinstance(value, (int, float)) and not isinstance(value, bool):
        return
    if not isinstance(value, str) or len(value) > 64:
        raise Rejected("bad_field", "field 'ts' must be a number or a string of at most 64 characters")


def _version(obj: dict[str, Any], *, required: bool) -> int | None:
    if obj.get("version") is None:
        if required:
            raise Rejected("missing_field", "field 'version' is required")
        return None
    value = obj["version"]
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise Rejected("bad_field", f"field 'version' must be a positive integer, got {json.dumps(value)}")
    return value


def _model(obj: dict[str, Any], *, required: bool) -> str | None:
    value = _string(obj, "model", required=required, max_len=32)
    if value is not None and value not in MODEL_KINDS:
        raise Rejected("unknown_model", f"model '{value}' is unknown (known: {', '.join(sorted(MODEL_KINDS))})")
    return value


def _training(obj: dict[str, Any], dataset: str) -> Training:
    _check_fields(obj, _EVENT_FIELDS["training"], "a training event")
    if "payload" not in obj:
        raise Rejected("missing_field", "field 'payload' is required")
    values = parse_values(obj["payload"])
    if len(values) < 2:
        raise Rejected("bad_field", f"payload has {len(values)} value; a training record needs features and a label")
    return Training(dataset=dataset, features=values[:-1], label=values[-1], body=obj)


def _command(obj: dict[str, Any], dataset: str) -> Command:
    _check_fields(obj, _EVENT_FIELDS["command"], "a command")
    name = _string(obj, "payload", required=True, max_len=32)
    if name not in COMMANDS:
        raise Rejected("unknown_command", f"command '{name}' is unknown (known: {', '.join(sorted(COMMANDS))})")
    params = obj.get("params")
    if params is not None and not isinstance(params, dict):
        raise Rejected("bad_field", f"field 'params' must be an object, got {_json_type(params)}")
    if name in BUILD_COMMANDS:
        for key in ("model", "version"):
            if key in obj:
                raise Rejected("bad_field", f"field '{key}' belongs to promote, not to {name}")
        return Command(name=name, dataset=dataset, params=params, model=None, version=None, body=obj)
    if params is not None:
        raise Rejected("bad_field", "field 'params' belongs to build commands, not to promote")
    return Command(
        name=name,
        dataset=dataset,
        params=None,
        model=_model(obj, required=True),
        version=_version(obj, required=True),
        body=obj,
    )


def _event_id(obj: dict[str, Any], system: bool) -> None:
    value = _string(obj, "id", required=False)
    if value is None:
        return
    # MySQL compares ids with PAD SPACE: "x" and "x " would be one key there and two here.
    if value != value.strip():
        raise Rejected("bad_field", "field 'id' must not begin or end with whitespace")
    if not system and value.startswith(RESERVED_ID_PREFIXES):
        raise Rejected("bad_field", f"ids starting with '{value.split(':')[0]}:' are reserved for modelbus itself")


def parse_event_obj(obj: Any, *, system: bool = False) -> Event:
    """Validate one event given as a decoded JSON value; the stored body has `dataset` filled in.

    `system` admits the ids modelbus reserves for its own events (and re-reads of stored ones).
    """
    obj = _require_object(obj)
    kind = _string(obj, "type", required=True, max_len=32)
    if kind not in _EVENT_FIELDS:
        raise Rejected("unknown_type", f"type '{kind}' is unknown (expected 'training' or 'command')")
    _event_id(obj, system)
    _ts(obj)
    dataset = _dataset(obj)
    body = {**obj, "dataset": dataset}
    return _training(body, dataset) if kind == "training" else _command(body, dataset)


def parse_event(raw: bytes | str, max_bytes: int = DEFAULT_MAX_BYTES) -> Event:
    """Validate one event message as it arrives on event_topic."""
    return parse_event_obj(loads(raw, max_bytes))


def parse_request_obj(obj: Any) -> PredictionRequest:
    """Validate one prediction request given as a decoded JSON value."""
    obj = _require_object(obj)
    _check_fields(obj, _REQUEST_FIELDS, "a prediction request")
    model = _model(obj, required=True)
    assert model is not None
    if "payload" not in obj:
        raise Rejected("missing_field", "field 'payload' is required")
    features = parse_values(obj["payload"])
    payload = obj["payload"] if isinstance(obj["payload"], str) else ",".join(map(repr, features))
    return PredictionRequest(
        model=model,
        dataset=_dataset(obj),
        features=features,
        payload=payload,
        id=_string(obj, "id", required=False),
        version=_version(obj, required=False),
    )


def parse_request(raw: bytes | str, max_bytes: int = DEFAULT_MAX_BYTES) -> PredictionRequest:
    """Validate one prediction request as it arrives on prediction_request_topic."""
    return parse_request_obj(loads(raw, max_bytes))


def check_feature_count(event: Training, dataset_values: int | None) -> None:
    """Reject a training record whose value count differs from its dataset's."""
    if dataset_values is not None and event.values != dataset_values:
        raise Rejected(
            "wrong_feature_count",
            f"payload has {event.values} values; dataset '{event.dataset}' expects {dataset_values}",
        )
