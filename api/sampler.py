"""The dashboard's recent history, kept in memory per process: log head, handler lag, dead letters, predictions."""
from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import Any

from modelbus.db import positions
from modelbus.db.breaker import DatabaseUnavailable

log = logging.getLogger(__name__)

INTERVAL = 5.0
# An hour of points at the default interval.
KEEP = 720


def prediction_total(metrics: Any) -> float:
    """Predictions this process has answered, every model and outcome together."""
    if metrics is None:
        return 0.0
    total = 0.0
    for family in metrics.predictions.collect():
        total += sum(s.value for s in family.samples if s.name.endswith("_total"))
    return total


class Sampler:
    """Samples the store every `interval` seconds (run as a thread) or when asked and one is due."""

    def __init__(self, store: Any, metrics: Any = None, *, interval: float = INTERVAL, keep: int = KEEP,
                 clock=time.time):
        self.store = store
        self.metrics = metrics
        self.interval = interval
        self.clock = clock
        self._points: deque[dict[str, Any]] = deque(maxlen=keep)
        self._lock = threading.Lock()
        self._failing = False

    def sample(self) -> bool:
        """Record one point now; False (and no point: a gap in the charts) when the store cannot be read."""
        try:
            head = self.store.head()
            lag = {s.name: max(0, head - s.position) for s in positions.states(self.store.engine)}
            dead = self.store.dead_letter_count()
        except Exception as exc:
            if not self._failing:  # once per outage, not every few seconds
                if isinstance(exc, DatabaseUnavailable):
                    log.warning("dashboard sampler: %s", exc)
                else:
                    log.warning("dashboard sampler: reading the store failed: %s: %s", type(exc).__name__, exc)
            self._failing = True
            return False
        if self._failing:
            log.info("dashboard sampler: the store answers again")
        self._failing = False
        point = {"t": self.clock(), "head": head, "lag": lag, "dead_letters": dead,
                 "predictions": prediction_total(self.metrics)}
        with self._lock:
            self._points.append(point)
        return True

    def sample_if_due(self) -> None:
        """Sample when the last point is older than the interval (a process that runs no sampler thread)."""
        with self._lock:
            last = self._points[-1]["t"] if self._points else None
        if last is None or self.clock() - last >= self.interval:
            self.sample()

    def run(self, stop: threading.Event) -> None:
        """Sample until `stop` is set (a Services target); a failing read only leaves a gap."""
        while not stop.is_set():
            try:
                self.sample()
            except Exception:  # a bug here must not stop the process: the charts only lose points
                log.exception("dashboard sampler failed")
            stop.wait(self.interval)

    def series(self) -> dict[str, Any]:
        """The points as columns for charts: time (ms), head, per-second rates between points, lag per handler."""
        with self._lock:
            points = list(self._points)
        out: dict[str, Any] = {"t": [], "head": [], "ingest_rate": [], "prediction_rate": [], "dead_letters": [],
                               "lag": {}, "interval": self.interval}
        previous = None
        for point in points:
            out["t"].append(round(point["t"] * 1000))
            out["head"].append(point["head"])
            out["dead_letters"].append(point["dead_letters"])
            if previous is None or point["t"] <= previous["t"]:
                ingest = predictions = None
            else:
                span = point["t"] - previous["t"]
                # A replay or an emptied store moves the head back: no negative rate.
                ingest = max(0.0, (point["head"] - previous["head"]) / span)
                predictions = max(0.0, (point["predictions"] - previous["predictions"]) / span)
            out["ingest_rate"].append(ingest)
            out["prediction_rate"].append(predictions)
            previous = point
        names = sorted({name for point in points for name in point["lag"]})
        for name in names:
            out["lag"][name] = [point["lag"].get(name) for point in points]
        return out


EXTENSION = "modelbus.dashboard.sampler"
