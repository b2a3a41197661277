"""Cluster mode's control plane with a real ZooKeeper and three real broker processes:
registration, one controller, topics with replication factor 3 in ZooKeeper, in
``labkit topics --describe`` and in Kafka clients' metadata, NOT_LEADER_OR_FOLLOWER from a
broker that does not lead, Kafka's INVALID_REPLICATION_FACTOR, and clear start-up errors.
Failover (kill -9) is in test_cluster_failover.py."""

from __future__ import annotations

import subprocess
import sys

import pytest

from labkit import KafkaAdminClient, NewTopic
from labkit.testing.apache_kafka import run_tool
from labkit.testing.broker import RawClient, free_port
from tests.integration.cluster_helpers import (
    controller_id,
    labkit_cli,
    partition_states,
    read_json,
    running_cluster,
    wait_for,
    zk_client,
)


@pytest.fixture(scope="module")
def cluster(zookeeper):
    with running_cluster(zookeeper) as brokers:
        yield brokers


def test_brokers_register_and_one_controller_is_elected(zookeeper, cluster):
    with zk_client(zookeeper) as zk:
        assert sorted(zk.get_children("/brokers/ids")) == ["1", "2", "3"]
        for broker_id, broker in cluster.items():
            node = read_json(zk, f"/brokers/ids/{broker_id}")
            assert node["endpoints"] == [f"PLAINTEXT://127.0.0.1:{broker.port}"]
            assert (node["host"], node["port"], node["version"]) == ("127.0.0.1", broker.port, 5)
            assert node["labkit_zmq_endpoint"] == f"127.0.0.1:{broker.zmq_port}"
            assert zk.get(f"/brokers/ids/{broker_id}")[1].ephemeralOwner != 0
        controller = wait_for("a controller", lambda: controller_id(zk))
        assert controller in cluster
        assert read_json(zk, "/controller")["version"] == 1
        assert int(zk.get("/controller_epoch")[0]) >= 1
        assert len(read_json(zk, "/cluster/id")["id"]) == 22


def test_a_topic_with_replication_factor_3_is_assigned_and_led(zookeeper, cluster, unique_topic):
    admin = KafkaAdminClient(bootstrap_servers=cluster[2].bootstrap)
    try:
        admin.create_topics(
            [NewTopic(unique_topic, 3, 3, topic_configs={"unclean.leader.election.enable": "true"})]
        )
    finally:
        admin.close()
    with zk_client(zookeeper) as zk:
        topic = read_json(zk, f"/brokers/topics/{unique_topic}")
        assignment = {int(p): replicas for p, replicas in topic["partitions"].items()}
        assert sorted(assignment) == [0, 1, 2]
        assert all(sorted(replicas) == [1, 2, 3] for replicas in assignment.values())
        # Kafka's assignment spreads the preferred leaders over the brokers
        assert sorted(replicas[0] for replicas in assignment.values()) == [1, 2, 3]
        config = read_json(zk, f"/config/topics/{unique_topic}")
        assert config == {"version": 1, "config": {"unclean.leader.election.enable": "true"}}
        states = wait_for(
            "3 partition states", lambda: len(partition_states(zk, unique_topic)) == 3
        )
        states = partition_states(zk, unique_topic)
        for partition, replicas in assignment.items():
            state = states[partition]
            assert state["leader"] == replicas[0]
            assert state["isr"] == replicas
            assert state["leader_epoch"] == 0
            assert state["controller_epoch"] >= 1
    # broker 3 creates its local log from ZooKeeper within a moment: ask until it has
    described = wait_for(
        "--describe on broker 3",
        lambda: (
            (
                done := labkit_cli(
                    "topics",
                    "--describe",
                    "--topic",
                    unique_topic,
                    "--bootstrap-server",
                    cluster[3].bootstrap,
                )
            ).returncode
            == 0
            and done
        ),
        interval=0.5,
    )
    print(described.stdout)
    lines = described.stdout.splitlines()
    assert lines[0].endswith("\tReplicationFactor: 3\tConfigs: unclean.leader.election.enable=true")
    for partition, replicas in assignment.items():
        ids = ",".join(map(str, replicas))
        # plus labkit's log offsets, read from each partition's leader (an empty topic)
        assert (
            f"\tTopic: {unique_topic}\tPartition: {partition}\tLeader: {replicas[0]}\t"
            f"Replicas: {ids}\tIsr: {ids}\tLogStartOffset: 0\tLogEndOffset: 0"
        ) in lines
    # Apache Kafka 4.1.1's own kafka-topics.sh (DescribeTopicPartitions) prints the same
    # partitions, plus its Elr/LastKnownElr columns (empty: no ELR in ZooKeeper mode)
    kafka = run_tool(
        "kafka-topics.sh",
        "--describe",
        "--topic",
        unique_topic,
        "--bootstrap-server",
        cluster[1].bootstrap,
    )
    assert kafka.returncode == 0, kafka.stderr
    print(kafka.stdout)
    kafka_lines = [
        line.replace("\tElr: \tLastKnownElr: ", "").rstrip("\t")
        for line in kafka.stdout.splitlines()
        if "\tPartition: " in line
    ]
    assert kafka_lines == [
        line.replace("\tLogStartOffset: 0\tLogEndOffset: 0", "")
        for line in lines
        if "\tPartition: " in line
    ]
    assert kafka.stdout.splitlines()[0].endswith("\tConfigs: unclean.leader.election.enable=true")
    healthy = labkit_cli(
        "topics",
        "--describe",
        "--under-replicated-partitions",
        "--bootstrap-server",
        cluster[1].bootstrap,
    )
    assert healthy.returncode == 0, healthy.stderr
    assert unique_topic not in healthy.stdout


def test_kafka_clients_see_three_brokers_and_each_leader(cluster, unique_topic):
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient
    from confluent_kafka.admin import NewTopic as KafkaNewTopic

    admin = AdminClient({"bootstrap.servers": cluster[1].bootstrap})
    futures = admin.create_topics([KafkaNewTopic(unique_topic, 3, 3)])
    futures[unique_topic].result(30)

    def led():
        meta = admin.list_topics(unique_topic, timeout=10)
        parts = meta.topics[unique_topic].partitions
        return meta if parts and all(p.leader >= 1 for p in parts.values()) else None

    meta = wait_for("leaders in metadata", led)
    assert sorted(meta.brokers) == [1, 2, 3]
    assert {b.port for b in meta.brokers.values()} == {b.port for b in cluster.values()}
    assert meta.controller_id in (1, 2, 3)
    for p in meta.topics[unique_topic].partitions.values():
        assert sorted(p.replicas) == [1, 2, 3]
        assert p.leader == p.replicas[0]
        assert p.isrs == p.replicas
    # librdkafka sends each partition's records to its leader: every send succeeds
    producer = Producer({"bootstrap.servers": cluster[2].bootstrap, "acks": "1"})
    failures = []
    for partition in range(3):
        producer.produce(
            unique_topic,
            b"v%d" % partition,
            partition=partition,
            on_delivery=lambda err, _msg: err and failures.append(err),
        )
    assert producer.flush(30) == 0
    assert failures == []
    # a broker that does not lead a partition refuses it: NOT_LEADER_OR_FOLLOWER
    partition = next(p for p in meta.topics[unique_topic].partitions.values() if p.leader != 1)
    with RawClient(cluster[1].bootstrap) as raw:
        header, _ = raw.request(
            "fetch",
            {"max_wait_ms": 0, "partitions": [[unique_topic, partition.id, 0, 1024]]},
        )
    assert header["partitions"][0][2] == 6, header  # NOT_LEADER_OR_FOLLOWER


def test_replication_factor_over_live_brokers_is_refused_as_kafka_does(cluster, unique_topic):
    created = labkit_cli(
        "topics",
        "--create",
        "--topic",
        unique_topic,
        "--replication-factor",
        "4",
        "--bootstrap-server",
        cluster[1].bootstrap,
    )
    assert created.returncode != 0
    assert (
        "Error while executing topic command : Replication factor: 4 larger than available "
        "brokers: 3."
    ) in created.stdout


def test_an_unreachable_zookeeper_is_a_clear_error(tmp_path):
    port = free_port()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "labkit.broker",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--zmq-port",
            "0",
            "--broker-id",
            "1",
            "--zookeeper",
            f"127.0.0.1:{port}",
            "--config",
            "zookeeper.connection.timeout.ms=1000",
            "--data-dir",
            str(tmp_path / "data"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert f"cannot reach ZooKeeper at 127.0.0.1:{port} (tried for 1000 ms" in done.stderr
    assert "Start ZooKeeper first" in done.stderr
