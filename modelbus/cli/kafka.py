"""Kafka commands: a local broker, the topics."""
from __future__ import annotations

import signal
import sys

import click

from modelbus.cli.context import PARTITIONS


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=9092, show_default=True, type=click.IntRange(1, 65535))
@click.option("--partitions", type=PARTITIONS, help="Partitions of each topic created [default: settings.topic_partitions, 3].")
@click.pass_context
def broker(ctx: click.Context, host: str, port: int, partitions: int | None) -> None:
    """Start a local Kafka-compatible broker (Tansu, memory only) and create the topics."""
    from modelbus.broker import BrokerUnavailable, start_broker, stop_broker
    from modelbus.cli.errors import listen_problem
    from modelbus.commands.kafka import create_topics

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
        created = create_topics(settings.kafka, partitions)
        click.echo(f"broker ready at {host}:{port} (memory only: a restart loses every topic and offset)")
        click.echo(f"created topics: {', '.join(created) or 'none'}")
        click.echo(f"use it with: export MODELBUS_KAFKA_BOOTSTRAP={host}:{port}")
        proc.wait()
    except KeyboardInterrupt:
        pass
    finally:
        if proc.poll() is None:
            stop_broker(proc)


@click.group()
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
    created = create_topics(settings.kafka, partitions)
    for name in all_topics(settings.kafka):
        click.echo(f"{name}: {'created' if name in created else 'exists'}")
