"""Raw bytes to one JSON value, strictly: UTF-8, no NaN, no duplicate keys, integers within int64, bounded size.

Most messages are decoded by orjson (C) and a few byte counts prove the strict rules hold;
any doubt sends the message through the strict Python decoder, which also names the exact error.
"""
from __future__ import annotations

import json
import math
import re
from typing import Any

import orjson

from modelbus.messages.errors import Rejected, int64_range_error
from modelbus.messages.text import field_name, outside_int64, shorten

DEFAULT_MAX_BYTES = 64 * 1024
_LONG_DIGITS = re.compile(rb"[0-9]{19}").search
_SPACED_COLON = re.compile(rb"[ \t\n\r]:").search
_CONTAINERS = (dict, list)


def loads(raw: bytes | str, max_bytes: int = DEFAULT_MAX_BYTES) -> Any:
    """Decode and parse one JSON document strictly (UTF-8, no NaN, no duplicate keys, bounded size)."""
    data = raw if type(raw) is bytes else raw.encode() if isinstance(raw, str) else bytes(raw)
    if len(data) > max_bytes:
        raise Rejected("too_large", f"message is {len(data)} bytes; the limit is {max_bytes}")
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        # Not UTF-8, not JSON, NaN, a float beyond double or a lone surrogate: the strict decoder says which.
        return strict_loads(data)
    # orjson keeps the last of repeated keys, and returns integers beyond int64 (up to 2**64)
    # as such or beyond as floats. A key's closing quote is followed by its colon, and with no
    # whitespace before any colon every key written is one `":` in the bytes (other `":` are
    # in strings and only add to the count): the count equals the decoded keys only if no key
    # was dropped. Any doubt (a 19-digit run, a spaced colon) takes the strict decoder.
    if _LONG_DIGITS(data) is None:
        quoted = data.count(b'":')
        keys = len(value) if type(value) is dict and data.count(b"{") == 1 else _key_count(value)
        if quoted == keys and (quoted == data.count(b":") or _SPACED_COLON(data) is None):
            return value
    return strict_loads(data)


def _key_count(value: Any) -> int:
    """How many keys the decoded objects in value hold."""
    if type(value) not in _CONTAINERS:
        return 0
    keys = 0
    stack = [value]
    while stack:
        item = stack.pop()
        if type(item) is dict:
            keys += len(item)
            stack.extend([element for element in item.values() if type(element) in _CONTAINERS])
        else:
            stack.extend([element for element in item if type(element) in _CONTAINERS])
    return keys


class _IntOutOfRange(Exception):
    """Raised by the decoder's integer hook; strict_loads turns it into a Rejected naming the field."""


def _reject_constant(token: str) -> Any:
    raise Rejected("not_finite", f"{token} is not a finite number")


def _finite_float(token: str) -> float:
    value = float(token)
    if not math.isfinite(value):
        raise Rejected("not_finite", f"{shorten(token)} is not a finite number")
    return value


def _int64(token: str) -> int:
    if outside_int64(token):
        raise _IntOutOfRange(token)
    return int(token)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise Rejected("bad_field", f"field '{field_name(key)}' appears twice")
        obj[key] = value
    return obj


# One decoder for every call: building one per call cost a third of a small message's parse.
_DECODER = json.JSONDecoder(
    parse_constant=_reject_constant,
    parse_float=_finite_float,
    parse_int=_int64,
    object_pairs_hook=_unique_keys,
)


def strict_loads(data: bytes) -> Any:
    """The strict decoder in Python: slower, and its errors name the exact rule and place."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Rejected("not_utf8", f"message is not UTF-8: {exc.reason} at byte {exc.start}") from None
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
    parse_int=lambda token: _BigInt(token) if outside_int64(token) else 0,
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
        return int64_range_error("a number in the message", shorten(token))
    while stack:
        path, value = stack.pop()
        if isinstance(value, _BigInt):
            return int64_range_error(_describe(path), shorten(value))
        if isinstance(value, _Pairs):
            children = [(f"{path}.{key}" if path else key, item) for key, item in value]
        elif isinstance(value, list):
            children = [(f"{path}[{i}]", item) for i, item in enumerate(value)]
        else:
            continue
        stack.extend(reversed(children))
    return int64_range_error("a number in the message", shorten(token))


def _describe(path: str) -> str:
    """How an error message names a place in a message: payload values by number, else the field path."""
    if not path:
        return "the message"
    head, _, index = path.partition("[")
    if head == "payload" and index[:-1].isdigit() and index.endswith("]"):
        return f"payload value {int(index[:-1]) + 1}"
    return f"field '{field_name(path)}'"


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
