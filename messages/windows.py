"""Windows over raw events, declared in settings (`[[windows]]`): kind, durations, aggregates, dataset, model."""
from __future__ import annotations

import re
from typing import Annotated, Literal, Optional, Union

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints, model_validator

from modelbus.messages.schemas import DATASET_PATTERN, STREAM_PATTERN, ModelKind

_UNITS_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_PART = re.compile(r"([0-9]+)(ms|s|m|h|d)")
_DURATION = re.compile(r"(?:[0-9]+(?:ms|s|m|h|d))+")
# A hopping window puts each event in size/advance windows; more would make one event cost a batch.
MAX_WINDOWS_PER_EVENT = 1000
MAX_DURATION_MS = 366 * 86_400_000


def duration_ms(value: object) -> int:
    """A duration as milliseconds: "10m", "90s", "1h30m", "250ms", or an integer of milliseconds."""
    if isinstance(value, bool):
        raise ValueError("a duration is text such as '10m' (units ms, s, m, h, d)")
    if isinstance(value, int):
        ms = value
    elif isinstance(value, str) and _DURATION.fullmatch(value.strip()):
        ms = sum(int(n) * _UNITS_MS[unit] for n, unit in _PART.findall(value.strip()))
    else:
        raise ValueError(f"duration {value!r} is not text such as '10m', '90s' or '1h30m' (units ms, s, m, h, d)")
    if not 0 <= ms <= MAX_DURATION_MS:
        raise ValueError(f"duration {value!r} must be between 0 and 366 days")
    return ms


Duration = Annotated[int, BeforeValidator(duration_ms),
                     Field(description="A duration: '10m', '90s', '1h30m', '250ms' (or integer milliseconds).")]
Name = Annotated[str, StringConstraints(pattern=DATASET_PATTERN)]
FieldValue = Union[bool, int, float, str]
FUNCTIONS = ("count", "sum", "min", "max", "avg", "distinct_count", "duration")


class Where(BaseModel):
    """Only events whose field equals a value count towards the aggregate."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    field: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    equals: FieldValue


class AggregateSpec(BaseModel):
    """One aggregate of a window: a function over a field of its events (count needs none)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Name
    fn: Literal[FUNCTIONS]  # type: ignore[valid-type]
    field: Optional[Annotated[str, StringConstraints(min_length=1, max_length=64)]] = None
    where: Optional[Where] = None

    @model_validator(mode="after")
    def _field_rules(self) -> AggregateSpec:
        if self.fn in ("sum", "min", "max", "avg", "distinct_count") and self.field is None:
            raise ValueError(f"aggregate '{self.name}': fn '{self.fn}' needs a field")
        if self.fn == "duration" and (self.field is not None or self.where is not None):
            raise ValueError(f"aggregate '{self.name}': duration is the session's length; it takes no field or where")
        return self


class WindowSpec(BaseModel):
    """One declared window: which stream, how events are grouped in time per key, what is computed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Name
    stream: Annotated[str, StringConstraints(pattern=STREAM_PATTERN)]
    kind: Literal["tumbling", "hopping", "session"]
    size: Optional[Duration] = None
    advance: Optional[Duration] = None
    gap: Optional[Duration] = None
    grace: Duration = 0
    aggregates: list[AggregateSpec] = Field(min_length=1, max_length=100)
    dataset: Optional[Name] = Field(None, description="Closed windows are feature rows of this dataset "
                                                      "(default: the window's name).")
    model: Optional[ModelKind] = None  # type: ignore[valid-type]

    @model_validator(mode="after")
    def _kind_rules(self) -> WindowSpec:
        kind, name = self.kind, self.name
        needs = {"tumbling": {"size"}, "hopping": {"size", "advance"}, "session": {"gap"}}[kind]
        for option in ("size", "advance", "gap"):
            given = getattr(self, option) is not None
            if option in needs and not given:
                raise ValueError(f"window '{name}': a {kind} window needs '{option}'")
            if option not in needs and given:
                raise ValueError(f"window '{name}': '{option}' does not apply to a {kind} window")
            if given and getattr(self, option) <= 0:
                raise ValueError(f"window '{name}': '{option}' must be longer than 0")
        if kind == "hopping":
            assert self.size is not None and self.advance is not None
            if self.advance > self.size:
                raise ValueError(f"window '{name}': advance must not exceed size")
            if -(-self.size // self.advance) > MAX_WINDOWS_PER_EVENT:
                raise ValueError(f"window '{name}': size/advance puts an event in more than "
                                 f"{MAX_WINDOWS_PER_EVENT} windows")
        names = [a.name for a in self.aggregates]
        if len(set(names)) != len(names):
            raise ValueError(f"window '{name}': aggregate names must be unique")
        if kind != "session" and any(a.fn == "duration" for a in self.aggregates):
            raise ValueError(f"window '{name}': duration applies to session windows only")
        return self

    @property
    def feature_dataset(self) -> str:
        """The dataset whose feature rows the closed windows are."""
        return self.dataset or self.name

    @property
    def columns(self) -> list[str]:
        """The aggregates' names, in declared order: the columns of a closed window's row."""
        return [a.name for a in self.aggregates]


def check_unique(windows: list[WindowSpec]) -> list[WindowSpec]:
    """Refuse two windows of one name (each has its own rows and route)."""
    names = [w.name for w in windows]
    for name in names:
        if names.count(name) > 1:
            raise ValueError(f"window '{name}' is declared twice")
    return windows
