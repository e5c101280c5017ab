"""Database failures surface as db.errors' exceptions on every backend, and each caller reads them the same way.

Each fault is injected for real: a lock another transaction holds, a duplicate key, a NULL where
none may be, a value out of MySQL's range, a server that is not there, a connection cut mid-call.
"""
from __future__ import annotations

import sqlite3

import pymysql
import pytest
from sqlalchemy.engine import make_url

from modelbus.api.errors import is_outage as api_outage
from modelbus.broker import free_port
from modelbus.db.breaker import DatabaseUnavailable
from modelbus.db.engine import make_engine
from modelbus.db.errors import Conflict, ConstraintViolation, LostConnection, Outage, Refused, StorageError
from modelbus.db.events import EventStore
from modelbus.db.failures import describe
from modelbus.handlers.follow.follower import transient
from modelbus.handlers.workers.ingest import is_outage as ingest_outage
from tcp_proxy import FreezableProxy
from tests.test_event_store import msg, training
from tests.test_registry import build_row

DRIVER_ERRORS = (sqlite3.Error, pymysql.err.Error)


def give_up_waiting_soon(conn) -> None:
    """Make this connection wait for another's lock a moment instead of half a minute."""
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql("PRAGMA busy_timeout=100")
    else:
        conn.exec_driver_sql("SET SESSION innodb_lock_wait_timeout=1")
    conn.commit()


def test_a_lock_another_transaction_holds_is_a_conflict(store):
    with store.transaction() as holder:
        store.append_in(holder, [msg(training("1,2,3,4"))])  # holds the log head until it commits
        with store.engine.connect() as other:
            give_up_waiting_soon(other)
            with pytest.raises(Conflict) as caught:
                with other.begin():
                    store.append_in(other, [msg(training("5,6,7,8"))])
    assert caught.value.code in ("1205", "SQLITE_BUSY"), caught.value
    assert isinstance(caught.value.__cause__, DRIVER_ERRORS)
    assert store.head() == 1
    assert transient(caught.value) and api_outage(caught.value)


def test_a_duplicate_key_or_a_missing_value_is_a_constraint_violation(store):
    with store.transaction() as tx:
        store.registry.insert_build(tx, **build_row(5, "linear", 1))
    with pytest.raises(ConstraintViolation) as duplicate:
        with store.transaction() as tx:
            store.registry.insert_build(tx, **build_row(5, "linear", 1))
    with pytest.raises(ConstraintViolation) as missing:
        with store.transaction() as tx:
            store.registry.insert_build(tx, **{**build_row(6, "linear", 1), "status": None})
    for caught, codes in ((duplicate, ("1062", "SQLITE_CONSTRAINT_UNIQUE", "SQLITE_CONSTRAINT_PRIMARYKEY")),
                          (missing, ("1048", "SQLITE_CONSTRAINT_NOTNULL"))):
        assert isinstance(caught.value, Refused) and caught.value.error == "IntegrityError"
        assert caught.value.code in codes, caught.value
        # The data's fault: a follower sets the event aside instead of retrying it forever.
        assert not transient(caught.value)
    assert len(store.registry.builds()) == 1


def test_a_value_out_of_range_is_refused_on_mysql(mysql_db):
    store = EventStore(make_engine(mysql_db))
    with pytest.raises(Refused) as caught:
        with store.transaction() as tx:
            store.registry.insert_promotion(tx, position=1, model="linear", dataset="default", version=2**31,
                                            automatic=False, status="moved", created_at=build_row(1, "x", 1)["started_at"])
    refused = caught.value
    assert not isinstance(refused, ConstraintViolation)
    assert (refused.error, refused.code) == ("DataError", "1264")
    assert "Out of range value for column 'version'" in refused.reason
    assert str(describe(refused)).startswith("DataError 1264: Out of range value")
    # Not an outage: the database answers, so ingest and the follower blame the message, not the server.
    assert not transient(refused) and not ingest_outage(refused, store.engine)
    store.engine.dispose()


@pytest.fixture
def unreachable(db_url, tmp_path) -> str:
    """A URL of the parametrised backend where no database can be reached."""
    if make_url(db_url).get_backend_name() == "sqlite":
        (tmp_path / "a-directory").mkdir()
        return f"sqlite:///{tmp_path / 'a-directory'}"
    return make_url(db_url).set(host="127.0.0.1", port=free_port()).render_as_string(hide_password=False)


def test_a_database_that_cannot_be_reached_is_an_outage(unreachable, engine):
    store = EventStore(make_engine(unreachable))
    with pytest.raises(Outage) as caught:
        store.head()
    outage = caught.value
    assert not isinstance(outage, LostConnection)
    assert outage.code in ("2003", "SQLITE_CANTOPEN"), outage
    assert isinstance(outage.__cause__, DRIVER_ERRORS)
    assert not store.reachable()
    # Retried whole by the follower and ingest, a 503 from the API; ingest need not probe for it.
    assert transient(outage) and api_outage(outage) and ingest_outage(outage, engine)
    store.engine.dispose()


def test_a_connection_cut_mid_transaction_is_a_lost_connection(mysql_db):
    target = make_url(mysql_db)
    with FreezableProxy(target.host, target.port or 3306) as proxy:
        store = EventStore(make_engine(proxy.url(mysql_db)))
        with pytest.raises(LostConnection) as caught:
            with store.transaction() as tx:
                store.append_in(tx, [msg(training("1,2,3,4"))])
                proxy.drop_connections()
                store.append_in(tx, [msg(training("1,2,3,5"))])
        assert caught.value.code in ("2006", "2013"), caught.value
        # The pool replaces the dropped connection; nothing of the transaction was kept.
        assert store.head() == 0 and store.reachable()
        # Ingest asks the database whether it answers: it does, so a message may have made
        # the server drop the connection (one over max_allowed_packet).
        assert transient(caught.value) and not ingest_outage(caught.value, store.engine)
        store.engine.dispose()


@pytest.mark.parametrize("error, outage, retried", [
    (Outage("timed out", error="OperationalError", code="2003"), True, True),
    (LostConnection("gone away", error="OperationalError", code="2006"), True, True),
    (DatabaseUnavailable("the database has not answered for 3.0s; retry later"), True, True),
    (Conflict("deadlock", error="OperationalError", code="1213"), True, True),
    (ConstraintViolation("duplicate", error="IntegrityError", code="1062"), True, False),
    (Refused("too long", error="DataError", code="1406"), True, False),
    (StorageError("no such table", error="ProgrammingError", code="1146"), True, False),
    (ValueError("a bug"), False, False),
])
def test_callers_read_the_classes_alone(error, outage, retried):
    """The API answers 503 for any database failure; the follower retries a batch whole only when the
    failure says nothing about its events."""
    assert api_outage(error) is outage
    assert transient(error) is retried
