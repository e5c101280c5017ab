"""The model commands of the `modelbus` CLI: build, models, verify, lineage."""
from __future__ import annotations

import json
import sys
import time
from typing import Any

import click

from modelbus.api.views import promotion_json
from modelbus.cli.context import open_app
from modelbus.messages.parse import INT64_MAX, VERSION_MAX
from modelbus.messages.types import DEFAULT_DATASET, MODEL_KINDS

KIND = click.Choice(sorted(MODEL_KINDS))
VERSION = click.IntRange(1, VERSION_MAX)


def _metrics_line(metrics: dict) -> str:
    keys = ("accuracy", "f1_macro", "log_loss", "r2", "rmse", "mae", "depth", "leaves", "train_size", "test_size",
            "execution_time")
    return ", ".join(f"{k} {metrics[k]:.4g}" if isinstance(metrics[k], float) else f"{k} {metrics[k]}"
                     for k in keys if k in metrics)


def _live_line(live: dict) -> str:
    """Live metrics in one line: feedback count, accuracy or MAE/RMSE, the most drifted feature."""
    parts = [f"{live['feedback_count']} feedback"]
    for key in ("accuracy", "mae", "rmse"):
        if live.get(key) is not None:
            parts.append(f"{key} {live[key]:.4f}")
    if live.get("drift"):
        feature, psi = max(live["drift"].items(), key=lambda item: item[1])
        parts.append(f"drift {feature} PSI {psi:.3f}")
    return ", ".join(parts)


def _version_or_fail(app, model: str, dataset: str, version: int):
    from modelbus.db import registry

    mv = registry.get_version(app.engine, model, dataset, version)
    if mv is None:
        known = [v.version for v in registry.list_versions(app.engine, model, dataset)]
        raise click.ClickException(
            f"no {model} version {version} on dataset '{dataset}' (versions: {', '.join(map(str, known)) or 'none'})"
        )
    return mv


@click.command()
@click.argument("kind", type=KIND)
@click.option("--dataset", default=DEFAULT_DATASET, show_default=True)
@click.option("--params", "params_text", help='Build params as a JSON object, e.g. \'{"epochs":300,"hidden":[64]}\'.')
@click.option("--wait", is_flag=True, help="Wait for the build's outcome; exit 1 if it fails. Embedded, with no "
              "worker running, build here.")
@click.option("--timeout", default=3600.0, show_default=True, help="Seconds --wait waits at most.")
@click.pass_context
def build(ctx: click.Context, kind: str, dataset: str, params_text: str | None, wait: bool, timeout: float) -> None:
    """Post a build_<KIND> command; a worker builds it from the log (--wait: and say what came of it)."""
    from modelbus import build_wait
    from modelbus.db.positions import LostLease

    event: dict[str, Any] = {"type": "command", "payload": f"build_{kind}", "dataset": dataset}
    if params_text is not None:
        from modelbus.messages.errors import Rejected
        from modelbus.messages.parse import loads

        # The bus's strict parser: Python's json would take NaN and integers no store holds.
        try:
            event["params"] = loads(params_text, max_bytes=sys.maxsize)
        except Rejected as exc:
            raise click.BadParameter(f"{exc.code}: {exc.message}", param_hint="--params") from None
    app = open_app(ctx)
    kafka = app.settings.kafka_mode
    listener = build_wait.OutcomeListener(app.settings.kafka) if wait and kafka else None
    try:
        if listener is not None:
            listener.start()  # before posting, so the outcome cannot pass unseen
        (outcome,) = app.client_publisher.post([event], "cli")
        if outcome.error is not None:
            raise click.ClickException(f"rejected: {outcome.error.message}")
        where = f"at position {outcome.position}" if outcome.position else f"to {app.settings.topics.events}"
        click.echo(f"build_{kind} on '{dataset}' {outcome.status} {where} (id {outcome.event_id})")
        if not wait:
            return
        assert outcome.event_id is not None
        if listener is not None:
            click.echo(f"waiting for a worker to build it (outcomes on {app.settings.topics.build_outcomes}) ...",
                       err=True)
            report = listener.wait(outcome.event_id, timeout)
        elif build_wait.builds_handler_running(app.engine):
            click.echo("waiting for the worker to build it ...", err=True)
            report = build_wait.wait_in_store(app.store, outcome.event_id, timeout)
        else:
            click.echo("no worker runs the builds handler: building here ...", err=True)
            try:
                build_wait.build_here(app)
                report = build_wait.report_from_store(app.store, outcome.event_id)
            except LostLease:
                click.echo("a worker started meanwhile: waiting for it to build ...", err=True)
                report = build_wait.wait_in_store(app.store, outcome.event_id, timeout)
    finally:
        if listener is not None:
            listener.close()
    if report is None:
        click.echo(f"no build outcome after {timeout:g}s; is a worker running (`modelbus worker` or `modelbus up`)?",
                   err=True)
        sys.exit(1)
    if report["status"] != "ok":
        click.echo(f"build failed: {report['reason']}", err=True)
        sys.exit(1)
    decision = report.get("promotion") or {}
    promoted = " - now production" if report["promoted"] else f" - not promoted: {decision.get('reason', '')}"
    click.echo(f"{kind} version {report['version']} on '{dataset}' (uuid {report['uuid']}) from {report['n_events']} "
               f"events{promoted}")
    click.echo(f"  {_metrics_line(report['metrics'] or {})}")


@click.command()
@click.option("--dataset", help="Only this dataset.")
@click.option("--model", type=KIND, help="Only this model kind.")
@click.option("--builds", "show_builds", is_flag=True, help="List build attempts (incl. failed) instead.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.pass_context
def models(ctx: click.Context, dataset: str | None, model: str | None, show_builds: bool, as_json: bool) -> None:
    """List model versions with their metrics; `*` marks production."""
    from modelbus.db import registry

    app = open_app(ctx)
    if show_builds:
        for b in registry.builds(app.engine, model, dataset, limit=100):
            if as_json:
                click.echo(json.dumps(b, default=str, sort_keys=True))
            else:
                outcome = f"version {b['version']}" if b["status"] == "ok" else f"FAILED: {b['reason']}"
                click.echo(f"{b['position']:>8}  {b['requested_at']:%Y-%m-%d %H:%M:%S}  {b['model']:<6} "
                           f"{b['dataset']:<12} {outcome}")
        return
    from modelbus.handlers.serving.live import live_view

    production = registry.aliases(app.engine)
    versions = registry.list_versions(app.engine, model, dataset)
    promotions = registry.automatic_promotions(app.engine, model, dataset)
    for mv in versions:
        is_prod = production.get((mv.model, mv.dataset)) == mv.version
        decided = promotions.get((mv.model, mv.dataset, mv.version))
        live = live_view(app.engine, mv, app.settings.live_window)
        if as_json:
            click.echo(json.dumps({
                "model": mv.model, "dataset": mv.dataset, "version": mv.version, "production": is_prod,
                "uuid": mv.uuid, "main_metric": mv.main_metric, "metrics": mv.metrics, "params": mv.params,
                "sha256": mv.sha256, "n_events": mv.n_events, "first_position": mv.first_position,
                "last_position": mv.last_position, "lineage_digest": mv.lineage_digest,
                "build_position": mv.build_position, "versions": mv.versions,
                "created_at": mv.created_at.isoformat(), "promotion": promotion_json(decided), "live": live,
            }, sort_keys=True))
        else:
            click.echo(f"{'*' if is_prod else ' '} {mv.model:<6} {mv.dataset:<12} v{mv.version:<4} "
                       f"{mv.created_at:%Y-%m-%d %H:%M:%S}  {mv.n_events:>8} events  {mv.sha256[:12]}  "
                       f"{_metrics_line(mv.metrics)}")
            if decided is not None and decided["status"] != "moved":
                click.echo(f"{'':<8}not promoted: {decided['reason']}")
            if live["feedback_count"] or live["drift"]:
                click.echo(f"{'':<8}live: {_live_line(live)}")
    if not as_json:
        click.echo(f"{len(versions)} versions", err=True)


@click.command()
@click.argument("model", type=KIND)
@click.argument("version", type=VERSION)
@click.option("--dataset", default=DEFAULT_DATASET, show_default=True)
@click.option("--progress/--no-progress", default=True, help="Show a progress bar while reading the log.")
@click.pass_context
def verify(ctx: click.Context, model: str, version: int, dataset: str, progress: bool) -> None:
    """Rebuild a version from its lineage; exit 0 only if artifact hash, metrics and lineage are identical."""
    from tqdm import tqdm

    from modelbus.builders import get_builder
    from modelbus.handlers.log.verify import verify_version

    app = open_app(ctx)
    recorded = _version_or_fail(app, model, dataset, version)
    get_builder(model)  # imports torch for mlp now, so the bar measures reading and fitting only
    started = time.perf_counter()
    with tqdm(total=recorded.n_events, desc=f"verify {model} v{version}: reading the log", unit="ev",
              disable=not progress, file=sys.stderr) as bar:
        def advance(n: int) -> None:
            bar.update(n)
            if bar.n >= bar.total:
                bar.set_description(f"verify {model} v{version}: rebuilding")

        check = verify_version(app.engine, recorded, advance)
    elapsed = time.perf_counter() - started
    for note in check.notes:
        click.echo(f"note: {note}", err=True)
    if check.ok:
        click.echo(f"OK: {model} version {version} on '{dataset}' rebuilt identically from {recorded.n_events} "
                   f"events in {elapsed:.1f}s (sha256 {recorded.sha256})")
        return
    click.echo(f"MISMATCH: {model} version {version} on '{dataset}' does not rebuild identically:", err=True)
    for line in check.differences:
        click.echo(f"  {line}", err=True)
    sys.exit(1)


@click.command()
@click.argument("model", type=KIND)
@click.argument("version", type=VERSION)
@click.option("--dataset", default=DEFAULT_DATASET, show_default=True)
@click.option("--limit", type=click.IntRange(1, INT64_MAX), help="Show at most this many events.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.pass_context
def lineage(ctx: click.Context, model: str, version: int, dataset: str, limit: int | None, as_json: bool) -> None:
    """List the training events a version was built from (every one before its build command)."""
    from modelbus.db.lineage import lineage_events

    app = open_app(ctx)
    mv = _version_or_fail(app, model, dataset, version)
    rows = lineage_events(app.engine, dataset, mv.build_position, limit)
    for row in rows:
        if as_json:
            click.echo(json.dumps(row, sort_keys=True))
        else:
            click.echo(f"{row['position']:>8}  {row['received_at'][:19]}  {row['source']:<6} {row['id']:<34} "
                       f"{json.dumps(row['event']['payload'])}")
    click.echo(f"{model} v{version} on '{dataset}': built at position {mv.build_position} from {mv.n_events} events "
               f"(positions {mv.first_position}..{mv.last_position}, digest {mv.lineage_digest})", err=True)

