"""The builder interface shared by every model kind, its data types and parameter checks."""
from __future__ import annotations

import abc
import importlib
import importlib.metadata
import json
import platform
import threading
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, Mapping, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from modelbus.messages.datasets import InputSchema
from modelbus.messages.jsonutil import canonical_json

KINDS: tuple[str, ...] = ("dtr", "linear", "mlp", "slr")

# Imported on demand so a process that only serves linear models never loads torch.
_MODULES = {"dtr": "modelbus.builders.dtr", "linear": "modelbus.builders.linear", "mlp": "modelbus.builders.mlp",
            "slr": "modelbus.builders.slr"}


class BuildError(Exception):
    """A build that cannot run; the message is meant for the user who asked for it."""


class Cancelled(Exception):
    """A build stopped before it finished because its process is stopping; nothing of it is kept."""


def check_stop(stop: threading.Event | None) -> None:
    """Raise Cancelled once `stop` is set (long fits call it between steps)."""
    if stop is not None and stop.is_set():
        raise Cancelled("the build was cancelled: the process is stopping")


def class_labels(kind: str, y: np.ndarray, max_classes: int) -> np.ndarray:
    """Every distinct label of a classifier's data, sorted; BuildError for fewer than 2 or more than max_classes."""
    classes = np.unique(y)
    if classes.size < 2:
        raise BuildError(f"dataset has 1 distinct label ({float(classes[0])!r}); {kind} needs at least 2")
    if classes.size > max_classes:
        raise BuildError(f"dataset has {classes.size} distinct labels; {kind} supports at most {max_classes} "
                         "(is the label a class?)")
    return classes


class InputError(ValueError):
    """Rows given to a model for prediction do not fit it (shape, count, non-finite values)."""


def library_versions() -> dict[str, str]:
    """Versions of Python and of the libraries whose arithmetic a build depends on."""
    # Read from package metadata so recording versions never imports torch.
    versions = {"python": platform.python_version()}
    for name, dist in (("torch", "torch"), ("numpy", "numpy"), ("sklearn", "scikit-learn"),
                       ("safetensors", "safetensors")):
        try:
            versions[name] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "absent"
    return versions


@dataclass(frozen=True)
class TrainingData:
    """Features, labels and the log positions of the events they came from.

    With a `schema` (a dataset of typed fields) X and y hold the typed values (a category as
    its string, in an object array); builders.encoding turns them into numbers for a fit.
    """

    X: np.ndarray
    y: np.ndarray
    keys: np.ndarray
    schema: InputSchema | None = None

    def __post_init__(self) -> None:
        typed = self.schema is not None and not self.schema.numeric
        X = np.ascontiguousarray(self.X, dtype=object if typed else np.float64)
        y = np.ascontiguousarray(self.y, dtype=object if typed and self.schema.category_label else np.float64)
        keys = np.ascontiguousarray(self.keys, dtype=np.int64)
        if X.ndim != 2:
            raise ValueError(f"X must be 2-dimensional, got shape {X.shape}")
        if y.shape != (X.shape[0],) or keys.shape != (X.shape[0],):
            raise ValueError(f"X {X.shape}, y {y.shape} and keys {keys.shape} disagree on the row count")
        # The split ranks rows by key; a repeated key would make it depend on row order.
        if np.unique(keys).size != keys.size:
            raise ValueError("keys must be unique (they are log positions)")
        object.__setattr__(self, "X", X)
        object.__setattr__(self, "y", y)
        object.__setattr__(self, "keys", keys)

    @classmethod
    def from_rows(cls, rows: Sequence[Sequence[float]], keys: Sequence[int]) -> TrainingData:
        """Data from training records whose last value is the label, as the seed wrote them."""
        matrix = np.asarray(rows, dtype=np.float64)
        if matrix.ndim != 2 or matrix.shape[1] < 2:
            raise ValueError(f"rows must have at least one feature and a label, got shape {matrix.shape}")
        return cls(X=matrix[:, :-1], y=matrix[:, -1], keys=np.asarray(keys, dtype=np.int64))

    @property
    def n_rows(self) -> int:
        """Number of rows."""
        return int(self.X.shape[0])

    @property
    def n_features(self) -> int:
        """Number of feature columns."""
        return int(self.X.shape[1])

    def take(self, idx: np.ndarray) -> TrainingData:
        """The subset of rows at idx."""
        return TrainingData(X=self.X[idx], y=self.y[idx], keys=self.keys[idx], schema=self.schema)


class Model(abc.ABC):
    """A trained model: predicts from a batch of rows and serialises without pickle."""

    kind: str
    n_features: int
    classes: list[float] | None = None

    @abc.abstractmethod
    def predict(self, X: np.ndarray) -> np.ndarray:
        """Predicted values (labels for classifiers) for each row of X."""

    def predict_proba(self, X: np.ndarray) -> np.ndarray | None:
        """Class probabilities in the order of `classes`, or None for a regression."""
        return None

    @abc.abstractmethod
    def to_bytes(self) -> bytes:
        """The artifact: the same model always gives the same bytes."""

    @classmethod
    @abc.abstractmethod
    def from_bytes(cls, data: bytes) -> Model:
        """A model from its artifact."""

    def check_rows(self, X: np.ndarray) -> np.ndarray:
        """X as a float64 (n, n_features) array, or InputError."""
        try:
            rows = np.asarray(X, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise InputError(f"rows must be numbers: {exc}") from None
        if rows.ndim != 2 or rows.shape[1] != self.n_features:
            raise InputError(f"{self.kind} expects rows of {self.n_features} features, got shape {rows.shape}")
        if not np.isfinite(rows).all():
            raise InputError("rows contain NaN or infinite values")
        return rows


@dataclass
class BuildResult:
    """What a build produces: the model, its holdout metrics and the params it used."""

    model: Model
    metrics: dict
    params: dict
    versions: dict = field(default_factory=library_versions)


class Builder(abc.ABC):
    """How one kind of model is made from training data."""

    kind: str
    main_metric: str
    # The params a build of this kind accepts, with their defaults and rules.
    params_model: type[BuildParams]

    def validate_params(self, params: Mapping[str, Any] | None) -> dict:
        """The full effective params, or BuildError naming the first bad key."""
        return validate(params, self.params_model)

    @abc.abstractmethod
    def fit(self, data: TrainingData, params: Mapping[str, Any] | None = None,
            stop: threading.Event | None = None) -> BuildResult:
        """Train on the split's train rows and measure on its test rows.

        A fit that can take long checks `stop` between steps (check_stop) and raises Cancelled
        once it is set; checking never changes what a completed fit computes.
        """

    @abc.abstractmethod
    def load(self, data: bytes) -> Model:
        """A model of this kind from its artifact."""

    def score(self, model: Model, data: TrainingData) -> float:
        """This kind's main metric of `model` on `data`'s rows: how promotion compares two versions fairly."""
        predicted = model.predict(data.X)
        if self.main_metric == "accuracy":
            return float(np.mean(predicted == data.y))
        from sklearn.metrics import r2_score

        return float(r2_score(data.y, predicted))


def get_builder(kind: str) -> Builder:
    """The builder for a model kind (taking typed datasets too: builders.encoding), or BuildError listing the known kinds."""
    if kind not in _MODULES:
        raise BuildError(f"unknown model kind {kind!r} (known: {', '.join(KINDS)})")
    from modelbus.builders.encoding import TypedBuilder

    inner = importlib.import_module(_MODULES[kind]).BUILDER
    wrapped = _TYPED.get(kind)
    if wrapped is None or wrapped.inner is not inner:
        wrapped = _TYPED[kind] = TypedBuilder(inner)
    return wrapped


_TYPED: dict[str, Any] = {}


# --- parameters -------------------------------------------------------------------------

class BuildParams(BaseModel):
    """The params of one kind of build, declared once: validation, defaults and /api/schemas/<kind>_params.

    Each field's description is the rule a value breaks ("params.lr must be <description>").
    Fields are declared in alphabetical order, the order their rules are checked in.
    """

    model_config = ConfigDict(strict=True, extra="forbid")


def integer(low: int, high: int, what: str | None = None) -> Any:
    """An integer field in [low, high]."""
    return Annotated[int, Field(ge=low, le=high, description=what or f"an integer between {low} and {high}")]


PositiveNumber = Annotated[float, Field(gt=0, allow_inf_nan=False, description="a positive number")]
NonNegativeNumber = Annotated[float, Field(ge=0, allow_inf_nan=False, description="a non-negative number")]
Fraction = Annotated[float, Field(gt=0, lt=1, description="a number strictly between 0 and 1")]
Seed = integer(0, 2**63 - 1, "a non-negative integer")


def one_of(*choices: str) -> Any:
    """A field taking one string out of choices."""
    return Annotated[Literal[choices], Field(description=f"one of {', '.join(choices)}")]  # type: ignore[valid-type]


def validate(params: Mapping[str, Any] | None, model: type[BuildParams]) -> dict:
    """params checked against model, with every missing key set to its default, keys sorted."""
    if params is None:
        params = {}
    if not isinstance(params, Mapping):
        raise BuildError(f"params must be a JSON object, got {shown(params)}")
    try:
        checked = model.model_validate(dict(params))
    except ValidationError as exc:
        raise _params_error(exc, model, params) from None
    return dict(sorted(checked.model_dump().items()))


def _params_error(exc: ValidationError, model: type[BuildParams], params: Mapping[str, Any]) -> BuildError:
    """The BuildError naming the first bad key: an unknown one, else the first in alphabetical order."""
    errors = exc.errors()
    unknown = [str(e["loc"][0]) for e in errors if e["type"] == "extra_forbidden"]
    if unknown:
        key = next(k for k in params if k in unknown)
        return BuildError(f"params: unknown key {key!r} (known: {', '.join(sorted(model.model_fields))})")
    name = min(str(e["loc"][0]) for e in errors)
    return BuildError(f"params.{name} must be {model.model_fields[name].description}, got {shown(params[name])}")


def shown(value: Any) -> str:
    """A value as the user wrote it, for error messages."""
    try:
        return json.dumps(value, allow_nan=True)
    except (TypeError, ValueError):
        return repr(value)


# --- checks shared by the builders ------------------------------------------------------

def require_finite(data: TrainingData) -> None:
    """BuildError if any feature or label is NaN or infinite."""
    if not (np.isfinite(data.X).all() and np.isfinite(data.y).all()):
        raise BuildError("dataset contains NaN or infinite values")


def max_abs(X: np.ndarray) -> np.ndarray:
    """The largest magnitude in each column, 1 for an all-zero column: dividing by it cannot overflow."""
    scale = np.abs(X).max(axis=0) if X.shape[0] else np.ones(X.shape[1])
    return np.where(scale > 0, scale, 1.0)


def column_stats(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-column mean and population std that never overflow to infinity.

    Computed directly (so ordinary data gives the same bits as ever), and again on columns
    divided by their largest magnitude when a sum of squares overflowed: one feature of 1e300
    would otherwise get std inf, and every value of it would standardise to 0.
    """
    with np.errstate(over="ignore", invalid="ignore"):
        mean, std = X.mean(axis=0), X.std(axis=0)
    if np.isfinite(mean).all() and np.isfinite(std).all():
        return mean, std
    scale = max_abs(X)
    scaled = X / scale
    return scaled.mean(axis=0) * scale, scaled.std(axis=0) * scale


def require_finite_fit(kind: str, what: str, *arrays: Any) -> None:
    """BuildError if a fitted statistic, weight or coefficient is NaN or infinite: such a model must not be served."""
    for array in arrays:
        if not np.isfinite(np.asarray(array, dtype=np.float64)).all():
            raise BuildError(f"{kind}: {what} are not finite numbers (NaN or infinity); the model is not kept")


def require_finite_answers(kind: str, answers: np.ndarray, rows: TrainingData, side: str) -> None:
    """BuildError if the model's answers (or logits) on some of its own train or test rows are NaN or infinite."""
    answers = np.asarray(answers, dtype=np.float64)
    bad = ~np.isfinite(answers.reshape(answers.shape[0], -1)).all(axis=1)
    if bad.any():
        largest = float(np.abs(rows.X[bad]).max())
        raise BuildError(f"{kind}: the model's answers on {int(bad.sum())} of its {rows.n_rows} {side} rows are not "
                         f"finite numbers (their features reach {largest:g}); the model is not kept")


def require_finite_metrics(kind: str, metrics: Mapping[str, Any]) -> None:
    """BuildError naming the metrics that overflowed (sums of squares of labels or answers beyond float64)."""
    bad = [k for k, v in metrics.items() if isinstance(v, float) and not np.isfinite(v)]
    if bad:
        raise BuildError(f"{kind}: the metrics {', '.join(bad)} are not finite numbers (labels or answers too large "
                         "for their sums of squares in float64); the model is not kept")


def require_split_sizes(kind: str, n_rows: int, n_train: int, n_test: int, min_train: int, min_test: int,
                        split: float) -> None:
    """BuildError if the split leaves fewer rows on a side than the model needs."""
    if n_train < min_train or n_test < min_test:
        raise BuildError(
            f"dataset has {n_rows} rows; split {split:g} gives {n_train} train and {n_test} test rows, "
            f"{kind} needs at least {min_train} train and {min_test} test rows"
        )


def dumps_canonical(obj: Any) -> bytes:
    """Canonical JSON bytes: sorted keys, no spaces, floats by repr so they round-trip exactly."""
    return canonical_json(obj).encode("utf-8")


def loads_artifact(data: bytes, fmt: str) -> dict:
    """The JSON object of an artifact whose "format" must be fmt, or ValueError."""
    try:
        obj = json.loads(bytes(data).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"not a {fmt} artifact: {exc}") from None
    if not isinstance(obj, dict) or obj.get("format") != fmt:
        raise ValueError(f"not a {fmt} artifact")
    return obj
