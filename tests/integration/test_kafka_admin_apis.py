"""Kafka's topic-admin APIs through the Kafka listener (issue 13): CreatePartitions,
AlterConfigs, IncrementalAlterConfigs and DeleteRecords, with kafka-python's admin
client and Apache Kafka's own tools, the tools compared with Apache Kafka itself."""

from __future__ import annotations

import json
import re
import sys

import pytest
from kafka import KafkaAdminClient as KafkaPythonAdmin
from kafka.admin import ConfigResource, ConfigResourceType, NewPartitions, NewTopic
from kafka.errors import InvalidPartitionsError
from kafka.structs import TopicPartition
from kio.index import load_request_schema
from kio.schema.errors import ErrorCode

from labkit import KafkaAdminClient as LabkitAdmin
from labkit import KafkaConsumer as LabkitConsumer
from labkit import KafkaProducer as LabkitProducer
from labkit.kafka.admin_apis import ALTER_CONFIGS_KEY
from labkit.testing import BrokerProcess
from labkit.testing.apache_kafka import run_tool
from tests.raw_connections import kafka_request

pytestmark = pytest.mark.usefixtures("kafka_python_garbage")


@pytest.fixture(scope="module")
def kafka_broker(tmp_path_factory):
    with BrokerProcess(data_dir=tmp_path_factory.mktemp("kafka-admin")) as proc:
        yield proc


@pytest.fixture
def admin(kafka_broker):
    client = KafkaPythonAdmin(bootstrap_servers=kafka_broker.bootstrap)
    yield client
    client.close()


def labkit_configs(broker, topic: str) -> dict[str, str]:
    """The topic's overrides as labkit's own admin client sees them (over ZeroMQ)."""
    admin = LabkitAdmin(bootstrap_servers=broker.bootstrap)
    try:
        answer = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    finally:
        admin.close()
    configs = answer["topic"][topic]
    return {name: c["value"] for name, c in configs.items() if not c["default"]}


def partitions_of(broker, topic: str) -> int:
    admin = LabkitAdmin(bootstrap_servers=broker.bootstrap)
    try:
        [row] = admin.describe_topics([topic])
    finally:
        admin.close()
    return len(row["partitions"])


def test_kafka_python_adds_partitions(admin, kafka_broker, unique_topic):
    admin.create_topics([NewTopic(unique_topic, 1, 1)])
    admin.create_partitions({unique_topic: NewPartitions(3)})
    assert partitions_of(kafka_broker, unique_topic) == 3
    with pytest.raises(InvalidPartitionsError):
        admin.create_partitions({unique_topic: NewPartitions(2)})
    assert partitions_of(kafka_broker, unique_topic) == 3


def test_kafka_python_validate_only_changes_nothing(admin, kafka_broker, unique_topic):
    admin.create_topics([NewTopic(unique_topic, 1, 1)])
    admin.create_partitions({unique_topic: NewPartitions(4)}, validate_only=True)
    assert partitions_of(kafka_broker, unique_topic) == 1


def test_alter_configs_replaces_the_whole_set(kafka_broker, unique_topic):
    """Kafka's (non-incremental) AlterConfigs: a setting left out goes back to its
    default. Sent by hand: kafka-python adds the topic's other settings to it."""
    admin = LabkitAdmin(bootstrap_servers=kafka_broker.bootstrap)
    try:
        admin.create_topics([NewTopic(unique_topic, 1, 1, topic_configs={"retention.ms": "60000"})])
    finally:
        admin.close()
    schema = load_request_schema(ALTER_CONFIGS_KEY, 1)
    module = sys.modules[schema.__module__]
    config = module.AlterableConfig(name="segment.ms", value="3600000")
    resource = module.AlterConfigsResource(
        resource_type=ConfigResourceType.TOPIC.value, resource_name=unique_topic, configs=(config,)
    )
    answer = kafka_request(kafka_broker.port, schema(resources=(resource,), validate_only=False))
    [result] = answer.responses
    assert result.error_code == ErrorCode.none
    assert labkit_configs(kafka_broker, unique_topic) == {"segment.ms": "3600000"}


def test_alter_configs_errors_come_per_resource(admin, unique_topic):
    """Both AlterConfigs and IncrementalAlterConfigs: Kafka's error for each resource."""
    missing = ConfigResource(ConfigResourceType.TOPIC, unique_topic, {"retention.ms": "1"})
    broker = ConfigResource(ConfigResourceType.BROKER, "0", {"log.retention.ms": "1"})
    for incremental in (False, True):
        answer = admin.alter_configs(
            [missing, broker], raise_on_unknown=False, incremental=incremental
        )
        assert "UnknownTopicOrPartitionError" in answer["topic"][unique_topic]
        assert "InvalidRequestError" in answer["broker"]["0"]


def test_kafka_python_deletes_records(admin, kafka_broker, unique_topic):
    admin.create_topics([NewTopic(unique_topic, 2, 1)])
    producer = LabkitProducer(bootstrap_servers=kafka_broker.bootstrap)
    for i in range(10):
        producer.send(unique_topic, b"v%d" % i, partition=i % 2)
    producer.flush()
    producer.close()
    tp0, tp1 = TopicPartition(unique_topic, 0), TopicPartition(unique_topic, 1)
    answer = admin.delete_records({tp0: 3, tp1: -1})
    assert {tp: row["low_watermark"] for tp, row in answer.items()} == {tp0: 3, tp1: 5}
    consumer = LabkitConsumer(bootstrap_servers=kafka_broker.bootstrap)
    try:
        assert consumer.beginning_offsets([tp0, tp1]) == {tp0: 3, tp1: 5}
    finally:
        consumer.close()


# -- Apache Kafka's tools, compared with Apache Kafka ---------------------------------------


def tool_on_both(kafka_broker, apache_kafka, script: str, *args: str):
    on_labkit = run_tool(script, "--bootstrap-server", kafka_broker.bootstrap, *args)
    on_kafka = apache_kafka.tool(script, *args)
    return on_labkit, on_kafka


def test_kafka_configs_alter_and_describe_match_apache_kafka(
    kafka_broker, apache_kafka, unique_topic
):
    create = ["--create", "--topic", unique_topic, "--partitions", "1"]
    for on in tool_on_both(kafka_broker, apache_kafka, "kafka-topics.sh", *create):
        assert on.returncode == 0, on.stderr
    entity = ["--entity-type", "topics", "--entity-name", unique_topic]
    commands = [
        ["--alter", *entity, "--add-config", "retention.ms=120000,segment.ms=3600000"],
        ["--describe", *entity],
        ["--alter", *entity, "--delete-config", "segment.ms"],
        ["--describe", *entity],
    ]
    for command in commands:
        on_labkit, on_kafka = tool_on_both(kafka_broker, apache_kafka, "kafka-configs.sh", *command)
        assert on_labkit.returncode == on_kafka.returncode == 0, (command, on_labkit.stderr)
        assert described(on_labkit.stdout) == described(on_kafka.stdout), command
    assert labkit_configs(kafka_broker, unique_topic) == {"retention.ms": "120000"}


def described(text: str) -> str:
    """kafka-configs.sh --describe without the cluster settings a KRaft node lists."""
    text = re.sub(r"\s*min\.insync\.replicas=\S+ \{[^}]*\}", "", text)
    return text.replace("min.insync.replicas=1,", "")


def test_kafka_topics_alter_partitions_matches_apache_kafka(
    kafka_broker, apache_kafka, unique_topic
):
    create = ["--create", "--topic", unique_topic, "--partitions", "2"]
    for on in tool_on_both(kafka_broker, apache_kafka, "kafka-topics.sh", *create):
        assert on.returncode == 0, on.stderr
    for count in ("4", "3"):  # grow, then try to shrink (refused by both)
        alter = ["--alter", "--topic", unique_topic, "--partitions", count]
        on_labkit, on_kafka = tool_on_both(kafka_broker, apache_kafka, "kafka-topics.sh", *alter)
        assert on_labkit.returncode == on_kafka.returncode, (count, on_labkit.stderr)
        assert error_code_name(on_labkit.stdout) == error_code_name(on_kafka.stdout), count
    assert partitions_of(kafka_broker, unique_topic) == 4


def error_code_name(text: str) -> str:
    """The Kafka exception a tool printed (labkit's messages are its own words)."""
    found = re.search(r"org\.apache\.kafka\.common\.errors\.(\w+)", text)
    return found.group(1) if found else ""


def test_kafka_delete_records_matches_apache_kafka(
    kafka_broker, apache_kafka, unique_topic, tmp_path
):
    create = ["--create", "--topic", unique_topic, "--partitions", "1"]
    for on in tool_on_both(kafka_broker, apache_kafka, "kafka-topics.sh", *create):
        assert on.returncode == 0, on.stderr
    lines = "".join(f"k{i}:v{i}\n" for i in range(6))
    produce = ["--topic", unique_topic]
    # labkit's own producer on labkit (Produce through the listener is another test's)
    producer = LabkitProducer(bootstrap_servers=kafka_broker.bootstrap)
    for i in range(6):
        producer.send(unique_topic, b"v%d" % i)
    producer.flush()
    producer.close()
    produced = apache_kafka.tool("kafka-console-producer.sh", *produce, input=lines)
    assert produced.returncode == 0, produced.stderr
    offsets = tmp_path / "offsets.json"
    offsets.write_text(
        json.dumps({"partitions": [{"topic": unique_topic, "partition": 0, "offset": 4}]})
    )
    command = ["--offset-json-file", str(offsets)]
    on_labkit, on_kafka = tool_on_both(
        kafka_broker, apache_kafka, "kafka-delete-records.sh", *command
    )
    assert on_labkit.returncode == on_kafka.returncode == 0, on_labkit.stderr
    assert on_labkit.stdout == on_kafka.stdout
    assert "low_watermark: 4" in on_labkit.stdout
