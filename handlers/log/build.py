"""The build handler: build commands become model versions, promote commands move the production alias.

A build_* command at log position P trains on every training event of its dataset before P
(read from the log itself, not from a projection), outside the transaction; the version,
the build record, the seed's rows and an auto-promote event then commit with the handler's
position. Every alias move is a promote event in the log: an automatic promotion is appended
as one (source "system", id "auto-promote:<model>:<dataset>:<version>", so a replay finds it
instead of adding another) and takes effect when the handler reaches it.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable, Mapping, Sequence

from modelbus.builders.base import BuildError, BuildResult, Cancelled, TrainingData, check_stop, get_builder
from modelbus.builders.drift import reference_profile
from modelbus.builders.encoding import recorded_schema
from modelbus.builders.split import train_test_indices
from modelbus.db import registry
from modelbus.db.contracts import Transaction
from modelbus.db.errors import StorageError
from modelbus.db.events import DUPLICATE, EventRow, Incoming, Schemas, Source, append_batch, utcnow
from modelbus.db.lineage import Lineage, load_training
from modelbus.db.registry import ModelUpdate, ModelVersion
from modelbus.handlers.log.base import Handler
from modelbus.messages.datasets import InputSchema
from modelbus.messages.errors import Rejected
from modelbus.messages.jsonutil import canonical_json
from modelbus.messages.parse import parse_event_obj
from modelbus.messages.types import BUILD_COMMANDS, Command

log = logging.getLogger(__name__)

AUTO_PROMOTE_PREFIX = "auto-promote:"
SYSTEM_SOURCE = "system"

Notify = Callable[[ModelUpdate], None]
Announce = Callable[[dict], None]


@dataclass
class BuildOutcome:
    """What one build produced: a model with its metrics and lineage, or the reason it failed."""

    model: str
    dataset: str
    requested_params: dict | None
    lineage: Lineage | None = None
    result: BuildResult | None = None
    artifact: bytes | None = None
    sha256: str | None = None
    metrics_json: str | None = None
    reason: str | None = None
    started_at: datetime = field(default_factory=utcnow)
    finished_at: datetime | None = None
    load_seconds: float | None = None
    fit_seconds: float | None = None
    # The rows the model was tested on (kept in memory for its promotion, never stored).
    test: TrainingData | None = None
    # The training rows' feature distributions, the reference of live drift.
    profile: dict | None = None

    @property
    def ok(self) -> bool:
        """True when a model was built."""
        return self.result is not None and self.reason is None

    @property
    def metrics(self) -> dict:
        """The metrics as the registry stores them (canonical JSON round trip)."""
        return json.loads(self.metrics_json) if self.metrics_json else {}


def parse_command(row: EventRow) -> Command:
    """The command stored in a log row; ValueError/Rejected only for a row altered in the database."""
    event = parse_event_obj(json.loads(row.payload), system=True)
    if not isinstance(event, Command):
        raise ValueError(f"event {row.position} is stored as a command but holds a {event.type}")
    return event


def run_build(engine: Any, model: str, dataset: str, before: int, params: dict | None,
              progress: Callable[[int], None] | None = None, stop: threading.Event | None = None,
              schema: InputSchema | None = None) -> BuildOutcome:
    """Train `model` on the training events of `dataset` before log position `before`; never raises BuildError.

    `schema` is the dataset's typed fields when it declares them (its payloads are objects).

    Raises Cancelled once `stop` is set (while the log is read or the model trains): a stopping
    process records nothing of the build, so the next owner of the builds handler redoes it.
    """
    outcome = BuildOutcome(model=model, dataset=dataset, requested_params=params)

    def reading(rows: int) -> None:
        check_stop(stop)
        if progress is not None:
            progress(rows)

    try:
        builder = get_builder(model)
        # Bad params fail before the log is read.
        builder.validate_params(params)
        started = time.perf_counter()
        data, outcome.lineage = load_training(engine, dataset, before, reading, schema)
        outcome.load_seconds = time.perf_counter() - started
        if data is None:
            raise BuildError(f"dataset '{dataset}' has no training events before position {before}")
        started = time.perf_counter()
        result = builder.fit(data, params, stop)
        outcome.fit_seconds = time.perf_counter() - started
        artifact = result.model.to_bytes()
        try:
            metrics_json = registry.dumps(result.metrics)
        except ValueError:
            raise BuildError("the build's metrics are not finite numbers (NaN or infinity)") from None
        main = result.metrics.get(builder.main_metric)
        if not isinstance(main, (int, float)) or not math.isfinite(main):
            raise BuildError(f"the build's {builder.main_metric} is {main!r}, not a finite number")
        outcome.result, outcome.artifact, outcome.metrics_json = result, artifact, metrics_json
        outcome.sha256 = hashlib.sha256(artifact).hexdigest()
        outcome.test = holdout_rows(data, result.params)
        outcome.profile = training_profile(data, result.params)
    except BuildError as exc:
        outcome.reason = str(exc)
    except (StorageError, Cancelled):
        raise  # the database or a stopping process, not the build: nothing is recorded
    except Exception as exc:
        # A builder bug or a numerical failure is the build's, not the handler's: record it,
        # or this one command would block every later build and promotion.
        log.exception("build of %s on %s before %d failed", model, dataset, before)
        outcome.reason = f"internal error: {type(exc).__name__}: {exc}"
    outcome.finished_at = utcnow()
    return outcome


def auto_promote_id(model: str, dataset: str, version: int) -> str:
    """The idempotency key of the promote event a build appends for its version."""
    return f"{AUTO_PROMOTE_PREFIX}{model}:{dataset}:{version}"


def is_automatic(row: EventRow) -> bool:
    """True for a promote event appended by a build (rather than sent by a user)."""
    return row.source == SYSTEM_SOURCE and row.event_id.startswith(AUTO_PROMOTE_PREFIX)


def promotes(new: float, current: float | None) -> bool:
    """The promotion rule: a new version becomes production when its main metric is not worse."""
    return current is None or new >= current


@dataclass(frozen=True)
class Decision:
    """What an automatic promotion decides: move production or keep it, why, and the scores it compared."""

    status: str  # moved, kept or failed
    reason: str
    candidate_score: float | None = None
    production_version: int | None = None
    production_score: float | None = None
    test_rows: int | None = None
    report: dict | None = None  # the build's outcome to announce once the decision is committed

    def summary(self) -> dict:
        """The decision as build_outcome_topic and the API show it."""
        return {"status": self.status, "reason": self.reason, "candidate_score": self.candidate_score,
                "production_version": self.production_version, "production_score": self.production_score,
                "test_rows": self.test_rows}


def training_profile(data: TrainingData, params: dict) -> dict | None:
    """The drift reference of a version: its training rows' feature distributions (numeric datasets only)."""
    if getattr(data.X, "dtype", None) is None or data.X.dtype.kind not in "biuf":
        return None
    train_idx, _ = train_test_indices(data.keys, params["split"], params["seed"])
    return reference_profile(data.X[train_idx])


def holdout_rows(data: TrainingData, params: dict) -> TrainingData:
    """The rows a build was tested on: the same keyed split its builder made."""
    _, test_idx = train_test_indices(data.keys, params["split"], params["seed"])
    return data.take(test_idx)


@dataclass
class _Batch:
    outcomes: dict[int, BuildOutcome]
    decisions: dict[int, Decision] = field(default_factory=dict)
    # Announced (and emptied) after each commit: alias moves, and what came of each build command.
    moves: list[ModelUpdate] = field(default_factory=list)
    reports: list[dict] = field(default_factory=list)


def build_report(row: EventRow, outcome: BuildOutcome, version: int | None, uuid: str | None,
                 promoted: bool, reason: str | None = None) -> dict:
    """What came of one build command, as published on build_outcome_topic (keyed by the command's id)."""
    return {
        "id": row.event_id,
        "position": row.position,
        "model": outcome.model,
        "dataset": outcome.dataset,
        "status": "ok" if version is not None else "failed",
        "reason": reason if reason is not None else outcome.reason,
        "version": version,
        "uuid": uuid,
        "promoted": promoted,
        "n_events": outcome.lineage.n_events if outcome.lineage else None,
        "metrics": outcome.metrics if version is not None else None,
    }


class BuildHandler(Handler):
    """Builds models on build commands and moves production aliases on promote commands."""

    name = "builds"
    event_type = "command"
    batch_size = 200

    def __init__(self, engine: Any, notify: Notify | None = None, announce: Announce | None = None,
                 min_test_rows: int = 30, datasets: Mapping[str, InputSchema] | None = None):
        """`datasets`: the typed fields of the datasets that declare them."""
        self.engine = engine
        self.datasets = dict(datasets or {})
        self.notify = notify
        self.announce = announce
        self.min_test_rows = min_test_rows
        # The test rows of the last build, so its promotion, which usually comes next, does
        # not read the log again: (build position, rows).
        self._last_test: tuple[int, TrainingData] | None = None

    def take(self, events: Sequence[EventRow]) -> Sequence[EventRow]:
        """The events before the first build command or automatic promotion, or that event alone.

        Each of those is prepared (trained, or judged) outside the transaction against the
        registry as every event before it left it: so it must start its batch.
        """
        for index, row in enumerate(events):
            if row.name in BUILD_COMMANDS or is_automatic(row):
                return events[:index] if index else events[:1]
        return events

    def prepare(self, events: Sequence[EventRow], stop: threading.Event | None = None) -> _Batch:
        """Train for each build command (outside the transaction, under the renewed lease); Cancelled on `stop`."""
        outcomes, decisions = {}, {}
        for row in events:
            if is_automatic(row):
                decisions[row.position] = self._judge(row)
                continue
            if row.name not in BUILD_COMMANDS:
                continue
            kind = BUILD_COMMANDS[row.name]
            try:
                command = parse_command(row)
            except (Rejected, ValueError) as exc:
                outcome = BuildOutcome(model=kind, dataset=row.dataset, requested_params=None,
                                       reason=f"event {row.position} is not a valid command: {exc}")
                outcome.finished_at = utcnow()
            else:
                log.info("building %s on %s from the log before position %d", kind, row.dataset, row.position)
                outcome = run_build(self.engine, kind, command.dataset, row.position, command.params, stop=stop,
                                    schema=self.datasets.get(command.dataset))
                if outcome.ok:
                    log.info("built %s on %s: %d events, %s", kind, row.dataset, outcome.lineage.n_events,
                             _summary(outcome))
                else:
                    log.warning("build of %s on %s at position %d failed: %s", kind, row.dataset, row.position,
                                outcome.reason)
            if outcome.ok and outcome.test is not None:
                self._last_test = (row.position, outcome.test)
            outcomes[row.position] = outcome
        return _Batch(outcomes, decisions)

    def apply(self, conn: Transaction, events: Sequence[EventRow], prepared: _Batch) -> None:
        """Record builds and versions, append auto-promotions, move aliases."""
        prepared.moves, prepared.reports = [], []
        for row in events:
            if row.name in BUILD_COMMANDS:
                report = self._record_build(conn, row, prepared.outcomes[row.position])
                if report is not None:
                    prepared.reports.append(report)
            elif row.name == "promote":
                decision = prepared.decisions.get(row.position)
                move = self._promote(conn, row, decision)
                if decision is not None and decision.report is not None:
                    prepared.reports.append({**decision.report, "promoted": move is not None,
                                             "promotion": decision.summary()})
                if move is not None:
                    prepared.moves.append(move)

    def _record_build(self, conn: Transaction, row: EventRow, outcome: BuildOutcome) -> dict | None:
        """Record the build; its outcome is announced now when it failed, with its promotion's decision otherwise."""
        version, uuid = None, None
        if outcome.ok:
            assert outcome.result is not None and outcome.lineage is not None
            builder = get_builder(outcome.model)
            version = registry.next_version(conn, outcome.model, outcome.dataset)
            mv = ModelVersion(
                model=outcome.model,
                dataset=outcome.dataset,
                version=version,
                uuid=registry.version_uuid(outcome.model, outcome.dataset, version, row.position),
                status="ok",
                params=outcome.result.params,
                metrics=outcome.metrics,
                main_metric=float(outcome.result.metrics[builder.main_metric]),
                sha256=outcome.sha256 or "",
                first_position=outcome.lineage.first_position,
                last_position=outcome.lineage.last_position,
                n_events=outcome.lineage.n_events,
                lineage_digest=outcome.lineage.digest,
                versions=outcome.result.versions,
                # The command's receive time, so a replay writes the same row.
                created_at=row.received_at,
                build_position=row.position,
                artifact=outcome.artifact,
                profile=outcome.profile,
            )
            registry.insert_version(conn, mv)
            registry.insert_seed_rows(conn, mv)
            uuid = mv.uuid
            # Every version is put up for promotion; when the handler reaches that event it compares
            # the version with production as it is then, on the same rows (_judge).
            self._append_promote(conn, mv)
        _insert_build(conn, row, outcome, version, outcome.reason)
        return None if outcome.ok else build_report(row, outcome, version, uuid, False)

    def _append_promote(self, conn: Transaction, mv: ModelVersion) -> None:
        event_id = auto_promote_id(mv.model, mv.dataset, mv.version)
        body = {"type": "command", "payload": "promote", "model": mv.model, "dataset": mv.dataset,
                "version": mv.version, "id": event_id}
        command = parse_event_obj(body, system=True)
        item = Incoming(raw=canonical_json(command.body).encode(), source=Source(SYSTEM_SOURCE), event=command,
                        event_id=event_id)
        (outcome,) = append_batch(conn, [item], Schemas())
        if outcome.status == DUPLICATE:
            log.info("promote event %s is already in the log at %s (replay)", event_id, outcome.position)
        else:
            log.info("appended %s at position %s", event_id, outcome.position)

    def _promote(self, conn: Transaction, row: EventRow, decision: Decision | None) -> ModelUpdate | None:
        # A promote that cannot be read or names a version no registry column holds raises:
        # the follower records it as this handler's failure and moves past it.
        command = parse_command(row)
        model, dataset, version = command.model, command.dataset, command.version
        assert model is not None and version is not None
        if not _fits(version):
            raise ValueError(f"version {version} is out of range: versions are 1 to {registry.INT_MAX}")
        target = registry.version_main_metric(conn, model, dataset, version)
        current = registry.current_production(conn, model, dataset)
        if decision is None:
            # A promote someone sent: their call, as long as the version exists.
            if target is None:
                decision = Decision("failed", f"{model} version {version} of dataset '{dataset}' does not exist")
            elif current is not None and current[0] == version:
                decision = Decision("kept", f"{model} version {version} is already production")
            else:
                decision = Decision("moved", "promoted by a promote command")
        update = None
        if decision.status == "moved":
            assert target is not None
            registry.move_alias(conn, model, dataset, version, row.position)
            update = ModelUpdate(model, dataset, version, target[0], row.position)
            log.info("promote at position %d: %s v%d is production: %s", row.position, model, version, decision.reason)
        else:
            log.warning("promote at position %d: %s v%d %s: %s", row.position, model, version, decision.status,
                        decision.reason)
        registry.insert_promotion(
            conn,
            position=row.position,
            model=model,
            dataset=dataset,
            version=version,
            previous_version=current[0] if current else None,
            automatic=is_automatic(row),
            status=decision.status,
            reason=decision.reason,
            created_at=row.received_at,
            candidate_score=decision.candidate_score,
            production_score=decision.production_score,
            test_rows=decision.test_rows,
        )
        return update

    def _judge(self, row: EventRow) -> Decision:
        """An automatic promotion's decision: the newcomer and production scored on the newcomer's test rows.

        Runs before the promote's transaction, with every earlier event applied: production
        is what it will be when the decision is recorded. A pure function of the log, so a
        replay decides the same.
        """
        try:
            return self._compare(row)
        except (StorageError, Cancelled):
            raise
        except Exception as exc:
            log.exception("judging the promotion at position %d failed", row.position)
            return Decision("failed", f"the promotion could not be judged: {type(exc).__name__}: {exc}")

    def _compare(self, row: EventRow) -> Decision:
        try:
            command = parse_command(row)
        except (Rejected, ValueError) as exc:
            return Decision("failed", f"event {row.position} is not a valid promote command: {exc}")
        model, dataset, version = command.model, command.dataset, command.version
        assert model is not None and version is not None
        candidate = registry.get_version(self.engine, model, dataset, version)
        if candidate is None:
            return Decision("failed", f"{model} version {version} of dataset '{dataset}' does not exist")
        build = registry.get_build(self.engine, position=candidate.build_position)
        report = None if build is None else {
            "id": build["event_id"], "position": candidate.build_position, "model": model, "dataset": dataset,
            "status": "ok", "reason": None, "version": version, "uuid": candidate.uuid, "promoted": False,
            "n_events": candidate.n_events, "metrics": candidate.metrics,
        }
        production = registry.production(self.engine, model, dataset)
        if production is not None and production.version == version:
            return Decision("kept", f"{model} version {version} is already production", report=report)
        builder = get_builder(model)
        test = self._test_of(candidate)
        rows = test.n_rows
        score = builder.score(builder.load(candidate.artifact), test)
        judged = dict(candidate_score=score, test_rows=rows, report=report,
                      production_version=production.version if production else None)
        if rows < self.min_test_rows:
            return Decision("kept", f"version {version} was tested on {rows} rows; automatic promotion needs at "
                                    f"least {self.min_test_rows} (setting promotion_min_test_rows)", **judged)
        if production is None:
            return Decision("moved", f"no production version yet; version {version} scores {score:.6g} on its "
                                     f"{rows} test rows", **judged)
        try:
            against = builder.score(builder.load(production.artifact), test)
        except Exception as exc:  # a production that cannot read these rows (another width) is replaced
            return Decision("moved", f"production version {production.version} cannot be scored on version "
                                     f"{version}'s test rows ({type(exc).__name__}: {exc})", **judged)
        judged["production_score"] = against
        compared = (f"version {version} scores {score:.6g} and production version {production.version} "
                    f"{against:.6g} on the same {rows} test rows")
        if promotes(score, against):
            return Decision("moved", compared, **judged)
        return Decision("kept", compared, **judged)

    def _test_of(self, candidate: ModelVersion) -> TrainingData:
        """The candidate's test rows: from the build just made, else read from the log again."""
        if self._last_test is not None and self._last_test[0] == candidate.build_position:
            return self._last_test[1]
        data, _ = load_training(self.engine, candidate.dataset, candidate.build_position,
                                schema=recorded_schema(candidate.metrics))
        if data is None:
            raise BuildError(f"version {candidate.version} has no training events")
        return holdout_rows(data, candidate.params)

    def record_failure(self, conn: Transaction, event: EventRow, prepared: _Batch, reason: str) -> None:
        """A build command becomes a failed build, a promote naming a storable version a failed promotion."""
        if event.name in BUILD_COMMANDS:
            outcome = prepared.outcomes.get(event.position) or BuildOutcome(
                model=BUILD_COMMANDS[event.name], dataset=event.dataset, requested_params=None)
            failed = f"the build could not be recorded: {reason}"
            _insert_build(conn, event, outcome, None, failed)
            prepared.reports.append(build_report(event, outcome, None, None, False, failed))
        elif event.name == "promote":
            try:
                command = parse_command(event)
            except (Rejected, ValueError):
                return  # nothing to name in a promotion row
            if command.model is None or command.version is None or not _fits(command.version):
                return
            registry.insert_promotion(
                conn,
                position=event.position,
                model=command.model,
                dataset=command.dataset,
                version=command.version,
                previous_version=None,
                automatic=is_automatic(event),
                status="failed",
                reason=reason,
                created_at=event.received_at,
            )

    def reset(self, conn: Transaction) -> None:
        """Empty the registry; a replay rebuilds the same versions from the log."""
        registry.reset(conn)

    def after_commit(self, events: Sequence[EventRow], prepared: _Batch) -> None:
        """Tell serving processes about each alias move (a lost notice is caught by their polling), and
        waiting clients what came of each build (`modelbus build --wait`)."""
        moves, prepared.moves = prepared.moves, []
        reports, prepared.reports = prepared.reports, []
        for update in moves if self.notify is not None else ():
            try:
                self.notify(update)
            except Exception:
                log.exception("publishing the model update %s failed; serving will poll", update)
        for report in reports if self.announce is not None else ():
            try:
                self.announce(report)
            except Exception:
                log.exception("publishing the outcome of build %s failed", report["id"])


def _insert_build(conn: Transaction, row: EventRow, outcome: BuildOutcome, version: int | None,
                  reason: str | None) -> None:
    """The builds row of one command: ok with its version, or failed with `reason`."""
    registry.insert_build(
        conn,
        position=row.position,
        event_id=row.event_id,
        model=outcome.model,
        dataset=outcome.dataset,
        status="ok" if version is not None else "failed",
        reason=reason,
        version=version,
        params=outcome.requested_params,
        n_events=outcome.lineage.n_events if outcome.lineage else None,
        requested_at=row.received_at,
        started_at=outcome.started_at,
        finished_at=outcome.finished_at or utcnow(),
        load_seconds=outcome.load_seconds,
        fit_seconds=outcome.fit_seconds,
    )


def _fits(version: int) -> bool:
    """True for a version number the registry's INT columns can hold."""
    return 1 <= version <= registry.INT_MAX


def _summary(outcome: BuildOutcome) -> str:
    metrics = outcome.metrics
    shown = {k: metrics[k] for k in ("accuracy", "f1_macro", "r2", "rmse") if k in metrics}
    return ", ".join(f"{k} {v:.4g}" for k, v in shown.items())
