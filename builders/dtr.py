"""A decision-tree classifier: fitted by scikit-learn, stored and walked as plain arrays.

scikit-learn's DecisionTreeClassifier does the fit (deterministic by its random_state); the
artifact keeps only the fitted tree's arrays (children, split feature and threshold, class
distribution per node) in safetensors, so loading never unpickles. Prediction walks those
arrays with numpy exactly as scikit-learn's tree does: features compared as float32 against
float64 thresholds, probabilities as the leaf's class fractions.
"""
from __future__ import annotations

import json
import threading
import time
from typing import Annotated, Any, Mapping, Optional, Union

import numpy as np
import safetensors.numpy
from pydantic import Field
from sklearn.tree import DecisionTreeClassifier

from modelbus.builders.base import (
    Builder,
    BuildError,
    BuildParams,
    BuildResult,
    Fraction,
    Model,
    Seed,
    TrainingData,
    class_labels,
    dumps_canonical,
    integer,
    one_of,
    shown,
)
from modelbus.builders.metrics import classification_metrics
from modelbus.builders.split import holdout

FORMAT = "modelbus.dtr/1"
# One metadata key, as in the mlp artifact: safetensors writes metadata from a hash map.
METADATA_KEY = "modelbus"
LEAF = -1
# More distinct labels than this is almost certainly a regression target sent to a classifier.
MAX_CLASSES = 1000
MIN_TRAIN = 2
MIN_TEST = 2
# scikit-learn's trees read features as float32; a larger magnitude cannot be split on.
FLOAT32_MAX = float(np.finfo(np.float32).max)

ClassWeight = Annotated[
    Optional[Union[one_of("balanced"), dict[str, Annotated[float, Field(gt=0, allow_inf_nan=False)]]]],  # type: ignore[valid-type]
    Field(description='"balanced", null, or an object of positive weights keyed by class label ("5", "7.25")'),
]


# Defaults chosen on darcey.csv (474 rows, split 0.65, seeds 0-39): leaves of at least 20 rows
# reach 0.644 mean holdout accuracy (sd 0.031); scikit-learn's default, an unlimited tree with
# leaves of 1 row, overfits to 0.613. The depth cap only bounds the tree on large data sets.
class DtrParams(BuildParams):
    """The params of a dtr build."""

    class_weight: ClassWeight = None
    criterion: one_of("gini", "entropy", "log_loss") = "gini"  # type: ignore[valid-type]
    max_depth: Annotated[
        Optional[int], Field(ge=1, le=1000, description="an integer between 1 and 1000, or null for no limit"),
    ] = 8
    min_samples_leaf: integer(1, 2**31 - 1) = 20  # type: ignore[valid-type]
    seed: Seed = 6
    split: Fraction = 0.65


class DtrModel(Model):
    """A fitted tree: per node its children, split feature and threshold, and class distribution."""

    kind = "dtr"

    def __init__(self, children_left: np.ndarray, children_right: np.ndarray, feature: np.ndarray,
                 threshold: np.ndarray, value: np.ndarray, classes: list[float], n_features: int) -> None:
        self.children_left = np.ascontiguousarray(children_left, dtype=np.int64)
        self.children_right = np.ascontiguousarray(children_right, dtype=np.int64)
        self.feature = np.ascontiguousarray(feature, dtype=np.int64)
        self.threshold = np.ascontiguousarray(threshold, dtype=np.float64)
        self.value = np.ascontiguousarray(value, dtype=np.float64)
        self.classes = [float(c) for c in classes]
        self.n_features = int(n_features)
        _check_tree(self)
        # Leaves compare against feature 0 (the result is never used), so indexing stays in range.
        self._split_feature = np.where(self.children_left == LEAF, 0, self.feature)

    @property
    def n_nodes(self) -> int:
        """Number of nodes."""
        return int(self.children_left.size)

    def apply(self, X: np.ndarray) -> np.ndarray:
        """The index of the leaf each row falls into."""
        rows = self.check_rows(X)
        # As scikit-learn: the row as float32 against the float64 threshold, left when <=. A value
        # beyond float32's range is clipped to it, so it lies past every threshold (scikit-learn
        # would refuse the row; an answer from the extreme leaf is the meaningful one).
        x = np.clip(rows, -FLOAT32_MAX, FLOAT32_MAX).astype(np.float32).astype(np.float64)
        node = np.zeros(rows.shape[0], dtype=np.int64)
        index = np.arange(rows.shape[0])
        # Children always have higher indices than their parent (checked on load): this ends.
        while True:
            inner = self.children_left[node] != LEAF
            if not inner.any():
                return node
            left = x[index, self._split_feature[node]] <= self.threshold[node]
            node = np.where(inner, np.where(left, self.children_left[node], self.children_right[node]), node)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Probabilities of each class (columns in the order of classes): the leaf's class distribution."""
        # The stored distributions are the (weighted) fractions scikit-learn keeps per node and
        # returns as they are; dividing again by their sum would move the last bit.
        return self.value[self.apply(X)]

    def predict(self, X: np.ndarray) -> np.ndarray:
        """The most probable class label of each row (the first on a tie, as scikit-learn)."""
        return np.asarray(self.classes, dtype=np.float64)[self.predict_proba(X).argmax(axis=1)]

    def depth(self) -> int:
        """The length of the longest root-to-leaf path."""
        depths = np.zeros(self.n_nodes, dtype=np.int64)
        for node in range(self.n_nodes):  # parents come before their children
            if self.children_left[node] != LEAF:
                depths[self.children_left[node]] = depths[self.children_right[node]] = depths[node] + 1
        return int(depths.max())

    def n_leaves(self) -> int:
        """Number of leaves."""
        return int(np.count_nonzero(self.children_left == LEAF))

    def to_bytes(self) -> bytes:
        """safetensors bytes: the tree's arrays and the classes, the format as JSON metadata."""
        arrays = {
            "children_left": self.children_left,
            "children_right": self.children_right,
            "feature": self.feature,
            "threshold": self.threshold,
            "value": self.value,
            "classes": np.asarray(self.classes, dtype=np.float64),
        }
        info = {"format": FORMAT, "kind": self.kind, "n_features": self.n_features, "n_nodes": self.n_nodes,
                "n_classes": len(self.classes)}
        return safetensors.numpy.save(arrays, metadata={METADATA_KEY: dumps_canonical(info).decode()})

    @classmethod
    def from_bytes(cls, data: bytes) -> DtrModel:
        """The model from its safetensors artifact; nothing is unpickled."""
        info = _read_metadata(data)
        try:
            arrays = safetensors.numpy.load(bytes(data))
            return cls(children_left=arrays["children_left"], children_right=arrays["children_right"],
                       feature=arrays["feature"], threshold=arrays["threshold"], value=arrays["value"],
                       classes=arrays["classes"].tolist(), n_features=info["n_features"])
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise ValueError(f"not a {FORMAT} artifact: {exc!r}") from None

    @classmethod
    def from_estimator(cls, estimator: DecisionTreeClassifier, classes: np.ndarray) -> DtrModel:
        """The arrays of an estimator fitted on indices into `classes`; a class it never saw gets 0 everywhere."""
        tree = estimator.tree_
        value = np.zeros((tree.node_count, classes.size), dtype=np.float64)
        value[:, estimator.classes_] = tree.value[:, 0, :]
        return cls(tree.children_left, tree.children_right, tree.feature, tree.threshold, value,
                   classes.tolist(), estimator.n_features_in_)


def _read_metadata(data: bytes) -> dict:
    """The modelbus metadata of a safetensors artifact, read from its JSON header."""
    try:
        header_len = int.from_bytes(bytes(data[:8]), "little")
        header = json.loads(bytes(data[8:8 + header_len]).decode("utf-8"))
        info = json.loads(header["__metadata__"][METADATA_KEY])
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"not a {FORMAT} artifact: {exc!r}") from None
    if not isinstance(info, dict) or info.get("format") != FORMAT or not isinstance(info.get("n_features"), int):
        raise ValueError(f"not a {FORMAT} artifact")
    return info


def _check_tree(model: DtrModel) -> None:
    """ValueError unless the arrays form a tree the walk can follow (so a corrupt artifact cannot loop)."""
    n = model.children_left.size
    shapes = [a.shape for a in (model.children_left, model.children_right, model.feature, model.threshold)]
    if n < 1 or any(s != (n,) for s in shapes) or model.value.shape != (n, len(model.classes)):
        raise ValueError(f"tree arrays disagree: {shapes}, value {model.value.shape}, {len(model.classes)} classes")
    if model.n_features < 1:
        raise ValueError("n_features must be positive")
    leaf = model.children_left == LEAF
    if not np.array_equal(leaf, model.children_right == LEAF):
        raise ValueError("a node has exactly one child")
    nodes = np.arange(n)
    for children in (model.children_left, model.children_right):
        if not ((children[~leaf] > nodes[~leaf]) & (children[~leaf] < n)).all():
            raise ValueError("a child index is out of order or out of range")
    if not ((model.feature[~leaf] >= 0) & (model.feature[~leaf] < model.n_features)).all():
        raise ValueError("a split feature is out of range")
    if not (np.isfinite(model.threshold[~leaf]).all() and np.isfinite(model.value).all() and (model.value >= 0).all()):
        raise ValueError("thresholds and class distributions must be finite, distributions non-negative")


def class_weights(requested: Any, classes: np.ndarray) -> Any:
    """The class_weight scikit-learn takes: "balanced", None, or weights keyed by class index; BuildError on a key no class has."""
    if not isinstance(requested, dict):
        return requested
    weights = {}
    for key, weight in requested.items():
        try:
            label = float(key)
        except ValueError:
            label = float("nan")
        index = int(np.searchsorted(classes, label))
        if index == classes.size or classes[index] != label:
            raise BuildError(f"params.class_weight names class {shown(key)}, which the dataset does not have "
                             f"(classes: {', '.join(f'{c:g}' for c in classes)})")
        weights[index] = weight
    return weights


def require_float32_range(data: TrainingData) -> None:
    """BuildError if a feature is too large for the tree's float32 comparisons."""
    too_large = np.abs(data.X) > FLOAT32_MAX
    if too_large.any():
        row, column = np.argwhere(too_large)[0]
        raise BuildError(f"feature {column + 1} of a training row is {data.X[row, column]:g}; dtr compares "
                         f"features as float32 and needs magnitudes up to {FLOAT32_MAX:.4g}")


class DtrBuilder(Builder):
    """Builds DtrModel."""

    kind = "dtr"
    main_metric = "accuracy"
    params_model = DtrParams

    def fit(self, data: TrainingData, params: Mapping[str, Any] | None = None,
            stop: threading.Event | None = None) -> BuildResult:
        """Grow the tree on the split's train rows, measure on its test rows (one fit: `stop` is not checked)."""
        started = time.perf_counter()
        params = self.validate_params(params)
        train_rows, test_rows = holdout(self.kind, data, params, MIN_TRAIN, MIN_TEST)
        # Every label of the dataset is a class of the model, as in mlp, so a class seen only in
        # the test rows is scored (and reported untrained) rather than unknown.
        classes = class_labels(self.kind, data.y, MAX_CLASSES)
        require_float32_range(data)
        estimator = DecisionTreeClassifier(
            criterion=params["criterion"],
            max_depth=params["max_depth"],
            min_samples_leaf=params["min_samples_leaf"],
            class_weight=class_weights(params["class_weight"], classes),
            # scikit-learn takes a 32-bit seed; it only breaks ties between equally good splits.
            random_state=params["seed"] % 2**32,
        )
        # Fitted on class indices: scikit-learn calls labels such as 7.25 continuous and refuses them.
        estimator.fit(train_rows.X, np.searchsorted(classes, train_rows.y))
        model = DtrModel.from_estimator(estimator, classes)
        proba = model.predict_proba(test_rows.X)
        metrics = classification_metrics(model.classes, train_rows.y, test_rows.y, classes[proba.argmax(axis=1)],
                                         proba)
        metrics["depth"] = model.depth()
        metrics["leaves"] = model.n_leaves()
        metrics["execution_time"] = time.perf_counter() - started
        return BuildResult(model=model, metrics=metrics, params=params)

    def load(self, data: bytes) -> DtrModel:
        """A DtrModel from its artifact."""
        return DtrModel.from_bytes(data)


BUILDER = DtrBuilder()
