"""The JSON Schema of each declared message, by name, as /api/schemas/<name> serves it."""
from __future__ import annotations

from typing import Any

from pydantic import TypeAdapter

from modelbus.builders.base import KINDS, get_builder
from modelbus.messages.schemas import MESSAGES, Answer

_PARAMS = {f"{kind}_params": kind for kind in KINDS}


def names() -> list[str]:
    """Every message name /api/schemas/<name> serves."""
    return sorted([*MESSAGES, *_PARAMS])


def json_schema(name: str) -> dict[str, Any] | None:
    """The JSON Schema of one message (as validated when clients send it, as written otherwise), or None."""
    if name in _PARAMS:
        # Imported on request: the mlp builder loads torch.
        tp: Any = get_builder(_PARAMS[name]).params_model
    elif name in MESSAGES:
        tp = MESSAGES[name]
    else:
        return None
    written = isinstance(tp, type) and issubclass(tp, Answer)
    schema = TypeAdapter(tp).json_schema(mode="serialization" if written else "validation")
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": f"/api/schemas/{name}", **schema}
