"""The registry contract (db.contracts.Registry: the reads serving builds on, the writes of the build
handler's transaction), what any backend must pass; and the SQL registry's schema."""
from __future__ import annotations

from datetime import datetime

import numpy as np
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, insert, select

from modelbus.builders import get_builder
from modelbus.db import registry
from modelbus.db.errors import ConstraintViolation
from modelbus.db.registry import ModelVersion, version_uuid
from modelbus.db.schema import linear_model, metadata, training_log
from tests.registry_support import class_rows, linear_rows, run_builds, send_command, send_rows


def version(model: str, number: int, main: float, position: int, dataset: str = "default") -> ModelVersion:
    """A version as the build handler records it, with a made-up artifact."""
    return ModelVersion(
        model=model, dataset=dataset, version=number, uuid=version_uuid(model, dataset, number, position), status="ok",
        params={"epochs": 5, "hidden": [4]}, metrics={"accuracy": main, "slope": 1.5, "intercept": 0.5, "train_r2": 0.9},
        main_metric=main, sha256="ab" * 32, first_position=1, last_position=position - 1, n_events=position - 1,
        lineage_digest="cd" * 32, versions={"python": "3.11"}, created_at=datetime(2024, 5, 1, 12, 0, 0, 250000),
        build_position=position, artifact=b"model bytes \x00\xff" * 10,
    )


def build_row(position: int, model: str, number: int | None, dataset: str = "default", **extra) -> dict:
    when = datetime(2024, 5, 1, 12, 0, 0)
    return dict(position=position, event_id=f"build-{position}", model=model, dataset=dataset,
                status="ok" if number else "failed", reason=None if number else "no data", version=number,
                params={"epochs": 5}, n_events=10, requested_at=when, started_at=when, finished_at=when, **extra)


def test_the_registry_reads_what_the_build_handlers_transaction_wrote(store):
    reg = store.registry
    assert (reg.production("mlp", "default"), reg.get_version("mlp", "default", 1)) == (None, None)
    assert (reg.aliases(), reg.alias_generation(), reg.list_versions(), reg.builds()) == ({}, 0, [], [])
    assert (reg.get_build(position=11), reg.promotion_history()) == (None, [])

    first = version("mlp", 1, 0.75, 11)
    with store.transaction() as tx:
        assert reg.next_version(tx, "mlp", "default") == 1
        reg.insert_version(tx, first)
        reg.insert_seed_rows(tx, first)
        reg.insert_build(tx, **build_row(11, "mlp", 1))
        assert reg.current_production(tx, "mlp", "default") is None
        reg.move_alias(tx, "mlp", "default", 1, 12)
        reg.insert_promotion(tx, position=12, model="mlp", dataset="default", version=1, previous_version=None,
                             automatic=True, status="moved", reason=None, created_at=first.created_at)
        reg.insert_build(tx, **build_row(13, "slr", None, dataset="nowhere"))

    assert reg.get_version("mlp", "default", 1) == first
    assert reg.production("mlp", "default") == first
    (listed,) = reg.list_versions()
    assert listed.artifact is None and listed == ModelVersion(**{**first.__dict__, "artifact": None})
    assert reg.aliases() == {("mlp", "default"): 1} and reg.alias_generation() == 12
    assert [(b["position"], b["status"]) for b in reg.builds()] == [(13, "failed"), (11, "ok")]
    assert [b["model"] for b in reg.builds(model="mlp")] == ["mlp"] and len(reg.builds(limit=1)) == 1
    assert reg.get_build(event_id="build-11")["params"] == {"epochs": 5}
    assert reg.get_build(position=13)["reason"] == "no data"
    (moved,) = reg.promotion_history()
    assert (moved["version"], moved["status"], bool(moved["automatic"])) == (1, "moved", True)

    second = version("mlp", 2, 0.5, 20)
    with store.transaction() as tx:
        assert reg.next_version(tx, "mlp", "default") == 2
        reg.insert_version(tx, second)
        assert reg.version_main_metric(tx, "mlp", "default", 2) == (second.uuid, 0.5)
        assert reg.version_main_metric(tx, "mlp", "default", 3) is None
        assert reg.current_production(tx, "mlp", "default") == (1, 0.75)
        reg.move_alias(tx, "mlp", "default", 2, 21)
    assert reg.production("mlp", "default").version == 2 and reg.alias_generation() == 21
    assert [v.version for v in reg.list_versions(model="mlp", dataset="default")] == [1, 2]
    assert reg.list_versions(dataset="elsewhere") == []


def test_registry_writes_commit_with_their_transaction_or_not_at_all(store):
    reg = store.registry
    with pytest.raises(RuntimeError):
        with store.transaction() as tx:
            reg.insert_version(tx, version("linear", 1, 0.9, 5))
            reg.move_alias(tx, "linear", "default", 1, 5)
            raise RuntimeError("the position could not move")
    assert (reg.list_versions(), reg.aliases()) == ([], {})


def test_a_version_or_build_is_recorded_once(store):
    reg = store.registry
    with store.transaction() as tx:
        reg.insert_version(tx, version("linear", 1, 0.9, 5))
        reg.insert_build(tx, **build_row(5, "linear", 1))
    for write in (lambda tx: reg.insert_version(tx, version("linear", 1, 0.9, 6)),
                  lambda tx: reg.insert_build(tx, **build_row(5, "linear", 1))):
        with pytest.raises(ConstraintViolation):
            with store.transaction() as tx:
                write(tx)
    assert len(reg.list_versions()) == 1 and len(reg.builds()) == 1


def test_reset_empties_the_registry(store):
    reg = store.registry
    with store.transaction() as tx:
        reg.insert_version(tx, version("slr", 1, 0.9, 5))
        reg.insert_build(tx, **build_row(5, "slr", 1))
        reg.move_alias(tx, "slr", "default", 1, 6)
    with store.transaction() as tx:
        reg.reset(tx)
    assert (reg.list_versions(), reg.builds(), reg.aliases(), reg.alias_generation()) == ([], [], {}, 0)


def test_registry_schema_matches_migrations_including_server_defaults(engine):
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True, "compare_server_default": True})
        assert compare_metadata(context, metadata) == []


def test_seed_tables_keep_the_seeds_columns_and_defaults(engine):
    columns = {t: {c["name"]: c for c in inspect(engine).get_columns(t)} for t in ("training_log", "linear_model")}
    assert list(columns["training_log"]) == ["id", "uuid", "training_date", "train_eval_split", "execution_time",
                                             "model_accuracy", "training_output", "model_type"]
    assert list(columns["linear_model"]) == ["id", "uuid", "createdate", "slope", "intercept", "rsq", "logoutput"]
    # A row written the way the seed's code wrote it, relying on the defaults.
    with engine.begin() as conn:
        conn.execute(insert(training_log).values(training_output="x"))
        conn.execute(insert(linear_model).values(slope=1.5))
        row = conn.execute(select(training_log)).one()
        lm = conn.execute(select(linear_model)).one()
    assert (row.uuid, row.train_eval_split, row.execution_time, row.model_accuracy, row.model_type) == (
        "", 0.65, -1, 0.0, "")
    assert row.id >= 1 and lm.id >= 1 and lm.uuid == "" and lm.slope == 1.5


def test_reads_serving_relies_on(store):
    engine = store.engine
    assert registry.production(engine, "mlp", "default") is None
    assert registry.aliases(engine) == {} and registry.alias_generation(engine) == 0
    send_rows(store, class_rows(40, seed=20))
    send_rows(store, linear_rows(30, seed=21), dataset="sales")
    send_command(store, "build_mlp", params={"epochs": 50})
    send_command(store, "build_linear", dataset="sales")
    run_builds(store)

    assert registry.aliases(engine) == {("mlp", "default"): 1, ("linear", "sales"): 1}
    generation = registry.alias_generation(engine)
    assert generation > 0
    mv = registry.production(engine, "mlp", "default")
    assert (mv.model, mv.dataset, mv.version, mv.status) == ("mlp", "default", 1, "ok")
    assert mv.main_metric == mv.metrics["accuracy"] and 0 <= mv.main_metric <= 1
    assert mv.params["epochs"] == 50 and mv.params["hidden"] == [32, 32]  # effective params, defaults filled
    assert set(mv.versions) >= {"python", "torch", "numpy"}
    assert len(mv.sha256) == 64 and len(mv.lineage_digest) == 64 and mv.n_events == 40
    model = get_builder(mv.model).load(mv.artifact)
    proba = model.predict_proba(np.zeros((3, 3)))
    assert proba.shape == (3, len(model.classes)) and np.allclose(proba.sum(axis=1), 1)
    assert registry.production(engine, "linear", "sales").metrics["r2"] > 0.9
    assert registry.production(engine, "slr", "default") is None
    assert registry.get_version(engine, "mlp", "default", 2) is None

    listed = registry.list_versions(engine)
    assert [(v.model, v.dataset, v.version) for v in listed] == [("linear", "sales", 1), ("mlp", "default", 1)]
    assert all(v.artifact is None for v in listed)
    assert [v.model for v in registry.list_versions(engine, dataset="sales")] == ["linear"]
    assert registry.list_versions(engine, model="slr") == []

    send_command(store, "build_mlp", params={"epochs": 50})
    send_command(store, "build_slr", dataset="nowhere")
    run_builds(store)
    # An equal build promotes; the generation moves with it.
    assert registry.aliases(engine)[("mlp", "default")] == 2
    assert registry.alias_generation(engine) > generation
    attempts = registry.builds(engine)
    assert [(b["model"], b["status"]) for b in attempts] == [("slr", "failed"), ("mlp", "ok"), ("linear", "ok"),
                                                             ("mlp", "ok")]
    assert registry.builds(engine, model="slr")[0]["reason"].startswith("dataset 'nowhere' has no training events")
    assert len(registry.builds(engine, limit=2)) == 2
    assert registry.get_build(engine, event_id=attempts[1]["event_id"])["version"] == 2
    assert registry.get_build(engine, event_id="nope") is None
