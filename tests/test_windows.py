"""Windows over raw events (issue 13): counts and aggregates checked against a brute-force computation
over the same generated stream, late events, replay, a restart mid-window, window_topic on a real broker."""
from __future__ import annotations

import json
import random
import threading
import time
from collections import defaultdict
from typing import Any

import pytest
from pydantic import ValidationError

from conftest import kafka_settings
from kafka_support import read_topic
from modelbus.app import App
from modelbus.db import windows as window_store
from modelbus.handlers.follow.follower import Follower
from modelbus.handlers.follow.replay import replay_handler
from modelbus.handlers.log.windowing import Windows
from modelbus.handlers.log.windows import WindowHandler, shard_of
from modelbus.messages.errors import Rejected
from modelbus.messages.parse import parse_event_obj
from modelbus.messages.types import Raw
from modelbus.messages.windows import WindowSpec
from modelbus.runtime import Services
from modelbus.settings import Settings
from modelbus.web import create_api

T0 = 1_795_428_000_000  # 2026-11-23T10:00:00Z
MINUTE = 60_000
PAGES = ("main_page", "products_listing", "product_page", "product_gallery")
AGGREGATES = [
    {"name": "views", "fn": "count"},
    {"name": "main_page_views", "fn": "count", "where": {"field": "event", "equals": "main_page"}},
    {"name": "amount", "fn": "sum", "field": "amount"},
    {"name": "min_amount", "fn": "min", "field": "amount"},
    {"name": "max_amount", "fn": "max", "field": "amount"},
    {"name": "avg_amount", "fn": "avg", "field": "amount"},
    {"name": "pages", "fn": "distinct_count", "field": "event"},
]
WINDOWS = [
    {"name": "views_tumbling", "stream": "pageviews", "kind": "tumbling", "size": "10m", "grace": "1m",
     "aggregates": AGGREGATES, "dataset": "bots"},
    {"name": "views_10m", "stream": "pageviews", "kind": "hopping", "size": "10m", "advance": "2m", "grace": "1m",
     "aggregates": AGGREGATES, "dataset": "bots"},
    {"name": "sessions", "stream": "pageviews", "kind": "session", "gap": "15m", "grace": "1m",
     "aggregates": [*AGGREGATES, {"name": "duration", "fn": "duration"}], "dataset": "withdrawal"},
]


def page_views(users: int = 50, hours: int = 2, seed: int = 7) -> list[dict[str, Any]]:
    """Bursts of page views per user over `hours`, posted up to 20 s out of event-time order (grace is 1m)."""
    rng = random.Random(seed)
    views = []
    for user in range(users):
        at = T0 + rng.randrange(20 * MINUTE)
        while at < T0 + hours * 60 * MINUTE:
            for _ in range(rng.randrange(1, 12)):
                event: dict[str, Any] = {"event": rng.choice(PAGES)}
                if rng.random() < 0.8:
                    event["amount"] = rng.randrange(0, 400) / 4  # quarters: every sum is exact in any order
                views.append((at + rng.randrange(20_000), {"type": "raw", "stream": "pageviews", "key": f"u{user}",
                                                           "ts": at, "fields": event}))
                at += rng.randrange(5_000, 4 * MINUTE)
            at += rng.randrange(10 * MINUTE, 40 * MINUTE)
    views.sort(key=lambda pair: pair[0])
    out = []
    for i, (_arrival, view) in enumerate(views):
        # Half the times as ISO 8601 text, half as epoch milliseconds.
        if i % 2:
            view["ts"] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(view["ts"] // 1000)) + \
                f".{view['ts'] % 1000:03d}Z"
        view["id"] = f"pv-{i}"
        out.append(view)
    return out


def ts_ms(view: dict[str, Any]) -> int:
    """An event's time as epoch ms, read independently of the parser."""
    ts = view["ts"]
    if isinstance(ts, int):
        return ts
    seconds = time.mktime(time.strptime(ts[:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone
    return int(seconds) * 1000 + int(ts[20:23])


def aggregate(views: list[dict[str, Any]], start: int, end: int, duration: bool) -> list[Any]:
    """The declared aggregates of one window, computed directly."""
    amounts = [v["fields"]["amount"] for v in views if "amount" in v["fields"]]
    values = [len(views), sum(1 for v in views if v["fields"]["event"] == "main_page"), sum(amounts),
              min(amounts) if amounts else None, max(amounts) if amounts else None,
              sum(amounts) / len(amounts) if amounts else None, len({v["fields"]["event"] for v in views})]
    return values + [(end - start) / 1000] if duration else values


def brute_force(views: list[dict[str, Any]], spec: dict[str, Any]) -> dict[tuple[str, int, int], list[Any]]:
    """(key, start, end) -> aggregates of every window the final watermark closed, by enumeration."""
    watermark = max(ts_ms(v) for v in views) - MINUTE
    by_key: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for view in views:
        by_key[view["key"]].append(view)
    out = {}
    for key, mine in by_key.items():
        mine.sort(key=ts_ms)
        if spec["kind"] == "session":
            groups: list[list[dict[str, Any]]] = []
            for view in mine:
                if groups and ts_ms(view) - ts_ms(groups[-1][-1]) < 15 * MINUTE:
                    groups[-1].append(view)
                else:
                    groups.append([view])
            for group in groups:
                start, end = ts_ms(group[0]), ts_ms(group[-1])
                if end + 15 * MINUTE <= watermark:
                    out[(key, start, end)] = aggregate(group, start, end, True)
            continue
        advance = 10 * MINUTE if spec["kind"] == "tumbling" else 2 * MINUTE
        first = min(ts_ms(v) for v in mine) // advance * advance - 10 * MINUTE
        for start in range(first, max(ts_ms(v) for v in mine) + 1, advance):
            inside = [v for v in mine if start <= ts_ms(v) < start + 10 * MINUTE]
            if inside and start + 10 * MINUTE <= watermark:
                out[(key, start, start + 10 * MINUTE)] = aggregate(inside, start, start + 10 * MINUTE, False)
    return out


def all_pages(client, name: str, **params: Any) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Every row GET /api/windows/<name> lists, page by page, and the window's status."""
    rows, after = [], None
    while True:
        query = {"limit": 500, **params, **({"after": after} if after else {})}
        answer = client.get(f"/api/windows/{name}", query_string=query)
        assert answer.status_code == 200, answer.json
        rows.extend(answer.json["rows"])
        after = answer.json["next"]
        if after is None:
            return rows, answer.json["status"]


def table_rows(app: App) -> list[tuple]:
    """Every closed row as stored, bit for bit."""
    from sqlalchemy import select

    from modelbus.db.schema import window_rows

    with app.engine.connect() as conn:
        return sorted(tuple(row) for row in conn.execute(select(window_rows)))


@pytest.fixture
def windows_app(mysql_db):
    """An embedded App on MariaDB with the three windows declared."""
    app = App(Settings(database_url=mysql_db, windows=WINDOWS))
    yield app
    app.close()


def run_windows(app: App, handler: WindowHandler | None = None) -> WindowHandler:
    """Run the window handler over the whole log."""
    handler = handler or app.window_handlers(sinks=[])[0]
    follower = Follower(app.store, handler)
    follower.catch_up()
    follower.release()
    return handler


# --- messages and settings --------------------------------------------------------------------


def test_raw_events_are_parsed_strictly():
    event = parse_event_obj({"type": "raw", "stream": "pageviews", "key": "u1", "ts": "2026-11-23T10:00:03Z",
                             "fields": {"event": "product_page", "amount": 3.5, "bot": False}})
    assert isinstance(event, Raw) and event.ts_ms == T0 + 3000 and event.dataset == "pageviews"
    assert parse_event_obj({"type": "raw", "stream": "s", "key": "k", "ts": T0}).ts_ms == T0
    assert parse_event_obj({"type": "raw", "stream": "s", "key": "k", "ts": "2026-11-23T11:00:00+01:00"}).ts_ms == T0
    refused = {
        "ts": ({"type": "raw", "stream": "s", "key": "k"}, "missing_field"),
        "naive": ({"type": "raw", "stream": "s", "key": "k", "ts": "2026-11-23T10:00:00"}, "bad_field"),
        "text": ({"type": "raw", "stream": "s", "key": "k", "ts": "yesterday"}, "bad_field"),
        "fraction": ({"type": "raw", "stream": "s", "key": "k", "ts": 1.5}, "bad_field"),
        "range": ({"type": "raw", "stream": "s", "key": "k", "ts": 2**62}, "out_of_range"),
        "year 0": ({"type": "raw", "stream": "s", "key": "k", "ts": "0001-01-01T00:00:00+01:00"}, "out_of_range"),
        "nested": ({"type": "raw", "stream": "s", "key": "k", "ts": 1, "fields": {"a": [1]}}, "bad_field"),
        "null": ({"type": "raw", "stream": "s", "key": "k", "ts": 1, "fields": {"a": None}}, "bad_field"),
        "padded key": ({"type": "raw", "stream": "s", "key": "k ", "ts": 1}, "bad_field"),
        "stream": ({"type": "raw", "stream": "a b", "key": "k", "ts": 1}, "bad_field"),
        "unknown": ({"type": "raw", "stream": "s", "key": "k", "ts": 1, "dataset": "d"}, "unknown_field"),
    }
    for case, (message, code) in refused.items():
        with pytest.raises(Rejected) as caught:
            parse_event_obj(message)
        assert caught.value.code == code, case
    with pytest.raises(Rejected, match="no UTC offset"):
        parse_event_obj(refused["naive"][0])


def test_window_settings_are_checked():
    spec = WindowSpec(**WINDOWS[1])
    assert (spec.size, spec.advance, spec.grace) == (10 * MINUTE, 2 * MINUTE, MINUTE)
    assert spec.columns[:2] == ["views", "main_page_views"] and spec.feature_dataset == "bots"
    assert WindowSpec(**{**WINDOWS[0], "size": "1h30m", "dataset": None}).feature_dataset == "views_tumbling"
    bad = [
        {**WINDOWS[0], "advance": "2m"},
        {**WINDOWS[1], "advance": "20m"},
        {**WINDOWS[2], "gap": None},
        {**WINDOWS[0], "size": "10 minutes"},
        {**WINDOWS[0], "aggregates": [{"name": "d", "fn": "duration"}]},
        {**WINDOWS[0], "aggregates": [{"name": "s", "fn": "sum"}]},
        {**WINDOWS[0], "aggregates": [{"name": "n", "fn": "count"}, {"name": "n", "fn": "count"}]},
    ]
    for spec in bad:
        with pytest.raises(ValidationError):
            WindowSpec(**spec)
    with pytest.raises(ValidationError, match="declared twice"):
        Settings(windows=[WINDOWS[0], WINDOWS[0]])


def test_windows_come_from_the_environment_as_json(monkeypatch):
    monkeypatch.setenv("MODELBUS_WINDOWS", json.dumps(WINDOWS))
    assert [w.name for w in Settings().windows] == ["views_tumbling", "views_10m", "sessions"]


def test_lateness_and_closing_do_not_depend_on_batches():
    """Event by event or all at once, the same windows close with the same values, and late events are counted."""
    specs = [WindowSpec(**w) for w in WINDOWS]
    views = page_views(users=8, hours=1)
    # Two late events: far behind the watermark.
    views.insert(len(views) // 2, {"type": "raw", "stream": "pageviews", "key": "u1", "ts": T0, "fields": {"event": "x"}})
    views.append({"type": "raw", "stream": "pageviews", "key": "u2", "ts": T0 + MINUTE, "fields": {"event": "x"}})
    raws = [parse_event_obj(v) for v in views]
    whole, stepped = Windows(specs), Windows(specs)
    for raw in raws:
        whole.add(raw)
    all_at_once = whole.close()
    one_by_one = []
    for raw in raws:
        stepped.add(raw)
        one_by_one.extend(stepped.close())
    assert sorted(all_at_once) == sorted(one_by_one)
    assert {name: state.late for name, state in whole.states.items()} == {
        "views_tumbling": 2, "views_10m": 2, "sessions": 2}


# --- the projection on MariaDB --------------------------------------------------------------


def test_windows_match_a_brute_force_computation(windows_app):
    """Two hours of page views from 50 users: every closed window and aggregate, through the API."""
    views = page_views()
    outcomes = windows_app.publisher.post(views, "cli")
    assert {o.status for o in outcomes} == {"accepted"}
    run_windows(windows_app)
    client = create_api(windows_app).test_client()
    for spec in WINDOWS:
        rows, status = all_pages(client, spec["name"])
        got = {(r["key"], r["start_ms"], r["end_ms"]): r["values"] for r in rows}
        expected = brute_force(views, spec)
        assert len(expected) > 100
        assert got == expected, spec["name"]
        assert len(rows) == len(got)  # no window twice
        assert [(r["end_ms"], r["key"], r["start_ms"]) for r in rows] == sorted(
            (r["end_ms"], r["key"], r["start_ms"]) for r in rows)
        assert status["closed"] == len(expected) and status["late_events"] == 0
        assert rows[0]["columns"][0] == "views" and rows[0]["dataset"] == spec["dataset"]
        one_key, _ = all_pages(client, spec["name"], key="u3")
        assert one_key == [r for r in rows if r["key"] == "u3"] and one_key
    assert client.get("/api/windows/nope").status_code == 404
    assert client.get("/api/windows/views_10m", query_string={"after": "nonsense"}).status_code == 400


def test_late_events_are_counted_and_shown(windows_app):
    views = page_views(users=5, hours=1)
    windows_app.publisher.post(views, "cli")
    run_windows(windows_app)
    late = [{"type": "raw", "stream": "pageviews", "key": "u1", "ts": T0 + 30_000, "fields": {"event": "main_page"}},
            {"type": "raw", "stream": "pageviews", "key": "u9", "ts": T0, "fields": {"event": "main_page"}}]
    client = create_api(windows_app).test_client()
    before = {w["name"]: all_pages(client, w["name"]) for w in WINDOWS}
    windows_app.publisher.post(late, "cli")
    run_windows(windows_app)
    for spec in WINDOWS:
        rows, status = all_pages(client, spec["name"])
        assert status["late_events"] == 2
        assert rows == before[spec["name"]][0]  # closed windows stay as they closed
    metrics = client.get("/metrics").text
    assert 'modelbus_window_late_events_total{window="views_10m"} 2.0' in metrics


def test_replay_gives_the_same_rows_bit_for_bit(windows_app):
    windows_app.publisher.post(page_views(users=20), "cli")
    handler = run_windows(windows_app)
    first = table_rows(windows_app)
    assert first
    replay_handler(windows_app.store, handler, progress=False)
    assert table_rows(windows_app) == first


def test_a_restart_mid_window_resumes_from_the_store(windows_app):
    """Stopped between small batches, each resumed by a new process (fresh memory): the rows of one
    uninterrupted run (a replay in batches of 20000)."""
    windows_app.publisher.post(page_views(users=20), "cli")
    steps = 0
    while True:
        handler = windows_app.window_handlers(sinks=[])[0]
        handler.batch_size = 37
        follower = Follower(windows_app.store, handler, f"process-{steps}")
        done = follower.step()
        follower.release()
        if not done:
            break
        steps += 1
    assert steps > 10
    stepped = table_rows(windows_app)
    replay_handler(windows_app.store, windows_app.window_handlers(sinks=[])[0], progress=False)
    assert table_rows(windows_app) == stepped


def test_a_failed_batch_reloads_the_windows(windows_app, monkeypatch):
    """A batch that fails after changing the windows in memory rolls back; the next one starts from the store."""
    windows_app.publisher.post(page_views(users=20), "cli")
    handler = windows_app.window_handlers(sinks=[])[0]
    handler.batch_size = 300
    follower = Follower(windows_app.store, handler, "one")
    follower.step()
    real_save = window_store.save
    calls = []

    def failing_save(*args, **kwargs):
        calls.append(1)
        real_save(*args, **kwargs)
        raise OSError("disk gone")  # transient: the follower retries the whole batch

    monkeypatch.setattr(window_store, "save", failing_save)
    with pytest.raises(OSError):
        follower.step()
    monkeypatch.setattr(window_store, "save", real_save)
    follower.catch_up()
    follower.release()
    recovered = table_rows(windows_app)
    replay_handler(windows_app.store, windows_app.window_handlers(sinks=[])[0], progress=False)
    assert calls and table_rows(windows_app) == recovered


def test_shards_split_the_keys_and_give_the_same_rows(windows_app, mysql_db):
    views = page_views(users=30)
    windows_app.publisher.post(views, "cli")
    run_windows(windows_app)
    single = [row[:4] + row[5:] for row in table_rows(windows_app)]
    with windows_app.engine.begin() as conn:
        windows_app.window_handlers(sinks=[])[0].reset(conn)
    sharded = App(Settings(database_url=mysql_db, windows=WINDOWS, window_shards=3))
    handlers = sharded.window_handlers(sinks=[])
    assert [h.name for h in handlers] == ["windows-0of3", "windows-1of3", "windows-2of3"]
    for handler in handlers:
        run_windows(sharded, handler)
    rows = table_rows(sharded)
    assert [row[:4] + row[5:] for row in rows] == single
    assert all(row[4] == f"windows-{shard_of(row[2], 3)}of3" for row in rows)
    client = create_api(sharded).test_client()
    _, status = all_pages(client, "views_10m")
    assert status["closed"] == sum(1 for row in rows if row[0] == "views_10m")
    sharded.close()


def test_closed_windows_reach_window_topic_and_sinks(mysql_db, kafka_bootstrap, topics):
    """Kafka mode: raw events through event_topic and ingest; each closed window on window_topic once, after the commit."""
    from modelbus.commands.kafka import create_topics
    from modelbus.up import start_handlers, start_ingest

    topics = topics.model_copy(update={"windows": f"windows-{topics.events}"})
    settings = kafka_settings(mysql_db, kafka_bootstrap, topics, windows=WINDOWS[:1])
    app = App(settings)
    create_topics(settings.kafka)
    services = Services()
    seen: list[Any] = []

    class Recorder:
        def closed(self, rows):
            seen.extend(rows)

    handlers = app.handlers
    app.handlers = lambda: [h for h in handlers() if not isinstance(h, WindowHandler)] + app.window_handlers(
        sinks=[*app.window_handlers()[0].sinks, Recorder()])
    start_ingest(app, services)
    start_handlers(app, services)
    try:
        views = page_views(users=10, hours=1)
        assert {o.status for o in app.publisher.post(views, "cli")} == {"queued"}
        expected = brute_force(views, WINDOWS[0])
        deadline = time.monotonic() + 60
        while len(seen) < len(expected) and time.monotonic() < deadline:
            time.sleep(0.2)
        messages = read_topic(kafka_bootstrap, topics.windows, len(expected))
    finally:
        services.stop.set()
        services.wait(10)
        app.close()
    assert {(m["key"], m["start_ms"], m["end_ms"]): m["values"] for m in messages} == expected
    assert len(messages) == len(expected)
    assert {(r.key, r.start_ms, r.end_ms) for r in seen} == set(expected)


def test_stop_mid_stream_loses_nothing(windows_app):
    """A follower thread stopped while events keep arriving: its successor finishes with the same rows."""
    views = page_views(users=20)
    windows_app.publisher.post(views[: len(views) // 2], "cli")
    stop = threading.Event()
    handler = windows_app.window_handlers(sinks=[])[0]
    handler.batch_size = 200
    thread = threading.Thread(target=Follower(windows_app.store, handler, "first").run, args=(stop,))
    thread.start()
    windows_app.publisher.post(views[len(views) // 2:], "cli")
    stop.set()
    thread.join(30)
    run_windows(windows_app)
    resumed = table_rows(windows_app)
    with windows_app.engine.begin() as conn:
        windows_app.window_handlers(sinks=[])[0].reset(conn)
    replay_handler(windows_app.store, windows_app.window_handlers(sinks=[])[0], progress=False)
    assert table_rows(windows_app) == resumed


def test_a_window_with_a_model_predicts_every_closed_window_and_alert_rules_apply(mysql_db):
    """Seed 003's case: closed windows predicted by the production model, recorded, and a rule on the
    prediction (above a threshold) fires for the windows it should."""
    from modelbus.db import alerts, predictions

    spec = {"name": "activity", "stream": "pageviews", "kind": "tumbling", "size": "10m", "grace": "1m",
            "aggregates": [{"name": "views", "fn": "count"},
                           {"name": "main_page_views", "fn": "count", "where": {"field": "event", "equals": "main_page"}}],
            "dataset": "activity", "model": "linear"}
    rule = {"name": "busy", "model": "linear", "dataset": "activity", "on": "prediction", "above": 6.5}
    app = App(Settings(database_url=mysql_db, windows=[spec], alerts=[rule], datasets={"activity": {"features": 2}}))
    # The model: a window's views (the label) from its views and main page views.
    rng = random.Random(3)
    training = [{"type": "training", "dataset": "activity", "payload": [n, m, n]}
                for n, m in ((rng.randrange(1, 20), rng.randrange(0, 5)) for _ in range(200))]
    app.publisher.post([*training, {"type": "command", "payload": "build_linear", "dataset": "activity"}], "cli")
    for _ in range(2):  # the build, then the promotion it appended
        for handler in app.handlers():
            if not isinstance(handler, WindowHandler):
                follower = Follower(app.store, handler)
                follower.catch_up()
                follower.release()
    assert app.store.registry.production("linear", "activity") is not None
    answers: list[dict[str, Any]] = []
    app.transport.subscribe(app.settings.topics.prediction_responses, lambda value, key: answers.append(json.loads(value)))
    views = page_views(users=10, hours=1)
    app.publisher.post(views, "cli")
    run_windows(app, app.window_handlers()[0])
    closed = {(k, s): v for (k, s, _e), v in brute_force(views, {**spec, "kind": "tumbling"}).items()}
    assert len(answers) == len(closed) > 20
    by_id = {a["id"]: a for a in answers}
    for (key, start), values in closed.items():
        answer = by_id[f"window:activity:{key}:{start}"]
        assert answer["model"] == "linear" and answer["dataset"] == "activity"
        assert answer["result"] == pytest.approx(values[0], abs=1e-6)
    recorded = predictions.listed(app.engine, model="linear", dataset="activity", limit=1000)
    assert {p["id"] for p in recorded} == set(by_id)
    fired = {a["subject"] for a in alerts.listed(app.engine, rule="busy", limit=1000)}
    expected = {f"window:activity:{key}:{start}" for (key, start), values in closed.items() if values[0] > 6.5}
    assert fired == expected and expected
    app.close()
