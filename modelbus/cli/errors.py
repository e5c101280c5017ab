"""One-line explanations of what operators meet at start: a database that is not there, a busy port."""
from __future__ import annotations

import errno

# MySQL client and server error numbers, as db.errors keeps them.
_UNKNOWN_DATABASE = "1049"
_ACCESS_DENIED = ("1044", "1045")
_UNREACHABLE = ("2003", "2005", "2006", "2013")


def database_problem(database_url: str | None, exc: BaseException) -> str | None:
    """A one-line explanation when exc says the configured database cannot be used; None otherwise."""
    from sqlalchemy.engine import make_url

    from modelbus.db.errors import StorageError

    if not isinstance(exc, StorageError) or database_url is None:
        return None
    url = make_url(database_url)
    shown = url.render_as_string(hide_password=True)
    if url.get_backend_name() == "sqlite":
        if "unable to open database file" in exc.reason:
            return (f"cannot open the SQLite database {url.database!r} ({shown}): does its directory exist "
                    "and is it writable? (set MODELBUS_DATABASE_URL or --database-url)")
        return None
    code = exc.code
    where = f"{url.host or 'localhost'}:{url.port or 3306}"
    if code == _UNKNOWN_DATABASE:
        return (f"database '{url.database}' does not exist on the MySQL server at {where} ({shown}); create it with: "
                f"CREATE DATABASE `{url.database}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
    if code in _ACCESS_DENIED:
        return f"the MySQL server at {where} refused user '{url.username}' ({shown}): {exc.reason}"
    if code in _UNREACHABLE:
        return (f"cannot reach the MySQL server at {where} ({shown}): {exc.reason}; is it running? "
                "(set MODELBUS_DATABASE_URL or --database-url)")
    return None


def listen_problem(host: str, port: int, exc: BaseException, how: str) -> str:
    """A one-line explanation of why a server cannot listen on host:port; `how` says what changes the port."""
    if isinstance(exc, OSError) and exc.errno == errno.EADDRINUSE:
        return f"cannot listen on {host}:{port}: the port is in use by another process; choose another with {how}"
    if isinstance(exc, OSError) and exc.errno == errno.EACCES:
        return f"cannot listen on {host}:{port}: permission denied (ports below 1024 need privileges); choose another with {how}"
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return f"cannot listen on {host}:{port}: {reason}"
