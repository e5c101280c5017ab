"""Storing alert firings (once per rule and subject), the rebuilds they ask for, and announcing them."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from modelbus.db import alerts as alert_rows
from modelbus.db.contracts import Transaction
from modelbus.db.events import DUPLICATE, Incoming, Schemas, Source, append_batch, utcnow
from modelbus.messages.alerts import AlertRule
from modelbus.messages.jsonutil import canonical_json
from modelbus.messages.parse import parse_event_obj

log = logging.getLogger(__name__)

ALERT_SOURCE = "alert"
Announce = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class Firing:
    """A rule that fired on a subject (a prediction id, or a version's window)."""

    rule: AlertRule
    subject: str
    version: int | None
    value: float | None
    prediction_id: str | None = None

    def row(self) -> dict[str, Any]:
        """The alerts table row."""
        return {"rule": self.rule.name, "subject": self.subject[:191], "kind": self.rule.on, "model": self.rule.model,
                "dataset": self.rule.dataset, "version": self.version, "prediction_id": self.prediction_id,
                "value": self.value, "detail": self.rule.describe(), "action": self.rule.action,
                "created_at": utcnow()}


def rebuild_id(rule: AlertRule, subject: str) -> str:
    """The idempotency key of the build command a rebuild rule posts for one subject."""
    return f"alert:{rule.name}:{subject}"[:128]


def store_firings(conn: Transaction, firings: Sequence[Firing]) -> list[dict[str, Any]]:
    """Record firings not seen before and post their rebuilds through the log; the new alert rows."""
    by_key = {(f.rule.name, f.subject[:191]): f for f in firings}
    new = alert_rows.fire(conn, [f.row() for f in by_key.values()])
    for row in new:
        firing = by_key[(row["rule"], row["subject"])]
        if firing.rule.action == "rebuild":
            _post_rebuild(conn, firing)
    return new


def _post_rebuild(conn: Transaction, firing: Firing) -> None:
    event_id = rebuild_id(firing.rule, firing.subject)
    body = {"type": "command", "payload": f"build_{firing.rule.model}", "dataset": firing.rule.dataset, "id": event_id}
    command = parse_event_obj(body, system=True)
    item = Incoming(raw=canonical_json(body).encode(), source=Source(ALERT_SOURCE), event=command, event_id=event_id)
    (outcome,) = append_batch(conn, [item], Schemas())
    if outcome.status != DUPLICATE:
        log.info("alert %s on %s: posted %s at position %s", firing.rule.name, firing.subject, event_id,
                 outcome.position)


def alert_json(row: dict[str, Any]) -> dict[str, Any]:
    """An alert as alert_topic, the API and the CLI show it."""
    out = {k: v for k, v in row.items() if v is not None}
    if "created_at" in out:
        out["created_at"] = out["created_at"].isoformat()
    return out


def announce_all(announce: Announce | None, rows: Sequence[dict[str, Any]]) -> None:
    """Publish new alerts (after their commit); a failing publish is logged, the alert stays stored."""
    if announce is None:
        return
    for row in rows:
        try:
            announce(alert_json(row))
        except Exception:
            log.exception("publishing alert %s on %s failed", row.get("rule"), row.get("subject"))
