"""`modelbus status`: where every part stands."""
from __future__ import annotations

import json

import click

from modelbus.cli.context import open_app


def _cell(value) -> str:
    return "-" if value is None else str(value)


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object.")
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """Handler positions and lag, consumer lag per topic, production versions, last build results."""
    from modelbus.status import collect

    report = collect(open_app(ctx))
    if as_json:
        click.echo(json.dumps(report, default=str))
        return
    click.echo(f"mode {report['mode']}, database {report['database']}")
    click.echo(f"log head {report['log_head']}, dead letters {report['dead_letters']}")
    click.echo("\nhandlers")
    for h in report["handlers"]:
        click.echo(f"  {h['handler']:<18} position {h['position']:>8}  lag {h['lag']:>6}  lease {_cell(h['owner'])}")
    failed = report["handler_failures"]
    if failed["count"]:
        click.echo(f"  handler failures {failed['count']} (events moved past without being applied; newest first)")
        for f in failed["recent"]:
            code = f" {f['code']}" if f["code"] else ""
            click.echo(f"    {f['handler']} position {f['position']} (id {f['event_id']}): {f['error']}{code}: {f['message']}")
    if "consumers" in report or "consumers_error" in report:
        click.echo("\nconsumers")
        if "consumers_error" in report:
            click.echo(f"  broker unreachable: {report['consumers_error']}")
        for c in report.get("consumers", []):
            click.echo(
                f"  {c['group']:<24} {c['topic']:<26} partition {_cell(c['partition']):>3}  "
                f"committed {_cell(c['committed']):>8}  end {_cell(c['end']):>8}  lag {_cell(c['lag']):>6}"
            )
    click.echo("\nmodels")
    if not report["models"]:
        click.echo("  no builds yet")
    for m in report["models"]:
        metric = "-" if m["main_metric"] is None else f"{m['main_metric']:.4f}"
        build = m["last_build"]
        last = "-" if build is None else f"{build['status']} at position {build['position']}" + (
            f": {build['reason']}" if build.get("reason") else f" -> v{build['version']}"
        )
        click.echo(f"  {m['model']:<7} {m['dataset']:<14} production {_cell(m['production']):>4}  metric {metric}  last build {last}")
