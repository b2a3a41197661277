"""The controller's decisions (labkit/cluster/decisions.py) and the znodes' JSON, without
ZooKeeper: replica assignment as Kafka's AdminUtils, leader election from the ISR, unclean
election, offline partitions, and Kafka's own JSON read back."""

from __future__ import annotations

import json
import random

import pytest

from labkit.cluster import znodes
from labkit.cluster.decisions import (
    ClusterSnapshot,
    TopicView,
    added_partitions_assignment,
    assign_replicas,
    decide_state,
    new_topic_assignment,
    partition_changes,
    topics_to_delete,
)
from labkit.cluster.znodes import BrokerInfo, PartitionState
from labkit.errors import InvalidPartitionsError, InvalidReplicationFactorError

# -- assignment --------------------------------------------------------------------------


def test_assignment_is_kafkas_for_a_fixed_start():
    # Kafka's AdminUtilsTest.testReplicaAssignment: 5 brokers, 10 partitions, RF 3, start 0
    expected = {
        0: (0, 1, 2),
        1: (1, 2, 3),
        2: (2, 3, 4),
        3: (3, 4, 0),
        4: (4, 0, 1),
        5: (0, 2, 3),
        6: (1, 3, 4),
        7: (2, 4, 0),
        8: (3, 0, 1),
        9: (4, 1, 2),
    }
    assert assign_replicas(10, 3, [4, 2, 0, 3, 1], 0, 0) == expected


def test_assignment_spreads_leaders_and_never_repeats_a_broker():
    got = new_topic_assignment(12, 3, [1, 2, 3], random.Random(7))
    leaders = [replicas[0] for replicas in got.values()]
    assert sorted(leaders.count(b) for b in (1, 2, 3)) == [4, 4, 4]
    assert all(len(set(replicas)) == 3 for replicas in got.values())


def test_replication_factor_over_live_brokers_is_kafkas_error():
    with pytest.raises(InvalidReplicationFactorError) as info:
        new_topic_assignment(1, 3, [1, 2], random.Random(0))
    assert str(info.value.args[0]) == "Replication factor: 3 larger than available brokers: 2."
    with pytest.raises(InvalidReplicationFactorError, match="must be larger than 0"):
        assign_replicas(1, 0, [1], 0, 0)


def test_added_partitions_continue_the_assignment():
    existing = assign_replicas(3, 2, [1, 2, 3], 0, 0)
    added = added_partitions_assignment(existing, 6, [1, 2, 3])
    assert sorted(added) == [3, 4, 5]
    assert all(len(set(replicas)) == 2 for replicas in added.values())
    assert [replicas[0] for replicas in added.values()] == [1, 2, 3]
    with pytest.raises(InvalidPartitionsError, match="would not be an increase"):
        added_partitions_assignment(existing, 3, [1, 2, 3])


# -- leaders and ISRs ----------------------------------------------------------------------


def _state(leader, epoch, isr, ce=1):
    return PartitionState(leader, epoch, tuple(isr), ce)


def test_new_partition_leader_is_the_first_live_replica():
    new, _why = decide_state((2, 3, 1), None, frozenset({1, 3}), False, 4)
    assert new == _state(3, 0, (3, 1), ce=4)
    assert decide_state((2, 3), None, frozenset({1}), False, 4) is None


def test_dead_leader_is_replaced_from_the_isr_with_the_next_epoch():
    state = _state(1, 5, (1, 2, 3))
    new, why = decide_state((1, 2, 3), state, frozenset({2, 3}), False, 2)
    assert new == _state(2, 6, (2, 3), ce=2)
    assert "leader 1 is gone" in why


def test_a_live_replica_outside_the_isr_is_not_elected_cleanly():
    state = _state(1, 5, (1,))
    new, why = decide_state((1, 2, 3), state, frozenset({2, 3}), False, 2)
    assert new == _state(-1, 6, (1,), ce=2)  # offline; the ISR keeps its last member
    assert "unclean.leader.election.enable=false" in why
    # nothing more to write while it stays so
    assert decide_state((1, 2, 3), new, frozenset({2, 3}), False, 2) is None


def test_unclean_election_takes_a_live_replica_and_says_so():
    state = _state(1, 5, (1,))
    new, why = decide_state((1, 2, 3), state, frozenset({3}), True, 2)
    assert new == _state(3, 6, (3,), ce=2)
    assert "records may be lost" in why


def test_all_isr_dead_keeps_the_last_member_and_it_leads_again_when_back():
    offline, _ = decide_state((1, 2, 3), _state(1, 0, (1, 2, 3)), frozenset(), False, 1)
    assert offline == _state(-1, 1, (3,))
    back, _ = decide_state((1, 2, 3), offline, frozenset({1, 3}), False, 1)
    assert back == _state(3, 2, (3,))


def test_dead_followers_leave_a_live_leaders_isr():
    new, _ = decide_state((1, 2, 3), _state(1, 0, (1, 2, 3)), frozenset({1, 3}), False, 1)
    assert new == _state(1, 1, (1, 3))
    assert decide_state((1, 2, 3), new, frozenset({1, 2, 3}), False, 1) is None


def test_partition_changes_use_versions_and_topic_config():
    topic = TopicView(
        "t",
        {0: (1, 2), 1: (2, 1)},
        {"unclean.leader.election.enable": "true"},
        {0: (_state(1, 0, (1,)), 7)},
    )
    gone = TopicView("gone", {0: (1,)}, marked_for_deletion=True)
    snap = ClusterSnapshot({2: BrokerInfo(2, "h", 1)}, 2, 3, "id", {"t": topic, "gone": gone})
    changes = partition_changes(snap, unclean_default=False)
    assert [(c.partition, c.new.leader, c.version) for c in changes] == [(0, 2, 7), (1, 2, None)]
    assert all(c.new.controller_epoch == 3 for c in changes)
    assert topics_to_delete(snap) == ["gone"]


# -- the znodes' JSON ---------------------------------------------------------------------------


def test_znodes_round_trip_and_read_what_kafka_wrote():
    kafka_broker = (
        b'{"features":{},"listener_security_protocol_map":{"PLAINTEXT":"PLAINTEXT"},'
        b'"endpoints":["PLAINTEXT://kafka1:9092"],"jmx_port":-1,"port":9092,'
        b'"host":"kafka1","version":5,"timestamp":"1700000000000"}'
    )
    assert znodes.decode_broker(1, kafka_broker) == BrokerInfo(1, "kafka1", 9092)
    mine = znodes.encode_broker(BrokerInfo(2, "localhost", 9093, "localhost", 9193), 5)
    assert json.loads(mine)["endpoints"] == ["PLAINTEXT://localhost:9093"]
    assert znodes.decode_broker(2, mine) == BrokerInfo(2, "localhost", 9093, "localhost", 9193)
    state = b'{"controller_epoch":3,"leader":2,"version":1,"leader_epoch":4,"isr":[2,3]}'
    assert znodes.decode_state("t-0", state) == PartitionState(2, 4, (2, 3), 3)
    assert json.loads(znodes.encode_state(PartitionState(2, 4, (2, 3), 3))) == json.loads(state)
    topic = b'{"version":2,"partitions":{"1":[2,3],"0":[1,2]},"adding_replicas":{}}'
    assert znodes.decode_topic("t", topic) == {0: (1, 2), 1: (2, 3)}
    assert json.loads(znodes.encode_controller(3, 10)) == {
        "version": 1,
        "brokerid": 3,
        "timestamp": "10",
    }
    with pytest.raises(ValueError, match="not JSON"):
        znodes.decode_state("t-0", b"\xff")
