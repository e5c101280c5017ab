"""What the API needs to answer predictions: the model cache, the micro-batcher, hot reload."""
from __future__ import annotations

import logging
import threading
from typing import Any, Callable, Mapping

from modelbus.handlers.serving.batcher import MicroBatcher
from modelbus.handlers.serving.cache import ModelCache
from modelbus.handlers.serving.predict import Item, predict_batch, resolve

log = logging.getLogger(__name__)

Target = Callable[[threading.Event], None]
# Given the cache, the threads that keep it current (model-update notices, alias polling).
ReloadTargets = Callable[[ModelCache], list[tuple[str, Target]]]


class Serving:
    """The model cache and the shared micro-batcher of one API process."""

    def __init__(self, registry: Any, *, predict_batch: int = 256, labels: Mapping[str, Mapping[str, str]] | None = None,
                 metrics: Any = None, reload_targets: ReloadTargets | None = None, recorder: Any = None):
        self.registry = registry
        self.metrics = metrics
        self.cache = ModelCache(registry, on_swap=metrics.on_swap if metrics else None)
        self.labels = dict(labels or {})
        self._reload_targets = reload_targets
        # handlers.serving.record.PredictionRecorder, or None when predictions are not recorded.
        self.recorder = recorder
        # No added wait: concurrent HTTP requests queue while a batch runs and share the
        # next one, so batches grow with the load without slowing a lone request.
        self.batcher = MicroBatcher(self._run, max_batch=predict_batch, max_wait=0.0)
        self._started = False

    def _run(self, items: list[Item]) -> list[dict[str, Any]]:
        if self.metrics is not None:
            self.metrics.batch_size.observe(len(items))
        answers = predict_batch(self.cache, items, labels=self.labels,
                                on_unknown=self.metrics.count_unknown if self.metrics is not None else None)
        if self.recorder is not None:
            self.recorder.record(items, answers)
        return answers

    def predict(self, items: list[Item]) -> list[dict[str, Any]]:
        """Answers for parsed items, through the shared batcher."""
        # A model not in memory is read from the registry here, in the caller's thread: in
        # the batcher's thread a slow or silent database would hold up every concurrent
        # caller, those whose model is loaded too.
        for item in items:
            resolve(self.cache, item)
        answers = self.batcher.submit(items)
        if self.metrics is not None:
            self.metrics.count_answers(answers)
        return answers

    def start(self, start: Callable[[str, Target], None]) -> None:
        """Load the production models and start hot reload with a Services-like `start`."""
        if self._started:
            return
        self._started = True
        try:
            self.cache.warm()
        except Exception:
            log.exception("loading the production models at start failed; they load on first use")
        for name, target in self._reload_targets(self.cache) if self._reload_targets else ():
            start(name, target)
        if self.recorder is not None:
            start("prediction-recorder", self.recorder.run)

    def close(self) -> None:
        """Stop the batcher thread."""
        self.batcher.close()
