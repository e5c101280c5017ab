"""The decision tree: the same answers as scikit-learn's estimator, from arrays that never unpickle."""
from __future__ import annotations

import json
import pickle
import warnings

import numpy as np
import pytest
import safetensors.numpy
from sklearn.tree import DecisionTreeClassifier

from modelbus.builders import BuildError, InputError, TrainingData, get_builder, train_test_indices
from modelbus.builders.dtr import FORMAT, DtrModel
from tests.test_builders_mlp import load_darcey


@pytest.fixture(scope="module")
def darcey() -> TrainingData:
    """The seed's data set."""
    return load_darcey()


@pytest.fixture(scope="module")
def default_build(darcey):
    """One build of darcey with the default params."""
    return get_builder("dtr").fit(darcey)


def sklearn_fit(data: TrainingData, params: dict) -> tuple[DecisionTreeClassifier, TrainingData, TrainingData]:
    """scikit-learn's tree fitted directly on the build's train rows, and the train and test rows."""
    train_idx, test_idx = train_test_indices(data.keys, params["split"], params["seed"])
    train, test = data.take(train_idx), data.take(test_idx)
    estimator = DecisionTreeClassifier(criterion=params["criterion"], max_depth=params["max_depth"],
                                       min_samples_leaf=params["min_samples_leaf"],
                                       class_weight=params["class_weight"], random_state=params["seed"])
    return estimator.fit(train.X, train.y), train, test


# The defaults, scikit-learn's own defaults, and the other criteria and weights.
PARAMS = [
    {},
    {"max_depth": None, "min_samples_leaf": 1},
    {"criterion": "entropy", "max_depth": 4, "seed": 11, "split": 0.5},
    {"criterion": "log_loss", "class_weight": "balanced", "min_samples_leaf": 3},
]


@pytest.mark.parametrize("params", PARAMS, ids=json.dumps)
def test_answers_and_probabilities_are_the_estimators(darcey, params):
    result = get_builder("dtr").fit(darcey, params)
    estimator, _, test = sklearn_fit(darcey, result.params)
    model = get_builder("dtr").load(result.model.to_bytes())
    # Every row of darcey, and rows between and beyond its values (thresholds sit between them).
    rng = np.random.default_rng(0)
    X = np.vstack([darcey.X, rng.uniform(-5, 15, size=(500, 3)), darcey.X + 0.5])
    assert np.array_equal(model.predict(X), estimator.predict(X))
    columns = np.searchsorted(model.classes, estimator.classes_)
    assert np.array_equal(model.predict_proba(X)[:, columns], estimator.predict_proba(X))
    assert np.array_equal(model.apply(X), estimator.apply(X))
    assert result.metrics["accuracy"] == estimator.score(test.X, test.y)
    assert result.metrics["depth"] == estimator.get_depth() and result.metrics["leaves"] == estimator.get_n_leaves()


def test_default_holdout_accuracy_on_darcey(default_build, darcey):
    # scikit-learn's default tree (unlimited depth, 1-row leaves) on the same rows.
    estimator, _, test = sklearn_fit(darcey, {**default_build.params, "max_depth": None, "min_samples_leaf": 1})
    assert default_build.metrics["accuracy"] >= 0.6
    assert abs(default_build.metrics["accuracy"] - estimator.score(test.X, test.y)) <= 0.03


def test_metrics_are_complete_and_json(default_build, darcey):
    metrics = default_build.metrics
    json.dumps(metrics, allow_nan=False)
    assert metrics["classes"] == sorted(set(darcey.y.tolist()))
    assert metrics["train_size"] + metrics["test_size"] == darcey.n_rows
    assert np.array(metrics["confusion_matrix"]).sum() == metrics["test_size"]
    assert metrics["untrained_classes"] == []
    assert 1 <= metrics["depth"] <= 8 and metrics["leaves"] >= 2
    assert metrics["log_loss"] > 0 and metrics["execution_time"] > 0


def test_params_are_the_full_effective_set(default_build):
    assert default_build.params == {"class_weight": None, "criterion": "gini", "max_depth": 8,
                                    "min_samples_leaf": 20, "seed": 6, "split": 0.65}


def test_same_data_and_params_give_identical_bytes(default_build, darcey):
    again = get_builder("dtr").fit(darcey)
    assert again.model.to_bytes() == default_build.model.to_bytes()
    assert {k: v for k, v in again.metrics.items() if k != "execution_time"} == \
        {k: v for k, v in default_build.metrics.items() if k != "execution_time"}


def test_the_artifact_is_arrays_with_metadata(default_build):
    data = default_build.model.to_bytes()
    arrays = safetensors.numpy.load(data)
    assert set(arrays) == {"children_left", "children_right", "feature", "threshold", "value", "classes"}
    header = json.loads(data[8:8 + int.from_bytes(data[:8], "little")])
    info = json.loads(header["__metadata__"]["modelbus"])
    assert info == {"format": FORMAT, "kind": "dtr", "n_features": 3, "n_nodes": arrays["feature"].size,
                    "n_classes": 7}


def test_loading_never_unpickles(default_build, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("pickle used while loading an artifact")

    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, refuse)
    model = get_builder("dtr").load(default_build.model.to_bytes())
    assert model.predict(np.array([[3.0, 4.0, 5.0]])).shape == (1,)


def tampered(model: DtrModel, **arrays: np.ndarray) -> bytes:
    """The model's artifact with some arrays replaced."""
    data = model.to_bytes()
    header = json.loads(data[8:8 + int.from_bytes(data[:8], "little")])
    return safetensors.numpy.save({**safetensors.numpy.load(data), **arrays}, metadata=header["__metadata__"])


def test_a_corrupt_artifact_is_refused_not_walked(default_build):
    model = default_build.model
    loop = model.children_left.copy()
    loop[0] = 0  # the root as its own child: a walk would never end
    far = model.children_right.copy()
    far[0] = model.n_nodes + 5
    feature = model.feature.copy()
    feature[0] = 3
    bad = {
        "loop": tampered(model, children_left=loop),
        "out of range": tampered(model, children_right=far),
        "feature": tampered(model, feature=feature),
        "value": tampered(model, value=model.value[:, :3].copy()),
        "nan": tampered(model, threshold=np.where(model.children_left >= 0, np.nan, -2.0)),
        "pickle": pickle.dumps(model),
        "json": b'{"format": "modelbus.dtr/1"}',
        "mlp": get_builder("linear").fit(load_darcey()).model.to_bytes(),
    }
    for name, data in bad.items():
        with pytest.raises(ValueError, match="not a modelbus.dtr/1 artifact"):
            get_builder("dtr").load(data)


def test_prediction_checks_rows_and_answers_values_beyond_float32(default_build):
    model = default_build.model
    with pytest.raises(InputError, match="dtr expects rows of 3 features"):
        model.predict(np.zeros((2, 4)))
    with pytest.raises(InputError, match="NaN or infinite"):
        model.predict(np.array([[np.inf, 1.0, 2.0]]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        huge = model.predict_proba(np.array([[1e300, -1e300, 1e300]]))
    # Past every threshold: the same leaf as float32's largest values.
    f32 = float(np.finfo(np.float32).max)
    assert np.array_equal(huge, model.predict_proba(np.array([[f32, -f32, f32]])))


def test_class_weights_by_label_change_the_tree_and_unknown_labels_fail(darcey):
    plain = get_builder("dtr").fit(darcey, {"max_depth": 3})
    weighted = get_builder("dtr").fit(darcey, {"max_depth": 3, "class_weight": {"4": 50, "10": 2.5}})
    estimator, _, _ = sklearn_fit(darcey, {**weighted.params, "class_weight": {4.0: 50.0, 10.0: 2.5}})
    assert weighted.model.to_bytes() != plain.model.to_bytes()
    assert np.array_equal(weighted.model.predict(darcey.X), estimator.predict(darcey.X))
    with pytest.raises(BuildError, match=r"params.class_weight names class \"11\", which the dataset does not have"):
        get_builder("dtr").fit(darcey, {"class_weight": {"11": 1}})


@pytest.mark.parametrize("params, message", [
    ({"max_depth": 0}, "params.max_depth must be an integer between 1 and 1000, or null for no limit, got 0"),
    ({"min_samples_leaf": 0}, "params.min_samples_leaf must be an integer between 1 and 2147483647, got 0"),
    ({"criterion": "mse"}, 'params.criterion must be one of gini, entropy, log_loss, got "mse"'),
    ({"class_weight": "even"}, 'params.class_weight must be "balanced", null, or an object of positive weights'),
    ({"class_weight": {"4": -1}}, "params.class_weight must be"),
])
def test_wrong_param_value(params, message):
    with pytest.raises(BuildError) as err:
        get_builder("dtr").validate_params(params)
    assert str(err.value).startswith(message)


def test_features_beyond_float32_fail_the_build_clearly(darcey):
    X = darcey.X.copy()
    X[10, 2] = 1e300
    with pytest.raises(BuildError, match=r"feature 3 of a training row is 1e\+300; dtr compares features as float32"):
        get_builder("dtr").fit(TrainingData(X=X, y=darcey.y, keys=darcey.keys))


def test_non_integer_labels_come_back_as_themselves():
    rng = np.random.default_rng(1)
    y = np.array([-1.5, 2.0, 7.25])[rng.integers(0, 3, size=90)]
    X = np.column_stack([y + rng.normal(scale=0.3, size=90), rng.normal(size=90)])
    result = get_builder("dtr").fit(TrainingData(X=X, y=y, keys=np.arange(90)), {"min_samples_leaf": 1})
    assert set(result.model.predict(X).tolist()) <= {-1.5, 2.0, 7.25}
    assert result.metrics["accuracy"] > 0.9
