"""What differs between the backends, SQLite (the embedded default) and MySQL/MariaDB (PyMySQL),
in one place: column types, how an engine is set up and a transaction starts, how the log head
is locked, the bulk insert, the migration lock, and what each driver error means (db.errors).

Everything else in db/ is written once for both.
"""
from __future__ import annotations

import sqlite3
import time
from contextlib import contextmanager
from datetime import datetime
from typing import Any, Callable, Iterator, Sequence

from pymysql.constants import SERVER_STATUS
from sqlalchemy import (
    BigInteger,
    Connection,
    DateTime,
    Engine,
    Float,
    Integer,
    LargeBinary,
    Table,
    Text,
    create_engine,
    event,
    text,
    update,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import URL

from modelbus.db.errors import Conflict, ConstraintViolation, LostConnection, Outage, Refused, StorageError

MYSQL = ("mysql", "mariadb")

# The execution option naming the statement that opens a SQLite transaction.
SQLITE_BEGIN = "sqlite_begin"
# How long a SQLite connection waits for another's write lock, in seconds.
SQLITE_BUSY_SECONDS = 30

# PyMySQL client and server error numbers (its errors' first argument).
MYSQL_UNREACHABLE = frozenset({2002, 2003})  # cannot connect (socket, TCP; a connect timeout too)
MYSQL_LOST = frozenset({2006, 2013})  # gone away, lost connection (a read or write timeout too)
MYSQL_CONFLICT = frozenset({1205, 1213})  # lock wait timeout, deadlock
# sqlite3's error names (extended names start with these, e.g. SQLITE_IOERR_WRITE).
SQLITE_CONFLICT = ("SQLITE_BUSY", "SQLITE_LOCKED")
SQLITE_OUTAGE = ("SQLITE_FULL", "SQLITE_IOERR", "SQLITE_CANTOPEN")
SQLITE_REFUSED = ("SQLITE_TOOBIG", "SQLITE_MISMATCH", "SQLITE_RANGE")

_MIGRATION_LOCK = "modelbus_migrate"


# --- column types (db.schema; the migrations keep copies of their own) ----------------------

# SQLite only auto-increments an INTEGER PRIMARY KEY.
AutoId = BigInteger().with_variant(Integer(), "sqlite")
# MySQL's TEXT and BLOB stop at 64 KiB; a message may be larger.
LongText = Text().with_variant(mysql.MEDIUMTEXT(), *MYSQL)
LongBlob = LargeBinary().with_variant(mysql.LONGBLOB(), *MYSQL)
# Microseconds, so the receive order of a batch is visible.
Timestamp = DateTime().with_variant(mysql.DATETIME(fsp=6), *MYSQL)
# asdecimal=False: MySQL DOUBLE otherwise comes back as a Decimal rounded to 10 places.
Double = Float(precision=53).with_variant(mysql.DOUBLE(asdecimal=False), *MYSQL)
# Every MySQL table: transactional, and case- and accent-exact text (event ids, dataset names).
MYSQL_TABLE = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"}


def is_mysql(bind: Engine | Connection) -> bool:
    """True for MySQL or MariaDB."""
    return bind.dialect.name in MYSQL


def is_sqlite(bind: Engine | Connection) -> bool:
    """True for the embedded SQLite store."""
    return bind.dialect.name == "sqlite"


# --- engines ------------------------------------------------------------------------------

def sqlite_engine(url: URL, **kwargs: Any) -> Engine:
    """A SQLite engine: WAL, a busy timeout, and transactions that begin where SQLAlchemy says."""
    engine = create_engine(
        url,
        # Autocommit at the driver so SQLAlchemy's "begin" below is the only BEGIN:
        # pysqlite's own transaction handling defers BEGIN and breaks SAVEPOINTs.
        connect_args={"isolation_level": None, "timeout": SQLITE_BUSY_SECONDS, "check_same_thread": False},
        **kwargs,
    )

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn, _record):
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_SECONDS * 1000}")
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


def mysql_url(url: URL) -> URL:
    """The URL with utf8mb4 unless it names a charset (PyMySQL's default cannot hold every character)."""
    return url if "charset" in url.query else url.update_query_dict({"charset": "utf8mb4"})


def mysql_engine(url: URL, connect_args: dict[str, Any], **kwargs: Any) -> Engine:
    """A MySQL engine for the store's access pattern (serialised appends, polling followers)."""
    return create_engine(
        mysql_url(url),
        pool_pre_ping=True,
        pool_recycle=1800,
        # Followers poll in short transactions; READ COMMITTED makes each statement
        # see every commit before it, and avoids gap locks on the append path.
        isolation_level="READ COMMITTED",
        connect_args=connect_args,
        **kwargs,
    )


# --- statements ---------------------------------------------------------------------------

def lock_log_head(conn: Connection, log_head: Table) -> None:
    """Take the log head's lock for the rest of the transaction: appenders queue here.

    A write that changes nothing does it on both backends: on MySQL the row lock, on SQLite
    the database's write lock, taken before any read (SQLite cannot upgrade a read snapshot
    that another writer has moved past, and fails at once instead of waiting).
    """
    conn.execute(update(log_head).where(log_head.c.id == 1).values(position=log_head.c.position))


# PyMySQL's executemany sends statements of at most this many bytes (Cursor.max_stmt_length):
# far under any server's max_allowed_packet.
_STATEMENT_BYTES = 1024000


def insert_rows(conn: Connection, table: Table, columns: Sequence[str], rows: Sequence[tuple]) -> None:
    """Insert rows given as tuples in `columns` order; on MySQL as multi-row INSERTs rendered here.

    The values must need no bind processing (ints, strings, None, datetimes). PyMySQL's
    executemany escapes every value through its generic converters (a dozen calls per row,
    the larger part of ingest's CPU); here a string seen before in the batch (a type, a
    dataset, a topic) reuses its literal, and each value is escaped once by the connection.
    """
    if not rows:
        return
    if not is_mysql(conn):
        conn.execute(table.insert(), [dict(zip(columns, row)) for row in rows])
        return
    escape = conn.connection.dbapi_connection.escape  # type: ignore[union-attr]
    quote = conn.dialect.identifier_preparer.quote
    head = f"INSERT INTO {quote(table.name)} ({', '.join(quote(c) for c in columns)}) VALUES "
    # Literals of the strings and datetimes seen so far (no two of those types compare equal).
    literals: dict[str | datetime, str] = {}
    parts: list[str] = []
    size = len(head)
    for row in rows:
        rendered = []
        for value in row:
            kind = type(value)
            if kind is str or kind is datetime:
                literal = literals.get(value)
                if literal is None:
                    literal = literals[value] = escape(value)
            elif kind is int:
                literal = str(value)
            elif value is None:
                literal = "NULL"
            else:
                literal = escape(value)
            rendered.append(literal)
        text_row = "(" + ",".join(rendered) + ")"
        if parts and size + len(text_row) + 1 > _STATEMENT_BYTES:
            _execute_literal(conn, head + ",".join(parts))
            parts, size = [], len(head)
        parts.append(text_row)
        size += len(text_row) + 1
    _execute_literal(conn, head + ",".join(parts))


def _execute_literal(conn: Connection, sql: str) -> None:
    # The driver still applies %-formatting to a statement run without parameters.
    conn.exec_driver_sql(sql.replace("%", "%%"))


def insert_ignore(conn: Connection, table: Table, rows: list[dict]) -> int:
    """Insert rows in one executemany, skipping those whose unique key is taken; how many were inserted.

    Through the driver with tuples, as insert_many: Core's per-row dict processing would cost a
    serving process more CPU than the rows themselves (the recorder shares the GIL with serving).
    """
    if not rows:
        return 0
    columns = list(rows[0])
    quote = conn.dialect.identifier_preparer.quote
    mysql = is_mysql(conn)
    verb, mark = ("INSERT IGNORE INTO", "%s") if mysql else ("INSERT OR IGNORE INTO", "?")
    sql = (f"{verb} {quote(table.name)} ({', '.join(quote(c) for c in columns)}) "
           f"VALUES ({', '.join([mark] * len(columns))})")
    values = [tuple(row[c] for c in columns) for row in rows]
    if not mysql:
        # SQLAlchemy's SQLite DateTime reads this text form back; sqlite3's own adapter is deprecated.
        values = [tuple(v.strftime("%Y-%m-%d %H:%M:%S.%f") if isinstance(v, datetime) else v for v in row)
                  for row in values]
    return conn.exec_driver_sql(sql, values).rowcount


# What MySQL's string literals escape with a backslash (as PyMySQL's escape_string does).
_BACKSLASHED = str.maketrans({"\0": "\\0", "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\032": "\\Z",
                              '"': '\\"', "'": "\\'"})


def _string_literal(dbapi_conn: Any) -> Callable[[str], str]:
    """A string as a quoted MySQL literal for this connection: one translate, unless the server's
    NO_BACKSLASH_ESCAPES mode is on (then PyMySQL's own escape, which doubles quotes instead)."""
    if dbapi_conn.server_status & SERVER_STATUS.SERVER_STATUS_NO_BACKSLASH_ESCAPES:
        return dbapi_conn.escape
    return lambda value: "'" + value.translate(_BACKSLASHED) + "'"


def insert_plain(conn: Connection, table: Table, columns: list[str], rows: list[tuple]) -> None:
    """Insert rows of only strings and integers (as tuples in `columns` order) in one statement per 2000 rows.

    On MySQL the statement's text is built here with the driver's own escaping: PyMySQL's
    executemany formats every value through its generic converters, several times slower for
    the hundreds of thousands of narrow rows a window projection writes.
    """
    if not rows:
        return
    if not is_mysql(conn):
        conn.execute(table.insert(), [dict(zip(columns, row)) for row in rows])
        return
    escape = _string_literal(conn.connection.dbapi_connection)
    quote = conn.dialect.identifier_preparer.quote
    head = f"INSERT INTO {quote(table.name)} ({', '.join(quote(c) for c in columns)}) VALUES "
    # Column by column: each value's literal through map (no Python frame per value where it can be
    # helped), a column of few distinct strings (a window's name, a key) escaped once per string.
    literals = []
    for column in zip(*rows):
        types = set(map(type, column))
        if types == {int}:
            literals.append(list(map(str, column)))
            continue
        distinct = set(column)
        if len(distinct) * 2 <= len(column):
            escaped = {v: str(v) if type(v) is int else escape(v) for v in distinct}
            literals.append(list(map(escaped.__getitem__, column)))
        elif types == {str}:
            literals.append(list(map(escape, column)))
        else:
            literals.append([str(v) if type(v) is int else escape(v) for v in column])
    row_text = ("(" + ",".join(["{}"] * len(columns)) + ")").format
    # No parameters: the driver sends the text as it is (no %-formatting pass over it, no %% to double).
    # (Per statement: Connection.execution_options would change the caller's connection.)
    for start in range(0, len(rows), 2000):
        conn.exec_driver_sql(head + ",".join(map(row_text, *(column[start:start + 2000] for column in literals))),
                             execution_options={"no_parameters": True})


def replace_many(conn: Connection, table: Table, rows: list[dict]) -> None:
    """Insert rows, each replacing the row of the same primary key (MySQL REPLACE, SQLite INSERT OR REPLACE)."""
    if not rows:
        return
    if not is_mysql(conn):
        conn.execute(table.insert().prefix_with("OR REPLACE"), rows)
        return
    columns = list(rows[0])
    quote = conn.dialect.identifier_preparer.quote
    sql = (
        f"REPLACE INTO {quote(table.name)} ({', '.join(quote(c) for c in columns)}) "
        f"VALUES ({', '.join(['%s'] * len(columns))})"
    )
    conn.exec_driver_sql(sql, [tuple(row[c] for c in columns) for row in rows])


@contextmanager
def migration_lock(connection: Connection) -> Iterator[Connection]:
    """The connection to migrate on, held by this process alone until the block ends.

    Two processes starting together must not both create the tables. MySQL DDL is not
    transactional: serialise on a named server lock. SQLite: the write lock before the version
    is read (BEGIN IMMEDIATE), so a second process waits and then finds the schema current.
    """
    if not is_mysql(connection):
        yield connection.execution_options(**{SQLITE_BEGIN: "BEGIN IMMEDIATE"})
        return
    got = connection.execute(text("SELECT GET_LOCK(:name, 120)"), {"name": _MIGRATION_LOCK}).scalar()
    if got != 1:
        raise RuntimeError("timed out waiting for another process's migration")
    try:
        yield connection
    finally:
        connection.execute(text("SELECT RELEASE_LOCK(:name)"), {"name": _MIGRATION_LOCK})


# --- errors -------------------------------------------------------------------------------

def _mysql_code(orig: BaseException) -> int | None:
    args = getattr(orig, "args", ())
    return args[0] if args and isinstance(args[0], int) else None


def no_answer(orig: BaseException) -> bool:
    """True for a driver error saying the MySQL server did not answer (not an error in the statement)."""
    return _mysql_code(orig) in MYSQL_UNREACHABLE | MYSQL_LOST


def storage_error(orig: BaseException, dbapi: Any, *, disconnect: bool = False) -> StorageError:
    """Our exception for a driver error (`dbapi` is the driver's module); `disconnect` when SQLAlchemy saw the connection drop."""
    args = orig.args
    code = _mysql_code(orig)
    if code is not None:
        # PyMySQL errors are (errno, message).
        error, shown, reason = type(orig).__name__, str(code), str(args[1]) if len(args) > 1 else str(orig)
    else:
        # sqlite3 errors carry their name (SQLITE_TOOBIG, ...).
        error, shown, reason = type(orig).__name__, getattr(orig, "sqlite_errorname", None), str(orig)
    name = shown or ""
    if disconnect or code in MYSQL_LOST:
        kind: type[StorageError] = LostConnection
    elif code in MYSQL_UNREACHABLE or name.startswith(SQLITE_OUTAGE):
        kind = Outage
    elif code in MYSQL_CONFLICT or name.startswith(SQLITE_CONFLICT):
        kind = Conflict
    elif isinstance(orig, dbapi.IntegrityError):
        kind = ConstraintViolation
    elif isinstance(orig, dbapi.DataError) or name.startswith(SQLITE_REFUSED):
        kind = Refused
    else:
        kind = StorageError
    return kind(reason, error=error, code=shown)


def map_errors(engine: Engine) -> None:
    """Raise db.errors' exceptions instead of the driver's from every call on `engine`.

    Register it after any other handle_error listener (db.breaker's): raising ends the chain.
    """

    @event.listens_for(engine, "handle_error")
    def _ours(context: Any) -> None:
        dbapi = context.dialect.loaded_dbapi
        # A failed pre-ping is the pool's to handle (it reconnects); other errors (Python's
        # own, a cancelled call) are not the database's.
        if context.is_pre_ping or not isinstance(context.original_exception, dbapi.Error):
            return
        # SQLAlchemy's reflection catches the driver's error itself (MySQL's has_table asks
        # DESCRIBE and takes "no such table" for False); it marks those statements so.
        execution = context.execution_context
        if execution is not None and execution.execution_options.get("skip_user_error_events"):
            return
        raise storage_error(context.original_exception, dbapi, disconnect=context.is_disconnect)
