"""Hostile input to the replica APIs of a real broker: replica_id and
offsets_for_leader_epoch. Each bad request gets a specific error; the broker keeps
serving a well-behaved client."""

from __future__ import annotations

import pytest

from labkit.testing import RawClient

TOPIC = "replica-abuse"
INVALID_REQUEST = 42


@pytest.fixture
def client(broker):
    with RawClient(broker.bootstrap) as c:
        header, _ = c.request("create_topics", {"topics": [{"name": TOPIC, "num_partitions": 1}]})
        assert header["topics"][0]["error"] == 0, header
        yield c


@pytest.mark.parametrize(
    "replica_id", [-2, -(2**63), 2**31, 2**63 - 1, "1", 1.0, True, None, [], {"id": 1}]
)
def test_a_bad_replica_id_is_refused(client, well_behaved, replica_id):
    header, _ = client.request(
        "fetch",
        {"max_wait_ms": 0, "partitions": [[TOPIC, 0, 0, 1024]], "replica_id": replica_id},
    )
    assert header["error"] == INVALID_REQUEST, header
    assert "replica_id" in header["message"]
    well_behaved.round_trip()


@pytest.mark.parametrize(
    "partitions",
    [
        None,
        "all",
        [[TOPIC, 0, -1]],
        [[TOPIC, 0, -1, 0, 9]],
        [[TOPIC, "0", -1, 0]],
        [[0, 0, -1, 0]],
        [[TOPIC, 0, -1, 0.5]],
        [[TOPIC, 0, -1, 0]] * 10_001,
    ],
)
def test_malformed_offsets_for_leader_epoch_is_invalid_request(client, well_behaved, partitions):
    header, _ = client.request("offsets_for_leader_epoch", {"partitions": partitions})
    assert header["error"] == INVALID_REQUEST, header
    well_behaved.round_trip()


def test_odd_but_well_formed_rows_get_per_partition_answers(client, well_behaved):
    rows = [
        [TOPIC, 0, -(2**63), 2**63 - 1],  # no check, an epoch past every known one
        [TOPIC, 0, 2**63 - 1, -(2**63)],  # with no epochs here, nothing to fence or find
        [TOPIC, -1, -1, 0],
        [TOPIC, 2**63 - 1, -1, 0],
        ["no-such-topic", 0, -1, 0],
        ["", 0, -1, 0],
    ]
    header, _ = client.request("offsets_for_leader_epoch", {"partitions": rows})
    assert header["error"] == 0, header
    answers = header["partitions"]
    assert [a[:2] for a in answers] == [r[:2] for r in rows]
    assert answers[0][2:] == [0, -1, -1]
    assert answers[1][2:] == [0, -1, -1]
    assert all(a[2] == 3 and a[3:] == [-1, -1] for a in answers[2:])  # UNKNOWN_TOPIC_OR_PARTITION
    well_behaved.round_trip()
