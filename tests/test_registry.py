"""The registry schema and its read API (the contract serving builds on), on SQLite and MySQL."""
from __future__ import annotations

import numpy as np
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, insert, select

from modelbus.builders import get_builder
from modelbus.db import registry
from modelbus.db.schema import linear_model, metadata, training_log
from tests.registry_support import class_rows, linear_rows, run_builds, send_command, send_rows


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
