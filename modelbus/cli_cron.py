"""`modelbus scheduler`: the cron schedule alone, until SIGINT/SIGTERM."""
from __future__ import annotations

import sys
from datetime import timezone

import click


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
    from modelbus.cli import _app
    from modelbus.runtime import Services

    app = _app(ctx)
    services = Services()
    services.install_signal_handlers()
    services.start("scheduler", lambda stop: run_scheduler(app, stop))
    if not services.wait():
        sys.exit(1)
