"""GroupMember (the client's side) against the real GroupService, without sockets."""

from __future__ import annotations

import functools
import logging
import random

import pytest

from labkit.broker.group_api import GroupService
from labkit.client.group import GroupMember, offset_fetch_header, parse_offset_fetch
from labkit.client.structs import OffsetAndMetadata, TopicPartition
from labkit.client.subscription import ConsumerRebalanceListener
from labkit.errors import (
    CommitFailedError,
    InconsistentGroupProtocolError,
    UnknownTopicOrPartitionError,
)
from labkit.testing import FakeClock

TP = TopicPartition


class Recorder(ConsumerRebalanceListener):
    def __init__(self, events, name):
        self.events, self.name = events, name

    def on_partitions_revoked(self, revoked):
        self.events.append((self.name, "revoked", revoked))

    def on_partitions_assigned(self, assigned):
        self.events.append((self.name, "assigned", assigned))

    def on_partitions_lost(self, lost):
        self.events.append((self.name, "lost", lost))


class Hooks:
    def __init__(self, events, name):
        self.events, self.name = events, name

    def before_revoke(self, partitions):
        self.events.append((self.name, "commit", partitions))

    def revoked(self, partitions):
        self.events.append((self.name, "forget", partitions))

    def assigned(self, partitions):
        self.events.append((self.name, "track", partitions))


# These tests are about the protocol's steps, at the coordinator's stable pace (250 ms);
# the 3 s default (settled members are cheap) is tested in test_client_consumer_coordinator.py.
GroupMember = functools.partial(GroupMember, heartbeat_interval_ms=250)


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def topics():
    return {"t": 6}


@pytest.fixture
def svc(tmp_path, clock, topics):
    service = GroupService(tmp_path, clock, topics.get, lambda t, p: 0)
    yield service
    service.close()


@pytest.fixture
def events():
    return []


def member(clock, events, name="a", topics=("t",), **kw):
    m = GroupMember("g", client_id=name, clock=clock, hooks=Hooks(events, name), **kw)
    m.subscribe(topics, Recorder(events, name))
    return m


def pump(svc, *members, turns=1):
    """One turn: each member sends what it wants and gets the answer at once."""
    for _ in range(turns):
        for m in members:
            req = m.next_request()
            if req is not None:
                m.on_response(req.token, svc.handle(req.api, req.header))


def run(svc, clock, *members, rounds=8):
    """Let the members heartbeat and poll until things settle (fake time moves)."""
    for _ in range(rounds):
        pump(svc, *members)
        for m in members:
            m.poll()
        clock.advance(0.3)


def assert_disjoint(*members):
    seen = {}
    for m in members:
        for tp in m.fetchable():
            assert tp not in seen, f"{tp} fetchable by two members"
            seen[tp] = m


def test_join_then_poll_assigns_everything(svc, clock, events):
    a = member(clock, events)
    req = a.next_request()
    assert req.api == "join_group"
    assert req.header["topics"] == ["t"]
    assert a.next_request() is None  # one request in flight at a time
    a.on_response(req.token, svc.handle(req.api, req.header))
    assert a.assignment == set()
    assert a.fetchable() == set()  # nothing until poll()
    assert a.wake.is_set()
    a.poll()
    everything = [TP("t", p) for p in range(6)]
    assert events == [("a", "track", everything), ("a", "assigned", everything)]
    assert a.assignment == set(everything) == a.fetchable()
    assert a.in_group
    assert a.generation == 1


def test_rebalance_revokes_first_and_commits_before_the_listener(svc, clock, events):
    a = member(clock, events, "a")
    run(svc, clock, a)
    b = member(clock, events, "b")
    events.clear()
    for _ in range(10):
        pump(svc, a, b)
        assert_disjoint(a, b)
        b.poll()
        assert_disjoint(a, b)
        a.poll()
        assert_disjoint(a, b)
        clock.advance(0.05)
    mine, theirs = [TP("t", p) for p in range(3)], [TP("t", p) for p in range(3, 6)]
    assert a.assignment == set(mine)
    assert b.assignment == set(theirs)
    a_events = [e[1:] for e in events if e[0] == "a"]
    assert a_events == [("commit", theirs), ("revoked", theirs), ("forget", theirs)]
    b_events = [e[1:] for e in events if e[0] == "b"]
    assert b_events[-2:] == [("track", theirs), ("assigned", theirs)]
    # a's revocation completed before b's assignment
    assert events.index(("a", "forget", theirs)) < events.index(("b", "track", theirs))


def test_a_slow_poller_keeps_its_partitions_until_it_polls(svc, clock, events):
    a, b = member(clock, events, "a"), member(clock, events, "b")
    run(svc, clock, a)  # b has not joined yet: its requests are not pumped
    pump(svc, b)
    for _ in range(5):
        pump(svc, a, b)
        b.poll()  # a never polls
        clock.advance(0.05)
    assert b.assignment == set()
    assert len(a.assignment) == 6
    assert len(a.fetchable()) == 3  # but a already stopped fetching what it must give up
    a.poll()
    run(svc, clock, a, b)
    assert len(b.assignment) == 3


def test_exceeding_max_poll_interval_leaves_and_rejoins_on_poll(svc, clock, events, caplog):
    a = member(clock, events, "a", max_poll_interval_ms=2000)
    b = member(clock, events, "b")
    run(svc, clock, a, b)
    for _ in range(8):  # a's application stops calling poll(); its I/O thread goes on
        pump(svc, a, b)
        b.poll()
        clock.advance(0.3)
    assert "poll timeout has expired" in caplog.text
    assert a.fetchable() == set()
    assert not a.in_group
    assert len(b.assignment) == 6
    with pytest.raises(CommitFailedError, match="not an active member"):
        a.commit_header({TP("t", 0): OffsetAndMetadata(1, "")})
    events.clear()
    a.poll()
    assert ("a", "lost", [TP("t", p) for p in range(3)]) in events
    assert a.next_request().api == "join_group"


def test_unknown_member_on_heartbeat_loses_partitions(svc, clock, events, caplog):
    a = member(clock, events, session_timeout_ms=1000)
    run(svc, clock, a, rounds=3)
    clock.advance(1.5)  # frozen process: the coordinator expired it
    svc.tick()
    req = a.next_request()
    assert req is None  # the member noticed itself: no answer within its session
    assert a.fetchable() == set()
    a.poll()
    assert events[-1] == ("a", "lost", [TP("t", p) for p in range(6)])
    run(svc, clock, a, rounds=3)
    assert len(a.assignment) == 6


def test_unknown_member_answer_triggers_rejoin(svc, clock, events, caplog):
    a = member(clock, events)
    run(svc, clock, a, rounds=2)
    req = a.next_request()
    while req is None:
        clock.advance(0.1)
        req = a.next_request()
    a.on_response(req.token, {"error": 25, "message": "not in group"})
    assert "no longer knows" in caplog.text
    assert a.fetchable() == set()
    a.poll()
    assert a.next_request().api == "join_group"


def test_a_late_answer_to_an_old_request_is_ignored(svc, clock, events):
    a = member(clock, events)
    req = a.next_request()
    a.on_failure(req.token, TimeoutError("lost"))
    clock.advance(0.2)
    again = a.next_request()
    assert again.api == "join_group"
    assert again.token != req.token
    a.on_response(
        req.token, {"error": 0, "member_id": "ghost", "generation": 9, "assignment": [["t", 0]]}
    )
    assert a.member_id == ""
    assert a.next_request() is None


def test_commit_headers_and_fencing(svc, clock, events):
    a = member(clock, events)
    with pytest.raises(CommitFailedError):
        a.commit_header({TP("t", 0): 5})
    run(svc, clock, a, rounds=3)
    header = a.commit_header({TP("t", 0): OffsetAndMetadata(5, "m"), TP("t", 1): 7})
    assert header == {
        "group_id": "g",
        "member_id": a.member_id,
        "generation": 1,
        "offsets": [["t", 0, 5, "m"], ["t", 1, 7, ""]],
    }
    a.check_commit_response(svc.handle("offset_commit", header))
    fetched = parse_offset_fetch(
        svc.handle("offset_fetch", offset_fetch_header("g", [TP("t", 0), TP("t", 2)]))
    )
    assert fetched == {TP("t", 0): OffsetAndMetadata(5, "m", -1), TP("t", 2): None}
    stale = dict(header, generation=0)
    with pytest.raises(CommitFailedError, match="rebalanced"):
        a.check_commit_response(svc.handle("offset_commit", stale))
    with pytest.raises(UnknownTopicOrPartitionError):
        a.check_commit_response({"error": 3, "message": "no such topic"})


def test_manual_assignment_commits_as_a_tool(clock, events):
    m = GroupMember("g", clock=clock)
    assert m.commit_header({TP("t", 0): 3})["generation"] == -1


def test_idle_member_is_told_why(svc, clock, events, topics, caplog):
    topics["t"] = 1
    a, b = member(clock, events, "a"), member(clock, events, "b")
    with caplog.at_level(logging.WARNING):
        run(svc, clock, a, b)
    idle = [m for m in (a, b) if not m.assignment]
    assert len(idle) == 1
    assert caplog.text.count("is idle") == 1
    assert "2 consumers but t has only 1 partition" in caplog.text


def test_close_revokes_everything_and_returns_the_leave(svc, clock, events):
    a = member(clock, events)
    run(svc, clock, a, rounds=3)
    events.clear()
    leave = a.close()
    everything = [TP("t", p) for p in range(6)]
    assert [e[1] for e in events] == ["commit", "revoked", "forget"]
    assert events[0][2] == everything
    assert leave == {"group_id": "g", "member_id": leave["member_id"]}
    assert svc.handle("leave_group", leave) == {"error": 0}
    assert a.next_request() is None
    assert a.assignment == set()


def test_unsubscribe_revokes_and_leaves(svc, clock, events):
    a = member(clock, events)
    run(svc, clock, a, rounds=3)
    a.unsubscribe()
    req = a.next_request()
    assert req.api == "leave_group"
    a.on_response(req.token, svc.handle(req.api, req.header))
    assert svc.coordinator.state_of("g") == "Empty"
    a.poll()
    assert a.next_request() is None
    assert a.subscription == set()


def test_subscription_change_goes_in_the_next_heartbeat(svc, clock, events, topics):
    topics["u"] = 2
    a = member(clock, events)
    run(svc, clock, a, rounds=3)
    a.subscribe(["t", "u"])
    req = a.next_request()
    assert req.api == "heartbeat"
    assert req.header["topics"] == ["t", "u"]
    a.on_response(req.token, svc.handle(req.api, req.header))
    run(svc, clock, a, rounds=3)
    assert len(a.assignment) == 8


def test_a_failing_listener_is_logged_not_raised(svc, clock, caplog):
    class Broken(ConsumerRebalanceListener):
        def on_partitions_revoked(self, revoked):
            pass

        def on_partitions_assigned(self, assigned):
            raise ValueError("oops")

    a = GroupMember("g", clock=clock)
    a.subscribe(["t"], Broken())
    run(svc, clock, a, rounds=2)
    assert "on_partitions_assigned raised" in caplog.text
    assert len(a.assignment) == 6


def test_inconsistent_assignors_surface_in_poll(svc, clock, events):
    a = member(clock, events, "a")
    run(svc, clock, a, rounds=2)
    b = member(clock, events, "b", assignors=["roundrobin"])
    pump(svc, b)
    with pytest.raises(InconsistentGroupProtocolError, match="same partition_assignment"):
        b.poll()


def test_random_churn_never_lets_two_members_fetch_one_partition(svc, clock, topics):
    rng = random.Random(11)
    members: list[GroupMember] = []
    for step in range(250):
        roll = rng.random()
        if roll < 0.08 and len(members) < 5:
            members.append(
                GroupMember(
                    "g",
                    client_id=f"c{step}",
                    clock=clock,
                    session_timeout_ms=2000,
                    max_poll_interval_ms=3000,
                )
            )
            members[-1].subscribe(["t"])
        elif roll < 0.12 and members:
            leaving = members.pop(rng.randrange(len(members)))
            svc.handle("leave_group", leaving.close() or {"group_id": "g", "member_id": "x"})
        elif roll < 0.14:
            topics["t"] = rng.randint(2, 8)
            svc.topics_changed(["t"])  # as the broker does after create_partitions
        for m in members:
            if rng.random() < 0.7:
                pump(svc, m)
            assert_disjoint(*members)
            if rng.random() < 0.5:
                m.poll()
            assert_disjoint(*members)
        clock.advance(0.1)
        svc.tick()
    for _ in range(15):
        pump(svc, *members)
        for m in members:
            m.poll()
        clock.advance(0.1)
        svc.tick()
    if members:
        covered = set().union(*(m.fetchable() for m in members))
        assert covered == {TP("t", p) for p in range(topics["t"])}


class Node:
    """A member whose requests travel slowly: built, delivered and answered in
    separate steps, so heartbeats race with the application's poll()."""

    def __init__(self, m):
        self.m, self.req, self.reply = m, None, None

    def io_step(self, svc):
        if self.req is None:
            self.req = self.m.next_request()
        elif self.reply is None:
            self.reply = svc.handle(self.req.api, self.req.header)
        else:
            self.m.on_response(self.req.token, self.reply)
            self.req = self.reply = None


class RacingHooks:
    """While the application thread is inside a rebalance callback, the I/O
    threads of every member keep going."""

    def __init__(self, world):
        self.world = world

    def before_revoke(self, partitions):
        self.world.io(steps=6)

    def revoked(self, partitions):
        self.world.io(steps=3)

    def assigned(self, partitions):
        self.world.io(steps=3)


class World:
    def __init__(self, svc, clock, rng):
        self.svc, self.clock, self.rng, self.nodes = svc, clock, rng, []

    def add(self, name):
        m = GroupMember(
            "g",
            client_id=name,
            clock=self.clock,
            hooks=RacingHooks(self),
            session_timeout_ms=3000,
            max_poll_interval_ms=5000,
        )
        m.subscribe(["t"])
        self.nodes.append(Node(m))

    def io(self, steps):
        for _ in range(steps):
            if self.nodes:
                self.rng.choice(self.nodes).io_step(self.svc)
                self.check()

    def check(self):
        assert_disjoint(*(n.m for n in self.nodes))


@pytest.mark.parametrize("seed", [5, 6, 7])
def test_racing_heartbeats_and_polls_never_share_a_partition(svc, clock, topics, seed):
    rng = random.Random(seed)
    world = World(svc, clock, rng)
    for step in range(400):
        roll = rng.random()
        if roll < 0.06 and len(world.nodes) < 5:
            world.add(f"c{step}")
        elif roll < 0.1 and world.nodes:
            node = world.nodes.pop(rng.randrange(len(world.nodes)))
            leave = node.m.close()
            if leave:
                svc.handle("leave_group", leave)
        elif roll < 0.12:
            topics["t"] = rng.randint(2, 8)
            svc.topics_changed(["t"])
        elif roll < 0.6:
            world.io(steps=3)
        elif world.nodes:
            rng.choice(world.nodes).m.poll()
        world.check()
        clock.advance(rng.choice([0.01, 0.06, 0.3]))
        svc.tick()
    assert svc.coordinator.describe("g")["generation"] > 10  # it did churn


def beat_until_idle(svc, *members, clock=None):
    for _ in range(4):
        pump(svc, *members)
        for m in members:
            m.poll()
        if clock is not None:
            clock.advance(0.3)


def test_a_partition_offered_but_not_taken_up_is_still_reported(svc, clock, events):
    # b was offered t-3..5 and has not polled yet when c joins and the target gives
    # t-4 and t-5 to c. b's heartbeat must still report them, or c would get them
    # while b is about to take them up in its next poll().
    a = member(clock, events, "a")
    beat_until_idle(svc, a, clock=clock)
    b = member(clock, events, "b")
    for _ in range(4):
        pump(svc, a, b)
        a.poll()
        clock.advance(0.3)
    assert b.assignment == set()
    assert len(b.fetchable()) == 0
    assert b.wake.is_set()  # offered t-3..5, waiting for the application's poll()
    c = member(clock, events, "c")
    pump(svc, c)
    b_node = Node(b)
    b_node.io_step(svc)  # b builds its heartbeat ...
    b_node.io_step(svc)  # ... the coordinator handles it; the answer is on its way
    for _ in range(3):
        clock.advance(0.1)
        pump(svc, a, c)
        c.poll()
        a.poll()
    b.poll()  # b takes up what it was last offered
    assert_disjoint(a, b, c)
    b_node.io_step(svc)  # the answer arrives
    b.poll()
    beat_until_idle(svc, a, b, c, clock=clock)
    assert_disjoint(a, b, c)
    assert sorted(len(m.assignment) for m in (a, b, c)) == [2, 2, 2]


def test_a_partition_withdrawn_during_a_callback_is_not_taken_up(svc, clock, events):
    # While b's application thread runs its revoke callback, its I/O thread learns
    # that t-0 and t-1 went to another member: b must not take them up afterwards.
    world = {}

    class SlowHooks(Hooks):
        def before_revoke(self, partitions):
            super().before_revoke(partitions)
            early = member(clock, events, "0early")  # sorts first: range gives it t-0, t-1
            pump(svc, early)
            world["early"] = early
            for _ in range(3):
                clock.advance(0.3)
                pump(svc, world["b"], world["c"], early)
                early.poll()
                world["c"].poll()

    a = member(clock, events, "a")
    b = GroupMember("g", client_id="b", clock=clock, hooks=SlowHooks(events, "b"))
    b.subscribe(["t"], Recorder(events, "b"))
    c = member(clock, events, "c")
    world.update(b=b, c=c)
    beat_until_idle(svc, a, b, c, clock=clock)
    assert b.assignment == {TP("t", 2), TP("t", 3)}
    svc.handle("leave_group", a.close())  # target: b t-0..2, c t-3..5
    for _ in range(3):
        pump(svc, b, c)
        c.poll()
    events.clear()
    b.poll()  # revokes t-3 (the hook races), then takes up what is still its own
    assigned = [e[2] for e in events if e[:2] == ("b", "assigned")]
    assert all(TP("t", 0) not in got and TP("t", 1) not in got for got in assigned)
    assert_disjoint(b, c, world["early"])
    beat_until_idle(svc, b, c, world["early"], clock=clock)
    assert world["early"].assignment == {TP("t", 0), TP("t", 1)}


def test_a_full_group_surfaces_in_poll_instead_of_retrying(tmp_path, clock, events, topics):
    from labkit.errors import GroupMaxSizeReachedError

    small = GroupService(tmp_path / "small", clock, topics.get, lambda t, p: 0, max_group_size=1)
    run(small, clock, member(clock, events, "a"), rounds=2)
    b = member(clock, events, "b")
    pump(small, b)
    with pytest.raises(GroupMaxSizeReachedError, match=r"group\.max\.size=1"):
        b.poll()
    small.close()
