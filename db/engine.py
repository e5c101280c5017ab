"""Engines for SQLite (the embedded default) and MySQL/MariaDB through PyMySQL.

Every engine made here raises db.errors' exceptions, never the driver's (db.dialect maps them).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import TimeoutError as PoolWaitTimeout
from sqlalchemy.pool import NullPool, QueuePool

from modelbus.db import dialect
from modelbus.db.breaker import Breaker, watch
from modelbus.db.dialect import SQLITE_BEGIN, is_sqlite  # noqa: F401  (the names callers import from here)
from modelbus.db.errors import Outage


@dataclass(frozen=True)
class DbTimeouts:
    """How long a MySQL engine waits, in seconds: for a TCP connect, for each read or write on a
    connection (PyMySQL's read_timeout and write_timeout, so the time between packets, not a
    whole result), and for a pooled connection when all are in use."""

    connect: float
    io: float
    pool: float


def store_pool(guard: Breaker | None = None) -> type[QueuePool]:
    """A QueuePool class whose checkouts raise db.errors: Outage when no connection comes free in
    time, DatabaseUnavailable at once while `guard` (a circuit breaker) is open.

    The breaker's check comes before the pool's wait and its pre-ping, each of which would
    otherwise hold the caller for a full timeout on a database that does not answer.
    """

    class StorePool(QueuePool):
        # Log as SQLAlchemy's own pools do (quiet unless asked), not as a "db.engine" logger.
        _sqla_logger_namespace = "sqlalchemy.pool.impl.StorePool"
        breaker = guard

        def connect(self) -> Any:
            if guard is not None:
                guard.check()
            try:
                return super().connect()
            except PoolWaitTimeout as exc:
                raise Outage(f"no pooled connection came free within {self.timeout():g}s",
                             error="TimeoutError") from exc
            except self._dialect.loaded_dbapi.Error as exc:
                # A pre-ping failing other than by a disconnect reaches here unmapped.
                raise dialect.storage_error(exc, self._dialect.loaded_dbapi) from exc

    return StorePool


def make_engine(url: str, timeouts: DbTimeouts | None = None, *, breaker: bool = False,
                pool_size: int | None = None, **kwargs) -> Engine:
    """An engine configured for the store's access pattern (serialised appends, polling followers).

    MySQL only: `timeouts` bound every wait (None leaves PyMySQL's: 10 s to connect, reads and
    writes unbounded); `breaker` makes calls fail at once while the server is known not to
    answer (db.breaker); `pool_size` caps the connections (no overflow). SQLite keeps its busy
    timeout: it has no server that could stop answering.
    """
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        # A file database pools connections; an in-memory one keeps SQLAlchemy's own pool.
        if "poolclass" not in kwargs and issubclass(parsed.get_dialect().get_pool_class(parsed), QueuePool):
            kwargs["poolclass"] = store_pool()
        engine = dialect.sqlite_engine(parsed, **kwargs)
    elif backend in dialect.MYSQL:
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
            probe_engine = create_engine(dialect.mysql_url(parsed), poolclass=NullPool, connect_args=connect_args)

            def probe() -> None:
                with probe_engine.connect() as conn:
                    conn.exec_driver_sql("SELECT 1")

            guard = Breaker(probe, f"{parsed.host}:{parsed.port or 3306}/{parsed.database}")
        engine = dialect.mysql_engine(parsed, connect_args, poolclass=store_pool(guard), **pool_args, **kwargs)
        if guard is not None:
            watch(engine, guard)
    else:
        raise ValueError(f"unsupported database URL {parsed.render_as_string(hide_password=True)}: "
                         "use sqlite:/// or mysql+pymysql://")
    # Last: raising our exception ends the chain of handle_error listeners.
    dialect.map_errors(engine)
    return engine


def breaker_of(engine: Engine) -> Breaker | None:
    """The circuit breaker of an engine made with breaker=True, else None."""
    return getattr(engine.pool, "breaker", None)


def reachable(engine: Engine) -> bool:
    """True when the database answers a trivial query now (a failure elsewhere was then the data's)."""
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return True
    except Exception:
        return False
