"""Helpers for the serving tests: small fitted models and an in-memory registry for the pure cache tests."""
from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import lru_cache
from pathlib import Path

import numpy as np

from modelbus.builders import TrainingData, get_builder

ROOT = Path(__file__).resolve().parents[1]
DARCEY = ROOT / "data" / "darcey.csv"
FAST_MLP = {"epochs": 30, "hidden": [8]}


@lru_cache(maxsize=None)
def darcey() -> TrainingData:
    """The seed's data set: craig, len, bruno -> darcey."""
    rows = np.loadtxt(DARCEY, delimiter=",", ndmin=2)  # no header row
    return TrainingData.from_rows(rows, keys=np.arange(1, len(rows) + 1))


@lru_cache(maxsize=None)
def artifact(kind: str, seed: int = 6) -> tuple[bytes, float]:
    """A fitted model's artifact and main metric (mlp: accuracy, else r2), cached per process."""
    params = dict(FAST_MLP, seed=seed) if kind == "mlp" else {"seed": seed}
    result = get_builder(kind).fit(darcey(), params)
    metric = result.metrics.get("accuracy") if kind == "mlp" else result.metrics.get("r2")
    return result.model.to_bytes(), float(metric)


@dataclass(frozen=True)
class FakeVersion:
    """The fields of db.registry.ModelVersion that serving reads."""

    model: str
    dataset: str
    version: int
    uuid: str
    main_metric: float
    artifact: bytes | None
    status: str = "ok"
    params: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    created_at: datetime = field(default_factory=datetime.utcnow)


class FakeRegistry:
    """An in-memory registry with the reads of handlers.serving.registry.Registry (pure cache tests only)."""

    def __init__(self) -> None:
        self.versions: dict[tuple[str, str, int], FakeVersion] = {}
        self.alias: dict[tuple[str, str], int] = {}
        self.generation = 0
        self.reads = 0
        self._lock = threading.Lock()

    def add(self, model: str, dataset: str = "default", *, seed: int = 6, promote: bool = True,
            artifact_bytes: bytes | None = None) -> FakeVersion:
        """Add the next version of (model, dataset), fitted on darcey; promote it unless told not to."""
        data, metric = artifact(model, seed)
        with self._lock:
            number = 1 + max((v for m, d, v in self.versions if (m, d) == (model, dataset)), default=0)
            mv = FakeVersion(model, dataset, number, str(uuid.uuid4()), metric,
                             artifact_bytes if artifact_bytes is not None else data)
            self.versions[(model, dataset, number)] = mv
            if promote:
                self.alias[(model, dataset)] = number
                self.generation += 1
        return mv

    def promote(self, model: str, dataset: str, version: int) -> None:
        """Move the alias."""
        with self._lock:
            self.alias[(model, dataset)] = version
            self.generation += 1

    def production(self, model: str, dataset: str):
        self.reads += 1
        number = self.alias.get((model, dataset))
        return None if number is None else self.versions[(model, dataset, number)]

    def get_version(self, model: str, dataset: str, version: int):
        self.reads += 1
        return self.versions.get((model, dataset, version))

    def aliases(self) -> dict[tuple[str, str], int]:
        return dict(self.alias)

    def automatic_promotions(self, model: str | None = None, dataset: str | None = None) -> dict:
        return {}

    def alias_generation(self) -> int:
        return self.generation

    def listing(self, mv: FakeVersion) -> FakeVersion:
        """A version as list_versions gives it (no artifact)."""
        return replace(mv, artifact=None)


# -- real builds through the log and the build handler (db.registry, handlers.log.build) ----------


def darcey_events(dataset: str = "default") -> list[dict]:
    """The seed's data as training events."""
    rows = np.loadtxt(DARCEY, delimiter=",", ndmin=2)  # no header row
    return [{"type": "training", "dataset": dataset, "payload": ",".join(str(int(v)) for v in row)} for row in rows]


def run_handlers(app) -> None:
    """Run every handler of the App until the log is applied, including the promote events builds append."""
    from modelbus.handlers.follow.follower import Follower

    followers = [Follower(app.store, handler, "test-owner") for handler in app.handlers()]
    while any(f.position() < app.store.head() for f in followers):
        for follower in followers:
            follower.catch_up()


def build(app, kind: str, dataset: str = "default", params: dict | None = None, promote: int | None = None) -> None:
    """Post a build command (fast params), optionally a promote, and run the handlers."""
    events: list[dict] = [{"type": "command", "payload": f"build_{kind}", "dataset": dataset,
                           "params": params if params is not None else (dict(FAST_MLP) if kind == "mlp" else {})}]
    if promote is not None:
        events.append({"type": "command", "payload": "promote", "model": kind, "dataset": dataset, "version": promote})
    outcomes = app.publisher.post(events, "test")
    assert all(o.status == "accepted" for o in outcomes), outcomes
    run_handlers(app)


def seed_models(app, dataset: str = "default") -> None:
    """darcey in the log, and one version of each model kind, promoted."""
    outcomes = app.publisher.post(darcey_events(dataset), "test")
    assert all(o.status == "accepted" for o in outcomes)
    for kind in ("mlp", "slr", "linear"):
        build(app, kind, dataset)


# -- subprocesses -----------------------------------------------------------------------------


CLI_MAIN = "from modelbus.cli import main; main()"


class Proc:
    """A `modelbus ...` subprocess whose combined output is collected as it runs."""

    # How often wait_for looks at the output again.
    POLL_SECONDS = 0.05

    def __init__(self, args: list[str], env: dict[str, str], name: str | None = None, cwd: str | Path | None = None,
                 script: str = CLI_MAIN):
        import subprocess
        import sys

        self.name = name or args[0]
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, "-c", script, *args],
            cwd=cwd or ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.decode("utf-8", "replace").rstrip())

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def log(self, last: int = 60) -> str:
        return f"--- {self.name} (exit {self.proc.poll()}) ---\n" + "\n".join(self.lines[-last:])

    def wait_for(self, needle: str, timeout: float = 90.0, after: int = 0) -> str:
        """Block until an output line (from line `after` on) contains needle; returns the line."""
        import time

        deadline = time.monotonic() + timeout
        seen = after
        while True:
            lines = list(self.lines)
            for line in lines[seen:]:
                if needle in line:
                    return line
            seen = len(lines)
            if not self.alive and seen == len(self.lines):
                raise AssertionError(f"{self.name} exited before {needle!r}\n{self.log()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no {needle!r} from {self.name} within {timeout:.0f}s\n{self.log()}")
            time.sleep(self.POLL_SECONDS)

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM and wait for the exit code."""
        import signal
        import subprocess

        if self.alive:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait(10)
        self._reader.join(5)
        return code
