"""Input drift: each feature's distribution over a version's training rows, and the population
stability index (PSI) of recent inputs against it."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

# Deciles: the usual PSI binning; fewer edges when a feature has fewer distinct values.
BINS = 10
# A profile covers at most this many features (a wide dataset's profile stays small).
MAX_FEATURES = 200
# An empty bin's share, so the logarithm stays finite (the customary floor).
FLOOR = 1e-4


def reference_profile(X: np.ndarray, names: Sequence[str] | None = None) -> dict[str, Any]:
    """Per feature, the inner bin edges (training quantiles) and each bin's share of the rows."""
    X = np.asarray(X, dtype=np.float64)
    features = []
    for j in range(min(X.shape[1], MAX_FEATURES)):
        column = X[:, j][np.isfinite(X[:, j])]
        if column.size == 0:
            features.append({"edges": [], "shares": [1.0]})
            continue
        edges = np.unique(np.quantile(column, np.linspace(0, 1, BINS + 1)[1:-1]))
        shares = _shares(column, edges)
        features.append({"edges": edges.tolist(), "shares": shares.tolist()})
    profile: dict[str, Any] = {"rows": int(X.shape[0]), "features": features}
    if names:
        profile["names"] = list(names)[: len(features)]
    return profile


def _shares(column: np.ndarray, edges: np.ndarray) -> np.ndarray:
    # Bin i holds edges[i-1] < x <= edges[i]: searchsorted "left" puts x == edge in the lower bin.
    counts = np.bincount(np.searchsorted(edges, column, side="left"), minlength=edges.size + 1)
    return counts / max(column.size, 1)


def psi(expected: np.ndarray, actual: np.ndarray) -> float:
    """The population stability index of two distributions over the same bins."""
    e = np.clip(np.asarray(expected, dtype=np.float64), FLOOR, None)
    a = np.clip(np.asarray(actual, dtype=np.float64), FLOOR, None)
    return float(np.sum((a - e) * np.log(a / e)))


def drift(profile: dict[str, Any] | None, X: np.ndarray) -> dict[str, float] | None:
    """PSI per feature of the rows X against a version's profile (None without a profile or rows)."""
    if not profile or len(X) == 0:
        return None
    X = np.asarray(X, dtype=np.float64)
    names = profile.get("names") or [f"x{j}" for j in range(len(profile["features"]))]
    out: dict[str, float] = {}
    for j, feature in enumerate(profile["features"]):
        if j >= X.shape[1]:
            break
        column = X[:, j][np.isfinite(X[:, j])]
        if column.size == 0:
            continue
        edges = np.asarray(feature["edges"], dtype=np.float64)
        out[names[j]] = round(psi(np.asarray(feature["shares"]), _shares(column, edges)), 6)
    return out
