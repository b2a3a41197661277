"""Kafka's classic group coordinator (labkit/broker/classic_groups.py) without sockets:
joins, syncs, generations, timeouts and leaves, with FakeClock."""

from __future__ import annotations

import base64

import pytest

from labkit.broker.classic_api import handle_classic
from labkit.broker.classic_groups import (
    COMPLETING,
    EMPTY,
    PREPARING,
    STABLE,
    ClassicCoordinator,
)
from labkit.broker.group_api import GroupService
from labkit.errors import (
    FencedInstanceIdError,
    IllegalGenerationError,
    InconsistentGroupProtocolError,
    MemberIdRequiredError,
    RebalanceInProgressError,
    UnknownMemberIdError,
)
from labkit.kafka.consumer_protocol import (
    decode_assignment,
    decode_subscription,
    encode_assignment,
    encode_subscription,
)
from labkit.testing import FakeClock

SESSION_MS = 10_000
REBALANCE_MS = 30_000
SUB = encode_subscription(["t"])


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def coord(clock):
    return ClassicCoordinator(clock)


def join(coord, waiter, member_id="", protocols=(("range", SUB),), group="g", **kw):
    args = {
        "member_id": member_id,
        "group_instance_id": None,
        "client_id": waiter,
        "client_host": "/127.0.0.1",
        "session_timeout_ms": SESSION_MS,
        "rebalance_timeout_ms": REBALANCE_MS,
        "protocol_type": "consumer",
        "protocols": list(protocols),
        "require_member_id": False,
    }
    args.update(kw)
    return dict(coord.join(waiter, group, **args))


def sync(coord, waiter, member_id, generation, assignments=None, group="g"):
    return dict(
        coord.sync(
            waiter,
            group,
            member_id=member_id,
            generation=generation,
            protocol_type=None,
            protocol_name=None,
            assignments=assignments or {},
        )
    )


def stable_pair(coord):
    """Two members, generation 2, stable: (leader id, follower id)."""
    a = join(coord, "a1")["a1"]
    sync(coord, "a2", a["member_id"], 1, {a["member_id"]: encode_assignment([("t", 0)])})
    assert join(coord, "b1") == {}  # waits for the first member to rejoin
    answers = join(coord, "a3", a["member_id"])
    leader, follower = answers["a3"], answers["b1"]
    assert leader["generation"] == follower["generation"] == 2
    assert sync(coord, "b2", follower["member_id"], 2) == {}  # waits for the leader
    done = sync(
        coord,
        "a4",
        leader["member_id"],
        2,
        {
            leader["member_id"]: encode_assignment([("t", 0)]),
            follower["member_id"]: encode_assignment([("t", 1)]),
        },
    )
    assert decode_assignment(base64.b64decode(done["b2"]["assignment"])) == [("t", 1)]
    return leader["member_id"], follower["member_id"]


def test_a_first_join_from_v4_gets_a_member_id_then_joins_with_it(coord):
    with pytest.raises(MemberIdRequiredError) as raised:
        join(coord, "w1", require_member_id=True)
    member_id = raised.value.member_id
    assert member_id.startswith("w1-")
    assert coord.state_of("g") == EMPTY
    answer = join(coord, "w2", member_id, require_member_id=True)["w2"]
    assert answer["error"] == 0
    assert answer["member_id"] == member_id
    assert answer["leader"] == member_id
    assert answer["generation"] == 1
    assert [m["member_id"] for m in answer["members"]] == [member_id]
    assert base64.b64decode(answer["members"][0]["metadata"]) == SUB
    assert coord.state_of("g") == COMPLETING


def test_a_second_member_waits_and_the_leader_alone_gets_every_members_metadata(coord):
    leader, follower = stable_pair(coord)
    assert coord.state_of("g") == STABLE
    described = coord.describe("g")
    assert described["generation"] == 2
    assert described["assignor"] == "range"
    assignments = {m["member_id"]: m["assignment"] for m in described["members"]}
    assert assignments == {leader: [["t", 0]], follower: [["t", 1]]}
    assert {tuple(m["topics"]) for m in described["members"]} == {("t",)}


def test_heartbeats_during_a_rebalance_say_rebalance_in_progress(coord):
    _leader, follower = stable_pair(coord)
    assert coord.heartbeat("g", follower, 2) == {"error": 0}
    join(coord, "c1")  # a third member starts a rebalance
    assert coord.state_of("g") == PREPARING
    with pytest.raises(RebalanceInProgressError):
        coord.heartbeat("g", follower, 2)
    with pytest.raises(IllegalGenerationError):
        coord.heartbeat("g", follower, 1)
    with pytest.raises(UnknownMemberIdError):
        coord.heartbeat("g", "nobody", 2)
    with pytest.raises(UnknownMemberIdError):
        coord.heartbeat("other-group", follower, 2)


def test_the_protocol_is_one_every_member_supports_else_inconsistent(coord):
    sticky, rng, rr = ("cooperative-sticky", SUB), ("range", SUB), ("roundrobin", SUB)
    a = join(coord, "a1", protocols=[sticky, rng])["a1"]
    assert a["protocol_name"] == "cooperative-sticky"
    sync(coord, "a2", a["member_id"], 1)
    join(coord, "b1", protocols=[rng, sticky])
    answers = join(coord, "a3", a["member_id"], protocols=[sticky, rng])
    assert answers["a3"]["protocol_name"] in ("cooperative-sticky", "range")
    with pytest.raises(InconsistentGroupProtocolError, match="range"):
        join(coord, "c1", protocols=[rr])
    with pytest.raises(InconsistentGroupProtocolError):
        join(coord, "c2", protocols=[])


def test_a_member_that_does_not_rejoin_is_dropped_at_the_rebalance_timeout(coord, clock):
    leader, follower = stable_pair(coord)
    join(coord, "c1")  # rebalance; the follower keeps heartbeating but never rejoins
    answers = join(coord, "a5", leader)
    assert answers == {}
    clock.advance(REBALANCE_MS / 1000 - 1)
    with pytest.raises(RebalanceInProgressError):
        coord.heartbeat("g", follower, 2)
    assert dict(coord.tick()) == {}
    clock.advance(1.5)
    answers = dict(coord.tick())
    assert set(answers) == {"a5", "c1"}
    assert answers["a5"]["generation"] == 3
    assert len(answers["a5"]["members"]) == 2
    with pytest.raises(UnknownMemberIdError):
        coord.heartbeat("g", follower, 3)


def test_a_silent_member_expires_after_its_session_timeout(coord, clock):
    leader, _follower = stable_pair(coord)
    clock.advance(SESSION_MS / 1000 / 2)
    coord.heartbeat("g", leader, 2)
    clock.advance(SESSION_MS / 1000 / 2 + 0.1)
    assert coord.tick() == []
    assert coord.state_of("g") == PREPARING  # the follower was silent: gone
    with pytest.raises(RebalanceInProgressError):
        coord.heartbeat("g", leader, 2)
    answers = join(coord, "a5", leader)
    assert answers["a5"]["generation"] == 3
    assert len(answers["a5"]["members"]) == 1


def test_leaving_rebalances_the_others_and_the_last_leave_empties_the_group(coord):
    leader, follower = stable_pair(coord)
    codes, answers = coord.leave("g", [follower, "nobody"])
    assert codes == [0, UnknownMemberIdError.errno]
    assert answers == []
    assert coord.state_of("g") == PREPARING
    assert join(coord, "a5", leader)["a5"]["generation"] == 3
    codes, answers = coord.leave("g", [leader])
    assert codes == [0]
    assert coord.state_of("g") == EMPTY
    assert not coord.has_members("g")
    assert coord.forget("g")
    assert not coord.knows("g")


def test_a_leader_that_never_syncs_does_not_stall_the_followers(coord, clock):
    a = join(coord, "a1")["a1"]
    sync(coord, "a2", a["member_id"], 1)
    join(coord, "b1")
    answers = join(coord, "a3", a["member_id"])
    follower = answers["b1"]["member_id"]
    assert sync(coord, "b2", follower, 2) == {}  # the leader (a) never sends its sync
    clock.advance(REBALANCE_MS / 1000 + 0.1)
    answers = dict(coord.tick())
    assert answers["b2"]["error"] == RebalanceInProgressError.errno
    rejoined = join(coord, "b3", follower)["b3"]
    assert rejoined["leader"] == follower
    assert rejoined["generation"] == 3
    assert [m["member_id"] for m in rejoined["members"]] == [follower]


def test_a_member_id_handed_out_and_never_used_holds_the_join_only_for_a_session(coord, clock):
    leader, follower = stable_pair(coord)
    with pytest.raises(MemberIdRequiredError):
        join(coord, "c1", require_member_id=True)  # never comes back
    join(coord, "a5", leader)
    assert join(coord, "b5", follower) == {}  # waits for the pending member
    clock.advance(SESSION_MS / 1000 + 0.1)
    answers = dict(coord.tick())
    assert answers["a5"]["generation"] == 3
    assert len(answers["a5"]["members"]) == 2


def test_the_initial_delay_gathers_members_into_one_generation(clock):
    coord = ClassicCoordinator(clock, initial_delay_ms=3000)
    assert join(coord, "a1") == {}
    clock.advance(2)
    assert join(coord, "b1") == {}  # the delay starts again (up to the rebalance timeout)
    clock.advance(2)
    assert coord.tick() == []
    clock.advance(1.1)
    answers = dict(coord.tick())
    assert answers["a1"]["generation"] == answers["b1"]["generation"] == 1


def test_commits_are_checked_as_kafka_checks_them(coord):
    coord.check_commit("g", "", -1)  # a simple consumer, unknown group: fine
    leader, follower = stable_pair(coord)
    coord.check_commit("g", follower, 2)
    with pytest.raises(UnknownMemberIdError):
        coord.check_commit("g", "", -1)  # the group has members
    with pytest.raises(IllegalGenerationError):
        coord.check_commit("g", follower, 1)
    join(coord, "c1")
    coord.check_commit("g", follower, 2)  # preparing: the old generation may still commit
    join(coord, "a5", leader)
    answers = join(coord, "b5", follower)
    assert set(answers) == {"a5", "b5", "c1"}
    with pytest.raises(RebalanceInProgressError):
        coord.check_commit("g", follower, 3)  # completing: wait for the assignment


def test_a_join_sent_again_answers_the_first_one(coord):
    a = join(coord, "a1")["a1"]
    sync(coord, "a2", a["member_id"], 1)
    assert join(coord, "b1") == {}
    b = next(m["member_id"] for m in coord.describe("g")["members"] if m["client_id"] == "b1")
    answers = join(coord, "b2", b)  # a retry: the first join must not wait forever
    assert answers == {"b1": {"error": RebalanceInProgressError.errno}}
    answers = join(coord, "a3", a["member_id"])
    assert set(answers) == {"a3", "b2"}


def test_garbage_metadata_and_assignments_break_nothing(coord):
    garbage = b"\xff\xff\x7f\xff\xff\xff\x00"
    a = join(coord, "a1", protocols=[("range", garbage)])["a1"]
    sync(coord, "a2", a["member_id"], 1, {a["member_id"]: garbage, "nobody": b"x"})
    described = coord.describe("g")
    assert described["members"][0]["assignment"] == []
    assert described["members"][0]["topics"] == []
    assert base64.b64decode(described["members"][0]["member_assignment"]) == garbage
    assert decode_subscription(garbage) is None
    assert decode_assignment(garbage) is None
    assert decode_subscription(SUB) == ["t"]


def test_the_service_refuses_mixing_protocols_and_bad_headers(tmp_path, clock):
    groups = GroupService(tmp_path, clock, lambda t: 4, lambda t, p: 0)
    try:
        labkit_join = {"group_id": "mine", "member_id": "", "topics": ["t"]}
        assert groups.handle("join_group", labkit_join)["error"] == 0
        kafka_join = {
            "group_id": "mine",
            "member_id": "",
            "session_timeout_ms": SESSION_MS,
            "protocol_type": "consumer",
            "protocols": [["range", base64.b64encode(SUB).decode()]],
        }
        ((_, answer),) = handle_classic(groups, "w", "classic_join", kafka_join)
        assert answer["error"] == InconsistentGroupProtocolError.errno
        ((_, answer),) = handle_classic(
            groups, "w", "classic_join", {**kafka_join, "group_id": "k"}
        )
        assert answer["error"] == 0
        refused = groups.handle("join_group", {**labkit_join, "group_id": "k"})
        assert refused["error"] == InconsistentGroupProtocolError.errno
        commit = {"group_id": "mine", "member_id": "", "generation": -1, "offsets": []}
        refused = groups.handle("offset_commit", {**commit, "classic": True})
        assert refused["error"] == InconsistentGroupProtocolError.errno
        for bad in (
            {**kafka_join, "protocols": [["range", "not base64!"]]},
            {**kafka_join, "protocols": "x"},
            {**kafka_join, "session_timeout_ms": "x"},
            {**kafka_join, "protocols": [["range", base64.b64encode(b"x" * 40000).decode()]]},
        ):
            ((_, answer),) = handle_classic(groups, "w", "classic_join", {**bad, "group_id": "k2"})
            assert answer["error"] == 42, answer
        listed = {g["group_id"]: g["state"] for g in groups.handle("list_groups", {})["groups"]}
        assert listed == {"mine": "PreparingRebalance", "k": "CompletingRebalance"}
        described = groups.handle("describe_groups", {"group_ids": ["k"]})["groups"][0]
        assert described["protocol"] == "classic"
        assert len(described["members"]) == 1
        deleted = groups.handle("delete_groups", {"group_ids": ["k"]})["groups"][0]
        assert deleted["error"] == 68  # NON_EMPTY_GROUP
    finally:
        groups.close()


def test_a_static_member_that_restarts_keeps_its_assignment_without_a_rebalance(coord):
    a = join(coord, "a1")["a1"]
    sync(coord, "a2", a["member_id"], 1)
    b = join(coord, "b1", group_instance_id="host-b", require_member_id=True)
    assert b == {}  # a static member needs no MEMBER_ID_REQUIRED round; waits for a
    answers = join(coord, "a3", a["member_id"])
    old_b = answers["b1"]["member_id"]
    assert old_b.startswith("host-b-")
    sync(
        coord,
        "a4",
        a["member_id"],
        2,
        {a["member_id"]: b"A", old_b: b"B"},
    )
    # b restarts: same group.instance.id, no member id; the group stays at generation 2
    again = join(coord, "b2", group_instance_id="host-b")["b2"]
    assert again["generation"] == 2
    assert again["member_id"] != old_b
    assert coord.state_of("g") == STABLE
    assert base64.b64decode(sync(coord, "b3", again["member_id"], 2)["b3"]["assignment"]) == b"B"
    with pytest.raises(FencedInstanceIdError):  # the old incarnation is fenced
        coord.heartbeat("g", old_b, 2, "host-b")
    with pytest.raises(FencedInstanceIdError):
        join(coord, "b4", old_b, group_instance_id="host-b")
    # a changed subscription rebalances as for any member
    join(coord, "b5", group_instance_id="host-b", protocols=[("range", encode_subscription(["u"]))])
    assert coord.state_of("g") == PREPARING


def test_at_shutdown_every_waiting_request_is_answered(coord):
    a = join(coord, "a1")["a1"]
    sync(coord, "a2", a["member_id"], 1)
    assert join(coord, "b1") == {}  # waits for a to rejoin
    assert dict(coord.answer_all()) == {"b1": {"error": 15}}  # COORDINATOR_NOT_AVAILABLE
    assert coord.answer_all() == []


def test_a_follower_joining_again_unchanged_gets_the_current_generation_not_a_rebalance(coord):
    """Kafka's rule: kafka-python's follower rejoins when its poll() timed out mid-join;
    a rebalance each time would never end (the client matrix saw generation 13+)."""
    _leader, follower = stable_pair(coord)
    answer = join(coord, "b3", follower)["b3"]
    assert (answer["error"], answer["generation"], answer["members"]) == (0, 2, [])
    assert coord.state_of("g") == STABLE
    synced = sync(coord, "b4", follower, 2)["b4"]
    assert decode_assignment(base64.b64decode(synced["assignment"])) == [("t", 1)]


def test_a_leader_or_a_changed_member_joining_again_rebalances(coord):
    leader, _follower = stable_pair(coord)
    assert join(coord, "a5", leader) == {}  # the leader may want to reassign: rebalance
    assert coord.state_of("g") == PREPARING
    other = encode_subscription(["t", "u"])
    coord2 = ClassicCoordinator(FakeClock())
    _leader2, follower2 = stable_pair(coord2)
    assert join(coord2, "b5", follower2, protocols=(("range", other),)) == {}
    assert coord2.state_of("g") == PREPARING


def test_a_member_joining_again_while_others_sync_gets_the_same_generation(coord):
    a = join(coord, "a1")["a1"]
    sync(coord, "a2", a["member_id"], 1, {a["member_id"]: encode_assignment([("t", 0)])})
    join(coord, "b1")
    answers = join(coord, "a3", a["member_id"])
    assert coord.state_of("g") == COMPLETING
    follower = answers["b1"]["member_id"]
    again = join(coord, "b2", follower)["b2"]  # it missed its answer: the same one again
    assert (again["generation"], again["leader"]) == (2, a["member_id"])
    again_leader = join(coord, "a4", a["member_id"])["a4"]
    assert [m["member_id"] for m in again_leader["members"]] == [a["member_id"], follower]
    assert coord.state_of("g") == COMPLETING


def test_a_group_whose_coordinator_moved_is_dropped_and_its_waiters_told(coord, clock):
    """Cluster mode: the group's __consumer_offsets partition is led elsewhere now."""
    a = join(coord, "a1")["a1"]
    sync(coord, "a2", a["member_id"], 1)
    assert join(coord, "b1") == {}  # waits for a to rejoin
    join(coord, "x1", group="other")
    assert dict(coord.unload("g")) == {"b1": {"error": 16}}  # NOT_COORDINATOR: find it again
    assert coord.group_ids() == ["other"]
    assert coord.unload("g") == []
    clock.advance(REBALANCE_MS / 1000 + 1)
    assert coord.tick() == []  # its rebalance timer finds no group, answers nobody
