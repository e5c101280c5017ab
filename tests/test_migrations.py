"""Alembic migrations produce exactly the schema the code declares, on SQLite and MySQL."""
from __future__ import annotations

import threading

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import make_url

from modelbus.db.engine import make_engine
from modelbus.db.migrate import current_revision, head_revision, upgrade
from modelbus.db.schema import metadata


def test_migrated_schema_matches_the_declared_one(engine):
    assert current_revision(engine) == head_revision()
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(context, metadata) == []


def test_upgrade_twice_is_a_no_op(engine):
    upgrade(engine)
    upgrade(engine)
    assert current_revision(engine) == head_revision()
    assert set(metadata.tables) <= set(inspect(engine).get_table_names())


def test_processes_starting_together_migrate_once_on_mysql(mysql_url):
    """Two starts racing on an empty MySQL database both succeed (serialised by GET_LOCK)."""
    server = make_url(mysql_url)
    name = server.database + "_race"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"))
    url = server.set(database=name).render_as_string(hide_password=False)
    errors: list[BaseException] = []

    def start() -> None:
        engine = make_engine(url)
        try:
            upgrade(engine)
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            engine.dispose()

    try:
        threads = [threading.Thread(target=start) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        engine = make_engine(url)
        assert current_revision(engine) == head_revision()
        engine.dispose()
    finally:
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
        admin.dispose()
