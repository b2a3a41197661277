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
    answer(transport, 1, [(B, batch(0, 1), 1)])
    assert [r.offset for r in f.fetched_records(2)[B]] == [0]
    f.send_fetches()
    assert transport.asked(3) == {("t", 0): 8, ("t", 1): 1}


def test_interrupt_wakes_a_waiting_poll_once():
    f = fetcher(Transport(), assigned(A))
    threading.Timer(0.05, f.interrupt).start()
    assert f.wait(10.0) is True
    assert f.wait(0.01) is False, "the wake-up is used up"
