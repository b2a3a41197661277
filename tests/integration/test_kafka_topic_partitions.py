"""DescribeTopicPartitions (API 75) through the Kafka listener, side by side with Apache
Kafka 4.1.1: kafka-python 3.0's ``describe_topic_partitions`` pages through the same
topics with the same cursors; its version guess and ``describe_topics`` are unchanged."""

from __future__ import annotations

import pytest
from kafka import KafkaAdminClient
from kafka.admin import NewTopic

from labkit.testing import BrokerProcess
from labkit.testing.apache_kafka import run_tool

pytestmark = pytest.mark.usefixtures("kafka_python_garbage")


@pytest.fixture(scope="module")
def kafka_broker(tmp_path_factory):
    with BrokerProcess(data_dir=tmp_path_factory.mktemp("topic-partitions")) as proc:
        yield proc


def pages(bootstrap: str, topics: list[str], limit: int) -> list[dict]:
    """Every page of describe_topic_partitions, following next_cursor; topic ids and
    node ids left out (labkit's are the zero UUID and 0, Kafka's test node is 1)."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        seen, cursor = [], None
        for _ in range(20):
            page = admin.describe_topic_partitions(
                topics, response_partition_limit=limit, cursor=cursor
            )
            seen.append(
                {
                    "topics": [
                        (
                            t["name"],
                            t["error_code"],
                            t["is_internal"],
                            [
                                (
                                    p["partition_index"],
                                    p["error_code"],
                                    len(p["replica_nodes"]),
                                    len(p["isr_nodes"]),
                                    p["eligible_leader_replicas"],
                                    p["last_known_elr"],
                                    p["offline_replicas"],
                                )
                                for p in t["partitions"]
                            ],
                        )
                        for t in page["topics"]
                    ],
                    "next_cursor": page["next_cursor"],
                }
            )
            cursor = page["next_cursor"]
            if cursor is None:
                return seen
        raise AssertionError(f"no end after 20 pages: {seen}")
    finally:
        admin.close()


def test_pages_match_apache_kafka(kafka_broker, apache_kafka, unique_topic):
    a, b = f"{unique_topic}-a", f"{unique_topic}-b"
    for bootstrap in (kafka_broker.bootstrap, apache_kafka.bootstrap):
        for name, count in ((a, "3"), (b, "2")):
            created = run_tool(
                "kafka-topics.sh", "--bootstrap-server", bootstrap,
                "--create", "--topic", name, "--partitions", count,
            )  # fmt: skip
            assert created.returncode == 0, created.stderr
    for topics, limit in (([b, a], 2), ([a, b, f"{unique_topic}-none"], 3), ([a], 2000)):
        on_labkit = pages(kafka_broker.bootstrap, topics, limit)
        on_kafka = pages(apache_kafka.bootstrap, topics, limit)
        assert on_labkit == on_kafka, (topics, limit)
    assert len(pages(kafka_broker.bootstrap, [b, a], 2)) == 3  # 2 + 1|1 + 1: paged


def test_kafka_python_still_guesses_a_modern_broker_and_describes_topics(
    kafka_broker, unique_topic
):
    admin = KafkaAdminClient(bootstrap_servers=kafka_broker.bootstrap)
    try:
        version = admin._client.check_version()
        assert version >= (2, 4), version
        admin.create_topics([NewTopic(unique_topic, -1, -1)])  # refused below 2.4
        (described,) = admin.describe_topics([unique_topic])  # Metadata, as before
        assert (described["error_code"], len(described["partitions"])) == (0, 1)
    finally:
        admin.close()
