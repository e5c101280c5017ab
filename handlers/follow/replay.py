"""Replay: reset a handler's position, projection and failures, then run it over the whole log."""
from __future__ import annotations

import time

from tqdm import tqdm

from modelbus.db import failures, positions
from modelbus.db.events import EventStore
from modelbus.handlers.follow.follower import Follower, owner_id
from modelbus.handlers.log.base import Handler


def _claim(store: EventStore, name: str, owner: str, wait_seconds: float) -> None:
    deadline = time.monotonic() + wait_seconds
    while positions.claim(store.engine, name, owner, 60.0) is None:
        if time.monotonic() >= deadline:
            raise positions.LostLease(_held(store, name))
        time.sleep(0.5)


def _held(store: EventStore, name: str) -> str:
    """Who holds a handler's lease, for the operator who has to stop it."""
    state = next((s for s in positions.states(store.engine) if s.name == name), None)
    if state is None or state.owner is None:
        return f"handler {name} is running in another process"
    until = f", lease until {state.lease_expires:%Y-%m-%d %H:%M:%S} UTC" if state.lease_expires else ""
    return f"handler {name} is running in another process (lease owner {state.owner}{until})"


def replay_handler(store: EventStore, handler: Handler, *, wait_seconds: float = 60.0, progress: bool = True) -> int:
    """Rebuild one handler's projection from the log; returns the number of events applied."""
    owner = owner_id()
    follower = Follower(store, handler, owner, lease_seconds=60.0)
    _claim(store, handler.name, owner, wait_seconds)
    with store.engine.begin() as conn:
        handler.reset(conn)
        failures.reset(conn, handler.name)
        positions.reset(conn, handler.name, owner)
    head = store.head()
    bar = tqdm(total=head, desc=f"replay {handler.name}", unit="ev", disable=not progress, leave=True)
    try:

        def advance(position: int, _target: int) -> None:
            bar.update(position - bar.n)

        return follower.catch_up(advance)
    finally:
        bar.close()
        positions.release(store.engine, handler.name, owner)
