"""Prometheus metrics of one API process, in a registry of its own (several apps can share a process)."""
from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from modelbus.commands.kafka import KafkaConfig
from modelbus.db.breaker import DatabaseUnavailable

log = logging.getLogger(__name__)

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
# Scrapes may come every second; the lag of a Kafka consumer group costs broker round trips.
KAFKA_LAG_TTL = 5.0


class StoreCollector:
    """Reads the log, handler positions, registry and (in Kafka mode) ingest lag at scrape time."""

    def __init__(self, store: Any, kafka_lag: Callable[[], int | None] | None = None, live_window: int = 500):
        self.store = store
        self.kafka_lag = kafka_lag
        self.live_window = live_window

    def collect(self):
        """Metric families computed now; a failing source is skipped, never a failed scrape."""
        from modelbus.db import positions

        try:
            head = self.store.head()
            yield GaugeMetricFamily("modelbus_log_head", "Position of the last event in the log.", value=head)
            lag = GaugeMetricFamily(
                "modelbus_handler_lag_events", "Events in the log not yet applied by a handler.", labels=["handler"]
            )
            for state in positions.states(self.store.engine):
                lag.add_metric([state.name], max(0, head - state.position))
            yield lag
            yield GaugeMetricFamily("modelbus_dead_letters", "Rejected messages stored.", value=self.store.dead_letter_count())
        except DatabaseUnavailable:
            pass  # the breaker logged the outage when it began
        except Exception:
            log.exception("metrics: reading the event store failed")
        try:
            yield from self._window_metrics()
        except DatabaseUnavailable:
            pass
        except Exception:
            log.exception("metrics: reading the window counters failed")
        try:
            yield from self._registry_metrics()
        except DatabaseUnavailable:
            pass
        except Exception:
            log.exception("metrics: reading the registry failed")
        try:
            yield from self._live_metrics()
        except DatabaseUnavailable:
            pass
        except Exception:
            log.exception("metrics: reading live metrics failed")
        if self.kafka_lag is not None:
            value = self.kafka_lag()
            if value is not None:
                yield GaugeMetricFamily(
                    "modelbus_ingest_lag_messages", "Messages on event_topic not yet committed by the ingest group.",
                    value=value,
                )

    def _window_metrics(self):
        from modelbus.db import windows

        family = CounterMetricFamily("modelbus_window_late_events",
                                     "Raw events that arrived for an already-closed window, by window.", labels=["window"])
        for window, late in sorted(windows.late_counts(self.store.engine).items()):
            family.add_metric([window], late)
        yield family

    def _registry_metrics(self):
        from modelbus.db import registry

        rows = registry.build_counts(self.store.engine)
        family = GaugeMetricFamily("modelbus_builds", "Build attempts recorded, by model and outcome.", labels=["model", "status"])
        for model, status, count in rows:
            family.add_metric([model, status], count)
        yield family


    def _live_metrics(self):
        from modelbus.db import alerts, feedback, registry
        from modelbus.handlers.serving.live import live_view

        engine = self.store.engine
        labels = ["model", "dataset", "version"]
        count = GaugeMetricFamily("modelbus_live_feedback", "Feedback joined with a version's predictions.", labels=labels)
        accuracy = GaugeMetricFamily("modelbus_live_accuracy", "Share of a classifier's joined answers that were right.",
                                     labels=labels)
        mae = GaugeMetricFamily("modelbus_live_mae", "Mean absolute error of a regression's joined answers.", labels=labels)
        rmse = GaugeMetricFamily("modelbus_live_rmse", "Root mean squared error of a regression's joined answers.",
                                 labels=labels)
        drift = GaugeMetricFamily("modelbus_drift_psi", "PSI of recent inputs against the training rows, per feature.",
                                  labels=[*labels, "feature"])
        production = registry.aliases(engine)
        wanted = set(feedback.versions_with_feedback(engine)) | {(m, d, v) for (m, d), v in production.items()}
        versions = {(mv.model, mv.dataset, mv.version): mv for mv in registry.list_versions(engine)}
        for key in sorted(wanted):
            mv = versions.get(key)
            if mv is None:
                continue
            view = live_view(engine, mv, self.live_window)
            names = [key[0], key[1], str(key[2])]
            count.add_metric(names, view["feedback_count"])
            for family, metric in ((accuracy, "accuracy"), (mae, "mae"), (rmse, "rmse")):
                if view.get(metric) is not None:
                    family.add_metric(names, view[metric])
            for feature, psi in (view.get("drift") or {}).items():
                drift.add_metric([*names, feature], psi)
        yield from (count, accuracy, mae, rmse, drift)
        statuses = GaugeMetricFamily("modelbus_feedback", "Feedback events by what became of them.", labels=["status"])
        for status, n in feedback.status_counts(engine).items():
            statuses.add_metric([status], n)
        yield statuses
        fired = GaugeMetricFamily("modelbus_alerts", "Alerts raised, by rule.", labels=["rule"])
        for rule, n in alerts.counts(engine).items():
            fired.add_metric([rule], n)
        yield fired


class KafkaIngestLag:
    """Consumer-group lag of the ingest workers on event_topic, cached for a few seconds."""

    def __init__(self, kafka: KafkaConfig, group: str):
        self.kafka = kafka
        self.group = group
        self._value: int | None = None
        self._at = 0.0
        self._lock = threading.Lock()

    def __call__(self) -> int | None:
        with self._lock:
            if time.monotonic() - self._at < KAFKA_LAG_TTL:
                return self._value
            self._at = time.monotonic()
            try:
                self._value = self._measure()
            except Exception as exc:
                log.warning("metrics: measuring the ingest lag failed: %s", exc)
                self._value = None
            return self._value

    def _measure(self) -> int:
        from modelbus.commands.kafka import group_lag

        return sum(row["lag"] for row in group_lag(self.kafka, self.group, self.kafka.topics.events))


class Metrics:
    """The counters and histograms the API updates, and the text it serves on /metrics."""

    def __init__(self, store: Any = None, kafka_lag: Callable[[], int | None] | None = None, live_window: int = 500):
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("modelbus_http_requests", "HTTP requests answered.", ["method", "route", "status"], registry=r)
        self.latency = Histogram(
            "modelbus_http_request_duration_seconds", "Time to answer an HTTP request.", ["method", "route"],
            buckets=LATENCY_BUCKETS, registry=r,
        )
        self.predictions = Counter(
            "modelbus_predictions", "Predictions answered, by model, dataset and outcome (ok or an error code).",
            ["model", "dataset", "outcome"], registry=r,
        )
        self.batch_size = Histogram("modelbus_prediction_batch_size", "Rows per forward-pass batch.",
                                    buckets=BATCH_BUCKETS, registry=r)
        self.swaps = Counter("modelbus_model_swaps", "Production models loaded or replaced in this process.", registry=r)
        self.events = Counter("modelbus_events_posted", "Events posted over HTTP, by outcome.", ["status"], registry=r)
        self.builds_requested = Counter("modelbus_builds_requested", "Build commands queued over HTTP.", ["model"], registry=r)
        self.unknown_categories = Counter(
            "modelbus_unknown_category", "Category values a model never saw in training, answered as unknown.",
            ["model", "dataset", "feature"], registry=r)
        self.serving = Gauge("modelbus_serving_version", "Production version this process serves.", ["model", "dataset"], registry=r)
        if store is not None:
            r.register(StoreCollector(store, kafka_lag, live_window))

    def watch_recorder(self, recorder: Any) -> None:
        """Expose a PredictionRecorder's counts (recorded, dropped, waiting)."""
        for name, doc, read in (
            ("modelbus_predictions_recorded", "Predictions this process wrote to the predictions table.",
             lambda: recorder.recorded),
            ("modelbus_predictions_unrecorded", "Predictions this process dropped unrecorded (a database refusing "
                                                "them, or a backlog past its limit).", lambda: recorder.dropped),
            ("modelbus_predictions_recording_backlog", "Answered predictions waiting to be written.",
             lambda: recorder.backlog),
        ):
            Gauge(name, doc, registry=self.registry).set_function(read)

    def count_answers(self, answers: list[dict], default_model: str = "") -> None:
        """Count predictions by outcome."""
        for answer in answers:
            error = answer.get("error")
            self.predictions.labels(
                answer.get("model", default_model) or default_model,
                answer.get("dataset", ""),
                error["code"] if error else "ok",
            ).inc()

    def count_unknown(self, model: str, dataset: str, feature: str, count: int) -> None:
        """Count category values a model never saw (predict_batch's on_unknown)."""
        self.unknown_categories.labels(model, dataset, feature).inc(count)

    def on_swap(self, old: Any, new: Any) -> None:
        """A production model was (re)loaded."""
        self.swaps.inc()
        if new is not None:
            self.serving.labels(new.model, new.dataset).set(new.version)
        elif old is not None:
            self.serving.remove(old.model, old.dataset)

    def render(self) -> bytes:
        """The exposition text."""
        return generate_latest(self.registry)
