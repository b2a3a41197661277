"""nb.cluster()'s parts that need no process: ZooKeeper's JSON into rows, the plot's points,
the environment, the refusals; and notebook 13's checks against a cluster written here.

The real thing (ZooKeeper, three broker processes, kill -9) runs in the notebook itself,
under tests/integration/test_series_masters.py."""

from __future__ import annotations

from collections import namedtuple

import pytest

from labkit import nb
from labkit.errors import IllegalArgumentError, IllegalStateError
from labkit.nb import cluster_mode
from labkit.nb.cluster_mode import Cluster
from labkit.nb.cluster_plot import plot_points
from labkit.nb.cluster_state import (
    PartitionState,
    existing_cluster,
    states_from_metadata,
    states_from_znodes,
)

ZNODES = {
    "/brokers/topics/orders": {"version": 3, "partitions": {"1": [2, 3, 1], "0": [1, 2, 3]}},
    "/brokers/topics/orders/partitions/0/state": {
        "controller_epoch": 2,
        "leader": 2,
        "version": 1,
        "leader_epoch": 4,
        "isr": [2, 3],
    },
    # partition 1 has no state yet (the controller has not written it)
}


def test_znodes_give_one_row_per_partition_in_partition_order():
    rows = states_from_znodes("orders", ZNODES.get)
    assert rows == [
        PartitionState("orders", 0, leader=2, replicas=(1, 2, 3), isr=(2, 3), leader_epoch=4),
        PartitionState("orders", 1, leader=-1, replicas=(2, 3, 1), isr=()),
    ]


def test_a_row_prints_as_kafka_topics_describe():
    rows = states_from_znodes("orders", ZNODES.get)
    assert str(rows[0]) == "Topic: orders\tPartition: 0\tLeader: 2\tReplicas: 1,2,3\tIsr: 2,3"
    assert "Leader: none" in str(rows[1])


def test_a_topic_zookeeper_does_not_hold_is_named_in_the_error():
    with pytest.raises(IllegalArgumentError, match=r"no topic 'payments'.*create it first"):
        states_from_znodes("payments", ZNODES.get)


def test_metadata_rows_of_kafka_python_give_the_same_rows():
    rows = states_from_metadata(
        "orders",
        [
            {"partition": 1, "leader": 3, "replicas": [2, 3, 1], "isr": [3, 1]},
            {"partition": 0, "leader": 1, "replicas": [1, 2, 3], "isr": [1, 2, 3]},
        ],
    )
    assert [(r.partition, r.leader, r.isr) for r in rows] == [(0, 1, (1, 2, 3)), (1, 3, (3, 1))]


def test_the_plot_shows_the_leader_and_the_isr_size_and_zero_without_a_state():
    state = PartitionState("orders", 0, leader=3, replicas=(1, 2, 3), isr=(3, 1))
    assert plot_points(state) == {"leader": 3, "ISR size": 2}
    assert plot_points(PartitionState("orders", 0, -1, (1, 2, 3), (1,))) == {
        "leader": 0,
        "ISR size": 1,
    }
    assert plot_points(None) == {"leader": 0, "ISR size": 0}


def test_the_environment_names_an_existing_cluster_and_maybe_its_zookeeper():
    assert existing_cluster({}) is None
    assert existing_cluster({"LABKIT_CLUSTER": "  "}) is None
    assert existing_cluster({"LABKIT_CLUSTER": "b1:9092,b2:9092"}) == ("b1:9092,b2:9092", None)
    assert existing_cluster({"LABKIT_CLUSTER": "b1:9092", "LABKIT_ZOOKEEPER": "zk:2181"}) == (
        "b1:9092",
        "zk:2181",
    )


@pytest.fixture
def no_running_cluster(monkeypatch):
    monkeypatch.setattr(cluster_mode, "_RUNNING", None)
    yield
    monkeypatch.setattr(cluster_mode, "_RUNNING", None)


def test_a_cluster_elsewhere_is_described_but_never_killed(monkeypatch, no_running_cluster):
    monkeypatch.setenv("LABKIT_CLUSTER", "b1:9092,b2:9093,b3:9094")
    monkeypatch.setenv("LABKIT_ZOOKEEPER", "zk:2181")
    elsewhere = nb.cluster()
    assert not elsewhere.local
    assert elsewhere.bootstrap_servers == "b1:9092,b2:9093,b3:9094"
    assert elsewhere.zookeeper == "zk:2181"
    assert nb.cluster() is elsewhere  # one cluster per kernel: re-running a cell reuses it
    for action in (elsewhere.kill, elsewhere.pause, elsewhere.resume, elsewhere.start):
        with pytest.raises(IllegalStateError, match=r"needs a cluster started by this notebook"):
            action(1)
    with pytest.raises(IllegalStateError, match=r"describe\(broker=...\) needs a cluster"):
        elsewhere.describe("orders", broker=1)


def test_unknown_broker_ids_are_refused_naming_the_brokers():
    made = Cluster(None, {1: "h:1", 2: "h:2"}, local=True)
    with pytest.raises(
        IllegalArgumentError, match="no broker 7 in this cluster: its brokers are 1, 2"
    ):
        made.kill(7)
    with pytest.raises(IllegalArgumentError, match="no broker 7"):
        made.address(7)


def test_without_zookeepers_jars_the_error_says_what_to_run(
    monkeypatch, tmp_path, no_running_cluster
):
    monkeypatch.setenv("LABKIT_ZOOKEEPER_LIBS", str(tmp_path))  # an empty folder: no jars
    monkeypatch.delenv("LABKIT_CLUSTER", raising=False)
    with pytest.raises(IllegalStateError, match=r"make zookeeper"):
        nb.cluster()
    assert cluster_mode._RUNNING is None


def test_a_lab_cluster_has_one_to_nine_brokers(no_running_cluster):
    with pytest.raises(IllegalArgumentError, match="1 to 9 brokers"):
        nb.cluster(0)


# -- notebook 13's checks, against a cluster written here --------------------------------------


class FakeCluster:
    """What the checks read from a cluster: describe(topic) and topic_config(topic)."""

    def __init__(self, rows, config=None):
        self.rows = rows
        self.config = config or {}

    def describe(self, topic):
        if topic not in {r.topic for r in self.rows}:
            raise IllegalArgumentError(f"no topic {topic!r} in this cluster: create it first")
        return [r for r in self.rows if r.topic == topic]

    def topic_config(self, topic):
        return dict(self.config)


def rows(topic="nb13-orders", replication=3, partitions=3, leader=1, isr=(1, 2, 3)):
    replicas = tuple(range(1, replication + 1))
    return [PartitionState(topic, p, leader, replicas, isr) for p in range(partitions)]


GOOD = FakeCluster(rows(), {"min.insync.replicas": "2"})


def test_13_1_passes_for_the_topic_as_asked_and_says_what_is_wrong_otherwise():
    NewTopic = namedtuple("NewTopic", "name")  # the check takes the name or a NewTopic
    assert nb.evaluate("13.1", "nb13-orders", cluster=GOOD).status == "PASS"
    assert nb.evaluate("13.1", NewTopic("nb13-orders"), cluster=GOOD).status == "PASS"
    assert nb.evaluate("13.1", ..., cluster=GOOD).status == "NOT ATTEMPTED"
    cases = [
        (FakeCluster([], {}), "no topic 'nb13-orders'"),
        (FakeCluster(rows(partitions=1), {"min.insync.replicas": "2"}), "num_partitions=3"),
        (FakeCluster(rows(replication=1), {"min.insync.replicas": "2"}), "replication_factor=3"),
        (FakeCluster(rows(), {}), "min.insync.replicas"),
        (FakeCluster(rows(), {"min.insync.replicas": "3"}), "is 3, not 2"),
    ]
    for cluster, hint in cases:
        result = nb.evaluate("13.1", "nb13-orders", cluster=cluster)
        assert result.status == "FAIL", (hint, result)
        assert hint in result.hint, (hint, result.hint)


Record = namedtuple("Record", "value")


def lost_counting_duplicates(acked, records):
    values = [r.value for r in records]
    return [v for v in acked if values.count(v) != 1]


def test_13_2_keeps_acknowledged_values_missing_from_the_log_in_order():
    def right(acked, records):
        on_log = {r.value for r in records}
        return [v for v in acked if v not in on_log]

    assert nb.evaluate("13.2", right).status == "PASS"
    for wrong in (
        lambda acked, records: [],
        lambda acked, records: [r.value for r in records if r.value not in acked],
        lambda acked, records: sorted(set(acked) - {r.value for r in records}),  # order lost
        lost_counting_duplicates,
    ):
        assert nb.evaluate("13.2", wrong).status == "FAIL"

    def stub(acked, records):
        """..."""
        ...

    assert nb.evaluate("13.2", stub).status == "NOT ATTEMPTED"


def test_13_3_the_new_leader_is_the_clusters_and_not_the_killed_broker():
    after = FakeCluster(rows(leader=2, isr=(2, 3)))
    context = {"cluster": after, "topic": "nb13-orders", "killed": 1}
    assert nb.evaluate("13.3", 2, **context).status == "PASS"
    too_early = nb.evaluate("13.3", 1, **context)
    assert too_early.status == "FAIL"
    assert "the one you killed" in too_early.hint
    guessed = nb.evaluate("13.3", 3, **context)
    assert guessed.status == "FAIL"
    assert "names broker 2" in guessed.hint
    assert nb.evaluate("13.3", "2", **context).status == "FAIL"
    assert nb.evaluate("13.3", ..., **context).status == "NOT ATTEMPTED"
    no_leader = FakeCluster(rows(leader=-1, isr=(1,)))
    assert "no leader" in nb.evaluate("13.3", 2, **{**context, "cluster": no_leader}).hint


def test_13_4_is_kafkas_rule_for_acks_and_min_insync_replicas():
    def right(isr_size, min_insync, acks):
        if isr_size == 0:
            return False
        return isr_size >= min_insync if acks in ("all", -1) else True

    def forgets_minus_one(isr_size, min_insync, acks):
        if isr_size == 0:
            return False
        return isr_size >= min_insync if acks == "all" else True

    def min_insync_for_every_ack(isr_size, min_insync, acks):
        return isr_size >= min_insync and isr_size > 0

    assert nb.evaluate("13.4", right).status == "PASS"
    for wrong in (forgets_minus_one, min_insync_for_every_ack, lambda i, m, a: i > 0):
        result = nb.evaluate("13.4", wrong)
        assert result.status == "FAIL"
        assert "can_write(" in result.hint


class NotEnoughReplicasError(Exception):
    errno = 19


class KafkaTimeoutError(Exception):
    errno = None


def test_13_5_wants_the_brokers_refusal_while_the_isr_is_too_small():
    degraded = FakeCluster(rows(leader=1, isr=(1,)), {"min.insync.replicas": "2"})
    context = {"cluster": degraded, "topic": "nb13-orders"}
    assert nb.evaluate("13.5", NotEnoughReplicasError("19"), **context).status == "PASS"
    assert nb.evaluate("13.5", ..., **context).status == "NOT ATTEMPTED"
    cases = [
        (None, "the exception your except block caught"),
        (KafkaTimeoutError("waited"), "retries=0"),
        (ValueError("x"), "NotEnoughReplicasError"),
    ]
    for answer, hint in cases:
        result = nb.evaluate("13.5", answer, **context)
        assert result.status == "FAIL"
        assert hint in result.hint, (answer, result.hint)
    whole = FakeCluster(rows(leader=1, isr=(1, 2)), {"min.insync.replicas": "2"})
    result = nb.evaluate("13.5", NotEnoughReplicasError("19"), cluster=whole, topic="nb13-orders")
    assert result.status == "FAIL"
    assert "while the followers are down" in result.hint
