"""`modelbus alerts`: what the alert rules raised, newest first."""
from __future__ import annotations

import json

import click

from modelbus.cli.context import open_app
from modelbus.messages.types import MODEL_KINDS


@click.command()
@click.option("--rule", help="Only this rule's alerts.")
@click.option("--model", type=click.Choice(MODEL_KINDS), help="Only this model kind.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 1000), help="How many to list.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.pass_context
def alerts(ctx: click.Context, rule: str | None, model: str | None, limit: int, as_json: bool) -> None:
    """List alerts raised by the rules in settings (`[[alerts]]`), newest first."""
    from modelbus.db import alerts as alert_rows
    from modelbus.handlers.serving.alerting import alert_json

    app = open_app(ctx)
    rows = alert_rows.listed(app.engine, rule=rule, model=model, limit=limit)
    for row in rows:
        if as_json:
            click.echo(json.dumps(alert_json(row), sort_keys=True))
            continue
        version = f"v{row['version']}" if row["version"] is not None else "-"
        value = f"{row['value']:.4g}" if row["value"] is not None else "-"
        click.echo(f"{row['created_at']:%Y-%m-%d %H:%M:%S}  {row['rule']:<16} {row['model']:<6} {row['dataset']:<12} "
                   f"{version:<5} {value:>8}  {row['subject']}  ({row['detail']}{', rebuild' if row['action'] == 'rebuild' else ''})")
    if not as_json:
        click.echo(f"{len(rows)} alerts", err=True)
