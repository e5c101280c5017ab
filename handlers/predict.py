"""Predictions: a cache of loaded production models and one forward pass per model per batch.

Pure logic shared by the Kafka prediction worker and the HTTP API; no Kafka, no Flask.
"""
from __future__ import annotations

import json
import logging
import queue
import sys
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Mapping, Protocol, Sequence

import numpy as np

from modelbus.commands.messages import MODEL_KINDS, PredictionRequest, Rejected
from modelbus.commands.parse import DEFAULT_MAX_BYTES, MAX_ID_CHARS, loads, parse_request_obj

log = logging.getLogger(__name__)

DATE_FORMAT = "%Y-%m-%d %H:%M:%S"
# The code of an answer that failed because the registry could not be read (worth retrying).
REGISTRY_UNAVAILABLE = "registry_unavailable"
PINNED_CACHE_SIZE = 32
MISSING_CACHE_SIZE = 1024
# A refused request larger than this is answered without looking for its id.
SALVAGE_MAX_BYTES = 8 * 1024 * 1024


class Registry(Protocol):
    """The registry reads serving needs (db.registry, bound to an engine)."""

    def production(self, model: str, dataset: str) -> Any:
        """The production ModelVersion of (model, dataset) with its artifact, or None."""

    def get_version(self, model: str, dataset: str, version: int) -> Any:
        """One ModelVersion with its artifact, or None."""

    def aliases(self) -> dict[tuple[str, str], int]:
        """(model, dataset) -> production version."""

    def alias_generation(self) -> int:
        """A number that changes whenever any alias moves."""


class DbRegistry:
    """db.registry's functions bound to one engine."""

    def __init__(self, engine):
        self.engine = engine

    def production(self, model: str, dataset: str):
        """The production version of (model, dataset), or None."""
        from modelbus.db import registry

        return registry.production(self.engine, model, dataset)

    def get_version(self, model: str, dataset: str, version: int):
        """One version, or None."""
        from modelbus.db import registry

        return registry.get_version(self.engine, model, dataset, version)

    def aliases(self) -> dict[tuple[str, str], int]:
        """Every production alias."""
        from modelbus.db import registry

        return registry.aliases(self.engine)

    def alias_generation(self) -> int:
        """The alias generation counter."""
        from modelbus.db import registry

        return registry.alias_generation(self.engine)

    def list_versions(self, model: str | None = None, dataset: str | None = None) -> list:
        """Versions without artifacts, by model, dataset and version."""
        from modelbus.db import registry

        return registry.list_versions(self.engine, model, dataset)

    def builds(self, model: str | None = None, dataset: str | None = None, limit: int = 50) -> list[dict]:
        """Build attempts, newest first."""
        from modelbus.db import registry

        return registry.builds(self.engine, model, dataset, limit)


@dataclass(frozen=True)
class Loaded:
    """A model version ready to predict: its registry identity and the loaded Model."""

    model: str
    dataset: str
    version: int
    uuid: str
    main_metric: float | None
    predictor: Any  # builders.base.Model

    @property
    def key(self) -> tuple[str, str, int]:
        """(model, dataset, version)."""
        return (self.model, self.dataset, self.version)


def _serving_threads() -> None:
    """One torch intra-op thread for serving, once torch is loaded.

    Serving runs tiny forward passes (a few rows through small layers): on one thread a
    batch of 256 takes ~0.2 ms, with a thread per core ~7 ms on a busy 2-core machine, as
    the threads spin and fight the rest of the process for the cores. Builds set their own
    thread count and restore this one after.
    """
    torch = sys.modules.get("torch")
    if torch is not None and torch.get_num_threads() != 1:
        torch.set_num_threads(1)


def load_version(mv: Any) -> Loaded:
    """Build a Loaded from a ModelVersion with its artifact (raises ValueError on a bad artifact)."""
    from modelbus.builders import get_builder

    if mv.artifact is None:
        raise ValueError(f"{mv.model} v{mv.version} of dataset '{mv.dataset}' has no artifact")
    predictor = get_builder(mv.model).load(mv.artifact)
    _serving_threads()
    metric = None if mv.main_metric is None else float(mv.main_metric)
    return Loaded(mv.model, mv.dataset, int(mv.version), str(mv.uuid), metric, predictor)


class ModelCache:
    """Loaded production models per (model, dataset), and recently pinned versions.

    Reads never lock: a reload builds the new Model completely, then replaces the dict
    entry in one assignment, so a request sees the old version or the new one, never
    a half-loaded one. Registry reads, loads and installs are serialised by one lock so
    a slow reload can never install an older version over a newer one.
    """

    def __init__(self, registry: Registry, *, pinned_size: int = PINNED_CACHE_SIZE,
                 on_swap: Callable[[Loaded | None, Loaded | None], None] | None = None):
        self.registry = registry
        self._production: dict[tuple[str, str], Loaded] = {}
        # (model, dataset) pairs known to have no production version; bounded, because the
        # names come from unauthenticated requests and must not grow memory without limit.
        self._missing: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._pinned: OrderedDict[tuple[str, str, int], Loaded] = OrderedDict()
        self._pinned_size = pinned_size
        self._lock = threading.RLock()
        self._generation: int | None = None
        self._on_swap = on_swap
        self.swaps = 0

    # -- lookups ---------------------------------------------------------------------

    def get(self, model: str, dataset: str, version: int | None = None) -> Loaded:
        """The model to answer with, or Rejected (no_production_version, unknown_version, ...)."""
        if model not in MODEL_KINDS:
            raise Rejected("unknown_model", f"model '{model}' is unknown (known: {', '.join(sorted(MODEL_KINDS))})")
        key = (model, dataset)
        try:
            current: Loaded | None = self._production[key]
        except KeyError:
            current = None if key in self._missing else self._reload(key, force=False)
        if version is None:
            if current is None:
                raise Rejected("no_production_version", f"{model} has no production version for dataset '{dataset}'")
            return current
        if current is not None and current.version == version:
            return current
        return self._get_pinned(model, dataset, version)

    def _get_pinned(self, model: str, dataset: str, version: int) -> Loaded:
        pkey = (model, dataset, version)
        loaded = self._pinned.get(pkey)
        if loaded is not None:
            return loaded
        with self._lock:
            loaded = self._pinned.get(pkey)
            if loaded is not None:
                return loaded
            mv = self.registry.get_version(model, dataset, version)
            if mv is None:
                raise Rejected("unknown_version", f"{model} has no version {version} for dataset '{dataset}'")
            loaded = self._load(mv)
            self._pinned[pkey] = loaded
            while len(self._pinned) > self._pinned_size:
                self._pinned.popitem(last=False)
            return loaded

    def _load(self, mv: Any) -> Loaded:
        try:
            return load_version(mv)
        except Exception as exc:
            log.exception("loading %s v%s of dataset '%s' failed", mv.model, mv.version, mv.dataset)
            raise Rejected(
                "model_unavailable", f"{mv.model} v{mv.version} of dataset '{mv.dataset}' cannot be loaded: {exc}"
            ) from None

    def _reload(self, key: tuple[str, str], force: bool) -> Loaded | None:
        """Read the production version of key, load it and install it; keeps the old one on failure."""
        with self._lock:
            if not force and key in self._production:
                return self._production[key]
            if not force and key in self._missing:
                return None
            old = self._production.get(key)
            mv = self.registry.production(*key)
            if mv is None and old is not None:
                # Aliases only vanish while `modelbus replay` rebuilds the registry: keep
                # serving what we have until the replayed alias comes back.
                return old
            if mv is None:
                self._missing[key] = None
                while len(self._missing) > MISSING_CACHE_SIZE:
                    self._missing.popitem(last=False)
                return None
            elif old is not None and old.version == mv.version and old.uuid == str(mv.uuid):
                return old
            else:
                try:
                    new = load_version(mv)
                except Exception:
                    # Keep serving what we have; the next notice or poll retries.
                    log.exception("loading %s v%s of dataset '%s' failed; keeping the loaded version",
                                  mv.model, mv.version, mv.dataset)
                    if key in self._production:
                        return old
                    raise Rejected(
                        "model_unavailable", f"{mv.model} v{mv.version} of dataset '{mv.dataset}' cannot be loaded"
                    ) from None
            changed = (old.key if old else None) != new.key
            self._production[key] = new
            self._missing.pop(key, None)
            if changed:
                self.swaps += 1
                log.info("serving %s for %s/%s (was %s)", f"v{new.version}" if new else "nothing",
                         key[0], key[1], f"v{old.version}" if old else "nothing")
                if self._on_swap is not None:
                    self._on_swap(old, new)
            return new

    # -- hot reload ------------------------------------------------------------------

    def on_update(self, model: str, dataset: str) -> Loaded | None:
        """A model-update notice for (model, dataset): reload its production version now."""
        try:
            return self._reload((model, dataset), force=True)
        except Rejected:
            return None

    def refresh(self) -> bool:
        """Reload every alias that moved since the last call (the polling fallback); True if any did."""
        from modelbus.db.breaker import DatabaseUnavailable

        try:
            generation = self.registry.alias_generation()
        except DatabaseUnavailable:
            # The database is known not to answer (its breaker logged that once): nothing can
            # have been learnt; the first poll after it answers again catches up.
            return False
        if generation == self._generation:
            return False
        # Read the generation before the aliases: a move in between shows up next time.
        aliases = self.registry.aliases()
        moved = False
        for key in set(self._production) | set(aliases):
            current = self._production.get(key)
            if (current.version if current else None) != aliases.get(key):
                self.on_update(*key)
                moved = True
        self._generation = generation
        return moved

    def warm(self) -> int:
        """Load every production version now (at start); returns how many are loaded."""
        self.refresh()
        return len(self.loaded())

    def loaded(self) -> list[Loaded]:
        """The production versions currently served."""
        return [v for v in list(self._production.values()) if v is not None]


# -- requests and responses --------------------------------------------------------------


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
    """Validate one decoded request (commands.parse, the one validation path)."""
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


def _result_value(value: float, classifier: bool) -> float | int:
    # A class label is written as the seed wrote it ("7", not "7.0").
    value = float(value)
    if classifier and value.is_integer():
        return int(value)
    return value


def _label_name(labels: Mapping[str, str] | None, result: float | int) -> str | None:
    if not labels:
        return None
    for key in (str(result), repr(float(result))):
        if key in labels:
            return labels[key]
    return None


def _forward(predictor: Any, X: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Predictions and class probabilities of a batch, in one forward pass where the model allows it."""
    logits = getattr(predictor, "logits", None)
    if callable(logits) and predictor.classes:
        # MlpModel.predict and predict_proba each run the network; both are functions of its
        # logits (argmax -> class label, softmax -> probabilities), so run it once.
        from modelbus.builders.mlp import softmax

        out = logits(X)
        return np.asarray(predictor.classes, dtype=np.float64)[out.argmax(axis=1)], softmax(out)
    return predictor.predict(X), predictor.predict_proba(X)


def _responses(loaded: Loaded, requests: Sequence[PredictionRequest], date: str,
               labels: Mapping[str, str] | None) -> list[dict[str, Any]]:
    X = np.asarray([r.features for r in requests], dtype=np.float64)
    results, proba = _forward(loaded.predictor, X)
    classifier = proba is not None
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
        if classifier:
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
    expected = loaded.predictor.n_features
    if len(request.features) != expected:
        return Rejected(
            "wrong_feature_count",
            f"payload has {len(request.features)} values; {loaded.model} v{loaded.version} of dataset "
            f"'{loaded.dataset}' expects {expected} features",
        )
    return loaded


def resolve(cache: ModelCache, item: Item) -> None:
    """Find the model of a parsed item now, in this thread, so predict_batch never reads the registry for it."""
    if item.request is not None and item.resolved is None:
        item.resolved = _lookup(cache, item.request)


def predict_batch(cache: ModelCache, items: Sequence[Item], *,
                  labels: Mapping[str, Mapping[str, str]] | None = None,
                  now: datetime | None = None) -> list[dict[str, Any]]:
    """One response per item, in order; one forward pass per (model, dataset, version)."""
    date = (now or datetime.now(timezone.utc)).strftime(DATE_FORMAT)
    responses: list[dict[str, Any] | None] = [None] * len(items)
    groups: dict[tuple[str, str, int], tuple[Loaded, list[int]]] = {}
    requests: list[PredictionRequest | None] = []
    for index, item in enumerate(items):
        request = item.request
        if request is not None and request.id is None:
            # Every answer carries an id, so a Kafka client can match it without the key.
            request = PredictionRequest(request.model, request.dataset, request.features, request.payload,
                                        uuid.uuid4().hex, request.version)
        requests.append(request)
        if request is None:
            responses[index] = error_response(item.id, item.error or Rejected("bad_request", "unreadable request"))
            continue
        loaded = item.resolved if item.resolved is not None else _lookup(cache, request)
        if isinstance(loaded, Rejected):
            responses[index] = error_response(request.id, loaded)
            continue
        groups.setdefault(loaded.key, (loaded, []))[1].append(index)
    for loaded, indexes in groups.values():
        dataset_labels = (labels or {}).get(loaded.dataset)
        batch = [requests[i] for i in indexes]
        try:
            answers = _responses(loaded, batch, date, dataset_labels)
        except Exception:
            log.exception("a batch of %d for %s v%d failed; answering row by row", len(batch), loaded.model, loaded.version)
            answers = []
            for request in batch:
                try:
                    answers.extend(_responses(loaded, [request], date, dataset_labels))
                except Exception as exc:
                    answers.append(error_response(request.id, Rejected("prediction_failed", f"{type(exc).__name__}: {exc}")))
        for i, answer in zip(indexes, answers):
            responses[i] = answer
    return responses  # type: ignore[return-value]


# -- micro-batching for concurrent callers (the HTTP API) ----------------------------------


class _Job:
    __slots__ = ("items", "done", "result", "error")

    def __init__(self, items: Sequence[Item]):
        self.items = items
        self.done = threading.Event()
        self.result: list[dict[str, Any]] | None = None
        self.error: BaseException | None = None


class MicroBatcher:
    """Joins the items of concurrent callers into one predict_batch call.

    A batch closes when it holds `max_batch` items or `max_wait` seconds after its first
    item; with max_wait 0 it takes whatever queued while the previous batch ran (no
    added latency, and batches grow with the load).
    """

    def __init__(self, run: Callable[[list[Item]], list[dict[str, Any]]], max_batch: int = 256, max_wait: float = 0.0):
        self._run = run
        self.max_batch = max_batch
        self.max_wait = max_wait
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.batches = 0
        self.items = 0

    def submit(self, items: Sequence[Item], timeout: float = 30.0) -> list[dict[str, Any]]:
        """Answers for items, in order (blocks until the batch that holds them has run)."""
        if not items:
            return []
        self._ensure_started()
        job = _Job(items)
        self._queue.put(job)
        if not job.done.wait(timeout):
            raise TimeoutError(f"no answer within {timeout:.0f}s")
        if job.error is not None:
            raise job.error
        assert job.result is not None
        return job.result

    def _ensure_started(self) -> None:
        if self._thread is not None:
            return
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="predict-batcher", daemon=True)
                self._thread.start()

    def close(self) -> None:
        """Stop the batching thread after the jobs already queued."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(10)

    def _gather(self, first: _Job) -> tuple[list[_Job], bool]:
        jobs, count = [first], len(first.items)
        deadline = time.monotonic() + self.max_wait
        while count < self.max_batch:
            try:
                remaining = deadline - time.monotonic()
                job = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if job is None:
                return jobs, True
            jobs.append(job)
            count += len(job.items)
        return jobs, False

    def _loop(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is None:
                return
            jobs, stopping = self._gather(first)
            items = [item for job in jobs for item in job.items]
            try:
                answers = self._run(items)
                start = 0
                for job in jobs:
                    job.result = answers[start : start + len(job.items)]
                    start += len(job.items)
            except BaseException as exc:  # answered to every caller; the loop goes on
                log.exception("a prediction batch of %d failed", len(items))
                for job in jobs:
                    job.error = exc
            self.batches += 1
            self.items += len(items)
            for job in jobs:
                job.done.set()


def dataset_labels(datasets: Mapping[str, Any]) -> dict[str, dict[str, str]]:
    """Label-name mappings of the declared datasets (settings.datasets), for predict_batch."""
    return {name: dict(schema.labels) for name, schema in datasets.items() if getattr(schema, "labels", None)}

