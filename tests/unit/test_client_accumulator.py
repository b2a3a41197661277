"""The producer's accumulator without sockets: batching, sealing, futures, callbacks."""

import gc
import threading

import pytest

from labkit.client.accumulator import (
    RECORD_OVERHEAD,
    PartitionBuffer,
    ProducerBatch,
    RecordAccumulator,
)
from labkit.client.structs import RecordMetadata, TopicPartition
from labkit.errors import KafkaTimeoutError, NotLeaderForPartitionError
from labkit.protocol.records import decode_batch, split_batches, validate_batch
from labkit.testing import FakeClock

TP = TopicPartition("t", 0)


def make(batch_size=16384, linger_ms=0, max_request_size=1048576, clock=None):
    return RecordAccumulator(
        batch_size=batch_size,
        max_request_size=max_request_size,
        linger_ms=linger_ms,
        buffer_memory=32 << 20,
        clock=clock or FakeClock(),
    )


def append(acc, buf, value, key=None, ts=1000, headers=None):
    size = RECORD_OVERHEAD + len(value) + (len(key) if key else 0)
    return buf.append((ts, key, value, headers, size))


def test_drain_seals_one_valid_batch_per_partition_in_order():
    acc = make()
    a, b = acc.new_buffer(TP), acc.new_buffer(TopicPartition("t", 1))
    fa = [append(acc, a, b"v%d" % i, ts=1000 + i) for i in range(5)]
    append(acc, b, b"other", key=b"k")
    batches, due = acc.drain(0.0, 1 << 20, lambda buf: None)
    assert due is None
    assert [x.tp for x in batches] == [TP, TopicPartition("t", 1)]
    header = validate_batch(batches[0].data)
    assert header.record_count == 5
    decoded = decode_batch(batches[0].data)
    assert decoded.values == [b"v%d" % i for i in range(5)]
    assert decoded.timestamps == [1000 + i for i in range(5)]
    assert decoded.keys == [None] * 5
    assert decode_batch(batches[1].data).keys == [b"k"]
    assert a.pending() == 0
    assert b.pending() == 0
    assert [f[1] for f in fa] == list(range(5))
    assert all(f[0] is batches[0] for f in fa)
    assert acc.incomplete == 2


def test_batches_respect_batch_size_and_a_big_record_gets_its_own_batch():
    acc = make(batch_size=1000)
    buf = acc.new_buffer(TP)
    for _ in range(30):
        append(acc, buf, b"x" * 100)
    append(acc, buf, b"y" * 5000)
    batches, _ = acc.drain(0.0, 1 << 20, lambda b: None)
    assert sum(x.count for x in batches) == 31
    assert all(len(x.data) <= 1000 for x in batches[:-1])
    assert batches[-1].count == 1
    assert len(batches[-1].data) > 5000


def test_request_budget_leaves_the_rest_buffered():
    acc = make(batch_size=1000)
    buf = acc.new_buffer(TP)
    for _ in range(50):
        append(acc, buf, b"x" * 100)
    batches, due = acc.drain(0.0, 2500, lambda b: None)
    assert 1 <= len(batches) <= 3
    assert sum(len(x.data) for x in batches) <= 2500 + 1000
    assert buf.pending()
    assert due == 0.0
    rest, _ = acc.drain(0.0, 1 << 20, lambda b: None)
    assert sum(x.count for x in batches + rest) == 50


def test_linger_holds_records_until_due_unless_flushing():
    clock = FakeClock()
    acc = make(linger_ms=50, clock=clock)
    buf = acc.new_buffer(TP)
    append(acc, buf, b"a")
    batches, due = acc.drain(clock.monotonic(), 1 << 20, lambda b: None)
    assert batches == []
    assert due == pytest.approx(0.05)
    clock.advance(0.02)
    batches, due = acc.drain(clock.monotonic(), 1 << 20, lambda b: None)
    assert batches == []
    assert due == pytest.approx(0.03)
    acc.flushing += 1
    batches, _ = acc.drain(clock.monotonic(), 1 << 20, lambda b: None)
    assert len(batches) == 1


def test_future_resolves_to_record_metadata():
    acc = make()
    buf = acc.new_buffer(TP)
    futures = [append(acc, buf, b"val", key=b"kk", ts=5000 + i) for i in range(3)]
    assert not futures[0].is_done
    (batch,), _ = acc.drain(0.0, 1 << 20, lambda b: None)
    assert not futures[0].is_done
    acc.complete(batch, 40)
    meta = futures[2].get(timeout=0)
    assert meta == RecordMetadata("t", 0, TP, 42, 5002, None, 2, 3, -1)
    assert futures[0].succeeded()
    assert not futures[0].failed()
    assert futures[1].value.offset == 41
    assert futures[1].exception is None
    assert acc.incomplete == 0


def test_callbacks_and_errbacks_run_once_with_the_right_argument():
    acc = make()
    buf = acc.new_buffer(TP)
    ok, bad = append(acc, buf, b"a"), append(acc, buf, b"b")
    seen = []
    ok.add_callback(lambda m: seen.append(("cb", m.offset)))
    ok.add_errback(lambda e: seen.append(("eb", e)))
    ok.add_callback(lambda tag, m: seen.append((tag, m.offset)), "tagged")
    (batch,), _ = acc.drain(0.0, 1 << 20, lambda b: None)
    acc.complete(batch, 7)
    assert seen == [("cb", 7), ("tagged", 7)]
    late = []
    bad.add_callback(lambda m: late.append(m.offset))  # already done: runs at once
    assert late == [8]


def test_failed_batch_fails_every_future():
    acc = make()
    buf = acc.new_buffer(TP)
    futures = [append(acc, buf, b"a") for _ in range(2)]
    errors = []
    futures[0].add_errback(errors.append)
    (batch,), _ = acc.drain(0.0, 1 << 20, lambda b: None)
    acc.complete(batch, -1, NotLeaderForPartitionError("gone"))
    assert futures[1].failed()
    with pytest.raises(NotLeaderForPartitionError):
        futures[1].get()
    assert isinstance(errors[0], NotLeaderForPartitionError)


def test_a_raising_callback_does_not_stop_the_others():
    acc = make()
    buf = acc.new_buffer(TP)
    future = append(acc, buf, b"a")
    seen = []
    future.add_callback(lambda m: 1 / 0)
    future.add_callback(lambda m: seen.append(m.offset))
    (batch,), _ = acc.drain(0.0, 1 << 20, lambda b: None)
    acc.complete(batch, 0)
    assert seen == [0]


def test_get_times_out_with_kafka_timeout_error():
    acc = make(clock=FakeClock())
    buf = acc.new_buffer(TP)
    future = append(acc, buf, b"a")
    with pytest.raises(KafkaTimeoutError):
        future.get(timeout=0)


def test_get_wakes_when_another_thread_completes_the_batch():
    acc = make()
    buf = acc.new_buffer(TP)
    future = append(acc, buf, b"a")
    (batch,), _ = acc.drain(0.0, 1 << 20, lambda b: None)
    timer = threading.Timer(0.05, acc.complete, args=(batch, 3))
    timer.start()
    assert future.get(timeout=5).offset == 3
    timer.join()


def test_appends_from_several_threads_are_all_sealed_exactly_once():
    acc = make(batch_size=500)
    buf = acc.new_buffer(TP)
    stop = threading.Event()
    sealed = []

    def drainer():
        while not stop.is_set() or buf.pending():
            batches, _ = acc.drain(0.0, 1 << 20, lambda b: None)
            sealed.extend(batches)

    def sender(n):
        for i in range(2000):
            append(acc, buf, b"%d-%d" % (n, i))

    thread = threading.Thread(target=drainer)
    thread.start()
    senders = [threading.Thread(target=sender, args=(n,)) for n in range(3)]
    for t in senders:
        t.start()
    for t in senders:
        t.join()
    stop.set()
    thread.join()
    values = []
    for batch in sealed:
        for start, _ in split_batches(batch.data):
            values.extend(decode_batch(batch.data, start).values)
    assert len(values) == 6000
    assert len(set(values)) == 6000
    for n in range(3):  # each thread's records keep their order
        mine = [v for v in values if v.startswith(b"%d-" % n)]
        assert mine == [b"%d-%d" % (n, i) for i in range(2000)]


def test_buffered_records_do_not_burden_the_garbage_collector():
    acc = make()
    buf = acc.new_buffer(TP)
    future = append(acc, buf, b"value", key=b"key")
    append(acc, buf, b"value", headers=[("h", b"1")])
    gc.collect()
    batch = buf.open  # columns, no container object per record
    assert batch.records == [b"value", b"value"]
    assert batch.keys == [b"key", None]
    assert batch.hdrs == [None, [("h", b"1")]]
    assert len(batch.ts) == 2
    assert not any(gc.is_tracked(x) for x in batch.records + batch.keys + batch.ts)
    del future  # nothing else refers to an ignored future
    assert buf.pending() == 2
    (sealed,), _ = acc.drain(0.0, 1 << 20, lambda b: None)
    decoded = decode_batch(sealed.data)
    assert decoded.keys == [b"key", None]
    assert decoded.headers == [[], [("h", b"1")]]


class _AppendsWhileSummed(ProducerBatch):
    """A ready batch that, the first time drain() reads its size, appends a full batch
    to its partition's ready queue -- what send() on another thread does when the GIL
    switches in the middle of drain()'s scan of that queue."""

    __slots__ = ("_size", "on_read")

    @property
    def nbytes(self):
        hook, self.on_read = getattr(self, "on_read", None), None
        if hook is not None:
            hook()
        return self._size

    @nbytes.setter
    def nbytes(self, value):
        self._size = value


def test_drain_survives_a_send_appending_while_it_scans_the_ready_queue():
    acc = make(batch_size=200)
    buf = acc.new_buffer(TP)
    for _ in range(3):  # a, b: ordinary full batches; the open one holds a record too
        append(acc, buf, b"x" * 150)
    tricky = _AppendsWhileSummed(TP)
    tricky.records, tricky.ts = [b"y" * 150], [1000]
    tricky.nbytes = 166
    late = _AppendsWhileSummed(TP)
    late.records, late.ts = [b"z" * 150], [1000]
    late.nbytes = 166
    tricky.on_read = lambda: buf.ready.append(late)
    buf.ready.append(tricky)
    assert len(buf.ready) == 3
    # the budget takes one batch: drain() then sums the sizes of the rest
    first, due = acc.drain(0.0, 10, lambda b: None)
    assert len(first) == 1
    assert due == 0.0
    rest, _ = acc.drain(0.0, 1 << 20, lambda b: None)
    assert sum(b.count for b in first + rest) == 5
    assert acc.incomplete == len(first + rest)
    assert buf.pending() == 0


def test_batches_sealed_before_an_error_in_drain_are_handed_to_the_caller():
    acc = make(batch_size=200)
    bufs = [acc.new_buffer(TopicPartition("t", p)) for p in range(3)]
    futures = [append(acc, b, b"x" * 50) for b in bufs]
    calls = []

    def on_seal(buf):
        calls.append(buf)
        if len(calls) == 2:
            raise RuntimeError("a bug in a seal hook")

    taken = []
    with pytest.raises(RuntimeError):
        acc.drain(0.0, 1 << 20, on_seal, out=taken)
    assert [b.tp.partition for b in taken] == [0, 1]  # both sealed batches, none lost
    for batch in taken:
        acc.complete(batch, -1, KafkaTimeoutError("failed"))
        acc.complete(batch, 5)  # a second completion changes nothing
    assert futures[0].failed()
    assert futures[1].failed()
    assert not futures[2].is_done
    assert acc.incomplete == 0
    assert acc.in_flight_bytes == 0
    rest, _ = acc.drain(0.0, 1 << 20, lambda b: None)
    assert [b.tp.partition for b in rest] == [2]


def test_a_split_batch_resolves_each_record_from_its_parts():
    acc = make()
    buf = acc.new_buffer(TP)
    futures = [
        append(
            acc,
            buf,
            b"v%d" % i,
            key=b"k" if i == 1 else None,
            ts=100 + i,
            headers=[("h", b"x")] if i == 3 else None,
        )
        for i in range(5)
    ]
    seen = []
    for f in futures:
        f.add_callback(lambda m: seen.append(m.offset)).add_errback(seen.append)
    (batch,), _ = acc.drain(0.0, 1 << 20, lambda b: None)
    left, right = acc.split(batch)
    assert (left.count, right.count, left.first, right.first) == (2, 3, 0, 2)
    decoded = decode_batch(right.data)
    assert decoded.values == [b"v2", b"v3", b"v4"]
    assert decoded.timestamps == [102, 103, 104]
    assert decoded.headers == [[], [("h", b"x")], []]
    assert decode_batch(left.data).keys == [None, b"k"]
    right_a, right_b = acc.split(right)  # a part split again
    assert (right_a.first, right_a.count, right_b.first, right_b.count) == (2, 1, 3, 2)
    acc.complete(left, 10)
    acc.complete(right_b, 12)
    assert not futures[0].is_done
    assert seen == []  # done once every record is
    too_big = NotLeaderForPartitionError("refused")
    acc.complete(right_a, -1, too_big)
    assert [f.succeeded() for f in futures] == [True, True, False, True, True]
    assert [f.get().offset for f in futures if f.succeeded()] == [10, 11, 12, 13]
    assert futures[2].exception is too_big
    assert futures[2].value is None
    with pytest.raises(NotLeaderForPartitionError):
        futures[2].get()
    assert futures[1].get().serialized_key_size == 1
    assert futures[3].get().timestamp == 103
    assert sorted(seen, key=str) == sorted([10, 11, too_big, 12, 13], key=str)
    assert acc.incomplete == 0
    assert acc.in_flight_bytes == 0


class _FillsBeforeTakeOpen(PartitionBuffer):
    """A buffer where another thread's send() fills the open batch (and opens the next)
    right when drain() is about to take the open batch -- issue 11, item 1."""

    __slots__ = ("before_take",)

    def take_open(self, *args, **kwargs):
        hook, self.before_take = self.before_take, None
        if hook is not None:
            hook()
        return super().take_open(*args, **kwargs)


def test_a_batch_filled_while_drain_takes_the_open_one_keeps_its_place():
    acc = make(batch_size=200)
    buf = _FillsBeforeTakeOpen(TP, acc.limit, acc.future_class)
    acc.buffers = [buf]
    append(acc, buf, b"0" * 50)

    def other_thread_sends():  # fills the open batch: it moves to ready, #3 opens a new one
        for i in (1, 2, 3):
            append(acc, buf, b"%d" % i * 50)

    buf.before_take = other_thread_sends
    sent = []
    for _ in range(3):
        batches, _ = acc.drain(0.0, 1 << 20, lambda b: None)
        sent += batches
    values = [v for batch in sent for v in decode_batch(batch.data).values]
    assert values == [b"%d" % i * 50 for i in range(4)]
