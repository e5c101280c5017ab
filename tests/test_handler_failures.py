"""Log events a handler cannot apply are recorded and moved past; outages are retried, not recorded."""
from __future__ import annotations

import json
import socket
import threading
import time

import pytest
from click.testing import CliRunner
from sqlalchemy import insert, select, update
from sqlalchemy.engine import make_url

from modelbus.db import failures, positions, registry
from modelbus.db.engine import make_engine
from modelbus.db.errors import LostConnection
from modelbus.db.events import EventStore, Schemas
from modelbus.db.schema import events, promotions
from modelbus.handlers.log.base import Handler
from modelbus.handlers.log.build import BuildHandler
from modelbus.handlers.follow.replay import replay_handler
from modelbus.handlers.follow.follower import Follower
from modelbus.handlers.log.training import TrainingRecords
from modelbus.broker import free_port
from modelbus.cli import main
from tests.registry_support import class_rows, run_builds, send_command, send_rows
from tests.test_build_handler import snapshot
from tests.test_handlers import fill, projection

TOO_BIG = 2**31  # one more than MySQL's INT holds


def store_unparsed(store: EventStore, body: dict | str) -> int:
    """An event in the log exactly as `body`, as a parser without today's checks stored it; returns its position."""
    position = send_command(store, "promote", model="linear", version=1)
    payload = body if isinstance(body, str) else json.dumps(body, sort_keys=True, separators=(",", ":"))
    with store.engine.begin() as conn:
        conn.execute(update(events).where(events.c.position == position).values(payload=payload))
    return position


def recorded(engine) -> list[dict]:
    """Every handler failure, oldest position first, without the wall-clock time."""
    rows = failures.recent(engine, limit=1000)
    return sorted(({k: v for k, v in row.items() if k != "failed_at"} for row in rows),
                  key=lambda row: (row["handler"], row["position"]))


def test_an_unappliable_promote_is_recorded_and_the_builds_after_it_run(store, caplog):
    send_rows(store, class_rows(40, seed=5))
    too_big = store_unparsed(store, {"type": "command", "payload": "promote", "model": "linear",
                                     "dataset": "default", "version": TOO_BIG})
    unreadable = store_unparsed(store, '{"type":"command","payload":"promote"')
    send_rows(store, class_rows(20, seed=6))
    build = send_command(store, "build_linear")
    missing = send_command(store, "promote", model="linear", version=7)  # fits: a failed promotion, as before

    run_builds(store)

    attempt = registry.get_build(store.engine, position=build)
    assert (attempt["status"], attempt["version"]) == ("ok", 1), attempt
    assert registry.get_version(store.engine, "linear", "default", 1).n_events == 60
    assert registry.aliases(store.engine) == {("linear", "default"): 1}
    assert [(f["handler"], f["position"]) for f in recorded(store.engine)] == [("builds", too_big), ("builds", unreadable)]
    out_of_range, not_json = recorded(store.engine)
    # Refused by the handler (or, where the parser checks ranges too, by the parser it reads the event with).
    assert out_of_range["error"] in ("ValueError", "Rejected") and str(TOO_BIG) in out_of_range["message"]
    assert not_json["error"] == "JSONDecodeError"
    # No promotion row can hold the version; the readable promote that fits is a failed promotion.
    history = {p["position"]: p for p in registry.promotion_history(store.engine)}
    assert too_big not in history and unreadable not in history
    assert history[missing]["status"] == "failed" and "does not exist" in history[missing]["reason"]
    # One plain line per failure: handler, position, event id, reason.
    lines = [r.getMessage() for r in caplog.records if "cannot apply event" in r.getMessage()]
    assert len(lines) == 2, lines
    assert f"handler builds cannot apply event {too_big} (id " in lines[0] and str(TOO_BIG) in lines[0]
    (state,) = [s for s in positions.states(store.engine) if s.name == "builds"]
    assert state.position == store.head()

    before = (snapshot(store.engine), recorded(store.engine))
    replay_handler(store, BuildHandler(store.engine, min_test_rows=1), progress=False)
    run_builds(store)
    assert (snapshot(store.engine), recorded(store.engine)) == before


def test_a_training_event_the_projection_cannot_apply_does_not_stop_it(store):
    fill(store, 40)
    bad = 17
    with store.engine.begin() as conn:
        conn.execute(update(events).where(events.c.position == bad).values(payload="{not json"))
    follower = Follower(store, TrainingRecords())
    follower.catch_up()
    assert follower.position() == store.head()
    projected = [row[0] for row in projection(store.engine)]
    assert len(projected) == 39 and bad not in projected
    (failure,) = recorded(store.engine)
    assert (failure["handler"], failure["position"], failure["error"]) == ("training_records", bad, "JSONDecodeError")

    # `modelbus status` shows them.
    url = ["--database-url", store.engine.url.render_as_string(hide_password=False), "status"]
    report = json.loads(CliRunner().invoke(main, [*url, "--json"]).output)["handler_failures"]
    assert report["count"] == 1
    assert [(f["handler"], f["position"], f["event_id"]) for f in report["recent"]] == [
        ("training_records", bad, failure["event_id"])]
    text = CliRunner().invoke(main, url).output
    assert "handler failures 1" in text
    assert f"training_records position {bad} (id {failure['event_id']}): JSONDecodeError: Expecting" in text

    positions.release(store.engine, "training_records", follower.owner)
    before = (projection(store.engine), recorded(store.engine))
    replay_handler(store, TrainingRecords(), progress=False)
    assert (projection(store.engine), recorded(store.engine)) == before


def test_a_build_that_cannot_be_recorded_is_a_failed_build(store):
    """The builds handler's own record: a build command whose effects fail becomes a failed build."""

    class Fragile(BuildHandler):
        def _record_build(self, conn, row, outcome):
            super()._record_build(conn, row, outcome)
            raise ValueError("the version's metrics do not fit")

    send_rows(store, class_rows(30, seed=7))
    build = send_command(store, "build_linear")
    run_builds(store, Fragile(store.engine))
    attempt = registry.get_build(store.engine, position=build)
    assert attempt["status"] == "failed"
    assert attempt["reason"] == "the build could not be recorded: ValueError: the version's metrics do not fit"
    assert attempt["n_events"] == 30
    assert registry.list_versions(store.engine) == []  # nothing of the failed transaction stayed
    assert [(f["position"], f["error"]) for f in recorded(store.engine)] == [(build, "ValueError")]


class RawPromotions(Handler):
    """Copies promote commands into the promotions table as they are, with no checks of its own."""

    name = "raw_promotions"
    event_type = "command"

    def apply(self, conn, events_, prepared):
        for row in events_:
            body = json.loads(row.payload)
            conn.execute(insert(promotions).values(
                position=row.position, model=body["model"], dataset=body["dataset"], version=body["version"],
                automatic=False, status="moved", created_at=row.received_at))

    def reset(self, conn):
        conn.execute(promotions.delete())


def test_a_database_refusal_is_recorded_with_its_code(mysql_db):
    """MySQL's own refusal (1264 out of range) while the server answers is the event's, not an outage."""
    engine = make_engine(mysql_db)
    store = EventStore(engine, Schemas(declared={"default": 4}))
    good = send_command(store, "promote", model="linear", version=3)
    bad = store_unparsed(store, {"type": "command", "payload": "promote", "model": "linear", "dataset": "default",
                                 "version": TOO_BIG})
    after = send_command(store, "promote", model="linear", version=4)
    Follower(store, RawPromotions()).catch_up()
    with engine.connect() as conn:
        assert [r.position for r in conn.execute(select(promotions.c.position).order_by("position"))] == [good, after]
    (failure,) = recorded(engine)
    assert (failure["position"], failure["error"], failure["code"]) == (bad, "DataError", "1264")
    assert "Out of range value for column 'version'" in failure["message"]
    engine.dispose()


class Proxy:
    """A TCP forwarder to the database that can be cut (every connection dropped, new ones refused) and restored."""

    def __init__(self, target: tuple[str, int]):
        self.target = target
        self.port = free_port()
        self.sockets: list[socket.socket] = []
        self.listener: socket.socket | None = None
        self.lock = threading.Lock()

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen()
        self.listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.target)
            with self.lock:
                self.sockets += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def drop(self) -> None:
        """Drop every open connection; new ones are still accepted (a server restart, a network blip)."""
        with self.lock:
            for s in self.sockets:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()
            self.sockets.clear()

    def cut(self) -> None:
        """Refuse new connections and drop every open one, as a database server that went away."""
        assert self.listener is not None
        # shutdown wakes the thread blocked in accept(); close alone would leave it listening.
        self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        self.drop()


def test_an_outage_is_retried_not_recorded(mysql_db):
    url = make_url(mysql_db)
    direct = make_engine(mysql_db)
    proxy = Proxy((url.host or "127.0.0.1", url.port or 3306))
    proxy.start()
    engine = make_engine(url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False))
    store = EventStore(engine, Schemas(declared={"default": 4}))
    fill(EventStore(direct, Schemas(declared={"default": 4})), 30)
    # Enough drops that halving the batch would reach a single event if a lost connection
    # were taken for the event's fault.
    drops = {"left": 6}

    class Flapping(TrainingRecords):
        def apply(self, conn, events_, prepared):
            if drops["left"]:
                drops["left"] -= 1
                proxy.drop()  # the connection is lost while this batch is being written
            super().apply(conn, events_, prepared)

    def position() -> int:
        return positions.states(direct)[0].position

    follower = Follower(store, Flapping(), poll_seconds=0.01)
    while drops["left"]:
        with pytest.raises(LostConnection, match="Lost connection"):
            follower.step()
        assert (position(), recorded(direct)) == (0, [])

    # Down for a while: the follower backs off, retries, and carries on once the server is back.
    proxy.cut()
    stop = threading.Event()
    runner = threading.Thread(target=follower.run, args=(stop,))
    runner.start()
    try:
        time.sleep(1.5)
        assert position() == 0
        proxy.start()
        deadline = time.monotonic() + 60
        while position() < store.head() and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        stop.set()
        runner.join(30)
    assert position() == store.head()
    assert len(projection(direct)) == 30
    assert recorded(direct) == []
    proxy.cut()
    engine.dispose()
    direct.dispose()
