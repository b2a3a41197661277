"""The group coordinator as a pure state machine, driven with a fake clock."""

from __future__ import annotations

import random

import pytest

from labkit.broker.group_members import EMPTY, PREPARING, STABLE
from labkit.broker.groups import REBALANCE_HEARTBEAT_MS, STABLE_HEARTBEAT_MS, Coordinator
from labkit.errors import (
    IllegalGenerationError,
    InconsistentGroupProtocolError,
    NonEmptyGroupError,
    UnknownMemberIdError,
)
from labkit.testing import FakeClock


class Topics:
    def __init__(self, **counts):
        self.counts = dict(counts)

    def __call__(self, topic):
        return self.counts.get(topic)


class Sim:
    """A well-behaved member: revokes at once unless told to stall, then adopts."""

    def __init__(
        self,
        coord,
        group="g",
        topics=("t",),
        client_id="c",
        assignors=("range",),
        session_timeout_ms=10_000,
        max_poll_interval_ms=300_000,
    ):
        self.coord, self.group = coord, group
        self.resp = coord.join(
            group,
            client_id=client_id,
            client_host="/127.0.0.1",
            topics=topics,
            assignors=assignors,
            session_timeout_ms=session_timeout_ms,
            max_poll_interval_ms=max_poll_interval_ms,
        )
        self.member_id = self.resp["member_id"]
        self.owned: set = set()
        self.stall = False  # True: keep revoked partitions (a slow poll loop)
        self.apply()

    def apply(self):
        assignment = {tuple(tp) for tp in self.resp["assignment"]}
        if not self.stall:
            self.owned &= assignment
        self.owned |= assignment

    def beat(self, topics=None):
        self.resp = self.coord.heartbeat(
            self.group, self.member_id, self.resp["generation"], sorted(self.owned), topics
        )
        self.apply()
        return self.resp

    def leave(self):
        self.coord.leave(self.group, self.member_id)
        self.owned = set()


def settle(*members, rounds=6):
    for _ in range(rounds):
        for m in members:
            m.beat()


def assert_disjoint(*members):
    seen: dict = {}
    for m in members:
        for tp in m.owned:
            assert tp not in seen, f"{tp} owned by {seen[tp]} and {m.member_id}"
            seen[tp] = m.member_id


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def topics():
    return Topics(t=6)


@pytest.fixture
def coord(clock, topics):
    return Coordinator(clock, topics)


def test_first_member_gets_everything_and_the_group_becomes_stable(coord):
    a = Sim(coord)
    assert a.resp["generation"] == 1
    assert len(a.resp["assignment"]) == 6
    assert a.member_id.startswith("c-")
    assert coord.state_of("g") == PREPARING  # a has not confirmed yet
    a.beat()
    assert coord.state_of("g") == STABLE
    assert a.resp["heartbeat_interval_ms"] == STABLE_HEARTBEAT_MS


def test_three_members_split_six_partitions_evenly_and_disjointly(coord):
    members = [Sim(coord, client_id=f"c{i}") for i in range(3)]
    settle(*members)
    assert coord.state_of("g") == STABLE
    assert sorted(len(m.owned) for m in members) == [2, 2, 2]
    assert set().union(*(m.owned for m in members)) == {("t", p) for p in range(6)}
    assert_disjoint(*members)


def test_a_partition_moves_only_after_its_owner_released_it(coord):
    a = Sim(coord)
    a.beat()
    b = Sim(coord)
    assert b.resp["assignment"] == []
    assert len(b.resp["pending"]) == 3
    a.stall = True
    a.beat()  # a learns it must give up three partitions, but keeps them for now
    assert len(a.resp["assignment"]) == 3
    assert len(a.owned) == 6
    assert a.resp["heartbeat_interval_ms"] == REBALANCE_HEARTBEAT_MS
    for _ in range(3):
        b.beat()
        a.beat()
        assert b.owned == set(), "b got a partition a still holds"
    assert coord.state_of("g") == PREPARING
    a.stall = False
    a.beat()  # a releases ...
    assert len(a.owned) == 3
    b.beat()
    assert b.owned == set()  # (the coordinator has not heard of it yet)
    a.beat()  # ... reports it ...
    b.beat()  # ... and only now b gets them
    assert len(b.owned) == 3
    assert_disjoint(a, b)
    settle(a, b)
    assert coord.state_of("g") == STABLE


def test_a_partition_given_but_not_yet_confirmed_is_not_handed_on(coord):
    # b is told it may take t-3..5 but has not reported them yet when c joins and the
    # target gives t-4 and t-5 to c: c must wait until b's next heartbeat.
    a = Sim(coord, client_id="a")
    a.beat()
    b = Sim(coord, client_id="b")
    a.beat()
    a.beat()  # a released t-3..5 and said so
    told = coord.heartbeat("g", b.member_id, b.resp["generation"], [])  # nothing owned yet
    assert told["assignment"] == [["t", 3], ["t", 4], ["t", 5]]
    c = Sim(coord, client_id="c")
    assert c.resp["pending"] == [["t", 4], ["t", 5]]
    assert c.resp["assignment"] == []
    for _ in range(3):
        c.beat()
        a.beat()
        assert c.owned == set()
    told = coord.heartbeat("g", b.member_id, told["generation"], [])  # b never took them
    assert ["t", 4] not in told["assignment"]
    c.beat()
    assert c.owned == {("t", 4), ("t", 5)}


def test_leave_frees_partitions_at_once(coord):
    a, b = Sim(coord, client_id="a"), Sim(coord, client_id="b")
    settle(a, b)
    generation = b.resp["generation"]
    a.leave()
    b.beat()
    assert len(b.owned) == 6
    assert b.resp["generation"] == generation + 1
    with pytest.raises(UnknownMemberIdError):
        coord.heartbeat("g", a.member_id, generation, [])


def test_a_silent_member_expires_after_its_session_timeout(coord, clock):
    a = Sim(coord, client_id="a", session_timeout_ms=3000)
    b = Sim(coord, client_id="b", session_timeout_ms=3000)
    settle(a, b)
    for _ in range(5):  # b keeps heartbeating, a has gone quiet
        clock.advance(0.7)
        b.beat()
    coord.tick()
    assert len(coord.describe("g")["members"]) == 1
    settle(b)
    assert len(b.owned) == 6
    with pytest.raises(UnknownMemberIdError, match="session expired"):
        a.beat()


def test_the_session_is_kept_alive_by_heartbeats(coord, clock):
    a = Sim(coord, session_timeout_ms=1000)
    for _ in range(20):
        clock.advance(0.5)
        a.beat()
        coord.tick()
    assert coord.has_members("g")


def test_a_member_stuck_revoking_is_removed_after_max_poll_interval(coord, clock):
    a = Sim(coord, client_id="a", max_poll_interval_ms=2000)
    a.beat()
    b = Sim(coord, client_id="b")
    a.stall = True
    for _ in range(4):
        clock.advance(0.4)
        a.beat()
        b.beat()
    assert b.owned == set()
    clock.advance(1.0)
    coord.tick()
    b.beat()
    assert len(b.owned) == 6
    with pytest.raises(UnknownMemberIdError):
        a.beat()


def test_generation_bumps_on_membership_changes_only(coord):
    a = Sim(coord, client_id="a")
    assert a.resp["generation"] == 1
    settle(a)
    assert a.resp["generation"] == 1
    b = Sim(coord, client_id="b")
    assert b.resp["generation"] == 2
    b.leave()
    a.beat()
    assert a.resp["generation"] == 3


def test_states_go_empty_preparing_stable_empty(coord):
    assert coord.state_of("g") == "Dead"
    a = Sim(coord)
    assert coord.state_of("g") == PREPARING
    a.beat()
    assert coord.state_of("g") == STABLE
    a.leave()
    assert coord.state_of("g") == EMPTY


def test_idle_member_when_more_members_than_partitions(coord, topics):
    topics.counts["t"] = 2
    members = [Sim(coord, client_id=f"c{i}") for i in range(3)]
    settle(*members)
    idle = [m for m in members if not m.owned]
    assert len(idle) == 1
    resp = idle[0].resp
    assert resp["assignment"] == []
    assert resp["pending"] == []
    assert resp["members"] == 3
    assert resp["partitions"] == 2
    described = {m["member_id"]: m for m in coord.describe("g")["members"]}
    assert described[idle[0].member_id]["assignment"] == []


def test_partition_count_change_rebalances_when_the_broker_says_so(coord, topics):
    a, b = Sim(coord, client_id="a"), Sim(coord, client_id="b")
    settle(a, b)
    generation = a.resp["generation"]
    coord.tick()
    a.beat()
    assert a.resp["generation"] == generation  # nothing changed
    topics.counts["t"] = 8
    coord.topics_changed(["t"])
    settle(a, b)
    assert a.resp["generation"] == generation + 1
    assert sorted(len(m.owned) for m in (a, b)) == [4, 4]


def test_subscribing_to_a_topic_that_appears_later(coord, topics):
    a = Sim(coord, topics=("later",))
    assert a.resp["assignment"] == []
    topics.counts["later"] = 2
    coord.topics_changed(["later"])
    a.beat()
    assert a.owned == {("later", 0), ("later", 1)}


def test_subscription_change_in_a_heartbeat_rebalances(coord, topics):
    topics.counts["u"] = 2
    a = Sim(coord)
    a.beat(topics=["t", "u"])
    settle(a)
    assert len(a.owned) == 8
    assert a.resp["generation"] == 2


def test_roundrobin_group_and_inconsistent_assignors(coord):
    a = Sim(coord, client_id="a", assignors=("roundrobin", "range"))
    b = Sim(coord, client_id="b", assignors=("range", "roundrobin"))
    settle(a, b)
    assert a.resp["assignor"] == "roundrobin"  # the oldest member's first choice
    assert sorted(p for _, p in a.owned) in ([0, 2, 4], [1, 3, 5])
    with pytest.raises(InconsistentGroupProtocolError, match="same partition_assignment"):
        Sim(coord, assignors=("sticky",))
    with pytest.raises(InconsistentGroupProtocolError, match="known"):
        Sim(coord, group="other", assignors=("magic",))


def test_commits_are_fenced(coord):
    a, b = Sim(coord, client_id="a"), Sim(coord, client_id="b")
    settle(a, b)
    generation = a.resp["generation"]
    coord.check_commit("g", a.member_id, generation, sorted(a.owned))
    with pytest.raises(IllegalGenerationError, match="does not own"):
        coord.check_commit("g", a.member_id, generation, sorted(b.owned))
    with pytest.raises(IllegalGenerationError, match="generation"):
        coord.check_commit("g", b.member_id, 1, sorted(b.owned))  # before b joined
    with pytest.raises(IllegalGenerationError):
        coord.check_commit("g", a.member_id, generation + 5, sorted(a.owned))
    with pytest.raises(UnknownMemberIdError):
        coord.check_commit("g", "nobody", generation, [])
    with pytest.raises(UnknownMemberIdError, match="active member"):
        coord.check_commit("g", "", -1, [("t", 0)])  # a tool while the group is active


def test_a_member_may_commit_partitions_it_is_revoking(coord):
    a = Sim(coord, client_id="a")
    a.beat()
    Sim(coord, client_id="b")
    a.stall = True
    a.beat()  # revocation announced, a still holds all six
    coord.check_commit("g", a.member_id, a.resp["generation"], sorted(a.owned))
    a.stall = False
    a.beat()
    a.beat()
    gone = {("t", p) for p in range(6)} - a.owned
    with pytest.raises(IllegalGenerationError):
        coord.check_commit("g", a.member_id, a.resp["generation"], sorted(gone))


def test_a_tool_may_commit_to_an_empty_or_unknown_group(coord):
    coord.check_commit("fresh", "", -1, [("t", 0)])
    a = Sim(coord)
    a.leave()
    coord.check_commit("g", "", -1, [("t", 0)])


def test_an_expired_member_cannot_commit(coord, clock):
    a = Sim(coord, session_timeout_ms=1000)
    a.beat()
    clock.advance(1.5)
    with pytest.raises(UnknownMemberIdError):
        coord.check_commit("g", a.member_id, a.resp["generation"], sorted(a.owned))


def test_delete_only_when_empty(coord):
    a = Sim(coord)
    with pytest.raises(NonEmptyGroupError, match="stop"):
        coord.delete("g")
    a.leave()
    coord.delete("g")
    assert coord.describe("g") is None
    assert coord.state_of("g") == "Dead"


def test_rejoin_with_a_known_member_id_updates_that_member(coord):
    a = Sim(coord)
    resp = coord.join(
        "g",
        client_id="c",
        client_host="h",
        topics=["t"],
        assignors=["range"],
        session_timeout_ms=5000,
        max_poll_interval_ms=1000,
        member_id=a.member_id,
    )
    assert resp["member_id"] == a.member_id
    assert len(coord.describe("g")["members"]) == 1


def test_random_churn_never_gives_a_partition_to_two_members(clock, topics):
    rng = random.Random(7)
    coord = Coordinator(clock, topics)
    live: list[Sim] = []
    for step in range(300):
        action = rng.random()
        if action < 0.1 and len(live) < 6:
            live.append(
                Sim(
                    coord,
                    client_id=f"c{step}",
                    session_timeout_ms=2000,
                    assignors=(rng.choice(["sticky", "range"]), "range"),
                )
            )
        elif action < 0.15 and live:
            live.pop(rng.randrange(len(live))).leave()
        elif action < 0.18 and live:  # a member dies silently
            live.pop(rng.randrange(len(live)))
        elif action < 0.2:
            topics.counts["t"] = rng.randint(2, 9)
            coord.topics_changed(["t"])
        else:
            for m in list(live):
                m.stall = rng.random() < 0.3
                m.beat()
        clock.advance(0.2)
        coord.tick()
        assert_disjoint(*live)
    for m in live:
        m.stall = False
    for _ in range(6):
        clock.advance(0.2)
        for m in live:
            m.beat()
    coord.tick()
    if live:
        assert coord.state_of("g") == STABLE
        owned = set().union(*(m.owned for m in live))
        assert owned == {("t", p) for p in range(topics.counts["t"])}


class CountingTopics(Topics):
    """Counts lookups: the work a coordinator does over subscriptions."""

    def __init__(self, **counts):
        super().__init__(**counts)
        self.lookups = 0

    def __call__(self, topic):
        self.lookups += 1
        return super().__call__(topic)


def test_tick_costs_nothing_per_subscribed_topic(clock):
    """Issue 11 item 7: ten members naming 10,000 missing topics each made every
    tick look up all 100,000 names (the broker then answered nobody quickly)."""
    topics = CountingTopics(t=2)
    coord = Coordinator(clock, topics)
    for i in range(10):
        Sim(
            coord,
            group=f"evil{i}",
            topics=[f"nx{i}-{n}" for n in range(10_000)],
            session_timeout_ms=3_600_000,
        )
    good = Sim(coord, group="good")
    topics.lookups = 0
    for _ in range(20):
        clock.advance(0.1)
        coord.tick()
        good.beat()
    assert topics.lookups == 0
    topics.counts["nx3-7"] = 4  # one of the named topics is created
    coord.topics_changed(["nx3-7", "unrelated"])
    assert topics.lookups < 10_000 + 10  # evil3 alone rebalanced (one pass over its names)
    assert coord.describe("evil3")["generation"] == 2
    assert coord.describe("evil4")["generation"] == 1
    assert coord.describe("good")["generation"] == 1


def test_topics_changed_rebalances_only_on_a_real_count_change(coord, topics):
    a = Sim(coord)
    settle(a)
    coord.topics_changed(["t"])  # same count: nothing to do
    assert a.beat()["generation"] == 1
    topics.counts["t"] = 9
    coord.topics_changed(["t"])
    settle(a)
    assert a.resp["generation"] == 2
    assert len(a.owned) == 9


def test_expiry_heap_follows_heartbeats_and_shorter_timeouts(coord, clock):
    a = Sim(coord, client_id="a", session_timeout_ms=1000)
    b = Sim(coord, client_id="b", session_timeout_ms=60_000)
    for _ in range(30):  # a heartbeats for 6 s: never expired
        clock.advance(0.2)
        coord.tick()
        a.beat()
    assert coord.describe("g")["members"].__len__() == 2
    b.resp = coord.join(
        "g",
        client_id="b",
        client_host="",
        topics=["t"],
        assignors=["range"],
        session_timeout_ms=500,
        max_poll_interval_ms=300_000,
        member_id=b.member_id,
    )
    clock.advance(0.6)
    a.beat()
    coord.tick()
    assert [m["client_id"] for m in coord.describe("g")["members"]] == ["a"]
    clock.advance(1.1)
    coord.tick()
    assert coord.state_of("g") == EMPTY


def test_a_member_exactly_at_its_deadline_does_not_stall_the_tick(coord, clock):
    """The expiry test is strict (> session timeout): such a member waits a tick."""
    Sim(coord, session_timeout_ms=1000)
    clock.advance(1.0)  # now == last_seen + session timeout, exactly
    coord.tick()  # returns (it used to spin on the heap)
    assert coord.state_of("g") != EMPTY
    clock.advance(0.1)
    coord.tick()
    assert coord.state_of("g") == EMPTY


def test_a_join_leave_loop_does_not_grow_the_expiry_heap(coord):
    """Members that left used to keep their heap entry (and ids) until their deadline,
    up to session_timeout_ms = 1 hour."""
    stay = Sim(coord, group="stay", session_timeout_ms=3_600_000)
    for i in range(5000):
        Sim(coord, group=f"once{i}", session_timeout_ms=3_600_000).leave()
    assert len(coord._deadlines) <= 2 * 1 + 1024
    stay.beat()
    assert coord.describe("stay")["members"][0]["member_id"] == stay.member_id


def test_group_max_size_refuses_a_new_member_not_a_known_one(clock, topics):
    from labkit.errors import GroupMaxSizeReachedError

    coord = Coordinator(clock, topics, max_group_size=3)
    members = [Sim(coord, client_id=f"c{i}") for i in range(3)]
    with pytest.raises(GroupMaxSizeReachedError, match=r"group.max.size=3"):
        Sim(coord, client_id="one-too-many")
    again = coord.join(
        "g",
        client_id="c0",
        client_host="",
        topics=["t"],
        assignors=["range"],
        session_timeout_ms=10_000,
        max_poll_interval_ms=300_000,
        member_id=members[0].member_id,
    )
    assert again["members"] == 3
    members[1].leave()
    assert Sim(coord, client_id="now-fits").resp["members"] == 3
