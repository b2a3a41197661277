"""MESSAGE_TOO_LARGE from the real broker: a batch of several records over the topic's
max.message.bytes is split and sent in halves (as the Java client does); only a record
too large on its own fails, with a message naming the limits to raise."""

from __future__ import annotations

import pytest
from client_helpers import read_all

from labkit import (
    KafkaAdminClient,
    KafkaProducer,
    MessageSizeTooLargeError,
    NewTopic,
)


def small_topic(bootstrap, topic, limit=2000):
    with KafkaAdminClient(bootstrap_servers=bootstrap) as admin:
        admin.create_topics(
            [NewTopic(topic, 1, 1, topic_configs={"max.message.bytes": str(limit)})]
        )


def test_a_batch_over_max_message_bytes_is_split_until_it_fits(shared_broker, unique_topic):
    small_topic(shared_broker.bootstrap, unique_topic)
    values = [b"%02d" % i + b"x" * 498 for i in range(20)]  # 500 bytes each
    with KafkaProducer(
        bootstrap_servers=shared_broker.bootstrap, batch_size=100_000, linger_ms=200
    ) as producer:
        futures = [
            producer.send(
                unique_topic,
                v,
                key=b"k%d" % i if i % 3 == 0 else None,
                headers=[("i", b"%d" % i)] if i % 4 == 0 else None,
            )
            for i, v in enumerate(values)
        ]
        metas = [f.get(timeout=20) for f in futures]
    assert all(f.succeeded() for f in futures)
    assert sorted(m.offset for m in metas) == list(range(20))
    assert [m.offset for m in metas] == sorted(m.offset for m in metas)  # kept in order
    assert [m.serialized_key_size for m in metas[:4]] == [2, -1, -1, 2]
    records = read_all(shared_broker.bootstrap, unique_topic, 20)
    assert [r.value for r in records] == values
    assert [r.key for r in records][:4] == [b"k0", None, None, b"k3"]
    assert records[4].headers == [("i", b"4")]
    assert records[5].headers == []
    assert [r.timestamp for r in records] == [m.timestamp for m in metas]


def test_only_the_record_too_large_on_its_own_fails(shared_broker, unique_topic):
    small_topic(shared_broker.bootstrap, unique_topic)
    errors = []
    with KafkaProducer(
        bootstrap_servers=shared_broker.bootstrap, batch_size=100_000, linger_ms=200
    ) as producer:
        before = producer.send(unique_topic, b"a" * 500)
        big = producer.send(unique_topic, b"b" * 5000)
        big.add_errback(errors.append)
        after = [producer.send(unique_topic, b"c" * 500) for _ in range(3)]
        with pytest.raises(MessageSizeTooLargeError) as caught:
            big.get(timeout=20)
        assert before.get(timeout=20).offset == 0
        assert [f.get(timeout=20).offset for f in after] == [1, 2, 3]
    message = str(caught.value)
    assert f"topic '{unique_topic}'" in message
    assert "max.message.bytes" in message
    assert "max_request_size" in message
    assert f"labkit topics --alter --topic {unique_topic}" in message
    assert big.failed()
    assert not big.retriable()
    assert big.value is None
    assert errors == [caught.value]
    assert big.exception is caught.value
    assert [r.value[:1] for r in read_all(shared_broker.bootstrap, unique_topic, 4)] == [
        b"a",
        b"c",
        b"c",
        b"c",
    ]
