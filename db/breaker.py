"""A circuit breaker for an engine whose callers are waiting (HTTP requests): fail at once while
the database is known not to answer, and find out in the background when it answers again.

Why not pybreaker: its CircuitBreaker.call holds one lock for the whole guarded call
(danielfm/pybreaker#55), so wrapping database calls would serialise every request thread;
fabfuel's circuitbreaker takes no lock at all. This one needs neither wrapping nor a trial
request: engine events report outages, the pool refuses while the breaker is open, and a
probe thread of its own closes it, so no request ever pays a timeout once the outage is known.
"""
from __future__ import annotations

import logging
import threading
import time
import weakref
from typing import Any, Callable

from sqlalchemy import Engine, event

from modelbus.db.dialect import no_answer
from modelbus.db.errors import Outage

log = logging.getLogger(__name__)

# How often the probe tries the database while the breaker is open.
PROBE_SECONDS = 1.0


class DatabaseUnavailable(Outage, ConnectionError):
    """Refused without trying: the database did not answer recently and no probe has reached it since."""


class Breaker:
    """Open after one outage error, closed by the first probe that reaches the database."""

    def __init__(self, probe: Callable[[], None], name: str, probe_seconds: float = PROBE_SECONDS):
        self._probe = probe
        self.name = name
        self.probe_seconds = probe_seconds
        self._lock = threading.Lock()
        self._opened_at: float | None = None
        self._reason = ""
        self.trips = 0

    @property
    def is_open(self) -> bool:
        """True while database calls are refused."""
        return self._opened_at is not None

    def check(self) -> None:
        """Raise DatabaseUnavailable while the breaker is open."""
        opened_at = self._opened_at
        if opened_at is not None:
            raise DatabaseUnavailable(
                f"the database {self.name} has not answered for {time.monotonic() - opened_at:.1f}s "
                f"({self._reason}); retry later"
            )

    def trip(self, reason: str) -> None:
        """Open on an outage error (once; later errors of the same outage change nothing)."""
        with self._lock:
            if self._opened_at is not None:
                return
            self._opened_at = time.monotonic()
            self._reason = reason
            self.trips += 1
        log.warning("the database %s did not answer (%s): its calls fail at once until a probe reaches it",
                    self.name, reason)
        threading.Thread(target=_probe_until_closed, args=(weakref.ref(self),), name=f"db-probe-{self.name}",
                         daemon=True).start()

    def _try_close(self) -> bool:
        try:
            self._probe()
        except Exception as exc:
            log.debug("database probe of %s failed: %s", self.name, exc)
            return False
        with self._lock:
            opened_at, self._opened_at = self._opened_at, None
        if opened_at is not None:
            log.warning("the database %s answers again after %.1fs; its calls go through", self.name,
                        time.monotonic() - opened_at)
        return True


def _probe_until_closed(ref: weakref.ref[Breaker]) -> None:
    # A weak reference: an engine dropped during an outage takes its probe thread with it.
    while True:
        breaker = ref()
        if breaker is None or not breaker.is_open:
            return
        if breaker._try_close():
            return
        wait = breaker.probe_seconds
        del breaker
        time.sleep(wait)


def _timed_out(exc: BaseException | None) -> bool:
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, TimeoutError):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False


def watch(engine: Engine, breaker: Breaker) -> None:
    """Trip `breaker` on the engine's outage errors; refuse new connections while it is open."""

    @event.listens_for(engine, "handle_error")
    def _on_error(context: Any) -> None:
        error = context.original_exception
        if not no_answer(error):
            return
        # A pre-ping that finds a connection closed (the server restarted, an idle timeout)
        # is routine: the pool reconnects. One that times out means the server is silent.
        if context.is_pre_ping and not _timed_out(error):
            return
        breaker.trip(f"{type(error).__name__}: {error}")

    @event.listens_for(engine, "do_connect")
    def _refuse_while_open(*_args: Any) -> None:
        # The pool reconnects after a failed pre-ping: refuse that too once the ping tripped us.
        breaker.check()
