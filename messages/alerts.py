"""Alert rules as settings declare them (TOML [[alerts]] or JSON in MODELBUS_ALERTS), and when a
prediction rule matches an answer. Structured on purpose: no expression language, no code."""
from __future__ import annotations

import math
from typing import Any, Literal, Mapping, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, model_validator

from modelbus.messages.types import DEFAULT_DATASET, MODEL_KINDS

PREDICTION, LIVE_ACCURACY, LIVE_MAE, LIVE_RMSE, DRIFT = "prediction", "live_accuracy", "live_mae", "live_rmse", "drift"
LIVE = (LIVE_ACCURACY, LIVE_MAE, LIVE_RMSE)


class AlertRule(BaseModel):
    """One rule: what it watches (a prediction, a live metric, drift), the threshold, and what it does."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
    model: Literal[MODEL_KINDS]  # type: ignore[valid-type]
    dataset: str = DEFAULT_DATASET
    on: Literal["prediction", "live_accuracy", "live_mae", "live_rmse", "drift"]
    # Prediction rules: a class's probability; without it, the answer's result.
    class_: Optional[str] = Field(None, alias="class")
    above: Optional[float] = None
    below: Optional[float] = None
    equals: Optional[Union[float, str]] = None
    # Live and drift rules: the last N joined feedbacks / recorded predictions.
    window: int = Field(500, ge=1, le=1_000_000)
    # Drift rules: one feature (by name, or x0, x1, ...); without it, the most drifted feature.
    feature: Optional[str] = None
    action: Literal["alert", "rebuild"] = "alert"

    @model_validator(mode="after")
    def _one_threshold(self) -> AlertRule:
        given = [k for k in ("above", "below", "equals") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"alert '{self.name}': give exactly one of above, below, equals (got {given or 'none'})")
        for key in ("above", "below"):
            value = getattr(self, key)
            if value is not None and not math.isfinite(value):
                raise ValueError(f"alert '{self.name}': {key} must be a finite number")
        if self.on != PREDICTION and (self.class_ is not None or self.equals is not None):
            raise ValueError(f"alert '{self.name}': 'class' and 'equals' belong to prediction rules")
        if self.class_ is not None and self.equals is not None:
            raise ValueError(f"alert '{self.name}': a class probability is compared with above or below")
        if self.on != DRIFT and self.feature is not None:
            raise ValueError(f"alert '{self.name}': 'feature' belongs to drift rules")
        return self

    def crosses(self, value: float) -> bool:
        """True when a number is past this rule's threshold."""
        if self.above is not None:
            return value > self.above
        if self.below is not None:
            return value < self.below
        return False

    def describe(self) -> str:
        """The rule in words, as alerts show it."""
        what = f"probability of class {self.class_}" if self.class_ is not None else (
            "result" if self.on == PREDICTION else self.on.replace("_", " "))
        if self.feature is not None:
            what += f" of {self.feature}"
        if self.equals is not None:
            return f"{what} equals {self.equals}"
        return f"{what} {'above' if self.above is not None else 'below'} {self.above if self.above is not None else self.below}"


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float)) and not isinstance(a, bool) and isinstance(b, (int, float)):
        return float(a) == float(b)
    return str(a) == str(b)


def class_key(label: Any) -> str:
    """A class label as text: 5.0 and 5 are both "5"."""
    if isinstance(label, float) and label.is_integer():
        return str(int(label))
    return str(label)


def prediction_value(rule: AlertRule, answer: Mapping[str, Any], probabilities: Mapping[str, float] | None) -> float | None:
    """The value that makes `rule` fire on an answer, or None when it does not fire."""
    if rule.model != answer.get("model") or rule.dataset != answer.get("dataset"):
        return None
    if rule.class_ is not None:
        if not probabilities or rule.class_ not in probabilities:
            return None
        p = probabilities[rule.class_]
        return p if p is not None and rule.crosses(p) else None
    result = answer.get("result")
    if rule.equals is not None:
        return 1.0 if result is not None and (_same(result, rule.equals) or _same(answer.get("label"), rule.equals)) else None
    if isinstance(result, (int, float)) and not isinstance(result, bool) and rule.crosses(float(result)):
        return float(result)
    return None
