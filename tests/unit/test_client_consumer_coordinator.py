"""ConsumerCoordinator (the consumer's group adapter) against the real GroupService, without
sockets: a loopback transport answers each request at once, time is a FakeClock."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from labkit.broker.group_api import GroupService
from labkit.client import config as cfg
from labkit.client.consumer import KafkaConsumer
from labkit.client.consumer_coordinator import ConsumerCoordinator, assignor_names, local_host
from labkit.client.future import Future
from labkit.client.routing import Routes
from labkit.client.structs import OffsetAndMetadata, TopicPartition
from labkit.client.subscription import ConsumerRebalanceListener, SubscriptionState
from labkit.client.transport import Response, raise_for_error
from labkit.errors import CommitFailedError, KafkaConfigurationError
from labkit.testing import FakeClock

TP = TopicPartition
ALL = {TP("t", p) for p in range(6)}


class Loopback:
    """The transport's interface; the real GroupService answers every request at once."""

    address = "127.0.0.1:9092"

    def __init__(self, svc):
        self.routes = Routes()  # one broker: group requests need no coordinator lookup
        self.svc = svc
        self.drivers = []
        self.sent = []
        self.wakeups = 0

    def add_driver(self, driver):
        self.drivers.append(driver)

    def wakeup(self):
        self.wakeups += 1

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
        self.sent.append(api)
        return Future().success(Response(self.svc.handle(api, header), []))

    def call(self, api, header, payloads=(), *, timeout_ms=None, idempotent=True):
        response = self.request(api, header).value
        raise_for_error(response.header)
        return response

    def run(self, clock):
        """One turn of the I/O loop: the drivers send what they want."""
        return [driver(clock.monotonic()) for driver in self.drivers]


class Fetcher:
    def __init__(self):
        self.interrupts = 0

    def interrupt(self):
        self.interrupts += 1


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def svc(tmp_path, clock):
    service = GroupService(tmp_path, clock, {"t": 6}.get, lambda t, p: 100)
    yield service
    service.close()


def coordinator(svc, clock, name="a", topics=("t",), **configs):
    config = {
        **cfg.CONNECTION_DEFAULTS,
        **KafkaConsumer.DEFAULT_CONFIG,
        "client_id": name,
        "group_id": "g",
        "auto_offset_reset": "earliest",
        # the coordinator's stable pace: these tests are about the protocol's steps;
        # the 3 s default (idle members are cheap) has tests of its own below
        "heartbeat_interval_ms": 250,
        **configs,
    }
    consumer = SimpleNamespace(
        config=config,
        _transport=Loopback(svc),
        _subscription=SubscriptionState("earliest"),
        _clock=clock,
        _fetcher=Fetcher(),
    )
    if topics:
        consumer._subscription.subscribe(topics=list(topics))
    coord = ConsumerCoordinator(
        config,
        transport=consumer._transport,
        subscription=consumer._subscription,
        clock=clock,
        interrupt=consumer._fetcher.interrupt,
    )
    coord.consumer = consumer  # what the tests look at
    return coord


def turns(clock, *coords, n=8, step=0.3):
    """Let the members heartbeat (I/O loop) and poll (application) while time moves."""
    for _ in range(n):
        for c in coords:
            c.consumer._transport.run(clock)
            c.poll()
            for st in c.consumer._subscription.assignment.values():
                if st.position is None:
                    st.seek(7)  # what _update_positions would do
        clock.advance(step)


def assignment(c):
    return set(c.consumer._subscription.assignment)


def committed(svc, tps):
    header = svc.handle(
        "offset_fetch", {"group_id": "g", "partitions": [[tp.topic, tp.partition] for tp in tps]}
    )
    return {TP(r[0], r[1]): r[2] for r in header["partitions"]}


def test_join_fills_the_subscription_and_interrupts_the_wait(svc, clock):
    a = coordinator(svc, clock)
    a.poll()  # hands the subscription to the member
    a.consumer._transport.run(clock)  # join_group, answered
    assert a.consumer._fetcher.interrupts >= 1, "poll() must wake up to take the partitions"
    assert assignment(a) == set()
    assert a.fetchable() == set()
    a.poll()
    assert assignment(a) == ALL == a.fetchable()
    assert a.member.in_group


def test_rebalance_commits_positions_before_giving_partitions_up(svc, clock):
    a = coordinator(svc, clock, "a")
    turns(clock, a, n=3)
    assert assignment(a) == ALL
    b = coordinator(svc, clock, "b")
    turns(clock, a, b)
    assert len(assignment(a)) == len(assignment(b)) == 3
    assert not assignment(a) & assignment(b)
    moved = ALL - assignment(a)
    assert committed(svc, moved) == {tp: 7 for tp in moved}


def test_without_auto_commit_nothing_is_committed_on_revoke(svc, clock):
    a = coordinator(svc, clock, "a", enable_auto_commit=False)
    turns(clock, a, n=3)
    b = coordinator(svc, clock, "b", enable_auto_commit=False)
    turns(clock, a, b)
    assert len(assignment(b)) == 3
    assert "offset_commit" not in a.consumer._transport.sent
    assert set(committed(svc, ALL).values()) == {-1}


def test_auto_commit_runs_every_interval_and_skips_unchanged_offsets(svc, clock):
    a = coordinator(svc, clock, auto_commit_interval_ms=1000)
    turns(clock, a, n=5)  # 1.5 s: one auto-commit of the positions
    sent = a.consumer._transport.sent
    assert sent.count("offset_commit") == 1
    assert committed(svc, ALL) == {tp: 7 for tp in ALL}
    turns(clock, a, n=5)
    assert sent.count("offset_commit") == 1, "nothing changed: nothing to commit"
    a.consumer._subscription.assignment[TP("t", 2)].seek(9)
    turns(clock, a, n=5)
    assert sent.count("offset_commit") == 2
    assert committed(svc, [TP("t", 2)]) == {TP("t", 2): 9}


def test_commit_async_callback_runs_in_the_next_poll(svc, clock):
    a = coordinator(svc, clock, enable_auto_commit=False)
    turns(clock, a, n=3)
    results = []
    future = a.commit_offsets_async(
        {TP("t", 0): OffsetAndMetadata(3, "m", -1)},
        lambda offsets, exc: results.append((offsets, exc)),
    )
    assert future.succeeded()
    assert results == []
    a.poll()
    assert results == [({TP("t", 0): OffsetAndMetadata(3, "m", -1)}, None)]
    found = a.fetch_committed_offsets([TP("t", 0), TP("t", 1)])
    assert found == {TP("t", 0): OffsetAndMetadata(3, "m", -1), TP("t", 1): None}


def test_commit_async_failure_reaches_the_callback(svc, clock):
    a = coordinator(svc, clock, enable_auto_commit=False)  # subscribed, not joined yet
    results = []
    future = a.commit_offsets_async({TP("t", 0): 3}, lambda o, exc: results.append(exc))
    assert isinstance(future.exception, CommitFailedError)
    a.poll()
    assert len(results) == 1
    assert isinstance(results[0], CommitFailedError)


def test_commit_of_a_partition_held_by_another_member_is_fenced(svc, clock):
    a = coordinator(svc, clock, "a", enable_auto_commit=False)
    turns(clock, a, n=3)
    b = coordinator(svc, clock, "b", enable_auto_commit=False)
    turns(clock, a, b)
    theirs = next(iter(assignment(b)))
    with pytest.raises(CommitFailedError, match="rebalanced"):
        a.commit_offsets_sync({theirs: 1})
    a.commit_offsets_sync({tp: 5 for tp in assignment(a)})
    assert committed(svc, assignment(a)) == {tp: 5 for tp in assignment(a)}


def test_a_consumer_using_assign_commits_as_a_tool_only_while_the_group_is_empty(svc, clock):
    tool = coordinator(svc, clock, "tool", topics=())
    tool.consumer._subscription.assign_from_user([TP("t", 0)])
    tool.commit_offsets_sync({TP("t", 0): 4})
    assert committed(svc, [TP("t", 0)]) == {TP("t", 0): 4}
    member = coordinator(svc, clock, "m")
    turns(clock, member, n=3)
    with pytest.raises(CommitFailedError, match=r"used assign\(\)"):
        tool.commit_offsets_sync({TP("t", 0): 5})


class Listener(ConsumerRebalanceListener):
    def __init__(self):
        self.events = []

    def on_partitions_revoked(self, revoked):
        self.events.append(("revoked", len(revoked)))

    def on_partitions_assigned(self, assigned):
        self.events.append(("assigned", len(assigned)))


def test_close_commits_revokes_and_leaves(svc, clock):
    a = coordinator(svc, clock, "a", topics=())
    listener = Listener()
    a.consumer._subscription.subscribe(topics=["t"], listener=listener)
    turns(clock, a, n=3)
    b = coordinator(svc, clock, "b")
    turns(clock, a, b)
    kept = assignment(a)
    a.close(autocommit=True)
    assert listener.events == [("assigned", 6), ("revoked", 3), ("revoked", 3)]
    assert assignment(a) == set()
    assert committed(svc, kept) == {tp: 7 for tp in kept}
    turns(clock, b, n=3)  # b takes over at once: a left
    assert assignment(b) == ALL


def test_close_without_autocommit_commits_nothing(svc, clock):
    a = coordinator(svc, clock)
    turns(clock, a, n=3)
    a.close(autocommit=False)
    assert set(committed(svc, ALL).values()) == {-1}
    assert svc.handle("describe_groups", {"group_ids": ["g"]})["groups"][0]["members"] == []


def test_unsubscribe_gives_everything_up_and_leaves(svc, clock):
    a = coordinator(svc, clock)
    turns(clock, a, n=3)
    a.on_unsubscribe()
    assert assignment(a) == set()
    turns(clock, a, n=1)  # the leave goes out on the I/O thread
    assert svc.handle("describe_groups", {"group_ids": ["g"]})["groups"][0]["members"] == []


def test_partition_assigned_again_starts_above_its_old_epoch():
    sub = SubscriptionState()
    sub.subscribe(topics=["t"])
    sub.assign_from_subscribed({TP("t", 0)}, notify_listener=False)
    sub.state(TP("t", 0)).seek(15)
    old = sub.state(TP("t", 0)).epoch
    sub.assign_from_subscribed(set(), notify_listener=False)
    sub.assign_from_subscribed({TP("t", 0)}, notify_listener=False)
    st = sub.state(TP("t", 0))
    st.seek(10)
    assert st.epoch > old, "a fetch sent for the old state must not be taken for this one"


class RangePartitionAssignor:  # kafka-python's assignor classes carry their name
    name = "range"


class RoundRobinPartitionAssignor:
    name = "roundrobin"


def test_assignor_names_take_names_and_kafka_python_classes():
    assert assignor_names(("range", "roundrobin")) == ["range", "roundrobin"]
    assert assignor_names([RoundRobinPartitionAssignor, RangePartitionAssignor]) == [
        "roundrobin",
        "range",
    ]
    assert assignor_names("sticky") == ["sticky"]
    with pytest.raises(KafkaConfigurationError, match="not an assignor"):
        assignor_names([42])
    with pytest.raises(KafkaConfigurationError, match="empty"):
        assignor_names([])


def test_bad_group_settings_are_rejected(svc, clock):
    with pytest.raises(KafkaConfigurationError, match="group_id"):
        coordinator(svc, clock, group_id="")
    with pytest.raises(KafkaConfigurationError, match="session_timeout_ms"):
        coordinator(svc, clock, session_timeout_ms="10s")


def test_local_host_is_the_address_the_broker_sees():
    assert local_host("127.0.0.1:9092") == "/127.0.0.1"
    assert local_host("not a host:x") == "/127.0.0.1"


def test_a_new_subscription_wakes_the_io_thread(svc, clock):
    a = coordinator(svc, clock)
    a.poll()  # the member now has a join_group to send: the I/O thread must not sleep on
    assert a.consumer._transport.wakeups >= 1


def test_a_settled_member_beats_every_heartbeat_interval_ms(svc, clock):
    a = coordinator(svc, clock, heartbeat_interval_ms=3000)
    turns(clock, a, n=3, step=0.05)
    assert assignment(a) == ALL
    sent = len(a.consumer._transport.sent)
    (sleep,) = a.consumer._transport.run(clock)  # a heartbeat, answered: settled
    assert 2.5 <= sleep <= 3.0, "an idle member sleeps until its next heartbeat"
    clock.advance(2.9)
    a.consumer._transport.run(clock)
    assert len(a.consumer._transport.sent) <= sent + 1, "no heartbeat before the interval"


def test_a_member_whose_assignment_moves_follows_the_coordinators_pace(svc, clock):
    a = coordinator(svc, clock, "a", heartbeat_interval_ms=3000)
    turns(clock, a, n=3, step=0.05)
    b = coordinator(svc, clock, "b", heartbeat_interval_ms=3000)
    turns(clock, b, n=2, step=0)  # b joins; a is settled and beats again only in 3 s
    assert assignment(a) == ALL
    clock.advance(3.0)  # a hears of b at its next heartbeat, then both move fast
    turns(clock, a, b, n=10, step=0.06)
    assert len(assignment(a)) == len(assignment(b)) == 3


def test_heartbeats_stay_well_inside_a_short_session(svc, clock):
    a = coordinator(svc, clock, session_timeout_ms=1500, heartbeat_interval_ms=3000)
    turns(clock, a, n=3, step=0.05)
    (sleep,) = a.consumer._transport.run(clock)
    assert sleep <= 0.5
