"""Poison messages (real broker): a deserializer that raises on one record. poll()
returns the records before it, then raises the deserializer's own exception (as
kafka-python does) with a note naming the record; the position stays there until the
app seeks past it."""

from __future__ import annotations

import json

import pytest

from labkit import (
    KafkaAdminClient,
    KafkaConsumer,
    KafkaProducer,
    NewTopic,
    TopicPartition,
)


def notes(error):
    return "\n".join(getattr(error, "__notes__", []))


def write(bootstrap, topic, records):
    """``records``: (key, value) pairs, written in one batch to partition 0."""
    with KafkaAdminClient(bootstrap_servers=bootstrap) as admin:
        admin.create_topics([NewTopic(topic, 1, 1)])
    with KafkaProducer(bootstrap_servers=bootstrap, linger_ms=100) as producer:
        for key, value in records:
            producer.send(topic, value, key=key, partition=0)
        producer.flush(timeout=10)


@pytest.fixture
def make_consumer(shared_broker):
    made = []

    def make(**configs):
        consumer = KafkaConsumer(
            bootstrap_servers=shared_broker.bootstrap, auto_offset_reset="earliest", **configs
        )
        made.append(consumer)
        return consumer

    yield make
    for consumer in made:
        consumer.close()


def test_records_before_a_poison_message_arrive_then_poll_raises_until_seek(
    shared_broker, unique_topic, make_consumer
):
    values = [b'{"n": 0}', b'{"n": 1}', b"not json", b'{"n": 3}']
    write(shared_broker.bootstrap, unique_topic, [(None, v) for v in values])
    tp = TopicPartition(unique_topic, 0)
    consumer = make_consumer(value_deserializer=json.loads)
    consumer.assign([tp])
    got = consumer.poll(timeout_ms=10_000)
    assert [(r.offset, r.value) for r in got[tp]] == [(0, {"n": 0}), (1, {"n": 1})]
    with pytest.raises(json.JSONDecodeError) as caught:  # what kafka-python raises too
        consumer.poll(timeout_ms=10_000)
    error = caught.value
    assert (error.topic_partition, error.offset, error.what) == (tp, 2, "value")
    assert f"offset 2 of topic '{unique_topic}' partition 0" in notes(error)
    assert f"seek(TopicPartition('{unique_topic}', 0), 3)" in notes(error)
    assert consumer.position(tp) == 2
    with pytest.raises(json.JSONDecodeError):  # no seek: the same record again
        consumer.poll(timeout_ms=10_000)
    consumer.seek(tp, error.offset + 1)
    got = consumer.poll(timeout_ms=10_000)
    assert [(r.offset, r.value) for r in got[tp]] == [(3, {"n": 3})]


def test_a_bad_key_first_in_the_batch_while_iterating(shared_broker, unique_topic, make_consumer):
    records = [(b"\xff", b"a"), (b"k1", b"b"), (b"k2", None)]
    write(shared_broker.bootstrap, unique_topic, records)
    tp = TopicPartition(unique_topic, 0)
    consumer = make_consumer(
        key_deserializer=lambda k: k.decode("utf-8"),
        value_deserializer=lambda v: v.decode("utf-8"),
        consumer_timeout_ms=10_000,
    )
    consumer.assign([tp])
    with pytest.raises(UnicodeDecodeError) as caught:
        next(consumer)
    assert caught.value.offset == 0
    assert caught.value.what == "key"
    assert "key_deserializer" in notes(caught.value)
    consumer.seek(tp, 1)
    seen = [(r.offset, r.key, r.value) for _, r in zip(range(2), consumer, strict=False)]
    assert seen == [(1, "k1", "b"), (2, "k2", None)]  # a None value skips the deserializer
