"""Ordinary least squares of the label on all features, with an intercept."""
from __future__ import annotations

import threading
import time
from typing import Any, Mapping

import numpy as np

from modelbus.builders.base import (
    Builder,
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

FORMAT = "modelbus.linear/1"


class LinearParams(BuildParams):
    """The params of a linear build."""

    seed: Seed = 6
    split: Fraction = 0.65


# R² on a single holdout row is undefined.
MIN_TEST = 2


class LinearModel(Model):
    """y = X @ coefficients + intercept."""

    kind = "linear"

    def __init__(self, coefficients: list[float], intercept: float) -> None:
        self.coefficients = np.asarray(coefficients, dtype=np.float64)
        if self.coefficients.ndim != 1 or self.coefficients.size < 1:
            raise ValueError("coefficients must be a non-empty list of numbers")
        self.intercept = float(intercept)
        self.n_features = int(self.coefficients.size)

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Predicted label of each row."""
        return self.check_rows(X) @ self.coefficients + self.intercept

    def to_bytes(self) -> bytes:
        """Canonical JSON of the coefficients."""
        return dumps_canonical({"format": FORMAT, "kind": self.kind, "n_features": self.n_features,
                                "coefficients": self.coefficients.tolist(), "intercept": self.intercept})

    @classmethod
    def from_bytes(cls, data: bytes) -> LinearModel:
        """The model from its JSON artifact."""
        obj = loads_artifact(data, FORMAT)
        try:
            model = cls(coefficients=obj["coefficients"], intercept=obj["intercept"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a {FORMAT} artifact: {exc!r}") from None
        if model.n_features != obj.get("n_features"):
            raise ValueError(f"not a {FORMAT} artifact: n_features disagrees with the coefficients")
        return model


# Columns whose magnitudes differ by more than this (about the square root of 1/eps) are
# scaled before the solve: beyond it lstsq loses the small columns' digits, and at 1e300 it
# takes them for rank deficiency (R² -1.28, predictions around 1e-316).
MAX_SCALE_RATIO = 2.0**26


def ordinary_least_squares(X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float, int]:
    """Coefficients, intercept and rank of the design matrix, by numpy.linalg.lstsq on [X, 1].

    When the columns' magnitudes (the intercept's is 1) are too far apart, or the label's is
    extreme, every column and the label are divided by their largest magnitude first and the
    solution mapped back; ordinary data is solved as it is, so it gives the same bits as ever.
    """
    design = np.column_stack([X, np.ones(X.shape[0])])
    scale = max_abs(design)
    y_scale = float(max_abs(y[:, None])[0])
    if scale.max() / scale.min() <= MAX_SCALE_RATIO and 2.0**-500 < y_scale < 2.0**500:
        solution, _, rank, _ = np.linalg.lstsq(design, y, rcond=None)
        return solution[:-1], float(solution[-1]), int(rank)
    solution, _, rank, _ = np.linalg.lstsq(design / scale, y / y_scale, rcond=None)
    with np.errstate(over="ignore", under="ignore"):
        solution = solution / scale * y_scale
    return solution[:-1], float(solution[-1]), int(rank)


class LinearBuilder(Builder):
    """Builds LinearModel."""

    kind = "linear"
    main_metric = "r2"
    params_model = LinearParams

    def fit(self, data: TrainingData, params: Mapping[str, Any] | None = None,
            stop: threading.Event | None = None) -> BuildResult:
        """Fit on the train rows and measure on the test rows (one least-squares solve: `stop` is not checked)."""
        started = time.perf_counter()
        params = self.validate_params(params)
        # One row per unknown (the coefficients and the intercept) at the very least.
        train, test = holdout(self.kind, data, params, data.n_features + 1, MIN_TEST)
        coefficients, intercept, rank = ordinary_least_squares(train.X, train.y)
        require_finite_fit(self.kind, "the fitted coefficients", coefficients, intercept)
        model = LinearModel(coefficients.tolist(), intercept)
        with np.errstate(over="ignore", invalid="ignore"):
            fitted, predicted = model.predict(train.X), model.predict(test.X)
        # Coefficients each finite can still give infinite answers on the rows they were fitted to.
        require_finite_answers(self.kind, fitted, train, "train")
        require_finite_answers(self.kind, predicted, test, "test")
        metrics = {
            "coefficients": model.coefficients.tolist(),
            "intercept": model.intercept,
            # Below n_features + 1 some features are collinear and lstsq chose the minimum-norm fit.
            "rank": rank,
            "train_r2": train_r2(train.y, fitted),
            "train_size": train.n_rows,
            **regression_metrics(test.y, predicted),
        }
        require_finite_metrics(self.kind, metrics)
        metrics["execution_time"] = time.perf_counter() - started
        return BuildResult(model=model, metrics=metrics, params=params)

    def load(self, data: bytes) -> LinearModel:
        """A LinearModel from its artifact."""
        return LinearModel.from_bytes(data)


BUILDER = LinearBuilder()
