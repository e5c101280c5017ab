"""Database timeouts and the circuit breaker, on MariaDB behind a proxy that freezes (db.engine, db.breaker)."""
from __future__ import annotations

import threading
import time
from typing import Iterator

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from modelbus.db.breaker import DatabaseUnavailable
from modelbus.db.engine import DbTimeouts, breaker_of, make_engine
from modelbus.db.errors import Outage, StorageError
from tcp_proxy import FreezableProxy

TIMEOUTS = DbTimeouts(connect=1.0, io=1.0, pool=0.5)
# On top of a timeout, on a busy 2-core machine.
SLACK = 2.0


@pytest.fixture
def proxy(mysql_url) -> Iterator[FreezableProxy]:
    target = make_url(mysql_url)
    with FreezableProxy(target.host, target.port or 3306) as running:
        yield running


def select_one(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(text("SELECT 1")).scalar_one()


def timed(fn, *args):
    started = time.monotonic()
    try:
        return fn(*args), None, time.monotonic() - started
    except Exception as exc:
        return None, exc, time.monotonic() - started


def test_a_freeze_shorter_than_the_timeout_is_only_a_pause(proxy, mysql_url):
    engine = make_engine(proxy.url(mysql_url), DbTimeouts(connect=5, io=5, pool=5))
    assert select_one(engine) == 1
    proxy.freeze()
    threading.Timer(0.5, proxy.thaw).start()
    assert select_one(engine) == 1
    engine.dispose()


def test_a_frozen_database_fails_a_call_after_the_read_timeout(proxy, mysql_url):
    engine = make_engine(proxy.url(mysql_url), TIMEOUTS)
    assert select_one(engine) == 1
    proxy.freeze()
    # A pooled connection: the pre-ping times out, then the reconnect does (no breaker here).
    _, error, took = timed(select_one, engine)
    assert isinstance(error, Outage) and "timed out" in str(error)
    assert took < 2 * TIMEOUTS.io + SLACK
    proxy.thaw()
    assert select_one(engine) == 1
    engine.dispose()


def test_waiting_for_a_pooled_connection_is_bounded(mysql_url):
    engine = make_engine(mysql_url, TIMEOUTS, pool_size=1)
    with engine.connect():
        _, error, took = timed(select_one, engine)
    assert isinstance(error, Outage) and "no pooled connection came free within 0.5s" in str(error)
    assert took < TIMEOUTS.pool + SLACK
    engine.dispose()


def test_the_breaker_opens_on_the_first_timeout_refuses_at_once_and_a_probe_closes_it(proxy, mysql_url):
    engine = make_engine(proxy.url(mysql_url), TIMEOUTS, breaker=True)
    breaker = breaker_of(engine)
    assert breaker is not None and breaker_of(make_engine(mysql_url)) is None
    assert select_one(engine) == 1
    proxy.freeze()
    # The pre-ping of the pooled connection times out and trips the breaker, which then
    # refuses the pool's reconnect: one timeout, not two.
    _, error, took = timed(select_one, engine)
    assert isinstance(error, Outage), error
    assert took < TIMEOUTS.io + SLACK
    assert breaker.is_open
    for _ in range(20):
        _, error, took = timed(select_one, engine)
        assert isinstance(error, DatabaseUnavailable) and "retry later" in str(error)
        assert took < 0.2
    proxy.thaw()
    deadline = time.monotonic() + TIMEOUTS.io + 2 * SLACK
    while breaker.is_open:
        assert time.monotonic() < deadline, "the probe did not close the breaker after the thaw"
        time.sleep(0.05)
    assert select_one(engine) == 1
    assert breaker.trips == 1
    engine.dispose()


def test_errors_that_are_not_outages_leave_the_breaker_closed(proxy, mysql_url):
    engine = make_engine(proxy.url(mysql_url), TIMEOUTS, breaker=True)
    breaker = breaker_of(engine)
    with pytest.raises(StorageError, match="1146") as refused:
        with engine.connect() as conn:
            conn.execute(text("SELECT * FROM no_such_table"))
    assert not isinstance(refused.value, Outage)
    assert select_one(engine) == 1
    # Connections closed under the pool (a server restart, an idle timeout): the pre-ping
    # notices, the pool reconnects, nothing is refused.
    proxy.drop_connections()
    assert select_one(engine) == 1
    assert not breaker.is_open
    engine.dispose()
