"""How `modelbus build --wait` learns what came of its build command.

Kafka mode: the builds handler publishes every build's outcome on build_outcome_topic,
keyed by the command's event id; the client listens there from before it posts, and needs
no database. Embedded default: the outcome is in the store; when no process runs the
builds handler, the client runs it itself rather than wait for nobody.
"""
from __future__ import annotations

import json
import logging
import time
from typing import Any

from modelbus.db import positions, registry
from modelbus.db.events import utcnow

log = logging.getLogger(__name__)

BUILDS_HANDLER = "builds"


class OutcomeListener:
    """Reads build_outcome_topic from its current end, so an outcome published after start() is seen."""

    def __init__(self, kafka):
        self.kafka = kafka
        self.consumer = None

    def start(self) -> None:
        """Listen from the topic's end (creating it if no worker has yet)."""
        from modelbus.commands.kafka import consumer_at_end

        self.consumer = consumer_at_end(self.kafka, self.kafka.topics.build_outcomes)

    def wait(self, event_id: str, timeout: float) -> dict | None:
        """The outcome of the build command `event_id`, or None after `timeout` seconds."""
        assert self.consumer is not None
        key = event_id.encode()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for records in self.consumer.poll(timeout_ms=500).values():
                for record in records:
                    if record.key == key:
                        return json.loads(record.value)
        return None

    def close(self) -> None:
        """Release the connection."""
        if self.consumer is not None:
            self.consumer.close(autocommit=False)


def report_from_store(store, event_id: str) -> dict | None:
    """The outcome of a build command as recorded in the registry, shaped like build_outcome_topic's.

    None while it is pending: for a successful build, until its automatic promotion is decided.
    """
    engine = store.engine
    build = registry.get_build(engine, event_id=event_id)
    if build is None:
        return None
    report: dict[str, Any] = {key: build.get(key) for key in ("position", "model", "dataset", "status", "reason",
                                                                "version", "n_events")}
    report.update(id=event_id, uuid=None, metrics=None, promoted=False, promotion=None)
    if build["status"] == "ok":
        key = (build["model"], build["dataset"], build["version"])
        decided = registry.automatic_promotions(engine, build["model"], build["dataset"]).get(key)
        if decided is None:
            return None
        mv = registry.get_version(engine, *key)
        if mv is not None:
            report.update(uuid=mv.uuid, metrics=mv.metrics, n_events=mv.n_events)
        report["promoted"] = decided["status"] == "moved"
        report["promotion"] = {k: decided[k] for k in ("status", "reason", "candidate_score", "production_score",
                                                        "test_rows")}
        report["promotion"]["production_version"] = decided["previous_version"]
    return report


def builds_handler_running(engine) -> bool:
    """True when some process holds a live lease on the builds handler."""
    now = utcnow()
    return any(state.name == BUILDS_HANDLER and state.owner is not None and state.lease_expires is not None
               and state.lease_expires > now for state in positions.states(engine))


def build_here(app) -> None:
    """Run the builds handler in this process until the log is applied (its promotions included)."""
    from modelbus.handlers.follow.follower import Follower

    handler = next(h for h in app.handlers() if h.name == BUILDS_HANDLER)
    follower = Follower(app.store, handler)
    try:
        # A build appends its promotion after the head seen at the start: go round again.
        while follower.position() < app.store.head():
            follower.catch_up()
    finally:
        follower.release()


def wait_in_store(store, event_id: str, timeout: float) -> dict | None:
    """Poll the registry until the build command's outcome is recorded, or None after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        report = report_from_store(store, event_id)
        if report is not None or time.monotonic() > deadline:
            return report
        time.sleep(0.5)
