"""Schemathesis hooks of tests/test_schemathesis.py (loaded through SCHEMATHESIS_HOOKS).

Each hook covers a rule the OpenAPI document cannot state, and nothing else:
- a payload's value count must be the dataset's (learnt from its first training record) or the
  model's: a schema-valid request refused with wrong_feature_count is not a mismatch;
- likewise a payload's form must be the dataset's: an object for a dataset that declares typed
  fields, CSV or an array for one that does not (the document allows all three): a schema-valid
  request refused with bad_field for its form (SHAPE_MESSAGES) is not a mismatch;
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
# What the refusals of a payload's form for its dataset or model say (messages.parse.check_record,
# handlers.serving.predict.typed_request).
SHAPE_MESSAGES = ("declares no typed fields", "declares category fields", "takes its payload as")


def _error(response: Any) -> dict:
    try:
        body = response.json()
    except ValueError:
        return {}
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, dict) else {}


def _error_code(response: Any) -> str | None:
    return _error(response).get("code")


def _refused_for_its_form(response: Any) -> bool:
    error = _error(response)
    return error.get("code") == "bad_field" and any(m in str(error.get("message")) for m in SHAPE_MESSAGES)


@schemathesis.hook
def filter_failure(context: Any, failure: Failure, case: Any, response: Any) -> bool:
    """Keep every failure but a schema-valid request refused for its value count or its payload's form."""
    rejected_positive = type(failure).__name__ == "RejectedPositiveData"
    state = _error_code(response) in STATE_CODES or _refused_for_its_form(response)
    return not (rejected_positive and response.status_code == 400 and state)


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
