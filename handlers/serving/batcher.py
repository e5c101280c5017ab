"""Micro-batching: the items of concurrent callers joined into one predict call."""
from __future__ import annotations

import logging
import threading
import time
from collections import deque
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

    A caller that finds no batch running and nobody waiting runs its own items at once, in
    its own thread (no hand-off to the batching thread and back). Callers that arrive while
    a batch runs queue; the batching thread joins them into the next batch, which closes
    when it holds `max_batch` items or `max_wait` seconds after its first item; with
    max_wait 0 it takes whatever queued while the previous batch ran (no added latency,
    and batches grow with the load). One batch runs at a time.
    """

    def __init__(self, run: Callable[[list[Item]], list[dict[str, Any]]], max_batch: int = 256, max_wait: float = 0.0):
        self._run = run
        self.max_batch = max_batch
        self.max_wait = max_wait
        self._pending: deque[_Job | None] = deque()
        self._cond = threading.Condition()
        self._busy = False  # a batch is running or being gathered (guarded by _cond)
        self._thread: threading.Thread | None = None
        self.batches = 0
        self.items = 0
        self.inline = 0  # batches run in their caller's thread

    def submit(self, items: Sequence[Item], timeout: float = 30.0) -> list[dict[str, Any]]:
        """Answers for items, in order (blocks until the batch that holds them has run)."""
        if not items:
            return []
        job = _Job(items)
        with self._cond:
            inline = not self._busy and not self._pending
            if inline:
                self._busy = True
            else:
                self._pending.append(job)
                self._cond.notify_all()
        if inline:
            try:
                return self._execute([job], raise_error=True)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()  # the batching thread takes what queued meanwhile
        self._ensure_started()
        if not job.done.wait(timeout):
            raise TimeoutError(f"no answer within {timeout:.0f}s")
        if job.error is not None:
            raise job.error
        assert job.result is not None
        return job.result

    def _execute(self, jobs: list[_Job], raise_error: bool = False) -> list[dict[str, Any]]:
        items = [item for job in jobs for item in job.items] if len(jobs) > 1 else list(jobs[0].items)
        try:
            answers = self._run(items)
        except BaseException as exc:  # answered to every caller; the batching thread goes on
            log.exception("a prediction batch of %d failed", len(items))
            if raise_error:
                raise
            for job in jobs:
                job.error = exc
            return []
        finally:
            self.batches += 1
            self.items += len(items)
        if raise_error:
            self.inline += 1
        start = 0
        for job in jobs:
            job.result = answers[start : start + len(job.items)]
            start += len(job.items)
        return answers

    def _ensure_started(self) -> None:
        if self._thread is not None:
            return
        with self._cond:
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="predict-batcher", daemon=True)
                self._thread.start()

    def close(self) -> None:
        """Stop the batching thread after the jobs already queued."""
        if self._thread is not None:
            with self._cond:
                self._pending.append(None)
                self._cond.notify_all()
            self._thread.join(10)

    def _gather(self) -> tuple[list[_Job], bool]:
        """The next batch's jobs (called holding _cond, with something pending); True when closing."""
        jobs: list[_Job] = []
        count = 0
        deadline = time.monotonic() + self.max_wait
        while count < self.max_batch:
            if not self._pending:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not jobs:
                    break
                self._cond.wait(remaining)
                continue
            job = self._pending.popleft()
            if job is None:
                return jobs, True
            jobs.append(job)
            count += len(job.items)
        return jobs, False

    def _loop(self) -> None:
        stopping = False
        while not stopping:
            with self._cond:
                while self._busy or not self._pending:
                    self._cond.wait()
                self._busy = True
                jobs, stopping = self._gather()
            try:
                if jobs:
                    self._execute(jobs)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()
                for job in jobs:
                    job.done.set()
