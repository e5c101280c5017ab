"""The long-running processes: worker, predictor, api, scheduler, and up with all of them."""
from __future__ import annotations

import logging
import sys
import threading
from datetime import timezone

import click

from modelbus.cli.context import open_app

log = logging.getLogger("modelbus")


@click.command()
@click.option("--ingest/--no-ingest", default=True, help="Consume event_topic (Kafka mode).")
@click.option("--handlers/--no-handlers", "run_handlers", default=True, help="Follow the log with every handler.")
@click.pass_context
def worker(ctx: click.Context, ingest: bool, run_handlers: bool) -> None:
    """Ingest event_topic into the log and run the handlers, until SIGINT/SIGTERM."""
    from modelbus.runtime import Services
    from modelbus.up import start_handlers, start_ingest

    app = open_app(ctx)
    services = Services()
    services.install_signal_handlers()
    if ingest and app.settings.kafka_mode:
        from modelbus.commands.kafka import create_topics

        create_topics(app.settings.kafka)
        start_ingest(app, services)
    if run_handlers:
        start_handlers(app, services)
    if not services.wait():
        sys.exit(1)


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

    from modelbus.cli.errors import listen_problem
    from modelbus.runtime import Services
    from modelbus.up import load_demo, start_parts

    log = logging.getLogger("modelbus")
    app = open_app(ctx)
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


@click.command()
@click.option("--host", help="Interface to listen on [default: settings.api_host, 127.0.0.1].")
@click.option("--port", type=click.IntRange(0, 65535),
              help="Port to listen on; 0 picks a free one [default: settings.api_port, 8080].")
@click.option("--threads", type=click.IntRange(1, 1024), help="WSGI worker threads [default: settings.api_threads, 8].")
@click.option("--workers", type=click.IntRange(1, 64),
              help="Server processes (gunicorn) behind the port; 1 serves with waitress in this process "
                   "[default: settings.api_workers, 1].")
@click.pass_context
def api(ctx: click.Context, host: str | None, port: int | None, threads: int | None, workers: int | None) -> None:
    """Serve the HTTP API until SIGINT/SIGTERM (predictions hot-reload on promotion).

    One worker: waitress in this process. More: gunicorn's pre-fork server, each worker process
    with its own model cache, hot reload, recorder and database connections (threads per worker).
    """
    from modelbus.api.app import sampler
    from modelbus.api.server import ApiServer
    from modelbus.cli.errors import listen_problem
    from modelbus.runtime import Services
    from modelbus.web import create_api

    app = open_app(ctx)
    if threads:
        # The API's database pool is sized from the thread count (modelbus.app.App.api_engine).
        app.settings = app.settings.model_copy(update={"api_threads": threads})
    settings = app.settings
    host = host or settings.api_host
    port = settings.api_port if port is None else port
    workers = workers or settings.api_workers
    if workers > 1:
        _serve_prefork(app, host, port, workers)
        return
    flask_app = create_api(app)
    serving = flask_app.extensions["modelbus"]
    services = Services()
    services.install_signal_handlers()
    try:
        server = ApiServer(flask_app, host, port, settings.api_threads)
    except OSError as exc:
        serving.close()
        raise click.ClickException(listen_problem(host, port, exc, "--port or MODELBUS_API_PORT")) from None
    serving.start(services.start)
    services.start("dashboard-sampler", sampler(flask_app).run)
    services.start("api", server.run)
    log.info("api ready at %s (%s mode)", server.url, "kafka" if settings.kafka_mode else "embedded")
    ok = services.wait()
    serving.close()
    if not ok:
        sys.exit(1)


def _serve_prefork(app, host: str, port: int, workers: int) -> None:
    """`modelbus api --workers N`: migrate here, then fork N workers that each build their own App."""
    from modelbus import prefork
    from modelbus.cli.errors import listen_problem

    settings = app.settings
    app.engine  # noqa: B018  (opening the engine migrates the database, once, before the fork)
    app.close()  # no pooled connection or producer may cross the fork
    try:
        listener = prefork.bind(host, port)
    except OSError as exc:
        raise click.ClickException(listen_problem(host, port, exc, "--port or MODELBUS_API_PORT")) from None
    url = f"http://{host}:{listener.getsockname()[1]}"
    prefork.serve(settings, listener, workers, on_ready=lambda: log.info(
        "api ready at %s (%s mode, %d workers)", url, "kafka" if settings.kafka_mode else "embedded", workers))
    log.info("api stopped")


@click.command()
@click.pass_context
def predictor(ctx: click.Context) -> None:
    """Answer prediction_request_topic on prediction_response_topic (Kafka mode), until SIGINT/SIGTERM."""
    from modelbus.commands.kafka import create_topics
    from modelbus.runtime import Services
    from modelbus.up import start_predictor

    app = open_app(ctx)
    if not app.settings.kafka_mode:
        raise click.ClickException(
            "the predictor consumes prediction_request_topic: set MODELBUS_KAFKA_BOOTSTRAP "
            "(in the embedded default the API answers predictions)"
        )
    create_topics(app.settings.kafka)
    services = Services()
    services.install_signal_handlers()
    start_predictor(app, services)
    if not services.wait():
        sys.exit(1)


@click.command("scheduler")
@click.option("--check", is_flag=True, help="Validate the schedule, print each job's next fire times and exit.")
@click.option("--next", "show_next", default=3, show_default=True, type=click.IntRange(1, 1000),
              help="How many fire times --check prints per job.")
@click.pass_context
def scheduler(ctx: click.Context, check: bool, show_next: int) -> None:
    """Post the configured build commands on their cron schedule (settings 'schedule').

    Each firing posts {"type":"command","payload":"build_...","id":"cron:<job>:<slot>"};
    schedulers running the same schedule over the same store make one event per slot.
    See messages/schedule.toml for the seed's crontab.
    """
    from modelbus.cron.schedule import ScheduleError, plan

    settings = ctx.obj["settings"]
    try:
        planned = plan(settings.schedule)
    except ScheduleError as exc:
        raise click.ClickException(str(exc)) from None
    if not planned:
        raise click.ClickException(
            "the schedule is empty: add [[schedule]] jobs to modelbus.toml (example: messages/schedule.toml)"
        )
    if check:
        from datetime import datetime

        for p in planned:
            times, last = [], None
            now = datetime.now(timezone.utc)
            for _ in range(show_next):
                last = p.trigger.get_next_fire_time(last, last or now)
                if last is None:
                    break
                times.append(last.astimezone(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"))
            click.echo(f"{p.name}: '{p.job.cron}' ({p.job.timezone}) {p.job.command} dataset {p.job.dataset}; next {', '.join(times) or 'never'}")
        return

    from modelbus.cron.scheduler import run_scheduler
    from modelbus.runtime import Services

    app = open_app(ctx)
    services = Services()
    services.install_signal_handlers()
    services.start("scheduler", lambda stop: run_scheduler(app.publisher, app.settings.schedule, stop))
    if not services.wait():
        sys.exit(1)
