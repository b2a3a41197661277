"""The sender's retry, split and settle paths without sockets: a fake transport holds
each request until the test answers it (or fails it), and a FakeClock decides when a
retry is due."""

from __future__ import annotations

import pytest

from labkit.client.accumulator import RECORD_OVERHEAD, RecordAccumulator
from labkit.client.future import Future
from labkit.client.metadata import ClusterMetadata
from labkit.client.sender import Sender
from labkit.client.structs import TopicPartition
from labkit.client.transport import Response
from labkit.errors import (
    KafkaConnectionError,
    KafkaError,
    MessageSizeTooLargeError,
    NotLeaderForPartitionError,
    RequestTimedOutError,
)
from labkit.protocol.records import decode_batch
from labkit.testing import FakeClock

TP = TopicPartition("t", 0)


class FakeTransport:
    """Keeps every request (api, header, payloads, future) until the test settles it."""

    def __init__(self):
        self.sent: list[tuple[str, dict, list, Future]] = []
        self.logs: dict[TopicPartition, int] = {}
        self.refuse_request = False

    def request(self, api, header, payloads=(), *, timeout_ms=None, idempotent=False, **kw):
        if self.refuse_request:
            raise RuntimeError("a bug in the transport")
        future = Future()
        self.sent.append((api, header, list(payloads), future))
        return future

    def produce_requests(self):
        return [r for r in self.sent if r[0] == "produce"]

    def pop(self):
        """The oldest unanswered produce request."""
        for index, item in enumerate(self.sent):
            if item[0] == "produce":
                return self.sent.pop(index)
        raise AssertionError("no produce request in flight")

    def accept(self, item=None, *, codes=None):
        """Answer a produce request: append each batch (or fail it with ``codes[i]``)."""
        _api, header, payloads, future = item or self.pop()
        results = []
        for index, ((topic, partition), batch) in enumerate(
            zip(header["targets"], payloads, strict=True)
        ):
            code = codes[index] if codes else 0
            if code:
                results.append([-1, code, -1, "refused"])
                continue
            tp = TopicPartition(topic, partition)
            base = self.logs.get(tp, 0)
            self.logs[tp] = base + len(decode_batch(batch).values)
            results.append([base, 0, 0, None])
        future.success(Response({"error": 0, "results": results}, []))
        return header, payloads


def make(clock, *, retries=0, acks=1, max_request_size=1 << 20, metadata_age_ms=300_000):
    transport = FakeTransport()
    acc = RecordAccumulator(
        batch_size=16384,
        max_request_size=max_request_size,
        linger_ms=0,
        buffer_memory=32 << 20,
        clock=clock,
    )
    cluster = ClusterMetadata()
    seen_metadata = []
    sender = Sender(
        transport,
        acc,
        cluster,
        acks=acks,
        retries=retries,
        retry_backoff_ms=100,
        request_timeout_ms=30000,
        max_in_flight=5,
        metadata_max_age_ms=metadata_age_ms,
        on_metadata=seen_metadata.append,
        on_seal=lambda buf: None,
    )
    return transport, acc, sender, seen_metadata


def append(buf, value: bytes):
    return buf.append((1000, None, value, None, RECORD_OVERHEAD + len(value)))


def records_in(payloads) -> list[bytes]:
    return [v for batch in payloads for v in decode_batch(batch).values]


# -- retries ---------------------------------------------------------------------------


def test_a_retriable_error_is_sent_again_only_after_retry_backoff():
    clock = FakeClock()
    transport, acc, sender, _ = make(clock, retries=2)
    future = append(acc.new_buffer(TP), b"a")
    sender(clock.monotonic())
    transport.accept(codes=[NotLeaderForPartitionError.errno])
    assert sender(clock.monotonic()) == pytest.approx(0.1)  # sleeps until the retry is due
    assert not transport.produce_requests()
    clock.advance(0.099)
    sender(clock.monotonic())
    assert not transport.produce_requests()
    clock.advance(0.001)
    sender(clock.monotonic())
    transport.accept()
    assert future.get(0).offset == 0


def test_retries_run_out_and_the_last_error_fails_the_records():
    clock = FakeClock()
    transport, acc, sender, _ = make(clock, retries=1)
    future = append(acc.new_buffer(TP), b"a")
    for _ in range(2):  # the first attempt and one retry
        sender(clock.monotonic())
        transport.accept(codes=[RequestTimedOutError.errno])
        clock.advance(0.1)
    sender(clock.monotonic())
    assert not transport.produce_requests()
    with pytest.raises(RequestTimedOutError):
        future.get(0)


def test_a_lost_connection_retries_the_batch_and_a_stale_leader_refreshes_metadata():
    clock = FakeClock()
    transport, acc, sender, _seen = make(clock, retries=3)
    acc_buf = acc.new_buffer(TP)
    sender._cluster.update(
        {"topics": [{"name": "t", "error": 0, "partitions": [{"partition": 0}]}]}, ["t"], 0.0
    )
    future = append(acc_buf, b"a")
    sender(clock.monotonic())
    transport.pop()[3].failure(KafkaConnectionError("the broker went away"))
    clock.advance(0.1)
    sender(clock.monotonic())
    transport.accept(codes=[NotLeaderForPartitionError.errno])  # invalid_metadata
    sender(clock.monotonic())  # a metadata request goes out at once
    assert [r[0] for r in transport.sent] == ["metadata"]
    clock.advance(0.1)
    sender(clock.monotonic())
    transport.accept()
    assert future.get(0).offset == 0
    assert future.get(0).offset == transport.logs[TP] - 1


def test_without_retries_an_error_fails_the_batch_at_once():
    clock = FakeClock()
    transport, acc, sender, _ = make(clock, retries=0)
    future = append(acc.new_buffer(TP), b"a")
    sender(clock.monotonic())
    transport.pop()[3].failure(KafkaConnectionError("the broker went away"))
    with pytest.raises(KafkaConnectionError):
        future.get(0)
    assert sender(clock.monotonic()) == pytest.approx(300.0)  # only the metadata refresh
    assert not transport.produce_requests()


def test_abort_fails_the_batches_waiting_for_a_retry():
    clock = FakeClock()
    transport, acc, sender, _ = make(clock, retries=3)
    future = append(acc.new_buffer(TP), b"a")
    sender(clock.monotonic())
    transport.accept(codes=[NotLeaderForPartitionError.errno])
    sender.abort(KafkaConnectionError("closed"))
    with pytest.raises(KafkaConnectionError, match="closed"):
        future.get(0)


# -- split -----------------------------------------------------------------------------


def test_a_batch_refused_as_too_large_is_split_until_it_fits_and_keeps_its_order():
    clock = FakeClock()
    transport, acc, sender, _ = make(clock)
    buf = acc.new_buffer(TP)
    values = [b"%02d" % i for i in range(8)]
    futures = [append(buf, v) for v in values]
    sender(clock.monotonic())
    transport.accept(codes=[MessageSizeTooLargeError.errno])  # 8 -> 4 + 4
    sent = []
    while True:
        sender(clock.monotonic())
        requests = transport.produce_requests()
        if not requests:
            break
        assert len(requests) == 1  # the parts of one batch go one request at a time
        payloads = requests[0][2]
        count = len(records_in(payloads))
        if count > 2:  # the broker takes at most two records per batch
            transport.accept(codes=[MessageSizeTooLargeError.errno])
        else:
            transport.accept()
            sent.extend(records_in(payloads))
    assert sent == values
    assert [f.get(0).offset for f in futures] == list(range(8))


def test_a_single_record_too_large_fails_naming_the_limits():
    clock = FakeClock()
    transport, acc, sender, _ = make(clock)
    future = append(acc.new_buffer(TP), b"x" * 100)
    sender(clock.monotonic())
    transport.accept(codes=[MessageSizeTooLargeError.errno])
    sender(clock.monotonic())
    assert not transport.produce_requests()
    with pytest.raises(MessageSizeTooLargeError, match=r"max\.message\.bytes") as raised:
        future.get(0)
    assert "max_request_size" in str(raised.value)


# -- settling answers --------------------------------------------------------------------


def test_an_error_for_the_whole_request_fails_every_batch_in_it():
    clock = FakeClock()
    transport, acc, sender, _ = make(clock)
    futures = [append(acc.new_buffer(TopicPartition("t", p)), b"v") for p in range(2)]
    sender(clock.monotonic())
    (_, header, _, future) = transport.pop()
    assert len(header["targets"]) == 2
    future.success(Response({"error": RequestTimedOutError.errno, "message": "slow"}, []))
    for f in futures:
        with pytest.raises(RequestTimedOutError):
            f.get(0)


def test_an_answer_missing_a_result_fails_that_batch_only():
    clock = FakeClock()
    transport, acc, sender, _ = make(clock)
    futures = [append(acc.new_buffer(TopicPartition("t", p)), b"v") for p in range(2)]
    sender(clock.monotonic())
    future = transport.pop()[3]
    future.success(Response({"error": 0, "results": [[7, 0, 0, None]]}, []))
    assert futures[0].get(0).offset == 7
    with pytest.raises(KafkaError, match="missing a result"):
        futures[1].get(0)


def test_acks_0_completes_the_batch_without_an_answer():
    clock = FakeClock()
    transport, acc, sender, _ = make(clock, acks=0)
    future = append(acc.new_buffer(TP), b"v")
    sender(clock.monotonic())
    _api, header, _, request = transport.pop()
    assert header["acks"] == 0
    request.success(None)  # what the transport does once an acks=0 request is sent
    assert future.get(0).offset == -1


def test_a_bug_while_settling_an_answer_fails_the_records_instead_of_losing_them():
    clock = FakeClock()
    transport, acc, sender, _ = make(clock)
    future = append(acc.new_buffer(TP), b"v")
    sender(clock.monotonic())
    request = transport.pop()[3]
    request.success(Response({"error": 0, "results": "not a list of rows"}, []))
    with pytest.raises(KafkaError, match="report this as a bug") as raised:
        future.get(0)
    assert raised.value.__cause__ is not None
    assert acc.incomplete == 0  # flush() does not wait for it


def test_a_bug_while_sending_fails_the_records_taken_for_the_request():
    clock = FakeClock()
    transport, acc, sender, _ = make(clock)
    future = append(acc.new_buffer(TP), b"v")
    transport.refuse_request = True
    assert sender(clock.monotonic()) == pytest.approx(0.1)
    with pytest.raises(KafkaError, match="were not written") as raised:
        future.get(0)
    assert isinstance(raised.value.__cause__, RuntimeError)


# -- metadata ----------------------------------------------------------------------------


def test_metadata_is_refreshed_every_metadata_max_age_and_after_a_failure_soon():
    clock = FakeClock()
    transport, _acc, sender, seen = make(clock, metadata_age_ms=1000)
    sender._cluster.update(
        {"topics": [{"name": "t", "error": 0, "partitions": [{"partition": 0}]}]}, ["t"], 0.0
    )
    assert sender(clock.monotonic()) == pytest.approx(1.0)  # the first refresh is due then
    clock.advance(1.0)
    sender(clock.monotonic())
    api, _header, _, future = transport.sent.pop()
    assert api == "metadata"
    future.failure(KafkaConnectionError("down"))
    wait = sender(clock.monotonic())
    assert 0.1 <= wait <= 0.2  # retry_backoff_ms plus jitter, not the full age
    clock.advance(wait)
    sender(clock.monotonic())
    api, _header, _, future = transport.sent.pop()
    answer = {"error": 0, "topics": [{"name": "t", "error": 0, "partitions": [{"partition": 0}]}]}
    future.success(Response(answer, []))
    assert seen == [answer]
