"""Runs the parts of a process as threads and stops them cleanly on SIGINT/SIGTERM."""
from __future__ import annotations

import atexit
import logging
import os
import signal
import sys
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
        # Set by install_signal_handlers: this Services runs the process, so it may end it.
        self._owns_process = False

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
        self._owns_process = True

    def at_exit(self, callback: Callable[[], None]) -> None:
        """Run `callback` once every part has stopped or the stop timeout has passed."""
        self._exits.append(callback)

    def wait(self, timeout: float = 30.0) -> bool:
        """Block until stop is set, then join every part within `timeout` in all; True when none failed.

        A part still running after the timeout is abandoned; when this Services runs the process
        (it installed the signal handlers), the process then ends with os._exit once the caller
        has finished (see _exit_past_abandoned).
        """
        while not self.stop.wait(0.5):
            pass
        deadline = time.monotonic() + timeout
        abandoned = []
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                log.error("%s did not stop within %.0fs; abandoning it", thread.name, timeout)
                abandoned.append(thread.name)
        for callback in self._exits:
            try:
                callback()
            except Exception:
                log.exception("shutdown step %s failed", getattr(callback, "__qualname__", callback))
        ok = not self._failed
        if abandoned and self._owns_process:
            atexit.register(_exit_past_abandoned, 0 if ok else 1)
        return ok


def _exit_past_abandoned(code: int) -> None:
    """End the process now, skipping the interpreter's finalisation, after flushing logs and stdio.

    A part that did not stop is a daemon thread, possibly inside native code (torch releases
    the GIL while it computes). When the interpreter finalises, such a thread that tries to
    take the GIL back is ended with pthread_exit, whose forced unwinding through C++ frames
    calls std::terminate: "terminate called without an active exception" and SIGABRT
    instead of the exit code; making the parts non-daemon threads would trade that for a hang
    past the stop timeout. Registered with atexit, this runs after the caller's own shutdown
    steps and after non-daemon threads were joined, but before finalisation. An abandoned
    batch has either committed whole or can no longer commit (its position update needs the
    lease this process released), so ending it here loses nothing.
    """
    # An exception that reached the top has been printed; it makes the exit code 1.
    if getattr(sys, "last_value", None) is not None:
        code = 1
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # a closed or broken pipe: nothing left to flush to
            pass
    os._exit(code)
