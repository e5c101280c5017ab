"""A version's life after deployment: live metrics from joined feedback and drift of its recent inputs."""
from __future__ import annotations

from typing import Any

import numpy as np

from modelbus.builders.drift import drift
from modelbus.db import feedback, predictions

# PSI over deciles is biased upwards on small samples (about bins/n with no drift at all:
# 0.12 on 50 rows of the demo's own distribution, 0.03 on 200): below this, drift is not shown.
MIN_DRIFT_ROWS = 100


def recent_drift(engine: Any, mv: Any, last: int) -> dict[str, float] | None:
    """PSI per feature of the version's last `last` recorded inputs against its training rows."""
    if not getattr(mv, "profile", None):
        return None
    rows = predictions.recent_features(engine, mv.model, mv.dataset, mv.version, last)
    rows = [r for r in rows if isinstance(r, list)]
    if len(rows) < MIN_DRIFT_ROWS:
        return None
    try:
        X = np.asarray(rows, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    return drift(mv.profile, X)


def live_view(engine: Any, mv: Any, last: int) -> dict[str, Any]:
    """The `live` object of a version: feedback count, accuracy or MAE/RMSE (life and last N), drift."""
    view = feedback.live_stats(engine, mv.model, mv.dataset, mv.version, last)
    view["drift"] = recent_drift(engine, mv, last)
    return view
