"""Runs the parts of a process as threads and stops them cleanly on SIGINT/SIGTERM."""
from __future__ import annotations

import logging
import signal
import threading
import time
from typing import Callable

log = logging.getLogger(__name__)


class Services:
    """A set of long-running parts sharing one stop event."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._failed: list[str] = []
        self._exits: list[Callable[[], None]] = []

    def start(self, name: str, target: Callable[[threading.Event], None]) -> None:
        """Run `target(stop)` in a thread; if it raises, everything stops."""

        def main() -> None:
            try:
                target(self.stop)
            except BaseException:
                log.exception("%s crashed; stopping", name)
                self._failed.append(name)
                self.stop.set()

        thread = threading.Thread(target=main, name=name, daemon=True)
        self._threads.append(thread)
        thread.start()

    def install_signal_handlers(self) -> None:
        """SIGINT and SIGTERM set the stop event (main thread only)."""

        def handle(signum, _frame) -> None:
            log.info("received %s; finishing the work in hand", signal.Signals(signum).name)
            self.stop.set()

        signal.signal(signal.SIGINT, handle)
        signal.signal(signal.SIGTERM, handle)

    def at_exit(self, callback: Callable[[], None]) -> None:
        """Run `callback` once every part has stopped or the stop timeout has passed."""
        self._exits.append(callback)

    def wait(self, timeout: float = 30.0) -> bool:
        """Block until stop is set, then join every part within `timeout` in all; True when none failed."""
        while not self.stop.wait(0.5):
            pass
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                log.error("%s did not stop within %.0fs; abandoning it", thread.name, timeout)
        for callback in self._exits:
            try:
                callback()
            except Exception:
                log.exception("shutdown step %s failed", getattr(callback, "__qualname__", callback))
        return not self._failed
