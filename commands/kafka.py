"""Kafka plumbing shared by the workers: consumers, topics and their incarnations, the consumer-group loop."""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping

from pydantic import BaseModel

from modelbus.backoff import backoff, log_failures, retry_until_done

log = logging.getLogger(__name__)


class Topics(BaseModel):
    """Kafka topic names; the defaults are the seed's."""

    events: str = "event_topic"
    prediction_requests: str = "prediction_request_topic"
    prediction_responses: str = "prediction_response_topic"
    errors: str = "error_topic"
    model_updates: str = "model_update_topic"
    build_outcomes: str = "build_outcome_topic"
    alerts: str = "alert_topic"
    windows: str = "window_topic"


@dataclass(frozen=True)
class KafkaConfig:
    """Where the broker is, the topics, and how consumers and producers wait."""

    bootstrap: str
    topics: Topics = field(default_factory=Topics)
    session_timeout_ms: int = 10_000
    heartbeat_ms: int = 2_000
    fetch_wait_ms: int = 100
    send_timeout_ms: int = 5_000
    topic_partitions: int = 3

# A topic id as Tansu and Kafka < 2.8 report "none".
NO_TOPIC_ID = "00000000-0000-0000-0000-000000000000"


def make_consumer(config: KafkaConfig, group: str | None, topics: Iterable[str] = (), **options):
    """A consumer with manual commits, tuned by the config (session timeout, fetch wait)."""
    from kafka import KafkaConsumer

    assert config.bootstrap
    settings = dict(
        bootstrap_servers=config.bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=config.session_timeout_ms,
        heartbeat_interval_ms=config.heartbeat_ms,
        fetch_max_wait_ms=config.fetch_wait_ms,
        # A message larger than this is still delivered alone (fetch v3+), so the
        # worker can reject it instead of stalling on it.
        max_partition_fetch_bytes=1024 * 1024,
    )
    settings.update(options)
    consumer = KafkaConsumer(**settings)
    topics = list(topics)
    if topics:
        consumer.subscribe(topics)
    return consumer


def admin(config: KafkaConfig):
    """An admin client for the configured bootstrap."""
    from kafka import KafkaAdminClient

    assert config.bootstrap
    return KafkaAdminClient(bootstrap_servers=config.bootstrap, client_id="modelbus-admin")


def kafka_transport(config: KafkaConfig):
    """A KafkaTransport with the configured send timeout."""
    from modelbus.commands.transport import KafkaTransport

    assert config.bootstrap
    return KafkaTransport(config.bootstrap, timeout=config.send_timeout_ms / 1000)


def all_topics(config: KafkaConfig) -> list[str]:
    """Every topic modelbus uses."""
    t = config.topics
    return [t.events, t.prediction_requests, t.prediction_responses, t.errors, t.model_updates, t.build_outcomes,
            t.alerts, t.windows]


def _create(client, config: KafkaConfig, names: list[str], partitions: int) -> list[str]:
    from kafka.errors import TopicAlreadyExistsError, for_code

    # Model updates are few and every reader wants them all, in order.
    result = client.create_topics(
        {
            name: {"num_partitions": 1 if name == config.topics.model_updates else partitions, "replication_factor": 1}
            for name in names
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
    return [name for name in names if name in created]


def create_topics(config: KafkaConfig, partitions: int | None = None, topics: Iterable[str] | None = None) -> list[str]:
    """Create the topics that do not exist yet (default: every modelbus topic); returns the names created."""
    client = admin(config)
    try:
        wanted = list(topics) if topics is not None else all_topics(config)
        existing = set(client.list_topics())
        missing = [name for name in wanted if name not in existing]
        if not missing:
            return []
        return _create(client, config, missing, partitions or config.topic_partitions)
    finally:
        client.close()


def _ids(described: Iterable[Mapping]) -> dict[str, str]:
    """topic -> id ('' when the broker names none) of the topics that exist."""
    from kafka.errors import UnknownTopicOrPartitionError, for_code

    ids = {}
    for topic in described:
        error = for_code(topic.get("error_code", 0) or 0)
        if error is UnknownTopicOrPartitionError:
            continue
        value = topic.get("topic_id")
        ids[topic["name"]] = "" if value is None or str(value) == NO_TOPIC_ID else str(value)
    return ids


def topic_ids(config: KafkaConfig, topics: Iterable[str]) -> dict[str, str]:
    """The broker's topic id (a UUID string) of each existing topic; '' when the broker has none."""
    client = admin(config)
    try:
        return _ids(client.describe_topics(list(topics)))
    finally:
        client.close()


def consumer_at_end(config: KafkaConfig, topic: str):
    """A consumer outside any group on every partition of `topic`, at its end: it sees what comes after.

    The topic is created when missing. "End" is resolved before returning, so a message sent
    after this call is never missed.
    """
    from kafka.structs import TopicPartition

    create_topics(config, topics=[topic])
    consumer = make_consumer(config, None)
    partitions = consumer.partitions_for_topic(topic) or set()
    assigned = [TopicPartition(topic, p) for p in sorted(partitions)]
    consumer.assign(assigned)
    consumer.seek_to_end(*assigned)
    for tp in assigned:
        consumer.position(tp)
    return consumer


def end_offsets(consumer, partitions: list) -> dict:
    """The end offset (high watermark) of each partition, read from a fetch.

    ListOffsets would be one request, but Tansu answers it with the last record batch's base
    offset plus one (so a batch of ten records counts as one); the high watermark in a fetch
    response is right on every broker. The fetch starts at that answer minus one, so it
    carries at most the last batch.
    """
    listed = consumer.end_offsets(partitions)
    ends = {tp: 0 for tp, end in listed.items() if not end}
    todo = [tp for tp in partitions if tp not in ends]
    if todo:
        consumer.assign(todo)
        for tp in todo:
            consumer.seek(tp, listed[tp] - 1)
        deadline = time.monotonic() + 10
        while any(consumer.highwater(tp) is None for tp in todo) and time.monotonic() < deadline:
            consumer.poll(timeout_ms=200)
        ends.update({tp: consumer.highwater(tp) if consumer.highwater(tp) is not None else listed[tp] for tp in todo})
    return ends


def group_lag(config: KafkaConfig, group: str, topic: str) -> list[dict]:
    """Per partition of `topic`: the group's committed offset (None before its first commit), the end, the lag."""
    from kafka.errors import GroupIdNotFoundError
    from kafka.structs import TopicPartition

    consumer = make_consumer(config, None)
    client = admin(config)
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        if not partitions:
            return []
        try:
            committed = client.list_group_offsets({group: partitions}).get(group, {})
        except GroupIdNotFoundError:
            committed = {}  # a group that never committed has no offsets yet
        ends = end_offsets(consumer, partitions)
    finally:
        client.close()
        consumer.close(autocommit=False)
    rows = []
    for tp in partitions:
        meta = committed.get(tp)
        offset = meta.offset if meta is not None and meta.offset >= 0 else None
        rows.append({"group": group, "topic": topic, "partition": tp.partition, "committed": offset,
                     "end": ends[tp], "lag": max(0, ends[tp] - (offset or 0))})
    return rows


class TopicWatch:
    """Which incarnation of each consumed topic the consumer's positions belong to.

    A topic deleted and created again, or every topic of a broker that keeps nothing on
    disk and restarted, comes back with a new topic id and offsets from 0. Offsets read
    before are meaningless there: a stale position skips the new topic's first messages and
    an old coordinate would make a new message look like a re-delivery. So each batch is
    checked against the topic ids *after* it was fetched (a fetch from a new incarnation is
    then always seen), and a change sends the consumer back to the new topic's beginning;
    the log's unique coordinates make re-reading harmless. Topics found missing (every topic
    modelbus uses, not only the consumed ones) are created again.
    """

    def __init__(self, config: KafkaConfig, consumed: Iterable[str], name: str, log: logging.Logger):
        self.config = config
        self.consumed = list(consumed)
        self.name = name
        self.log = log
        self.ids: dict[str, str] = {}
        self._client = None

    def _admin(self):
        if self._client is None:
            self._client = admin(self.config)
        return self._client

    def current(self) -> dict[str, str]:
        """The topic ids on the broker now; missing modelbus topics are created first."""
        client = self._admin()
        wanted = all_topics(self.config)
        ids = _ids(client.describe_topics(wanted))
        missing = [t for t in wanted if t not in ids]
        if missing:
            self.log.warning("%s: topics %s do not exist on the broker (restarted empty, or deleted); creating them",
                             self.name, ", ".join(missing))
            _create(client, self.config, missing, self.config.topic_partitions)
            ids = _ids(client.describe_topics(wanted))
        return ids

    def check(self) -> list[str]:
        """Consumed topics whose incarnation changed since the last check (none at the first); logged once."""
        current = self.current()
        changed = [t for t in self.consumed if t in self.ids and current.get(t, "") != self.ids[t]]
        for topic in changed:
            self._report(topic, self.ids[topic], current.get(topic, ""))
        self.ids.update({t: current.get(t, "") for t in self.consumed})
        return changed

    def _report(self, topic: str, previous: str, now: str) -> None:
        self.log.warning(
            "%s: topic %s is a new incarnation on the broker (topic id %s -> %s): the broker restarted without "
            "its data, or the topic was deleted and created again; reading it again from its beginning (what "
            "the old topic held and was not stored yet is gone with it)", self.name, topic, previous or "none",
            now or "none")

    def close(self) -> None:
        """Release the admin connection."""
        if self._client is not None:
            try:
                self._client.close()
            except Exception:
                pass
            self._client = None


def process_until_done(process: Callable[[list], object], records: list, stop: threading.Event, *,
                       log: logging.Logger, name: str, doing: str) -> bool:
    """Call process(records) until it returns, backing off exponentially; False if `stop` is set first."""
    return retry_until_done(lambda: process(records), stop,
                            log_failures(log, f"{name}: {doing} a batch of {len(records)}"))


def _rewind(consumer, polled: Mapping) -> None:
    """Put the consumer back at the first record of each polled partition (the batch was not processed)."""
    for tp, records in polled.items():
        if records:
            consumer.seek(tp, records[0].offset)


def run_group(consumer, topics: Iterable[str], stop: threading.Event, *, poll: Callable[[object], dict],
              process: Callable[[list], object], log: logging.Logger, name: str, doing: str,
              ready: threading.Event, watch: TopicWatch) -> None:
    """Subscribe `consumer` and poll, check the topics' incarnation, process until done, commit; until `stop`.

    Offsets are committed only after process() returned for the whole batch; a batch still
    failing when `stop` is set stays uncommitted, so the group's next owner gets it again.
    `watch.ids` names the incarnation of the records handed to process(). Closes the
    consumer. `log`, `name` and `doing` keep each worker's log lines its own.
    """
    from kafka import ConsumerRebalanceListener
    from kafka.errors import CommitFailedError, KafkaError
    from kafka.structs import OffsetAndMetadata

    unchecked = threading.Event()

    def restart_changed(changed: list[str]) -> None:
        # Positions of partitions that stay assigned survive a rebalance (kafka-python keeps
        # them), so an assignment after a broker restart may still hold the old topic's offsets.
        consumer.seek_to_beginning(*[tp for tp in consumer.assignment() if tp.topic in changed])

    class Listener(ConsumerRebalanceListener):
        def on_partitions_revoked(self, revoked):
            log.info("%s: partitions revoked %s", name, sorted(tp.partition for tp in revoked))

        def on_partitions_assigned(self, assigned):
            # Checked before the positions are looked up and anything is fetched; a change after
            # this shows in the check that follows every fetch. If the broker cannot say now,
            # the next poll's records wait for the answer.
            try:
                changed = watch.check()
                if changed:
                    restart_changed(changed)
            except Exception as exc:
                log.warning("%s: reading the topic ids failed (%s); checking again after the next poll", name, exc)
                unchecked.set()
            log.info("%s: partitions assigned %s", name, sorted(tp.partition for tp in assigned))
            ready.set()

    failures = 0
    try:
        consumer.subscribe(list(topics), listener=Listener())
        while not stop.is_set():
            polled = {}
            try:
                polled = poll(consumer)
                if polled or unchecked.is_set():
                    # After the fetch: a fetch from a new incarnation always shows as a change here.
                    changed = watch.check()
                    unchecked.clear()
                    if changed:
                        restart_changed(changed)
                        continue
                failures = 0
            except Exception as exc:
                # A broker or fetch error is not a reason to die: back off and poll again.
                failures += 1
                delay = backoff(failures)
                log.warning("%s: the broker failed us (%s: %s); retrying in %.1fs", name, type(exc).__name__, exc, delay)
                if polled:
                    try:
                        _rewind(consumer, polled)
                    except Exception:
                        log.debug("%s: rewinding failed; the group re-delivers what was not committed", name,
                                  exc_info=True)
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
        watch.close()
        consumer.close(autocommit=False)
