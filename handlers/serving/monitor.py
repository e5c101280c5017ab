"""The after-deployment loop: pending feedback joined, live-metric and drift rules checked, old predictions purged."""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Sequence

from modelbus.db import feedback, predictions, registry
from modelbus.db.events import Schemas, utcnow
from modelbus.handlers.log.feedback import FeedbackConfig, join_pending
from modelbus.handlers.serving.alerting import Announce, Firing, announce_all, store_firings
from modelbus.handlers.serving.live import recent_drift
from modelbus.messages.alerts import DRIFT, LIVE, AlertRule

log = logging.getLogger(__name__)

_METRIC = {"live_accuracy": "accuracy", "live_mae": "mae", "live_rmse": "rmse"}


@dataclass(frozen=True)
class MonitorConfig:
    """How often the loop runs and how long recorded predictions are kept."""

    interval: float = 2.0
    retention: timedelta = timedelta(days=30)
    purge_every: float = 3600.0


def live_firing(engine: Any, rule: AlertRule, version: int) -> Firing | None:
    """The firing of a live-metric rule on a version's last `window` joined feedbacks, if it fires."""
    stats = feedback.live_stats(engine, rule.model, rule.dataset, version, rule.window)
    last = stats.get("last") or {}
    value = last.get(_METRIC[rule.on])
    if last.get("n", 0) < rule.window or value is None or not rule.crosses(value):
        return None
    # One firing per window of new feedback: the subject names which window this is.
    window = stats["feedback_count"] // rule.window
    return Firing(rule, f"{rule.model}/{rule.dataset}/v{version}/feedback/{window}", version, value)


def drift_firing(engine: Any, rule: AlertRule, mv: Any) -> Firing | None:
    """The firing of a drift rule on a version's last `window` recorded inputs, if it fires."""
    recorded = predictions.count(engine, mv.model, mv.dataset, mv.version)
    if recorded < rule.window:
        return None
    scores = recent_drift(engine, mv, rule.window)
    if not scores:
        return None
    if rule.feature is not None:
        value = scores.get(rule.feature)
    else:
        value = max(scores.values())
    if value is None or not rule.crosses(value):
        return None
    window = recorded // rule.window
    return Firing(rule, f"{mv.model}/{mv.dataset}/v{mv.version}/predictions/{window}", mv.version, value)


class Monitor:
    """Runs the after-deployment checks every `interval` seconds in one thread."""

    def __init__(self, engine: Any, config: MonitorConfig, feedback_config: FeedbackConfig, schemas: Schemas,
                 rules: Sequence[AlertRule] = (), announce: Announce | None = None):
        self.engine = engine
        self.config = config
        self.feedback_config = feedback_config
        self.schemas = schemas
        self.rules = [r for r in rules if r.on in LIVE or r.on == DRIFT]
        self.announce = announce
        self._purged_at = 0.0

    def check(self) -> list[dict[str, Any]]:
        """One round: settle pending feedback, check the rules; the alerts that fired."""
        join_pending(self.engine, self.feedback_config, self.schemas)
        firings = []
        production = registry.aliases(self.engine) if self.rules else {}
        for rule in self.rules:
            version = production.get((rule.model, rule.dataset))
            if version is None:
                continue
            if rule.on == DRIFT:
                mv = next((v for v in registry.list_versions(self.engine, rule.model, rule.dataset)
                           if v.version == version), None)
                firing = drift_firing(self.engine, rule, mv) if mv is not None else None
            else:
                firing = live_firing(self.engine, rule, version)
            if firing is not None:
                firings.append(firing)
        new: list[dict[str, Any]] = []
        if firings:
            with self.engine.begin() as conn:
                new = store_firings(conn, firings)
            announce_all(self.announce, new)
        if time.monotonic() - self._purged_at >= self.config.purge_every:
            self._purged_at = time.monotonic()
            purged = predictions.purge(self.engine, utcnow() - self.config.retention)
            if purged:
                log.info("purged %d predictions older than %s", purged, self.config.retention)
        return new

    def run(self, stop: threading.Event) -> None:
        """check() every interval until stopped; a failing round is logged and retried."""
        while not stop.is_set():
            try:
                self.check()
            except Exception as exc:
                log.warning("the after-deployment check failed (%s: %s); retrying", type(exc).__name__, exc)
            stop.wait(self.config.interval)
