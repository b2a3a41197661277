"""KafkaProducer.send() has a fast path (a value only, to a known topic) and a full one:
both must behave the same against the real broker -- serializers, errors, columns
that mix records with and without keys/headers in one batch."""

from __future__ import annotations

import json
import time

import pytest
from client_helpers import read_all

from labkit import (
    IllegalStateError,
    KafkaProducer,
    MessageSizeTooLargeError,
)
from labkit.client.accumulator import ProducerBatch


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


class _FrozenWallClock:
    """Real monotonic time (the transport's timeouts work), a fixed wall clock (both
    paths stamp the same timestamps)."""

    def monotonic(self) -> float:
        return time.monotonic()

    def time_ms(self) -> int:
        return 1_700_000_000_123

    def time_ns(self) -> int:
        return 1_700_000_000_123_000_000


def _batches_of(futures) -> list[bytes]:
    """The bytes of the distinct batches behind ``futures``, in order. A full batch may
    already be sealed and sent (batch_size rolled over: it does not wait for linger);
    its bytes are what was sent. The others are copied and the copies sealed (the
    producer lingers for a minute, so nothing drains the open one yet)."""
    out = []
    for batch in dict.fromkeys(f[0] for f in futures):
        if batch.records is None:  # sealed by the I/O thread (data is set right after)
            deadline = time.monotonic() + 10
            while not batch.data and time.monotonic() < deadline:
                time.sleep(0.001)
            out.append(bytes(batch.data))
            continue
        copy = ProducerBatch(batch.tp)
        copy.records, copy.ts = list(batch.records), list(batch.ts)
        copy.keys = None if batch.keys is None else list(batch.keys)
        copy.hdrs = None if batch.hdrs is None else list(batch.hdrs)
        copy.seal()
        out.append(copy.data)
    return out


def test_both_send_paths_build_byte_identical_batches(shared_broker, unique_topic):
    values = [b"", b"x", *(bytes([65 + i % 26]) * (i * 7 % 90) for i in range(60))]
    with KafkaProducer(bootstrap_servers=shared_broker.bootstrap) as warm:
        for topic in (f"{unique_topic}-fast", f"{unique_topic}-full"):
            warm.send(topic, b"warm-up").get(timeout=10)  # exists, one partition
    producer = KafkaProducer(
        bootstrap_servers=shared_broker.bootstrap,
        linger_ms=60_000,
        batch_size=1024,
        clock=_FrozenWallClock(),
    )
    try:
        producer.partitions_for(f"{unique_topic}-fast")  # known: send() takes the fast path
        producer.partitions_for(f"{unique_topic}-full")
        fast = [producer.send(f"{unique_topic}-fast", v) for v in values]
        full = [producer.send(f"{unique_topic}-full", v, partition=0) for v in values]
        fast_batches, full_batches = _batches_of(fast), _batches_of(full)
        assert len(fast_batches) > 2  # batch_size rolled over on both paths
        assert fast_batches == full_batches
    finally:
        producer.close()


def test_serializers_see_none_as_in_kafka_python(shared_broker, unique_topic):
    """kafka-python 3.0 calls the serializers on None: a JSON value_serializer turns
    value=None into b"null" (not a tombstone), a key_serializer gets key=None."""
    keys_seen = []

    def key_serializer(key):
        keys_seen.append(key)
        return None if key is None else key.encode()

    with KafkaProducer(
        bootstrap_servers=shared_broker.bootstrap,
        key_serializer=key_serializer,
        value_serializer=lambda v: json.dumps(v).encode(),
    ) as producer:
        producer.send(unique_topic, None, key="gone").get(timeout=10)
        producer.send(unique_topic, {"id": 1}).get(timeout=10)
    assert keys_seen == ["gone", None]
    records = read_all(shared_broker.bootstrap, unique_topic, 2)
    assert [(r.key, r.value) for r in records] == [(b"gone", b"null"), (None, b'{"id": 1}')]
    with KafkaProducer(bootstrap_servers=shared_broker.bootstrap) as producer:
        producer.send(unique_topic, None, key=b"gone").get(timeout=10)  # a real tombstone
    assert read_all(shared_broker.bootstrap, unique_topic, 3)[2].value is None


def test_a_serializer_that_fails_on_none_says_why_it_got_none(shared_broker, unique_topic):
    with (
        KafkaProducer(
            bootstrap_servers=shared_broker.bootstrap, key_serializer=str.encode
        ) as producer,
        pytest.raises(TypeError) as raised,
    ):
        producer.send(unique_topic, b"value without a key")
    assert "key_serializer with key=None" in "".join(raised.value.__notes__)


def test_acks_default_is_all_as_in_kafka_python_3(shared_broker):
    with KafkaProducer(bootstrap_servers=shared_broker.bootstrap) as producer:
        assert producer.config["acks"] == -1
        assert producer._sender._acks == -1
    # idempotence works with the defaults: acks='all', retries unlimited, producer ids
    with KafkaProducer(bootstrap_servers=shared_broker.bootstrap, enable_idempotence=True) as p:
        assert p.send("idempotent-ok", b"once").get(timeout=10).offset >= 0
