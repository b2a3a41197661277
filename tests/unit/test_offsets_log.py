"""Cluster mode's replicated offsets without sockets: placement, NOT_COORDINATOR and
COORDINATOR_LOAD_IN_PROGRESS, records appended to the partition log, and a new leader
loading them (broker/offsets_log.py over a real PartitionLog, a fake ZooKeeper view)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from labkit.broker.offsets import OffsetStore
from labkit.broker.offsets_log import ReplicatedOffsets, read_offsets
from labkit.cluster.decisions import ClusterSnapshot, TopicView
from labkit.cluster.offsets_topic import OFFSETS_TOPIC, partition_for
from labkit.cluster.znodes import BrokerInfo, PartitionState
from labkit.errors import CoordinatorNotAvailableError
from labkit.log import LogConfig, PartitionLog
from labkit.testing import FakeClock

BROKERS = {i: BrokerInfo(i, f"h{i}", 9090 + i, f"h{i}", 9190 + i) for i in (1, 2)}


def group_on(partition: int) -> str:
    return next(g for g in (f"g{i}" for i in range(100)) if partition_for(g, 3) == partition)


def snapshot(leaders: dict[int, int], epoch: int = 0) -> ClusterSnapshot:
    view = TopicView(
        OFFSETS_TOPIC,
        {p: (leaders[p], 3 - leaders[p]) for p in leaders},
        {"cleanup.policy": "compact"},
        {p: (PartitionState(leaders[p], epoch, (1, 2), 1), 0) for p in leaders},
    )
    return ClusterSnapshot(brokers=dict(BROKERS), topics={OFFSETS_TOPIC: view})


class Harness:
    """Broker ``me``: its offset store, its partition logs, a fake cluster view."""

    def __init__(self, tmp_path, me: int, logs: dict, clock: FakeClock):
        self.created: list = []
        self.cluster = SimpleNamespace(
            broker_id=me,
            snapshot=ClusterSnapshot(brokers=dict(BROKERS)),
            member=object(),
            create_topic=lambda *args: self.created.append(args),
        )
        self.replication = SimpleNamespace(led={})
        self.logs = logs
        self.store = OffsetStore(tmp_path / f"b{me}", clock)
        self.offsets = ReplicatedOffsets(self.cluster, self.replication, self.store, clock, 3, 3)

    def lead(self, leaders: dict[int, int], epoch: int) -> None:
        """ZooKeeper's view changes; the data plane has applied it."""
        me = self.cluster.broker_id
        self.cluster.snapshot = snapshot(leaders, epoch)
        self.replication.led = {
            (OFFSETS_TOPIC, p): SimpleNamespace(epoch=epoch, plog=self.logs[p])
            for p, leader in leaders.items()
            if leader == me
        }


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def logs(tmp_path, clock):
    opened = {
        p: PartitionLog.open(tmp_path / f"{OFFSETS_TOPIC}-{p}", LogConfig(), clock)
        for p in range(3)
    }
    yield opened
    for plog in opened.values():
        plog.close()


def test_the_topic_is_created_at_first_use_and_clients_retry(tmp_path, clock, logs):
    broker = Harness(tmp_path, 1, logs, clock)
    with pytest.raises(CoordinatorNotAvailableError, match="being created"):
        broker.offsets.find("g")
    assert broker.created == [(OFFSETS_TOPIC, 3, 2, {"cleanup.policy": "compact"})]  # 2 live
    assert broker.offsets.refusal("offset_commit", {"group_id": "g"})["error"] == 15


def test_only_the_loaded_leader_answers_for_a_group(tmp_path, clock, logs):
    broker = Harness(tmp_path, 1, logs, clock)
    mine, theirs = group_on(0), group_on(1)
    broker.lead({0: 1, 1: 2, 2: 1}, epoch=0)
    assert broker.offsets.refusal("offset_fetch", {"group_id": mine})["error"] == 14  # loading
    broker.offsets.on_roles()
    assert broker.offsets.refusal("offset_fetch", {"group_id": mine}) is None
    refused = broker.offsets.refusal("classic_heartbeat", {"group_id": theirs})
    assert refused["error"] == 16
    assert "broker 2" in refused["message"]
    assert broker.offsets.refusal("describe_groups", {"group_ids": [mine, theirs]})["error"] == 16
    assert broker.offsets.refusal("list_groups", {}) is None
    found = broker.offsets.find(theirs)
    assert (found["node_id"], found["host"], found["port"]) == (2, "h2", 9092)


def test_commits_become_records_and_a_new_leader_loads_them(tmp_path, clock, logs):
    old = Harness(tmp_path, 1, logs, clock)
    group = group_on(0)
    old.lead({0: 1, 1: 1, 2: 1}, epoch=0)
    old.offsets.on_roles()
    old.offsets.begin()
    old.store.commit(group, [("t", 0, 10, "a"), ("t", 1, 20, "")])
    reply = old.offsets.finish("offset_commit", {"group_id": group}, {"error": 0})
    assert reply is not None
    assert reply.replicate[0][1:3] == (OFFSETS_TOPIC, 0)
    assert reply.replicate[0][4] == logs[0].log_end_offset == 2  # waits for the ISR to have both
    old.offsets.begin()
    old.store.commit(group, [("t", 0, 15, "b")])
    old.store.delete_offsets(group, [("t", 1)])  # a tombstone
    assert old.offsets.finish("offset_commit", {"group_id": group}, {"error": 0}) is not None
    assert {tp: c.offset for tp, c in read_offsets(logs[0])[group].items()} == {("t", 0): 15}

    # broker 2 takes over partition 0 (same log: a replica byte for byte)
    new = Harness(tmp_path, 2, logs, clock)
    new.lead({0: 2, 1: 1, 2: 1}, epoch=1)
    assert new.store.fetch(group) == {}
    new.offsets.on_roles()
    loaded = new.store.fetch(group)
    assert {tp: (c.offset, c.metadata) for tp, c in loaded.items()} == {("t", 0): (15, "b")}
    # the old leader lets go: NOT_COORDINATOR, and its copy is dropped
    old.lead({0: 2, 1: 1, 2: 1}, epoch=1)
    (belongs,) = old.offsets.on_roles()  # the loop unloads these groups' members
    assert belongs(group)
    assert not belongs(group_on(1))
    assert old.store.fetch(group) == {}
    assert old.offsets.refusal("offset_commit", {"group_id": group})["error"] == 16


def test_a_commit_that_changed_nothing_waits_for_the_unreplicated_one(tmp_path, clock, logs):
    broker = Harness(tmp_path, 1, logs, clock)
    group = group_on(2)
    broker.lead({0: 1, 1: 1, 2: 1}, epoch=0)
    broker.offsets.on_roles()
    logs[2].set_high_watermark(0)
    broker.offsets.begin()
    broker.store.commit(group, [("t", 0, 7, "")])
    assert broker.offsets.finish("offset_commit", {"group_id": group}, {"error": 0})
    broker.offsets.begin()
    broker.store.commit(group, [("t", 0, 7, "")])  # the same again: nothing appended
    again = broker.offsets.finish("offset_commit", {"group_id": group}, {"error": 0})
    assert again is not None
    assert again.replicate[0][4] == 1
    logs[2].set_high_watermark(1)
    broker.offsets.begin()
    broker.store.commit(group, [("t", 0, 7, "")])
    assert broker.offsets.finish("offset_commit", {"group_id": group}, {"error": 0}) is None
