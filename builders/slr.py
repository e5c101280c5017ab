"""Simple linear regression of the label on the first feature, in closed form (the seed's linear_model)."""
from __future__ import annotations

import math
import threading
import time
from typing import Any, Mapping

import numpy as np

from modelbus.builders.base import (
    Builder,
    BuildError,
    BuildParams,
    BuildResult,
    Fraction,
    Model,
    Seed,
    TrainingData,
    dumps_canonical,
    loads_artifact,
    max_abs,
    require_finite_answers,
    require_finite_fit,
    require_finite_metrics,
)
from modelbus.builders.metrics import regression_metrics, train_r2
from modelbus.builders.split import holdout

FORMAT = "modelbus.slr/1"


class SlrParams(BuildParams):
    """The params of an slr build."""

    seed: Seed = 6
    split: Fraction = 0.65


# Two points always fit exactly; the standard errors need n - 2 > 0.
MIN_TRAIN = 3
# R² on a single holdout row is undefined.
MIN_TEST = 2


class SlrModel(Model):
    """y = slope * x0 + intercept, where x0 is the first feature of a row."""

    kind = "slr"

    def __init__(self, slope: float, intercept: float, n_features: int) -> None:
        self.slope = float(slope)
        self.intercept = float(intercept)
        self.n_features = int(n_features)

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Predicted label of each row, from its first feature."""
        return self.slope * self.check_rows(X)[:, 0] + self.intercept

    def to_bytes(self) -> bytes:
        """Canonical JSON of the coefficients."""
        return dumps_canonical({"format": FORMAT, "kind": self.kind, "n_features": self.n_features,
                                "slope": self.slope, "intercept": self.intercept})

    @classmethod
    def from_bytes(cls, data: bytes) -> SlrModel:
        """The model from its JSON artifact."""
        obj = loads_artifact(data, FORMAT)
        try:
            return cls(slope=obj["slope"], intercept=obj["intercept"], n_features=obj["n_features"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a {FORMAT} artifact: {exc!r}") from None


def least_squares_line(x: np.ndarray, y: np.ndarray) -> dict:
    """Slope, intercept and their standard errors for y on x; x must not be constant.

    Computed directly (ordinary data gives the same bits as ever), and again on x and y divided
    by their largest magnitude, mapped back, when a sum of squares overflowed.
    """
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        line = _line(x, y)
    if all(math.isfinite(v) for v in line.values()):
        return line
    sx, sy = float(max_abs(x[:, None])[0]), float(max_abs(y[:, None])[0])
    with np.errstate(over="ignore", under="ignore"):
        scaled = _line(x / sx, y / sy)
        return {"slope": scaled["slope"] * sy / sx, "intercept": scaled["intercept"] * sy,
                "slope_stderr": scaled["slope_stderr"] * sy / sx, "intercept_stderr": scaled["intercept_stderr"] * sy}


def _line(x: np.ndarray, y: np.ndarray) -> dict:
    n = x.size
    x_mean, y_mean = x.mean(), y.mean()
    dx = x - x_mean
    sxx = float(dx @ dx)
    slope = float(dx @ (y - y_mean)) / sxx
    intercept = float(y_mean - slope * x_mean)
    residuals = y - (slope * x + intercept)
    # numpy, not math: an overflow gives inf (checked by the caller), not OverflowError.
    sigma = np.sqrt(float(residuals @ residuals) / (n - 2))
    return {
        "slope": slope,
        "intercept": intercept,
        "slope_stderr": float(sigma / np.sqrt(sxx)),
        "intercept_stderr": float(sigma * np.sqrt(1.0 / n + np.float64(x_mean) ** 2 / sxx)),
    }


class SlrBuilder(Builder):
    """Builds SlrModel."""

    kind = "slr"
    main_metric = "r2"
    params_model = SlrParams

    def fit(self, data: TrainingData, params: Mapping[str, Any] | None = None,
            stop: threading.Event | None = None) -> BuildResult:
        """Fit on the train rows, report the closed-form statistics and the holdout errors (too quick to check `stop`)."""
        started = time.perf_counter()
        params = self.validate_params(params)
        train, test = holdout(self.kind, data, params, MIN_TRAIN, MIN_TEST)
        n_train = train.n_rows
        x = train.X[:, 0]
        if np.ptp(x) == 0:
            raise BuildError(f"the first feature is constant ({x[0]:g}) on the {n_train} train rows; "
                             "slr needs it to vary")
        line = least_squares_line(x, train.y)
        require_finite_fit(self.kind, "the fitted slope, intercept and standard errors", list(line.values()))
        model = SlrModel(line["slope"], line["intercept"], data.n_features)
        with np.errstate(over="ignore", invalid="ignore"):
            fitted, predicted = model.predict(train.X), model.predict(test.X)
        require_finite_answers(self.kind, fitted, train, "train")
        require_finite_answers(self.kind, predicted, test, "test")
        metrics = {
            **line,
            "train_r2": train_r2(train.y, fitted),
            "n": n_train,
            "train_size": n_train,
            **regression_metrics(test.y, predicted),
        }
        require_finite_metrics(self.kind, metrics)
        metrics["execution_time"] = time.perf_counter() - started
        return BuildResult(model=model, metrics=metrics, params=params)

    def load(self, data: bytes) -> SlrModel:
        """An SlrModel from its artifact."""
        return SlrModel.from_bytes(data)


BUILDER = SlrBuilder()
