"""The producer's sender without sockets: a fake broker answers produce requests in
the order they arrive (as the real one does) and assigns offsets per partition."""

from __future__ import annotations

from labkit.client.accumulator import RECORD_OVERHEAD, RecordAccumulator
from labkit.client.future import Future
from labkit.client.metadata import ClusterMetadata
from labkit.client.sender import Sender
from labkit.client.structs import TopicPartition
from labkit.client.transport import Response
from labkit.errors import NotLeaderForPartitionError
from labkit.testing import FakeClock

P0, P1 = TopicPartition("t", 0), TopicPartition("t", 1)


class FakeBroker:
    """Stands in for the transport: queues requests, answers them when ``answer_all``
    runs; the first ``fail_first`` batches sent to a partition get NOT_LEADER (retriable)."""

    def __init__(self, fail_first: dict[TopicPartition, int] | None = None):
        self.queue: list[tuple[dict, list, Future]] = []
        self.logs: dict[TopicPartition, int] = {}
        self.fail_first = dict(fail_first or {})
        self.requests: list[list[TopicPartition]] = []

    def request(
        self, api, header, payloads=(), *, timeout_ms=None, idempotent=False, expect_response=True
    ):
        future = Future()
        self.queue.append((header, list(payloads), future))
        self.requests.append([TopicPartition(t, p) for t, p in header["targets"]])
        return future

    def answer_all(self) -> None:
        queue, self.queue = self.queue, []
        for header, payloads, future in queue:
            results = []
            for (topic, partition), _batch in zip(header["targets"], payloads, strict=True):
                tp = TopicPartition(topic, partition)
                if self.fail_first.get(tp, 0) > 0:
                    self.fail_first[tp] -= 1
                    results.append([-1, NotLeaderForPartitionError.errno, -1, "moving"])
                    continue
                base = self.logs.get(tp, 0)
                self.logs[tp] = base + 1  # one record per batch in these tests
                results.append([base, 0, 0, None])
            future.success(Response({"error": 0, "results": results}, []))


def make_sender(broker, clock, *, retries):
    acc = RecordAccumulator(
        batch_size=16384, max_request_size=1 << 20, linger_ms=0, buffer_memory=32 << 20, clock=clock
    )
    sender = Sender(
        broker,
        acc,
        ClusterMetadata(),
        acks=1,
        retries=retries,
        retry_backoff_ms=100,
        request_timeout_ms=30000,
        max_in_flight=5,
        metadata_max_age_ms=300000,
        on_metadata=lambda h: None,
        on_seal=lambda buf: None,
    )
    return acc, sender


def send(acc, buf, value: bytes):
    return buf.append((1000, b"key", value, None, RECORD_OVERHEAD + 3 + len(value)))


def test_a_retried_batch_is_not_overtaken_by_a_later_one():
    clock = FakeClock()
    broker = FakeBroker(fail_first={P0: 1})
    acc, sender = make_sender(broker, clock, retries=3)
    buf = acc.new_buffer(P0)
    futures = [send(acc, buf, b"first")]
    sender(clock.monotonic())  # request 1: the first batch (it will fail once)
    futures.append(send(acc, buf, b"second"))
    sender(clock.monotonic())  # the partition has a batch in flight: the second waits
    broker.answer_all()
    sender(clock.monotonic())  # the first batch waits for retry_backoff_ms: still muted
    broker.answer_all()
    for _ in range(5):
        clock.advance(0.1)
        sender(clock.monotonic())
        broker.answer_all()
    offsets = [f.get(0).offset for f in futures]
    assert offsets == [0, 1], "the second record overtook the retried first one"
    assert all(len(r) == 1 for r in broker.requests)


def test_a_partition_waiting_for_a_retry_does_not_hold_up_the_others():
    clock = FakeClock()
    broker = FakeBroker(fail_first={P0: 1})
    acc, sender = make_sender(broker, clock, retries=3)
    b0, b1 = acc.new_buffer(P0), acc.new_buffer(P1)
    f0 = send(acc, b0, b"p0")
    f1 = [send(acc, b1, b"p1-a")]
    sender(clock.monotonic())
    broker.answer_all()  # p0 fails (retry in 100 ms), p1 succeeds
    f1.append(send(acc, b1, b"p1-b"))
    sender(clock.monotonic())
    broker.answer_all()
    assert [f.get(0).offset for f in f1] == [0, 1]
    assert not f0.is_done
    clock.advance(0.1)
    sender(clock.monotonic())
    broker.answer_all()
    assert f0.get(0).offset == 0


def test_without_retries_batches_of_a_partition_are_pipelined():
    clock = FakeClock()
    broker = FakeBroker()
    acc, sender = make_sender(broker, clock, retries=0)
    buf = acc.new_buffer(P0)
    futures = []
    for value in (b"a", b"b", b"c"):
        futures.append(send(acc, buf, value))
        sender(clock.monotonic())
    assert len(broker.queue) == 3  # three requests in flight for one partition
    broker.answer_all()
    assert [f.get(0).offset for f in futures] == [0, 1, 2]
