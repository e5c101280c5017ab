"""One back-off for every retry of an outage: a batch of the broker or the database, a handler, a cron post."""
from __future__ import annotations

import logging
import threading
from typing import Callable

from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_when_event_set, wait_exponential

FIRST_SECONDS = 1.0
MAX_SECONDS = 30.0


def backoff(attempt: int, first: float = FIRST_SECONDS, cap: float = MAX_SECONDS) -> float:
    """Seconds to wait before retry number `attempt` (1, 2, ...): `first`, doubling, at most `cap`."""
    return min(cap, first * 2 ** min(max(attempt, 1) - 1, 20))


def retry_until_done(call: Callable[[], object], stop: threading.Event,
                     on_failure: Callable[[int, BaseException, float], None]) -> bool:
    """call() until it returns, backing off between failures; False when `stop` is set first.

    on_failure(attempt, error, delay) is told of each failure before the wait (for the log).
    """
    def before_sleep(state: RetryCallState) -> None:
        assert state.outcome is not None and state.next_action is not None
        on_failure(state.attempt_number, state.outcome.exception(), state.next_action.sleep)

    retrying = Retrying(
        retry=retry_if_exception_type(Exception),
        wait=wait_exponential(multiplier=FIRST_SECONDS, max=MAX_SECONDS),
        stop=stop_when_event_set(stop),
        sleep=stop.wait,
        before_sleep=before_sleep,
        retry_error_callback=lambda state: _STOPPED,
    )
    return retrying(_done, call) is not _STOPPED


_STOPPED = object()


def _done(call: Callable[[], object]) -> bool:
    call()
    return True


def log_failures(log: logging.Logger, what: str) -> Callable[[int, BaseException, float], None]:
    """An on_failure for retry_until_done that logs each failure, the first with its traceback at debug."""
    def report(attempt: int, error: BaseException, delay: float) -> None:
        log.warning("%s failed (attempt %d: %s: %s); retrying in %.1fs", what, attempt, type(error).__name__,
                    str(error)[:300], delay)
        if attempt == 1:
            log.debug("%s: the failure in full", what, exc_info=error)
    return report
