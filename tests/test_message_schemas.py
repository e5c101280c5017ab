"""What modelbus writes matches the declared messages (messages/schemas.py): a key added to or
dropped from a writer without its declaration fails here, and schemathesis checks the HTTP answers."""
from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest
from pydantic import ValidationError

from modelbus.commands.report import error_message
from modelbus.db.events import EventRow, Source
from modelbus.db.lineage import Lineage
from modelbus.db.registry import ModelUpdate as ModelUpdateNotice
from modelbus.handlers.log.build import BuildOutcome as Outcome, build_report
from modelbus.messages.errors import Rejected
from modelbus.messages.schemas import BuildOutcome, DeadLetter, ModelUpdate

ROW = EventRow(position=7, event_id="b-1", type="command", name="build_mlp", dataset="default",
               payload='{"dataset":"default","payload":"build_mlp","type":"command"}', source="http",
               received_at=datetime(2026, 11, 23, tzinfo=timezone.utc))


@pytest.mark.parametrize("source", [Source("http"), Source("kafka", "event_topic", "t1", 0, 41)])
@pytest.mark.parametrize("raw", [b'{"type":"training","payload":"3,4,5"}', b"\xff\xfe", b"x" * 5000])
def test_error_topic_messages_are_dead_letters(source, raw):
    body = json.loads(error_message(raw, source, Rejected("not_json", "message is not JSON")))
    DeadLetter.model_validate(body)


def test_build_outcomes_are_declared():
    ok = Outcome(model="mlp", dataset="default", requested_params=None,
                 lineage=Lineage(first_position=1, last_position=6, n_events=6, digest="d"),
                 metrics_json='{"accuracy":0.7}')
    BuildOutcome.model_validate(build_report(ROW, ok, 3, "uuid-3", True))
    failed = Outcome(model="mlp", dataset="default", requested_params={"epochs": 0}, reason="params.epochs ...")
    report = BuildOutcome.model_validate(build_report(ROW, failed, None, None, False))
    assert (report.status, report.metrics) == ("failed", None)


def test_model_update_notices_are_declared():
    notice = ModelUpdateNotice("mlp", "default", 3, "uuid-3", 12)
    assert ModelUpdate.model_validate_json(notice.to_json()).version == 3


def test_a_key_the_declaration_does_not_know_is_caught():
    body = json.loads(error_message(b"x", Source("http"), Rejected("not_json", "no")))
    with pytest.raises(ValidationError):
        DeadLetter.model_validate({**body, "extra": 1})
