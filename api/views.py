"""Registry versions and dead letters as the API shows them."""
from __future__ import annotations

from typing import Any

from modelbus.commands.report import raw_view


def iso(value: Any) -> Any:
    """A datetime as ISO 8601 text; anything else as it is."""
    return value.isoformat() if hasattr(value, "isoformat") else value


def promotion_json(row: dict[str, Any] | None) -> dict[str, Any] | None:
    """What a version's automatic promotion decided, as the API shows it (None before it is decided)."""
    if row is None:
        return None
    return {"status": row["status"], "reason": row["reason"], "candidate_score": row.get("candidate_score"),
            "production_version": row["previous_version"], "production_score": row.get("production_score"),
            "test_rows": row.get("test_rows")}


def version_json(mv: Any, production: int | None, promotion: dict[str, Any] | None = None,
                 live: dict[str, Any] | None = None) -> dict[str, Any]:
    """A registry version as the API shows it (no artifact), with its promotion's decision and live metrics."""
    return {
        "version": mv.version,
        "uuid": mv.uuid,
        "status": mv.status,
        "production": production == mv.version,
        "main_metric": mv.main_metric,
        "params": mv.params,
        "metrics": mv.metrics,
        "sha256": getattr(mv, "sha256", None),
        "lineage": {
            "first_position": getattr(mv, "first_position", None),
            "last_position": getattr(mv, "last_position", None),
            "n_events": getattr(mv, "n_events", None),
            "digest": getattr(mv, "lineage_digest", None),
            "build_position": getattr(mv, "build_position", None),
        },
        "versions": getattr(mv, "versions", None),
        "created_at": iso(mv.created_at),
        "promotion": promotion_json(promotion),
        "live": live,
        "input_schema": (mv.metrics or {}).get("input_schema"),
        "label_values": (mv.metrics or {}).get("label_values"),
    }


def dead_letter_json(row: dict[str, Any]) -> dict[str, Any]:
    """A dead letter as the API shows it: the raw message as text, or base64 when it is not UTF-8."""
    source: dict[str, Any] = {"kind": row["source"]}
    if row.get("source_topic"):
        source.update(topic=row["source_topic"], partition=row["source_partition"], offset=row["source_offset"])
    return {
        "id": row["id"],
        "code": row["code"],
        "reason": row["reason"],
        "source": source,
        **raw_view(bytes(row["raw"])),
        "received_at": iso(row["received_at"]),
    }
