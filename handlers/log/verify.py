"""Verify: rebuild a registered version from its lineage in the log and compare it bit for bit."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Callable

from modelbus.db import registry
from modelbus.db.registry import ModelVersion
from modelbus.builders.encoding import recorded_schema
from modelbus.handlers.log.build import BuildOutcome, run_build

# Wall-clock figures differ on every run; they are reported, never compared.
UNCOMPARED_METRICS = ("execution_time",)


@dataclass
class Verification:
    """The recorded version, its rebuild, and every difference found between them."""

    recorded: ModelVersion
    rebuilt: BuildOutcome
    differences: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when the artifact hash, the metrics and the lineage are identical."""
        return not self.differences


def _shown(value: Any) -> str:
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= 80 else text[:77] + "..."


def metric_differences(recorded: dict, rebuilt: dict, prefix: str = "") -> list[str]:
    """One line per metric that is missing, extra or not exactly equal (execution time excluded)."""
    lines = []
    for key in sorted(set(recorded) | set(rebuilt)):
        if not prefix and key in UNCOMPARED_METRICS:
            continue
        name = f"{prefix}{key}"
        if key not in rebuilt:
            lines.append(f"metric {name}: recorded {_shown(recorded[key])}, missing in the rebuild")
        elif key not in recorded:
            lines.append(f"metric {name}: not recorded, rebuild has {_shown(rebuilt[key])}")
        elif isinstance(recorded[key], dict) and isinstance(rebuilt[key], dict):
            lines.extend(metric_differences(recorded[key], rebuilt[key], f"{name}."))
        elif recorded[key] != rebuilt[key]:
            lines.append(f"metric {name}: recorded {_shown(recorded[key])}, rebuilt {_shown(rebuilt[key])}")
    return lines


def verify_version(engine: Any, recorded: ModelVersion,
                   progress: Callable[[int], None] | None = None) -> Verification:
    """Rebuild `recorded` from the training events before its build command and compare."""
    # A typed dataset is rebuilt with the fields recorded with the version, whatever the settings say now.
    rebuilt = run_build(engine, recorded.model, recorded.dataset, recorded.build_position, recorded.params, progress,
                        schema=recorded_schema(recorded.metrics))
    check = Verification(recorded, rebuilt)
    diff = check.differences
    lineage = rebuilt.lineage
    if lineage is not None:
        pairs = [
            ("lineage digest", recorded.lineage_digest, lineage.digest),
            ("lineage event count", recorded.n_events, lineage.n_events),
            ("lineage first position", recorded.first_position, lineage.first_position),
            ("lineage last position", recorded.last_position, lineage.last_position),
        ]
        diff.extend(f"{name}: recorded {a}, recomputed {b}" for name, a, b in pairs if a != b)
    if not rebuilt.ok:
        diff.append(f"the rebuild failed: {rebuilt.reason}")
        return check
    if rebuilt.sha256 != recorded.sha256:
        diff.append(f"artifact sha256: recorded {recorded.sha256}, rebuilt {rebuilt.sha256}")
    diff.extend(metric_differences(recorded.metrics, rebuilt.metrics))
    assert rebuilt.result is not None
    if rebuilt.result.params != recorded.params:
        diff.append(f"params: recorded {_shown(recorded.params)}, rebuild used {_shown(rebuilt.result.params)}")
    # Different library versions or CPU kernels explain a mismatch; they are not one by themselves.
    for key in sorted(set(recorded.versions) | set(rebuilt.result.versions)):
        was, now = recorded.versions.get(key), rebuilt.result.versions.get(key)
        if was != now:
            check.notes.append(f"{key} was {was} when built, is {now} now")
    return check


def find_version(engine: Any, model: str, dataset: str, version: int) -> ModelVersion | None:
    """The recorded version, with its artifact."""
    return registry.get_version(engine, model, dataset, version)
