"""Following the group coordinator without sockets (client/group_route.py): a fake
cluster of three brokers in front of the real GroupService, where only the coordinator's
node answers group requests and the others say NOT_COORDINATOR (16), with a FakeClock."""

from __future__ import annotations

import json

import pytest

from labkit.broker.group_api import GroupService
from labkit.client import config as cfg
from labkit.client.consumer import KafkaConsumer
from labkit.client.consumer_coordinator import ConsumerCoordinator
from labkit.client.future import Future
from labkit.client.group_admin import GroupAdminMixin, NoError
from labkit.client.group_route import GroupRoute
from labkit.client.routing import ANY_BROKER, Routes
from labkit.client.structs import OffsetAndMetadata, TopicPartition
from labkit.client.subscription import SubscriptionState
from labkit.client.transport import Response, raise_for_error
from labkit.errors import KafkaConnectionError, KafkaTimeoutError
from labkit.testing import FakeClock

TP = TopicPartition
GROUP_APIS = {
    "join_group",
    "heartbeat",
    "leave_group",
    "offset_commit",
    "offset_fetch",
    "describe_groups",
    "delete_groups",
    "offset_delete",
}


class FakeCluster:
    """The transport's interface over brokers 1, 2, 3; the client bootstrapped from 1."""

    address = "127.0.0.1:9101"

    def __init__(self, svc, coordinator=2, multi=True):
        self.svc = svc
        self.coordinator = coordinator  # who leads the group's offsets partition
        self.routes = Routes(bootstrap_node=1)
        self.routes.multi = multi
        self.single = not multi
        self.down: set[int] = set()  # brokers whose connection is lost
        self.loading = 0  # answers COORDINATOR_LOAD_IN_PROGRESS this many times
        self.drivers = []
        self.sent: list[tuple[str, int | None]] = []

    def add_driver(self, driver):
        self.drivers.append(driver)

    def wakeup(self):
        pass

    def request(
        self,
        api,
        header,
        payloads=(),
        *,
        timeout_ms=None,
        idempotent=False,
        expect_response=True,
        node=None,
    ):
        self.sent.append((api, node))
        header = json.loads(json.dumps(header))  # as on the wire (tuples become lists)
        broker = 1 if node is ANY_BROKER else node
        if broker in self.down:
            return Future().failure(KafkaConnectionError(f"broker {broker} is gone"))
        if api == "find_coordinator":
            if self.single:
                answer = {"error": 0, "node_id": 0}
            else:
                answer = {
                    "error": 0,
                    "node_id": self.coordinator,
                    "zmq_host": "z",
                    "zmq_port": 9200 + self.coordinator,
                }
                self.routes.learn_coordinator(answer)  # what the transport does
        elif api in GROUP_APIS and not self.single and broker != self.coordinator:
            answer = {"error": 16, "message": f"broker {broker} is not the coordinator"}
        elif api in GROUP_APIS and self.loading:
            self.loading -= 1
            answer = {"error": 14, "message": "loading"}
        else:
            answer = self.svc.handle(api, header)
        return Future().success(Response(answer, []))

    def call(self, api, header, payloads=(), *, timeout_ms=None, idempotent=True, node=None):
        future = self.request(api, header, node=node)
        if future.exception is not None:
            raise future.exception
        raise_for_error(future.value.header)
        return future.value

    def run(self, clock):
        return [driver(clock.monotonic()) for driver in self.drivers]

    def group_nodes(self):
        return [node for api, node in self.sent if api in GROUP_APIS]


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def svc(tmp_path, clock):
    service = GroupService(tmp_path, clock, {"t": 2}.get, lambda t, p: 100)
    yield service
    service.close()


def consumer_coordinator(cluster, clock):
    config = {
        **cfg.CONNECTION_DEFAULTS,
        **KafkaConsumer.DEFAULT_CONFIG,
        "client_id": "c",
        "group_id": "g",
        "heartbeat_interval_ms": 250,
        "retry_backoff_ms": 100,
    }
    sub = SubscriptionState("earliest")
    sub.subscribe(topics=["t"])
    return ConsumerCoordinator(
        config,
        transport=cluster,
        subscription=sub,
        clock=clock,
        interrupt=lambda: None,
        sleep=clock.advance,
    )


def join(cluster, clock, coord, turns=12):
    for _ in range(turns):
        cluster.run(clock)
        coord.poll()
        clock.advance(0.11)
    return set(coord.member.assignment)


def test_a_consumer_bootstrapped_elsewhere_joins_commits_and_reads_at_the_coordinator(svc, clock):
    cluster = FakeCluster(svc, coordinator=2)
    coord = consumer_coordinator(cluster, clock)
    assert join(cluster, clock, coord) == {TP("t", 0), TP("t", 1)}
    coord.commit_offsets_sync({TP("t", 0): OffsetAndMetadata(5, "", -1)})
    assert coord.fetch_committed_offsets([TP("t", 0)])[TP("t", 0)].offset == 5
    assert set(cluster.group_nodes()) == {2}, "every group request goes to the coordinator"
    assert cluster.sent[0] == ("find_coordinator", ANY_BROKER)


def test_not_coordinator_makes_the_consumer_find_the_new_one_and_go_on(svc, clock):
    cluster = FakeCluster(svc, coordinator=2)
    coord = consumer_coordinator(cluster, clock)
    join(cluster, clock, coord)
    coord.commit_offsets_sync({TP("t", 0): 3})
    cluster.coordinator = 3  # leadership of the offsets partition moved
    coord.commit_offsets_sync({TP("t", 0): 4})  # 16 from broker 2, found again, retried
    assert coord.fetch_committed_offsets([TP("t", 0)])[TP("t", 0)].offset == 4
    join(cluster, clock, coord)  # heartbeats follow too
    assert cluster.group_nodes()[-1] == 3
    assert [api for api, _ in cluster.sent].count("find_coordinator") == 2


def test_a_lost_coordinator_connection_is_found_again_after_the_backoff(svc, clock):
    cluster = FakeCluster(svc, coordinator=2)
    coord = consumer_coordinator(cluster, clock)
    join(cluster, clock, coord)
    cluster.down.add(2)  # kill -9 of broker 2; broker 3 takes the group
    cluster.coordinator = 3
    start = clock.monotonic()
    coord.commit_offsets_sync({TP("t", 1): 9})
    assert clock.monotonic() - start >= 0.1, "retry_backoff_ms before finding it again"
    assert cluster.group_nodes()[-1] == 3
    assert coord.fetch_committed_offsets([TP("t", 1)])[TP("t", 1)].offset == 9


def test_load_in_progress_is_retried(svc, clock):
    cluster = FakeCluster(svc, coordinator=2)
    coord = consumer_coordinator(cluster, clock)
    join(cluster, clock, coord)
    cluster.loading = 2
    coord.commit_offsets_sync({TP("t", 0): 1})
    assert coord.fetch_committed_offsets([TP("t", 0)])[TP("t", 0)].offset == 1


def test_no_coordinator_within_the_timeout_is_a_clear_timeout(svc, clock):
    cluster = FakeCluster(svc, coordinator=2)
    cluster.down.update({1, 2, 3})
    route = GroupRoute(cluster, "g", 100, clock, sleep=clock.advance)
    with pytest.raises((KafkaTimeoutError, KafkaConnectionError)):
        route.call("offset_fetch", {"group_id": "g"}, timeout_ms=1000)


def test_single_broker_mode_sends_no_lookup(svc, clock):
    cluster = FakeCluster(svc, multi=False)
    coord = consumer_coordinator(cluster, clock)
    join(cluster, clock, coord)
    coord.commit_offsets_sync({TP("t", 0): 2})
    assert coord.fetch_committed_offsets([TP("t", 0)])[TP("t", 0)].offset == 2
    assert all(api != "find_coordinator" for api, _ in cluster.sent)
    assert set(cluster.group_nodes()) == {ANY_BROKER}


class Admin(GroupAdminMixin):
    def __init__(self, transport, clock):
        self._transport, self._clock, self._cluster = transport, clock, None
        self.config = {"retry_backoff_ms": 100}


def test_the_admins_group_calls_go_to_each_groups_coordinator(svc, clock):
    cluster = FakeCluster(svc, coordinator=3)
    cluster.request_timeout = 5.0
    admin = Admin(cluster, clock)
    admin.alter_consumer_group_offsets("g", {TP("t", 0): 7})
    assert admin.list_consumer_group_offsets("g")[TP("t", 0)].offset == 7
    assert [d.group for d in admin.describe_consumer_groups(["g"])] == ["g"]
    assert admin.delete_consumer_groups(["g"]) == [("g", NoError)]
    assert set(cluster.group_nodes()) == {3}
