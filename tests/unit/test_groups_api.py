"""GroupService: the consumer-group wire headers of docs/groups.md, without sockets."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from labkit.broker.group_api import GROUP_APIS, GroupService
from labkit.testing import FakeClock

TOPICS = {"t": 4, "u": 2}
LOG_END = {("t", 0): 100, ("t", 1): 50, ("t", 2): 0, ("t", 3): 7, ("u", 0): 1, ("u", 1): 2}


@pytest.fixture
def clock():
    return FakeClock()


def make(tmp_path, clock, topics=TOPICS):
    return GroupService(tmp_path, clock, topics.get, lambda t, p: LOG_END.get((t, p)))


@pytest.fixture
def svc(tmp_path, clock):
    service = make(tmp_path, clock)
    yield service
    service.close()


def join(svc, group="g", topics=("t",), **extra):
    resp = svc.handle(
        "join_group",
        {
            "group_id": group,
            "member_id": "",
            "client_id": "cli",
            "client_host": "/127.0.0.1",
            "topics": list(topics),
            **extra,
        },
    )
    assert resp["error"] == 0, resp
    return resp


def beat(svc, resp, owned=None, group="g"):
    owned = resp["assignment"] if owned is None else owned
    return svc.handle(
        "heartbeat",
        {
            "group_id": group,
            "member_id": resp["member_id"],
            "generation": resp["generation"],
            "owned": owned,
        },
    )


def commit(svc, offsets, member_id="", generation=-1, group="g"):
    return svc.handle(
        "offset_commit",
        {"group_id": group, "member_id": member_id, "generation": generation, "offsets": offsets},
    )


def test_the_group_apis_are_the_ones_the_envelope_knows():
    from labkit.protocol.frames import APIS

    assert GROUP_APIS <= APIS


def test_join_heartbeat_describe_list(svc):
    a = join(svc)
    assert a["assignment"] == [["t", 0], ["t", 1], ["t", 2], ["t", 3]]
    assert beat(svc, a)["state"] == "Stable"
    described = svc.handle("describe_groups", {"group_ids": ["g"]})["groups"][0]
    assert described["state"] == "Stable"
    assert described["assignor"] == "range"
    member = described["members"][0]
    assert (member["client_id"], member["client_host"]) == ("cli", "/127.0.0.1")
    assert member["assignment"] == a["assignment"]
    listed = svc.handle("list_groups", {})
    assert listed == {
        "error": 0,
        "groups": [{"group_id": "g", "protocol_type": "consumer", "state": "Stable"}],
    }


def test_member_commit_then_fetch_with_log_end(svc):
    a = join(svc)
    beat(svc, a)
    assert commit(
        svc, [["t", 0, 40, "meta"], ["t", 1, 50, None]], a["member_id"], a["generation"]
    ) == {"error": 0}
    fetched = svc.handle("offset_fetch", {"group_id": "g", "partitions": [["t", 0], ["t", 2]]})
    assert fetched == {
        "error": 0,
        "partitions": [["t", 0, 40, "meta", 0, 100], ["t", 2, -1, "", 0, 0]],
    }
    every = svc.handle("offset_fetch", {"group_id": "g", "partitions": None})
    assert [row[:3] for row in every["partitions"]] == [["t", 0, 40], ["t", 1, 50]]


def test_stale_and_unknown_members_are_fenced(svc):
    a = join(svc)
    b = join(svc)
    resp = commit(svc, [["t", 0, 1, ""]], "ghost", 2)
    assert resp["error"] == 25
    assert "Join the group again" in resp["message"]
    resp = commit(svc, [["t", 0, 1, ""]], b["member_id"], 1)
    assert resp["error"] == 22
    assert (
        svc.handle("offset_fetch", {"group_id": "g", "partitions": [["t", 0]]})["partitions"][0][2]
        == -1
    )  # nothing was stored
    assert commit(svc, [["t", 0, 1, ""]])["error"] == 25  # a tool while members are active
    svc.handle("leave_group", {"group_id": "g", "member_id": a["member_id"]})
    svc.handle("leave_group", {"group_id": "g", "member_id": b["member_id"]})
    assert commit(svc, [["t", 0, 1, ""]]) == {"error": 0}  # now the group is Empty


def test_offsets_survive_a_restart_of_the_service(tmp_path, clock):
    svc = make(tmp_path, clock)
    assert commit(svc, [["t", 3, 7, "x"]], group="reporting") == {"error": 0}
    svc.close()
    svc = make(tmp_path, clock)
    assert svc.handle("offset_fetch", {"group_id": "reporting", "partitions": [["t", 3]]})[
        "partitions"
    ] == [["t", 3, 7, "x", 0, 7]]
    listed = svc.handle("list_groups", {})["groups"]
    assert listed == [{"group_id": "reporting", "protocol_type": "consumer", "state": "Empty"}]
    described = svc.handle("describe_groups", {"group_ids": ["reporting"]})["groups"][0]
    assert described["state"] == "Empty"
    assert described["error"] == 0
    svc.close()


def test_commit_validation(svc):
    assert commit(svc, [["nope", 0, 1, ""]])["error"] == 3
    assert commit(svc, [["t", 9, 1, ""]])["error"] == 3
    assert commit(svc, [["t", 0, 1, "x" * 5000]])["error"] == 12
    assert commit(svc, [["t", 0, -5, ""]])["error"] == 42
    assert commit(svc, [["t", 0, 1]])["error"] == 42
    assert commit(svc, [["t", 0, 1, ""]], group="")["error"] == 24


def test_join_validation(svc):
    bad = svc.handle("join_group", {"group_id": "g", "topics": ["t"], "session_timeout_ms": 5})
    assert bad["error"] == 26
    assert "45000" in bad["message"]
    assert svc.handle("join_group", {"group_id": "g", "topics": "t"})["error"] == 42
    bad = svc.handle("join_group", {"group_id": "g", "topics": ["t"], "assignors": ["x"]})
    assert bad["error"] == 23
    assert (
        svc.handle("heartbeat", {"group_id": "g", "member_id": "m", "owned": [["t"]]})["error"]
        == 42
    )


def test_delete_groups(svc):
    a = join(svc)
    commit(svc, [["t", 0, 1, ""]], a["member_id"], a["generation"])
    resp = svc.handle("delete_groups", {"group_ids": ["g", "missing"]})["groups"]
    assert [r["error"] for r in resp] == [68, 69]
    svc.handle("leave_group", {"group_id": "g", "member_id": a["member_id"]})
    resp = svc.handle("delete_groups", {"group_ids": ["g"]})
    assert resp == {"error": 0, "groups": [{"group_id": "g", "error": 0, "message": None}]}
    assert svc.handle("list_groups", {})["groups"] == []
    gone = svc.handle("describe_groups", {"group_ids": ["g"]})["groups"][0]
    assert (gone["error"], gone["state"]) == (69, "Dead")
    assert svc.handle("offset_fetch", {"group_id": "g", "partitions": None})["partitions"] == []


def test_tick_expires_members_and_follows_partition_counts(tmp_path, clock):
    topics = dict(TOPICS)
    svc = make(tmp_path, clock, topics)
    a = join(svc, session_timeout_ms=1000)
    b = join(svc, session_timeout_ms=1000)
    for _ in range(4):
        clock.advance(0.4)
        b = beat(svc, b)
    svc.tick()
    assert len(svc.handle("describe_groups", {"group_ids": ["g"]})["groups"][0]["members"]) == 1
    assert beat(svc, a)["error"] == 25
    topics["t"] = 6
    svc.topics_changed(["t"])
    for _ in range(2):
        b = beat(svc, b)
    assert len(b["assignment"]) == 6
    svc.close()


def test_a_storage_failure_is_reported_not_raised(svc):
    svc.offsets.close()
    resp = commit(svc, [["t", 0, 1, ""]])
    assert resp["error"] == 56
    assert "disk" in resp["message"]


def test_unknown_api(svc):
    assert svc.handle("produce", {})["error"] == 42


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 3) | st.text(max_size=3),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=8,
)
headers = st.dictionaries(
    st.sampled_from(
        [
            "group_id",
            "member_id",
            "generation",
            "topics",
            "owned",
            "offsets",
            "partitions",
            "group_ids",
            "session_timeout_ms",
            "assignors",
            "max_poll_interval_ms",
            "client_id",
        ]
    ),
    json_values,
    max_size=6,
)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.sampled_from(sorted(GROUP_APIS)), headers)
def test_handle_never_raises(svc, api, header):
    resp = svc.handle(api, header)
    assert isinstance(resp["error"], int), resp
    assert resp["error"] != -1, resp  # -1: a crash
    if resp["error"]:
        assert isinstance(resp["message"], str)
        assert resp["message"]


def test_a_subscription_is_bounded_and_named_by_topic_rules(svc):
    """Issue 11 item 7: a join may not name 100,000 topics; names follow Kafka's rules."""
    from labkit.broker.group_api import MAX_SUBSCRIBED_TOPICS

    header = {"group_id": "g", "member_id": "", "client_id": "cli"}
    too_many = svc.handle("join_group", {**header, "topics": [f"t{i}" for i in range(100_000)]})
    assert too_many["error"] == 42
    assert f"at most {MAX_SUBSCRIBED_TOPICS} topics" in too_many["message"]
    bad_name = svc.handle("join_group", {**header, "topics": ["t", "no spaces"]})
    assert bad_name["error"] == 17
    assert "not legal" in bad_name["message"]
    assert svc.coordinator.group_ids() == []
    at_limit = svc.handle(
        "join_group", {**header, "topics": [f"t{i}" for i in range(MAX_SUBSCRIBED_TOPICS)]}
    )
    assert at_limit["error"] == 0
    changed = svc.handle(
        "heartbeat",
        {
            "group_id": "g",
            "member_id": at_limit["member_id"],
            "generation": 1,
            "owned": [],
            "topics": ["x"] * 1001,
        },
    )
    assert changed["error"] == 42


DAY_S = 24 * 3600.0
CHECK_S = 600.0  # offsets.retention.check.interval.ms default


def listed(svc):
    return [g["group_id"] for g in svc.handle("list_groups", {})["groups"]]


def leave(svc, resp, group="g"):
    assert svc.handle("leave_group", {"group_id": group, "member_id": resp["member_id"]}) == {
        "error": 0
    }


def test_empty_groups_without_offsets_are_forgotten_at_the_next_check(svc, clock):
    """Issue 11 item 12: 20,000 one-shot groups (join, leave, no commit) were kept forever."""
    for i in range(200):
        leave(svc, join(svc, group=f"once{i}"), group=f"once{i}")
    join(svc, group="active", session_timeout_ms=3_600_000)
    assert len(listed(svc)) == 201
    clock.advance(CHECK_S - 1)
    svc.tick()
    assert len(listed(svc)) == 201  # not before the check interval
    clock.advance(1)
    svc.tick()
    assert listed(svc) == ["active"]
    assert svc.coordinator.group_ids() == ["active"]


def test_offsets_expire_after_retention_counted_from_when_the_group_became_empty(tmp_path, clock):
    svc = make(tmp_path, clock)
    member = join(svc, session_timeout_ms=3_600_000)
    assert commit(svc, [["t", 0, 42, "m"]], member["member_id"], 1)["error"] == 0
    for _ in range(8):  # active for 8 days; committed only at the start
        for _ in range(24):
            clock.advance(3000)
            member = beat(svc, member)
    leave(svc, member)
    svc.tick()
    clock.advance(7 * DAY_S - CHECK_S)  # the commit is 15 days old, the group empty < 7 days
    svc.tick()
    assert (
        svc.handle("offset_fetch", {"group_id": "g", "partitions": [["t", 0]]})["partitions"][0][2]
        == 42
    )
    clock.advance(CHECK_S)
    svc.tick()
    assert listed(svc) == []
    assert (
        svc.handle("offset_fetch", {"group_id": "g", "partitions": [["t", 0]]})["partitions"][0][2]
        == -1
    )
    svc.close()
    reopened = make(tmp_path, clock)  # the expiry is durable
    assert listed(reopened) == []
    reopened.close()


def test_offsets_known_only_from_the_log_expire_from_their_newest_commit(tmp_path, clock):
    svc = make(tmp_path, clock)
    assert commit(svc, [["t", 0, 1, ""]], group="tool")["error"] == 0
    clock.advance(3 * DAY_S)
    assert commit(svc, [["t", 1, 5, ""]], group="tool")["error"] == 0
    svc.close()
    svc = make(tmp_path, clock)  # after a restart only the offsets are known
    clock.advance(7 * DAY_S - 60)
    svc.tick()
    assert listed(svc) == ["tool"]
    clock.advance(CHECK_S)
    svc.tick()
    assert listed(svc) == []
    svc.close()


def test_retention_settings_are_honoured(tmp_path, clock):
    svc = GroupService(
        tmp_path,
        clock,
        TOPICS.get,
        lambda t, p: 0,
        offsets_retention_ms=60_000,
        retention_check_interval_ms=1000,
    )
    assert commit(svc, [["t", 0, 1, ""]], group="short")["error"] == 0
    clock.advance(59)
    svc.tick()
    assert listed(svc) == ["short"]
    clock.advance(1)
    svc.tick()
    assert listed(svc) == []
    svc.close()
