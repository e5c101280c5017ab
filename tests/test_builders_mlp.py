"""The PyTorch MLP: quality on the seed's data, bit-for-bit determinism, safe artifacts."""
from __future__ import annotations

import hashlib
import json
import os
import pickle
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from modelbus.builders import BuildResult, Cancelled, InputError, TrainingData, get_builder, train_test_indices
from modelbus.builders.mlp import MlpModel

ROOT = Path(__file__).resolve().parents[1]
DARCEY_CANDIDATES = [ROOT / "data" / "darcey.csv"]


def darcey_path() -> Path:
    """Where the seed's darcey.csv is; the test fails (never skips) when it is missing."""
    for path in DARCEY_CANDIDATES:
        if path.exists():
            return path
    pytest.fail(f"darcey.csv not found in {[str(p) for p in DARCEY_CANDIDATES]}", pytrace=False)


def load_darcey() -> TrainingData:
    """darcey.csv as training data: craig, len, bruno -> darcey, keyed by line number."""
    rows = np.loadtxt(darcey_path(), delimiter=",")
    return TrainingData.from_rows(rows, keys=np.arange(1, len(rows) + 1))


@pytest.fixture(scope="module")
def darcey() -> TrainingData:
    """The seed's data set."""
    return load_darcey()


@pytest.fixture(scope="module")
def default_build(darcey) -> BuildResult:
    """One build of darcey with the default params, shared by the tests that only read it."""
    return get_builder("mlp").fit(darcey)


def small_data(n: int = 120, seed: int = 0) -> TrainingData:
    """Three separable-ish classes with non-integer labels."""
    rng = np.random.default_rng(seed)
    labels = np.array([-1.5, 2.0, 7.25])
    y = labels[rng.integers(0, 3, size=n)]
    X = np.column_stack([y + rng.normal(scale=0.7, size=n), rng.normal(size=n) * 50, np.full(n, 3.0)])
    return TrainingData(X=X, y=y, keys=np.arange(10, 10 + 3 * n, 3))


FAST = {"epochs": 30}


def test_darcey_holdout_accuracy_with_default_params(default_build):
    assert default_build.metrics["accuracy"] >= 0.55


def test_metrics_are_complete_and_json(default_build, darcey):
    metrics = default_build.metrics
    json.dumps(metrics, allow_nan=False)
    classes = sorted(set(darcey.y.tolist()))
    assert metrics["classes"] == classes
    assert metrics["train_size"] + metrics["test_size"] == darcey.n_rows
    assert metrics["train_size"] == round(darcey.n_rows * 0.65)
    matrix = np.array(metrics["confusion_matrix"])
    assert matrix.shape == (len(classes), len(classes)) and matrix.sum() == metrics["test_size"]
    assert np.trace(matrix) / metrics["test_size"] == pytest.approx(metrics["accuracy"])
    assert matrix.sum(axis=1).tolist() == metrics["class_counts"]["test"]
    assert sum(metrics["class_counts"]["train"]) == metrics["train_size"]
    assert 0 < metrics["f1_macro"] <= 1 and metrics["log_loss"] > 0 and metrics["execution_time"] > 0


def test_params_are_the_full_effective_set(default_build):
    builder = get_builder("mlp")
    assert default_build.params == builder.validate_params(None)
    assert builder.validate_params(default_build.params) == default_build.params
    assert set(default_build.params) == {"activation", "batch_size", "epochs", "hidden", "lr", "seed", "split",
                                         "weight_decay"}
    assert default_build.params["seed"] == 6 and default_build.params["split"] == 0.65
    assert builder.main_metric == "accuracy"


def test_versions_are_recorded(default_build):
    assert default_build.versions["torch"].startswith(torch.__version__.split("+")[0])
    assert {"python", "numpy", "sklearn", "torch_cpu_capability"} <= set(default_build.versions)


def test_same_data_and_params_give_identical_bytes(default_build, darcey):
    again = get_builder("mlp").fit(darcey)
    assert again.model.to_bytes() == default_build.model.to_bytes()
    assert {k: v for k, v in again.metrics.items() if k != "execution_time"} == \
        {k: v for k, v in default_build.metrics.items() if k != "execution_time"}


SUBPROCESS_BUILD = """
import hashlib, sys
import numpy as np
from modelbus.builders import TrainingData, get_builder
rows = np.loadtxt(sys.argv[1], delimiter=",")
data = TrainingData.from_rows(rows, keys=np.arange(1, len(rows) + 1))
print(hashlib.sha256(get_builder("mlp").fit(data).model.to_bytes()).hexdigest())
"""


def test_a_build_in_another_process_gives_identical_bytes(default_build):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", SUBPROCESS_BUILD, str(darcey_path())], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == hashlib.sha256(default_build.model.to_bytes()).hexdigest()


def test_concurrent_builds_in_threads_are_identical():
    data = small_data()
    expected = get_builder("mlp").fit(data, FAST).model.to_bytes()
    blobs: list[bytes] = []

    def build() -> None:
        blobs.append(get_builder("mlp").fit(data, FAST).model.to_bytes())

    threads = [threading.Thread(target=build) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert blobs == [expected] * 3


def test_mini_batches_and_other_activations_are_deterministic():
    data = small_data()
    for params in ({"batch_size": 16, "epochs": 5, "activation": "tanh"},
                   {"batch_size": 50, "epochs": 5, "activation": "sigmoid", "hidden": [8, 4, 3]},
                   {"hidden": [], "epochs": 20, "batch_size": None}):
        first = get_builder("mlp").fit(data, params)
        second = get_builder("mlp").fit(data, params)
        assert first.model.to_bytes() == second.model.to_bytes(), params
    assert first.params["batch_size"] == 0


class StopAfter(threading.Event):
    """A stop event that reads as set from its n+1-th look on: a SIGTERM in the middle of training."""

    def __init__(self, n: int):
        super().__init__()
        self.looks = 0
        self.n = n

    def is_set(self) -> bool:
        self.looks += 1
        return self.looks > self.n


def test_a_cancelled_fit_stops_at_once_and_leaves_later_fits_identical():
    """Cancellation (SIGTERM mid-build) raises at the next step and never changes a completed fit."""
    data = small_data()
    params = {**FAST, "batch_size": 16}  # 30 epochs of 5 steps
    expected = get_builder("mlp").fit(data, params).model.to_bytes()
    threads = torch.get_num_threads()
    stop = StopAfter(40)
    with pytest.raises(Cancelled):
        get_builder("mlp").fit(data, params, stop)
    assert stop.looks == 41, "the fit stops at the first look after the stop"
    assert torch.get_num_threads() == threads
    # A stop event that stays unset changes nothing, and neither did the cancelled fit before.
    assert get_builder("mlp").fit(data, params, threading.Event()).model.to_bytes() == expected


def test_seed_changes_the_weights():
    data = small_data()
    assert get_builder("mlp").fit(data, {**FAST, "seed": 1}).model.to_bytes() != \
        get_builder("mlp").fit(data, {**FAST, "seed": 2}).model.to_bytes()


def test_a_build_leaves_torch_global_state_alone():
    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    torch.manual_seed(123)
    expected = torch.rand(4)
    torch.manual_seed(123)
    get_builder("mlp").fit(small_data(), FAST)
    assert torch.equal(torch.rand(4), expected)
    assert torch.get_num_threads() == threads
    assert torch.are_deterministic_algorithms_enabled() == deterministic


def test_round_trip_gives_identical_predictions(default_build, darcey):
    model = default_build.model
    blob = model.to_bytes()
    loaded = get_builder("mlp").load(blob)
    assert loaded.to_bytes() == blob
    assert np.array_equal(loaded.predict(darcey.X), model.predict(darcey.X))
    assert np.array_equal(loaded.predict_proba(darcey.X), model.predict_proba(darcey.X))
    assert loaded.classes == model.classes and loaded.n_features == 3


def test_loading_never_unpickles(default_build, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("pickle used while loading an artifact")

    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, refuse)
    loaded = MlpModel.from_bytes(default_build.model.to_bytes())
    assert loaded.classes == default_build.model.classes


def test_artifact_carries_the_architecture_as_metadata(default_build):
    blob = default_build.model.to_bytes()
    header = json.loads(blob[8:8 + int.from_bytes(blob[:8], "little")])
    info = json.loads(header["__metadata__"]["modelbus"])
    assert info["hidden"] == default_build.params["hidden"]
    assert info["activation"] == default_build.params["activation"]
    assert info["n_features"] == 3 and info["torch"] == torch.__version__ and info["threads"] == 1
    assert header["classes"]["dtype"] == "F64" and header["mean"]["dtype"] == "F64"


def test_predictions_are_label_values_and_probabilities_sum_to_one(default_build, darcey):
    model = default_build.model
    assert model.classes == sorted(set(darcey.y.tolist()))
    predicted = model.predict(darcey.X[:50])
    assert set(predicted.tolist()) <= set(model.classes)
    proba = model.predict_proba(darcey.X[:50])
    assert proba.shape == (50, len(model.classes))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-12)
    assert np.array_equal(predicted, np.array(model.classes)[proba.argmax(axis=1)])


def test_non_integer_labels_come_back_as_themselves():
    data = small_data()
    model = get_builder("mlp").fit(data, FAST).model
    assert model.classes == [-1.5, 2.0, 7.25]
    assert set(model.predict(data.X).tolist()) <= {-1.5, 2.0, 7.25}


def test_standardisation_is_fitted_on_the_train_rows_only(default_build, darcey):
    train, _ = train_test_indices(darcey.keys, 0.65, 6)
    np.testing.assert_array_equal(default_build.model.mean, darcey.X[train].mean(axis=0))
    np.testing.assert_array_equal(default_build.model.std, darcey.X[train].std(axis=0))
    assert not np.array_equal(default_build.model.mean, darcey.X.mean(axis=0))


def test_a_constant_feature_is_scaled_by_one():
    model = get_builder("mlp").fit(small_data(), FAST).model
    assert model.mean[2] == 3.0 and model.std[2] == 1.0


def test_prediction_checks_the_row_shape(default_build):
    with pytest.raises(InputError, match="expects rows of 3 features"):
        default_build.model.predict(np.zeros((1, 4)))
    with pytest.raises(InputError, match="NaN"):
        default_build.model.predict(np.array([[1.0, np.nan, 2.0]]))
