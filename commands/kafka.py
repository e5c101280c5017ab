"""Kafka plumbing shared by the workers: consumers, topic creation, topic ids, the consumer-group loop."""
from __future__ import annotations

import logging
import threading
from typing import Callable, Iterable

from modelbus.settings import Settings

log = logging.getLogger(__name__)


def make_consumer(settings: Settings, group: str | None, topics: Iterable[str] = (), **config):
    """A consumer with manual commits, tuned by settings (session timeout, fetch wait)."""
    from kafka import KafkaConsumer

    assert settings.kafka_bootstrap
    options = dict(
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=settings.kafka_session_timeout_ms,
        heartbeat_interval_ms=settings.kafka_heartbeat_ms,
        fetch_max_wait_ms=settings.kafka_fetch_wait_ms,
        # A message larger than this is still delivered alone (fetch v3+), so the
        # worker can reject it instead of stalling on it.
        max_partition_fetch_bytes=1024 * 1024,
    )
    options.update(config)
    consumer = KafkaConsumer(**options)
    topics = list(topics)
    if topics:
        consumer.subscribe(topics)
    return consumer


def admin(settings: Settings):
    """An admin client for the configured bootstrap."""
    from kafka import KafkaAdminClient

    assert settings.kafka_bootstrap
    return KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, client_id="modelbus-admin")


def all_topics(settings: Settings) -> list[str]:
    """Every topic modelbus uses, from the settings."""
    t = settings.topics
    return [t.events, t.prediction_requests, t.prediction_responses, t.errors, t.model_updates]


def create_topics(settings: Settings, partitions: int = 3, topics: Iterable[str] | None = None) -> list[str]:
    """Create the topics that do not exist yet; returns the names created."""
    from kafka.errors import TopicAlreadyExistsError, for_code

    client = admin(settings)
    try:
        wanted = list(topics) if topics is not None else all_topics(settings)
        existing = set(client.list_topics())
        missing = [name for name in wanted if name not in existing]
        if not missing:
            return []
        # Model updates are few and every reader wants them all, in order.
        result = client.create_topics(
            {
                name: {"num_partitions": 1 if name == settings.topics.model_updates else partitions, "replication_factor": 1}
                for name in missing
            },
            raise_errors=False,
        )
        created = []
        for topic in result["topics"]:
            error = for_code(topic["error_code"])
            # Workers started together race to create the topics; the loser is fine.
            if error is TopicAlreadyExistsError:
                continue
            if topic["error_code"]:
                raise error(f"creating topic {topic['name']}: {topic.get('error_message') or error.__name__}")
            created.append(topic["name"])
        return [name for name in missing if name in created]
    finally:
        client.close()


def topic_ids(settings: Settings, topics: Iterable[str]) -> dict[str, str]:
    """The broker's topic id (a UUID string) of each existing topic; '' when the broker has none."""
    client = admin(settings)
    try:
        described = client.describe_topics(list(topics))
    finally:
        client.close()
    ids = {}
    for topic in described:
        value = topic.get("topic_id")
        ids[topic["name"]] = "" if value in (None, "00000000-0000-0000-0000-000000000000") else str(value)
    return ids


def process_until_done(process: Callable[[list], object], records: list, stop: threading.Event, *,
                       log: logging.Logger, name: str, doing: str) -> bool:
    """Call process(records) until it returns, backing off exponentially; False if `stop` is set first."""
    attempt = 0
    while True:
        try:
            process(records)
            return True
        except Exception:
            attempt += 1
            delay = min(30.0, 0.5 * 2 ** min(attempt, 6))
            log.exception("%s: %s a batch of %d failed (attempt %d); retrying in %.1fs",
                          name, doing, len(records), attempt, delay)
            if stop.wait(delay):
                return False


def run_group(consumer, topics: Iterable[str], stop: threading.Event, *, poll: Callable[[object], dict],
              process: Callable[[list], object], log: logging.Logger, name: str, doing: str,
              on_assigned: Callable[[], None], ready: threading.Event) -> None:
    """Subscribe `consumer` and poll, process until done, commit; until `stop` is set. Closes the consumer.

    Offsets are committed only after process() returned for the whole batch; a batch still
    failing when `stop` is set stays uncommitted, so the group's next owner gets it again.
    `log`, `name` and `doing` keep each worker's log lines its own (the logger's name shows).
    """
    from kafka import ConsumerRebalanceListener
    from kafka.errors import CommitFailedError, KafkaError
    from kafka.structs import OffsetAndMetadata

    class Listener(ConsumerRebalanceListener):
        def on_partitions_revoked(self, revoked):
            log.info("%s: partitions revoked %s", name, sorted(tp.partition for tp in revoked))

        def on_partitions_assigned(self, assigned):
            on_assigned()
            log.info("%s: partitions assigned %s", name, sorted(tp.partition for tp in assigned))
            ready.set()

    consumer.subscribe(list(topics), listener=Listener())
    failures = 0
    try:
        while not stop.is_set():
            try:
                polled = poll(consumer)
                failures = 0
            except KafkaError as exc:
                # A broker or fetch error is not a reason to die: back off and poll again
                # (the group re-delivers whatever was not committed).
                failures += 1
                delay = min(30.0, 0.5 * 2 ** min(failures, 6))
                log.warning("%s: polling failed (%s: %s); retrying in %.1fs", name, type(exc).__name__, exc, delay)
                stop.wait(delay)
                continue
            if not polled:
                continue
            records = [r for tp in sorted(polled, key=lambda tp: tp.partition) for r in polled[tp]]
            if not process_until_done(process, records, stop, log=log, name=name, doing=doing):
                break  # stopping: the batch stays uncommitted and is re-delivered to the next owner
            offsets = {tp: OffsetAndMetadata(msgs[-1].offset + 1, "", -1) for tp, msgs in polled.items()}
            try:
                consumer.commit(offsets)
            except CommitFailedError as exc:
                # The group rebalanced while we processed; the new owner gets these messages
                # again (ingest: the log's unique coordinates drop them; predictor: answered
                # again, at least once).
                log.warning("%s: offset commit failed after a rebalance: %s", name, exc)
            except KafkaError as exc:
                # Same outcome as above: the batch is re-delivered and the work is idempotent.
                log.warning("%s: offset commit failed (%s: %s); the batch will be re-delivered",
                            name, type(exc).__name__, exc)
    finally:
        consumer.close(autocommit=False)
