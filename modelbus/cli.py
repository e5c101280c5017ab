"""The `modelbus` command line."""
from __future__ import annotations

import csv
import json
import logging
import math
import signal
import sys
from typing import Any, Iterator

import click

from modelbus.commands.parse import INT64_MAX
from modelbus.settings import load_settings

# Numbers the store can hold: anything larger is a usage error, not a database traceback.
POSITION = click.IntRange(0, INT64_MAX)
COUNT = click.IntRange(1, INT64_MAX)
PARTITIONS = click.IntRange(1, 10_000)


def _app(ctx: click.Context, migrate: bool = True):
    from modelbus.app import App

    app = App(ctx.obj["settings"], migrate=migrate)
    ctx.call_on_close(app.close)
    return app


class _Main(click.Group):
    """The root group: a database that cannot be used is one line naming it, never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        """Run the command, turning a database the operator must fix into a ClickException."""
        from modelbus.cli_errors import database_problem

        try:
            return super().invoke(ctx)
        except Exception as exc:
            settings = (ctx.obj or {}).get("settings")
            message = database_problem(settings.database_url if settings else None, exc)
            if message is None:
                raise
            raise click.ClickException(message) from None


@click.group(cls=_Main, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--database-url", envvar="MODELBUS_DATABASE_URL", help="SQLAlchemy URL of the event store.")
@click.option("--kafka-bootstrap", envvar="MODELBUS_KAFKA_BOOTSTRAP", help="Kafka bootstrap servers; none = embedded mode.")
@click.option("--log-level", default="INFO", show_default=True, envvar="MODELBUS_LOG_LEVEL")
@click.pass_context
def main(ctx: click.Context, database_url: str | None, kafka_bootstrap: str | None, log_level: str) -> None:
    """modelbus: keeps ML models up to date from a Kafka stream."""
    logging.basicConfig(
        level=log_level.upper(),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # Third-party chatter (kafka-python's connection logs, Alembic's per-migration
    # lines) is noise at INFO; our own loggers say when a part is ready.
    for noisy in ("kafka", "alembic"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))
    try:
        settings = load_settings(database_url=database_url, kafka_bootstrap=kafka_bootstrap)
    except Exception as exc:
        raise click.ClickException(f"bad configuration: {exc}") from None
    ctx.obj = {"settings": settings}


@main.group()
def db() -> None:
    """Database schema (Alembic migrations)."""


@db.command("upgrade")
@click.pass_context
def db_upgrade(ctx: click.Context) -> None:
    """Migrate the schema to the newest revision (also done on every start)."""
    from modelbus.db.migrate import current_revision

    app = _app(ctx)
    click.echo(f"database at revision {current_revision(app.engine)}")


@db.command("current")
@click.pass_context
def db_current(ctx: click.Context) -> None:
    """Print the schema revision without migrating."""
    from modelbus.db.migrate import current_revision, head_revision

    app = _app(ctx, migrate=False)
    click.echo(f"current {current_revision(app.engine) or 'none'}, newest {head_revision()}")


@main.command()
@click.option("--ingest/--no-ingest", default=True, help="Consume event_topic (Kafka mode).")
@click.option("--handlers/--no-handlers", "run_handlers", default=True, help="Follow the log with every handler.")
@click.pass_context
def worker(ctx: click.Context, ingest: bool, run_handlers: bool) -> None:
    """Ingest event_topic into the log and run the handlers, until SIGINT/SIGTERM."""
    from modelbus.runtime import Services
    from modelbus.up import start_handlers, start_ingest

    app = _app(ctx)
    services = Services()
    services.install_signal_handlers()
    if ingest and app.settings.kafka_mode:
        from modelbus.commands.kafka import create_topics

        create_topics(app.settings)
        start_ingest(app, services)
    if run_handlers:
        start_handlers(app, services)
    if not services.wait():
        sys.exit(1)


def _read_text(path: str) -> str:
    """A file's text ('-' is stdin), or a one-line error naming it."""
    try:
        if path == "-":
            return sys.stdin.read()
        with open(path, encoding="utf-8") as stream:
            return stream.read()
    except OSError as exc:
        raise click.ClickException(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise click.ClickException(f"{path} is not UTF-8 text: {exc.reason} at byte {exc.start}") from None


def _read_events(texts: tuple[str, ...], file: str | None) -> Iterator[Any]:
    for text in texts:
        yield text
    if file is None:
        return
    content = _read_text(file)
    stripped = content.lstrip()
    if stripped.startswith("["):
        from modelbus.commands.messages import Rejected
        from modelbus.commands.parse import loads

        # The strict parser, as for every message: Python's own json takes NaN and repeated keys.
        try:
            items = loads(stripped, max_bytes=sys.maxsize)
        except Rejected as exc:
            raise click.ClickException(f"{file}: nothing sent: {exc.code}: {exc.message}") from None
        if not isinstance(items, list):
            raise click.ClickException(f"{file}: nothing sent: not a JSON array")
        yield from items
        return
    # One JSON document per line (JSON Lines), or one pretty-printed object.
    if stripped.startswith("{") and "\n{" not in stripped.rstrip():
        yield stripped
        return
    for line in content.splitlines():
        if line.strip():
            yield line


def _read_csv(path: str, dataset: str | None) -> list[dict[str, Any]]:
    rows = []
    try:
        with open(path, newline="", encoding="utf-8") as stream:
            for row in csv.reader(stream):
                if row and any(cell.strip() for cell in row):
                    rows.append([cell.strip() for cell in row])
    except OSError as exc:
        raise click.ClickException(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise click.ClickException(f"{path} is not UTF-8 text: {exc.reason} at byte {exc.start}") from None
    except csv.Error as exc:
        raise click.ClickException(f"{path} is not CSV: {exc}") from None
    if rows and _is_header(rows[0]):
        click.echo(f"{path}: row 1 has no numeric value, skipped as the header: {','.join(rows[0])[:200]}", err=True)
        rows = rows[1:]
    events = []
    for row in rows:
        event: dict[str, Any] = {"type": "training", "payload": ",".join(row)}
        if dataset:
            event["dataset"] = dataset
        events.append(event)
    return events


def _is_header(cells: list[str]) -> bool:
    """A first row is a header only when none of its values is a number (a bad data row is sent, not dropped)."""
    from modelbus.commands.messages import Rejected
    from modelbus.commands.parse import parse_values

    for cell in cells:
        try:
            parse_values([cell])
        except Rejected as exc:
            # NaN, infinity and huge numbers are numbers too: such a row is data, rejected with its reason.
            if exc.code in ("not_finite", "out_of_range"):
                return False
        else:
            return False
    return True


@main.command()
@click.argument("events", nargs=-1)
@click.option("-f", "--file", "file", help="JSON Lines or a JSON array of events; '-' reads stdin.")
@click.option("--csv", "csv_file",
              help="A CSV file of training rows (features..., label); a first row with no numeric value is skipped "
                   "as the header.")
@click.option("--dataset", help="Dataset of the --csv rows.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON outcome per event.")
@click.pass_context
def send(ctx: click.Context, events: tuple[str, ...], file: str | None, csv_file: str | None, dataset: str | None, as_json: bool) -> None:
    """Post events from arguments, a file or stdin (straight into the log, or to event_topic in Kafka mode).

    \b
    modelbus send '{"type":"training","payload":"3,4,5,6"}'
    modelbus send -f messages/build_mlp.json
    modelbus send - < events.jsonl
    modelbus send --csv data.csv --dataset darcey
    """
    from modelbus.commands.publish import outcome_json

    if "-" in events:
        if file is not None or events != ("-",):
            raise click.UsageError("'-' reads the events from stdin: give it alone, without other events or --file")
        events, file = (), "-"
    elif file is None and not events and not csv_file and not sys.stdin.isatty():
        file = "-"
    # Files are read before the database is opened, so a wrong path fails at once.
    items: list[Any] = list(_read_events(events, file))
    if csv_file:
        items.extend(_read_csv(csv_file, dataset))
    if not items:
        raise click.UsageError("no events: give them as arguments, with --file, --csv or on stdin")
    app = _app(ctx)
    outcomes = []
    for start in range(0, len(items), 5000):
        outcomes.extend(app.client_publisher.post(items[start : start + 5000], "cli"))
    counts: dict[str, int] = {}
    for index, outcome in enumerate(outcomes):
        counts[outcome.status] = counts.get(outcome.status, 0) + 1
        if as_json:
            click.echo(json.dumps(outcome_json(outcome)))
        elif outcome.error is not None:
            click.echo(f"event {index + 1}: rejected: {outcome.error.message}", err=True)
        elif len(outcomes) <= 20:
            where = f"position {outcome.position}" if outcome.position else app.settings.topics.events
            click.echo(f"event {index + 1}: {outcome.status} ({where}) id {outcome.event_id}")
    if not as_json:
        summary = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
        click.echo(f"{len(outcomes)} events: {summary}")
    if counts.get("rejected"):
        sys.exit(1)


@main.command()
@click.option("--after", default=0, show_default=True, type=POSITION, help="Show events after this position.")
@click.option("--limit", default=20, show_default=True, type=COUNT)
@click.option("--last", type=COUNT, help="Show the last N events instead.")
@click.option("--type", "type_", type=click.Choice(["training", "command"]))
@click.option("--name", help="Event name: training, build_mlp, promote, ...")
@click.option("--dataset")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.pass_context
def events(ctx: click.Context, after: int, limit: int, last: int | None, type_: str | None, name: str | None, dataset: str | None, as_json: bool) -> None:
    """Read the log."""
    from modelbus.db.events import event_json

    app = _app(ctx)
    if last is not None:
        after, limit = max(0, app.store.head() - last), last
    rows = app.store.read(after=after, limit=limit, type=type_, name=name, dataset=dataset)
    for row in rows:
        if as_json:
            click.echo(json.dumps(event_json(row)))
        else:
            click.echo(f"{row.position:>8}  {row.received_at:%Y-%m-%d %H:%M:%S}  {row.source:<6} {row.dataset:<12} {row.payload}")
    if not as_json:
        click.echo(f"{len(rows)} events shown; the log ends at position {app.store.head()}", err=True)


@main.command()
@click.option("--after", default=0, show_default=True, type=POSITION, help="Show dead letters after this id.")
@click.option("--limit", default=20, show_default=True, type=COUNT)
@click.pass_context
def errors(ctx: click.Context, after: int, limit: int) -> None:
    """Read the dead letters: rejected messages with their reasons."""
    app = _app(ctx)
    for row in app.store.dead_letters(after=after, limit=limit):
        raw = row["raw"][:80]
        shown = raw.decode("utf-8", "replace")
        where = (
            f"{row['source_topic']}/{row['source_partition']}@{row['source_offset']}"
            if row["source_topic"]
            else row["source"]
        )
        click.echo(f"{row['id']:>6}  {row['received_at']:%Y-%m-%d %H:%M:%S}  {where:<24} {row['code']:<20} {row['reason']}  {shown!r}")
    click.echo(f"{app.store.dead_letter_count()} dead letters in all", err=True)


def _finite(ctx: click.Context, param: click.Parameter, value: float) -> float:
    # FloatRange lets NaN through (every comparison with it is false).
    if not math.isfinite(value):
        raise click.BadParameter(f"{value} is not a finite number")
    return value


@main.command()
@click.option("--handler", "names", multiple=True, help="Replay only these handlers (default: every projection).")
@click.option("--wait", default=0.0, show_default=True, type=click.FloatRange(0, 86_400), callback=_finite,
              help="Seconds to wait for a handler running in another process to stop; 0 fails at once.")
@click.pass_context
def replay(ctx: click.Context, names: tuple[str, ...], wait: float) -> None:
    """Reset handler positions and projections, then run the handlers over the whole log.

    The handlers must not be running elsewhere (`modelbus worker` or `up`): stop them first.
    """
    from modelbus.db.positions import LostLease
    from modelbus.handlers.replay import replay_handler

    app = _app(ctx)
    handlers = {h.name: h for h in app.handlers()}
    unknown = [n for n in names if n not in handlers]
    if unknown:
        raise click.UsageError(f"unknown handler {unknown[0]} (known: {', '.join(handlers)})")
    chosen = [handlers[n] for n in names] if names else [h for h in handlers.values() if h.replayable]
    for handler in chosen:
        try:
            applied = replay_handler(app.store, handler, wait_seconds=wait)
        except LostLease as exc:
            raise click.ClickException(
                f"{exc}: stop `modelbus worker` / `modelbus up` there first, or wait for it with --wait SECONDS"
            ) from None
        click.echo(f"{handler.name}: replayed {applied} events")


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=9092, show_default=True, type=click.IntRange(1, 65535))
@click.option("--partitions", type=PARTITIONS, help="Partitions of each topic created [default: settings.topic_partitions, 3].")
@click.pass_context
def broker(ctx: click.Context, host: str, port: int, partitions: int | None) -> None:
    """Start a local Kafka-compatible broker (Tansu, memory only) and create the topics."""
    from modelbus.commands.kafka import create_topics
    from modelbus.broker import BrokerUnavailable, start_broker, stop_broker

    from modelbus.cli_errors import listen_problem

    try:
        proc = start_broker(host, port)
    except BrokerUnavailable as exc:
        cause = exc.__cause__ if isinstance(exc.__cause__, OSError) else None
        raise click.ClickException(
            listen_problem(host, port, cause, "--port (and point MODELBUS_KAFKA_BOOTSTRAP at it)") if cause else str(exc)
        ) from None
    settings = ctx.obj["settings"].model_copy(update={"kafka_bootstrap": f"{host}:{port}"})
    # SIGTERM must also stop the child broker, not orphan it: exit through `finally`.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        created = create_topics(settings, partitions)
        click.echo(f"broker ready at {host}:{port} (memory only: a restart loses every topic and offset)")
        click.echo(f"created topics: {', '.join(created) or 'none'}")
        click.echo(f"use it with: export MODELBUS_KAFKA_BOOTSTRAP={host}:{port}")
        proc.wait()
    except KeyboardInterrupt:
        pass
    finally:
        if proc.poll() is None:
            stop_broker(proc)


@main.group()
def topics() -> None:
    """Kafka topics."""


@topics.command("create")
@click.option("--partitions", type=PARTITIONS, help="[default: settings.topic_partitions, 3]")
@click.pass_context
def topics_create(ctx: click.Context, partitions: int | None) -> None:
    """Create every topic modelbus uses that does not exist yet."""
    from modelbus.commands.kafka import all_topics, create_topics

    settings = ctx.obj["settings"]
    if not settings.kafka_mode:
        raise click.ClickException("no Kafka bootstrap configured (set MODELBUS_KAFKA_BOOTSTRAP)")
    created = create_topics(settings, partitions)
    for name in all_topics(settings):
        click.echo(f"{name}: {'created' if name in created else 'exists'}")


from modelbus.cli_cron import scheduler as _scheduler_command  # noqa: E402
from modelbus.cli_demo import demo as _demo_command  # noqa: E402

main.add_command(_scheduler_command)
main.add_command(_demo_command)

from modelbus.cli_models import add_commands as _add_model_commands  # noqa: E402

_add_model_commands(main)

from modelbus.cli_status import status as _status_command  # noqa: E402

main.add_command(_status_command)

from modelbus.cli_up import up as _up_command  # noqa: E402

main.add_command(_up_command)

import modelbus.cli_serve  # noqa: E402,F401  (registers `modelbus api` and `modelbus predictor`)

if __name__ == "__main__":
    main()

