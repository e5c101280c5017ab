"""Engines for SQLite (the embedded default) and MySQL/MariaDB through PyMySQL."""
from __future__ import annotations

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url


def is_sqlite(engine: Engine) -> bool:
    """True for the embedded SQLite store."""
    return engine.dialect.name == "sqlite"


def make_engine(url: str, **kwargs) -> Engine:
    """An engine configured for the store's access pattern (serialised appends, polling followers)."""
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
            # WAL lets followers and the API read while an append is being written.
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        @event.listens_for(engine, "begin")
        def _begin(conn):
            conn.exec_driver_sql("BEGIN")

        return engine
    if parsed.get_backend_name() in ("mysql", "mariadb"):
        if "charset" not in parsed.query:
            parsed = parsed.update_query_dict({"charset": "utf8mb4"})
        return create_engine(
            parsed,
            pool_pre_ping=True,
            pool_recycle=1800,
            # Followers poll in short transactions; READ COMMITTED makes each statement
            # see every commit before it, and avoids gap locks on the append path.
            isolation_level="READ COMMITTED",
            **kwargs,
        )
    raise ValueError(f"unsupported database URL {parsed.render_as_string(hide_password=True)}: use sqlite:/// or mysql+pymysql://")


def reachable(engine: Engine) -> bool:
    """True when the database answers a trivial query now (a failure elsewhere was then the data's)."""
    from sqlalchemy import text

    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return True
    except Exception:
        return False
