"""The schedule from configuration, checked at start: cron expressions, commands, datasets, params."""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Sequence
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.triggers.cron import CronTrigger
from pydantic import BaseModel, Field

from modelbus.messages.errors import Rejected
from modelbus.messages.parse import parse_event_obj
from modelbus.messages.types import BUILD_COMMANDS

# A job name goes into every event id it posts (ids are at most 128 characters).
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


class ScheduleError(ValueError):
    """A schedule that cannot run; the message names the job and what is wrong with it."""


class ScheduleJob(BaseModel):
    """One cron job: when, which command, for which dataset, with which params."""

    name: str
    cron: str
    command: str
    dataset: str = "default"
    params: dict[str, Any] | None = None
    # The zone the cron expression is read in (IANA name); the slot in the event id is UTC.
    timezone: str = "UTC"
    # How late a firing may still post its slot; see cron/scheduler.py for why.
    misfire_grace_seconds: int = Field(default=300, ge=1)


@dataclass(frozen=True)
class PlannedJob:
    """A validated job: its configuration and the trigger that computes its slots."""

    job: ScheduleJob
    trigger: CronTrigger

    @property
    def name(self) -> str:
        """The job's name, as it appears in event ids."""
        return self.job.name


def _day_number(token: str) -> int:
    token = token.strip().lower()
    if token in _DAYS:
        return _DAYS.index(token)
    if token.isdigit() and 0 <= int(token) <= 7:
        return int(token) % 7
    raise ValueError(f"day of week '{token}' is not 0-7 or sun..sat")


def crontab_days(field: str) -> str:
    """A crontab day-of-week field (0 and 7 are Sunday) as APScheduler 3's weekday names.

    APScheduler 3 reads 0 as Monday (its issue 286), so a crontab line copied verbatim
    would fire a day late; the field is expanded here to explicit names instead.
    """
    if field == "*":
        return "*"
    days: set[int] = set()
    for item in field.split(","):
        part, _, step_text = item.partition("/")
        step = 1
        if step_text:
            if not step_text.isdigit() or int(step_text) < 1:
                raise ValueError(f"day of week step '{step_text}' must be a positive integer")
            step = int(step_text)
        if part == "*":
            low, high = 0, 6
        elif "-" in part:
            first, last = part.split("-", 1)
            low, high = _day_number(first), _day_number(last)
            if last.strip() == "7":
                high = 7  # "5-7" is Friday to Sunday
            if high < low:
                raise ValueError(f"day of week range '{part}' runs backwards")
        else:
            low = _day_number(part)
            high = 6 if step_text else low  # "1/2" means from Monday every second day
        days.update(day % 7 for day in range(low, high + 1, step))
    return ",".join(_DAYS[day] for day in sorted(days))


def make_trigger(expr: str, tz: str) -> CronTrigger:
    """A trigger from a crontab line (5 fields), or 6 fields with seconds first; read in zone tz."""
    fields = expr.split()
    if len(fields) == 5:
        fields = ["0", *fields]
    if len(fields) != 6:
        raise ValueError(f"has {len(fields)} fields; expected 5 (minute hour day month weekday) or 6 (seconds first)")
    second, minute, hour, day, month, weekday = fields
    return CronTrigger(
        second=second,
        minute=minute,
        hour=hour,
        day=day,
        month=month,
        day_of_week=crontab_days(weekday),
        timezone=ZoneInfo(tz),
    )


def slot_id(name: str, scheduled: datetime) -> str:
    """The idempotency key of one firing: cron:<job>:<scheduled time, ISO-8601 UTC>."""
    utc = scheduled.astimezone(timezone.utc)
    stamp = utc.strftime("%Y-%m-%dT%H:%M:%S")
    if utc.microsecond:
        stamp += f".{utc.microsecond:06d}"
    return f"cron:{name}:{stamp}Z"


def command_event(job: ScheduleJob, scheduled: datetime) -> dict[str, Any]:
    """The command event one firing of `job` posts for the slot `scheduled`."""
    event: dict[str, Any] = {
        "type": "command",
        "payload": job.command,
        "dataset": job.dataset,
        "id": slot_id(job.name, scheduled),
    }
    if job.params is not None:
        event["params"] = job.params
    return event


def _check_params(job: ScheduleJob) -> None:
    if not job.params:
        return
    # Imported only when params need checking: the mlp builder loads torch.
    from modelbus.builders.base import BuildError, get_builder

    try:
        get_builder(BUILD_COMMANDS[job.command]).validate_params(job.params)
    except BuildError as exc:
        raise ValueError(f"params: {exc}") from None


def plan_job(job: ScheduleJob) -> PlannedJob:
    """Check one job; ScheduleError names the job and the reason."""
    where = f"schedule job '{job.name}'"
    if not _NAME_RE.match(job.name):
        raise ScheduleError(f"{where}: the name must be 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit")
    if job.command not in BUILD_COMMANDS:
        raise ScheduleError(f"{where}: unknown command '{job.command}' (cron posts {', '.join(sorted(BUILD_COMMANDS))})")
    try:
        ZoneInfo(job.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ScheduleError(f"{where}: unknown timezone '{job.timezone}' (use an IANA name such as UTC or Europe/London)") from None
    try:
        trigger = make_trigger(job.cron, job.timezone)
    except ValueError as exc:
        raise ScheduleError(f"{where}: bad cron expression '{job.cron}': {exc}") from None
    try:
        parse_event_obj(command_event(job, datetime(2000, 1, 1, tzinfo=timezone.utc)))
    except Rejected as exc:
        raise ScheduleError(f"{where}: {exc.message}") from None
    try:
        _check_params(job)
    except ValueError as exc:
        raise ScheduleError(f"{where}: {exc}") from None
    return PlannedJob(job=job, trigger=trigger)


def plan(jobs: Sequence[ScheduleJob]) -> list[PlannedJob]:
    """Check every job of a schedule (names unique); the first problem raises ScheduleError."""
    seen: set[str] = set()
    planned = []
    for job in jobs:
        if job.name in seen:
            raise ScheduleError(f"schedule job '{job.name}': the name is used twice")
        seen.add(job.name)
        planned.append(plan_job(job))
    return planned
