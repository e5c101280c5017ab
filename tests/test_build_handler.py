"""The build handler on SQLite and MySQL: lineage, failures, promotion, replay."""
from __future__ import annotations

import json

import numpy as np
import pytest
from sqlalchemy import select, update

from modelbus.builders import TrainingData, get_builder
from modelbus.db import registry
from modelbus.db.lineage import LineageHasher, lineage_events
from modelbus.db.registry import ModelUpdate
from modelbus.db.schema import builds, events, linear_model, model_versions, promotions, training_log
from modelbus.handlers.log.build import BuildHandler, auto_promote_id
from modelbus.handlers.follow.replay import replay_handler
from tests.registry_support import class_rows, linear_rows, run_builds, send_command, send_rows


def table(engine, t, order) -> list[dict]:
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(select(t).order_by(order))]


def expected_lineage(store, dataset: str, before: int):
    hasher = LineageHasher()
    for row in store.read(after=0, until=before - 1, limit=10**6, type="training", dataset=dataset):
        hasher.update(row.position, row.payload)
    return hasher.result()


def test_each_kind_builds_from_exactly_the_events_before_its_command(store):
    first = send_rows(store, class_rows(60, seed=1))
    send_rows(store, linear_rows(20, seed=9, features=2), dataset="other")  # another dataset: never used
    commands = {kind: send_command(store, f"build_{kind}") for kind in ("mlp", "dtr", "slr", "linear")}
    later = send_rows(store, class_rows(30, seed=2))
    run_builds(store)

    versions = {mv.model: mv for mv in registry.list_versions(store.engine)}
    assert set(versions) == {"mlp", "dtr", "slr", "linear"}
    for kind, position in commands.items():
        mv = versions[kind]
        assert (mv.dataset, mv.version, mv.build_position, mv.status) == ("default", 1, position, "ok")
        assert (mv.first_position, mv.last_position, mv.n_events) == (first[0], first[-1], 60)
        assert mv.lineage_digest == expected_lineage(store, "default", position).digest
        assert [e["position"] for e in lineage_events(store.engine, "default", position)] == first
        assert mv.artifact is None  # listings leave the bytes out
        full = registry.get_version(store.engine, kind, "default", 1)
        model = get_builder(kind).load(full.artifact)
        assert model.predict(np.zeros((2, 3))).shape == (2,)
        # The artifact is the one a direct fit on the same rows gives, bit for bit.
        data = TrainingData.from_rows(class_rows(60, seed=1), first)
        assert get_builder(kind).fit(data).model.to_bytes() == full.artifact
    assert later[0] > max(commands.values())

    # The seed's tables: a training_log row per build, a linear_model row for slr.
    log_rows = {r["model_type"]: r for r in table(store.engine, training_log, training_log.c.id)}
    assert set(log_rows) == {"mlp", "dtr", "slr", "linear"}
    mlp = versions["mlp"]
    assert log_rows["mlp"]["uuid"] == mlp.uuid
    assert log_rows["mlp"]["model_accuracy"] == mlp.metrics["accuracy"] == mlp.main_metric
    assert log_rows["mlp"]["train_eval_split"] == 0.65
    assert log_rows["mlp"]["execution_time"] == round(mlp.metrics["execution_time"] * 1000)
    assert json.loads(log_rows["mlp"]["training_output"])["accuracy"] == mlp.metrics["accuracy"]
    (lm,) = table(store.engine, linear_model, linear_model.c.id)
    slr = versions["slr"]
    assert (lm["uuid"], lm["slope"], lm["intercept"], lm["rsq"]) == (
        slr.uuid, slr.metrics["slope"], slr.metrics["intercept"], slr.metrics["train_r2"])
    assert log_rows["slr"]["model_accuracy"] == slr.metrics["r2"]


def test_failed_builds_are_recorded_and_leave_production_serving(store):
    send_rows(store, class_rows(40, seed=3))
    send_command(store, "build_mlp")
    run_builds(store)
    assert registry.aliases(store.engine) == {("mlp", "default"): 1}
    generation = registry.alias_generation(store.engine)

    single_class = np.column_stack([np.arange(24.0).reshape(8, 3), np.full(8, 7.0)])
    send_rows(store, single_class, dataset="one")
    send_rows(store, single_class[:3], dataset="three")
    cases = [
        send_command(store, "build_mlp", dataset="empty"),
        send_command(store, "build_mlp", dataset="one"),  # a single class
        send_command(store, "build_linear", dataset="three"),  # too few rows
        send_command(store, "build_mlp", params={"epochs": 0}),
        send_command(store, "build_mlp", params={"hidden": "wide"}),
        send_command(store, "build_slr", params={"learning": 1}),
    ]
    run_builds(store)
    attempts = {b["position"]: b for b in registry.builds(store.engine)}
    reasons = [attempts[p]["reason"] for p in cases]
    assert all(attempts[p]["status"] == "failed" and attempts[p]["version"] is None for p in cases)
    assert "no training events" in reasons[0]
    assert "1 distinct label" in reasons[1]
    assert "linear needs at least" in reasons[2]
    assert "params.epochs" in reasons[3] and "params.hidden" in reasons[4] and "unknown key 'learning'" in reasons[5]
    assert attempts[cases[3]]["params"] == {"epochs": 0}
    # Nothing served changed and the handler is at the head of the log, not stuck.
    assert [(mv.model, mv.version) for mv in registry.list_versions(store.engine)] == [("mlp", 1)]
    assert registry.aliases(store.engine) == {("mlp", "default"): 1}
    assert registry.alias_generation(store.engine) == generation
    assert registry.production(store.engine, "mlp", "default").version == 1


def test_a_builder_bug_is_a_failed_build_not_a_stuck_handler(store, monkeypatch):
    import modelbus.builders.linear

    def broken_fit(data, params=None, stop=None):
        raise TypeError("unsupported operand")

    send_rows(store, linear_rows(30, seed=2))
    bad = send_command(store, "build_linear")
    monkeypatch.setattr(modelbus.builders.linear.BUILDER, "fit", broken_fit)
    run_builds(store)
    monkeypatch.undo()
    good = send_command(store, "build_linear")
    run_builds(store)
    attempts = {b["position"]: b for b in registry.builds(store.engine)}
    assert attempts[bad]["status"] == "failed"
    assert attempts[bad]["reason"] == "internal error: TypeError: unsupported operand"
    assert attempts[good]["status"] == "ok"


def test_a_worse_version_does_not_promote_an_equal_one_does(store):
    updates: list[ModelUpdate] = []
    handler = BuildHandler(store.engine, notify=updates.append, min_test_rows=1)
    send_rows(store, linear_rows(60, seed=4, noise=0.01))
    v1 = send_command(store, "build_linear")
    run_builds(store, handler)
    # Much noisier rows make the next fit worse on its holdout.
    send_rows(store, linear_rows(60, seed=5, noise=20.0))
    send_command(store, "build_linear")
    run_builds(store, handler)
    send_command(store, "build_linear")  # no new data: the same metric, which is not worse than v2
    send_command(store, "build_linear")
    run_builds(store, handler)

    mvs = {mv.version: mv for mv in registry.list_versions(store.engine)}
    assert mvs[2].main_metric < mvs[1].main_metric
    assert mvs[3].main_metric == mvs[4].main_metric == mvs[2].main_metric
    assert registry.aliases(store.engine) == {("linear", "default"): 1}
    # Every version is put up for promotion by a system promote event; only v1 moved production.
    promotes = store.read(limit=1000, name="promote")
    assert [(r.event_id, r.source) for r in promotes] == [
        (auto_promote_id("linear", "default", v), "system") for v in (1, 2, 3, 4)]
    assert json.loads(promotes[0].payload) == {"type": "command", "payload": "promote", "model": "linear",
                                               "dataset": "default", "version": 1,
                                               "id": auto_promote_id("linear", "default", 1)}
    assert updates == [ModelUpdate("linear", "default", 1, mvs[1].uuid, promotes[0].position)]
    assert promotes[0].position > v1
    assert registry.alias_generation(store.engine) == promotes[0].position
    history = sorted(registry.promotion_history(store.engine), key=lambda p: p["version"])
    assert [(p["version"], p["status"], p["previous_version"]) for p in history] == [
        (1, "moved", None), (2, "kept", 1), (3, "kept", 1), (4, "kept", 1)]
    # Each newcomer and production were scored on the newcomer's own test rows.
    for kept in history[1:]:
        assert kept["candidate_score"] < kept["production_score"]
        assert f"on the same {kept['test_rows']} test rows" in kept["reason"]


def test_equal_metric_promotes(store):
    send_rows(store, linear_rows(40, seed=6))
    send_command(store, "build_linear")
    run_builds(store)
    send_command(store, "build_linear")
    run_builds(store)
    assert registry.aliases(store.engine) == {("linear", "default"): 2}
    assert [p["status"] for p in registry.promotion_history(store.engine)] == ["moved", "moved"]


def test_late_automatic_promotions_never_move_production_to_a_worse_version(store):
    """Builds that run before earlier builds' promote events are applied still end on the better model."""
    send_rows(store, linear_rows(50, seed=7, noise=1.0))
    seeds = [11, 12, 13, 14]
    for seed in seeds:
        send_command(store, "build_linear", params={"seed": seed})
    run_builds(store)
    metrics = {mv.version: mv.main_metric for mv in registry.list_versions(store.engine)}
    assert len(set(metrics.values())) == len(seeds)
    # Every build saw no production yet, so each appended a promote event; applying them in order
    # moves production only to a version not worse than the one serving.
    expected = None
    for version in sorted(metrics):
        if expected is None or metrics[version] >= metrics[expected]:
            expected = version
    assert registry.aliases(store.engine) == {("linear", "default"): expected}
    statuses = [p["status"] for p in sorted(registry.promotion_history(store.engine), key=lambda p: p["position"])]
    assert len(statuses) == 4 and statuses[0] == "moved"
    assert max(metrics.values()) == metrics[expected]


def test_explicit_promote_moves_the_alias_and_an_unknown_version_is_recorded(store):
    updates: list[ModelUpdate] = []
    handler = BuildHandler(store.engine, notify=updates.append, min_test_rows=1)
    send_rows(store, linear_rows(40, seed=8))
    send_command(store, "build_slr")
    send_command(store, "build_slr", params={"seed": 3})
    run_builds(store, handler)
    versions = {mv.version: mv for mv in registry.list_versions(store.engine)}
    assert len(versions) == 2
    current = registry.aliases(store.engine)[("slr", "default")]
    other = 1 if current == 2 else 2
    updates.clear()

    moved = send_command(store, "promote", model="slr", version=other)
    missing = send_command(store, "promote", model="slr", version=9)
    wrong_kind = send_command(store, "promote", model="mlp", version=1)
    run_builds(store, handler)
    assert registry.aliases(store.engine) == {("slr", "default"): other}
    assert registry.production(store.engine, "slr", "default").uuid == versions[other].uuid
    assert updates == [ModelUpdate("slr", "default", other, versions[other].uuid, moved)]
    history = {p["position"]: p for p in registry.promotion_history(store.engine)}
    assert (history[moved]["status"], history[moved]["previous_version"], history[moved]["automatic"]) == (
        "moved", current, False)
    assert history[missing]["status"] == "failed"
    assert history[missing]["reason"] == "slr version 9 of dataset 'default' does not exist"
    assert history[wrong_kind]["status"] == "failed"

    # Promoting the version already serving changes nothing and announces nothing.
    again = send_command(store, "promote", model="slr", version=other)
    run_builds(store, handler)
    assert registry.promotion_history(store.engine, limit=1)[0]["position"] == again
    assert registry.promotion_history(store.engine, limit=1)[0]["status"] == "kept"
    assert len(updates) == 1


def snapshot(engine) -> dict[str, list[dict]]:
    """The registry's rows without the wall-clock figures that differ on every build."""
    def versions():
        rows = table(engine, model_versions, model_versions.c.build_position)
        for row in rows:
            metrics = json.loads(row["metrics"])
            metrics.pop("execution_time")
            row["metrics"] = metrics
        return rows

    def timeless(t, order, *drop):
        return [{k: v for k, v in row.items() if k not in drop} for row in table(engine, t, order)]

    return {
        "versions": versions(),
        "builds": timeless(builds, builds.c.position, "started_at", "finished_at", "load_seconds", "fit_seconds"),
        "aliases": [((m, d), v) for (m, d), v in sorted(registry.aliases(engine).items())],
        "promotions": timeless(promotions, promotions.c.position),
        "training_log": timeless(training_log, training_log.c.id, "execution_time", "training_output"),
        "linear_model": timeless(linear_model, linear_model.c.id, "logoutput"),
    }


def test_replay_reproduces_identical_registry_rows(store):
    send_rows(store, class_rows(50, seed=10))
    send_command(store, "build_mlp", params={"epochs": 30})
    send_command(store, "build_slr")
    send_rows(store, class_rows(20, seed=11))
    send_command(store, "build_linear")
    send_command(store, "build_mlp", params={"epochs": 60, "hidden": [8]})
    send_command(store, "build_mlp", dataset="nothing")
    run_builds(store)
    send_command(store, "promote", model="mlp", version=1)
    run_builds(store)
    before = snapshot(store.engine)
    head = store.head()
    assert len(before["versions"]) == 4 and len(before["builds"]) == 5

    handler = BuildHandler(store.engine, min_test_rows=1)
    replay_handler(store, handler, progress=False)
    run_builds(store, handler)
    assert store.head() == head  # the auto-promote events were found, not appended again
    assert snapshot(store.engine) == before


def test_an_event_altered_in_the_database_fails_its_build_not_the_handler(store):
    positions = send_rows(store, class_rows(30, seed=12))
    with store.engine.begin() as conn:
        conn.execute(update(events).where(events.c.position == positions[3]).values(payload="{not json"))
    send_command(store, "build_linear")
    run_builds(store)
    (attempt,) = registry.builds(store.engine)
    assert attempt["status"] == "failed"
    assert f"event {positions[3]} is not a valid training record" in attempt["reason"]


def test_model_update_json_round_trip():
    update_ = ModelUpdate("mlp", "default", 3, "u-1", 42)
    assert update_.to_json() == b'{"dataset":"default","model":"mlp","position":42,"uuid":"u-1","version":3}'
    assert ModelUpdate.from_json(update_.to_json()) == update_
    assert update_.key == "mlp:default"
    with pytest.raises(ValueError):
        ModelUpdate.from_json('{"model":"mlp"}')
