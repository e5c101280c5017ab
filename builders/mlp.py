"""A multi-layer perceptron classifier in PyTorch, trained deterministically.

The same training data and params give bit-identical weights in any process on the same
machine and library versions: initialisation and shuffling draw from a generator seeded
by the params (the global RNG is never touched), the fit runs on one intra-op thread with
deterministic algorithms, and the artifact is safetensors with canonical JSON metadata.
"""
from __future__ import annotations

import json
import platform
import threading
import time
from contextlib import contextmanager
from typing import Annotated, Any, Iterator, Mapping, Optional

import numpy as np
import safetensors.torch
import torch
import torch.nn.functional as F
from pydantic import AfterValidator, Field

from modelbus.builders.base import (
    Builder,
    BuildParams,
    BuildResult,
    Fraction,
    Model,
    NonNegativeNumber,
    PositiveNumber,
    Seed,
    TrainingData,
    class_labels,
    check_stop,
    column_stats,
    dumps_canonical,
    integer,
    library_versions,
    one_of,
    require_finite_answers,
    require_finite_fit,
)
from modelbus.builders.metrics import classification_metrics
from modelbus.builders.split import holdout

FORMAT = "modelbus.mlp/1"
# The key of the only entry in the safetensors metadata: safetensors writes metadata from a
# hash map, so with several keys their order (and the artifact's bytes) could vary by process.
METADATA_KEY = "modelbus"
ACTIVATIONS = {"relu": torch.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid}
MAX_LAYERS = 8
MAX_WIDTH = 4096
# More distinct labels than this is almost certainly a regression target sent to a classifier.
MAX_CLASSES = 1000
MIN_TRAIN = 2
MIN_TEST = 2
FIT_THREADS = 1

# torch's thread count and determinism switch are process-wide: fits take turns.
_FIT_LOCK = threading.Lock()


# Defaults tuned on darcey.csv over 40 seeds: full-batch Adam with a little weight decay
# reaches ~0.64 mean holdout accuracy (scikit-learn's MLPClassifier: ~0.62) and, unlike
# weight_decay 0, does not drift down as epochs grow, so the result is robust to epochs.
# Full batch keeps the cost of an epoch at one step, which is what makes 100k rows cheap.
class MlpParams(BuildParams):
    """The params of an mlp build."""

    activation: one_of(*ACTIVATIONS) = "relu"  # type: ignore[valid-type]
    # 0 or null mean the whole train split in one batch.
    batch_size: Annotated[
        Optional[int],
        Field(ge=0, le=2**31 - 1, description="a non-negative integer (0 or null for full batch)"),
        AfterValidator(lambda value: value or 0),
    ] = 0
    epochs: integer(1, 100_000) = 200  # type: ignore[valid-type]
    hidden: Annotated[
        list[Annotated[int, Field(ge=1, le=MAX_WIDTH)]],
        Field(max_length=MAX_LAYERS,
              description=f"a list of at most {MAX_LAYERS} integers between 1 and {MAX_WIDTH}"),
    ] = [32, 32]
    lr: PositiveNumber = 0.01
    seed: Seed = 6
    split: Fraction = 0.65
    weight_decay: NonNegativeNumber = 0.02


def standardise(X: np.ndarray, mean: np.ndarray, std: np.ndarray) -> torch.Tensor:
    """Rows scaled by the saved statistics, as the float32 tensor the network takes (inf beyond its range)."""
    with np.errstate(over="ignore"):
        return torch.from_numpy(((X - mean) / std).astype(np.float32))


def forward(weights: list[torch.Tensor], x: torch.Tensor, activation: str) -> torch.Tensor:
    """Logits of the network whose layers are (weight, bias) pairs in weights."""
    act = ACTIVATIONS[activation]
    last = len(weights) - 2
    for i in range(0, len(weights), 2):
        x = F.linear(x, weights[i], weights[i + 1])
        if i < last:
            x = act(x)
    return x


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64."""
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


class MlpModel(Model):
    """A trained classifier: standardisation statistics, layer weights and the class labels."""

    kind = "mlp"

    def __init__(self, weights: list[torch.Tensor], mean: np.ndarray, std: np.ndarray, classes: list[float],
                 hidden: list[int], activation: str) -> None:
        self.weights = [w.detach().to(torch.float32).contiguous() for w in weights]
        self.mean = np.asarray(mean, dtype=np.float64)
        self.std = np.asarray(std, dtype=np.float64)
        self.classes = [float(c) for c in classes]
        self.hidden = list(hidden)
        self.activation = activation
        self.n_features = int(self.mean.size)
        _check_architecture(self)

    def logits(self, X: np.ndarray) -> np.ndarray:
        """Raw network outputs for each row, as float64."""
        x = standardise(self.check_rows(X), self.mean, self.std)
        with torch.inference_mode():
            return forward(self.weights, x, self.activation).to(torch.float64).numpy()

    def predict(self, X: np.ndarray) -> np.ndarray:
        """The most probable class label of each row (a label value, not an index)."""
        return np.asarray(self.classes, dtype=np.float64)[self.logits(X).argmax(axis=1)]

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Probabilities of each class, columns in the order of classes."""
        return softmax(self.logits(X))

    def to_bytes(self) -> bytes:
        """safetensors bytes: weights, statistics and classes, the architecture as JSON metadata."""
        tensors = {f"layers.{i // 2}.{'weight' if i % 2 == 0 else 'bias'}": w for i, w in enumerate(self.weights)}
        tensors["mean"] = torch.from_numpy(self.mean.copy())
        tensors["std"] = torch.from_numpy(self.std.copy())
        tensors["classes"] = torch.tensor(self.classes, dtype=torch.float64)
        info = {
            "format": FORMAT,
            "kind": self.kind,
            "hidden": self.hidden,
            "activation": self.activation,
            "n_features": self.n_features,
            "n_classes": len(self.classes),
            "torch": torch.__version__,
            "python": platform.python_version(),
            "threads": FIT_THREADS,
            "cpu_capability": cpu_capability(),
        }
        return safetensors.torch.save(tensors, metadata={METADATA_KEY: dumps_canonical(info).decode()})

    @classmethod
    def from_bytes(cls, data: bytes) -> MlpModel:
        """The model from its safetensors artifact; nothing is unpickled."""
        info = _read_metadata(data)
        try:
            tensors = safetensors.torch.load(bytes(data))
            n_layers = len(info["hidden"]) + 1
            weights = [tensors[f"layers.{i}.{part}"] for i in range(n_layers) for part in ("weight", "bias")]
            return cls(weights=weights, mean=tensors["mean"].numpy(), std=tensors["std"].numpy(),
                       classes=tensors["classes"].tolist(), hidden=info["hidden"], activation=info["activation"])
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise ValueError(f"not a {FORMAT} artifact: {exc!r}") from None


def _read_metadata(data: bytes) -> dict:
    """The modelbus metadata of a safetensors artifact, read from its JSON header."""
    try:
        header_len = int.from_bytes(bytes(data[:8]), "little")
        header = json.loads(bytes(data[8:8 + header_len]).decode("utf-8"))
        info = json.loads(header["__metadata__"][METADATA_KEY])
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"not a {FORMAT} artifact: {exc!r}") from None
    if not isinstance(info, dict) or info.get("format") != FORMAT:
        raise ValueError(f"not a {FORMAT} artifact")
    return info


def _check_architecture(model: MlpModel) -> None:
    """ValueError unless the weights, statistics and classes fit the declared architecture."""
    if model.activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {model.activation!r}")
    sizes = [model.n_features, *model.hidden, len(model.classes)]
    expected = [shape for i in range(len(sizes) - 1) for shape in ((sizes[i + 1], sizes[i]), (sizes[i + 1],))]
    actual = [tuple(w.shape) for w in model.weights]
    if actual != expected or model.mean.shape != model.std.shape or model.mean.ndim != 1:
        raise ValueError(f"weights {actual} do not match layer sizes {sizes}")


def cpu_capability() -> str:
    """The vector instruction set torch's CPU kernels dispatch to (AVX2, AVX512, ...)."""
    # Kernels for different instruction sets round differently, so the weights are only
    # reproducible between machines that report the same capability.
    return torch.backends.cpu.get_cpu_capability()


@contextmanager
def deterministic_torch() -> Iterator[None]:
    """One intra-op thread and deterministic algorithms for the duration, then the previous settings."""
    with _FIT_LOCK:
        threads = torch.get_num_threads()
        deterministic = torch.are_deterministic_algorithms_enabled()
        warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
        torch.set_num_threads(FIT_THREADS)
        torch.use_deterministic_algorithms(True)
        try:
            yield
        finally:
            torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
            torch.set_num_threads(threads)


def init_weights(sizes: list[int], generator: torch.Generator) -> list[torch.Tensor]:
    """Layer weights drawn as torch.nn.Linear draws them, U(-1/sqrt(fan_in), 1/sqrt(fan_in)), from generator."""
    weights = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        bound = fan_in ** -0.5
        for shape in ((fan_out, fan_in), (fan_out,)):
            w = torch.empty(shape, dtype=torch.float32).uniform_(-bound, bound, generator=generator)
            weights.append(w.requires_grad_())
    return weights


def train(x: torch.Tensor, target: torch.Tensor, n_classes: int, params: dict,
          stop: threading.Event | None = None) -> list[torch.Tensor]:
    """Weights after params["epochs"] passes of Adam on the cross-entropy of (x, target); Cancelled once `stop` is set."""
    generator = torch.Generator().manual_seed(params["seed"])
    weights = init_weights([x.shape[1], *params["hidden"], n_classes], generator)
    optimiser = torch.optim.Adam(weights, lr=params["lr"], weight_decay=params["weight_decay"])
    n = x.shape[0]
    batch = params["batch_size"] if 0 < params["batch_size"] < n else n
    for _ in range(params["epochs"]):
        # A full batch needs no shuffle; skipping it keeps the generator's stream shorter, nothing else.
        order = torch.randperm(n, generator=generator) if batch < n else None
        for start in range(0, n, batch):
            # Checked before every step (an Event read costs far less than one step), so a
            # stopping process waits at most one step; it draws nothing from the generator,
            # so a fit that completes computes exactly what it would have without it.
            check_stop(stop)
            idx = order[start:start + batch] if order is not None else slice(None)
            optimiser.zero_grad(set_to_none=True)
            F.cross_entropy(forward(weights, x[idx], params["activation"]), target[idx]).backward()
            optimiser.step()
    return [w.detach() for w in weights]


def fit_standardisation(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and population std (never overflowing); a constant feature gets std 1 so it maps to 0."""
    mean, std = column_stats(X)
    return mean, np.where(std > 0, std, 1.0)


class MlpBuilder(Builder):
    """Builds MlpModel."""

    kind = "mlp"
    main_metric = "accuracy"
    params_model = MlpParams

    def fit(self, data: TrainingData, params: Mapping[str, Any] | None = None,
            stop: threading.Event | None = None) -> BuildResult:
        """Train on the split's train rows, measure on its test rows; Cancelled if `stop` is set meanwhile."""
        started = time.perf_counter()
        params = self.validate_params(params)
        train_rows, test_rows = holdout(self.kind, data, params, MIN_TRAIN, MIN_TEST)
        classes = class_labels(self.kind, data.y, MAX_CLASSES)
        mean, std = fit_standardisation(train_rows.X)
        x = standardise(train_rows.X, mean, std)
        # The network computes in float32: a spread beyond its range would train on infinities.
        require_finite_fit(self.kind, "the standardised train features (beyond float32's range)", x)
        target = torch.from_numpy(np.searchsorted(classes, train_rows.y).astype(np.int64))
        with deterministic_torch():
            weights = train(x, target, classes.size, params, stop)
            require_finite_fit(self.kind, "the trained weights (training diverged; a smaller lr may help)", *weights)
            model = MlpModel(weights, mean, std, classes.tolist(), params["hidden"], params["activation"])
            # Scored under the same settings too, so a rebuild reproduces the metrics exactly.
            logits = model.logits(test_rows.X)
        require_finite_answers(self.kind, logits, test_rows, "test")
        metrics = classification_metrics(model.classes, train_rows.y, test_rows.y, classes[logits.argmax(axis=1)],
                                         softmax(logits))
        metrics["execution_time"] = time.perf_counter() - started
        versions = {**library_versions(), "torch_cpu_capability": cpu_capability()}
        return BuildResult(model=model, metrics=metrics, params=params, versions=versions)

    def load(self, data: bytes) -> MlpModel:
        """An MlpModel from its artifact."""
        return MlpModel.from_bytes(data)


BUILDER = MlpBuilder()
