"""Helpers shared by the registry, build handler, verify and CLI tests."""
from __future__ import annotations

import json
from typing import Any

import numpy as np

from modelbus.db import positions
from modelbus.db.events import EventStore, Source
from modelbus.handlers.log.build import BuildHandler
from modelbus.handlers.workers.ingest import incoming
from modelbus.handlers.follow.follower import Follower


def event(obj: dict[str, Any], source: str = "test"):
    """An Incoming for one event object."""
    return incoming(json.dumps(obj).encode(), Source(source), 64 * 1024)


def linear_rows(n: int, seed: int = 0, noise: float = 0.1, features: int = 3) -> np.ndarray:
    """Rows of `features` features and a label that is a noisy linear function of them."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, features))
    y = X @ np.arange(1.0, features + 1) + 0.5 + noise * rng.normal(size=n)
    return np.column_stack([X, y])


def class_rows(n: int, seed: int = 0, classes: int = 3) -> np.ndarray:
    """Rows of 3 features and an integer class label that depends on them (learnable)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    y = np.clip(np.floor((X[:, 0] + X[:, 1] + 3) / 6 * classes), 0, classes - 1)
    return np.column_stack([X, y])


def send_rows(store: EventStore, rows: np.ndarray, dataset: str = "default") -> list[int]:
    """Append training events; returns their positions."""
    items = [event({"type": "training", "dataset": dataset, "payload": ",".join(repr(float(v)) for v in row)})
             for row in rows]
    return [o.position for o in store.append(items)]


def send_command(store: EventStore, name: str, dataset: str = "default", **fields: Any) -> int:
    """Append one command event; returns its position."""
    (outcome,) = store.append([event({"type": "command", "payload": name, "dataset": dataset, **fields})])
    assert outcome.position is not None, outcome
    return outcome.position


# These tests build on small data sets: a version tested on a few rows may still become
# production here (tests/test_promotion.py covers the minimum).
FEW_TEST_ROWS = 1


def run_builds(store: EventStore, handler: BuildHandler | None = None, owner: str = "test-owner") -> BuildHandler:
    """Run the build handler until it has applied the whole log, including the promote events it appends."""
    handler = handler or BuildHandler(store.engine, min_test_rows=FEW_TEST_ROWS)
    follower = Follower(store, handler, owner)
    try:
        while follower.position() < store.head():
            follower.catch_up()
    finally:
        # As a stopping worker does, so a replay or another follower can take over at once.
        positions.release(store.engine, handler.name, owner)
    return handler
