"""Closed windows whose declaration names a model are predicted at once by the serving core, recorded
like any answer (so alert rules on predictions apply) and published like one.

A handlers.log.windows.WindowSink: it hears of windows after the batch that closed them committed.
Each answer's id is `window:<name>:<key>:<start ms>`, the same on a replay, so feedback can name it and
the recorder keeps the first answer under it.
"""
from __future__ import annotations

import logging
from typing import Any, Callable, Mapping, Sequence

from modelbus.handlers.log.windowing import ClosedWindow
from modelbus.handlers.serving.cache import ModelCache
from modelbus.handlers.serving.predict import Item, predict_batch
from modelbus.messages.errors import Rejected
from modelbus.messages.types import PredictionRequest
from modelbus.messages.windows import WindowSpec

log = logging.getLogger(__name__)


def window_prediction_id(row: ClosedWindow) -> str:
    """The id of a closed window's prediction (and of its feedback)."""
    return f"window:{row.window}:{row.key}:{row.start_ms}"


def window_item(spec: WindowSpec, row: ClosedWindow) -> Item:
    """A prediction request of a closed window: its aggregates in declared order as the features."""
    prediction_id = window_prediction_id(row)
    if any(value is None for value in row.values):
        missing = ", ".join(name for name, value in zip(spec.columns, row.values) if value is None)
        return Item(error=Rejected("bad_field", f"window has no value for {missing}"), id=prediction_id)
    features = tuple(float(value) for value in row.values)
    request = PredictionRequest(model=spec.model, dataset=spec.feature_dataset, features=features,  # type: ignore[arg-type]
                                payload=",".join(map(repr, features)), id=prediction_id, version=None)
    return Item(request=request, id=prediction_id)


class WindowPredictor:
    """Predicts the closed windows of the declared windows that name a model."""

    def __init__(self, cache: ModelCache, specs: Sequence[WindowSpec], publish: Callable[[dict[str, Any]], None],
                 *, recorder: Any = None, labels: Mapping[str, Mapping[str, str]] | None = None):
        self.cache = cache
        self.specs = {spec.name: spec for spec in specs if spec.model is not None}
        self.publish = publish
        self.recorder = recorder
        self.labels = labels

    def closed(self, rows: Sequence[ClosedWindow]) -> None:
        """Predict, record and publish one batch's closed windows (those of windows with a model)."""
        items = [window_item(self.specs[row.window], row) for row in rows if row.window in self.specs]
        if not items:
            return
        self.cache.refresh()  # an alias that moved since the last batch answers this one
        answers = predict_batch(self.cache, items, labels=self.labels)
        for answer in answers:
            self.publish(answer)
        if self.recorder is not None:
            self.recorder.record(items, answers)
            if not self.recorder.flush():
                log.warning("window predictions: recording %d answers failed; the recorder retries", len(items))
