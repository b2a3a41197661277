"""OffsetLookup (labkit/client/positions.py) in a cluster, without sockets: a fake
transport plays three brokers that each answer list_offsets for the partitions they lead
(NOT_LEADER_OR_FOLLOWER for the others, as labkit's brokers do) and metadata with the
leaders; the real ``Routes`` routes the requests, a FakeClock times the backoff."""

from __future__ import annotations

import pytest

from labkit.client.positions import OffsetLookup
from labkit.client.routing import ANY_BROKER, Routes
from labkit.client.structs import TopicPartition
from labkit.client.transport import Response
from labkit.errors import (
    KafkaConnectionError,
    LeaderNotAvailableError,
    NotLeaderForPartitionError,
    UnknownTopicOrPartitionError,
)
from labkit.testing import FakeClock

A, B, C = (TopicPartition("t", p) for p in range(3))
LOG_END = {A: 5, B: 7, C: 9}


class Brokers:
    """Brokers 1-3, broker 1 the bootstrap one; ``leaders`` may change between requests."""

    def __init__(self, leaders, brokers=(1, 2, 3)):
        self.leaders = dict(leaders)
        self.brokers = brokers
        self.clock = FakeClock()
        self.request_timeout = 30.0
        self.routes = Routes(1)
        self.asked: list[tuple] = []  # (api, node)
        self.down: set[int] = set()

    def call(self, api, header, *, timeout_ms=None, node=ANY_BROKER):
        at = 1 if node is ANY_BROKER else node
        self.asked.append((api, node))
        if at in self.down:
            raise KafkaConnectionError(f"broker {at} is gone")
        if api == "metadata":
            answer = {
                "brokers": [{"node_id": b, "zmq_port": 9000 + b} for b in self.brokers],
                "topics": [
                    {
                        "name": "t",
                        "error": 0,
                        "partitions": [
                            {"partition": tp.partition, "leader": leader}
                            for tp, leader in sorted(self.leaders.items())
                        ],
                    }
                ],
            }
            self.routes.update(answer)  # as the transport does with every metadata answer
            return Response(answer, [])
        assert api == "list_offsets"
        rows = []
        for topic, partition, _ts in header["partitions"]:
            tp = TopicPartition(topic, partition)
            leader = self.leaders.get(tp)
            if leader is None:
                rows.append([topic, partition, UnknownTopicOrPartitionError.errno, -1, -1])
            elif leader == -1:
                rows.append([topic, partition, LeaderNotAvailableError.errno, -1, -1])
            elif leader != at:
                rows.append([topic, partition, NotLeaderForPartitionError.errno, -1, -1])
            else:
                rows.append([topic, partition, 0, LOG_END[tp], -1])
        return Response({"error": 0, "partitions": rows}, [])


def lookup_of(brokers: Brokers) -> OffsetLookup:
    return OffsetLookup(brokers, retry_backoff_ms=100, sleep=brokers.clock.advance)


def latest(*tps):
    return {tp: OffsetLookup.LATEST for tp in tps}


def test_before_any_metadata_each_partition_is_asked_of_its_leader():
    brokers = Brokers({A: 1, B: 2, C: 3})
    found = lookup_of(brokers).lookup(latest(A, B, C))
    assert found == {tp: (end, -1) for tp, end in LOG_END.items()}
    # the bootstrap broker answers what it leads; its NOT_LEADER answers reveal a cluster
    assert brokers.asked[:2] == [("list_offsets", ANY_BROKER), ("metadata", ANY_BROKER)]
    assert sorted(brokers.asked[2:], key=str) == [("list_offsets", 2), ("list_offsets", 3)]


def test_with_leaders_known_no_metadata_is_asked():
    brokers = Brokers({A: 1, B: 2, C: 3})
    lookup = lookup_of(brokers)
    lookup.lookup(latest(A, B, C))
    brokers.asked.clear()
    assert lookup.lookup(latest(B, C)) == {B: (7, -1), C: (9, -1)}
    assert sorted(brokers.asked, key=str) == [("list_offsets", 2), ("list_offsets", 3)]


def test_one_broker_is_asked_once_and_nothing_else():
    brokers = Brokers({A: 1, B: 1, C: 1}, brokers=(1,))
    assert lookup_of(brokers).lookup(latest(A, B, C)) == {
        tp: (end, -1) for tp, end in LOG_END.items()
    }
    assert brokers.asked == [("list_offsets", ANY_BROKER)]


def test_a_moved_leader_and_a_leader_being_elected_are_asked_again_after_the_backoff():
    brokers = Brokers({A: 1, B: 2, C: -1})
    lookup = lookup_of(brokers)
    lookup.lookup(latest(A, B))
    moves = iter([{B: 3, C: -1}, {C: 2}])  # B moved to 3; C gets a leader one round later

    def advance(seconds):
        brokers.clock.advance(seconds)
        brokers.leaders.update(next(moves, {}))

    lookup._sleep = advance
    start = brokers.clock.monotonic()
    assert lookup.lookup(latest(A, B, C)) == {tp: (end, -1) for tp, end in LOG_END.items()}
    assert brokers.clock.monotonic() - start == pytest.approx(0.2)  # two backoffs


def test_a_leader_that_never_comes_raises_its_error_at_the_timeout():
    brokers = Brokers({A: 1, B: -1, C: 3})
    with pytest.raises(LeaderNotAvailableError, match="unavailable-partitions"):
        lookup_of(brokers).lookup(latest(A, B, C), timeout_ms=1000)
    retries = [a for a in brokers.asked if a[0] == "metadata"]
    assert 8 <= len(retries) <= 11  # about one per retry_backoff_ms over the second


def test_a_gone_leader_is_left_for_the_one_metadata_names_next():
    brokers = Brokers({A: 1, B: 2, C: 3})
    lookup = lookup_of(brokers)
    lookup.lookup(latest(A, B, C))
    brokers.down.add(3)
    brokers.leaders[C] = 2  # its new leader

    assert lookup.lookup(latest(C)) == {C: (9, -1)}
    assert brokers.asked[-3:] == [
        ("list_offsets", 3),
        ("metadata", ANY_BROKER),
        ("list_offsets", 2),
    ]


def test_an_unknown_partition_still_says_so_at_once():
    brokers = Brokers({A: 1, B: 2})
    with pytest.raises(
        UnknownTopicOrPartitionError, match="partition 2 of topic 't' does not exist"
    ):
        lookup_of(brokers).lookup(latest(A, B, C))
