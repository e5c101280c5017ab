"""Follows the log for one handler: claim the lease, read, apply, move the position, repeat."""
from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from contextlib import contextmanager
from typing import Callable, Iterator

from builders.base import Cancelled
from db import positions
from db.events import EventStore
from db.positions import LostLease
from handlers.base import Handler

log = logging.getLogger(__name__)

LEASE_SECONDS = 30.0


def owner_id() -> str:
    """A name for this process that is unique across hosts and restarts."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Follower:
    """Runs one handler over the log; several processes may run one, the lease picks who works."""

    def __init__(
        self,
        store: EventStore,
        handler: Handler,
        owner: str | None = None,
        *,
        lease_seconds: float = LEASE_SECONDS,
        poll_seconds: float = 0.2,
    ):
        self.store = store
        self.handler = handler
        self.owner = owner or owner_id()
        self.lease_seconds = lease_seconds
        self.poll_seconds = poll_seconds
        self.failures = 0
        self.last_error: str | None = None
        positions.ensure(store.engine, handler.name)

    @contextmanager
    def _lease_kept(self) -> Iterator[None]:
        # A build may train for longer than a lease; renew it meanwhile so no other
        # process starts the same work.
        done = threading.Event()

        def renew() -> None:
            while not done.wait(self.lease_seconds / 3):
                try:
                    positions.claim(self.store.engine, self.handler.name, self.owner, self.lease_seconds)
                except Exception:  # the next renewal or the final CAS will tell
                    log.exception("renewing the lease of %s", self.handler.name)

        thread = threading.Thread(target=renew, name=f"lease-{self.handler.name}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            done.set()
            thread.join()

    def step(self, stop: threading.Event | None = None) -> int | None:
        """Apply the next batch; returns events applied (0 when caught up), None without the lease.

        Cancelled when `stop` is set while the handler prepares (a build trains): nothing commits.
        """
        handler = self.handler
        position = positions.claim(self.store.engine, handler.name, self.owner, self.lease_seconds)
        if position is None:
            return None
        head = self.store.head()
        if head <= position:
            return 0
        rows = self.store.read(after=position, until=head, limit=handler.batch_size, type=handler.event_type)
        taken = list(handler.take(rows))
        if len(taken) < len(rows) or len(rows) == handler.batch_size:
            new_position = taken[-1].position
        else:
            # Nothing more of interest up to the head: skip straight to it (the log has
            # no gaps below the head, so nothing can appear there later).
            new_position = head
        rows = taken
        with self._lease_kept():
            prepared = handler.prepare(rows, stop)
        with self.store.engine.begin() as conn:
            # Move the position first: it is a write, so the transaction takes the write
            # lock before any read (SQLite cannot upgrade a read snapshot that another
            # writer has moved past, and fails at once instead of waiting).
            positions.advance(conn, handler.name, self.owner, position, new_position)
            handler.apply(conn, rows, prepared)
        handler.after_commit(rows, prepared)
        return len(rows)

    def catch_up(self, progress: Callable[[int, int], None] | None = None) -> int:
        """Run until the position reaches the head seen at the start; returns events applied."""
        target = self.store.head()
        applied = 0
        while True:
            done = self.step()
            if done is None:
                raise LostLease(f"handler {self.handler.name} is leased by another process")
            applied += done
            position = self.position()
            if progress is not None:
                progress(position, target)
            if position >= target:
                return applied

    def release(self) -> None:
        """Give the lease up (a no-op unless held): a stopping process lets the next owner start at once.

        Safe while a build is still training in an abandoned thread: its final position
        update checks the owner, so it cannot commit after another process took over.
        """
        positions.release(self.store.engine, self.handler.name, self.owner)

    def position(self) -> int:
        """The handler's committed position."""
        for state in positions.states(self.store.engine):
            if state.name == self.handler.name:
                return state.position
        return 0

    def run(self, stop: threading.Event) -> None:
        """Follow the log until `stop` is set; errors are logged and retried with back-off."""
        generation = self.store.generation
        try:
            while not stop.is_set():
                try:
                    done = self.step(stop)
                    self.failures = 0
                    self.last_error = None
                except LostLease as exc:
                    log.warning("%s", exc)
                    done = None
                except Cancelled as exc:
                    log.info("handler %s: %s; the next owner of the lease redoes the batch", self.handler.name, exc)
                    break
                except Exception as exc:
                    self.failures += 1
                    self.last_error = f"{type(exc).__name__}: {exc}"
                    delay = min(30.0, 0.5 * 2 ** min(self.failures, 6))
                    log.exception("handler %s failed (attempt %d); retrying in %.1fs", self.handler.name, self.failures, delay)
                    stop.wait(delay)
                    continue
                if done:
                    continue
                wait = self.poll_seconds if done == 0 else 1.0
                generation = self.store.wait_for_append(generation, wait)
                if stop.is_set():
                    break
        finally:
            try:
                positions.release(self.store.engine, self.handler.name, self.owner)
            except Exception:
                log.exception("releasing the lease of %s", self.handler.name)
