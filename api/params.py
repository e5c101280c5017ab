"""Reading a request: bounded integer query parameters, the body with its size limit, the bearer token."""
from __future__ import annotations

import hmac
import re
from typing import Any

from flask import request

from modelbus.api.context import BATCH_BODY_FACTOR
from modelbus.api.errors import ApiError
from modelbus.messages.parse import INT64_MAX, INT64_MIN, shorten

MAX_PAGE = 1000
DEFAULT_PAGE = 100
_QUERY_INT_RE = re.compile(r"[+-]?[0-9]+")


def query_int(name: str, value: str) -> int | None:
    """A query value as an integer, None when it is not one; out_of_range beyond int64, as in a message."""
    # ASCII digits only: int() would also take "1_000", " 7" and other scripts' digits.
    if not _QUERY_INT_RE.fullmatch(value):
        return None
    # Judged by length first, so a 5000-digit value is never converted (nor refused by int()).
    if len(value.lstrip("+-").lstrip("0")) > 19 or not INT64_MIN <= int(value) <= INT64_MAX:
        raise ApiError("out_of_range",
                       f"query parameter '{name}' is {shorten(value)}, outside the signed 64-bit integer range")
    return int(value)


def int_arg(name: str, default: int, low: int, high: int) -> int:
    """The integer query parameter `name` within [low, high], or `default` when absent."""
    value = request.args.get(name)
    if value is None or value == "":
        return default
    number = query_int(name, value)
    if number is None:
        raise ApiError("bad_param", f"query parameter '{name}' must be an integer, got '{shorten(value, 40)}'")
    if not low <= number <= high:
        raise ApiError("bad_param", f"query parameter '{name}' must be between {low} and {high}, got {number}")
    return number


def version_arg(value: str) -> Any:
    """A version from a URL: the JSON integer the parser wants (which judges its range), else the text."""
    number = query_int("version", value)
    return value if number is None else number


def raw_body(max_single: int) -> tuple[bytes, bool]:
    """The request body and whether it is a list; a single message obeys the per-message limit."""
    raw = request.get_data(cache=False)
    is_list = raw.lstrip()[:1] == b"["
    limit = max_single * BATCH_BODY_FACTOR if is_list else max_single
    if len(raw) > limit:
        raise ApiError("too_large", f"message is {len(raw)} bytes; the limit is {limit}")
    return raw, is_list


def require_token(token: str | None) -> None:
    """Refuse the request (401) unless it carries `Authorization: Bearer <token>`; no token, no check."""
    if token is None:
        return
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
        raise ApiError("unauthorized", "this route needs 'Authorization: Bearer <token>' (MODELBUS_API_TOKEN)")
