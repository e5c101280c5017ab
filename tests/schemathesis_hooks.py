"""Schemathesis hooks of tests/test_schemathesis.py (loaded through SCHEMATHESIS_HOOKS).

Each hook covers a rule the OpenAPI document cannot state, and nothing else:
- a payload's value count must be the dataset's (learnt from its first training record) or the
  model's: a schema-valid request refused with wrong_feature_count is not a mismatch;
- JSON Schema judges numbers by value, so 1e300 and 10**300 are both "integers", while the
  parser refuses an integer literal beyond signed 64-bit and takes any finite float literal: the
  document says "number", and no valid case with such an integer literal is generated.
"""
from __future__ import annotations

from typing import Any

import schemathesis
from schemathesis.core.failures import Failure

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
STATE_CODES = {"wrong_feature_count"}


def _error_code(response: Any) -> str | None:
    try:
        body = response.json()
    except ValueError:
        return None
    return body.get("error", {}).get("code") if isinstance(body, dict) else None


@schemathesis.hook
def filter_failure(context: Any, failure: Failure, case: Any, response: Any) -> bool:
    """Keep every failure but a schema-valid request refused for its value count."""
    rejected_positive = type(failure).__name__ == "RejectedPositiveData"
    return not (rejected_positive and response.status_code == 400 and _error_code(response) in STATE_CODES)


def _has_big_int(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return not INT64_MIN <= value <= INT64_MAX
    if isinstance(value, dict):
        return any(_has_big_int(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_big_int(v) for v in value)
    return False


@schemathesis.hook
def filter_case(context: Any, case: Any) -> bool:
    """Drop schema-valid cases holding an integer beyond signed 64-bit (see the module's docstring)."""
    meta = getattr(case, "meta", None)
    positive = meta is not None and meta.generation.mode.is_positive
    return not (positive and _has_big_int(case.body))
