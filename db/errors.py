"""The storage's own exceptions: what a failed database call means, whatever the backend or driver.

Every engine made by db.engine.make_engine raises these instead of driver or SQLAlchemy errors
(db.dialect maps them), so handlers, workers and the API decide between a retry, a 503 and
setting an event aside without knowing which database answered. The driver's error stays
chained as __cause__ (with its SQL statement, for the log).
"""
from __future__ import annotations


class StorageError(Exception):
    """A database call failed; `error` and `code` name the driver's error (DataError, 1264; IntegrityError, SQLITE_CONSTRAINT_UNIQUE).

    A StorageError that is neither an Outage, a Conflict nor a Refused is most likely a bug
    of ours (a missing table, a bad statement) or a rule of the database we do not know.
    """

    def __init__(self, reason: str, *, error: str | None = None, code: str | None = None):
        prefix = f"{error}{' ' + code if code else ''}: " if error else ""
        super().__init__(prefix + reason)
        self.reason = reason
        self.error = error or type(self).__name__
        self.code = code


class Outage(StorageError):
    """The database did not answer or cannot be used now (cannot connect, timed out, no pooled
    connection came free, disk full): nothing is wrong with the data; retry later."""


class LostConnection(Outage):
    """The connection dropped during the call (server gone away, restarted, a read timeout).

    A new connection may work at once. The statement itself may also have made the server drop
    it (a row over MySQL's max_allowed_packet): only a probe of the database tells the two apart.
    """


class Conflict(StorageError):
    """Another transaction was in the way (deadlock, lock wait timeout, SQLite busy or locked):
    retrying at once, after it committed, goes through."""


class Refused(StorageError):
    """The database refused the data (a value out of range, too long, not encodable): the same
    data fails again on a retry."""


class ConstraintViolation(Refused):
    """A constraint refused the row: a unique key already stored, a missing NOT NULL value.

    Where two writers may race for the same key (two ingest workers during a rebalance) it is a
    conflict instead: the store's append retries it and then sees the other's commit.
    """
