"""One validator for every entry point: raw bytes or JSON objects to typed messages."""
from __future__ import annotations

import json
import math
import re
from typing import Any

from modelbus.messages.errors import Rejected
from modelbus.messages.types import (
    BUILD_COMMANDS,
    COMMANDS,
    DEFAULT_DATASET,
    MODEL_KINDS,
    Command,
    Event,
    PredictionRequest,
    Training,
)

DEFAULT_MAX_BYTES = 64 * 1024
MAX_ID_CHARS = 128
MAX_VALUES = 10_000
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
# Versions live in the registry's INT columns; a larger one would fail every apply (MySQL 1264).
VERSION_MAX = 2**31 - 1
# Ids of the events modelbus appends itself: a client id like these would silently
# suppress an automatic promotion (its event would look like a duplicate).
RESERVED_ID_PREFIXES = ("auto-promote:",)
_DATASET_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
# Python's float() also takes "1_000", "nan" and "infinity"; a number on the bus is
# what JSON and CSV writers produce, nothing more.
_NUMBER = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?"
_NUMBER_RE = re.compile(rf"^{_NUMBER}$")
_NON_FINITE = {"nan", "+nan", "-nan", "inf", "+inf", "-inf", "infinity", "+infinity", "-infinity"}
_CSV_RE = re.compile(rf"\s*{_NUMBER}\s*(?:,\s*{_NUMBER}\s*)*")
_INTEGER_RE = re.compile(r"^[+-]?\d+$")
# Every float below this in magnitude passed all checks; larger ones may be integers
# written beyond int64, so they take the slow path that tells which rule they break.
_FAST_BOUND = 1e18

_EVENT_FIELDS = {
    "training": {"type", "payload", "id", "dataset", "ts"},
    "command": {"type", "payload", "id", "dataset", "ts", "params", "model", "version"},
}
_REQUEST_FIELDS = {"model", "payload", "id", "dataset", "version"}


def shorten(text: str, limit: int = 24) -> str:
    """Text for an error message: a long value as its head, tail and length."""
    if len(text) <= limit:
        return text
    return f"{text[:12]}...{text[-4:]} ({len(text)} characters)"


def _field_name(path: str) -> str:
    # A key is client text: keep the message short and storable (no lone surrogates).
    return shorten(path, 60).encode("utf-8", "backslashreplace").decode("utf-8")


def _int_text(value: int) -> str:
    # str() of a huge int is slow and refused beyond 4300 digits; its size says enough.
    if value.bit_length() <= 4096:
        return shorten(str(value))
    return f"{'-' if value < 0 else ''}(an integer of about {int(value.bit_length() * math.log10(2))} digits)"


def _outside_int64(token: str) -> bool:
    """Whether an integer literal lies outside int64, judged by its length before converting it."""
    digits = len(token) - (token[0] in "+-")
    if digits <= 18:
        return False
    return digits > 19 or not INT64_MIN <= int(token) <= INT64_MAX


def _int64_range_error(where: str, shown: str) -> Rejected:
    return Rejected("out_of_range", f"{where} is {shown}, outside the signed 64-bit integer range")


def _reject_constant(token: str) -> Any:
    raise Rejected("not_finite", f"{token} is not a finite number")


def _finite_float(token: str) -> float:
    value = float(token)
    if not math.isfinite(value):
        raise Rejected("not_finite", f"{shorten(token)} is not a finite number")
    return value


class _IntOutOfRange(Exception):
    """Raised by the decoder's integer hook; loads turns it into a Rejected naming the field."""


def _int64(token: str) -> int:
    if _outside_int64(token):
        raise _IntOutOfRange(token)
    return int(token)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise Rejected("bad_field", f"field '{_field_name(key)}' appears twice")
        obj[key] = value
    return obj


# One decoder for every call: building one per call cost a third of a small message's parse.
_DECODER = json.JSONDecoder(
    parse_constant=_reject_constant,
    parse_float=_finite_float,
    parse_int=_int64,
    object_pairs_hook=_unique_keys,
)


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
        value = _DECODER.decode(text)
    except _IntOutOfRange as exc:
        raise _locate_big_int(text, exc.args[0]) from None
    except json.JSONDecodeError as exc:
        raise Rejected("not_json", f"message is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:
        raise Rejected("not_json", "message is not JSON: nested too deeply") from None
    # JSON may escape a lone UTF-16 surrogate ("\ud800"), which is not Unicode and which no
    # database can store; the cheap text test keeps the walk off the common path.
    if "\\ud" in text or "\\uD" in text:
        _reject_surrogates(value)
    return value


class _Pairs(list):
    """An object's (key, value) pairs in document order, repeated keys included."""


class _BigInt(str):
    """An integer literal outside int64, kept as text."""


_LOCATOR = json.JSONDecoder(
    parse_int=lambda token: _BigInt(token) if _outside_int64(token) else 0,
    parse_float=lambda token: 0,
    parse_constant=lambda token: 0,
    object_pairs_hook=_Pairs,
)


def _locate_big_int(text: str, token: str) -> Rejected:
    """The out_of_range error for the first integer outside int64 in text, naming its field."""
    try:
        stack: list[tuple[str, Any]] = [("", _LOCATOR.decode(text))]
    except (ValueError, RecursionError):
        # The strict decoder stopped at that integer; the text after it may not even be JSON.
        return _int64_range_error("a number in the message", shorten(token))
    while stack:
        path, value = stack.pop()
        if isinstance(value, _BigInt):
            return _int64_range_error(_describe(path), shorten(value))
        if isinstance(value, _Pairs):
            children = [(f"{path}.{key}" if path else key, item) for key, item in value]
        elif isinstance(value, list):
            children = [(f"{path}[{i}]", item) for i, item in enumerate(value)]
        else:
            continue
        stack.extend(reversed(children))
    return _int64_range_error("a number in the message", shorten(token))


def _describe(path: str) -> str:
    """How an error message names a place in a message: payload values by number, else the field path."""
    if not path:
        return "the message"
    head, _, index = path.partition("[")
    if head == "payload" and index[:-1].isdigit() and index.endswith("]"):
        return f"payload value {int(index[:-1]) + 1}"
    return f"field '{_field_name(path)}'"


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


def _number(token: Any, index: int, bounded: bool) -> float:
    if isinstance(token, bool) or not isinstance(token, (int, float, str)):
        raise Rejected("not_numeric", f"payload value {index + 1} is {_json_type(token)}, not a number")
    if isinstance(token, int):
        # The same bound as for a JSON integer, so an object gives the error its bytes would.
        if bounded and not INT64_MIN <= token <= INT64_MAX:
            raise _int64_range_error(f"payload value {index + 1}", _int_text(token))
        try:
            return float(token)
        except OverflowError:
            raise Rejected("out_of_range", f"payload value {index + 1} {_int_text(token)} is too large for a float") from None
    if isinstance(token, str):
        text = token.strip()
        if text.lower() in _NON_FINITE:
            raise Rejected("not_finite", f"payload value {index + 1} '{text}' is not a finite number")
        if not _NUMBER_RE.match(text):
            raise Rejected("not_numeric", f"payload value {index + 1} '{shorten(text, 40)}' is not a number")
        if bounded and _INTEGER_RE.match(text) and _outside_int64(text):
            raise _int64_range_error(f"payload value {index + 1}", shorten(text))
        token = text
    value = float(token)
    if not math.isfinite(value):
        raise Rejected("not_finite", f"payload value {index + 1} '{shorten(str(token))}' is not a finite number")
    return value


def _fast_csv(payload: str) -> tuple[float, ...] | None:
    """The values of a CSV payload of ordinary numbers in one pass, or None to check them one by one."""
    if not _CSV_RE.fullmatch(payload):
        return None
    try:
        values = tuple(map(float, payload.split(",")))
    except ValueError:
        return None
    # Also false for infinities; the bound leaves every possibly out-of-range integer to _number.
    if -_FAST_BOUND < min(values) and max(values) < _FAST_BOUND:
        return values
    return None


def parse_values(payload: Any, *, bounded: bool = True) -> tuple[float, ...]:
    """Numbers from a seed CSV payload ("3,4,5") or a JSON array ([3, 4, 5]).

    `bounded` refuses integers outside int64, as loads does; re-reads of the log do not,
    because events stored before that rule must still give the same values.
    """
    if isinstance(payload, str):
        if not payload.strip():
            raise Rejected("bad_field", "payload is empty")
        values = _fast_csv(payload)
        if values is not None and len(values) <= MAX_VALUES:
            return values
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
    return tuple(_number(token, i, bounded) for i, token in enumerate(tokens))


def _shown(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        return _int_text(value)
    try:
        return shorten(json.dumps(value), 40)
    except (TypeError, ValueError):
        return shorten(repr(value), 40)


def _ts(obj: dict[str, Any], bounded: bool) -> None:
    value = obj.get("ts")
    if value is None:
        return
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        # A decoded message cannot hold these; an object built in Python can, and the
        # stored body must stay the JSON any reader of the log can parse.
        if isinstance(value, float) and not math.isfinite(value):
            raise Rejected("not_finite", f"field 'ts' {value} is not a finite number")
        if bounded and isinstance(value, int) and not INT64_MIN <= value <= INT64_MAX:
            raise _int64_range_error("field 'ts'", _int_text(value))
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
        raise Rejected("bad_field", f"field 'version' must be a positive integer, got {_shown(value)}")
    if value > VERSION_MAX:
        raise Rejected("out_of_range", f"field 'version' must be at most {VERSION_MAX}, got {_int_text(value)}")
    return value


def _check_params_numbers(params: dict[str, Any]) -> None:
    """Reject numbers in params that JSON from the bus could not carry (objects built in Python can)."""
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
            raise _int64_range_error(f"field '{path}'", _int_text(value))
        elif isinstance(value, float) and not math.isfinite(value):
            raise Rejected("not_finite", f"field '{path}' {value} is not a finite number")


def _model(obj: dict[str, Any], *, required: bool) -> str | None:
    value = _string(obj, "model", required=required, max_len=32)
    if value is not None and value not in MODEL_KINDS:
        raise Rejected("unknown_model", f"model '{value}' is unknown (known: {', '.join(sorted(MODEL_KINDS))})")
    return value


def _training(obj: dict[str, Any], dataset: str, bounded: bool) -> Training:
    _check_fields(obj, _EVENT_FIELDS["training"], "a training event")
    if "payload" not in obj:
        raise Rejected("missing_field", "field 'payload' is required")
    values = parse_values(obj["payload"], bounded=bounded)
    if len(values) < 2:
        raise Rejected("bad_field", f"payload has {len(values)} value; a training record needs features and a label")
    return Training(dataset=dataset, features=values[:-1], label=values[-1], body=obj)


def _command(obj: dict[str, Any], dataset: str, bounded: bool) -> Command:
    _check_fields(obj, _EVENT_FIELDS["command"], "a command")
    name = _string(obj, "payload", required=True, max_len=32)
    if name not in COMMANDS:
        raise Rejected("unknown_command", f"command '{name}' is unknown (known: {', '.join(sorted(COMMANDS))})")
    params = obj.get("params")
    if params is not None and not isinstance(params, dict):
        raise Rejected("bad_field", f"field 'params' must be an object, got {_json_type(params)}")
    if params and bounded:
        _check_params_numbers(params)
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

    `system` admits the ids modelbus reserves for its own events, and re-reads of stored
    ones, which keep the number ranges accepted when they were stored (a version beyond the
    registry's columns is refused even there: no handler could apply it).
    """
    obj = _require_object(obj)
    kind = _string(obj, "type", required=True, max_len=32)
    if kind not in _EVENT_FIELDS:
        raise Rejected("unknown_type", f"type '{kind}' is unknown (expected 'training' or 'command')")
    _event_id(obj, system)
    bounded = not system
    _ts(obj, bounded)
    dataset = _dataset(obj)
    body = {**obj, "dataset": dataset}
    return _training(body, dataset, bounded) if kind == "training" else _command(body, dataset, bounded)


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
