"""Keeping a serving process's models current: reload on a model-update notice, poll the aliases as the fallback."""
from __future__ import annotations

import json
import logging
import threading
import time
from typing import Callable

from modelbus.handlers.serving.cache import ModelCache

log = logging.getLogger(__name__)


ALIAS_POLL_SECONDS = 1.0


def apply_update(cache: ModelCache, value: bytes | None) -> bool:
    """Reload the model named by one model-update notice; False for an unreadable notice."""
    try:
        notice = json.loads(value or b"")
        model, dataset = notice["model"], notice["dataset"]
        if not isinstance(model, str) or not isinstance(dataset, str):
            raise TypeError("model and dataset must be strings")
    except (ValueError, KeyError, TypeError) as exc:
        log.warning("ignoring an unreadable model-update notice %r: %s", (value or b"")[:200], exc)
        return False
    try:
        loaded = cache.on_update(model, dataset)
    except Exception:
        # A database blip while every serving process reloads at once must not stop them
        # all: keep what is loaded; the alias poll picks the move up when the store is back.
        log.exception("reloading %s/%s after a model-update notice failed; the alias poll retries", model, dataset)
        return False
    log.info("model update %s/%s v%s: serving %s", model, dataset, notice.get("version"),
             f"v{loaded.version}" if loaded else "nothing")
    return True


def poll_aliases(cache: ModelCache, seconds: float = ALIAS_POLL_SECONDS) -> Callable[[threading.Event], None]:
    """A thread target that reloads moved aliases every few seconds (the fallback to notices)."""

    def run(stop: threading.Event) -> None:
        failing_since = None
        while not stop.wait(seconds):
            try:
                cache.refresh()
            except Exception as exc:
                # Once per outage, not once a second: serving goes on with what is loaded.
                if failing_since is None:
                    failing_since = time.monotonic()
                    log.warning("polling the model aliases failed (%s: %s); serving what is loaded and retrying "
                                "every %gs", type(exc).__name__, str(exc)[:300], seconds)
                continue
            if failing_since is not None:
                log.info("polling the model aliases works again after %.0fs", time.monotonic() - failing_since)
                failing_since = None

    return run
