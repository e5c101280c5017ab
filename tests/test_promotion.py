"""Fair promotion: a newcomer replaces production only when it scores at least as well on the same rows
(its own test rows), and never on fewer test rows than the minimum. On SQLite and MariaDB."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import r2_score

from modelbus.builders import get_builder
from modelbus.db import registry
from modelbus.db.lineage import load_training
from modelbus.handlers.follow.replay import replay_handler
from modelbus.handlers.log.build import BuildHandler, holdout_rows
from serving_support import darcey
from tests.registry_support import run_builds, send_command, send_rows

MIN_ROWS = 30


@pytest.fixture
def handler(store) -> BuildHandler:
    return BuildHandler(store.engine, min_test_rows=MIN_ROWS)


def decisions(store) -> dict[int, dict]:
    """version -> its automatic promotion's record."""
    return {v: row for (_, _, v), row in registry.automatic_promotions(store.engine, "linear", "default").items()}


def darcey_rows() -> np.ndarray:
    data = darcey()
    return np.column_stack([data.X, data.y])


def test_a_version_tested_on_a_handful_of_rows_never_replaces_production(store, handler):
    """The reported case: split 0.99 leaves 5 test rows, on which any score is luck."""
    send_rows(store, darcey_rows())
    send_command(store, "build_linear")
    run_builds(store, handler)
    send_command(store, "build_linear", params={"split": 0.99})
    run_builds(store, handler)

    assert registry.aliases(store.engine) == {("linear", "default"): 1}
    first, lucky = decisions(store)[1], decisions(store)[2]
    assert first["status"] == "moved" and first["test_rows"] == 166
    assert "no production version yet" in first["reason"]
    assert lucky["status"] == "kept" and lucky["test_rows"] == 5
    assert lucky["reason"] == ("version 2 was tested on 5 rows; automatic promotion needs at least 30 "
                               "(setting promotion_min_test_rows)")
    # Its own score on those rows is recorded all the same.
    assert lucky["candidate_score"] == registry.get_version(store.engine, "linear", "default", 2).main_metric


def test_production_is_scored_again_on_the_newcomers_test_rows(store, handler):
    send_rows(store, darcey_rows())
    send_command(store, "build_linear")
    run_builds(store, handler)
    # Another seed: another split, so the two versions were tested on different rows.
    send_command(store, "build_linear", params={"seed": 7})
    run_builds(store, handler)

    v1, v2 = (registry.get_version(store.engine, "linear", "default", v) for v in (1, 2))
    data, _ = load_training(store.engine, "default", v2.build_position)
    rows = holdout_rows(data, v2.params)
    builder = get_builder("linear")
    expected_production = r2_score(rows.y, builder.load(v1.artifact).predict(rows.X))
    assert expected_production != v1.main_metric, "the test needs versions measured on different rows"

    decided = decisions(store)[2]
    assert decided["test_rows"] == rows.n_rows
    assert decided["candidate_score"] == pytest.approx(v2.main_metric, abs=1e-12)
    assert decided["production_score"] == pytest.approx(expected_production, abs=1e-12)
    assert decided["previous_version"] == 1
    moved = decided["candidate_score"] >= decided["production_score"]
    assert decided["status"] == ("moved" if moved else "kept")
    assert registry.aliases(store.engine) == {("linear", "default"): 2 if moved else 1}


def test_too_few_test_rows_keep_even_the_first_version_out(store, handler):
    send_rows(store, darcey_rows()[:60])  # 60 rows: 21 test rows at the default split
    send_command(store, "build_linear")
    run_builds(store, handler)
    assert registry.aliases(store.engine) == {}
    assert decisions(store)[1]["status"] == "kept" and decisions(store)[1]["test_rows"] == 21
    # Production is then the user's call: an explicit promote moves it.
    send_command(store, "promote", model="linear", version=1)
    run_builds(store, handler)
    assert registry.aliases(store.engine) == {("linear", "default"): 1}


def test_builds_queued_back_to_back_are_each_compared_with_production_as_it_is_when_decided(store, handler):
    """Two builds whose promotions come after both: the second is judged against the first if it moved."""
    send_rows(store, darcey_rows())
    send_command(store, "build_linear")
    send_command(store, "build_linear", params={"seed": 7})
    send_command(store, "build_linear", params={"seed": 11})
    run_builds(store, handler)
    history = sorted(registry.promotion_history(store.engine), key=lambda p: p["position"])
    production = None
    for row in history:
        assert row["previous_version"] == production, "each decision saw the production of its own moment"
        if row["status"] == "moved":
            production = row["version"]
    assert registry.aliases(store.engine) == {("linear", "default"): production}


def test_replay_decides_the_same(store, handler):
    send_rows(store, darcey_rows())
    for params in ({}, {"seed": 7}, {"split": 0.99}, {"seed": 11}):
        send_command(store, "build_linear", params=params)
    run_builds(store, handler)
    before = registry.promotion_history(store.engine)
    aliases = registry.aliases(store.engine)
    replay_handler(store, BuildHandler(store.engine, min_test_rows=MIN_ROWS), progress=False)
    assert registry.promotion_history(store.engine) == before
    assert registry.aliases(store.engine) == aliases
