"""The cache of loaded model versions: production per (model, dataset), pinned versions, misses."""
from __future__ import annotations

import logging
import sys
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable

from modelbus.handlers.serving.registry import Registry
from modelbus.messages.errors import Rejected
from modelbus.messages.types import MODEL_KINDS

log = logging.getLogger(__name__)


PINNED_CACHE_SIZE = 32


MISSING_CACHE_SIZE = 1024


@dataclass(frozen=True)
class Loaded:
    """A model version ready to predict: its registry identity and the loaded Model."""

    model: str
    dataset: str
    version: int
    uuid: str
    main_metric: float | None
    predictor: Any  # builders.base.Model

    @property
    def key(self) -> tuple[str, str, int]:
        """(model, dataset, version)."""
        return (self.model, self.dataset, self.version)


_THREAD = threading.local()


def serving_threads() -> None:
    """One torch intra-op thread for serving in the calling thread, once torch is loaded.

    Serving runs tiny forward passes (a few rows through small layers): on one thread a
    batch of 256 takes ~0.2 ms, with a thread per core ~7 ms on a busy 2-core machine, as
    the threads spin and fight the rest of the process for the cores. Builds set their own
    thread count and restore this one after. OpenMP keeps the count per calling thread, so
    every thread that runs forward passes (the batcher's, or a server thread running its own
    batch) calls this: a new thread would otherwise start with a thread per core.
    """
    torch = sys.modules.get("torch")
    if torch is not None and not getattr(_THREAD, "set", False):
        # Set once in each thread: get_num_threads reads torch's global count, which may say 1
        # while this thread's OpenMP count is still one per core.
        torch.set_num_threads(1)
        _THREAD.set = True


def load_version(mv: Any) -> Loaded:
    """Build a Loaded from a ModelVersion with its artifact (raises ValueError on a bad artifact)."""
    from modelbus.builders import get_builder

    if mv.artifact is None:
        raise ValueError(f"{mv.model} v{mv.version} of dataset '{mv.dataset}' has no artifact")
    predictor = get_builder(mv.model).load(mv.artifact)
    serving_threads()
    metric = None if mv.main_metric is None else float(mv.main_metric)
    return Loaded(mv.model, mv.dataset, int(mv.version), str(mv.uuid), metric, predictor)


class ModelCache:
    """Loaded production models per (model, dataset), and recently pinned versions.

    Reads never lock: a reload builds the new Model completely, then replaces the dict
    entry in one assignment, so a request sees the old version or the new one, never
    a half-loaded one. Registry reads, loads and installs are serialised by one lock so
    a slow reload can never install an older version over a newer one.
    """

    def __init__(self, registry: Registry, *, pinned_size: int = PINNED_CACHE_SIZE,
                 on_swap: Callable[[Loaded | None, Loaded | None], None] | None = None):
        self.registry = registry
        self._production: dict[tuple[str, str], Loaded] = {}
        # (model, dataset) pairs known to have no production version; bounded, because the
        # names come from unauthenticated requests and must not grow memory without limit.
        self._missing: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._pinned: OrderedDict[tuple[str, str, int], Loaded] = OrderedDict()
        self._pinned_size = pinned_size
        self._lock = threading.RLock()
        self._generation: int | None = None
        self._on_swap = on_swap
        self.swaps = 0

    # -- lookups ---------------------------------------------------------------------

    def get(self, model: str, dataset: str, version: int | None = None) -> Loaded:
        """The model to answer with, or Rejected (no_production_version, unknown_version, ...)."""
        if model not in MODEL_KINDS:
            raise Rejected("unknown_model", f"model '{model}' is unknown (known: {', '.join(sorted(MODEL_KINDS))})")
        key = (model, dataset)
        try:
            current: Loaded | None = self._production[key]
        except KeyError:
            current = None if key in self._missing else self._reload(key, force=False)
        if version is None:
            if current is None:
                raise Rejected("no_production_version", f"{model} has no production version for dataset '{dataset}'")
            return current
        if current is not None and current.version == version:
            return current
        return self._get_pinned(model, dataset, version)

    def _get_pinned(self, model: str, dataset: str, version: int) -> Loaded:
        pkey = (model, dataset, version)
        loaded = self._pinned.get(pkey)
        if loaded is not None:
            return loaded
        with self._lock:
            loaded = self._pinned.get(pkey)
            if loaded is not None:
                return loaded
            mv = self.registry.get_version(model, dataset, version)
            if mv is None:
                raise Rejected("unknown_version", f"{model} has no version {version} for dataset '{dataset}'")
            loaded = self._load(mv)
            self._pinned[pkey] = loaded
            while len(self._pinned) > self._pinned_size:
                self._pinned.popitem(last=False)
            return loaded

    def _load(self, mv: Any) -> Loaded:
        try:
            return load_version(mv)
        except Exception as exc:
            log.exception("loading %s v%s of dataset '%s' failed", mv.model, mv.version, mv.dataset)
            raise Rejected(
                "model_unavailable", f"{mv.model} v{mv.version} of dataset '{mv.dataset}' cannot be loaded: {exc}"
            ) from None

    def _reload(self, key: tuple[str, str], force: bool) -> Loaded | None:
        """Read the production version of key, load it and install it; keeps the old one on failure."""
        with self._lock:
            if not force and key in self._production:
                return self._production[key]
            if not force and key in self._missing:
                return None
            old = self._production.get(key)
            mv = self.registry.production(*key)
            if mv is None and old is not None:
                # Aliases only vanish while `modelbus replay` rebuilds the registry: keep
                # serving what we have until the replayed alias comes back.
                return old
            if mv is None:
                self._missing[key] = None
                while len(self._missing) > MISSING_CACHE_SIZE:
                    self._missing.popitem(last=False)
                return None
            elif old is not None and old.version == mv.version and old.uuid == str(mv.uuid):
                return old
            else:
                try:
                    new = load_version(mv)
                except Exception:
                    # Keep serving what we have; the next notice or poll retries.
                    log.exception("loading %s v%s of dataset '%s' failed; keeping the loaded version",
                                  mv.model, mv.version, mv.dataset)
                    if key in self._production:
                        return old
                    raise Rejected(
                        "model_unavailable", f"{mv.model} v{mv.version} of dataset '{mv.dataset}' cannot be loaded"
                    ) from None
            changed = (old.key if old else None) != new.key
            self._production[key] = new
            self._missing.pop(key, None)
            if changed:
                self.swaps += 1
                log.info("serving %s for %s/%s (was %s)", f"v{new.version}" if new else "nothing",
                         key[0], key[1], f"v{old.version}" if old else "nothing")
                if self._on_swap is not None:
                    self._on_swap(old, new)
            return new

    # -- hot reload ------------------------------------------------------------------

    def on_update(self, model: str, dataset: str) -> Loaded | None:
        """A model-update notice for (model, dataset): reload its production version now."""
        try:
            return self._reload((model, dataset), force=True)
        except Rejected:
            return None

    def refresh(self) -> bool:
        """Reload every alias that moved since the last call (the polling fallback); True if any did."""
        from modelbus.db.breaker import DatabaseUnavailable

        try:
            generation = self.registry.alias_generation()
        except DatabaseUnavailable:
            # The database is known not to answer (its breaker logged that once): nothing can
            # have been learnt; the first poll after it answers again catches up.
            return False
        if generation == self._generation:
            return False
        # Read the generation before the aliases: a move in between shows up next time.
        aliases = self.registry.aliases()
        moved = False
        for key in set(self._production) | set(aliases):
            current = self._production.get(key)
            if (current.version if current else None) != aliases.get(key):
                self.on_update(*key)
                moved = True
        self._generation = generation
        return moved

    def warm(self) -> int:
        """Load every production version now (at start); returns how many are loaded."""
        self.refresh()
        return len(self.loaded())

    def loaded(self) -> list[Loaded]:
        """The production versions currently served."""
        return [v for v in list(self._production.values()) if v is not None]
