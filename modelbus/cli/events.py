"""Commands on the log: send events, read events and dead letters, replay the handlers."""
from __future__ import annotations

import csv
import json
import math
import sys
from typing import Any, Iterator

import click

from modelbus.cli.context import COUNT, POSITION, open_app


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
        from modelbus.messages.errors import Rejected
        from modelbus.messages.parse import loads

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
    from modelbus.messages.errors import Rejected
    from modelbus.messages.parse import parse_values

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


@click.command()
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
    app = open_app(ctx)
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
            named = f" id {outcome.event_id}" if outcome.event_id else ""
            click.echo(f"event {index + 1}: {outcome.status} ({where}){named}")
    if not as_json:
        summary = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
        click.echo(f"{len(outcomes)} events: {summary}")
    if counts.get("rejected"):
        sys.exit(1)


@click.command()
@click.option("--after", default=0, show_default=True, type=POSITION, help="Show events after this position.")
@click.option("--limit", default=20, show_default=True, type=COUNT)
@click.option("--last", type=COUNT, help="Show the last N events instead.")
@click.option("--type", "type_", type=click.Choice(["training", "command", "feedback", "raw"]))
@click.option("--name", help="Event name: training, build_mlp, promote, ...")
@click.option("--dataset")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.pass_context
def events(ctx: click.Context, after: int, limit: int, last: int | None, type_: str | None, name: str | None, dataset: str | None, as_json: bool) -> None:
    """Read the log."""
    from modelbus.db.events import event_json

    app = open_app(ctx)
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


@click.command()
@click.option("--after", default=0, show_default=True, type=POSITION, help="Show dead letters after this id.")
@click.option("--limit", default=20, show_default=True, type=COUNT)
@click.pass_context
def errors(ctx: click.Context, after: int, limit: int) -> None:
    """Read the dead letters: rejected messages with their reasons."""
    app = open_app(ctx)
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


@click.command()
@click.option("--handler", "names", multiple=True, help="Replay only these handlers (default: every projection).")
@click.option("--wait", default=0.0, show_default=True, type=click.FloatRange(0, 86_400), callback=_finite,
              help="Seconds to wait for a handler running in another process to stop; 0 fails at once.")
@click.pass_context
def replay(ctx: click.Context, names: tuple[str, ...], wait: float) -> None:
    """Reset handler positions and projections, then run the handlers over the whole log.

    The handlers must not be running elsewhere (`modelbus worker` or `up`): stop them first.
    """
    from modelbus.db.positions import LostLease
    from modelbus.handlers.follow.replay import replay_handler

    app = open_app(ctx)
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
