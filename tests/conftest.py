"""Real services for the tests: a Tansu broker per session, a throw-away MariaDB database per run.

Neither is ever skipped: a missing MySQL server or broker fails the run with the reason.
"""
from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Callable, Iterator

import pytest
from sqlalchemy import create_engine, delete, insert, text
from sqlalchemy.engine import make_url

from modelbus.db.engine import make_engine
from modelbus.db.events import EventStore, Schemas
from modelbus.db.migrate import upgrade
from modelbus.db.schema import log_head, metadata
from modelbus.broker import BrokerUnavailable, free_port, start_broker, stop_broker
from modelbus.settings import Settings, Topics

ROOT = Path(__file__).resolve().parents[1]
DARCEY = ROOT / "data" / "darcey.csv"
DEFAULT_MYSQL = "mysql+pymysql://root@127.0.0.1:3306/test"


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory) -> Iterator[str]:
    """A Tansu broker on a free port for the whole session."""
    port = free_port()
    log_file = tmp_path_factory.mktemp("tansu") / "tansu.log"
    try:
        proc = start_broker("127.0.0.1", port, log_file)
    except BrokerUnavailable as exc:
        pytest.fail(f"the Kafka-protocol broker is required: {exc}", pytrace=False)
    yield f"127.0.0.1:{port}"
    stop_broker(proc)


@pytest.fixture(scope="session")
def mysql_url() -> Iterator[str]:
    """A fresh MySQL database for this run, dropped at the end."""
    server = make_url(os.environ.get("MODELBUS_TEST_MYSQL_URL", DEFAULT_MYSQL))
    name = f"modelbus_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"))
    except Exception as exc:
        pytest.fail(
            f"MySQL is required at {server.render_as_string(hide_password=True)} "
            f"(set MODELBUS_TEST_MYSQL_URL): {exc}",
            pytrace=False,
        )
    url = server.set(database=name).render_as_string(hide_password=False)
    upgrade(make_engine(url))
    yield url
    with admin.connect() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
    admin.dispose()


def empty_database(engine) -> None:
    """Delete every row and reset the log head, keeping the migrated schema."""
    with engine.begin() as conn:
        for table in reversed(metadata.sorted_tables):
            conn.execute(delete(table))
        conn.execute(insert(log_head).values(id=1, position=0))


# The backends the storage contract suites run on (db.contracts; tests/test_event_store.py,
# test_positions.py, test_failures.py, test_registry.py, test_storage_errors.py): every test
# taking `db_url`, `engine` or `store` runs once on each. A new backend adds its name here.
BACKENDS = ["sqlite", "mysql"]


@pytest.fixture(params=BACKENDS)
def db_url(request, tmp_path) -> str:
    """An empty, migrated store: each test using it runs once on SQLite and once on MySQL."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'modelbus.db'}"
        upgrade(make_engine(url))
        return url
    url = request.getfixturevalue("mysql_url")
    engine = make_engine(url)
    empty_database(engine)
    engine.dispose()
    return url


@pytest.fixture
def mysql_db(mysql_url) -> str:
    """The MySQL store, emptied, for tests that are about MySQL only."""
    engine = make_engine(mysql_url)
    empty_database(engine)
    engine.dispose()
    return mysql_url


@pytest.fixture
def engine(db_url):
    """An engine on the parametrised store."""
    eng = make_engine(db_url)
    yield eng
    eng.dispose()


@pytest.fixture
def store_with(engine) -> Callable[[Schemas], EventStore]:
    """Makes a store (db.contracts.Store) on the parametrised backend with the given dataset schemas."""
    return lambda schemas: EventStore(engine, schemas)


@pytest.fixture
def store(store_with) -> EventStore:
    """The store on the parametrised backend, with the seed's 'default' dataset declared."""
    return store_with(Schemas(declared={"default": 4}))


@pytest.fixture
def topics() -> Topics:
    """Topic names unique to one test, so tests sharing the broker never see each other's messages."""
    tag = uuid.uuid4().hex[:8]
    return Topics(
        events=f"events-{tag}",
        prediction_requests=f"requests-{tag}",
        prediction_responses=f"responses-{tag}",
        errors=f"errors-{tag}",
        model_updates=f"updates-{tag}",
        build_outcomes=f"outcomes-{tag}",
        alerts=f"alerts-{tag}",
    )


def kafka_settings(database_url: str, bootstrap: str, topics: Topics, **extra) -> Settings:
    """Settings for a Kafka-mode test: fast group joins on Tansu, unique group names."""
    tag = uuid.uuid4().hex[:8]
    values = dict(
        database_url=database_url,
        kafka_bootstrap=bootstrap,
        topics=topics,
        ingest_group=f"ingest-{tag}",
        predictor_group=f"predictor-{tag}",
        kafka_session_timeout_ms=6000,
        kafka_heartbeat_ms=1000,
    )
    values.update(extra)
    return Settings(**values)


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that gives a subprocess the same settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELBUS_")}
    env.update(
        MODELBUS_DATABASE_URL=settings.database_url,
        MODELBUS_LOG_LEVEL="INFO",
        PYTHONUNBUFFERED="1",
    )
    if settings.kafka_bootstrap:
        env["MODELBUS_KAFKA_BOOTSTRAP"] = settings.kafka_bootstrap
    for field in Topics.model_fields:
        env[f"MODELBUS_TOPICS__{field.upper()}"] = getattr(settings.topics, field)
    env.update(
        MODELBUS_INGEST_GROUP=settings.ingest_group,
        MODELBUS_PREDICTOR_GROUP=settings.predictor_group,
        MODELBUS_KAFKA_SESSION_TIMEOUT_MS=str(settings.kafka_session_timeout_ms),
        MODELBUS_KAFKA_HEARTBEAT_MS=str(settings.kafka_heartbeat_ms),
    )
    return env
