"""The train/test split is a function of the events' keys and the seed only."""
from __future__ import annotations

import numpy as np
import pytest

from modelbus.builders import BuildError, train_test_indices


def keys_with_gaps(n: int) -> np.ndarray:
    """Log positions as a real log has them: increasing, with gaps left by other datasets."""
    return np.cumsum(np.random.default_rng(1).integers(1, 5, size=n)).astype(np.int64)


def test_same_input_gives_same_split():
    keys = keys_with_gaps(500)
    first = train_test_indices(keys, 0.65, 6)
    second = train_test_indices(keys.copy(), 0.65, 6)
    assert np.array_equal(first[0], second[0]) and np.array_equal(first[1], second[1])


@pytest.mark.parametrize("n, fraction", [(473, 0.65), (10, 0.5), (3, 0.5), (1000, 0.9), (7, 0.2)])
def test_sizes_partition_and_order(n, fraction):
    train, test = train_test_indices(keys_with_gaps(n), fraction, 6)
    assert train.size == round(n * fraction)
    assert train.size + test.size == n
    assert np.array_equal(np.sort(np.concatenate([train, test])), np.arange(n))
    assert np.all(np.diff(train) > 0) and np.all(np.diff(test) > 0)


def test_split_follows_the_keys_not_the_row_order():
    keys = keys_with_gaps(300)
    train, _ = train_test_indices(keys, 0.65, 6)
    perm = np.random.default_rng(7).permutation(keys.size)
    train_perm, _ = train_test_indices(keys[perm], 0.65, 6)
    assert set(keys[train].tolist()) == set(keys[perm][train_perm].tolist())


def test_different_seed_gives_different_split():
    keys = keys_with_gaps(300)
    assert not np.array_equal(train_test_indices(keys, 0.65, 6)[0], train_test_indices(keys, 0.65, 7)[0])


def test_split_is_not_the_first_rows():
    # The log order carries time; a holdout of the latest rows only would be a different experiment.
    train, _ = train_test_indices(np.arange(1000), 0.65, 6)
    assert not np.array_equal(train, np.arange(650))
    # Both halves of the log land on the train side in about the train fraction.
    assert 0.55 < np.count_nonzero(train < 500) / 500 < 0.75


@pytest.mark.parametrize("n, fraction", [(1, 0.65), (2, 0.9), (0, 0.5), (3, 0.1)])
def test_an_empty_side_is_a_build_error(n, fraction):
    with pytest.raises(BuildError, match="both sides need at least one row"):
        train_test_indices(np.arange(n), fraction, 6)
