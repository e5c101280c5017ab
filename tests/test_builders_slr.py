"""Simple linear regression on the first feature against the textbook closed form."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from modelbus.builders import BuildError, TrainingData, get_builder, train_test_indices


def noisy_data(n: int = 120, seed: int = 0) -> TrainingData:
    """y depends on the first feature; the other two are noise the model must ignore."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3)) * [2.0, 1.0, 1.0] + [5.0, 0.0, 0.0]
    y = 1.7 * X[:, 0] - 0.4 + rng.normal(scale=0.8, size=n)
    return TrainingData(X=X, y=y, keys=np.arange(1, n + 1))


def closed_form(x: np.ndarray, y: np.ndarray) -> dict:
    """Slope, intercept, R² and standard errors written out from the textbook formulas."""
    n = len(x)
    sxx = sum((xi - x.mean()) ** 2 for xi in x)
    sxy = sum((xi - x.mean()) * (yi - y.mean()) for xi, yi in zip(x, y))
    slope = sxy / sxx
    intercept = y.mean() - slope * x.mean()
    sse = sum((yi - (slope * xi + intercept)) ** 2 for xi, yi in zip(x, y))
    sst = sum((yi - y.mean()) ** 2 for yi in y)
    s = math.sqrt(sse / (n - 2))
    return {
        "slope": slope,
        "intercept": intercept,
        "train_r2": 1 - sse / sst,
        "slope_stderr": s / math.sqrt(sxx),
        "intercept_stderr": s * math.sqrt(1 / n + x.mean() ** 2 / sxx),
    }


def test_equals_the_closed_form_on_the_train_rows():
    data = noisy_data()
    result = get_builder("slr").fit(data)
    train, test = train_test_indices(data.keys, 0.65, 6)
    expected = closed_form(data.X[train, 0], data.y[train])
    for name, value in expected.items():
        assert result.metrics[name] == pytest.approx(value, rel=1e-9), name
    assert result.model.slope == result.metrics["slope"]
    assert result.model.intercept == result.metrics["intercept"]
    assert result.metrics["n"] == result.metrics["train_size"] == train.size
    assert result.metrics["test_size"] == test.size


def test_holdout_metrics_use_the_test_rows():
    data = noisy_data()
    result = get_builder("slr").fit(data)
    _, test = train_test_indices(data.keys, 0.65, 6)
    residual = data.y[test] - (result.model.slope * data.X[test, 0] + result.model.intercept)
    total = data.y[test] - data.y[test].mean()
    assert result.metrics["r2"] == pytest.approx(1 - residual @ residual / (total @ total), rel=1e-12)
    assert result.metrics["rmse"] == pytest.approx(np.sqrt(np.mean(residual**2)), rel=1e-12)
    assert result.metrics["mae"] == pytest.approx(np.mean(np.abs(residual)), rel=1e-12)
    assert get_builder("slr").main_metric == "r2"
    json.dumps(result.metrics, allow_nan=False)


def test_only_the_first_feature_matters():
    data = noisy_data()
    scrambled = TrainingData(X=np.column_stack([data.X[:, 0], -data.X[:, 1:] * 7]), y=data.y, keys=data.keys)
    model = get_builder("slr").fit(data).model
    assert model.to_bytes() == get_builder("slr").fit(scrambled).model.to_bytes()
    assert model.n_features == 3
    rows = np.array([[2.0, 100.0, -100.0], [2.0, 0.0, 0.0]])
    prediction = model.predict(rows)
    assert prediction[0] == prediction[1] == model.slope * 2.0 + model.intercept


def test_artifact_round_trips_exactly():
    data = noisy_data()
    model = get_builder("slr").fit(data).model
    blob = model.to_bytes()
    assert blob == json.dumps(json.loads(blob), sort_keys=True, separators=(",", ":")).encode()
    loaded = get_builder("slr").load(blob)
    assert (loaded.slope, loaded.intercept, loaded.n_features) == (model.slope, model.intercept, 3)
    assert np.array_equal(loaded.predict(data.X), model.predict(data.X))
    assert loaded.to_bytes() == blob


def test_constant_first_feature_is_a_build_error():
    data = noisy_data()
    flat = TrainingData(X=np.column_stack([np.full(data.n_rows, 4.0), data.X[:, 1:]]), y=data.y, keys=data.keys)
    with pytest.raises(BuildError, match=r"the first feature is constant \(4\) on the 78 train rows"):
        get_builder("slr").fit(flat)


def test_too_few_rows_is_a_build_error():
    with pytest.raises(BuildError, match="dataset has 4 rows; split 0.65 gives 3 train and 1 test rows, "
                                         "slr needs at least 3 train and 2 test rows"):
        get_builder("slr").fit(noisy_data(n=4))
