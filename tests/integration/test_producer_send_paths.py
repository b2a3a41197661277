"""KafkaProducer.send() has a fast path (a value only, to a known topic) and a full one:
both must behave the same against the real broker -- serializers, errors, columns
that mix records with and without keys/headers in one batch."""

from __future__ import annotations

import json

import pytest
from client_helpers import read_all

from labkit import (
    IllegalStateError,
    KafkaProducer,
    MessageSizeTooLargeError,
)


def test_records_with_and_without_keys_and_headers_share_a_batch(shared_broker, unique_topic):
    with KafkaProducer(bootstrap_servers=shared_broker.bootstrap, linger_ms=50) as producer:
        producer.send(unique_topic, b"warm-up").get(timeout=10)  # the topic is known now
        futures = [
            producer.send(unique_topic, b"plain-1", partition=0),
            producer.send(unique_topic, b"keyed", key=b"k", partition=0),
            producer.send(unique_topic, b"plain-2"),  # fast path, after a key in the batch
            producer.send(unique_topic, b"with-headers", headers=[("h", b"1")], partition=0),
            producer.send(unique_topic, b"plain-3"),  # fast path, after headers
            producer.send(unique_topic, b"stamped", timestamp_ms=1_700_000_000_000, partition=0),
        ]
        metas = [f.get(timeout=10) for f in futures]
    assert [m.offset for m in metas] == [1, 2, 3, 4, 5, 6]
    assert [m.serialized_key_size for m in metas] == [-1, 1, -1, -1, -1, -1]
    assert metas[5].timestamp == 1_700_000_000_000
    records = read_all(shared_broker.bootstrap, unique_topic, 7)[1:]
    assert [r.value for r in records] == [
        b"plain-1",
        b"keyed",
        b"plain-2",
        b"with-headers",
        b"plain-3",
        b"stamped",
    ]
    assert [r.key for r in records] == [None, b"k", None, None, None, None]
    assert [r.headers for r in records] == [[], [], [], [("h", b"1")], [], []]
    assert records[5].timestamp == 1_700_000_000_000


def test_fast_path_keeps_serializers_and_errors(shared_broker, unique_topic):
    calls = []

    def serializer(value):
        calls.append(value)
        return value if isinstance(value, str) and value == "raw" else json.dumps(value).encode()

    producer = KafkaProducer(
        bootstrap_servers=shared_broker.bootstrap,
        value_serializer=serializer,
        max_request_size=1000,
    )
    try:
        assert producer.send(unique_topic, {"id": 1}).get(timeout=10).offset == 0
        assert producer.send(unique_topic, {"id": 2}).get(timeout=10).offset == 1
        with pytest.raises(TypeError, match="value_serializer returned str"):
            producer.send(unique_topic, "raw")
        with pytest.raises(MessageSizeTooLargeError, match="max_request_size"):
            producer.send(unique_topic, "x" * 2000)
        with pytest.raises(ValueError, match="key or value"):
            producer.send(unique_topic, None)
        with pytest.raises(TypeError, match="headers"):
            producer.send(unique_topic, {"id": 3}, headers=[("h", "not bytes")])
        assert len(calls) == 5  # once per record; never for a None value
    finally:
        producer.close()
    with pytest.raises(IllegalStateError):
        producer.send(unique_topic, {"id": 4})
    assert len(calls) == 5  # closed: refused before serializing
    assert [json.loads(r.value) for r in read_all(shared_broker.bootstrap, unique_topic, 2)] == [
        {"id": 1},
        {"id": 2},
    ]
