"""Numbers that break models fail the build with a reason, never a garbage production (the real build handler)."""
from __future__ import annotations

import numpy as np
import pytest

from modelbus.builders import get_builder, train_test_indices
from modelbus.db import registry
from modelbus.messages.errors import Rejected
from modelbus.messages.parse import parse_event
from tests.registry_support import class_rows, linear_rows, run_builds, send_command, send_rows

N = 90
# The default params' split: 0.65 train, keyed by seed 6.
SPLIT, SEED = 0.65, 6


def sides(store, n: int = N) -> tuple[np.ndarray, np.ndarray]:
    """Row indices (0-based) of the train and test sides for the next n events appended to `store`."""
    keys = np.arange(store.head() + 1, store.head() + 1 + n)
    return train_test_indices(keys, SPLIT, SEED)


def with_value(rows: np.ndarray, index: int, column: int, value: float) -> np.ndarray:
    """rows with one value replaced."""
    changed = rows.copy()
    changed[index, column] = value
    return changed


def attempt(store, position: int) -> dict:
    """The builds row of the command at `position`."""
    return {b["position"]: b for b in registry.builds(store.engine)}[position]


@pytest.mark.parametrize("big", [1e300, 1.6e308, -1.6e308])
def test_a_huge_feature_in_a_train_row_is_scaled_and_the_models_are_good(store, big):
    train, _ = sides(store)
    rows = with_value(linear_rows(N, seed=4), train[3], 1, big)
    send_rows(store, rows)
    built = {kind: send_command(store, f"build_{kind}", params=params)
             for kind, params in (("linear", {}), ("mlp", {"epochs": 60}))}
    run_builds(store)

    assert all(attempt(store, p)["status"] == "ok" for p in built.values())
    linear = registry.production(store.engine, "linear", "default")
    # Before: lstsq took the column of 1e300 for rank 1 (R² -1.28, predictions ~1e-316).
    assert linear.metrics["rank"] == 4 and linear.metrics["r2"] > 0.5
    model = get_builder("linear").load(registry.get_version(store.engine, "linear", "default", 1).artifact)
    # The exact least-squares answer: the huge row is fitted by a tiny coefficient of its column,
    # so the other coefficients are those of the other train rows without that column.
    others = np.setdiff1d(train, [train[3]])
    design = np.column_stack([rows[others][:, [0, 2]], np.ones(others.size)])
    expected, *_ = np.linalg.lstsq(design, rows[others, 3], rcond=None)
    assert np.allclose(model.coefficients[[0, 2]], expected[:2], rtol=1e-6)
    assert model.intercept == pytest.approx(expected[2], rel=1e-6) and 0 < abs(model.coefficients[1]) < 1e-290

    mlp = registry.get_version(store.engine, "mlp", "default", 1)
    net = get_builder("mlp").load(mlp.artifact)
    # Before: the std overflowed to inf and the feature was silently zeroed; now it is finite.
    assert np.isfinite(net.std).all() and np.isfinite(net.mean).all() and net.std[1] > 1e250
    assert registry.production(store.engine, "mlp", "default").version == 1


def test_a_huge_value_where_it_cannot_be_computed_fails_the_build_with_a_reason(store):
    good = send_rows(store, linear_rows(N, seed=5))
    first = [send_command(store, f"build_{kind}") for kind in ("linear", "slr")]
    run_builds(store)
    assert [attempt(store, p)["status"] for p in first] == ["ok", "ok"]
    before = {kind: registry.production(store.engine, kind, "default").version for kind in ("linear", "slr")}

    # A new dataset state: the rows again plus N more, one with a huge test feature, one a huge label.
    _, test = sides(store)
    rows = with_value(linear_rows(N, seed=6), test[0], 0, 1e300)
    send_rows(store, rows, dataset="feature")
    train, _ = sides(store)
    send_rows(store, with_value(linear_rows(N, seed=7), train[0], 3, 1.6e308), dataset="label")
    cases = {
        ("linear", "feature"): send_command(store, "build_linear", dataset="feature"),
        ("slr", "feature"): send_command(store, "build_slr", dataset="feature"),
        ("linear", "label"): send_command(store, "build_linear", dataset="label"),
        ("slr", "label"): send_command(store, "build_slr", dataset="label"),
    }
    run_builds(store)
    for (kind, dataset), position in cases.items():
        row = attempt(store, position)
        assert row["status"] == "failed" and row["version"] is None, row
        assert row["reason"].startswith(f"{kind}: the metrics ") and "not finite numbers" in row["reason"], row
        assert "internal error" not in row["reason"]
        assert registry.production(store.engine, kind, dataset) is None
    assert {kind: registry.production(store.engine, kind, "default").version for kind in before} == before
    assert good  # the default dataset's rows were there all along


def test_a_huge_feature_in_an_mlp_test_row_fails_the_build_naming_it(store):
    _, test = sides(store)
    send_rows(store, with_value(class_rows(N, seed=8), test[2], 0, 1.6e308))
    position = send_command(store, "build_mlp", params={"epochs": 20})
    run_builds(store)
    row = attempt(store, position)
    assert row["status"] == "failed"
    # Before: "internal error: ValueError: Input contains NaN".
    assert row["reason"] == (f"mlp: the model's answers on 1 of its {len(test)} test rows are not finite numbers "
                             "(their features reach 1.6e+308); the model is not kept")
    assert registry.production(store.engine, "mlp", "default") is None


def test_the_parser_takes_every_finite_double_and_refuses_what_overflows():
    assert parse_event(b'{"type":"training","payload":"1.6e308,1,2,3"}').features[0] == 1.6e308
    for text in (b"1.8e308", b"1e400", b"-1e999"):
        with pytest.raises(Rejected) as caught:
            parse_event(b'{"type":"training","payload":"' + text + b',1,2,3"}')
        assert caught.value.code == "not_finite"


@pytest.mark.parametrize("kind, params", [("mlp", {"epochs": 20}), ("dtr", {"min_samples_leaf": 1})])
def test_a_class_whose_only_row_is_in_the_test_split_is_reported_untrained(store, kind, params):
    _, test = sides(store)
    send_rows(store, with_value(class_rows(N, seed=9), test[4], 3, 9.0))
    position = send_command(store, f"build_{kind}", params=params)
    run_builds(store)
    assert attempt(store, position)["status"] == "ok"
    mv = registry.get_version(store.engine, kind, "default", 1)
    assert 9.0 in mv.metrics["classes"]
    assert mv.metrics["untrained_classes"] == [9.0]
    index = mv.metrics["classes"].index(9.0)
    assert (mv.metrics["class_counts"]["train"][index], mv.metrics["class_counts"]["test"][index]) == (0, 1)
