"""JSON as the bus writes it: one canonical form, and values JSON can hold."""
from __future__ import annotations

import json
import math
from typing import Any

import orjson


def canonical_json(obj: Any) -> str:
    """JSON with sorted keys and no spaces: the stored form of every event."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def compact_json(obj: Any) -> str:
    """JSON with no spaces, keys as given, non-finite floats as null: the form of every answer and report."""
    try:
        return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except ValueError:
        return json.dumps(json_safe(obj), separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def json_safe(value: Any) -> Any:
    """`value` with every non-finite float (NaN, infinity) replaced by None, which JSON can hold."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, list):
        return [json_safe(v) for v in value]
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    return value


def fast_json(obj: Any) -> str:
    """compact_json's output, written by orjson (non-finite floats are null there too) where it can."""
    try:
        return orjson.dumps(obj).decode()
    except TypeError:
        return compact_json(obj)
