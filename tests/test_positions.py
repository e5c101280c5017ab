"""The handler-positions contract (db.contracts.HandlerPositions): what any backend must pass.

Positions and leases are what keeps one process per handler and each event applied once.
"""
from __future__ import annotations

import threading

import pytest

from modelbus.db.positions import LostLease


def position(store, name: str) -> int:
    return next(s.position for s in store.positions.states() if s.name == name)


def test_ensure_creates_a_row_at_zero_once_even_when_raced(store):
    errors: list[BaseException] = []

    def ensure() -> None:
        try:
            store.positions.ensure("a")
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=ensure) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    store.positions.ensure("b")
    assert errors == []
    states = store.positions.states()
    assert [(s.name, s.position, s.owner, s.lease_expires) for s in states] == [("a", 0, None, None),
                                                                                ("b", 0, None, None)]
    assert all(s.updated_at is not None for s in states)


def test_one_owner_holds_the_lease_until_it_releases_it(store):
    positions = store.positions
    positions.ensure("h")
    assert positions.claim("h", "first", 30) == 0
    assert positions.claim("h", "second", 30) is None
    assert positions.claim("h", "first", 30) == 0  # a renewal
    (state,) = positions.states()
    assert state.owner == "first" and state.lease_expires is not None
    positions.release("h", "second")  # not the owner: changes nothing
    assert positions.claim("h", "second", 30) is None
    positions.release("h", "first")
    assert positions.states()[0].owner is None
    assert positions.claim("h", "second", 30) == 0


def test_an_expired_lease_is_taken_over(store):
    store.positions.ensure("h")
    assert store.positions.claim("h", "stale", -1) == 0
    assert store.positions.claim("h", "fresh", 30) == 0
    assert store.positions.states()[0].owner == "fresh"


def test_advance_moves_the_position_with_its_transaction(store):
    positions = store.positions
    positions.ensure("h")
    positions.claim("h", "me", 30)
    with store.transaction() as tx:
        positions.advance(tx, "h", "me", 0, 5)
    assert position(store, "h") == 5
    with pytest.raises(RuntimeError):
        with store.transaction() as tx:
            positions.advance(tx, "h", "me", 5, 9)
            raise RuntimeError("the handler's effects failed")
    assert position(store, "h") == 5
    assert positions.claim("h", "me", 30) == 5


def test_advance_from_a_position_that_moved_or_without_the_lease_is_a_lost_lease(store):
    positions = store.positions
    positions.ensure("h")
    positions.claim("h", "me", 30)
    with pytest.raises(LostLease):
        with store.transaction() as tx:
            positions.advance(tx, "h", "me", 3, 4)
    with pytest.raises(LostLease):
        with store.transaction() as tx:
            positions.advance(tx, "h", "thief", 0, 4)
    assert position(store, "h") == 0


def test_reset_sets_the_position_back_to_zero_for_the_owner_only(store):
    positions = store.positions
    positions.ensure("h")
    positions.claim("h", "me", 30)
    with store.transaction() as tx:
        positions.advance(tx, "h", "me", 0, 7)
    with pytest.raises(LostLease):
        with store.transaction() as tx:
            positions.reset(tx, "h", "other")
    assert position(store, "h") == 7
    with store.transaction() as tx:
        positions.reset(tx, "h", "me")
    assert position(store, "h") == 0
