"""What `modelbus status` reports: handler lag and failures, consumer lag, production versions, last builds."""
from __future__ import annotations

import logging
from typing import Any

from modelbus.db import failures, positions, registry
from modelbus.db.events import utcnow
from modelbus.settings import Settings

log = logging.getLogger(__name__)


def handler_status(store) -> list[dict[str, Any]]:
    """Each handler's position, its lag behind the log head and who holds its lease."""
    head = store.head()
    now = utcnow()
    rows = []
    for state in positions.states(store.engine):
        leased = state.owner is not None and state.lease_expires is not None and state.lease_expires > now
        rows.append(
            {
                "handler": state.name,
                "position": state.position,
                "lag": head - state.position,
                "owner": state.owner if leased else None,
                "updated_at": state.updated_at.isoformat(sep=" ", timespec="seconds"),
            }
        )
    return rows


def handler_failures(engine, last: int = 5) -> dict[str, Any]:
    """How many log events the handlers could not apply and moved past, and the latest few."""
    recent = [{**f, "failed_at": f["failed_at"].isoformat(sep=" ", timespec="seconds")}
              for f in failures.recent(engine, last)]
    return {"count": failures.count(engine), "recent": recent}


def consumer_lag(settings: Settings) -> list[dict[str, Any]]:
    """Committed offset and lag per partition for the ingest and predictor groups (Kafka mode)."""
    from modelbus.commands.kafka import group_lag

    rows = []
    for group, topic in ((settings.ingest_group, settings.topics.events),
                         (settings.predictor_group, settings.topics.prediction_requests)):
        found = group_lag(settings.kafka, group, topic)
        rows.extend(found or [{"group": group, "topic": topic, "partition": None, "committed": None, "end": None,
                               "lag": None}])
    return rows


def model_status(engine) -> list[dict[str, Any]]:
    """Production version and main metric per model and dataset, with the last build's outcome."""
    current = registry.aliases(engine)
    last_builds: dict[tuple[str, str], dict] = {}
    for build in registry.builds(engine, limit=1000):  # newest first
        last_builds.setdefault((build["model"], build["dataset"]), build)
    rows = []
    for key in sorted(set(current) | set(last_builds)):
        model, dataset = key
        version = current.get(key)
        mv = registry.get_version(engine, model, dataset, version) if version else None
        build = last_builds.get(key)
        rows.append(
            {
                "model": model,
                "dataset": dataset,
                "production": version,
                "main_metric": None if mv is None else mv.main_metric,
                "last_build": None
                if build is None
                else {k: build.get(k) for k in ("position", "status", "version", "reason")},
            }
        )
    return rows


def collect(app) -> dict[str, Any]:
    """The whole status report as JSON-ready data."""
    report: dict[str, Any] = {
        "mode": "kafka" if app.settings.kafka_mode else "embedded",
        "database": app.engine.url.render_as_string(hide_password=True),
        "log_head": app.store.head(),
        "dead_letters": app.store.dead_letter_count(),
        "handlers": handler_status(app.store),
        "handler_failures": handler_failures(app.engine),
        "models": model_status(app.engine),
    }
    if app.settings.kafka_mode:
        try:
            report["consumers"] = consumer_lag(app.settings)
        except Exception as exc:  # the broker being down is part of the status, not a crash
            report["consumers_error"] = f"{type(exc).__name__}: {exc}"
    return report
