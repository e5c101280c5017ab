"""The train/test split: a pure function of the events' log positions and the seed."""
from __future__ import annotations

import hashlib
from typing import Mapping

import numpy as np

from modelbus.builders.base import BuildError, TrainingData, require_finite, require_split_sizes


def train_size(n_rows: int, train_fraction: float) -> int:
    """How many of n_rows go to the train side."""
    return int(round(n_rows * train_fraction))


def rank_keys(keys: np.ndarray, seed: int) -> np.ndarray:
    """A keyed 64-bit hash of each key; the seed is the hash key, so each seed orders rows differently."""
    seed_bytes = int(seed).to_bytes(8, "little", signed=False)
    digests = [
        hashlib.blake2b(int(k).to_bytes(8, "little", signed=True), digest_size=8, key=seed_bytes).digest()
        for k in np.asarray(keys, dtype=np.int64).tolist()
    ]
    return np.frombuffer(b"".join(digests), dtype="<u8").copy() if digests else np.zeros(0, dtype=np.uint64)


def train_test_indices(keys: np.ndarray, train_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Row indices of the train and test sides, each sorted ascending; BuildError if a side is empty."""
    keys = np.asarray(keys, dtype=np.int64)
    n_rows = keys.size
    n_train = train_size(n_rows, train_fraction)
    if n_train < 1 or n_train >= n_rows:
        raise BuildError(
            f"split {train_fraction:g} of {n_rows} rows gives {n_train} train and {n_rows - n_train} test rows; "
            "both sides need at least one row"
        )
    # The key breaks hash ties, so the order never depends on where a row sits in the input.
    order = np.lexsort((keys, rank_keys(keys, seed)))
    return np.sort(order[:n_train]), np.sort(order[n_train:])


def holdout(kind: str, data: TrainingData, params: Mapping, min_train: int, min_test: int) -> tuple[TrainingData, TrainingData]:
    """The train and test rows of a build; BuildError on non-finite data or a side too small for `kind`."""
    require_finite(data)
    n_train = train_size(data.n_rows, params["split"])
    require_split_sizes(kind, data.n_rows, n_train, data.n_rows - n_train, min_train, min_test, params["split"])
    train_idx, test_idx = train_test_indices(data.keys, params["split"], params["seed"])
    return data.take(train_idx), data.take(test_idx)
