"""Micro-batching: the items of concurrent callers joined into one predict call."""
from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Any, Callable, Sequence

from modelbus.handlers.serving.predict import Item

log = logging.getLogger(__name__)


class _Job:
    __slots__ = ("items", "done", "result", "error")

    def __init__(self, items: Sequence[Item]):
        self.items = items
        self.done = threading.Event()
        self.result: list[dict[str, Any]] | None = None
        self.error: BaseException | None = None


class MicroBatcher:
    """Joins the items of concurrent callers into one predict_batch call.

    A batch closes when it holds `max_batch` items or `max_wait` seconds after its first
    item; with max_wait 0 it takes whatever queued while the previous batch ran (no
    added latency, and batches grow with the load).
    """

    def __init__(self, run: Callable[[list[Item]], list[dict[str, Any]]], max_batch: int = 256, max_wait: float = 0.0):
        self._run = run
        self.max_batch = max_batch
        self.max_wait = max_wait
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.batches = 0
        self.items = 0

    def submit(self, items: Sequence[Item], timeout: float = 30.0) -> list[dict[str, Any]]:
        """Answers for items, in order (blocks until the batch that holds them has run)."""
        if not items:
            return []
        self._ensure_started()
        job = _Job(items)
        self._queue.put(job)
        if not job.done.wait(timeout):
            raise TimeoutError(f"no answer within {timeout:.0f}s")
        if job.error is not None:
            raise job.error
        assert job.result is not None
        return job.result

    def _ensure_started(self) -> None:
        if self._thread is not None:
            return
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="predict-batcher", daemon=True)
                self._thread.start()

    def close(self) -> None:
        """Stop the batching thread after the jobs already queued."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(10)

    def _gather(self, first: _Job) -> tuple[list[_Job], bool]:
        jobs, count = [first], len(first.items)
        deadline = time.monotonic() + self.max_wait
        while count < self.max_batch:
            try:
                remaining = deadline - time.monotonic()
                job = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if job is None:
                return jobs, True
            jobs.append(job)
            count += len(job.items)
        return jobs, False

    def _loop(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is None:
                return
            jobs, stopping = self._gather(first)
            items = [item for job in jobs for item in job.items]
            try:
                answers = self._run(items)
                start = 0
                for job in jobs:
                    job.result = answers[start : start + len(job.items)]
                    start += len(job.items)
            except BaseException as exc:  # answered to every caller; the loop goes on
                log.exception("a prediction batch of %d failed", len(items))
                for job in jobs:
                    job.error = exc
            self.batches += 1
            self.items += len(items)
            for job in jobs:
                job.done.set()
