"""The root `modelbus` group: options, logging, settings; a database the operator must fix is one line."""
from __future__ import annotations

import logging
import sys
from typing import Any

import click

from modelbus.settings import load_settings


class _Main(click.Group):
    """The root group: a database that cannot be used is one line naming it, never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        """Run the command, turning a database the operator must fix into a ClickException."""
        from modelbus.cli.errors import database_problem

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
