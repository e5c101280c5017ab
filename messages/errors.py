"""Why a message is refused: a stable code and a precise reason, and pydantic's errors mapped to them."""
from __future__ import annotations

from functools import lru_cache
from typing import Any, Mapping

from pydantic import BaseModel, ValidationError

from modelbus.messages.text import field_name, int_text, json_type, shown

# The longest name (type, command, model kind) a message may give; a longer one is refused as such.
NAME_MAX = 32
# Messages of the patterns a field must match, by pattern (declared with the field: schemas.matching).
PATTERN_MESSAGES: dict[str, str] = {}


class Rejected(ValueError):
    """A message that cannot be accepted, with a stable code and a precise reason."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message

    def as_dict(self) -> dict[str, str]:
        """The error as the JSON object every entry point answers with."""
        return {"code": self.code, "message": self.message}


def int64_range_error(where: str, value: str) -> Rejected:
    """The out_of_range error of an integer the store cannot hold."""
    return Rejected("out_of_range", f"{where} is {value}, outside the signed 64-bit integer range")


def name_rejected(field: str, value: Any, unknown: tuple[str, str] | None) -> Rejected:
    """Why `value` is not one of the names field `field` takes; `unknown` is (code, message template)."""
    if value is None:
        return Rejected("missing_field", f"field '{field}' is required")
    if not isinstance(value, str):
        return Rejected("bad_field", f"field '{field}' must be a string, got {json_type(value)}")
    if not 0 < len(value) <= NAME_MAX:
        return Rejected("bad_field", f"field '{field}' must have 1 to {NAME_MAX} characters, got {len(value)}")
    if unknown is None:
        return Rejected("bad_field", f"field '{field}' must be one of its names, got '{value}'")
    code, template = unknown
    return Rejected(code, template.format(value=value))


def rejected_from(exc: ValidationError, model: type[BaseModel], obj: Mapping[str, Any]) -> Rejected:
    """The one Rejected a message gets for pydantic's errors: the first rule it breaks, in the model's order."""
    errors = exc.errors()
    fields = list(model.model_fields)
    foreign: Mapping[str, str] = getattr(model, "foreign", {})
    unknown_rank = fields.index(model.unknown_before) - 0.5 if getattr(model, "unknown_before", None) else -1

    def rank(error: Any) -> tuple[float, str]:
        name = str(error["loc"][0]) if error["loc"] else ""
        if error["type"] == "extra_forbidden":
            # Unknown fields are reported alphabetically; a field of another command after every other rule.
            return (len(fields) if name in foreign else unknown_rank, name)
        return (fields.index(name) if name in fields else len(fields), "")

    first = min(errors, key=rank)
    return _rejected(first, model, obj, foreign)


def _rejected(error: Any, model: type[BaseModel], obj: Mapping[str, Any], foreign: Mapping[str, str]) -> Rejected:
    kind, loc, value = error["type"], error["loc"], error.get("input")
    ctx = error.get("ctx") or {}
    if kind in ("value_error", "assertion_error") and isinstance(ctx.get("error"), Rejected):
        return ctx["error"]
    if not loc:
        return Rejected("not_object", f"message must be a JSON object, got {json_type(value)}")
    name = str(loc[0])
    where = f"field '{field_name(name)}'"
    if kind == "extra_forbidden":
        if name in foreign:
            return Rejected("bad_field", f"{where} belongs to {foreign[name]}, not to {obj.get('payload')}")
        allowed = sorted({*model.model_fields, *foreign})
        return Rejected("unknown_field",
                        f"unknown {where} in {getattr(model, 'what', 'a message')} (allowed: {', '.join(allowed)})")
    if kind == "missing" or (value is None and len(loc) == 1 and model.model_fields[name].is_required()):
        return Rejected("missing_field", f"{where} is required")
    if kind == "literal_error":
        return name_rejected(name, value, getattr(model, "names", {}).get(name))
    if kind == "string_type":
        return Rejected("bad_field", f"{where} must be a string, got {json_type(value)}")
    if kind in ("string_too_short", "string_too_long"):
        return Rejected("bad_field", f"{where} must have 1 to {_limits(model, name).get('maxLength')} characters, "
                                     f"got {len(value)}")
    if kind == "string_pattern_mismatch":
        return Rejected("bad_field", PATTERN_MESSAGES[ctx["pattern"]].format(value=value))
    if kind in ("int_type", "greater_than_equal", "greater_than"):
        given = obj.get(name, value) if len(loc) == 1 else value
        return Rejected("bad_field", f"{where} must be {_int_rule(_limits(model, name))}, got {shown(given)}")
    if kind in ("less_than_equal", "less_than"):
        shown_value = int_text(value) if isinstance(value, int) else shown(value)
        return Rejected("out_of_range", f"{where} must be at most {ctx.get('le', ctx.get('lt'))}, got {shown_value}")
    if kind in ("dict_type", "model_type"):
        return Rejected("bad_field", f"{where} must be an object, got {json_type(value)}")
    return Rejected("bad_field", f"{where}: {error['msg']}")


@lru_cache(maxsize=None)
def _schema(model: type[BaseModel]) -> dict[str, Any]:
    return model.model_json_schema()


def _limits(model: type[BaseModel], name: str) -> dict[str, Any]:
    """The JSON Schema of field `name` (its non-null branch when it may be null)."""
    prop = _schema(model)["properties"].get(name, {})
    for branch in prop.get("anyOf", [prop]):
        if branch.get("type") != "null":
            return branch
    return prop


def _int_rule(limits: Mapping[str, Any]) -> str:
    low = limits.get("minimum")
    if low == 1:
        return "a positive integer"
    if low == 0:
        return "a non-negative integer"
    return "an integer"
