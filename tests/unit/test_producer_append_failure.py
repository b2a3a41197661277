"""A failure while a producer's partition buffer starts a new batch (MemoryError, say)
must leave the buffer as it was: its lock free, the open batch still open and not queued
too, so the next append works and nothing already accepted is lost or sent twice."""

import pytest

from labkit.client import accumulator
from labkit.client.accumulator import RECORD_OVERHEAD, RecordAccumulator
from labkit.client.structs import TopicPartition
from labkit.protocol.records import decode_batch
from labkit.testing import FakeClock

TP = TopicPartition("t", 0)
VALUE = b"v" * 100


def _failing_batch(tp):
    raise MemoryError("no room for a new batch")


def test_a_failed_new_batch_leaves_the_partition_buffer_usable(monkeypatch):
    # room for one 100-byte record per batch: the second append must start a new one
    acc = RecordAccumulator(
        batch_size=44 + RECORD_OVERHEAD + 150,
        max_request_size=1 << 20,
        linger_ms=0,
        buffer_memory=1 << 20,
        clock=FakeClock(),
    )
    buf = acc.new_buffer(TP)
    size = RECORD_OVERHEAD + len(VALUE)
    first = buf.append((1000, None, b"1" + VALUE, None, size + 1))
    with monkeypatch.context() as patch:
        patch.setattr(accumulator, "ProducerBatch", _failing_batch)
        with pytest.raises(MemoryError):
            buf.append((1001, b"k", b"2" + VALUE, None, size + 2))
    assert not buf.lock.locked()
    assert not buf.ready  # the open batch was not queued while still open
    assert buf.open is first[0]
    assert buf.open.records == [b"1" + VALUE]

    second = buf.append((1002, b"k", b"2" + VALUE, None, size + 2))
    assert second[0] is not first[0]
    sealed, _ = acc.drain(10.0, 1 << 20, lambda buf: None)
    assert [decode_batch(b.data).values for b in sealed] == [[b"1" + VALUE], [b"2" + VALUE]]
    assert decode_batch(sealed[1].data).keys == [b"k"]
