"""Ordinary least squares: the same solution as numpy.linalg.lstsq, exact artifacts."""
from __future__ import annotations

import json

import numpy as np
import pytest

from modelbus.builders import BuildError, InputError, TrainingData, get_builder, train_test_indices


def random_data(n: int = 200, k: int = 3, seed: int = 0) -> TrainingData:
    """Noisy linear data with log-position keys."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, k)) * [1.0, 10.0, 0.1][:k]
    y = X @ rng.normal(size=k) + 2.5 + rng.normal(scale=0.3, size=n)
    return TrainingData(X=X, y=y, keys=np.arange(100, 100 + n))


def test_matches_lstsq_on_the_train_rows():
    data = random_data()
    result = get_builder("linear").fit(data)
    train, _ = train_test_indices(data.keys, 0.65, 6)
    design = np.column_stack([data.X[train], np.ones(train.size)])
    expected, *_ = np.linalg.lstsq(design, data.y[train], rcond=None)
    np.testing.assert_allclose(result.model.coefficients, expected[:-1], rtol=1e-9, atol=0)
    np.testing.assert_allclose(result.model.intercept, expected[-1], rtol=1e-9, atol=0)
    assert result.metrics["coefficients"] == result.model.coefficients.tolist()
    assert result.metrics["intercept"] == result.model.intercept


def test_recovers_known_coefficients_from_noiseless_data():
    rng = np.random.default_rng(3)
    X = rng.uniform(-5, 5, size=(60, 3))
    y = X @ np.array([2.0, -3.0, 0.5]) + 4.0
    result = get_builder("linear").fit(TrainingData(X=X, y=y, keys=np.arange(60)))
    np.testing.assert_allclose(result.model.coefficients, [2.0, -3.0, 0.5], rtol=1e-9)
    np.testing.assert_allclose(result.model.intercept, 4.0, rtol=1e-9)
    assert result.metrics["r2"] == pytest.approx(1.0, abs=1e-12)
    assert result.metrics["rmse"] == pytest.approx(0.0, abs=1e-9)


def test_holdout_metrics_are_measured_on_the_test_rows():
    data = random_data()
    result = get_builder("linear").fit(data, {"split": 0.7, "seed": 11})
    _, test = train_test_indices(data.keys, 0.7, 11)
    residual = data.y[test] - result.model.predict(data.X[test])
    total = data.y[test] - data.y[test].mean()
    assert result.metrics["r2"] == pytest.approx(1 - residual @ residual / (total @ total), rel=1e-12)
    assert result.metrics["rmse"] == pytest.approx(np.sqrt(np.mean(residual**2)), rel=1e-12)
    assert result.metrics["mae"] == pytest.approx(np.mean(np.abs(residual)), rel=1e-12)
    assert (result.metrics["train_size"], result.metrics["test_size"]) == (140, 60)
    assert result.params == {"seed": 11, "split": 0.7}
    json.dumps(result.metrics, allow_nan=False)


def test_artifact_is_canonical_json_that_round_trips_exactly():
    data = random_data()
    builder = get_builder("linear")
    model = builder.fit(data).model
    blob = model.to_bytes()
    obj = json.loads(blob)
    assert blob == json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()
    loaded = builder.load(blob)
    assert loaded.to_bytes() == blob
    assert np.array_equal(loaded.coefficients, model.coefficients) and loaded.intercept == model.intercept
    assert np.array_equal(loaded.predict(data.X), model.predict(data.X))
    assert loaded.predict_proba(data.X) is None and loaded.classes is None


def test_same_data_gives_same_bytes():
    builder = get_builder("linear")
    assert builder.fit(random_data()).model.to_bytes() == builder.fit(random_data()).model.to_bytes()


def test_needs_one_train_row_per_unknown():
    # 3 features + intercept = 4 unknowns; 5 rows at 0.65 give 3 train rows.
    data = random_data(n=5)
    with pytest.raises(BuildError, match="linear needs at least 4 train and 2 test rows"):
        get_builder("linear").fit(data)


def test_prediction_checks_the_row_shape():
    model = get_builder("linear").fit(random_data()).model
    with pytest.raises(InputError, match="expects rows of 3 features"):
        model.predict(np.zeros((2, 4)))


def test_load_rejects_other_artifacts():
    with pytest.raises(ValueError, match="not a modelbus.linear/1 artifact"):
        get_builder("linear").load(b'{"format":"modelbus.slr/1"}')
