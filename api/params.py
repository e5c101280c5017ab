"""Reading a request: query parameters through their declared models, the body with its size limit, the bearer token."""
from __future__ import annotations

import hmac
import re
from functools import lru_cache
from typing import Any, TypeVar

from flask import request
from pydantic import BaseModel, ValidationError

from modelbus.api.context import BATCH_BODY_FACTOR
from modelbus.api.errors import ApiError
from modelbus.messages.errors import PATTERN_MESSAGES
from modelbus.messages.text import INT64_MAX, INT64_MIN, shorten

Q = TypeVar("Q", bound=BaseModel)
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


def query(model: type[Q]) -> Q:
    """The request's query parameters read through `model`: 400 bad_param (or out_of_range) naming the first bad one."""
    values: dict[str, Any] = {}
    for name, field in model.model_fields.items():
        value = request.args.get(name)
        if value is None:
            continue
        if _schema(model)[name].get("type") == "integer":
            number = query_int(name, value)
            if number is None:
                raise ApiError("bad_param", f"query parameter '{name}' must be an integer, got '{shorten(value, 40)}'")
            values[name] = number
        else:
            values[name] = value
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        error = exc.errors()[0]
        raise ApiError("bad_param", _message(model, str(error["loc"][0]), error)) from None


def _message(model: type[BaseModel], name: str, error: Any) -> str:
    value, kind, ctx = error.get("input"), error["type"], error.get("ctx") or {}
    rule = _schema(model)[name]
    if "minimum" in rule and "maximum" in rule and kind in ("greater_than_equal", "less_than_equal"):
        return f"query parameter '{name}' must be between {rule['minimum']} and {rule['maximum']}, got {value}"
    if kind == "literal_error":
        return f"query parameter '{name}' must be one of {', '.join(rule['enum'])}, got '{shorten(str(value), 40)}'"
    if kind in ("string_too_short", "string_too_long"):
        return f"query parameter '{name}' must have 1 to {rule.get('maxLength')} characters, got {len(value)}"
    if kind == "string_pattern_mismatch":
        return PATTERN_MESSAGES[ctx["pattern"]].format(value=shorten(str(value), 40))
    return f"query parameter '{name}': {error['msg']}"


@lru_cache(maxsize=None)
def _schema(model: type[BaseModel]) -> dict[str, dict[str, Any]]:
    """Each field's JSON Schema, its non-null branch when it may be null."""
    fields = {}
    for name, prop in model.model_json_schema()["properties"].items():
        fields[name] = next((b for b in prop.get("anyOf", [prop]) if b.get("type") != "null"), prop)
    return fields


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
