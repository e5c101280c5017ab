"""Recording answered predictions in batches, off the answer's path, and firing prediction alert rules.

The serving thread only appends to a bounded queue; a thread of its own writes the rows. A
database that cannot take them holds them (up to max_pending, then the oldest are counted
and dropped): recording never slows or fails an answer.
"""
from __future__ import annotations

import logging
import threading
from collections import deque
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Sequence

from modelbus.db import predictions
from modelbus.db.errors import Refused
from modelbus.db.events import utcnow
from modelbus.handlers.serving.alerting import Announce, Firing, announce_all, store_firings
from modelbus.messages.alerts import PREDICTION, AlertRule, class_key, prediction_value
from modelbus.messages.jsonutil import fast_json

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RecorderConfig:
    """How predictions are written: rows per transaction, the longest wait, how many may wait."""

    batch: int = 1000
    flush_seconds: float = 0.2
    max_pending: int = 200_000


# (features, answer, class labels, answered at)
Entry = tuple[Any, dict[str, Any], Sequence[Any] | None, datetime]


class PredictionRecorder:
    """Queues answers as they are given and writes them, with their alert firings, in batches."""

    def __init__(self, engine: Any, config: RecorderConfig = RecorderConfig(), *, rules: Sequence[AlertRule] = (),
                 announce: Announce | None = None):
        self.engine = engine
        self.config = config
        self.rules = [rule for rule in rules if rule.on == PREDICTION]
        self.announce = announce
        self._pending: deque[Entry] = deque()
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self.recorded = 0
        self.dropped = 0
        self.failures = 0

    def record(self, items: Sequence[Any], answers: Sequence[dict[str, Any]]) -> None:
        """Queue the answered ones of a batch (serving.predict.Item and its answer); never blocks."""
        now = utcnow()
        pending = self._pending
        for item, answer in zip(items, answers):
            request, loaded = item.request, item.resolved
            if request is None or "error" in answer or loaded is None or isinstance(loaded, Exception):
                continue
            features = request.fields if getattr(request, "fields", None) is not None else list(request.features)
            pending.append((features, answer, getattr(loaded.predictor, "classes", None), now))
        excess = len(pending) - self.config.max_pending
        if excess > 0:
            with self._lock:
                for _ in range(min(excess, len(pending))):
                    pending.popleft()
                self.dropped += excess
            log.warning("prediction recording is behind: dropped the %d oldest unrecorded predictions", excess)
        if len(pending) >= self.config.batch:
            self._wake.set()

    @property
    def backlog(self) -> int:
        """Answers queued and not yet written."""
        return len(self._pending)

    def run(self, stop: threading.Event) -> None:
        """Write queued answers every flush_seconds (sooner when a batch is full) until stopped, then the rest."""
        delay = self.config.flush_seconds
        while not stop.is_set():
            self._wake.wait(delay)
            self._wake.clear()
            delay = self.config.flush_seconds if self.flush() else min(max(delay * 2, 0.5), 10.0)
        self.flush()

    def flush(self) -> bool:
        """Write everything queued now; False when the database refused (the rows wait for the next try)."""
        while self._pending:
            batch: list[Entry] = []
            with self._lock:
                while self._pending and len(batch) < self.config.batch:
                    batch.append(self._pending.popleft())
            try:
                try:
                    self._write(batch)
                except Refused:
                    # The database is up but refuses something in the batch: write row by row,
                    # so one bad row costs only itself.
                    batch = self._write_each(batch)
            except Exception as exc:
                with self._lock:
                    self._pending.extendleft(reversed(batch))
                self.failures += 1
                log.warning("recording %d predictions failed (%s: %s); retrying", len(batch), type(exc).__name__, exc)
                return False
        return True

    def _write_each(self, batch: list[Entry]) -> list[Entry]:
        """Write row by row, dropping the refused ones; on any other failure raise with the rest unwritten."""
        for index, entry in enumerate(batch):
            try:
                self._write([entry])
            except Refused as exc:
                self.dropped += 1
                log.warning("prediction %s cannot be recorded: %s", entry[1].get("id"), exc)
            except Exception:
                del batch[:index]
                raise
        return []

    def _write(self, batch: list[Entry]) -> None:
        rows, firings = [], []
        for features, answer, classes, at in batch:
            probabilities = _keyed(answer.get("probabilities"), classes)
            rows.append({"id": answer["id"], "model": answer["model"], "dataset": answer["dataset"],
                         "version": answer["version"], "features": fast_json(features),
                         "result": fast_json(answer.get("result")),
                         "probabilities": fast_json(probabilities) if probabilities is not None else None,
                         "created_at": at})
            for rule in self.rules:
                value = prediction_value(rule, answer, probabilities)
                if value is not None:
                    firings.append(Firing(rule, answer["id"], answer["version"], value, prediction_id=answer["id"]))
        with self.engine.begin() as conn:
            predictions.insert(conn, rows)
            new = store_firings(conn, firings) if firings else []
        self.recorded += len(rows)
        announce_all(self.announce, new)


def _keyed(probabilities: Any, classes: Sequence[Any] | None) -> dict[str, float] | None:
    """Probabilities keyed by class label ("5", "Adelie"), as alert rules and the table name them."""
    if probabilities is None:
        return None
    if isinstance(probabilities, dict):
        return {str(k): v for k, v in probabilities.items()}
    if classes is None or len(classes) != len(probabilities):
        return None
    return {class_key(c): p for c, p in zip(classes, probabilities)}
