"""KafkaAdminClient's consumer-group methods against the real broker process.

Groups are populated with raw join/heartbeat/offset_commit requests (docs/groups.md),
so these tests do not depend on KafkaConsumer's group support.
"""

from __future__ import annotations

import itertools
import logging

import pytest

from labkit import (
    GroupIdNotFoundError,
    GroupSubscribedToTopicError,
    KafkaAdminClient,
    NonEmptyGroupError,
    OffsetAndMetadata,
    TopicPartition,
    UnknownMemberIdError,
    UnknownTopicOrPartitionError,
)
from labkit.client.group_admin import (
    ConsumerProtocolMemberAssignment,
    GroupInformation,
    MemberInformation,
    NoError,
)
from labkit.errors import IllegalArgumentError
from labkit.protocol.records import encode_batch
from labkit.testing import RawClient

_groups = itertools.count()


@pytest.fixture
def admin(shared_broker):
    client = KafkaAdminClient(bootstrap_servers=shared_broker.bootstrap)
    yield client
    client.close()


@pytest.fixture
def raw(shared_broker):
    with RawClient(shared_broker.bootstrap) as client:
        yield client


@pytest.fixture
def group(unique_topic):
    return f"admin-{unique_topic}-{next(_groups)}"


def make_topic(raw, topic, partitions, records=0):
    header, _ = raw.request(
        "create_topics",
        {"topics": [{"name": topic, "num_partitions": partitions, "replication_factor": 1}]},
    )
    assert header["topics"][0]["error"] == 0, header
    for p in range(partitions if records else 0):
        batch = encode_batch(
            [1_700_000_000_000 + i for i in range(records)],
            None,
            [b"v%d" % i for i in range(records)],
        )
        header, _ = raw.request(
            "produce", {"acks": 1, "timeout_ms": 5000, "targets": [[topic, p]]}, [batch]
        )
        assert header["results"][0][1] == 0, header


def join_stable(raw, group, topic, client_ids):
    """Members join and heartbeat until every one owns its target partitions."""
    members = []
    for client_id in client_ids:
        resp = raw.request(
            "join_group",
            {
                "group_id": group,
                "topics": [topic],
                "client_id": client_id,
                "client_host": "/127.0.0.1",
                "session_timeout_ms": 30000,
            },
        )[0]
        assert resp["error"] == 0, resp
        members.append(resp)
    for _ in range(6):
        members = [
            raw.request(
                "heartbeat",
                {
                    "group_id": group,
                    "member_id": m["member_id"],
                    "generation": m["generation"],
                    "owned": m["assignment"],
                },
            )[0]
            for m in members
        ]
        if all(m["state"] == "Stable" and not m["pending"] for m in members):
            break
    assert all(m["state"] == "Stable" for m in members), members
    return members


def leave(raw, group, members):
    for m in members:
        raw.request("leave_group", {"group_id": group, "member_id": m["member_id"]})


def test_list_and_describe_a_group_with_members(admin, raw, unique_topic, group):
    make_topic(raw, unique_topic, 3)
    members = join_stable(raw, group, unique_topic, ["alice", "bob"])

    assert (group, "consumer") in admin.list_consumer_groups()

    (info,) = admin.describe_consumer_groups([group])
    assert isinstance(info, GroupInformation)
    assert (info.error_code, info.group, info.state, info.protocol_type, info.protocol) == (
        0,
        group,
        "Stable",
        "consumer",
        "range",
    )
    assert info.authorized_operations is None
    assert len(info.members) == 2
    by_client = {m.client_id: m for m in info.members}
    assert set(by_client) == {"alice", "bob"}
    assert {m.member_id for m in info.members} == {m["member_id"] for m in members}
    owned = []
    for m in info.members:
        assert isinstance(m, MemberInformation)
        assert m.client_host == "/127.0.0.1"
        assert m.member_metadata.subscription == m.member_metadata.topics == [unique_topic]
        assert isinstance(m.member_assignment, ConsumerProtocolMemberAssignment)
        ((topic, parts),) = m.member_assignment.assignment
        assert m.member_assignment.assigned_partitions == [(topic, parts)]
        assert topic == unique_topic
        assert m.member_assignment.partitions() == [TopicPartition(unique_topic, p) for p in parts]
        owned += parts
    assert sorted(owned) == [0, 1, 2]  # range: disjoint, all covered
    # a single id as a string is one group, not a list of letters
    assert admin.describe_consumer_groups(group)[0].group == group
    leave(raw, group, members)


def test_idle_member_has_an_empty_assignment(admin, raw, unique_topic, group):
    make_topic(raw, unique_topic, 1)
    members = join_stable(raw, group, unique_topic, ["a", "b"])
    (info,) = admin.describe_consumer_groups([group])
    sizes = sorted(len(m.member_assignment.partitions()) for m in info.members)
    assert sizes == [0, 1]
    leave(raw, group, members)


def test_describe_unknown_group_raises(admin, group):
    with pytest.raises(GroupIdNotFoundError) as caught:
        admin.describe_consumer_groups([group])
    assert f"'{group}' does not exist" in str(caught.value)


def test_offsets_listed_altered_and_kept_with_metadata(admin, raw, unique_topic, group):
    make_topic(raw, unique_topic, 2, records=5)
    t0, t1 = TopicPartition(unique_topic, 0), TopicPartition(unique_topic, 1)
    assert admin.list_consumer_group_offsets(group) == {}  # unknown group: nothing

    result = admin.alter_consumer_group_offsets(group, {t0: OffsetAndMetadata(3, "note", -1)})
    assert result == {t0: NoError}
    assert admin.list_consumer_group_offsets(group) == {t0: OffsetAndMetadata(3, "note", -1)}
    # partitions asked for without a commit come back with offset -1, as in Kafka
    assert admin.list_consumer_group_offsets(group, partitions=[t0, t1]) == {
        t0: OffsetAndMetadata(3, "note", -1),
        t1: OffsetAndMetadata(-1, "", -1),
    }

    admin.alter_consumer_group_offsets(group, {t0: 5, t1: OffsetAndMetadata(1, "", -1)})
    assert admin.list_consumer_group_offsets(group) == {
        t0: OffsetAndMetadata(5, "", -1),
        t1: OffsetAndMetadata(1, "", -1),
    }
    # a group with only committed offsets is listed and described as Empty
    assert (group, "consumer") in admin.list_consumer_groups()
    (info,) = admin.describe_consumer_groups([group])
    assert (info.state, info.members) == ("Empty", [])


def test_alter_is_refused_while_the_group_has_members(admin, raw, unique_topic, group):
    make_topic(raw, unique_topic, 1, records=2)
    members = join_stable(raw, group, unique_topic, ["busy"])
    tp = TopicPartition(unique_topic, 0)
    with pytest.raises(UnknownMemberIdError) as caught:
        admin.alter_consumer_group_offsets(group, {tp: 1})
    assert "active member" in str(caught.value)
    assert admin.list_consumer_group_offsets(group) == {}  # nothing stored
    leave(raw, group, members)
    assert admin.alter_consumer_group_offsets(group, {tp: 1}) == {tp: NoError}


def test_alter_rejects_bad_input(admin, unique_topic, raw, group):
    make_topic(raw, unique_topic, 1)
    with pytest.raises(UnknownTopicOrPartitionError):
        admin.alter_consumer_group_offsets(group, {TopicPartition(unique_topic, 7): 0})
    with pytest.raises(IllegalArgumentError):
        admin.alter_consumer_group_offsets(group, {TopicPartition(unique_topic, 0): -1})
    with pytest.raises(IllegalArgumentError):
        admin.alter_consumer_group_offsets(group, {})


def test_delete_groups_reports_errors_like_kafka_python(admin, raw, unique_topic, group, caplog):
    make_topic(raw, unique_topic, 1, records=1)
    busy, idle, missing = group + "-busy", group + "-idle", group + "-missing"
    members = join_stable(raw, busy, unique_topic, ["c"])
    admin.alter_consumer_group_offsets(idle, {TopicPartition(unique_topic, 0): 1})

    with caplog.at_level(logging.WARNING, logger="labkit.client.group_admin"):
        results = admin.delete_consumer_groups([idle, busy, missing])
    assert results == [(idle, NoError), (busy, NonEmptyGroupError), (missing, GroupIdNotFoundError)]
    assert f"'{busy}' was not deleted" in caplog.text
    assert "active member" in caplog.text

    listed = [g for g, _ in admin.list_consumer_groups()]
    assert idle not in listed
    assert busy in listed
    assert admin.list_consumer_group_offsets(idle) == {}  # its offsets went with it
    leave(raw, busy, members)
    assert admin.delete_consumer_groups(busy) == [(busy, NoError)]
    with pytest.raises(GroupIdNotFoundError):
        admin.describe_consumer_groups([busy])


def test_delete_group_offsets_as_kafka_python_3(admin, raw, unique_topic, group):
    make_topic(raw, unique_topic, 2, records=2)
    make_topic(raw, f"{unique_topic}-b", 1)
    t0, t1 = TopicPartition(unique_topic, 0), TopicPartition(unique_topic, 1)
    b0 = TopicPartition(f"{unique_topic}-b", 0)
    with pytest.raises(GroupIdNotFoundError):
        admin.delete_group_offsets(group, [t0])
    admin.alter_consumer_group_offsets(group, {t0: 1, t1: 2, b0: 0})
    members = join_stable(raw, group, unique_topic, ["busy"])
    refused = admin.delete_group_offsets(group, [t0, b0])
    assert refused == {t0: GroupSubscribedToTopicError, b0: NoError}
    leave(raw, group, members)
    missing = TopicPartition(f"{unique_topic}-none", 0)
    assert admin.delete_group_offsets(group, [t0, missing]) == {
        t0: NoError,
        missing: UnknownTopicOrPartitionError,
    }
    assert admin.list_consumer_group_offsets(group) == {t1: OffsetAndMetadata(2, "", -1)}
