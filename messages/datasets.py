"""Typed datasets: named features of declared types and a typed label, and payload objects checked against them.

A dataset declared with named, typed fields (seed 004's `input_schema` and `output_labels`)
takes payloads as JSON objects keyed by field name; every error names the field
(`payload.island: expected a string category, got 3`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

from modelbus.messages.errors import Rejected
from modelbus.messages.text import field_name, json_type, shown

# The types a field may declare.
NUMBER, CATEGORY, INTEGER, BOOLEAN = "number", "category", "integer", "boolean"
FIELD_TYPES = (NUMBER, CATEGORY, INTEGER, BOOLEAN)
# A category value is a short label, not free text.
MAX_CATEGORY_CHARS = 255
MAX_FIELD_NAME_CHARS = 64
DEFAULT_LABEL = "label"

Value = float | str


def _expected(kind: str) -> str:
    return {NUMBER: "a number", CATEGORY: "a string category", INTEGER: "an integer", BOOLEAN: "true or false"}[kind]


def check_value(kind: str, value: Any, where: str) -> Value:
    """One field's value as the builders take it (float, or str for a category), or Rejected naming the field."""
    got = f"got {shown(value)}" if value is not None else "got null (a missing value)"
    if kind == CATEGORY:
        if not isinstance(value, str):
            raise Rejected("bad_field", f"{where}: expected a string category, {got}")
        if not 0 < len(value) <= MAX_CATEGORY_CHARS:
            raise Rejected("bad_field", f"{where}: a category must have 1 to {MAX_CATEGORY_CHARS} characters, "
                                        f"got {len(value)}")
        return value
    if kind == BOOLEAN:
        if not isinstance(value, bool):
            raise Rejected("bad_field", f"{where}: expected true or false, {got}")
        return 1.0 if value else 0.0
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise Rejected("not_numeric", f"{where}: expected {_expected(kind)}, {got}")
    if kind == INTEGER and not float(value).is_integer():
        raise Rejected("bad_field", f"{where}: expected an integer, {got}")
    try:
        number = float(value)
    except OverflowError:
        raise Rejected("out_of_range", f"{where}: {shown(value)} is too large for a float") from None
    if not math.isfinite(number):
        raise Rejected("not_finite", f"{where}: {value} is not a finite number")
    return number


@dataclass(frozen=True)
class InputSchema:
    """A dataset's typed fields: features in declared order, and the label's name and type."""

    features: tuple[tuple[str, str], ...]
    label: tuple[str, str] = (DEFAULT_LABEL, NUMBER)

    def __post_init__(self) -> None:
        names = [name for name, _ in self.features]
        if not names:
            raise ValueError("a typed dataset needs at least one feature")
        for name, kind in (*self.features, self.label):
            if kind not in FIELD_TYPES:
                raise ValueError(f"field '{name}' has type '{kind}'; types are {', '.join(FIELD_TYPES)}")
            if not 0 < len(name) <= MAX_FIELD_NAME_CHARS:
                raise ValueError(f"field names must have 1 to {MAX_FIELD_NAME_CHARS} characters, got '{name}'")
        if self.label[0] in names:
            raise ValueError(f"the label '{self.label[0]}' is also declared as a feature")

    @property
    def names(self) -> list[str]:
        """The feature names, in declared order."""
        return [name for name, _ in self.features]

    @property
    def numeric(self) -> bool:
        """True when every feature and the label are numbers: CSV and arrays are then accepted too."""
        return all(kind != CATEGORY for _, kind in (*self.features, self.label))

    @property
    def category_label(self) -> bool:
        """True when the label is a category (a classifier answers with its value)."""
        return self.label[1] == CATEGORY

    def features_of(self, payload: Mapping[str, Any], *, label: bool = False) -> tuple[Value, ...]:
        """The feature values of a payload object (and the label last when `label`), or Rejected naming the field."""
        fields = [*self.features, self.label] if label else list(self.features)
        known = {name for name, _ in fields}
        for key in payload:
            if key not in known:
                raise Rejected("unknown_field", f"payload.{field_name(key)} is not a field of this dataset "
                                                f"(fields: {', '.join(name for name, _ in fields)})")
        values = []
        for name, kind in fields:
            if name not in payload:
                raise Rejected("missing_field", f"payload.{name} is required")
            values.append(check_value(kind, payload[name], f"payload.{name}"))
        return tuple(values)

    def as_dict(self) -> dict[str, Any]:
        """The schema as artifacts, metrics and the API show it: features as a list, since canonical JSON sorts keys."""
        return {"features": [{"name": name, "type": kind} for name, kind in self.features],
                "label": {"name": self.label[0], "type": self.label[1]}}

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any]) -> InputSchema:
        """The schema from as_dict's form."""
        label = obj.get("label") or {}
        return cls(features=tuple((str(f["name"]), str(f["type"])) for f in obj["features"]),
                   label=(str(label.get("name", DEFAULT_LABEL)), str(label.get("type", NUMBER))))

    def json_schema(self, *, label: bool) -> dict[str, Any]:
        """The JSON Schema of a payload object: a training record's (`label`) or a prediction request's."""
        fields = [*self.features, self.label] if label else list(self.features)
        properties = {name: _field_schema(kind) for name, kind in fields}
        return {"type": "object", "properties": properties, "required": [name for name, _ in fields],
                "additionalProperties": False}


def _field_schema(kind: str) -> dict[str, Any]:
    if kind == CATEGORY:
        return {"type": "string", "minLength": 1, "maxLength": MAX_CATEGORY_CHARS}
    if kind == BOOLEAN:
        return {"type": "boolean"}
    return {"type": "integer" if kind == INTEGER else "number"}


def payload_kind(payload: Any) -> str:
    """How a payload is written, for errors: 'an object', 'CSV text' or 'an array'."""
    return {"object": "an object", "string": "CSV text", "array": "an array"}.get(json_type(payload), json_type(payload))


def numeric_payload_schema(values: int) -> dict[str, Any]:
    """The JSON Schema of a payload of exactly `values` numbers: CSV text or an array."""
    from modelbus.messages.values import PLAIN_NUMBER, SPACE

    csv = rf"^{SPACE}{PLAIN_NUMBER}{SPACE}(?:,{SPACE}{PLAIN_NUMBER}{SPACE}){{{values - 1}}}$"
    return {"oneOf": [{"type": "string", "pattern": csv},
                      {"type": "array", "items": {"type": "number"}, "minItems": values, "maxItems": values}]}


def dataset_payloads(width: int | None, schema: InputSchema | None) -> dict[str, Any]:
    """The JSON Schemas of a dataset's training and prediction payloads (`width`: features plus label)."""
    if schema is not None:
        training, prediction = schema.json_schema(label=True), schema.json_schema(label=False)
        if schema.numeric:
            n = len(schema.features)
            training = {"oneOf": [training, numeric_payload_schema(n + 1)]}
            prediction = {"oneOf": [prediction, numeric_payload_schema(n)]}
        return {"training": training, "prediction": prediction}
    if width is None:
        return {"training": None, "prediction": None}
    return {"training": numeric_payload_schema(width), "prediction": numeric_payload_schema(width - 1)}
