"""Predictions: requests parsed once, one forward pass per model version and batch, answers in order."""
from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from modelbus.builders.encoding import EncodedModel
from modelbus.handlers.serving.cache import Loaded, ModelCache, serving_threads
from modelbus.messages.errors import Rejected
from modelbus.messages.parse import (
    DEFAULT_MAX_BYTES,
    MAX_ID_CHARS,
    loads,
    parse_request_obj,
)
from modelbus.messages.types import PredictionRequest

log = logging.getLogger(__name__)


DATE_FORMAT = "%Y-%m-%d %H:%M:%S"


# Told of unseen category values: (model, dataset, feature, count).
OnUnknown = Callable[[str, str, str, int], None]


# The code of an answer that failed because the registry could not be read (worth retrying).
REGISTRY_UNAVAILABLE = "registry_unavailable"


# A refused request larger than this is answered without looking for its id.
SALVAGE_MAX_BYTES = 8 * 1024 * 1024


@dataclass
class Item:
    """One prediction request as received: parsed, or rejected with the id it carried if any."""

    request: PredictionRequest | None = None
    error: Rejected | None = None
    id: str | None = None
    raw: bytes | None = None
    # The model that answers it, or why none can; set by resolve(), else by predict_batch.
    resolved: Loaded | Rejected | None = None


def _salvage_id(obj: Any) -> str | None:
    """The request's id, if it has a usable one, so even a rejected request is answered by id."""
    if isinstance(obj, dict):
        value = obj.get("id")
        if isinstance(value, str) and 0 < len(value) <= MAX_ID_CHARS:
            return value
    return None


def parse_item_obj(obj: Any, raw: bytes | None = None) -> Item:
    """Validate one decoded request (messages.parse, the one validation path)."""
    try:
        request = parse_request_obj(obj)
    except Rejected as exc:
        return Item(error=exc, id=_salvage_id(obj), raw=raw)
    return Item(request=request, id=request.id, raw=raw)


def parse_item(raw: bytes | str, max_bytes: int = DEFAULT_MAX_BYTES) -> Item:
    """Validate one raw request as it arrives on prediction_request_topic or in an HTTP body."""
    raw_bytes = raw.encode() if isinstance(raw, str) else bytes(raw)
    try:
        obj = loads(raw_bytes, max_bytes)
    except Rejected as exc:
        return Item(error=exc, id=_lenient_id(raw_bytes, exc), raw=raw_bytes)
    return parse_item_obj(obj, raw_bytes)


def _lenient_id(raw: bytes, error: Rejected) -> str | None:
    """The id of a request the strict decoder refused for its values or size, so its answer carries it."""
    if error.code in ("not_utf8", "not_json") or len(raw) > SALVAGE_MAX_BYTES:
        return None
    try:
        # Python's own decoder takes NaN, Infinity and repeated keys, which is all we need here.
        return _salvage_id(json.loads(raw))
    except (ValueError, RecursionError):
        return None


def error_response(item_id: str | None, error: Rejected) -> dict[str, Any]:
    """The answer to a bad request: its id and the error."""
    return {"id": item_id, "error": error.as_dict()}


def _result_value(value: Any, classifier: bool) -> float | int | str:
    # A category label is its value; a class label is written as the seed wrote it ("7", not "7.0").
    if isinstance(value, str):
        return value
    value = float(value)
    if classifier and value.is_integer():
        return int(value)
    return value


def _label_name(labels: Mapping[str, str] | None, result: float | int | str) -> str | None:
    if not labels:
        return None
    for key in (str(result),) if isinstance(result, str) else (str(result), repr(float(result))):
        if key in labels:
            return labels[key]
    return None


def _forward(predictor: Any, X: np.ndarray) -> tuple[np.ndarray, np.ndarray | None, dict[str, int]]:
    """Predictions, class probabilities and unseen categories by feature of a batch, in one forward pass
    where the model allows it."""
    if isinstance(predictor, EncodedModel):
        return predictor.forward(X)
    logits = getattr(predictor, "logits", None)
    if callable(logits) and predictor.classes:
        # MlpModel.predict and predict_proba each run the network; both are functions of its
        # logits (argmax -> class label, softmax -> probabilities), so run it once.
        from modelbus.builders.mlp import softmax

        out = logits(X)
        return np.asarray(predictor.classes, dtype=np.float64)[out.argmax(axis=1)], softmax(out), {}
    return predictor.predict(X), predictor.predict_proba(X), {}


def _responses(loaded: Loaded, requests: Sequence[PredictionRequest], date: str,
               labels: Mapping[str, str] | None, on_unknown: OnUnknown | None = None) -> list[dict[str, Any]]:
    typed = isinstance(loaded.predictor, EncodedModel)
    X = np.asarray([r.features for r in requests], dtype=object if typed else np.float64)
    results, proba, unknown = _forward(loaded.predictor, X)
    for feature, count in unknown.items():
        if on_unknown is not None:
            on_unknown(loaded.model, loaded.dataset, feature, count)
    classifier = proba is not None
    # A category label's probabilities are keyed by its values.
    keyed = typed and loaded.predictor.schema.category_label
    out = []
    for i, request in enumerate(requests):
        result = _result_value(results[i], classifier)
        body: dict[str, Any] = {
            "id": request.id,
            "model": loaded.model,
            "dataset": loaded.dataset,
            "version": loaded.version,
            "input": request.payload,
            "result": result,
            "accuracy": loaded.main_metric,
            "modelid": loaded.uuid,
            "prediction-date": date,
        }
        if classifier and keyed:
            body["probabilities"] = {str(c): float(p) for c, p in zip(loaded.predictor.classes, proba[i])}
        elif classifier:
            body["probabilities"] = [float(p) for p in proba[i]]
        name = _label_name(labels, result)
        if name is not None:
            body["label"] = name
        out.append(body)
    return out


def _lookup(cache: ModelCache, request: PredictionRequest) -> Loaded | Rejected:
    """The model that answers `request` (read from the registry on a cache miss), or why none can."""
    try:
        loaded = cache.get(request.model, request.dataset, request.version)
    except Rejected as exc:
        return exc
    except Exception as exc:
        # The registry's database is down: say so instead of failing the whole batch.
        log.warning("reading the registry for %s/%s failed: %s", request.model, request.dataset, exc)
        return Rejected(REGISTRY_UNAVAILABLE, f"the model registry cannot be read right now ({type(exc).__name__})")
    if request.fields is not None or isinstance(loaded.predictor, EncodedModel):
        return loaded  # checked field by field against the model's input schema (typed_request)
    expected = loaded.predictor.n_features
    if len(request.features) != expected:
        return Rejected(
            "wrong_feature_count",
            f"payload has {len(request.features)} values; {loaded.model} v{loaded.version} of dataset "
            f"'{loaded.dataset}' expects {expected} features",
        )
    return loaded


def typed_request(loaded: Loaded, request: PredictionRequest) -> PredictionRequest | Rejected:
    """The request with its values in the model's input order, checked field by field; or why it does not fit."""
    predictor = loaded.predictor
    where = f"{loaded.model} v{loaded.version} of dataset '{loaded.dataset}'"
    if not isinstance(predictor, EncodedModel):
        if request.fields is None:
            return request
        return Rejected("bad_field", f"{where} takes its payload as CSV text or an array of numbers, not an object")
    schema = predictor.schema
    if request.fields is None:
        if not schema.numeric:
            return Rejected("bad_field", f"{where} takes its payload as a JSON object keyed by field name "
                                         f"({', '.join(schema.names)})")
        if len(request.features) != len(schema.features):
            return Rejected("wrong_feature_count", f"payload has {len(request.features)} values; {where} expects "
                                                   f"{len(schema.features)} features")
        return request
    try:
        return replace(request, features=schema.features_of(request.fields))
    except Rejected as exc:
        return exc


def resolve(cache: ModelCache, item: Item) -> None:
    """Find the model of a parsed item now, in this thread, so predict_batch never reads the registry for it."""
    if item.request is not None and item.resolved is None:
        item.resolved = _lookup(cache, item.request)


def predict_batch(cache: ModelCache, items: Sequence[Item], *,
                  labels: Mapping[str, Mapping[str, str]] | None = None,
                  now: datetime | None = None, on_unknown: OnUnknown | None = None) -> list[dict[str, Any]]:
    """One response per item, in order; one forward pass per (model, dataset, version).

    `on_unknown(model, dataset, feature, count)` hears of category values a model never saw (answered anyway).
    """
    serving_threads()  # this thread's torch thread count (OpenMP's is per thread)
    date = (now or datetime.now(timezone.utc)).strftime(DATE_FORMAT)
    responses: list[dict[str, Any] | None] = [None] * len(items)
    groups: dict[tuple[str, str, int], tuple[Loaded, list[int]]] = {}
    requests: list[PredictionRequest | None] = []
    for index, item in enumerate(items):
        request = item.request
        if request is not None and request.id is None:
            # Every answer carries an id, so a Kafka client can match it without the key.
            request = replace(request, id=uuid.uuid4().hex)
        requests.append(request)
        if request is None:
            responses[index] = error_response(item.id, item.error or Rejected("bad_request", "unreadable request"))
            continue
        loaded = item.resolved if item.resolved is not None else _lookup(cache, request)
        # Kept on the item: recording the answer needs the version's classes.
        item.resolved = loaded
        if isinstance(loaded, Rejected):
            responses[index] = error_response(request.id, loaded)
            continue
        request = typed_request(loaded, request)
        if isinstance(request, Rejected):
            responses[index] = error_response(requests[index].id, request)
            continue
        requests[index] = request
        groups.setdefault(loaded.key, (loaded, []))[1].append(index)
    for loaded, indexes in groups.values():
        dataset_labels = (labels or {}).get(loaded.dataset)
        batch = [requests[i] for i in indexes]
        try:
            answers = _responses(loaded, batch, date, dataset_labels, on_unknown)
        except Exception:
            log.exception("a batch of %d for %s v%d failed; answering row by row", len(batch), loaded.model, loaded.version)
            answers = []
            for request in batch:
                try:
                    answers.extend(_responses(loaded, [request], date, dataset_labels, on_unknown))
                except Exception as exc:
                    answers.append(error_response(request.id, Rejected("prediction_failed", f"{type(exc).__name__}: {exc}")))
        for i, answer in zip(indexes, answers):
            responses[i] = answer
    return responses  # type: ignore[return-value]


def dataset_labels(datasets: Mapping[str, Any]) -> dict[str, dict[str, str]]:
    """Label-name mappings of the declared datasets (settings.datasets), for predict_batch."""
    return {name: dict(schema.labels) for name, schema in datasets.items() if getattr(schema, "labels", None)}
