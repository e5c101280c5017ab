"""Verify runs started from the dashboard: one at a time, in a thread, results kept in memory by this process."""
from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable

from modelbus.db.events import utcnow

log = logging.getLogger(__name__)

Key = tuple[str, str, int]


class VerifyJobs:
    """The latest verify of each (model, dataset, version) this process ran, and the one running."""

    def __init__(self, run: Callable[[Any, Any], Any] | None = None):
        # run(engine, recorded) -> Verification; replaceable so a test can inject a failing rebuild.
        self._run = run
        self._jobs: dict[Key, dict[str, Any]] = {}
        self._lock = threading.Lock()
        # A rebuild takes a core for seconds to minutes: one at a time, the others wait their turn.
        self._turn = threading.Lock()

    def state(self, key: Key) -> dict[str, Any]:
        """The job of `key` as JSON: never, queued, running, ok, mismatch or failed."""
        with self._lock:
            job = self._jobs.get(key)
            return dict(job) if job is not None else {"state": "never"}

    def start(self, key: Key, engine: Any, recorded: Any) -> dict[str, Any]:
        """Start verifying `recorded` unless a run of it is queued or running; returns its state."""
        with self._lock:
            job = self._jobs.get(key)
            if job is not None and job["state"] in ("queued", "running"):
                return dict(job)
            self._jobs[key] = {"state": "queued", "requested_at": utcnow().isoformat()}
        thread = threading.Thread(target=self._work, args=(key, engine, recorded), name=f"verify-{key[0]}-v{key[2]}",
                                  daemon=True)
        thread.start()
        return self.state(key)

    def _set(self, key: Key, **values: Any) -> None:
        with self._lock:
            self._jobs[key] = {**self._jobs.get(key, {}), **values}

    def _work(self, key: Key, engine: Any, recorded: Any) -> None:
        with self._turn:
            self._set(key, state="running", started_at=utcnow().isoformat())
            started = time.perf_counter()
            try:
                check = self._verify(engine, recorded)
            except Exception as exc:
                # The database went away or the rebuild raised: the job says so; the process goes on.
                log.warning("verify %s v%d on %s failed: %s: %s", key[0], key[2], key[1], type(exc).__name__, exc)
                self._set(key, state="failed", error=f"{type(exc).__name__}: {exc}", finished_at=utcnow().isoformat(),
                          seconds=round(time.perf_counter() - started, 3))
                return
            self._set(key, state="ok" if check.ok else "mismatch", differences=list(check.differences),
                      notes=list(check.notes), finished_at=utcnow().isoformat(),
                      seconds=round(time.perf_counter() - started, 3))

    def _verify(self, engine: Any, recorded: Any) -> Any:
        if self._run is not None:
            return self._run(engine, recorded)
        from modelbus.handlers.log.verify import verify_version

        return verify_version(engine, recorded)


EXTENSION = "modelbus.dashboard.verify"
