"""The producer's sender with enable_idempotence, without sockets: a fake broker that
gives producer ids and checks sequences with the broker's own table
(labkit/log/producer_state.py), and can lose an answer after appending."""

from __future__ import annotations

from labkit.client.accumulator import RECORD_OVERHEAD, RecordAccumulator
from labkit.client.future import Future
from labkit.client.metadata import ClusterMetadata
from labkit.client.sender import Sender
from labkit.client.structs import TopicPartition
from labkit.client.transport import Response
from labkit.errors import (
    KafkaConnectionError,
    NotLeaderForPartitionError,
    OutOfOrderSequenceNumberError,
    UnsupportedVersionError,
)
from labkit.log.producer_state import ProducerStateTable
from labkit.protocol.records import decode_batch, read_header
from labkit.testing import FakeClock

P0 = TopicPartition("t", 0)


class IdempotentBroker:
    """Answers init_producer_id and produce; ``lose_answers`` produce answers are lost
    (a KafkaConnectionError) after the batches were appended."""

    def __init__(self, id_error: int = 0):
        self.queue: list = []
        self.log: list[bytes] = []
        self.table = ProducerStateTable()
        self.next_id = 1000
        self.id_error = id_error
        self.lose_answers = 0
        self.refuse_next = 0  # batches answered NOT_LEADER (retriable), nothing appended
        self.rows: list = []

    def request(self, api, header, payloads=(), *, timeout_ms=None, idempotent=False, **_kw):
        future = Future()
        self.queue.append((api, header, list(payloads), future))
        return future

    def answer_all(self) -> None:
        queue, self.queue = self.queue, []
        for api, header, payloads, future in queue:
            if api == "init_producer_id":
                if self.id_error:
                    future.success(Response({"error": self.id_error, "message": "no"}, []))
                    continue
                self.next_id += 1
                future.success(
                    Response({"error": 0, "producer_id": self.next_id, "producer_epoch": 0}, [])
                )
                continue
            results = [
                self._append(row, batch)
                for row, batch in zip(header["producers"], payloads, strict=True)
            ]
            if self.lose_answers:
                self.lose_answers -= 1
                future.failure(KafkaConnectionError("lost the connection"))
            else:
                future.success(Response({"error": 0, "results": results}, []))

    def _append(self, row, batch):
        self.rows.append(row)
        if self.refuse_next:
            self.refuse_next -= 1
            return [-1, NotLeaderForPartitionError.errno, -1, "moving"]
        pid, epoch, first = row
        last = first + read_header(batch).last_offset_delta
        try:
            duplicate = self.table.check(pid, epoch, first, last, "t-0")
        except OutOfOrderSequenceNumberError as exc:
            return [-1, exc.errno, -1, str(exc)]
        if duplicate is not None:
            return [duplicate, 0, 0, None]
        base = len(self.log)
        self.log += decode_batch(batch).values
        self.table.record(pid, epoch, first, last, base, 0)
        return [base, 0, 0, None]


def make_sender(broker, clock, delivery_timeout_ms=120_000):
    acc = RecordAccumulator(
        batch_size=16384, max_request_size=1 << 20, linger_ms=0, buffer_memory=32 << 20, clock=clock
    )
    sender = Sender(
        broker,
        acc,
        ClusterMetadata(),
        acks=-1,
        retries=float("inf"),
        retry_backoff_ms=100,
        request_timeout_ms=30000,
        max_in_flight=5,
        metadata_max_age_ms=300000,
        on_metadata=lambda h: None,
        on_seal=lambda buf: None,
        idempotence=True,
        delivery_timeout_ms=delivery_timeout_ms,
    )
    return acc, sender


def send(acc, buf, value: bytes):
    return buf.append((1000, None, value, None, RECORD_OVERHEAD + len(value)))


def run(sender, broker, clock, turns=10):
    for _ in range(turns):
        sender(clock.monotonic())
        broker.answer_all()
        clock.advance(0.1)


def test_a_batch_whose_answer_was_lost_is_resent_with_its_sequence_and_stored_once():
    clock = FakeClock()
    broker = IdempotentBroker()
    acc, sender = make_sender(broker, clock)
    buf = acc.new_buffer(P0)
    first = [send(acc, buf, b"a"), send(acc, buf, b"b")]
    sender(clock.monotonic())  # no producer id yet: it asks for one, sends nothing
    assert [api for api, *_ in broker.queue] == ["init_producer_id"]
    broker.answer_all()
    broker.lose_answers = 1
    run(sender, broker, clock, 1)  # appended, but the answer is lost
    second = send(acc, buf, b"c")
    run(sender, broker, clock)
    assert broker.log == [b"a", b"b", b"c"]  # the resent batch was not appended again
    assert [f.get(0).offset for f in first] == [0, 1]
    assert second.get(0).offset == 2
    assert broker.rows == [[1001, 0, 0], [1001, 0, 0], [1001, 0, 2]]


def test_a_broker_without_producer_ids_fails_the_records_saying_so():
    clock = FakeClock()
    broker = IdempotentBroker(id_error=UnsupportedVersionError.errno)
    acc, sender = make_sender(broker, clock)
    future = send(acc, acc.new_buffer(P0), b"a")
    run(sender, broker, clock, 3)
    assert future.is_done
    assert "needs producer ids" in str(future.exception)
    assert broker.log == []


def test_batches_behind_a_failed_one_are_pipelined_then_resent_in_order():
    clock = FakeClock()
    broker = IdempotentBroker()
    acc, sender = make_sender(broker, clock)
    buf = acc.new_buffer(P0)
    run(sender, broker, clock, 1)  # the producer id
    futures = [send(acc, buf, b"a")]
    sender(clock.monotonic())
    futures.append(send(acc, buf, b"b"))
    sender(clock.monotonic())
    assert len(broker.queue) == 1  # nothing overtakes the first batch of a producer id
    run(sender, broker, clock, 1)  # "a" answered
    sender(clock.monotonic())
    assert len(broker.queue) == 1  # "b" is on its way
    for value in (b"c", b"d"):  # now three requests in flight for one partition
        futures.append(send(acc, buf, value))
        sender(clock.monotonic())
    assert len(broker.queue) == 3
    broker.refuse_next = 1  # "b" fails (retriable): "c" and "d" are then out of order
    run(sender, broker, clock)
    assert broker.log == [b"a", b"b", b"c", b"d"]
    assert [f.get(0).offset for f in futures] == [0, 1, 2, 3]
    assert [row[2] for row in broker.rows] == [0, 1, 2, 3, 1, 2, 3]  # the same sequences


def test_unlimited_retries_end_at_delivery_timeout_ms():
    clock = FakeClock()
    broker = IdempotentBroker()
    acc, sender = make_sender(broker, clock, delivery_timeout_ms=2000)
    future = send(acc, acc.new_buffer(P0), b"a")
    broker.refuse_next = 10**9  # NOT_LEADER for ever (retriable)
    run(sender, broker, clock, 15)  # 1.5 s: still retrying
    assert not future.is_done
    run(sender, broker, clock, 10)
    assert future.is_done
    assert isinstance(future.exception, NotLeaderForPartitionError)
