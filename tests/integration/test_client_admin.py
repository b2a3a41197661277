"""KafkaAdminClient against the real broker process, and what a client does when no
broker is there."""

from __future__ import annotations

import time

import pytest

from labkit import (
    ConfigResource,
    ConfigResourceType,
    InvalidTopicError,
    KafkaAdminClient,
    KafkaConsumer,
    KafkaProducer,
    NewPartitions,
    NewTopic,
    NoBrokersAvailable,
    TopicAlreadyExistsError,
    UnknownTopicOrPartitionError,
)
from labkit.testing.broker import free_port


@pytest.fixture
def admin(shared_broker):
    client = KafkaAdminClient(bootstrap_servers=shared_broker.bootstrap)
    yield client
    client.close()


def test_create_describe_list_delete(admin, unique_topic):
    result = admin.create_topics(
        [NewTopic(name=unique_topic, num_partitions=3, replication_factor=1)]
    )
    assert result["topics"] == [{"name": unique_topic, "error_code": 0, "error_message": None}]
    assert unique_topic in admin.list_topics()
    (described,) = admin.describe_topics([unique_topic])
    assert described["topic"] == described["name"] == unique_topic
    assert described["error_code"] == 0
    assert sorted(p["partition"] for p in described["partitions"]) == [0, 1, 2]
    assert described["partitions"][0]["leader"] == 0
    admin.delete_topics([unique_topic])
    assert unique_topic not in admin.list_topics()


def test_errors_are_kafka_classes(admin, unique_topic):
    admin.create_topics([NewTopic(unique_topic, 1, 1)])
    with pytest.raises(TopicAlreadyExistsError):
        admin.create_topics([NewTopic(unique_topic, 1, 1)])
    result = admin.create_topics([NewTopic(unique_topic, 1, 1)], raise_errors=False)
    assert result["topics"][0]["error_code"] == TopicAlreadyExistsError.errno
    with pytest.raises(InvalidTopicError):
        admin.create_topics([NewTopic("bad/name", 1, 1)])
    with pytest.raises(UnknownTopicOrPartitionError):
        admin.delete_topics(["never-created-" + unique_topic])


def test_topic_configs(admin, unique_topic):
    admin.create_topics([NewTopic(unique_topic, 1, 1, topic_configs={"retention.ms": "60000"})])
    resource = ConfigResource(ConfigResourceType.TOPIC, unique_topic)
    configs = admin.describe_configs([resource])["topic"][unique_topic]
    assert configs["retention.ms"]["value"] == "60000"
    assert configs["retention.ms"]["default"] is False
    admin.alter_configs([ConfigResource("topic", unique_topic, {"retention.ms": "5000"})])
    configs = admin.describe_configs([resource])["topic"][unique_topic]
    assert configs["retention.ms"]["value"] == "5000"


def test_create_partitions_is_seen_by_clients(admin, shared_broker, unique_topic):
    admin.create_topics([NewTopic(unique_topic, 2, 1)])
    admin.create_partitions({unique_topic: NewPartitions(total_count=4)})
    (described,) = admin.describe_topics([unique_topic])
    assert len(described["partitions"]) == 4
    with KafkaProducer(bootstrap_servers=shared_broker.bootstrap) as producer:
        assert producer.partitions_for(unique_topic) == {0, 1, 2, 3}
        assert producer.send(unique_topic, b"x", partition=3).get(timeout=10).partition == 3


def test_describe_cluster(admin):
    cluster = admin.describe_cluster()
    assert cluster["controller_id"] == 0
    assert cluster["brokers"][0]["node_id"] == 0


@pytest.mark.parametrize("client", [KafkaProducer, KafkaConsumer, KafkaAdminClient])
def test_no_broker_fails_fast_and_says_what_to_do(client):
    address = f"127.0.0.1:{free_port()}"
    started = time.monotonic()
    with pytest.raises(NoBrokersAvailable) as info:
        # nothing listens: the client waits api_version_auto_timeout_ms (2 s), not
        # request_timeout_ms (3 min here), because the socket monitor saw the refusal
        client(bootstrap_servers=address, request_timeout_ms=180_000)
    message = str(info.value)
    assert "refused the connection (nothing listens there)" in message
    assert time.monotonic() - started < 120  # does not hang: far below request_timeout_ms
    assert address in message
    assert "labkit broker" in message
    assert "docker-compose up" in message
    assert "LABKIT_BOOTSTRAP" in message


def test_any_of_several_bootstrap_servers_will_do(shared_broker):
    dead = f"127.0.0.1:{free_port()}"
    with KafkaAdminClient(bootstrap_servers=[dead, shared_broker.bootstrap]) as admin:
        assert isinstance(admin.list_topics(), list)
