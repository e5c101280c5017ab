"""Ground truth joined with recorded predictions; joined pairs become training events of the log.

A feedback event is joined with the prediction recorded under its id when the handler reaches
it; one whose prediction is not recorded yet (recording is asynchronous, and a client may send
the truth first) waits as pending and is joined by join_pending(), or becomes unmatched once
the join window has passed. The window is measured between the prediction's answer time and
the feedback's receive time, both stored, so a replay decides every join the same way.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Sequence

from modelbus.db import feedback as rows
from modelbus.db import predictions
from modelbus.db.contracts import Transaction
from modelbus.db.events import DUPLICATE, EventRow, Incoming, Schemas, Source, append_batch, utcnow
from modelbus.handlers.log.base import Handler
from modelbus.messages.datasets import DEFAULT_LABEL
from modelbus.messages.jsonutil import canonical_json
from modelbus.messages.parse import parse_event_obj
from modelbus.messages.types import ANY_DATASET, Feedback

log = logging.getLogger(__name__)

FEEDBACK_SOURCE = "feedback"


@dataclass(frozen=True)
class FeedbackConfig:
    """How feedback joins: the window between a prediction and its truth, and whether pairs become training."""

    join_window: timedelta = timedelta(days=7)
    to_training: bool = True


def training_id(prediction_id: str) -> str:
    """The event id of the training event made from a prediction's feedback (made once per prediction)."""
    return f"feedback:{prediction_id}"[:128]


def feedback_of(row: EventRow) -> Feedback:
    """The feedback stored in a log row."""
    event = parse_event_obj(json.loads(row.payload), system=True)
    if not isinstance(event, Feedback):
        raise ValueError(f"event {row.position} is a {event.type}, not a feedback")
    return event


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def judge(label: Any, prediction: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
    """Why a label cannot be the truth of a prediction (or None), and the joined row's correct/error."""
    result = prediction["result"]
    classifier = prediction["probabilities"] is not None
    if isinstance(result, str) != isinstance(label, str):
        want = "a category (a string)" if isinstance(result, str) else "a number"
        return f"label {label!r} is not {want} like the prediction's result", {}
    if classifier:
        same = label == result if isinstance(label, str) else float(label) == float(result)
        return None, {"correct": same}
    if result is None or not _is_number(label):
        return "the prediction has no finite result to compare with", {}
    return None, {"error": float(result) - float(label)}


def training_body(prediction: dict[str, Any], label: Any, label_name: str = DEFAULT_LABEL) -> dict[str, Any]:
    """The training event a joined pair becomes: the prediction's input, then the true label."""
    features = prediction["features"]
    payload = {**features, label_name: label} if isinstance(features, dict) else [*features, label]
    return {"type": "training", "dataset": prediction["dataset"], "payload": payload,
            "id": training_id(prediction["id"])}


class Joiner:
    """Decides what becomes of feedback rows, in log order, within one transaction."""

    def __init__(self, conn: Transaction, config: FeedbackConfig, schemas: Schemas):
        self.conn = conn
        self.config = config
        self.schemas = schemas
        self._joined: set[str] = set()

    def load(self, prediction_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The recorded predictions of these ids; remembers which were joined already."""
        self._joined |= rows.joined_ids(self.conn, prediction_ids)
        return predictions.by_ids(self.conn, prediction_ids)

    def outcome(self, pid: str, dataset: str, label: Any, received_at: datetime,
                prediction: dict[str, Any] | None, now: datetime) -> dict[str, Any]:
        """The status and join columns of one feedback; appends its training event when it joins."""
        if prediction is None:
            if now - received_at > self.config.join_window:
                return {"status": rows.UNMATCHED, "reason": "no prediction was recorded under this id within the "
                                                           "join window"}
            return {"status": rows.PENDING, "reason": "no prediction recorded under this id yet"}
        base = {"model": prediction["model"], "version": prediction["version"], "dataset": prediction["dataset"]}
        if abs(prediction["created_at"] - received_at) > self.config.join_window:
            return {**base, "status": rows.UNMATCHED,
                    "reason": f"the prediction was answered at {prediction['created_at']:%Y-%m-%d %H:%M:%S}, "
                              "outside the join window"}
        if dataset != ANY_DATASET and dataset != prediction["dataset"]:
            return {**base, "dataset": dataset, "status": rows.INVALID,
                    "reason": f"the prediction is of dataset '{prediction['dataset']}', not '{dataset}'"}
        if pid in self._joined:
            return {**base, "status": rows.DUPLICATE, "reason": "this prediction already has its feedback"}
        reason, judged = judge(label, prediction)
        if reason is not None:
            return {**base, "status": rows.INVALID, "reason": reason}
        self._joined.add(pid)
        if self.config.to_training:
            self._append_training(prediction, label)
        return {**base, **judged, "status": rows.JOINED, "reason": None, "joined_at": max(received_at,
                                                                                           prediction["created_at"])}

    def _append_training(self, prediction: dict[str, Any], label: Any) -> None:
        typed = self.schemas.typed.get(prediction["dataset"])
        body = training_body(prediction, label, typed.label[0] if typed is not None else DEFAULT_LABEL)
        try:
            event = parse_event_obj(body, system=True)
        except Exception as exc:
            log.warning("feedback for %s cannot become a training event: %s", prediction["id"], exc)
            return
        item = Incoming(raw=canonical_json(body).encode(), source=Source(FEEDBACK_SOURCE), event=event,
                        event_id=body["id"])
        (outcome,) = append_batch(self.conn, [item], self.schemas)
        if outcome.status not in ("accepted", DUPLICATE):
            log.warning("training event %s from feedback was refused: %s", body["id"], outcome.error)


class FeedbackJoin(Handler):
    """Joins feedback events with recorded predictions (the feedback table)."""

    name = "feedback"
    event_type = "feedback"
    batch_size = 1000

    def __init__(self, config: FeedbackConfig = FeedbackConfig(), schemas: Schemas | None = None):
        self.config = config
        self.schemas = schemas or Schemas()

    def apply(self, conn: Transaction, events: Sequence[EventRow], prepared: Any) -> None:
        """One feedback row per event: joined, pending, unmatched, duplicate or invalid."""
        parsed = [(row, feedback_of(row)) for row in events]
        joiner = Joiner(conn, self.config, self.schemas)
        found = joiner.load([fb.prediction_id for _, fb in parsed])
        now = utcnow()
        out = []
        for row, fb in parsed:
            values = joiner.outcome(fb.prediction_id, fb.dataset, fb.label, row.received_at,
                                    found.get(fb.prediction_id), now)
            out.append({"position": row.position, "prediction_id": fb.prediction_id, "dataset": fb.dataset,
                        "label": canonical_json(fb.label), "received_at": row.received_at, **values})
        rows.insert(conn, out)

    def reset(self, conn: Transaction) -> None:
        """Empty the projection (the training events made from feedback stay in the log: replay finds them there)."""
        rows.reset(conn)


def join_pending(engine: Any, config: FeedbackConfig, schemas: Schemas, limit: int = 1000) -> int:
    """Join pending feedback whose prediction is recorded now, or mark it unmatched past the window; how many settled."""
    with engine.begin() as conn:
        waiting = rows.pending(conn, limit)
        if not waiting:
            return 0
        joiner = Joiner(conn, config, schemas)
        found = joiner.load([w["prediction_id"] for w in waiting])
        now = utcnow()
        settled = 0
        for w in waiting:
            values = joiner.outcome(w["prediction_id"], w["dataset"], w["label"], w["received_at"],
                                    found.get(w["prediction_id"]), now)
            if values["status"] != rows.PENDING and rows.settle(conn, w["position"], **values):
                settled += 1
        return settled
