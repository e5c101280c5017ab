"""`modelbus db`: the schema's migrations."""
from __future__ import annotations

import click

from modelbus.cli.context import open_app


@click.group()
def db() -> None:
    """Database schema (Alembic migrations)."""


@db.command("upgrade")
@click.pass_context
def db_upgrade(ctx: click.Context) -> None:
    """Migrate the schema to the newest revision (also done on every start)."""
    from modelbus.db.migrate import current_revision

    app = open_app(ctx)
    click.echo(f"database at revision {current_revision(app.engine)}")


@db.command("current")
@click.pass_context
def db_current(ctx: click.Context) -> None:
    """Print the schema revision without migrating."""
    from modelbus.db.migrate import current_revision, head_revision

    app = open_app(ctx, migrate=False)
    click.echo(f"current {current_revision(app.engine) or 'none'}, newest {head_revision()}")
