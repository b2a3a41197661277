"""Poison messages on Apache Kafka: labkit's KafkaConsumer (delegating to kafka-python)
keeps labkit's semantics (docs/client.md, "Poison messages") instead of kafka-python
3.0's, whose iterator spins forever in its fetcher after a deserializer raised once.

Notebook 04's cells, as a test: the records before the bad one arrive, then the
deserializer's own exception, again and again at the same position until a seek.
"""

from __future__ import annotations

import json
import time

import pytest

from labkit import KafkaAdminClient, KafkaConsumer, KafkaProducer, NewTopic, TopicPartition

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(180),  # the bug was a hang: fail, do not wait forever
    pytest.mark.usefixtures("kafka_python_garbage"),
]
BAD_AT = 4
GOOD = [json.dumps({"n": n}).encode() for n in range(8)]


@pytest.fixture
def poisoned(apache_kafka, unique_topic):
    """A one-partition topic on Apache Kafka: 4 JSON records, b"{not json", 4 more."""
    admin = KafkaAdminClient(bootstrap_servers=apache_kafka.bootstrap)
    admin.create_topics([NewTopic(unique_topic, num_partitions=1, replication_factor=1)])
    producer = KafkaProducer(bootstrap_servers=apache_kafka.bootstrap)
    for raw in [*GOOD[:BAD_AT], b"{not json", *GOOD[BAD_AT:]]:
        producer.send(unique_topic, raw)
    producer.flush()
    producer.close()
    yield unique_topic
    admin.delete_topics([unique_topic])
    admin.close()


def _consumer(apache_kafka, topic):
    return KafkaConsumer(
        topic,
        bootstrap_servers=apache_kafka.bootstrap,
        auto_offset_reset="earliest",
        consumer_timeout_ms=1000,
        value_deserializer=json.loads,
    )


def test_iteration_raises_at_the_poison_record_every_time_until_a_seek(apache_kafka, poisoned):
    consumer = _consumer(apache_kafka, poisoned)
    tp = TopicPartition(poisoned, 0)
    read, errors = [], []
    try:
        for _attempt in range(3):
            try:
                read.extend(record.offset for record in consumer)
            except ValueError as exc:
                errors.append(exc)
                assert consumer.position(tp) == BAD_AT
        assert read == list(range(BAD_AT))  # kafka-python alone loses these
        assert len(errors) == 3
        assert all(isinstance(e, json.JSONDecodeError) for e in errors)
        assert (errors[0].topic_partition, errors[0].offset, errors[0].what) == (
            tp,
            BAD_AT,
            "value",
        )
        assert "seek" in "".join(errors[0].__notes__)
        consumer.seek(tp, BAD_AT + 1)
        after = [record.value["n"] for record in consumer]
        assert after == list(range(BAD_AT, len(GOOD)))
    finally:
        consumer.close()


def test_poll_returns_the_records_before_then_raises_until_a_seek(apache_kafka, poisoned):
    consumer = _consumer(apache_kafka, poisoned)
    tp = TopicPartition(poisoned, 0)
    got, raised = [], []
    deadline = time.monotonic() + 60
    try:
        while len(raised) < 2 and time.monotonic() < deadline:
            try:
                for records in consumer.poll(timeout_ms=500).values():
                    got.extend(r.value["n"] for r in records)
            except ValueError as exc:
                raised.append((exc.offset, consumer.position(tp)))
        assert raised == [(BAD_AT, BAD_AT)] * 2
        assert got == list(range(BAD_AT))
        consumer.seek(tp, BAD_AT + 1)
        while len(got) < len(GOOD) and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                got.extend(r.value["n"] for r in records)
        assert got == list(range(len(GOOD)))
    finally:
        consumer.close()
