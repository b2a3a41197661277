"""send()'s fast path (a value only, to a known topic) inlines the partition buffer's
append: a failure while it starts a new batch (MemoryError, say) must raise from that
send() and leave the partition as it was -- lock free, the open batch not queued while
still open -- so the next send() works and every accepted record arrives once."""

from __future__ import annotations

import pytest
from client_helpers import read_all

from labkit import KafkaProducer
from labkit.client import producer as producer_module

VALUE = b"v" * 100


def _failing_batch(tp):
    raise MemoryError("no room for a new batch")


def test_a_failed_new_batch_in_the_fast_path_loses_and_blocks_nothing(
    shared_broker, unique_topic, monkeypatch
):
    with KafkaProducer(bootstrap_servers=shared_broker.bootstrap) as warm:
        warm.send(unique_topic, b"warm-up").get(timeout=10)  # exists, one partition
    # one 100-byte record per batch, so every send() after the first starts a new batch;
    # a long linger keeps the I/O thread from taking the open batch away first
    producer = KafkaProducer(
        bootstrap_servers=shared_broker.bootstrap, acks=1, batch_size=200, linger_ms=60_000
    )
    try:
        producer.partitions_for(unique_topic)  # known: send() takes the fast path
        accepted = [producer.send(unique_topic, b"1" + VALUE)]
        buf = producer._acc.buffers[0]
        with monkeypatch.context() as patch:
            patch.setattr(producer_module, "ProducerBatch", _failing_batch)
            with pytest.raises(MemoryError):
                producer.send(unique_topic, b"refused" + VALUE)
        assert not buf.lock.locked()
        accepted += [producer.send(unique_topic, b"%d" % i + VALUE) for i in (2, 3)]
        producer.flush(timeout=10)
        offsets = [f.get(timeout=10).offset for f in accepted]
    finally:
        producer.close(timeout=10)  # bounded: a lost batch would make close() wait for ever
    assert offsets == [1, 2, 3]
    values = [r.value for r in read_all(shared_broker.bootstrap, unique_topic, 4)]
    assert values == [b"warm-up", b"1" + VALUE, b"2" + VALUE, b"3" + VALUE]
