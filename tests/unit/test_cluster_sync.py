"""The broker's side of cluster mode without ZooKeeper (labkit/broker/cluster_sync.py): a
snapshot becomes local topics, metadata rows and leadership answers."""

from __future__ import annotations

import pytest

from labkit.broker.cluster_sync import ClusterSync
from labkit.broker.topics import TopicRegistry
from labkit.cluster.decisions import ClusterSnapshot, TopicView
from labkit.cluster.member import ClusterSettings
from labkit.cluster.znodes import BrokerInfo, PartitionState
from labkit.errors import (
    LeaderNotAvailableError,
    NotLeaderForPartitionError,
    UnknownTopicOrPartitionError,
)
from labkit.log.config import LogConfig
from labkit.testing import FakeClock

BROKERS = {i: BrokerInfo(i, "127.0.0.1", 9090 + i, "127.0.0.1", 9190 + i) for i in (1, 2)}


@pytest.fixture
def sync(tmp_path):
    registry = TopicRegistry(tmp_path, LogConfig(), FakeClock(), 1).open()
    yield ClusterSync(ClusterSettings(1, "127.0.0.1:2181"), registry)
    registry.close()


def _topic(states, config=None):
    return TopicView(
        "t",
        {0: (1, 2), 1: (2, 1)},
        config or {},
        {p: (state, 0) for p, state in states.items()},
    )


def test_a_snapshot_creates_and_deletes_local_topics(sync):
    state = PartitionState(1, 0, (1, 2), 1)
    sync._publish(ClusterSnapshot(BROKERS, 1, 1, "id", {"t": _topic({0: state})}))
    assert sync.turn() == ["t"]
    assert len(sync.registry.get("t").partitions) == 2
    assert sync.turn() == []  # nothing new
    sync._publish(ClusterSnapshot(BROKERS, 1, 1, "id", {}))
    assert sync.turn() == ["t"]
    assert sync.registry.get("t") is None


def test_a_local_topic_zookeeper_never_had_is_kept(sync):
    sync.registry.create("old", 1)
    sync._publish(ClusterSnapshot(BROKERS, 1, 1, "id", {}))
    sync.turn()
    assert sync.registry.get("old") is not None


def test_leadership_answers(sync):
    states = {0: PartitionState(1, 3, (1, 2), 1), 1: PartitionState(-1, 4, (2,), 1)}
    sync._publish(ClusterSnapshot(BROKERS, 2, 1, "id", {"t": _topic(states)}))
    sync.turn()
    sync.check_leader("t", 0)  # broker 1 leads it
    with pytest.raises(LeaderNotAvailableError, match="no leader now"):
        sync.check_leader("t", 1)
    with pytest.raises(UnknownTopicOrPartitionError):
        sync.check_leader("nope", 0)
    states[0] = PartitionState(2, 4, (2,), 2)
    sync._publish(ClusterSnapshot({2: BROKERS[2]}, 2, 2, "id", {"t": _topic(states)}))
    sync.turn()
    with pytest.raises(NotLeaderForPartitionError, match="broker 2 is"):
        sync.check_leader("t", 0)


def test_metadata_rows_name_leaders_replicas_isr_and_offline(sync):
    states = {0: PartitionState(1, 3, (1,), 1)}
    sync._publish(ClusterSnapshot({1: BROKERS[1]}, 1, 1, "id", {"t": _topic(states)}))
    sync.turn()
    row = sync.metadata_topic("t")
    assert row["partitions"][0] == {
        "partition": 0,
        "leader": 1,
        "leader_epoch": 3,
        "replicas": [1, 2],
        "isr": [1],
        "offline_replicas": [2],
    }
    assert row["partitions"][1]["leader"] == -1  # no state yet
    assert row["partitions"][1]["error"] == LeaderNotAvailableError.errno
    assert sync.metadata_brokers() == [
        {"node_id": 1, "host": "127.0.0.1", "port": 9091, "zmq_host": "127.0.0.1", "zmq_port": 9191}
    ]
    assert sync.metadata_topic("missing") is None


def test_replication_configs_come_from_zookeeper_or_the_broker_default(sync):
    topic = _topic({}, {"unclean.leader.election.enable": "true"})
    sync._publish(ClusterSnapshot(BROKERS, 1, 1, "id", {"t": topic}))
    sync.turn()
    assert sync.replication_configs("t") == [
        {"name": "min.insync.replicas", "value": "1", "default": True},
        {"name": "unclean.leader.election.enable", "value": "true", "default": False},
    ]
