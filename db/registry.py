"""The model registry: versions with their artifacts and lineage, build attempts, production aliases.

Reads take an engine (serving, API, CLI); writes take the build handler's connection so they
commit together with its log position.
"""
from __future__ import annotations

import json
import uuid as uuidlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, Select, Table, delete, func, insert, select, update

from modelbus.db.schema import aliases as aliases_table
from modelbus.db.schema import builds as builds_table
from modelbus.db.schema import linear_model, model_versions, promotions, training_log
from modelbus.messages.jsonutil import canonical_json

PRODUCTION = "production"
# uuid5 namespace of model version uuids: a replay of the same log gives the same uuids.
UUID_NAMESPACE = uuidlib.uuid5(uuidlib.NAMESPACE_DNS, "modelbus.registry")
# MySQL TEXT holds 64 KiB; the seed's training_output and logoutput columns are TEXT.
SEED_TEXT_LIMIT = 60_000
# The seed's id columns are INT; a log position above this gets an auto-increment id instead.
INT_MAX = 2**31 - 1


@dataclass(frozen=True)
class ModelVersion:
    """One built model version as the registry keeps it."""

    model: str
    dataset: str
    version: int
    uuid: str
    status: str
    params: dict
    metrics: dict
    main_metric: float
    sha256: str
    first_position: int | None
    last_position: int | None
    n_events: int
    lineage_digest: str
    versions: dict
    created_at: datetime
    build_position: int
    artifact: bytes | None = None
    # Each feature's distribution over the training rows (builders.drift), or None.
    profile: dict | None = None


@dataclass(frozen=True)
class ModelUpdate:
    """A notice that an alias moved: serving processes reload (model, dataset)."""

    model: str
    dataset: str
    version: int
    uuid: str
    position: int

    @property
    def key(self) -> str:
        """The Kafka key of the notice: one partition order per model and dataset."""
        return f"{self.model}:{self.dataset}"

    def to_json(self) -> bytes:
        """The canonical JSON published on model_update_topic."""
        body = {"model": self.model, "dataset": self.dataset, "version": self.version, "uuid": self.uuid,
                "position": self.position}
        return canonical_json(body).encode()

    @classmethod
    def from_json(cls, raw: bytes | str) -> ModelUpdate:
        """A notice from its JSON; ValueError when fields are missing."""
        obj = json.loads(raw)
        try:
            return cls(str(obj["model"]), str(obj["dataset"]), int(obj["version"]), str(obj["uuid"]),
                       int(obj["position"]))
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not a model update: {exc!r}") from None


def version_uuid(model: str, dataset: str, version: int, position: int) -> str:
    """The uuid of a version: a function of what it is and where its build command sits in the log."""
    return str(uuidlib.uuid5(UUID_NAMESPACE, f"{model}:{dataset}:{version}:{position}"))


_LISTED = [c for c in model_versions.c if c.name != "artifact"]


def _version(row: Any, with_artifact: bool) -> ModelVersion:
    m = row._mapping
    return ModelVersion(
        model=m["model"],
        dataset=m["dataset"],
        version=m["version"],
        uuid=m["uuid"],
        status="ok",
        params=json.loads(m["params"]),
        metrics=json.loads(m["metrics"]),
        main_metric=m["main_metric"],
        sha256=m["sha256"],
        first_position=m["first_position"],
        last_position=m["last_position"],
        n_events=m["n_events"],
        lineage_digest=m["lineage_digest"],
        versions=json.loads(m["versions"]),
        created_at=m["created_at"],
        build_position=m["build_position"],
        artifact=bytes(m["artifact"]) if with_artifact else None,
        profile=json.loads(m["profile"]) if m["profile"] else None,
    )


# --- reads ------------------------------------------------------------------------------

def get_version(engine: Engine, model: str, dataset: str, version: int) -> ModelVersion | None:
    """One version with its artifact, or None."""
    query = select(model_versions).where(
        model_versions.c.model == model, model_versions.c.dataset == dataset, model_versions.c.version == version
    )
    with engine.connect() as conn:
        row = conn.execute(query).first()
    return _version(row, True) if row is not None else None


def _production_query(query: Select, model: str, dataset: str) -> Select:
    """`query` over model_versions narrowed to the version behind (model, dataset)'s production alias."""
    return query.join(
        aliases_table,
        (aliases_table.c.model == model_versions.c.model)
        & (aliases_table.c.dataset == model_versions.c.dataset)
        & (aliases_table.c.version == model_versions.c.version),
    ).where(aliases_table.c.model == model, aliases_table.c.dataset == dataset, aliases_table.c.alias == PRODUCTION)


def production(engine: Engine, model: str, dataset: str) -> ModelVersion | None:
    """The version behind the production alias of (model, dataset), with its artifact, or None."""
    query = _production_query(select(model_versions), model, dataset)
    with engine.connect() as conn:
        row = conn.execute(query).first()
    return _version(row, True) if row is not None else None


def list_versions(engine: Engine, model: str | None = None, dataset: str | None = None) -> list[ModelVersion]:
    """Every version (without artifacts), by model, dataset and version."""
    query = select(*_LISTED)
    if model is not None:
        query = query.where(model_versions.c.model == model)
    if dataset is not None:
        query = query.where(model_versions.c.dataset == dataset)
    query = query.order_by(model_versions.c.model, model_versions.c.dataset, model_versions.c.version)
    with engine.connect() as conn:
        return [_version(row, False) for row in conn.execute(query)]


def aliases(engine: Engine) -> dict[tuple[str, str], int]:
    """(model, dataset) -> the production version."""
    query = select(aliases_table.c.model, aliases_table.c.dataset, aliases_table.c.version).where(
        aliases_table.c.alias == PRODUCTION
    )
    with engine.connect() as conn:
        return {(m, d): v for m, d, v in conn.execute(query)}


def alias_generation(engine: Engine) -> int:
    """A number that changes whenever any alias moves: the log position of the latest move (0 for none)."""
    # Every move records the position of its promote event, and positions only grow, so
    # the maximum changes on each move (and drops while a replay rebuilds the aliases).
    with engine.connect() as conn:
        return conn.execute(select(func.coalesce(func.max(aliases_table.c.moved_at_position), 0))).scalar_one()


def _build_dict(row: Any) -> dict:
    build = dict(row._mapping)
    build["params"] = json.loads(build["params"]) if build["params"] is not None else None
    return build


def _newest(table: Table, model: str | None, dataset: str | None, limit: int) -> Select:
    """Rows of a per-command table (builds, promotions), newest log position first, optionally filtered."""
    query = select(table)
    if model is not None:
        query = query.where(table.c.model == model)
    if dataset is not None:
        query = query.where(table.c.dataset == dataset)
    return query.order_by(table.c.position.desc()).limit(limit)


def builds(engine: Engine, model: str | None = None, dataset: str | None = None, limit: int = 50) -> list[dict]:
    """Build attempts, newest first, failed ones with their reason."""
    with engine.connect() as conn:
        return [_build_dict(row) for row in conn.execute(_newest(builds_table, model, dataset, limit))]


def build_counts(engine: Engine) -> list[tuple[str, str, int]]:
    """(model, status, count) of every recorded build attempt."""
    query = select(builds_table.c.model, builds_table.c.status, func.count()).group_by(
        builds_table.c.model, builds_table.c.status)
    with engine.connect() as conn:
        return [(m, s, n) for m, s, n in conn.execute(query)]


def get_build(engine: Engine, *, event_id: str | None = None, position: int | None = None) -> dict | None:
    """The build attempt of one command, by its event id or log position, or None while it is pending."""
    query = select(builds_table)
    if event_id is not None:
        query = query.where(builds_table.c.event_id == event_id)
    if position is not None:
        query = query.where(builds_table.c.position == position)
    with engine.connect() as conn:
        row = conn.execute(query).first()
    return _build_dict(row) if row is not None else None


def promotion_history(engine: Engine, model: str | None = None, dataset: str | None = None,
                      limit: int = 50) -> list[dict]:
    """Promote commands and what came of them (moved, kept, failed), newest first."""
    with engine.connect() as conn:
        return [dict(row._mapping) for row in conn.execute(_newest(promotions, model, dataset, limit))]


def automatic_promotions(engine: Engine, model: str | None = None, dataset: str | None = None) -> dict[tuple, dict]:
    """(model, dataset, version) -> what came of that version's automatic promotion (its latest record)."""
    query = select(promotions).where(promotions.c.automatic.is_(True))
    if model is not None:
        query = query.where(promotions.c.model == model)
    if dataset is not None:
        query = query.where(promotions.c.dataset == dataset)
    with engine.connect() as conn:
        rows = [dict(row._mapping) for row in conn.execute(query.order_by(promotions.c.position))]
    return {(r["model"], r["dataset"], r["version"]): r for r in rows}


# --- writes (inside the build handler's transaction) ---------------------------------------

def next_version(conn: Connection, model: str, dataset: str) -> int:
    """The number the next version of (model, dataset) gets."""
    query = select(func.coalesce(func.max(model_versions.c.version), 0)).where(
        model_versions.c.model == model, model_versions.c.dataset == dataset
    )
    return conn.execute(query).scalar_one() + 1


def dumps(obj: Any) -> str:
    """Canonical JSON text as the registry stores params, metrics and versions."""
    return canonical_json(obj)


def insert_version(conn: Connection, mv: ModelVersion) -> None:
    """Store a new version with its artifact."""
    assert mv.artifact is not None
    conn.execute(
        insert(model_versions).values(
            build_position=mv.build_position,
            model=mv.model,
            dataset=mv.dataset,
            version=mv.version,
            uuid=mv.uuid,
            params=dumps(mv.params),
            metrics=dumps(mv.metrics),
            main_metric=mv.main_metric,
            artifact=mv.artifact,
            sha256=mv.sha256,
            first_position=mv.first_position,
            last_position=mv.last_position,
            n_events=mv.n_events,
            lineage_digest=mv.lineage_digest,
            versions=dumps(mv.versions),
            created_at=mv.created_at,
            profile=dumps(mv.profile) if mv.profile is not None else None,
        )
    )


def insert_build(conn: Connection, **row: Any) -> None:
    """Record one build attempt (columns of the builds table; params as a dict)."""
    if row.get("params") is not None:
        row["params"] = canonical_json(row["params"])
    conn.execute(insert(builds_table).values(**row))


def _seed_text(metrics: dict) -> str:
    text = dumps(metrics)
    if len(text.encode()) > SEED_TEXT_LIMIT:
        # Confusion matrices of many classes outgrow a TEXT column; the full metrics stay in model_versions.
        text = dumps({k: v for k, v in metrics.items() if k not in ("confusion_matrix", "class_counts", "classes")})
    return text[: SEED_TEXT_LIMIT // 4] if len(text.encode()) > SEED_TEXT_LIMIT else text


def insert_seed_rows(conn: Connection, mv: ModelVersion) -> None:
    """The seed's training_log row for every build, and its linear_model row for slr."""
    seed_id = mv.build_position if mv.build_position <= INT_MAX else None
    # The seed's DATETIME has whole seconds.
    when = mv.created_at.replace(microsecond=0)
    elapsed = mv.metrics.get("execution_time")
    conn.execute(
        insert(training_log).values(
            id=seed_id,
            uuid=mv.uuid,
            training_date=when,
            train_eval_split=mv.params.get("split", 0.65),
            execution_time=int(round(elapsed * 1000)) if isinstance(elapsed, (int, float)) else -1,
            model_accuracy=mv.main_metric,
            training_output=_seed_text(mv.metrics),
            model_type=mv.model,
        )
    )
    if mv.model == "slr":
        conn.execute(
            insert(linear_model).values(
                id=seed_id,
                uuid=mv.uuid,
                createdate=when,
                slope=mv.metrics["slope"],
                intercept=mv.metrics["intercept"],
                # The regression's own R² (on the rows it was fitted to), as the seed's SimpleRegression gave it.
                rsq=mv.metrics["train_r2"],
                logoutput=_seed_text(mv.metrics),
            )
        )


def version_main_metric(conn: Connection, model: str, dataset: str, version: int) -> tuple[str, float] | None:
    """(uuid, main metric) of a version, or None when it does not exist."""
    row = conn.execute(
        select(model_versions.c.uuid, model_versions.c.main_metric).where(
            model_versions.c.model == model, model_versions.c.dataset == dataset, model_versions.c.version == version
        )
    ).first()
    return (row[0], row[1]) if row is not None else None


def current_production(conn: Connection, model: str, dataset: str) -> tuple[int, float] | None:
    """(version, main metric) behind the production alias, or None."""
    row = conn.execute(
        _production_query(select(model_versions.c.version, model_versions.c.main_metric), model, dataset)
    ).first()
    return (row[0], row[1]) if row is not None else None


def move_alias(conn: Connection, model: str, dataset: str, version: int, position: int) -> None:
    """Point the production alias of (model, dataset) at version, recording the promote event's position."""
    key = (aliases_table.c.model == model) & (aliases_table.c.dataset == dataset) & (aliases_table.c.alias == PRODUCTION)
    moved = conn.execute(update(aliases_table).where(key).values(version=version, moved_at_position=position))
    if moved.rowcount == 0:
        conn.execute(insert(aliases_table).values(model=model, dataset=dataset, alias=PRODUCTION, version=version,
                                                  moved_at_position=position))


def insert_promotion(conn: Connection, **row: Any) -> None:
    """Record what came of one promote command."""
    conn.execute(insert(promotions).values(**row))


def reset(conn: Connection) -> None:
    """Empty the registry and the seed tables (for a replay of the build handler)."""
    for table in (aliases_table, promotions, builds_table, model_versions, training_log, linear_model):
        conn.execute(delete(table))


class SqlRegistry:
    """The registry of one database (db.contracts.Registry): this module bound to an engine.

    Reads open their own connection; writes take the build handler's transaction `tx`, so they
    commit together with its log position.
    """

    def __init__(self, engine: Engine):
        self.engine = engine

    # reads

    def get_version(self, model: str, dataset: str, version: int) -> ModelVersion | None:
        """One version with its artifact, or None."""
        return get_version(self.engine, model, dataset, version)

    def production(self, model: str, dataset: str) -> ModelVersion | None:
        """The version behind the production alias of (model, dataset), with its artifact, or None."""
        return production(self.engine, model, dataset)

    def list_versions(self, model: str | None = None, dataset: str | None = None) -> list[ModelVersion]:
        """Every version (without artifacts), by model, dataset and version."""
        return list_versions(self.engine, model, dataset)

    def aliases(self) -> dict[tuple[str, str], int]:
        """(model, dataset) -> the production version."""
        return aliases(self.engine)

    def alias_generation(self) -> int:
        """A number that changes whenever any alias moves (0 for none)."""
        return alias_generation(self.engine)

    def builds(self, model: str | None = None, dataset: str | None = None, limit: int = 50) -> list[dict]:
        """Build attempts, newest first."""
        return builds(self.engine, model, dataset, limit)

    def get_build(self, *, event_id: str | None = None, position: int | None = None) -> dict | None:
        """The build attempt of one command, or None while it is pending."""
        return get_build(self.engine, event_id=event_id, position=position)

    def promotion_history(self, model: str | None = None, dataset: str | None = None, limit: int = 50) -> list[dict]:
        """Promote commands and what came of them, newest first."""
        return promotion_history(self.engine, model, dataset, limit)

    def automatic_promotions(self, model: str | None = None, dataset: str | None = None) -> dict[tuple, dict]:
        """(model, dataset, version) -> what came of that version's automatic promotion."""
        return automatic_promotions(self.engine, model, dataset)

    # writes, inside the caller's transaction

    def next_version(self, tx: Connection, model: str, dataset: str) -> int:
        """The number the next version of (model, dataset) gets."""
        return next_version(tx, model, dataset)

    def insert_version(self, tx: Connection, mv: ModelVersion) -> None:
        """Store a new version with its artifact."""
        insert_version(tx, mv)

    def insert_seed_rows(self, tx: Connection, mv: ModelVersion) -> None:
        """The seed's training_log row (and linear_model row for slr) of a version."""
        insert_seed_rows(tx, mv)

    def insert_build(self, tx: Connection, **row: Any) -> None:
        """Record one build attempt."""
        insert_build(tx, **row)

    def version_main_metric(self, tx: Connection, model: str, dataset: str, version: int) -> tuple[str, float] | None:
        """(uuid, main metric) of a version, or None."""
        return version_main_metric(tx, model, dataset, version)

    def current_production(self, tx: Connection, model: str, dataset: str) -> tuple[int, float] | None:
        """(version, main metric) behind the production alias, or None."""
        return current_production(tx, model, dataset)

    def move_alias(self, tx: Connection, model: str, dataset: str, version: int, position: int) -> None:
        """Point the production alias of (model, dataset) at `version`."""
        move_alias(tx, model, dataset, version, position)

    def insert_promotion(self, tx: Connection, **row: Any) -> None:
        """Record what came of one promote command."""
        insert_promotion(tx, **row)

    def reset(self, tx: Connection) -> None:
        """Empty the registry and the seed tables."""
        reset(tx)
