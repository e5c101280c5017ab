"""Kafka plumbing shared by the workers: consumers, topic creation, topic ids."""
from __future__ import annotations

import logging
from typing import Iterable

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
