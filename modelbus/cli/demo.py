"""`modelbus demo`: the synthetic demo data set (rule plus seeded noise, see modelbus/demo.py)."""
from __future__ import annotations

import sys

import click

from modelbus import demo as demo_data
from modelbus.cli.context import open_app


@click.group("demo")
def demo() -> None:
    """The synthetic demo data set: judge_a,judge_b,judge_c,score (score 0..10).

    \b
    score = round((2*judge_a + 3*judge_b + 5*judge_c) / 10) + noise
    noise = -1 or +1 on 20% of rows (seeded), clipped to 0..10
    """


_rows = click.option("--rows", "n", default=demo_data.DEFAULT_ROWS, show_default=True, type=click.IntRange(0, 1_000_000), help="How many rows.")
_seed = click.option("--seed", default=demo_data.DEFAULT_SEED, show_default=True, type=click.IntRange(0, 2**63 - 1),
                     help="Seed of the noise: the same seed gives the same rows.")


@demo.command("load")
@_rows
@_seed
@click.option("--dataset", default="default", show_default=True)
@click.option("--build", "builds", multiple=True, type=click.Choice(["build_mlp", "build_dtr", "build_linear", "build_slr"]),
              help="Build commands posted after the rows (repeatable). Default: build_mlp and build_linear.")
@click.option("--no-build", is_flag=True, help="Post only the rows.")
@click.pass_context
def demo_load(ctx: click.Context, n: int, seed: int, dataset: str, builds: tuple[str, ...], no_build: bool) -> None:
    """Post the demo rows as training events, then build commands (ids are stable: loading twice adds nothing)."""

    app = open_app(ctx)
    chosen = () if no_build else (builds or demo_data.DEMO_BUILDS)
    result = demo_data.post_demo(app.client_publisher, n, seed, dataset, chosen)
    counts = ", ".join(f"{count} {status}" for status, count in sorted(result.rows.items())) or "none"
    click.echo(f"demo: {n} rows (seed {seed}) to dataset {dataset}: {counts}")
    for command, status in result.builds.items():
        click.echo(f"demo: {command} {status} (id {result.build_ids[command]})")
    for message in result.errors:
        click.echo(f"demo: rejected: {message}", err=True)
    if result.errors:
        sys.exit(1)


@demo.command("csv")
@_rows
@_seed
@click.option("--header/--no-header", default=True, show_default=True)
@click.option("-o", "--output", type=click.File("w"), default="-", help="File to write; '-' is stdout.")
def demo_csv(n: int, seed: int, header: bool, output) -> None:
    """Write the demo rows as CSV (for `modelbus send --csv`)."""
    for line in demo_data.csv_lines(n, seed, header):
        output.write(line + "\n")


@demo.command("windows")
@click.option("--users", default=50, show_default=True, type=click.IntRange(1, 100_000), help="Users (and students).")
@click.option("--hours", default=2, show_default=True, type=click.IntRange(1, 24 * 30), help="Hours of event time.")
@_seed
@click.pass_context
def demo_windows(ctx: click.Context, users: int, hours: int, seed: int) -> None:
    """Post raw page views (stream pageviews, one user in ten a bot) and course activity (stream moodle_logs).

    \b
    Declare the windows that read them, e.g. MODELBUS_CONFIG=messages/windows_bots.toml
    (seed 000: views per user, 10m hopping by 2m) or messages/windows_sessions.toml
    (seed 003: sessions, 15m gap); closed windows are at GET /api/windows/<name>.
    """
    from modelbus.window_demo import raw_events

    app = open_app(ctx)
    events = raw_events(users, hours, seed)
    counts: dict[str, int] = {}
    for start in range(0, len(events), demo_data.BATCH):
        for outcome in app.client_publisher.post(events[start:start + demo_data.BATCH], "cli"):
            counts[outcome.status] = counts.get(outcome.status, 0) + 1
    summary = ", ".join(f"{count} {status}" for status, count in sorted(counts.items()))
    click.echo(f"demo: {len(events)} raw events ({users} users, {hours} h, seed {seed}): {summary}")
    declared = ", ".join(w.name for w in app.settings.windows) or "none: see messages/windows_*.toml"
    click.echo(f"demo: windows declared: {declared}")
    if counts.get("rejected"):
        sys.exit(1)
