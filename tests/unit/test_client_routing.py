"""Following partition leaders without sockets: the routing table (client/routing.py),
the per-broker connections (client/connections.py) with stand-in connections, the
producer's sender and the consumer's fetcher over a fake cluster of three brokers, with
the injectable clock."""

from __future__ import annotations

from labkit.client.accumulator import RECORD_OVERHEAD, RecordAccumulator
from labkit.client.connections import Connections
from labkit.client.fetcher import Fetcher
from labkit.client.future import Future
from labkit.client.metadata import ClusterMetadata
from labkit.client.routing import ANY_BROKER, Backoff, Routes
from labkit.client.sender import Sender
from labkit.client.structs import TopicPartition
from labkit.client.subscription import SubscriptionState
from labkit.client.transport import Response
from labkit.errors import (
    KafkaConnectionError,
    KafkaTimeoutError,
    NotLeaderForPartitionError,
    OutOfOrderSequenceNumberError,
)
from labkit.testing import FakeClock

P0, P1, P2 = TopicPartition("t", 0), TopicPartition("t", 1), TopicPartition("t", 2)


def metadata(leaders: dict[int, int], brokers=(1, 2, 3)) -> dict:
    return {
        "error": 0,
        "brokers": [
            {"node_id": b, "host": "h", "port": 9000 + b, "zmq_host": "z", "zmq_port": 9100 + b}
            for b in brokers
        ],
        "topics": [
            {
                "name": "t",
                "error": 0,
                "partitions": [
                    {"partition": p, "leader": leader, "replicas": list(brokers), "isr": []}
                    for p, leader in leaders.items()
                ],
            }
        ],
    }


# -- the routing table ------------------------------------------------------------------


def test_one_broker_routes_nothing():
    routes = Routes(bootstrap_node=0)
    routes.update(metadata({0: 0, 1: 0}, brokers=(0,)))
    assert not routes.multi
    assert routes.split([P0, P1], lambda tp: tp) == [(ANY_BROKER, [P0, P1])]


def test_items_are_grouped_by_leader_in_their_order():
    routes = Routes(bootstrap_node=1)
    routes.update(metadata({0: 1, 1: 2, 2: 1}))
    assert routes.multi
    items = [(P0, "a"), (P1, "b"), (P2, "c"), (P0, "d")]
    groups = dict(routes.split(items, lambda item: item[0]))
    assert groups == {1: [(P0, "a"), (P2, "c"), (P0, "d")], 2: [(P1, "b")]}
    assert routes.endpoint(2) == "z:9102"


def test_a_partition_without_a_leader_goes_to_any_broker_until_metadata_names_one():
    routes = Routes(bootstrap_node=1)
    routes.update(metadata({0: 1, 1: 2}))
    routes.update(metadata({0: 1, 1: -1}, brokers=(1, 3)))  # broker 2 died: an election runs
    assert routes.leader("t", 1) is ANY_BROKER
    assert routes.endpoint(2) is None
    routes.update(metadata({0: 1, 1: 3}, brokers=(1, 3)))
    assert routes.leader("t", 1) == 3


def test_a_topic_answered_with_an_error_keeps_no_leaders():
    routes = Routes(bootstrap_node=1)
    routes.update(metadata({0: 2}))
    gone = metadata({})
    gone["topics"][0]["error"] = 3
    routes.update(gone)
    assert routes.leader("t", 0) is ANY_BROKER


def test_backoff_holds_partitions_for_retry_backoff_ms():
    clock = FakeClock()
    held = Backoff(100)
    assert not held
    assert held.next_in(clock.monotonic()) is None
    held.hold([P0], clock.monotonic())
    assert held.held(P0, clock.monotonic())
    assert not held.held(P1, clock.monotonic())
    clock.advance(0.06)
    assert abs(held.next_in(clock.monotonic()) - 0.04) < 1e-6
    assert held.held(P0, clock.monotonic())
    clock.advance(0.05)
    assert not held.held(P0, clock.monotonic())
    assert not held  # forgotten once due


# -- one connection per broker -------------------------------------------------------------


class StandIn:
    def __init__(self, host, port, state="ready"):
        self.host, self.port, self.state = host, port, state
        self.fail_fast = False


def test_connections_open_lazily_and_the_bootstrap_broker_keeps_its_own():
    routes = Routes(bootstrap_node=1)
    bootstrap = StandIn("boot", 1)
    opened = []

    def open_connection(host, port):
        opened.append((host, port))
        return StandIn(host, port)

    links = Connections(bootstrap, routes, open_connection)
    assert links.for_node(2) is bootstrap  # one broker known: no routing at all
    routes.update(metadata({0: 1, 1: 2}))
    assert links.for_node(1) is bootstrap
    second = links.for_node(2)
    assert links.for_node(2) is second
    assert opened == [("z", 9102)]
    assert second.fail_fast  # a dead leader fails its requests at once
    assert bootstrap.fail_fast
    assert links.all == [bootstrap, second]
    assert links.for_node(7) is None  # no endpoint: the caller refreshes metadata
    bootstrap.state = "down"
    assert links.for_node(ANY_BROKER) is second  # metadata is asked of a live broker
    second.state = "down"
    third = links.for_node(ANY_BROKER)  # none is up: one more broker is tried
    assert (third.host, third.port) == ("z", 9103)


def test_a_cluster_down_to_one_live_broker_still_routes():
    routes = Routes(bootstrap_node=1)
    routes.update(metadata({0: 1, 1: 2}))
    routes.update(metadata({0: 3, 1: 3}, brokers=(3,)))
    assert routes.multi
    assert routes.leader("t", 0) == 3


# -- the producer over three brokers ---------------------------------------------------


class FakeCluster:
    """Stands in for the transport of a cluster: answers produce requests as the broker
    named by ``node`` would (NOT_LEADER_OR_FOLLOWER when it does not lead the partition)."""

    def __init__(self, leaders: dict[int, int]):
        self.routes = Routes(bootstrap_node=1)
        self.leaders = dict(leaders)
        self.routes.update(metadata(self.leaders))
        self.queue: list = []
        self.sent: list[tuple[object, list[TopicPartition]]] = []
        self.dead: set[int] = set()
        self.logs: dict[TopicPartition, list[bytes]] = {}

    def request(self, api, header, payloads=(), **kwargs):
        future = Future()
        if api == "metadata":
            future.success(Response(metadata(self.leaders), []))
            self.routes.update(metadata(self.leaders))  # as InFlight.dispatch does (transport)
            return future
        node = kwargs.get("node", ANY_BROKER)
        tps = [TopicPartition(t, p) for t, p in header["targets"]]
        self.sent.append((node, tps))
        self.queue.append((node, tps, list(payloads), future))
        return future

    def answer_all(self) -> None:
        queue, self.queue = self.queue, []
        for node, tps, payloads, future in queue:
            if node in self.dead:
                future.failure(KafkaConnectionError(f"broker {node} is gone"))
                continue
            results = []
            for tp, data in zip(tps, payloads, strict=True):
                if self.leaders[tp.partition] != node:
                    results.append([-1, NotLeaderForPartitionError.errno, -1, "not the leader"])
                    continue
                log = self.logs.setdefault(tp, [])
                results.append([len(log), 0, 0, None])
                log.append(bytes(data))
            future.success(Response({"error": 0, "results": results}, []))


def make_sender(transport, clock):
    acc = RecordAccumulator(
        batch_size=16384, max_request_size=1 << 20, linger_ms=0, buffer_memory=32 << 20, clock=clock
    )
    cluster = ClusterMetadata()
    cluster.update(metadata(transport.leaders), ["t"])
    sender = Sender(
        transport,
        acc,
        cluster,
        acks=-1,
        retries=5,
        retry_backoff_ms=100,
        request_timeout_ms=30000,
        max_in_flight=5,
        metadata_max_age_ms=300000,
        on_metadata=lambda h: None,
        on_seal=lambda buf: None,
    )
    return acc, sender


def send(acc, tp, value: bytes):
    return acc.new_buffer(tp).append((1000, b"k", value, None, RECORD_OVERHEAD + 1 + len(value)))


def test_batches_go_to_their_leaders_in_one_request_each_all_in_flight():
    clock = FakeClock()
    transport = FakeCluster({0: 1, 1: 2, 2: 3})
    acc, sender = make_sender(transport, clock)
    futures = [send(acc, tp, b"x") for tp in (P0, P1, P2)]
    sender(clock.monotonic())
    assert sorted(transport.sent) == [(1, [P0]), (2, [P1]), (3, [P2])]
    transport.answer_all()
    assert all(f.get(0).offset == 0 for f in futures)


def test_a_dead_leader_s_batch_is_retried_at_the_new_leader_after_retry_backoff_ms():
    clock = FakeClock()
    transport = FakeCluster({0: 1, 1: 2})
    acc, sender = make_sender(transport, clock)
    future = send(acc, P1, b"kept")
    transport.dead.add(2)
    sender(clock.monotonic())
    transport.answer_all()  # the connection to broker 2 is lost: retriable, stale metadata
    transport.leaders[1] = 3  # the controller elected broker 3
    sender(clock.monotonic())  # asks metadata; the retry waits for retry_backoff_ms
    assert transport.sent == [(2, [P1])]
    clock.advance(0.1)
    sender(clock.monotonic())
    transport.answer_all()
    assert transport.sent[-1] == (3, [P1])
    assert future.get(0).offset == 0
    assert list(transport.logs) == [P1]


def test_not_leader_or_follower_moves_the_batch_to_the_leader_metadata_names():
    clock = FakeClock()
    transport = FakeCluster({0: 1})
    acc, sender = make_sender(transport, clock)
    transport.leaders[0] = 2  # moved before the producer heard of it
    future = send(acc, P0, b"moved")
    sender(clock.monotonic())
    transport.answer_all()  # broker 1 answers NOT_LEADER_OR_FOLLOWER
    assert not future.is_done
    for _ in range(3):
        clock.advance(0.1)
        sender(clock.monotonic())
        transport.answer_all()
    assert [node for node, _ in transport.sent] == [1, 2]
    assert future.get(0).offset == 0


# -- the consumer's fetches over three brokers ---------------------------------------------


class FetchCluster:
    """Stands in for a cluster's transport: records each fetch and the broker it is for."""

    def __init__(self, leaders: dict[int, int], clock):
        self.routes = Routes(bootstrap_node=1)
        self.routes.update(metadata(leaders))
        self.clock = clock
        self.fetches: list[tuple[object, list, Future]] = []

    def request(self, api, header, payloads=(), **kwargs):
        future = Future()
        self.fetches.append((kwargs.get("node", ANY_BROKER), header["partitions"], future))
        return future


def fetcher_over(transport):
    config = {
        "fetch_max_wait_ms": 500,
        "fetch_min_bytes": 1,
        "fetch_max_bytes": 1 << 20,
        "max_partition_fetch_bytes": 1 << 20,
        "check_crcs": True,
        "key_deserializer": None,
        "value_deserializer": None,
        "auto_offset_reset": "earliest",
        "max_poll_records": 500,
        "request_timeout_ms": 30000,
        "retry_backoff_ms": 100,
    }
    sub = SubscriptionState()
    sub.assign_from_user([P0, P1, P2])
    for tp in (P0, P1, P2):
        sub.assignment[tp].seek(7)
    return Fetcher(transport, sub, config)


def test_a_fetch_goes_to_each_leader_and_a_leader_error_holds_the_partition_back():
    clock = FakeClock()
    transport = FetchCluster({0: 1, 1: 2, 2: 1}, clock)
    fetcher = fetcher_over(transport)
    fetcher.send_fetches()
    sent = {node: [row[:3] for row in parts] for node, parts, _ in transport.fetches}
    assert sent == {1: [["t", 0, 7], ["t", 2, 7]], 2: [["t", 1, 7]]}
    to_broker_2 = next(f for node, _, f in transport.fetches if node == 2)
    to_broker_2.failure(KafkaConnectionError("broker 2 is gone"))
    fetcher.fetched_records(500, True, None)
    assert fetcher.needs_metadata
    transport.fetches.clear()
    fetcher.send_fetches()
    assert transport.fetches == []  # P1 waits retry_backoff_ms; P0, P2 are still in flight
    assert abs(fetcher.retry_in() - 0.1) < 1e-6
    transport.routes.update(metadata({0: 1, 1: 3, 2: 1}, brokers=(1, 3)))
    clock.advance(0.11)
    fetcher.send_fetches()
    assert [(node, parts[0][:3]) for node, parts, _ in transport.fetches] == [(3, ["t", 1, 7])]


class IdempotentCluster(FakeCluster):
    """Brokers that check producer sequences against one replicated log per partition;
    requests to a ``stopped`` broker stay unanswered until the test times them out."""

    def __init__(self, leaders):
        super().__init__(leaders)
        self.expected: dict[TopicPartition, int] = {}
        self.stopped: set[int] = set()

    def request(self, api, header, payloads=(), **kwargs):
        if api == "init_producer_id":
            return Future().success(Response({"error": 0, "producer_id": 7}, []))
        future = super().request(api, header, payloads, **kwargs)
        if api == "produce":
            self.queue[-1] = (*self.queue[-1], header["producers"])
        return future

    def answer_all(self) -> None:
        queue, self.queue = self.queue, []
        for node, tps, _payloads, future, producers in queue:
            if node in self.stopped:
                self.queue.append((node, tps, _payloads, future, producers))
                continue
            results = []
            for tp, (_pid, _epoch, sequence) in zip(tps, producers, strict=True):
                expected = self.expected.get(tp, 0)
                if sequence > expected:
                    results.append([-1, OutOfOrderSequenceNumberError.errno, -1, "gap"])
                    continue
                if sequence == expected:
                    self.expected[tp] = expected + 1  # one record per batch here
                results.append([sequence, 0, 0, None])
            future.success(Response({"error": 0, "results": results}, []))

    def time_out(self, node: int) -> None:
        for _node, _tps, _payloads, future, _producers in [q for q in self.queue if q[0] == node]:
            error = KafkaTimeoutError("no answer")
            error.invalid_metadata = True  # as InFlight.expire marks a routed request
            future.failure(error)
        self.queue = [q for q in self.queue if q[0] != node]


def test_a_batch_at_the_new_leader_waits_for_an_earlier_one_unanswered_at_the_old():
    clock = FakeClock()
    transport = IdempotentCluster({0: 2})
    acc = RecordAccumulator(
        batch_size=16384, max_request_size=1 << 20, linger_ms=0, buffer_memory=32 << 20, clock=clock
    )
    cluster = ClusterMetadata()
    cluster.update(metadata(transport.leaders), ["t"])
    sender = Sender(
        transport,
        acc,
        cluster,
        acks=-1,
        retries=float("inf"),
        retry_backoff_ms=100,
        request_timeout_ms=30000,
        max_in_flight=5,
        metadata_max_age_ms=300000,
        idempotence=True,
        on_metadata=lambda h: None,
        on_seal=lambda buf: None,
    )
    sender(clock.monotonic())  # the producer id
    buf = acc.new_buffer(P0)
    first = buf.append((1000, b"k", b"0", None, RECORD_OVERHEAD + 2))
    sender(clock.monotonic())
    transport.answer_all()  # sequence 0 acknowledged by broker 2
    transport.stopped.add(2)  # SIGSTOP: broker 2 keeps the connection, answers nothing
    late = buf.append((1000, b"k", b"1", None, RECORD_OVERHEAD + 2))
    sender(clock.monotonic())  # sequence 1 goes to broker 2 and hangs there
    transport.leaders[0] = 3
    transport.routes.update(metadata(transport.leaders))  # broker 3 leads now
    after = buf.append((1000, b"k", b"2", None, RECORD_OVERHEAD + 2))
    sender(clock.monotonic())  # sequence 2 goes to broker 3, which expects 1
    transport.answer_all()
    assert not after.is_done, "a batch behind one unanswered at the old leader failed"
    transport.time_out(2)  # sequence 1's request times out: retried at broker 3
    for _ in range(5):
        clock.advance(0.1)
        sender(clock.monotonic())
        transport.answer_all()
    assert [f.get(0).offset for f in (first, late, after)] == [0, 1, 2]
