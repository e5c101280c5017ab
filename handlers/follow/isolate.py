"""Find the one item that makes a batch fail, so it alone is set aside and the rest goes on.

Ingest, the predictor and the log handlers all work in batches; a batch that fails because
of one item's content would otherwise be retried forever and hold back everything behind it.
"""
from __future__ import annotations

import logging
from typing import Callable, Sequence, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")


def run_isolating(
    items: Sequence[T],
    run: Callable[[Sequence[T]], list[R]],
    culprit: Callable[[T, Exception], list[R]],
    is_outage: Callable[[Exception], bool],
) -> list[R]:
    """run(items); when it fails for a reason other than an outage, halve and retry each half in order.

    A single item that still fails becomes culprit(item, error). An outage (the database or
    the broker is unreachable) is re-raised at once: no item is to blame, the caller backs
    off and retries the whole batch. run() must be all-or-nothing, so a failed half leaves
    no trace; results come back in the order of `items`.
    """
    return _halving(items, run, culprit, is_outage, top=True)


def _halving(items, run, culprit, is_outage, top: bool) -> list:
    try:
        return run(items)
    except Exception as exc:
        if is_outage(exc):
            raise
        if len(items) == 1:
            return culprit(items[0], exc)
        if top:  # once per batch; the culprit itself is reported by culprit()
            log.warning("a batch of %d failed (%s: %s); splitting it to find the item at fault",
                        len(items), type(exc).__name__, str(exc)[:300])
    middle = len(items) // 2
    return (_halving(items[:middle], run, culprit, is_outage, False)
            + _halving(items[middle:], run, culprit, is_outage, False))
