"""Replicated committed offsets for real: a real ZooKeeper, three labkit broker processes,
a confluent-kafka consumer group through the Kafka listener.

The group commits, the broker that coordinates it (the leader of the group's
``__consumer_offsets`` partition) is killed with SIGKILL, and the new coordinator (the
new leader) answers the same committed offsets; a consumer of the same group continues
from them: no record consumed twice, none skipped.
"""

from __future__ import annotations

import time

import pytest

from labkit.cluster.offsets_topic import OFFSETS_TOPIC, partition_for
from labkit.testing import RawClient
from labkit.testing.zookeeper import zookeeper_for_tests
from tests.integration.cluster_helpers import (
    SESSION_TIMEOUT_MS,
    partition_states,
    running_cluster,
    wait_for,
    zk_client,
)

pytestmark = pytest.mark.slow  # the kill waits out a 4 s ZooKeeper session

GROUP = "offsets-survive"
TOPIC = "orders"
LIVE_GROUP, LIVE_TOPIC = "offsets-live", "orders-live"  # the module shares one ZooKeeper
RECORDS = 60
FAILOVER_BOUND_S = SESSION_TIMEOUT_MS / 1000 + 30  # generous: loaded machine


@pytest.fixture
def zookeeper():
    """Each test its own ZooKeeper (not the module's): a fresh cluster on a used one found
    the first test's __consumer_offsets states (leaders and ISRs of brokers whose data
    was gone), and its kill then timed out waiting for a new coordinator (once in three)."""
    with zookeeper_for_tests() as server:
        yield server


@pytest.fixture
def cluster(zookeeper):
    with running_cluster(zookeeper, extra={"replica.lag.time.max.ms": "1500"}) as brokers:
        yield brokers


def find_coordinator(broker, group: str) -> dict:
    with RawClient(broker.zmq_bootstrap) as client:
        header, _ = client.request("find_coordinator", {"key": group})
    return header


def offsets_state(zk, group: str) -> dict:
    if not zk.exists(f"/brokers/topics/{OFFSETS_TOPIC}"):
        return {}
    return partition_states(zk, OFFSETS_TOPIC).get(partition_for(group, 3)) or {}


def consumer(bootstrap: str, group: str = GROUP):
    from confluent_kafka import Consumer

    return Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": 6000,
        }
    )


def consume(c, count: int, timeout: float = 60) -> list:
    got: list = []
    deadline = time.monotonic() + timeout
    while len(got) < count and time.monotonic() < deadline:
        for message in c.consume(count - len(got), timeout=0.5):
            if message.error() is None:
                got.append(message)
    return got


def test_committed_offsets_survive_killing_the_coordinator(zookeeper, cluster):
    from confluent_kafka import Producer, TopicPartition

    with RawClient(cluster[1].zmq_bootstrap) as client:
        header, _ = client.request(
            "create_topics",
            {"topics": [{"name": TOPIC, "num_partitions": 3, "replication_factor": 3}]},
        )
    assert header["topics"][0]["error"] == 0, header
    bootstrap = ",".join(b.bootstrap for b in cluster.values())
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    for i in range(RECORDS):
        producer.produce(TOPIC, f"record-{i}".encode(), partition=i % 3)
    assert producer.flush(60) == 0

    first = consumer(bootstrap)
    first.subscribe([TOPIC])
    taken = consume(first, RECORDS // 2)
    assert len(taken) == RECORDS // 2
    first.commit(asynchronous=False)
    tps = [TopicPartition(TOPIC, p) for p in range(3)]
    before = {tp.partition: tp.offset for tp in first.committed(tps, timeout=30)}
    first.close()
    assert sum(max(o, 0) for o in before.values()) == RECORDS // 2, before  # -1001: none

    with zk_client(zookeeper) as zk:
        state = wait_for("the group's offsets partition", lambda: offsets_state(zk, GROUP))
        assert sorted(state["isr"]) == [1, 2, 3], state  # min(3, live brokers) replicas
        coordinator = state["leader"]
        assert find_coordinator(cluster[coordinator], GROUP)["node_id"] == coordinator
        survivors = [i for i in cluster if i != coordinator]
        answer = find_coordinator(cluster[survivors[0]], GROUP)
        assert (answer["node_id"], answer["port"]) == (coordinator, cluster[coordinator].port)

        cluster[coordinator].kill()
        killed_at = time.monotonic()
        wait_for(
            "a new leader of the group's offsets partition",
            lambda: offsets_state(zk, GROUP).get("leader") not in (None, -1, coordinator),
            timeout=FAILOVER_BOUND_S,
            interval=0.02,
        )
        new = offsets_state(zk, GROUP)["leader"]
        print(
            f"\nkill -9 of coordinator {coordinator} -> coordinator {new} in "
            f"{time.monotonic() - killed_at:.2f} s (zookeeper.session.timeout.ms="
            f"{SESSION_TIMEOUT_MS})"
        )
    assert wait_for(
        "FindCoordinator to name the new leader",
        lambda: find_coordinator(cluster[survivors[0]], GROUP).get("node_id") == new,
    )

    bootstrap = ",".join(cluster[i].bootstrap for i in survivors)
    second = consumer(bootstrap)
    try:
        after = {tp.partition: tp.offset for tp in second.committed(tps, timeout=60)}
        assert after == before
        second.subscribe([TOPIC])
        rest = consume(second, RECORDS - len(taken))
        values = sorted(m.value() for m in rest)
        assert len(values) == RECORDS - len(taken)
        assert not set(values) & {m.value() for m in taken}, "records consumed twice"
        assert set(values) | {m.value() for m in taken} == {
            f"record-{i}".encode() for i in range(RECORDS)
        }
        for message in rest:  # each partition continued where the commit left it
            assert message.offset() >= max(before[message.partition()], 0)
    finally:
        second.close()


def test_a_running_consumer_follows_its_coordinator_and_commits_there(zookeeper, cluster):
    """The same consumer, kept running across the kill: its next commit is refused (the
    new coordinator has no membership: labkit does not replicate it), it rejoins there, goes
    on from the committed offset (nothing before it is read again) and commits there."""
    from confluent_kafka import Producer, TopicPartition

    with RawClient(cluster[1].zmq_bootstrap) as client:
        header, _ = client.request(
            "create_topics",
            {"topics": [{"name": LIVE_TOPIC, "num_partitions": 1, "replication_factor": 3}]},
        )
    assert header["topics"][0]["error"] == 0, header
    bootstrap = ",".join(b.bootstrap for b in cluster.values())
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    for i in range(RECORDS):
        producer.produce(LIVE_TOPIC, f"record-{i}".encode(), partition=0)
    assert producer.flush(60) == 0

    tp = TopicPartition(LIVE_TOPIC, 0)
    live = consumer(bootstrap, LIVE_GROUP)
    try:
        live.subscribe([LIVE_TOPIC])
        taken = consume(live, 20)
        live.commit(asynchronous=False)
        committed = live.committed([tp], timeout=30)[0].offset
        assert committed == taken[-1].offset() + 1
        with zk_client(zookeeper) as zk:
            state = wait_for("the offsets partition", lambda: offsets_state(zk, LIVE_GROUP))
            coordinator = state["leader"]
            cluster[coordinator].kill()
            wait_for(
                "a new coordinator",
                lambda: offsets_state(zk, LIVE_GROUP).get("leader") not in (None, -1, coordinator),
                timeout=FAILOVER_BOUND_S,
            )
        rest: list = []
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            rest += [m for m in live.consume(100, timeout=0.5) if m.error() is None]
            if _commit(live) and live.committed([tp], timeout=10)[0].offset == RECORDS:
                break
        assert live.committed([tp], timeout=10)[0].offset == RECORDS
        seen = {m.value() for m in taken + rest}
        assert seen == {f"record-{i}".encode() for i in range(RECORDS)}
        assert min(m.offset() for m in rest) >= committed  # nothing before the commit again
    finally:
        live.close()


def _commit(c) -> bool:
    from confluent_kafka import KafkaException

    try:
        c.commit(asynchronous=False)
    except KafkaException:
        return False  # refused (rejoining), or nothing consumed since the rejoin
    return True
