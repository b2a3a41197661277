"""labkit's own client (ZeroMQ) follows partition leaders: a real ZooKeeper, three real
labkit brokers, an RF-3 topic whose partitions are led by different brokers.

labkit's KafkaProducer (acks='all', idempotent) and KafkaConsumer talk to each
partition's leader; a leader -- another one, or the bootstrap broker -- is killed with
SIGKILL, or one is stopped with SIGSTOP past the ZooKeeper session timeout (its requests
time out, and a timeout at a leader makes the client ask metadata again), while they run: the producer moves on to the new leaders with 0 acknowledged records lost,
and the consumer continues from its positions and reads every acknowledged record.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from labkit.client import KafkaConsumer, KafkaProducer, TopicPartition
from labkit.testing import RawClient
from tests.integration.cluster_helpers import (
    SESSION_TIMEOUT_MS,
    partition_states,
    running_cluster,
    wait_for,
    zk_client,
)

pytestmark = pytest.mark.slow  # the kill waits out a 4 s ZooKeeper session

PARTITIONS = 3
FAILOVER_BOUND_S = SESSION_TIMEOUT_MS / 1000 + 15  # generous: the goal is the timeout + 1 s


@pytest.fixture
def cluster(zookeeper):
    with running_cluster(zookeeper, extra={"replica.lag.time.max.ms": "1500"}) as brokers:
        yield brokers


def create(broker, name: str) -> None:
    with RawClient(broker.zmq_bootstrap) as client:
        header, _ = client.request(
            "create_topics",
            {
                "topics": [
                    {
                        "name": name,
                        "num_partitions": PARTITIONS,
                        "replication_factor": 3,
                        "configs": {"min.insync.replicas": "2"},
                    }
                ]
            },
        )
    assert header["topics"][0]["error"] == 0, header


def leaders(zk, name: str) -> dict[int, int]:
    return {p: s.get("leader", -1) for p, s in partition_states(zk, name).items()}


@pytest.mark.parametrize("killed", ["another leader", "the bootstrap broker", "a stopped leader"])
def test_producer_and_consumer_follow_leaders_through_a_kill_9(zookeeper, cluster, killed):
    name = "followed-" + killed.replace(" ", "-")
    create(cluster[1], name)
    with zk_client(zookeeper) as zk:
        wait_for(
            "every partition with a full ISR",
            lambda: (
                len(states := partition_states(zk, name)) == PARTITIONS
                and all(sorted(s.get("isr", [])) == [1, 2, 3] for s in states.values())
            ),
        )
        before = leaders(zk, name)
        assert len(set(before.values())) > 1, f"partitions led by one broker only: {before}"
        bootstrap_id = before[0]
        victim = (
            next(b for b in before.values() if b != bootstrap_id)
            if killed != "the bootstrap broker"
            else bootstrap_id  # metadata is then asked of another broker
        )
        bootstrap = cluster[bootstrap_id].bootstrap

        producer = KafkaProducer(
            bootstrap_servers=bootstrap,
            acks="all",
            enable_idempotence=True,
            retries=1_000_000,
            linger_ms=5,
            request_timeout_ms=5000,  # a stopped leader's requests time out after this
            delivery_timeout_ms=60000,
        )
        consumer = KafkaConsumer(
            bootstrap_servers=bootstrap,
            group_id=None,
            auto_offset_reset="earliest",
            request_timeout_ms=5000,
        )
        consumer.assign([TopicPartition(name, p) for p in range(PARTITIONS)])
        acked: list[bytes] = []
        failed: list[str] = []
        read: set[bytes] = set()
        stop_writing = threading.Event()
        stop_reading = threading.Event()

        def produce():
            count = 0
            while not stop_writing.is_set() and count < 6000:
                value = f"record-{count}".encode()
                future = producer.send(name, value)
                future.add_callback(lambda _md, v=value: acked.append(v))
                future.add_errback(lambda exc: failed.append(repr(exc)))
                count += 1
                time.sleep(0.002)
            producer.flush(90)

        def consume():
            while not stop_reading.is_set():
                for records in consumer.poll(timeout_ms=200).values():
                    read.update(r.value for r in records)

        writer = threading.Thread(target=produce)
        reader = threading.Thread(target=consume)
        writer.start()
        reader.start()
        try:
            wait_for("records acknowledged before the kill", lambda: len(acked) >= 300)
            wait_for("records read before the kill", lambda: len(read) >= 100)
            if killed == "a stopped leader":  # SIGSTOP: its connections stay, it is silent
                os.kill(cluster[victim].pid, signal.SIGSTOP)
            else:
                cluster[victim].kill()
            wait_for(
                "new leaders",
                lambda: (
                    victim not in leaders(zk, name).values()
                    and -1 not in leaders(zk, name).values()
                ),
                timeout=FAILOVER_BOUND_S,
                interval=0.02,
            )
            moved_at = len(acked)
            wait_for(
                "records acknowledged after the failover",
                lambda: len(acked) >= moved_at + 600,
                timeout=60,
            )
        finally:
            stop_writing.set()
            writer.join(120)
        assert not writer.is_alive()
        assert not failed, failed[:3]
        try:
            wait_for("every acknowledged record read", lambda: set(acked) <= read, timeout=60)
        finally:
            stop_reading.set()
            reader.join(10)
            consumer.close()
            producer.close()
        after = leaders(zk, name)
        print(
            f"\nleaders {before} -> {after} after {killed!r} (broker {victim}); "
            f"{len(acked)} acknowledged, {len(read)} read"
        )
        missing = set(acked) - read
        assert not missing, (
            f"{len(missing)} acknowledged records not read, e.g. {sorted(missing)[:3]}"
        )
