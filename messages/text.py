"""How error messages show client values: short, storable, and named as JSON names them."""
from __future__ import annotations

import json
import math
from typing import Any

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def shorten(text: str, limit: int = 24) -> str:
    """Text for an error message: a long value as its head, tail and length."""
    if len(text) <= limit:
        return text
    return f"{text[:12]}...{text[-4:]} ({len(text)} characters)"


def field_name(path: str) -> str:
    """A field path for an error message: short and storable (a key is client text, maybe a lone surrogate)."""
    return shorten(path, 60).encode("utf-8", "backslashreplace").decode("utf-8")


def int_text(value: int) -> str:
    """An integer for an error message, never converting a huge one to decimal."""
    # str() of a huge int is slow and refused beyond 4300 digits; its size says enough.
    if value.bit_length() <= 4096:
        return shorten(str(value))
    return f"{'-' if value < 0 else ''}(an integer of about {int(value.bit_length() * math.log10(2))} digits)"


def shown(value: Any) -> str:
    """A JSON value for an error message, as the client wrote it."""
    if isinstance(value, int) and not isinstance(value, bool):
        return int_text(value)
    try:
        return shorten(json.dumps(value), 40)
    except (TypeError, ValueError):
        return shorten(repr(value), 40)


def json_type(value: Any) -> str:
    """The JSON name of a decoded value's type."""
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


def outside_int64(token: str) -> bool:
    """Whether an integer literal lies outside int64, judged by its length before converting it."""
    digits = len(token) - (token[0] in "+-")
    if digits <= 18:
        return False
    return digits > 19 or not INT64_MIN <= int(token) <= INT64_MAX
