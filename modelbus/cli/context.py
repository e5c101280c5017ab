"""What every command shares: the App of its settings, and the ranges numbers take."""
from __future__ import annotations

import click

from modelbus.messages.parse import INT64_MAX

# Numbers the store can hold: anything larger is a usage error, not a database traceback.
POSITION = click.IntRange(0, INT64_MAX)


COUNT = click.IntRange(1, INT64_MAX)


PARTITIONS = click.IntRange(1, 10_000)


def open_app(ctx: click.Context, migrate: bool = True):
    """The App of the command's settings, closed when the command ends."""
    from modelbus.app import App

    app = App(ctx.obj["settings"], migrate=migrate)
    ctx.call_on_close(app.close)
    return app
