"""Follows the log for one handler: claim the lease, read, apply, move the position, repeat.

A batch that fails while the database answers is halved until the event at fault is alone;
that event is recorded as a failure of the handler (db.failures, plus the handler's own
record_failure) and the handler moves past it, so one event no handler can apply never
stops the others, and a replay records the same failures. A failure while the database does
not answer, or one that says nothing about the event (a lock timeout, a lost connection),
is an outage: the whole batch is retried with back-off.
"""
from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Sequence

from modelbus.backoff import backoff
from modelbus.builders.base import Cancelled
from modelbus.db import failures, positions
from modelbus.db.errors import Conflict, Outage
from modelbus.db.events import EventRow, EventStore
from modelbus.db.positions import LostLease
from modelbus.handlers.follow.isolate import run_isolating
from modelbus.handlers.log.base import Handler

log = logging.getLogger(__name__)

LEASE_SECONDS = 30.0


def transient(exc: BaseException) -> bool:
    """True for a failure that says nothing about the events being applied (locks, connections, the OS)."""
    # Outage: the database did not answer (a lost connection, a timeout, no pooled connection,
    # a full disk); Conflict: another transaction held a lock (deadlock, lock wait, SQLite busy).
    return isinstance(exc, (OSError, MemoryError, Outage, Conflict))


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
        """Apply the next batch; returns events applied or set aside (0 when caught up), None without the lease.

        Cancelled when `stop` is set while the handler prepares (a build trains): nothing commits.
        """
        handler = self.handler
        position = positions.claim(self.store.engine, handler.name, self.owner, self.lease_seconds)
        if position is None:
            return None
        head = self.store.head()
        if head <= position:
            return 0
        rows = self.store.read(after=position, until=head, limit=handler.batch_size, type=handler.event_type,
                               lean=not handler.reads_receipt)
        taken = list(handler.take(rows))
        if len(taken) < len(rows) or len(rows) == handler.batch_size:
            new_position = taken[-1].position
        else:
            # Nothing more of interest up to the head: skip straight to it (the log has
            # no gaps below the head, so nothing can appear there later).
            new_position = head
        with self._lease_kept():
            prepared = handler.prepare(taken, stop)
        batch = _Batch(self, taken, prepared, position, new_position)
        if not taken:
            batch.commit(taken)
            return 0
        run_isolating(taken, batch.commit, batch.set_aside, self._not_the_events_fault)
        return len(taken)

    def _not_the_events_fault(self, exc: Exception) -> bool:
        """True when a failed batch must be retried whole: lost lease, transient error or database down."""
        if isinstance(exc, LostLease) or transient(exc):
            return True
        if self.store.reachable():
            return False
        log.warning("handler %s: the database is unreachable (%s: %s); the batch will be retried",
                    self.handler.name, type(exc).__name__, str(exc)[:300])
        return True

    def catch_up(self, progress: Callable[[int, int], None] | None = None) -> int:
        """Run until the position reaches the head seen at the start; returns events applied or set aside."""
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
                    delay = backoff(self.failures)
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


class _Batch:
    """One prepared batch going into the handler's effects, whole or in parts, in log order."""

    def __init__(self, follower: Follower, events: Sequence[EventRow], prepared: Any, position: int, end: int):
        self.follower = follower
        self.events = events
        self.prepared = prepared
        # The committed position: each part moves it in the transaction of its effects.
        self.position = position
        self.end = end

    def _end_of(self, part: Sequence[EventRow]) -> int:
        # The last part carries the batch's end, which may skip uninteresting events up to the head.
        return self.end if not part or part[-1] is self.events[-1] else part[-1].position

    def commit(self, part: Sequence[EventRow]) -> list[EventRow]:
        """Apply `part` and move the position past it in one transaction, then notify."""
        follower, handler = self.follower, self.follower.handler
        end = self._end_of(part)
        with follower.store.engine.begin() as conn:
            # Move the position first: it is a write, so the transaction takes the write
            # lock before any read (SQLite cannot upgrade a read snapshot that another
            # writer has moved past, and fails at once instead of waiting).
            positions.advance(conn, handler.name, follower.owner, self.position, end)
            handler.apply(conn, part, self.prepared)
        self.position = end
        try:
            handler.after_commit(part, self.prepared)
        except Exception:  # committed: a retry would not redo the notices either
            log.exception("handler %s: notifying after the commit up to %d failed", handler.name, end)
        return list(part)

    def set_aside(self, event: EventRow, exc: Exception) -> list[EventRow]:
        """Record `event` as a failure of the handler and move the position past it."""
        follower, handler = self.follower, self.follower.handler
        failure = failures.describe(exc)
        end = self._end_of([event])
        try:
            with follower.store.engine.begin() as conn:
                positions.advance(conn, handler.name, follower.owner, self.position, end)
                handler.record_failure(conn, event, self.prepared, str(failure))
                failures.record(conn, handler.name, event, failure)
        except Exception as hook_exc:
            if follower._not_the_events_fault(hook_exc):
                raise
            # The handler's own record does not fit either (the value that failed is in it).
            log.debug("handler %s: its own record of event %d failed: %s", handler.name, event.position, hook_exc)
            with follower.store.engine.begin() as conn:
                positions.advance(conn, handler.name, follower.owner, self.position, end)
                failures.record(conn, handler.name, event, failure)
        self.position = end
        log.error("handler %s cannot apply event %d (id %s); recorded as a failure and moved past it: %s",
                  handler.name, event.position, event.event_id, failure)
        try:
            # What record_failure wrote is committed: announce it like any effect.
            handler.after_commit([event], self.prepared)
        except Exception:
            log.exception("handler %s: notifying after recording the failure of event %d failed", handler.name,
                          event.position)
        return []
