"""The handler-failures contract (db.contracts.HandlerFailures): what any backend must pass."""
from __future__ import annotations

import pytest

from modelbus.db.errors import ConstraintViolation, Refused
from modelbus.db.failures import Failure, describe
from tests.test_event_store import msg, training


def rows(store, n: int):
    store.append([msg(training(f"{i},1,2,3")) for i in range(n)])
    return store.read()


def test_failures_are_recorded_with_their_transaction_and_read_newest_first(store):
    events = rows(store, 4)
    failures = store.failures
    with store.transaction() as tx:
        failures.record(tx, "a", events[0], Failure("ValueError", None, "first"))
        failures.record(tx, "a", events[2], Failure("DataError", "1264", "third"))
        failures.record(tx, "b", events[1], Failure("JSONDecodeError", None, "second"))
    with pytest.raises(RuntimeError):
        with store.transaction() as tx:
            failures.record(tx, "a", events[3], Failure("ValueError", None, "rolled back"))
            raise RuntimeError("the position could not move")
    assert failures.count() == 3
    recent = failures.recent()
    assert [(f["handler"], f["position"]) for f in recent] == [("a", 3), ("b", 2), ("a", 1)]
    third = recent[0]
    assert (third["event_id"], third["error"], third["code"], third["message"]) == (events[2].event_id, "DataError",
                                                                                    "1264", "third")
    assert third["failed_at"] is not None
    assert [f["position"] for f in failures.recent(limit=1)] == [3]
    assert [f["position"] for f in failures.recent(handler="a")] == [3, 1]


def test_a_failure_is_kept_once_per_handler_and_position(store):
    (event,) = rows(store, 1)
    with store.transaction() as tx:
        store.failures.record(tx, "a", event, Failure("ValueError", None, "once"))
    with pytest.raises(ConstraintViolation):
        with store.transaction() as tx:
            store.failures.record(tx, "a", event, Failure("ValueError", None, "twice"))
    assert store.failures.count() == 1


def test_reset_forgets_one_handlers_failures(store):
    events = rows(store, 2)
    with store.transaction() as tx:
        store.failures.record(tx, "a", events[0], Failure("ValueError", None, "x"))
        store.failures.record(tx, "b", events[1], Failure("ValueError", None, "y"))
    with store.transaction() as tx:
        store.failures.reset(tx, "a")
    assert [f["handler"] for f in store.failures.recent()] == ["b"]


def test_describe_names_a_database_error_by_its_driver_class_and_code():
    refused = Refused("Out of range value for column 'version' at row 1", error="DataError", code="1264")
    assert describe(refused) == Failure("DataError", "1264", "Out of range value for column 'version' at row 1")
    assert str(describe(refused)) == "DataError 1264: Out of range value for column 'version' at row 1"
    assert describe(ValueError("bad")) == Failure("ValueError", None, "bad")
