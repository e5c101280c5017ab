"""The values of a payload: a seed CSV string ("3,4,5") or a JSON array, as finite floats."""
from __future__ import annotations

import math
import re
from typing import Any

from modelbus.messages.errors import Rejected, int64_range_error
from modelbus.messages.text import INT64_MAX, INT64_MIN, int_text, json_type, outside_int64, shorten

MAX_VALUES = 10_000
# Python's float() also takes "1_000", "nan", "infinity" and other scripts' digits; a number
# on the bus is what JSON and CSV writers produce, nothing more.
NUMBER = r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?"
_SPACES = " \t\n\r\f\v"
SPACE = r"[ \t\n\r\f\v]*"
_NUMBER_RE = re.compile(rf"{NUMBER}")
_NON_FINITE = {"nan", "+nan", "-nan", "inf", "+inf", "-inf", "infinity", "+infinity", "-infinity"}
# A number float() reads to a finite value far inside int64: at most 18 digits before an
# exponent of at most two. A payload of only such numbers needs no check value by value.
PLAIN_NUMBER = r"[+-]?(?:[0-9]{1,18}(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]{1,2})?"
_PLAIN_CSV = re.compile(rf"{SPACE}{PLAIN_NUMBER}{SPACE}(?:,{SPACE}{PLAIN_NUMBER}{SPACE})*").fullmatch
_INTEGER_RE = re.compile(r"[+-]?[0-9]+")


def _number(token: Any, index: int, bounded: bool) -> float:
    if isinstance(token, bool) or not isinstance(token, (int, float, str)):
        raise Rejected("not_numeric", f"payload value {index + 1} is {json_type(token)}, not a number")
    if isinstance(token, int):
        # The same bound as for a JSON integer, so an object gives the error its bytes would.
        if bounded and not INT64_MIN <= token <= INT64_MAX:
            raise int64_range_error(f"payload value {index + 1}", int_text(token))
        try:
            return float(token)
        except OverflowError:
            raise Rejected("out_of_range", f"payload value {index + 1} {int_text(token)} is too large for a float") from None
    if isinstance(token, str):
        text = token.strip(_SPACES)
        if text.lower() in _NON_FINITE:
            raise Rejected("not_finite", f"payload value {index + 1} '{text}' is not a finite number")
        if not _NUMBER_RE.fullmatch(text):
            raise Rejected("not_numeric", f"payload value {index + 1} '{shorten(text, 40)}' is not a number")
        if bounded and _INTEGER_RE.fullmatch(text) and outside_int64(text):
            raise int64_range_error(f"payload value {index + 1}", shorten(text))
        token = text
    value = float(token)
    if not math.isfinite(value):
        raise Rejected("not_finite", f"payload value {index + 1} '{shorten(str(token))}' is not a finite number")
    return value


def parse_values(payload: Any, *, bounded: bool = True) -> tuple[float, ...]:
    """Numbers from a seed CSV payload ("3,4,5") or a JSON array ([3, 4, 5]).

    `bounded` refuses integers outside int64, as loads does; re-reads of the log do not,
    because events stored before that rule must still give the same values.
    """
    if isinstance(payload, str):
        if _PLAIN_CSV(payload) is not None:
            values = tuple(map(float, payload.split(",")))
            if len(values) <= MAX_VALUES:
                return values
        if not payload.strip(_SPACES):
            raise Rejected("bad_field", "payload is empty")
        tokens: list[Any] = payload.split(",")
    elif isinstance(payload, list):
        if not payload:
            raise Rejected("bad_field", "payload is empty")
        tokens = payload
    else:
        raise Rejected(
            "bad_field", f"field 'payload' must be a CSV string or an array of numbers, got {json_type(payload)}"
        )
    if len(tokens) > MAX_VALUES:
        raise Rejected("bad_field", f"payload has {len(tokens)} values; the limit is {MAX_VALUES}")
    return tuple(_number(token, i, bounded) for i, token in enumerate(tokens))
