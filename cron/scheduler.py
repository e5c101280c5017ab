"""APScheduler 3 runs the configured jobs; each firing posts one build command for its slot.

The event id is `cron:<job>:<scheduled time, UTC>`, taken from the slot APScheduler
computed, never from the clock at run time. Any number of schedulers running the same
schedule over the same store therefore post the same ids, and the log keeps one event
per slot (embedded: the store's unique event id; Kafka mode: ingest drops the repeats).
Run two for availability: a slot that passes while no scheduler runs is not made up.
"""
from __future__ import annotations

import logging
import threading
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Protocol, Sequence

from apscheduler.executors.base import run_job
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler

from modelbus.backoff import backoff
from modelbus.cron.schedule import PlannedJob, ScheduleJob, command_event, plan, slot_id
from modelbus.db.events import REJECTED, Outcome

log = logging.getLogger(__name__)

SOURCE = "cron"
# Back-off between publish attempts within a slot.
RETRY_FIRST_SECONDS = 0.5
RETRY_MAX_SECONDS = 30.0


class Publisher(Protocol):
    """What a firing posts through: EventPublisher.post."""

    def post(self, events: Sequence[Any], source: str) -> list[Outcome]:
        """Post events; one Outcome per event."""


@dataclass(frozen=True)
class Firing:
    """What one firing did: its slot, event id, outcome status and attempts."""

    job: str
    scheduled: datetime
    event_id: str
    status: str
    attempts: int
    position: int | None = None


class _SlotJob:
    """A Job as run_job sees it, with the scheduled time added to its keyword arguments."""

    def __init__(self, job, run_time: datetime):
        self._job = job
        self.kwargs = {**job.kwargs, "scheduled": run_time}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._job, name)

    def __str__(self) -> str:
        return str(self._job)


class SlotExecutor(ThreadPoolExecutor):
    """A thread-pool executor that passes each run its scheduled time (APScheduler 3 does not: its issue 297).

    `_do_submit_job` + `run_job` is APScheduler 3's documented way to write an executor;
    run_job still applies the misfire grace time to every run time.
    """

    def _do_submit_job(self, job, run_times):
        logger_name = self._logger.name

        def run_all() -> list:
            events = []
            for run_time in run_times:
                events.extend(run_job(_SlotJob(job, run_time), job._jobstore_alias, [run_time], logger_name))
            return events

        def done(future) -> None:
            exc = future.exception()
            if exc is not None:
                self._run_job_error(job.id, exc, exc.__traceback__)
            else:
                self._run_job_success(job.id, future.result())

        self._pool.submit(run_all).add_done_callback(done)


class CronScheduler:
    """The configured schedule on a BackgroundScheduler, posting through `publisher`."""

    def __init__(self, publisher: Publisher, jobs: Sequence[ScheduleJob]):
        self.planned: dict[str, PlannedJob] = {p.name: p for p in plan(jobs)}
        self.publisher = publisher
        self._closing = threading.Event()
        self._lock = threading.Lock()
        # APScheduler logs two INFO lines per run; the firing's own line says more in one.
        logging.getLogger("apscheduler").setLevel(max(logging.WARNING, logging.getLogger().level))
        # Recent firings, newest last: for tests, logs and status pages.
        self.firings: deque[Firing] = deque(maxlen=1000)
        self._scheduler = BackgroundScheduler(
            executors={"default": SlotExecutor(max_workers=max(1, len(self.planned)))},
            timezone=timezone.utc,
        )
        for planned in self.planned.values():
            self._scheduler.add_job(
                self.fire,
                trigger=planned.trigger,
                args=[planned.name],
                id=planned.name,
                name=f"{planned.name} ({planned.job.command} {planned.job.dataset})",
                # coalesce: after a pause spanning several slots (suspended host, overloaded
                # machine) post only the newest one; every build reads the whole log up to
                # its command, so back-to-back builds of the missed slots would repeat one model.
                coalesce=True,
                # misfire_grace_time: a firing that starts late still posts its own slot. The
                # id is the slot's, so a late post never duplicates another scheduler's; past
                # the grace it is dropped with a warning (a nightly build hours late would meet
                # daytime traffic, and the next slot comes anyway).
                misfire_grace_time=planned.job.misfire_grace_seconds,
                # max_instances=1: a firing retrying a failed publish must not overlap the
                # next slot's; retries end before the next slot starts, so this never skips one.
                max_instances=1,
                replace_existing=True,
            )

    def start(self) -> None:
        """Start firing; logs one line per job with its next fire time."""
        self._scheduler.start()
        for planned in self.planned.values():
            job = planned.job
            log.info(
                "scheduler: job %s '%s' (%s) posts %s for dataset %s; next at %s",
                job.name, job.cron, job.timezone, job.command, job.dataset, _iso(self.next_fire_time(job.name)),
            )

    def shutdown(self) -> None:
        """Stop firing and wait for a firing in hand, which stops retrying (idempotent)."""
        self._closing.set()
        with self._lock:
            if self._scheduler.running:
                self._scheduler.shutdown(wait=True)

    def next_fire_time(self, name: str) -> datetime | None:
        """When the job fires next (None when the scheduler is not running or the job has ended)."""
        job = self._scheduler.get_job(name)
        return getattr(job, "next_run_time", None) if job is not None else None

    def fire(self, name: str, scheduled: datetime | None = None) -> Firing:
        """Post the command of job `name` for slot `scheduled`, retrying until the next slot begins."""
        if scheduled is None:
            raise RuntimeError(f"job {name} fired without its slot: it must run on SlotExecutor")
        planned = self.planned[name]
        event = command_event(planned.job, scheduled)
        deadline = _retry_deadline(planned, scheduled)
        attempts = 0
        while True:
            attempts += 1
            try:
                outcome = self.publisher.post([event], SOURCE)[0]
            except Exception as exc:  # a broker or database outage: retry within the slot
                left = (deadline - datetime.now(timezone.utc)).total_seconds()
                if left <= 0 or self._closing.is_set():
                    log.error(
                        "scheduler: job %s slot %s not posted after %d attempts (%s: %s); giving up on this slot",
                        name, event["id"], attempts, type(exc).__name__, exc,
                    )
                    return self._record(Firing(name, scheduled, event["id"], "failed", attempts))
                delay = min(left, backoff(attempts, RETRY_FIRST_SECONDS, RETRY_MAX_SECONDS))
                log.warning(
                    "scheduler: job %s slot %s: posting failed (%s: %s); retry %d in %.1fs",
                    name, event["id"], type(exc).__name__, exc, attempts, delay,
                )
                self._closing.wait(delay)
                continue
            if outcome.status == REJECTED:
                # Checked at start, so only a changed dataset schema gets here; retrying cannot help.
                log.error("scheduler: job %s slot %s rejected: %s", name, event["id"], outcome.error)
            else:
                log.info(
                    "scheduler: job %s slot %s %s%s; next at %s",
                    name, event["id"], outcome.status,
                    f" at position {outcome.position}" if outcome.position else "",
                    _iso(self.next_fire_time(name)),
                )
            return self._record(Firing(name, scheduled, event["id"], outcome.status, attempts, outcome.position))

    def _record(self, firing: Firing) -> Firing:
        self.firings.append(firing)
        return firing


def _retry_deadline(planned: PlannedJob, scheduled: datetime) -> datetime:
    # Stop a little before the next slot so that slot's firing never meets this one
    # still running (max_instances=1 would skip it).
    following = planned.trigger.get_next_fire_time(scheduled, scheduled)
    if following is None:
        return scheduled.astimezone(timezone.utc) + timedelta(seconds=planned.job.misfire_grace_seconds)
    margin = min(timedelta(seconds=1), (following - scheduled) / 4)
    return (following - margin).astimezone(timezone.utc)


def _iso(moment: datetime | None) -> str:
    if moment is None:
        return "never"
    return moment.astimezone(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def start_scheduler(publisher: Publisher, jobs: Sequence[ScheduleJob], stop: threading.Event) -> CronScheduler:
    """Start `jobs` posting through `publisher`; it shuts down when `stop` is set."""
    scheduler = CronScheduler(publisher, jobs)
    scheduler.start()

    def watch() -> None:
        stop.wait()
        scheduler.shutdown()

    threading.Thread(target=watch, name="scheduler-stop", daemon=True).start()
    return scheduler


def run_scheduler(publisher: Publisher, jobs: Sequence[ScheduleJob], stop: threading.Event) -> None:
    """Run `jobs` until `stop` is set: a Services target for `modelbus up` and `modelbus scheduler`."""
    if not jobs:
        log.info("scheduler: no jobs configured (settings 'schedule'); not starting")
        return
    scheduler = start_scheduler(publisher, jobs, stop)
    try:
        stop.wait()
    finally:
        scheduler.shutdown()


__all__ = ["CronScheduler", "Firing", "SlotExecutor", "run_scheduler", "slot_id", "start_scheduler"]
