"""The scheduler: schedule validation, slot ids, retries, and one event per slot from two schedulers."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone

import pytest
from click.testing import CliRunner

from modelbus.up import ingest_config
from modelbus.cron import scheduler as cron_scheduler
from modelbus.cron.schedule import ScheduleError, command_event, crontab_days, make_trigger, plan, slot_id
from modelbus.cron.scheduler import CronScheduler, run_scheduler
from modelbus.db import registry
from modelbus.db.events import ACCEPTED, DUPLICATE
from modelbus.handlers.log.build import BuildHandler
from modelbus.handlers.workers.ingest import IngestWorker
from modelbus.handlers.follow.follower import Follower
from modelbus import demo
from modelbus.app import App
from modelbus.cli import main
from modelbus.settings import ScheduleJob, Settings
from tests.conftest import kafka_settings

UTC = timezone.utc
EVERY_SECOND = ScheduleJob(name="linear-every-second", cron="* * * * * *", command="build_linear")
SLOTS = 10


def job(**fields) -> ScheduleJob:
    values = dict(name="nightly", cron="45 1 * * *", command="build_mlp")
    values.update(fields)
    return ScheduleJob(**values)


# --- the schedule --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "field, days",
    [
        ("*", "*"),
        ("0", "sun"),
        ("7", "sun"),
        ("1-5", "mon,tue,wed,thu,fri"),
        ("5-7", "sun,fri,sat"),
        ("*/2", "sun,tue,thu,sat"),
        ("mon-fri", "mon,tue,wed,thu,fri"),
        ("sat,0", "sun,sat"),
    ],
)
def test_crontab_weekdays_mean_what_crontab_means(field, days):
    # APScheduler 3 reads 0 as Monday; a copied crontab line must still fire on Sunday.
    assert crontab_days(field) == days


def test_a_crontab_line_fires_when_cron_would():
    trigger = make_trigger("0 1 * * 0", "UTC")  # Sundays at 01:00
    wednesday = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
    assert trigger.get_next_fire_time(None, wednesday) == datetime(2026, 11, 29, 1, 0, tzinfo=UTC)
    seconds = make_trigger("*/15 * * * * *", "UTC")  # six fields: seconds first
    assert seconds.get_next_fire_time(None, wednesday + timedelta(seconds=1)) == wednesday + timedelta(seconds=15)


def test_the_event_of_a_slot_carries_the_slot_in_utc():
    london = job(name="nightly-mlp", timezone="Europe/London", params={"epochs": 50})
    trigger = plan([london])[0].trigger
    # 01:45 London summer time is 00:45 UTC: the id names the UTC instant, whatever the zone.
    slot = trigger.get_next_fire_time(None, datetime(2026, 7, 1, 12, 0, tzinfo=UTC))
    assert command_event(london, slot) == {
        "type": "command",
        "payload": "build_mlp",
        "dataset": "default",
        "params": {"epochs": 50},
        "id": "cron:nightly-mlp:2026-07-02T00:45:00Z",
    }
    assert slot_id("x", datetime(2026, 1, 1, 1, 0, 0, 250000, tzinfo=UTC)) == "cron:x:2026-01-01T01:00:00.250000Z"


@pytest.mark.parametrize(
    "fields, message",
    [
        (dict(cron="61 * * * *"), "schedule job 'nightly': bad cron expression '61 * * * *'"),
        (dict(cron="0 1 * *"), "has 4 fields; expected 5"),
        (dict(cron="0 1 * * 8"), "day of week '8'"),
        (dict(command="build_tree"), "schedule job 'nightly': unknown command 'build_tree'"),
        (dict(command="promote"), "unknown command 'promote'"),
        (dict(timezone="Mars/Olympus"), "unknown timezone 'Mars/Olympus'"),
        (dict(name="two words"), "schedule job 'two words': the name must be"),
        (dict(dataset="no/slash"), "dataset 'no/slash' must be"),
        (dict(params={"epochs": 0}), "schedule job 'nightly': params:"),
        (dict(params={"epochz": 5}), "unknown key 'epochz'"),
    ],
)
def test_a_bad_job_is_refused_at_start_naming_the_job(fields, message):
    with pytest.raises(ScheduleError) as caught:
        plan([job(**fields)])
    assert message in str(caught.value)
    with pytest.raises(ScheduleError):
        CronScheduler(publisher=None, jobs=[job(**fields)])


def test_job_names_are_unique():
    with pytest.raises(ScheduleError, match="schedule job 'nightly': the name is used twice"):
        plan([job(), job(command="build_slr")])


def test_the_cli_refuses_a_bad_schedule_and_checks_a_good_one(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    monkeypatch.setenv("MODELBUS_SCHEDULE", '[{"name":"seed-dtr","cron":"0 1 * * *","command":"build_tree"}]')
    bad = runner.invoke(main, ["scheduler"])
    assert bad.exit_code == 1
    assert "schedule job 'seed-dtr': unknown command 'build_tree'" in bad.output
    monkeypatch.setenv("MODELBUS_SCHEDULE", '[{"name":"slr","cron":"30 1 * * *","command":"build_slr"}]')
    good = runner.invoke(main, ["scheduler", "--check", "--next", "2"])
    assert good.exit_code == 0, good.output
    assert good.output.startswith("slr: '30 1 * * *' (UTC) build_slr dataset default; next ")
    assert good.output.count("T01:30:00Z") == 2
    monkeypatch.setenv("MODELBUS_SCHEDULE", "[]")
    empty = runner.invoke(main, ["scheduler"])
    assert empty.exit_code == 1 and "the schedule is empty" in empty.output


# --- firing --------------------------------------------------------------------------------


class Flaky:
    """The real publisher behind an outage that lasts `failures` posts (or until healed)."""

    def __init__(self, publisher, failures: int = 10**9):
        self.publisher = publisher
        self.failures = failures
        self.calls = 0

    def post(self, events, source):
        self.calls += 1
        if self.failures > 0:
            self.failures -= 1
            raise ConnectionError("database unreachable")
        return self.publisher.post(events, source)


@pytest.fixture
def app(tmp_path):
    app = App(Settings(database_url=f"sqlite:///{tmp_path / 'cron.db'}"))
    yield app
    app.close()


def cron_events(store) -> list:
    # By id, not by source: in Kafka mode the log records the event_topic coordinate.
    return [r for r in store.read(after=0, limit=10_000, type="command") if r.event_id.startswith("cron:")]


def test_a_failed_post_is_retried_within_its_slot(app, monkeypatch):
    monkeypatch.setattr(cron_scheduler, "RETRY_FIRST_SECONDS", 0.01)
    flaky = Flaky(app.publisher, failures=2)
    scheduler = CronScheduler(flaky, [job()])
    # The job's latest slot (01:45 UTC daily): its retries may run until the next one begins.
    slot = datetime.now(UTC).replace(hour=1, minute=45, second=0, microsecond=0)
    if slot > datetime.now(UTC):
        slot -= timedelta(days=1)
    firing = scheduler.fire("nightly", slot)
    assert (firing.status, firing.attempts, firing.event_id) == (ACCEPTED, 3, f"cron:nightly:{slot:%Y-%m-%dT%H:%M:%SZ}")
    assert [r.event_id for r in cron_events(app.store)] == [firing.event_id]
    # The same slot fired again (a second scheduler, a restart) adds nothing.
    assert scheduler.fire("nightly", slot).status == DUPLICATE
    assert len(cron_events(app.store)) == 1


def test_an_outage_never_kills_the_scheduler(app, monkeypatch):
    monkeypatch.setattr(cron_scheduler, "RETRY_FIRST_SECONDS", 0.05)
    flaky = Flaky(app.publisher)
    scheduler = CronScheduler(flaky, [EVERY_SECOND])
    scheduler.start()
    try:
        wait_for(lambda: sum(f.status == "failed" for f in scheduler.firings) >= 2, 30)
        # Several attempts per one-second slot, each slot given up before the next begins.
        assert flaky.calls > len(scheduler.firings)
        flaky.failures = 0
        wait_for(lambda: len(cron_events(app.store)) >= 2, 30)
    finally:
        scheduler.shutdown()
    failed = {f.event_id for f in scheduler.firings if f.status == "failed"}
    posted = [r.event_id for r in cron_events(app.store)]
    assert posted and not failed & set(posted)
    assert all(f.attempts == 1 for f in scheduler.firings if f.status == ACCEPTED)


def test_run_scheduler_stops_on_the_stop_event(app):
    stop = threading.Event()
    thread = threading.Thread(target=run_scheduler, args=(app.publisher, [EVERY_SECOND], stop))
    thread.start()
    wait_for(lambda: len(cron_events(app.store)) >= 1, 30)
    stop.set()
    thread.join(15)
    assert not thread.is_alive()
    # Nothing configured: returns at once instead of idling.
    run_scheduler(app.publisher, [], threading.Event())


# --- two schedulers, one event per slot ----------------------------------------------------


def wait_for(condition, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached within {seconds}s")
        time.sleep(0.1)


def common_slots(schedulers) -> list[datetime]:
    fired = [{f.scheduled for f in s.firings} for s in schedulers]
    return sorted(set.intersection(*fired))


def run_two_schedulers(apps) -> tuple[list[CronScheduler], list[datetime]]:
    schedulers = [CronScheduler(a.publisher, [EVERY_SECOND]) for a in apps]
    for s in schedulers:
        s.start()
    try:
        wait_for(lambda: len(common_slots(schedulers)) >= SLOTS + 1, 90)
    finally:
        for s in schedulers:
            s.shutdown()
    return schedulers, common_slots(schedulers)[:SLOTS]


def check_one_event_per_slot(store, schedulers, slots) -> None:
    # Ten consecutive one-second slots, each fired by both schedulers...
    assert [(b - a).total_seconds() for a, b in zip(slots, slots[1:])] == [1.0] * (SLOTS - 1)
    by_id = {}
    for row in cron_events(store):
        assert row.event_id not in by_id
        by_id[row.event_id] = row
    for slot in slots:
        # ...made exactly one command event in the log (ids are unique, checked above).
        row = by_id.get(slot_id(EVERY_SECOND.name, slot))
        assert row is not None, slot
        assert (row.name, row.dataset) == ("build_linear", "default")
    # Every firing of any slot posted that slot's id and nothing else: the log holds one
    # event per distinct slot fired, however many schedulers fired it.
    fired = {f.event_id for s in schedulers for f in s.firings}
    assert set(by_id) == fired


def test_two_schedulers_make_one_build_per_slot(db_url):
    settings = Settings(database_url=db_url)
    apps = [App(settings), App(settings)]
    try:
        # Training data first, so each slot's build has something to fit.
        demo.post_demo(apps[0].publisher, 60, builds=())
        schedulers, slots = run_two_schedulers(apps)
        store = apps[0].store
        check_one_event_per_slot(store, schedulers, slots)
        # In the embedded store the first post of a slot is accepted, the other a duplicate.
        for slot in slots:
            statuses = sorted(f.status for s in schedulers for f in s.firings if f.scheduled == slot)
            assert statuses == [ACCEPTED, DUPLICATE]

        # The builds happen: one linear version per cron command, from the same log.
        Follower(store, BuildHandler(store.engine, min_test_rows=1)).catch_up()
        builds = {b["event_id"]: b for b in registry.builds(store.engine, model="linear", limit=1000)}
        commands = cron_events(store)
        assert set(builds) == {r.event_id for r in commands}
        assert all(b["status"] == "ok" and b["n_events"] == 60 for b in builds.values())
        versions = registry.list_versions(store.engine, "linear", "default")
        assert len(versions) == len(commands) >= SLOTS
    finally:
        for a in apps:
            a.close()


def test_two_schedulers_in_kafka_mode_make_one_event_per_slot(kafka_bootstrap, topics, tmp_path):
    from modelbus.commands.kafka import create_topics

    settings = kafka_settings(f"sqlite:///{tmp_path / 'kafka.db'}", kafka_bootstrap, topics)
    create_topics(settings.kafka, partitions=1)
    apps = [App(settings), App(settings)]
    stop = threading.Event()
    ingest = IngestWorker(ingest_config(settings), apps[0].store, apps[0].transport)
    thread = threading.Thread(target=ingest.run, args=(stop,), daemon=True)
    thread.start()
    try:
        assert ingest.ready.wait(60), "ingest never joined its group"
        schedulers, slots = run_two_schedulers(apps)
        # Both schedulers published every slot to event_topic; ingest keeps the first of each id.
        posted = sum(len(s.firings) for s in schedulers)
        wait_for(lambda: ingest.counts[ACCEPTED] + ingest.counts[DUPLICATE] >= posted, 60)
        assert all(f.status == "queued" for s in schedulers for f in s.firings)
        check_one_event_per_slot(apps[0].store, schedulers, slots)
        assert ingest.counts[DUPLICATE] >= SLOTS
        assert ingest.counts[ACCEPTED] == len(cron_events(apps[0].store))
    finally:
        stop.set()
        thread.join(30)
        for a in apps:
            a.close()


def test_modelbus_scheduler_runs_until_sigterm(tmp_path):
    url = f"sqlite:///{tmp_path / 'proc.db'}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELBUS_")}
    env.update(
        MODELBUS_DATABASE_URL=url,
        PYTHONUNBUFFERED="1",
        MODELBUS_SCHEDULE=json.dumps([
            {"name": "every-second", "cron": "* * * * * *", "command": "build_linear"},
            {"name": "nightly-mlp", "cron": "45 1 * * *", "command": "build_mlp"},
        ]),
    )
    log_path = tmp_path / "scheduler.log"
    with open(log_path, "w") as log_file:
        proc = subprocess.Popen([sys.executable, "-m", "modelbus.cli", "scheduler"], env=env, cwd=tmp_path,
                                stdout=log_file, stderr=subprocess.STDOUT)
        try:
            wait_for(lambda: "slot cron:every-second:" in log_path.read_text(), 60)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(10) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    text = log_path.read_text()
    assert "scheduler: job every-second '* * * * * *' (UTC) posts build_linear for dataset default; next at " in text
    assert "scheduler: job nightly-mlp '45 1 * * *' (UTC) posts build_mlp for dataset default; next at " in text
    assert "T01:45:00Z" in text
    assert "Adding job tentatively" not in text
    store_app = App(Settings(database_url=url))
    try:
        assert len(cron_events(store_app.store)) >= 1
    finally:
        store_app.close()
