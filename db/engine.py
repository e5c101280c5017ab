"""Engines for SQLite (the embedded default) and MySQL/MariaDB through PyMySQL."""
from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from modelbus.db.breaker import Breaker, guarded_pool, watch


@dataclass(frozen=True)
class DbTimeouts:
    """How long a MySQL engine waits, in seconds: for a TCP connect, for each read or write on a
    connection (PyMySQL's read_timeout and write_timeout, so the time between packets, not a
    whole result), and for a pooled connection when all are in use."""

    connect: float
    io: float
    pool: float


# The execution option naming the statement that opens a SQLite transaction.
SQLITE_BEGIN = "sqlite_begin"


def is_sqlite(engine: Engine) -> bool:
    """True for the embedded SQLite store."""
    return engine.dialect.name == "sqlite"


def make_engine(url: str, timeouts: DbTimeouts | None = None, *, breaker: bool = False,
                pool_size: int | None = None, **kwargs) -> Engine:
    """An engine configured for the store's access pattern (serialised appends, polling followers).

    MySQL only: `timeouts` bound every wait (None leaves PyMySQL's: 10 s to connect, reads and
    writes unbounded); `breaker` makes calls fail at once while the server is known not to
    answer (db.breaker); `pool_size` caps the connections (no overflow). SQLite keeps its busy
    timeout: it has no server that could stop answering.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = create_engine(
            parsed,
            # Autocommit at the driver so SQLAlchemy's "begin" below is the only BEGIN:
            # pysqlite's own transaction handling defers BEGIN and breaks SAVEPOINTs.
            connect_args={"isolation_level": None, "timeout": 30, "check_same_thread": False},
            **kwargs,
        )

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record):
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA busy_timeout=30000")
            # WAL lets followers and the API read while an append is being written. Turning it
            # on needs the file to itself and SQLite does not wait for that (no busy handler):
            # a process starting beside another on a new file retries until the other is done.
            for attempt in range(200):
                try:
                    cur.execute("PRAGMA journal_mode=WAL")
                    break
                except sqlite3.OperationalError as exc:
                    if "locked" not in str(exc) or attempt == 199:
                        raise
                    time.sleep(0.05)
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        @event.listens_for(engine, "begin")
        def _begin(conn):
            # A connection may ask for the write lock up front (execution option sqlite_begin =
            # "BEGIN IMMEDIATE"): migrations do, so two processes starting on a new file do not
            # both read "no schema yet" and then both create it.
            conn.exec_driver_sql(conn.get_execution_options().get(SQLITE_BEGIN, "BEGIN"))

        return engine
    if parsed.get_backend_name() in ("mysql", "mariadb"):
        if "charset" not in parsed.query:
            parsed = parsed.update_query_dict({"charset": "utf8mb4"})
        connect_args: dict[str, Any] = {}
        pool_args: dict[str, Any] = {}
        if timeouts is not None:
            connect_args.update(connect_timeout=timeouts.connect, read_timeout=timeouts.io, write_timeout=timeouts.io)
            pool_args["pool_timeout"] = timeouts.pool
        if pool_size is not None:
            pool_args.update(pool_size=pool_size, max_overflow=0)
        guard = None
        if breaker:
            # The probe connects afresh each time: the pool's connections are what it tests.
            probe_engine = create_engine(parsed, poolclass=NullPool, connect_args=connect_args)

            def probe() -> None:
                with probe_engine.connect() as conn:
                    conn.exec_driver_sql("SELECT 1")

            guard = Breaker(probe, f"{parsed.host}:{parsed.port or 3306}/{parsed.database}")
            pool_args["poolclass"] = guarded_pool(guard)
        engine = create_engine(
            parsed,
            pool_pre_ping=True,
            pool_recycle=1800,
            # Followers poll in short transactions; READ COMMITTED makes each statement
            # see every commit before it, and avoids gap locks on the append path.
            isolation_level="READ COMMITTED",
            connect_args=connect_args,
            **pool_args,
            **kwargs,
        )
        if guard is not None:
            watch(engine, guard)
        return engine
    raise ValueError(f"unsupported database URL {parsed.render_as_string(hide_password=True)}: use sqlite:/// or mysql+pymysql://")


def breaker_of(engine: Engine) -> Breaker | None:
    """The circuit breaker of an engine made with breaker=True, else None."""
    return getattr(engine.pool, "breaker", None)


def reachable(engine: Engine) -> bool:
    """True when the database answers a trivial query now (a failure elsewhere was then the data's)."""
    from sqlalchemy import text

    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return True
    except Exception:
        return False
