"""`modelbus status` on a real broker: the consumer lag of each group is what it has not committed yet."""
from __future__ import annotations

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.structs import OffsetAndMetadata

from modelbus.commands.kafka import create_topics
from conftest import kafka_settings
from modelbus.status import consumer_lag


def test_consumer_lag_is_end_minus_committed_per_partition(kafka_bootstrap, topics, tmp_path):
    settings = kafka_settings(f"sqlite:///{tmp_path / 'status.db'}", kafka_bootstrap, topics)
    create_topics(settings.kafka, 3, [topics.events, topics.prediction_requests])
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap)
    for i in range(30):
        producer.send(topics.events, b"x", partition=i % 3)
    producer.flush()
    producer.close()
    # The ingest group has committed 4 messages of partition 0 and all 10 of partition 1.
    consumer = KafkaConsumer(bootstrap_servers=kafka_bootstrap, group_id=settings.ingest_group,
                             enable_auto_commit=False)
    consumer.commit({TopicPartition(topics.events, 0): OffsetAndMetadata(4, "", -1),
                     TopicPartition(topics.events, 1): OffsetAndMetadata(10, "", -1)})
    consumer.close(autocommit=False)

    rows = consumer_lag(settings)
    ingest = {r["partition"]: r for r in rows if r["group"] == settings.ingest_group}
    assert {p: (r["committed"], r["end"], r["lag"]) for p, r in ingest.items()} == {
        0: (4, 10, 6), 1: (10, 10, 0), 2: (None, 10, 10)}
    # The predictor group never committed: its lag is the whole (empty) topic.
    predictor = [r for r in rows if r["group"] == settings.predictor_group]
    assert predictor and all(r["committed"] is None and r["lag"] == 0 for r in predictor)
