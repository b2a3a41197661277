"""OffsetDelete (API 47) through the Kafka listener: Apache Kafka's
``kafka-consumer-groups.sh --delete-offsets`` prints the same on labkit as on Apache
Kafka (a group whose member subscribes to the topic, an empty group, an unknown group),
and the deletion survives a kill -9 of the broker."""

from __future__ import annotations

import pytest
from kafka import KafkaConsumer as KpConsumer
from kafka import KafkaProducer as KpProducer
from kafka.structs import OffsetAndMetadata, TopicPartition

from labkit import KafkaAdminClient as LabkitAdmin
from labkit import NewTopic
from labkit.client.kafka_python_fixes import keep_unfinished_joins_wanted
from labkit.testing import BrokerProcess
from labkit.testing.apache_kafka import run_tool

pytestmark = pytest.mark.usefixtures("kafka_python_garbage")

WAIT_S = 30  # generous: the machine is shared


@pytest.fixture(scope="module")
def kafka_broker(tmp_path_factory):
    with BrokerProcess(data_dir=tmp_path_factory.mktemp("offset-delete")) as proc:
        yield proc


def tool(bootstrap: str, *args: str) -> tuple[int, list[str]]:
    """The tool's exit code and its output lines (stdout then stderr, blank lines and
    the JVM's warnings left out)."""
    done = run_tool("kafka-consumer-groups.sh", "--bootstrap-server", bootstrap, *args)
    lines = [
        " ".join(line.split())
        for line in (done.stdout + done.stderr).splitlines()
        if line.strip() and "WARN" not in line and "SLF4J" not in line
    ]
    return done.returncode, lines


def commit_in_group(bootstrap: str, topic: str, other: str, group: str) -> KpConsumer:
    """A consumer in ``group`` subscribed to ``topic``, with offsets committed for both
    partitions of ``topic`` and for ``other`` (which it does not subscribe to)."""
    producer = KpProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=False)
    try:
        for i in range(4):
            producer.send(topic, value=b"v", partition=i % 2)
        producer.send(other, value=b"w", partition=0)
        producer.flush(WAIT_S)
    finally:
        producer.close()
    consumer = KpConsumer(
        bootstrap_servers=bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    keep_unfinished_joins_wanted(consumer)  # kafka-python 3.0.12's lost join rounds
    consumer.subscribe([topic])
    read = 0
    for _ in range(60):
        for records in consumer.poll(timeout_ms=500).values():
            read += len(records)
        if read == 4:
            break
    assert read == 4
    consumer.commit(
        {
            TopicPartition(topic, 0): OffsetAndMetadata(2, "", -1),
            TopicPartition(topic, 1): OffsetAndMetadata(2, "", -1),
            TopicPartition(other, 0): OffsetAndMetadata(1, "", -1),
        }
    )
    return consumer


def scenario(bootstrap: str, topic: str) -> dict[str, tuple[int, list[str]]]:
    other, group = f"{topic}-other", f"{topic}-group"
    for name, partitions in ((topic, "2"), (other, "1")):
        created = run_tool(
            "kafka-topics.sh",
            "--bootstrap-server",
            bootstrap,
            "--create",
            "--topic",
            name,
            "--partitions",
            partitions,
        )
        assert created.returncode == 0, created.stderr
    delete = ["--delete-offsets", "--group", group]
    seen = {}
    consumer = commit_in_group(bootstrap, topic, other, group)
    try:
        seen["subscribed"] = tool(bootstrap, *delete, "--topic", topic)
        seen["not subscribed"] = tool(bootstrap, *delete, "--topic", other)
    finally:
        consumer.close()
    seen["empty group"] = tool(bootstrap, *delete, "--topic", f"{topic}:1")
    seen["describe"] = tool(bootstrap, "--describe", "--group", group, "--offsets")
    seen["unknown group"] = tool(
        bootstrap, "--delete-offsets", "--group", f"{group}-none", "--topic", topic
    )
    return seen


def test_delete_offsets_matches_apache_kafka(kafka_broker, apache_kafka, unique_topic):
    labkit = scenario(kafka_broker.bootstrap, unique_topic)
    kafka = scenario(apache_kafka.bootstrap, unique_topic)
    assert labkit == kafka
    # the scenario is the one meant: Kafka refused the subscribed topic, deleted the rest
    assert "GroupSubscribedToTopicException" in " ".join(kafka["subscribed"][1])
    assert "Successful" in " ".join(kafka["not subscribed"][1])
    assert "GroupIdNotFoundException" in " ".join(kafka["unknown group"][1])


def test_deleted_offsets_stay_deleted_after_kill_9(tmp_path, unique_topic):
    with BrokerProcess(data_dir=tmp_path / "d") as broker:
        group = f"{unique_topic}-group"
        admin = LabkitAdmin(bootstrap_servers=broker.bootstrap)
        try:
            admin.create_topics([NewTopic(unique_topic, 2, 1), NewTopic(f"{unique_topic}-o", 1, 1)])
        finally:
            admin.close()
        consumer = commit_in_group(broker.bootstrap, unique_topic, f"{unique_topic}-o", group)
        consumer.close()
        code, lines = tool(
            broker.bootstrap, "--delete-offsets", "--group", group, "--topic", unique_topic
        )
        assert code == 0, lines
        broker.kill()
        broker.proc.wait(10)
        broker.restart()
        consumer = KpConsumer(bootstrap_servers=broker.bootstrap, group_id=group)
        try:
            partitions = [TopicPartition(unique_topic, p) for p in (0, 1)]
            assert [consumer.committed(tp) for tp in partitions] == [None, None]
            assert consumer.committed(TopicPartition(f"{unique_topic}-o", 0)) == 1
        finally:
            consumer.close()
