"""`modelbus up`: the whole product in one process for the configured mode."""
from __future__ import annotations

import sys
import threading

import click


@click.command()
@click.option("--demo", is_flag=True, help="Load the synthetic demo data set, build mlp and linear, print example commands.")
@click.option("--api/--no-api", "with_api", default=True, help="Serve the HTTP API.")
@click.option("--scheduler/--no-scheduler", "with_scheduler", default=True, help="Run the configured cron jobs.")
@click.option("--port", type=click.IntRange(0, 65535),
              help="API port (0 picks a free one) [default: settings.api_port, 8080].")
@click.pass_context
def up(ctx: click.Context, demo: bool, with_api: bool, with_scheduler: bool, port: int | None) -> None:
    """Start ingest and predictor (Kafka mode), handlers (builds), the API and the scheduler.

    Stops cleanly on SIGINT/SIGTERM and exits 0: the batch in hand is finished and its positions
    committed; a build in training is cancelled (nothing of it commits, it is not a failed build)
    and its lease released, so the next worker redoes it at once. A part still running after 8 s
    is abandoned.
    """
    import logging

    from modelbus.cli import _app
    from modelbus.cli_errors import listen_problem
    from modelbus.runtime import Services
    from modelbus.up import load_demo, start_parts

    log = logging.getLogger("modelbus")
    app = _app(ctx)
    if port is not None:
        app.settings = app.settings.model_copy(update={"api_port": port})
    settings = app.settings
    services = Services()
    services.install_signal_handlers()
    try:
        server, serving = start_parts(app, services, api=with_api, scheduler=with_scheduler)
    except OSError as exc:
        services.stop.set()
        if with_api:  # the API's socket is the one thing bound at start
            raise click.ClickException(
                listen_problem(settings.api_host, settings.api_port, exc, "--port or MODELBUS_API_PORT")) from None
        raise click.ClickException(f"cannot start: {exc}") from None
    # Logged once started, so a start that fails says one thing: why.
    log.info("modelbus up: %s mode, database %s", "kafka" if settings.kafka_mode else "embedded",
             app.engine.url.render_as_string(hide_password=True))
    if demo:
        base_url = None if server is None else server.url.replace("://127.0.0.1:", "://localhost:")

        def run_demo(stop: threading.Event) -> None:
            load_demo(app, stop, base_url, lambda line: click.echo(line))

        # The demo is a one-off: it ends without stopping the rest.
        threading.Thread(target=run_demo, args=(services.stop,), name="demo", daemon=True).start()
    ok = services.wait(timeout=8.0)
    if serving is not None:
        serving.close()
    log.info("modelbus stopped")
    if not ok:
        sys.exit(1)
