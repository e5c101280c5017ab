"""JSON as the bus writes it: one canonical form, and values JSON can hold."""
from __future__ import annotations

import json
import math
import re
from typing import Any

import orjson

_ORJSON_CANONICAL = orjson.OPT_SORT_KEYS | orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_SUBCLASS
# Where orjson's text may differ from json.dumps's: a float in exponent form (Python and orjson
# switch to it at different magnitudes: 1e-05 vs 0.00001), and null (orjson writes NaN as null
# where json.dumps refuses it). Strings that merely contain these only take the slow path.
_MAY_DIFFER = re.compile(rb"[0-9][eE]|\.0000|null").search


def canonical_json(obj: Any) -> str:
    """JSON with sorted keys and no spaces: the stored form of every event (json.dumps's text exactly)."""
    # orjson writes the same text as json.dumps below in a fraction of the time (ingest stores
    # one per event); it refuses what it cannot write the same way (lone surrogates, integers
    # beyond 64 bits, subclasses), and any doubt about a float or null takes json.dumps itself.
    try:
        data = orjson.dumps(obj, option=_ORJSON_CANONICAL)
    except TypeError:
        data = None
    if data is not None and _MAY_DIFFER(data) is None:
        return data.decode()
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def compact_json(obj: Any) -> str:
    """JSON with no spaces, keys as given, non-finite floats as null: the form of every answer and report."""
    try:
        return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except ValueError:
        return json.dumps(json_safe(obj), separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def compact_json_bytes(obj: Any) -> bytes:
    """compact_json's document as UTF-8 bytes, written by orjson (a float may take another of its exact spellings)."""
    # orjson writes non-finite floats as null already, and numpy scalars and arrays as numbers.
    try:
        return orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY)
    except TypeError:
        return compact_json(obj).encode()


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
