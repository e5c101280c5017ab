"""Typed datasets for every builder: category features one-hot encoded by a vocabulary fitted on the
train split, a category label coded by its values, both saved in the artifact (JSON, no pickle).

get_builder wraps each kind's builder in TypedBuilder: data without a schema goes to the kind's
own fit untouched; typed data is encoded, fitted by the kind, and the model wrapped in
EncodedModel, which encodes typed rows (an unseen category as all zeros, counted) and answers
with label values.
"""
from __future__ import annotations

import base64
import json
import threading
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from modelbus.builders.base import Builder, BuildError, BuildResult, Model, TrainingData, dumps_canonical
from modelbus.builders.split import train_test_indices
from modelbus.messages.datasets import CATEGORY, InputSchema

FORMAT = "modelbus.encoded/1"


@dataclass(frozen=True)
class Encoding:
    """How typed rows become numbers: the schema, each category feature's vocabulary and the label values."""

    schema: InputSchema
    vocabularies: Mapping[str, Sequence[str]]
    labels: Sequence[str] | None = None

    @classmethod
    def fit(cls, schema: InputSchema, X_train: np.ndarray, y: np.ndarray) -> Encoding:
        """Vocabularies of the category features from the train rows; label values from every row (so test
        rows of a class keep their value, as a numeric label's classes do)."""
        vocabularies = {name: sorted({str(v) for v in X_train[:, j]})
                        for j, (name, kind) in enumerate(schema.features) if kind == CATEGORY}
        labels = sorted({str(v) for v in y}) if schema.category_label else None
        return cls(schema, vocabularies, labels)

    @property
    def columns(self) -> list[str]:
        """The names of the encoded columns: a number as itself, a category as one column per value."""
        out: list[str] = []
        for name, kind in self.schema.features:
            out.extend([f"{name}={value}" for value in self.vocabularies[name]] if kind == CATEGORY else [name])
        return out

    def encode(self, X: np.ndarray) -> tuple[np.ndarray, dict[str, int]]:
        """The numeric matrix of typed rows, and how many values of each category feature were unseen."""
        X = np.asarray(X, dtype=object)
        n = X.shape[0]
        parts: list[np.ndarray] = []
        unknown: dict[str, int] = {}
        for j, (name, kind) in enumerate(self.schema.features):
            if kind != CATEGORY:
                parts.append(X[:, j].astype(np.float64).reshape(n, 1))
                continue
            vocabulary = self.vocabularies[name]
            index = {value: i for i, value in enumerate(vocabulary)}
            block = np.zeros((n, len(vocabulary)), dtype=np.float64)
            missed = 0
            for row, value in enumerate(X[:, j]):
                at = index.get(value)
                if at is None:
                    missed += 1  # unseen at fit time: all zeros, no category's column
                else:
                    block[row, at] = 1.0
            if missed:
                unknown[name] = missed
            parts.append(block)
        return (np.hstack(parts) if parts else np.zeros((n, 0))), unknown

    def encode_labels(self, y: np.ndarray) -> np.ndarray:
        """Labels as numbers: a category label's value as its index among the label values."""
        if self.labels is None:
            return np.asarray(y, dtype=np.float64)
        index = {value: i for i, value in enumerate(self.labels)}
        return np.asarray([index[str(v)] for v in y], dtype=np.float64)

    def decode_labels(self, codes: np.ndarray) -> np.ndarray:
        """Predicted numbers back as labels: a category label's code as its value."""
        if self.labels is None:
            return np.asarray(codes, dtype=np.float64)
        values = np.asarray(self.labels, dtype=object)
        return values[np.asarray(codes, dtype=np.float64).round().astype(np.int64)]

    def as_dict(self) -> dict[str, Any]:
        """The encoding as the artifact stores it."""
        return {"schema": self.schema.as_dict(), "vocabularies": {k: list(v) for k, v in self.vocabularies.items()},
                "labels": None if self.labels is None else list(self.labels)}

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any]) -> Encoding:
        """The encoding from as_dict's form."""
        return cls(InputSchema.from_dict(obj["schema"]), {k: list(v) for k, v in obj["vocabularies"].items()},
                   None if obj.get("labels") is None else list(obj["labels"]))


class EncodedModel(Model):
    """A model of a typed dataset: its encoding and the fitted model of encoded rows."""

    def __init__(self, inner: Model, encoding: Encoding) -> None:
        self.inner = inner
        self.encoding = encoding
        self.kind = inner.kind
        self.schema = encoding.schema
        self.n_features = len(encoding.schema.features)
        self.classes = list(encoding.labels) if encoding.labels is not None else inner.classes

    def forward(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray | None, dict[str, int]]:
        """Predicted labels, class probabilities (None for a regression) and unseen categories per feature."""
        encoded, unknown = self.encoding.encode(X)
        inner = self.inner
        if inner.classes and callable(getattr(inner, "logits", None)):
            # One pass of the network for both (see handlers.serving.predict._forward).
            from modelbus.builders.mlp import softmax

            logits = inner.logits(encoded)
            codes = np.asarray(inner.classes, dtype=np.float64)[logits.argmax(axis=1)]
            return self.encoding.decode_labels(codes), softmax(logits), unknown
        return self.encoding.decode_labels(inner.predict(encoded)), inner.predict_proba(encoded), unknown

    def predict(self, X: np.ndarray) -> np.ndarray:
        """The predicted label of each typed row (a category label's value)."""
        return self.forward(X)[0]

    def predict_proba(self, X: np.ndarray) -> np.ndarray | None:
        """Class probabilities in the order of `classes`, or None for a regression."""
        return self.inner.predict_proba(self.encoding.encode(X)[0])

    def to_bytes(self) -> bytes:
        """Canonical JSON: the encoding, and the inner model's artifact in base64."""
        return dumps_canonical({"format": FORMAT, "kind": self.kind, "encoding": self.encoding.as_dict(),
                                "model": base64.b64encode(self.inner.to_bytes()).decode("ascii")})

    @classmethod
    def from_bytes(cls, data: bytes) -> Model:
        """Not used: an encoded artifact is loaded by its kind's TypedBuilder, which knows the inner kind."""
        raise NotImplementedError("load an encoded artifact with get_builder(kind).load")


def is_encoded(data: bytes) -> bool:
    """True for an EncodedModel artifact (the other formats are safetensors or JSON of another format)."""
    head = bytes(data[:64])
    return head.startswith(b"{") and b'"encoding"' in head


class TypedBuilder(Builder):
    """A kind's builder that also takes typed data: encodes it, fits the kind, wraps the model."""

    def __init__(self, inner: Builder) -> None:
        self.inner = inner
        self.kind = inner.kind
        self.main_metric = inner.main_metric
        self.params_model = inner.params_model

    def fit(self, data: TrainingData, params: Mapping[str, Any] | None = None,
            stop: threading.Event | None = None) -> BuildResult:
        """The kind's fit, on the encoded rows when the data is typed."""
        schema = data.schema
        if schema is None:
            return self.inner.fit(data, params, stop)
        if schema.category_label and self.main_metric != "accuracy":
            raise BuildError(f"{self.kind} needs a numeric label; this dataset's label '{schema.label[0]}' is a "
                             "category (build a classifier such as mlp)")
        checked = self.validate_params(params)
        # The vocabulary comes from the rows the kind trains on: the same keyed split it makes.
        train_idx, _ = train_test_indices(data.keys, checked["split"], checked["seed"])
        encoding = Encoding.fit(schema, data.X[train_idx], data.y)
        X, _ = encoding.encode(data.X)
        result = self.inner.fit(TrainingData(X=X, y=encoding.encode_labels(data.y), keys=data.keys), params, stop)
        result.model = EncodedModel(result.model, encoding)
        result.metrics["input_schema"] = schema.as_dict()
        result.metrics["encoded_columns"] = len(encoding.columns)
        if encoding.labels is not None:
            result.metrics["label_values"] = list(encoding.labels)
        return result

    def load(self, data: bytes) -> Model:
        """A model of this kind from its artifact, encoded or not."""
        if not is_encoded(data):
            return self.inner.load(data)
        try:
            obj = json.loads(bytes(data).decode("utf-8"))
            if obj.get("format") != FORMAT or obj.get("kind") != self.kind:
                raise ValueError(f"not a {FORMAT} artifact of {self.kind}")
            encoding = Encoding.from_dict(obj["encoding"])
            inner = self.inner.load(base64.b64decode(obj["model"], validate=True))
        except (UnicodeDecodeError, KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a {FORMAT} artifact: {exc}") from None
        return EncodedModel(inner, encoding)


def recorded_schema(metrics: Mapping[str, Any] | None) -> InputSchema | None:
    """The typed fields a version was built with (recorded in its metrics), or None for a numeric dataset."""
    schema = (metrics or {}).get("input_schema")
    return InputSchema.from_dict(schema) if isinstance(schema, Mapping) else None
