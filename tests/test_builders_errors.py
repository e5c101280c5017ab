"""Builds that cannot run fail with a BuildError whose message tells the user why."""
from __future__ import annotations

import re

import numpy as np
import pytest

from modelbus.builders import KINDS, BuildError, TrainingData, get_builder


def data(n: int, labels: list[float] | None = None, k: int = 3) -> TrainingData:
    """n rows of k random features; labels cycle through the given values."""
    rng = np.random.default_rng(0)
    labels = labels or [0.0, 1.0]
    y = np.array([labels[i % len(labels)] for i in range(n)], dtype=float)
    return TrainingData(X=rng.normal(size=(n, k)), y=y, keys=np.arange(n))


def test_unknown_kind():
    with pytest.raises(BuildError) as err:
        get_builder("x")
    assert str(err.value) == "unknown model kind 'x' (known: dtr, linear, mlp, slr)"
    assert KINDS == ("dtr", "linear", "mlp", "slr")
    assert [get_builder(k).kind for k in KINDS] == list(KINDS)


def test_single_class():
    with pytest.raises(BuildError) as err:
        get_builder("mlp").fit(data(20, [3.0]))
    assert str(err.value) == "dataset has 1 distinct label (3.0); mlp needs at least 2"


@pytest.mark.parametrize("kind, n, message", [
    ("mlp", 3, "dataset has 3 rows; split 0.65 gives 2 train and 1 test rows, mlp needs at least 2 train and 2 test rows"),
    ("mlp", 0, "dataset has 0 rows; split 0.65 gives 0 train and 0 test rows, mlp needs at least 2 train and 2 test rows"),
    ("slr", 2, "dataset has 2 rows; split 0.65 gives 1 train and 1 test rows, slr needs at least 3 train and 2 test rows"),
    ("linear", 5, "dataset has 5 rows; split 0.65 gives 3 train and 2 test rows, linear needs at least 4 train and 2 test rows"),
])
def test_too_few_rows(kind, n, message):
    with pytest.raises(BuildError) as err:
        get_builder(kind).fit(data(n))
    assert str(err.value) == message


def test_split_that_empties_a_side():
    with pytest.raises(BuildError, match="split 0.99 gives 99 train and 1 test rows"):
        get_builder("mlp").fit(data(100), {"split": 0.99})


@pytest.mark.parametrize("kind, known", [
    ("mlp", "activation, batch_size, epochs, hidden, lr, seed, split, weight_decay"),
    ("dtr", "class_weight, criterion, max_depth, min_samples_leaf, seed, split"),
    ("slr", "seed, split"),
    ("linear", "seed, split"),
])
def test_unknown_param(kind, known):
    with pytest.raises(BuildError) as err:
        get_builder(kind).validate_params({"epoch": 10})
    assert str(err.value) == f"params: unknown key 'epoch' (known: {known})"


@pytest.mark.parametrize("params, message", [
    ({"lr": -1}, "params.lr must be a positive number, got -1"),
    ({"lr": "0.1"}, 'params.lr must be a positive number, got "0.1"'),
    ({"lr": float("nan")}, "params.lr must be a positive number, got NaN"),
    ({"epochs": 10.5}, "params.epochs must be an integer between 1 and 100000, got 10.5"),
    ({"epochs": True}, "params.epochs must be an integer between 1 and 100000, got true"),
    ({"epochs": 0}, "params.epochs must be an integer between 1 and 100000, got 0"),
    ({"hidden": [32, 0]}, "params.hidden must be a list of at most 8 integers between 1 and 4096, got [32, 0]"),
    ({"hidden": 32}, "params.hidden must be a list of at most 8 integers between 1 and 4096, got 32"),
    ({"activation": "gelu"}, 'params.activation must be one of relu, tanh, sigmoid, got "gelu"'),
    ({"split": 1.5}, "params.split must be a number strictly between 0 and 1, got 1.5"),
    ({"seed": -3}, "params.seed must be a non-negative integer, got -3"),
    ({"batch_size": -1}, "params.batch_size must be a non-negative integer (0 or null for full batch), got -1"),
    ({"weight_decay": None}, "params.weight_decay must be a non-negative number, got null"),
])
def test_wrong_param_value(params, message):
    with pytest.raises(BuildError) as err:
        get_builder("mlp").validate_params(params)
    assert str(err.value) == message


def test_params_must_be_an_object():
    with pytest.raises(BuildError, match=re.escape("params must be a JSON object, got [1, 2]")):
        get_builder("linear").validate_params([1, 2])


def test_params_are_normalised():
    params = get_builder("mlp").validate_params({"lr": 1, "split": 0.5, "batch_size": None})
    assert params["lr"] == 1.0 and isinstance(params["lr"], float) and params["batch_size"] == 0
    assert get_builder("slr").validate_params(None) == {"seed": 6, "split": 0.65}


@pytest.mark.parametrize("kind", KINDS)
def test_non_finite_data(kind):
    bad = data(40)
    X = bad.X.copy()
    X[5, 1] = np.inf
    with pytest.raises(BuildError, match="NaN or infinite"):
        get_builder(kind).fit(TrainingData(X=X, y=bad.y, keys=bad.keys))


def test_too_many_classes_for_a_classifier():
    with pytest.raises(BuildError, match="dataset has 1500 distinct labels; mlp supports at most 1000"):
        get_builder("mlp").fit(data(1500, [float(i) for i in range(1500)]))


def test_training_data_rejects_inconsistent_arrays():
    with pytest.raises(ValueError, match="keys must be unique"):
        TrainingData(X=np.zeros((3, 2)), y=np.zeros(3), keys=np.array([1, 1, 2]))
    with pytest.raises(ValueError, match="disagree on the row count"):
        TrainingData(X=np.zeros((3, 2)), y=np.zeros(2), keys=np.arange(3))


def test_every_builder_scores_by_the_main_metric_the_pages_show():
    from modelbus.messages.types import MAIN_METRICS, MODEL_KINDS

    assert set(MAIN_METRICS) == set(MODEL_KINDS) == set(KINDS)
    assert {kind: get_builder(kind).main_metric for kind in KINDS} == MAIN_METRICS
