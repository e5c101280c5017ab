"""verify: a version rebuilt from its lineage is identical, and tampering with the log is caught."""
from __future__ import annotations

import json

import pytest
from sqlalchemy import delete, update

from modelbus.db import registry
from modelbus.db.schema import events
from modelbus.handlers.log.verify import metric_differences, verify_version
from tests.registry_support import class_rows, run_builds, send_command, send_rows


@pytest.fixture
def built(store):
    """One version of each kind built from 40 training events (more arrive after the commands)."""
    positions = send_rows(store, class_rows(40, seed=30))
    for kind in ("mlp", "slr", "linear"):
        send_command(store, f"build_{kind}", params={"epochs": 40} if kind == "mlp" else None)
    send_rows(store, class_rows(10, seed=31))
    run_builds(store)
    return store, positions


@pytest.mark.parametrize("kind", ["mlp", "slr", "linear"])
def test_verify_passes_for_each_kind(built, kind):
    store, _ = built
    recorded = registry.get_version(store.engine, kind, "default", 1)
    seen: list[int] = []
    check = verify_version(store.engine, recorded, seen.append)
    assert check.ok, check.differences
    assert sum(seen) == 40
    assert check.rebuilt.sha256 == recorded.sha256
    assert check.notes == []


def test_verify_fails_loudly_when_a_lineage_event_is_altered(built):
    store, positions = built
    row = store.read(after=positions[7] - 1, limit=1)[0]
    altered = json.loads(row.payload)
    values = altered["payload"].split(",")
    values[0] = repr(float(values[0]) + 0.5)
    altered["payload"] = ",".join(values)
    with store.engine.begin() as conn:
        conn.execute(update(events).where(events.c.position == row.position)
                     .values(payload=json.dumps(altered, sort_keys=True, separators=(",", ":"))))
    for kind in ("mlp", "slr", "linear"):
        check = verify_version(store.engine, registry.get_version(store.engine, kind, "default", 1))
        assert not check.ok
        assert any(d.startswith("lineage digest: recorded") for d in check.differences)
        assert any(d.startswith("artifact sha256: recorded") for d in check.differences), check.differences


def test_verify_fails_when_a_lineage_event_is_deleted(built):
    store, positions = built
    with store.engine.begin() as conn:
        conn.execute(delete(events).where(events.c.position == positions[0]))
    check = verify_version(store.engine, registry.get_version(store.engine, "linear", "default", 1))
    assert not check.ok
    assert "lineage event count: recorded 40, recomputed 39" in check.differences
    assert f"lineage first position: recorded {positions[0]}, recomputed {positions[1]}" in check.differences


def test_metric_differences_ignore_execution_time_and_name_what_differs():
    recorded = {"accuracy": 0.5, "execution_time": 1.0, "class_counts": {"test": [1, 2]}}
    assert metric_differences(recorded, {**recorded, "execution_time": 9.0}) == []
    assert metric_differences(recorded, {**recorded, "accuracy": 0.25, "class_counts": {"test": [2, 1]}}) == [
        "metric accuracy: recorded 0.5, rebuilt 0.25",
        "metric class_counts.test: recorded [1, 2], rebuilt [2, 1]",
    ]
