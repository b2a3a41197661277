"""The fetcher's parts that consumer groups rely on, without sockets: only the partitions
a member may read are fetched and returned, a rebalance can wake a waiting poll(), and a
partition whose buffer drains is fetched even while a long-polled fetch for the others
is waiting."""

from __future__ import annotations

import threading

from labkit.client.fetcher import Fetcher
from labkit.client.future import Future
from labkit.client.structs import TopicPartition
from labkit.client.subscription import SubscriptionState
from labkit.client.transport import Response
from labkit.protocol.records import encode_batch, with_base_offset

A, B = TopicPartition("t", 0), TopicPartition("t", 1)


class Transport:
    """Keeps each fetch's future so the test decides when (and how) it is answered."""

    def __init__(self):
        self.fetches: list[tuple[dict, Future]] = []

    def request(self, api, header, payloads=(), *, timeout_ms=None, idempotent=False):
        future = Future()
        self.fetches.append((header, future))
        return future

    def asked(self, index):
        return {(t, p): offset for t, p, offset, _ in self.fetches[index][0]["partitions"]}


def fetcher(transport, sub, max_poll_records=2):
    config = {
        "fetch_max_wait_ms": 500,
        "fetch_min_bytes": 1,
        "fetch_max_bytes": 1 << 20,
        "max_partition_fetch_bytes": 1 << 20,
        "check_crcs": True,
        "key_deserializer": None,
        "value_deserializer": None,
        "auto_offset_reset": "latest",
        "max_poll_records": max_poll_records,
        "request_timeout_ms": 30000,
    }
    return Fetcher(transport, sub, config)


def batch(base, count):
    return with_base_offset(
        encode_batch(list(range(count)), None, [b"%d" % (base + i) for i in range(count)]), base
    )


def answer(transport, index, rows):
    """Answer fetch ``index`` with ``[(tp, payload, highwater)]``."""
    _, future = transport.fetches[index]
    entries = [[tp.topic, tp.partition, 0, hw, 0] for tp, _, hw in rows]
    future.success(Response({"error": 0, "partitions": entries}, [p for _, p, _ in rows]))


def assigned(*tps, at=0):
    sub = SubscriptionState()
    sub.assign_from_user(list(tps))
    for tp in tps:
        sub.state(tp).seek(at)
    return sub


def test_only_allowed_partitions_are_fetched_and_returned():
    transport = Transport()
    sub = assigned(A, B)
    f = fetcher(transport, sub, max_poll_records=10)
    f.send_fetches(allowed={A})
    assert transport.asked(0) == {("t", 0): 0}
    answer(transport, 0, [(A, batch(0, 3), 3)])
    f._handle_partition(B, sub.state(B).epoch, 0, ["t", 1, 0, 3, 0], batch(0, 3))
    assert set(f.fetched_records(10, allowed={A})) == {A}
    assert f.fetched_records(10, allowed=set()) == {}, "B's records stay buffered"
    assert [r.offset for r in f.fetched_records(10)[B]] == [0, 1, 2]


def test_a_drained_partition_is_fetched_while_a_long_poll_for_the_others_waits():
    transport = Transport()
    sub = assigned(A, B)
    f = fetcher(transport, sub, max_poll_records=2)
    f.send_fetches()
    answer(transport, 0, [(A, batch(0, 6), 6), (B, b"", 0)])
    f.fetched_records(2)  # A has 4 left (>= 2): only B, caught up, is fetched again
    f.send_fetches()
    assert transport.asked(1) == {("t", 1): 0}
    f.fetched_records(2)
    f.fetched_records(2)  # A drains while the fetch for B is still waiting
    assert f.send_fetches()
    assert transport.asked(2) == {("t", 0): 6}, "A must not wait for B's long poll"
    f.send_fetches()
    assert len(transport.fetches) == 3, "a partition is in one fetch at a time"
    answer(transport, 2, [(A, batch(6, 2), 8)])
    assert [r.offset for r in f.fetched_records(2)[A]] == [6, 7]
    answer(transport, 1, [(B, batch(0, 1), 1)])  # 1 record < 2: B is prefetched at once
    assert transport.asked(3) == {("t", 1): 1}
    assert [r.offset for r in f.fetched_records(2)[B]] == [0]
    f.send_fetches()
    assert transport.asked(4) == {("t", 0): 8}


def test_interrupt_wakes_a_waiting_poll_once():
    f = fetcher(Transport(), assigned(A))
    threading.Timer(0.05, f.interrupt).start()
    assert f.wait(10.0) is True
    assert f.wait(0.01) is False, "the wake-up is used up"


def test_the_next_fetch_goes_out_when_an_answer_arrives_not_on_the_next_poll():
    """Prefetch (issue 19): a consumer that keeps up gets its next fetch sent by the
    I/O thread's callback, so a record needs one poll(), not two round trips through it."""
    transport = Transport()
    sub = assigned(A, B)
    f = fetcher(transport, sub, max_poll_records=500)
    f.send_fetches()
    answer(transport, 0, [(A, batch(0, 1), 1), (B, b"", 0)])  # what the I/O thread runs
    assert len(transport.fetches) == 2, "the next fetch must not wait for poll()"
    assert transport.asked(1) == {("t", 0): 1, ("t", 1): 0}
    assert f.prefetches == 1
    assert [r.offset for r in f.fetched_records(500)[A]] == [0]
    assert f.send_fetches() is True, "no second fetch"
    assert len(transport.fetches) == 2, "no second fetch"


def test_an_empty_answer_to_a_prefetched_fetch_does_not_wake_poll():
    transport = Transport()
    sub = assigned(A)
    f = fetcher(transport, sub, max_poll_records=500)
    f.send_fetches()
    answer(transport, 0, [(A, b"", 7)])  # the long poll ran out: nothing new
    assert transport.asked(1) == {("t", 0): 0}
    assert f.wait(0) is False, "an idle consumer's poll() must not wake per long poll"
    assert sub.state(A).highwater == 7


def test_no_prefetch_for_a_consumer_that_falls_behind():
    """A big answer, or one arriving while poll() has not decoded the last: poll()
    paces the fetching, as before (the buffer stays bounded)."""
    transport = Transport()
    sub = assigned(A, B)
    f = fetcher(transport, sub, max_poll_records=4)
    f.send_fetches(allowed={A})
    answer(transport, 0, [(A, batch(0, 5), 5)])  # 5 records >= max_poll_records
    assert len(transport.fetches) == 1
    f.send_fetches()  # B
    answer(transport, 1, [(B, batch(0, 1), 1)])  # small, but A's answer is not decoded yet
    assert len(transport.fetches) == 2
    assert f.prefetches == 0
    assert [r.offset for r in f.fetched_records(4)[A]] == [0, 1, 2, 3]
    f.send_fetches()  # A has 1 left (< 4) and B none: both go out from poll()
    assert transport.asked(2) == {("t", 0): 5, ("t", 1): 1}


def test_a_prefetched_answer_past_a_poison_record_is_dropped():
    transport = Transport()
    sub = assigned(A)
    f = fetcher(transport, sub, max_poll_records=500)

    def value_deserializer(raw):
        if raw == b"1":
            raise ValueError("poison")
        return raw

    f._value_deserializer = value_deserializer
    f.send_fetches()
    answer(transport, 0, [(A, batch(0, 3), 3)])  # prefetched at 3, before decoding
    assert transport.asked(1) == {("t", 0): 3}
    assert [r.offset for r in f.fetched_records(500)[A]] == [0]
    answer(transport, 1, [(A, batch(3, 2), 5)])  # records after the poison record
    try:
        f.fetched_records(500)
    except ValueError:
        pass
    else:
        raise AssertionError("the poison record must raise")
    assert f.fetched_records(500) == {}, "records past the poison record must not leak"
    f.send_fetches()
    assert transport.asked(2) == {("t", 0): 1}, "refetched at the poison record"


def test_an_empty_prefetched_answer_past_a_poison_record_is_not_fetched_again():
    """The poison record is raised while a prefetch past it is in flight: its empty
    answer must reach poll(), which fetches the poison record again (not a long poll
    past it, forever)."""
    transport = Transport()
    sub = assigned(A)
    f = fetcher(transport, sub, max_poll_records=500)
    f._value_deserializer = lambda raw: int(raw) if raw != b"1" else int("poison")
    f.send_fetches()
    answer(transport, 0, [(A, batch(0, 3), 3)])  # prefetched at 3, before decoding
    assert [r.offset for r in f.fetched_records(500)[A]] == [0]
    try:
        f.fetched_records(500)
    except ValueError:
        pass
    else:
        raise AssertionError("the poison record must raise")
    answer(transport, 1, [(A, b"", 3)])  # nothing new after 3
    assert len(transport.fetches) == 2, "no long poll past the poison record"
    assert f.fetched_records(500) == {}
    f.send_fetches()
    assert transport.asked(2) == {("t", 0): 1}, "the poison record is fetched again"


def test_a_partition_revoked_and_assigned_again_during_a_prefetch_is_fetched_again():
    """Issue 19's prefetch after a rebalance: the prefetch for the old assignment keeps
    the partition in flight until its answer comes; that answer is dropped (old epoch)
    and the partition's next fetch starts at its new position -- no stale marker."""
    transport = Transport()
    sub = assigned(A)
    f = fetcher(transport, sub, max_poll_records=500)
    f.send_fetches()
    answer(transport, 0, [(A, batch(0, 1), 1)])  # prefetched at 1, for the old epoch
    assert transport.asked(1) == {("t", 0): 1}
    sub.assign_from_user([])  # revoked ...
    sub.assign_from_user([A])  # ... and assigned again, at the committed offset 0
    sub.state(A).seek(0)
    assert f.fetched_records(500) == {}, "records of the old assignment are dropped"
    f.send_fetches()
    assert len(transport.fetches) == 2, "one fetch of a partition at a time"
    answer(transport, 1, [(A, batch(1, 1), 2)])  # the old prefetch's answer
    assert len(transport.fetches) == 2, "an answer for the old epoch is not prefetched on"
    assert f.fetched_records(500) == {}
    f.send_fetches()
    assert transport.asked(2) == {("t", 0): 0}, "fetched again from the new position"
    answer(transport, 2, [(A, batch(0, 2), 2)])
    assert [r.offset for r in f.fetched_records(500)[A]] == [0, 1]


def test_a_seek_while_a_prefetch_is_in_flight_fetches_from_the_new_position():
    transport = Transport()
    sub = assigned(A)
    f = fetcher(transport, sub, max_poll_records=500)
    f.send_fetches()
    answer(transport, 0, [(A, batch(0, 1), 1)])  # prefetched at 1
    sub.state(A).seek(10)
    f.forget(A)
    assert f.fetched_records(500) == {}
    answer(transport, 1, [(A, batch(1, 1), 2)])  # stale: not prefetched on, dropped
    assert len(transport.fetches) == 2
    assert f.fetched_records(500) == {}
    f.send_fetches()
    assert transport.asked(2) == {("t", 0): 10}
