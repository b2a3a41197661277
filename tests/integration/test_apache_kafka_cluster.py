"""labkit.testing's three-broker Apache Kafka (one KRaft controller + three brokers on
loopback), the peer of labkit's cluster mode in benchmarks/replication.py: it starts, every
broker is in the metadata, and a topic with replication factor 3 gets three in-sync replicas
that take acks=all writes."""

from __future__ import annotations

import pytest

from labkit.testing.apache_kafka import ApacheKafkaCluster, ApacheKafkaMissing
from tests.integration.cluster_helpers import wait_for


@pytest.fixture(scope="module")
def kafka_cluster():
    try:
        cluster = ApacheKafkaCluster().start()
    except ApacheKafkaMissing as exc:
        pytest.fail(str(exc))
    try:
        yield cluster
    finally:
        cluster.stop()


def test_three_brokers_and_a_topic_with_three_in_sync_replicas(kafka_cluster, unique_topic):
    from confluent_kafka import KafkaException, Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": kafka_cluster.bootstrap})

    def created():
        # a broker whose port is open may not be unfenced yet: RF 3 is refused until it is
        future = admin.create_topics([NewTopic(unique_topic, 1, 3)])[unique_topic]
        try:
            future.result(30)
        except KafkaException as exc:
            if exc.args[0].name() == "INVALID_REPLICATION_FACTOR":
                return False
            raise
        return True

    wait_for("three unfenced brokers", created, timeout=60, interval=1.0)

    def in_sync():
        meta = admin.list_topics(unique_topic, timeout=10)
        partition = meta.topics[unique_topic].partitions.get(0)
        return meta if partition is not None and len(partition.isrs) == 3 else None

    meta = wait_for("three in-sync replicas", in_sync, timeout=60)
    assert sorted(meta.brokers) == [1, 2, 3]
    assert {b.port for b in meta.brokers.values()} == set(kafka_cluster.ports.values())
    partition = meta.topics[unique_topic].partitions[0]
    assert sorted(partition.replicas) == sorted(partition.isrs) == [1, 2, 3]
    assert sorted(kafka_cluster.procs) == [1, 2, 3, ApacheKafkaCluster.CONTROLLER_ID]

    producer = Producer({"bootstrap.servers": kafka_cluster.bootstrap, "acks": "all"})
    failures = []
    for i in range(10):
        producer.produce(
            unique_topic, b"v%d" % i, on_delivery=lambda e, _m: e and failures.append(e)
        )
    assert producer.flush(30) == 0
    assert failures == []
