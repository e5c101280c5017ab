"""Alembic migrations, run by `modelbus db upgrade` and on every start."""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, text

from modelbus.db.engine import SQLITE_BEGIN

MIGRATIONS = Path(__file__).with_name("migrations")
_LOCK = "modelbus_migrate"


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic config pointing at db/migrations, bound to a connection when given."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


@contextmanager
def _migration_lock(connection: Connection) -> Iterator[None]:
    # Two processes starting together must not both create the tables: MySQL DDL is
    # not transactional, so serialise on a named server lock. SQLite: see upgrade().
    if connection.dialect.name in ("mysql", "mariadb"):
        got = connection.execute(text("SELECT GET_LOCK(:name, 120)"), {"name": _LOCK}).scalar()
        if got != 1:
            raise RuntimeError("timed out waiting for another process's migration")
        try:
            yield
        finally:
            connection.execute(text("SELECT RELEASE_LOCK(:name)"), {"name": _LOCK})
    else:
        yield


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to `revision` (default: the newest)."""
    with engine.connect() as plain:
        # SQLite: the write lock before the version is read, so a second process waits and then
        # finds the schema current (MySQL serialises on the named lock below).
        connection = plain.execution_options(**{SQLITE_BEGIN: "BEGIN IMMEDIATE"})
        with _migration_lock(connection):
            command.upgrade(alembic_config(connection), revision)
            connection.commit()


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at, or None before the first migration."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str:
    """The newest revision in db/migrations."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head
