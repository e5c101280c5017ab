"""`modelbus api` and `modelbus predictor`: the serving processes (registered by modelbus.cli)."""
from __future__ import annotations

import logging
import sys

import click

from modelbus.cli import _app, main

log = logging.getLogger("modelbus")


@main.command()
@click.option("--host", help="Interface to listen on [default: settings.api_host, 127.0.0.1].")
@click.option("--port", type=click.IntRange(0, 65535),
              help="Port to listen on; 0 picks a free one [default: settings.api_port, 8080].")
@click.option("--threads", type=click.IntRange(1, 1024), help="WSGI worker threads [default: settings.api_threads, 8].")
@click.pass_context
def api(ctx: click.Context, host: str | None, port: int | None, threads: int | None) -> None:
    """Serve the HTTP API with waitress until SIGINT/SIGTERM (predictions hot-reload on promotion)."""
    from modelbus.api.app import create_app
    from modelbus.api.server import ApiServer
    from modelbus.cli_errors import listen_problem
    from modelbus.runtime import Services

    app = _app(ctx)
    if threads:
        # The API's database pool is sized from the thread count (modelbus.app.App.api_engine).
        app.settings = app.settings.model_copy(update={"api_threads": threads})
    settings = app.settings
    flask_app = create_app(app)
    serving = flask_app.extensions["modelbus"]
    services = Services()
    services.install_signal_handlers()
    host = host or settings.api_host
    port = settings.api_port if port is None else port
    try:
        server = ApiServer(flask_app, host, port, settings.api_threads)
    except OSError as exc:
        serving.close()
        raise click.ClickException(listen_problem(host, port, exc, "--port or MODELBUS_API_PORT")) from None
    serving.start(services.start)
    services.start("api", server.run)
    log.info("api ready at %s (%s mode)", server.url, "kafka" if settings.kafka_mode else "embedded")
    ok = services.wait()
    serving.close()
    if not ok:
        sys.exit(1)


@main.command()
@click.pass_context
def predictor(ctx: click.Context) -> None:
    """Answer prediction_request_topic on prediction_response_topic (Kafka mode), until SIGINT/SIGTERM."""
    from modelbus.commands.kafka import create_topics
    from modelbus.runtime import Services
    from modelbus.up import start_predictor

    app = _app(ctx)
    if not app.settings.kafka_mode:
        raise click.ClickException(
            "the predictor consumes prediction_request_topic: set MODELBUS_KAFKA_BOOTSTRAP "
            "(in the embedded default the API answers predictions)"
        )
    create_topics(app.settings)
    services = Services()
    services.install_signal_handlers()
    start_predictor(app, services)
    if not services.wait():
        sys.exit(1)
