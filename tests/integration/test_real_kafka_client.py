"""labkit's client classes against Apache Kafka 4.1.1 (KRaft, one node): they tell it from
a labkit broker and delegate to kafka-python, with labkit's values and errors.

Every check reads real results back: what one labkit class wrote, another (or
kafka-python itself) reads from the real broker.
"""

from __future__ import annotations

import json
import time

import kafka
import pytest

import labkit
from labkit import (
    ConfigResource,
    ConfigResourceType,
    KafkaAdminClient,
    KafkaConsumer,
    KafkaProducer,
    NewPartitions,
    NewTopic,
    OffsetAndMetadata,
    TopicPartition,
)
from labkit.client import backend_for
from labkit.client.backend import forget

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("kafka_python_garbage")]
WAIT_S = 60  # group joins on a loaded CI machine


def poll_until(consumer, count: int) -> list:
    records, deadline = [], time.monotonic() + WAIT_S
    while len(records) < count and time.monotonic() < deadline:
        for batch in consumer.poll(timeout_ms=500).values():
            records.extend(batch)
    return records


@pytest.fixture
def admin(apache_kafka):
    client = KafkaAdminClient(bootstrap_servers=apache_kafka.bootstrap)
    yield client
    client.close()


def test_backend_for_tells_apache_kafka_from_labkit(apache_kafka, shared_broker):
    forget()
    assert backend_for(apache_kafka.bootstrap) == "kafka"
    assert backend_for([apache_kafka.bootstrap]) == "kafka"  # cached: the same string
    assert backend_for(shared_broker.bootstrap) == "labkit"  # the Kafka port: bootstrap
    assert backend_for(shared_broker.zmq_bootstrap) == "labkit"  # ZeroMQ given directly
    host, port = apache_kafka.bootstrap.rsplit(":", 1)
    assert backend_for(f"PLAINTEXT://{host}:{port}") == "kafka"


def test_the_classes_delegate_and_labkit_clients_stay_labkit(apache_kafka, shared_broker):
    on_kafka = KafkaProducer(bootstrap_servers=apache_kafka.bootstrap)
    on_labkit = KafkaProducer(bootstrap_servers=shared_broker.bootstrap)
    try:
        assert type(on_kafka).__name__ == "DelegatingProducer"
        assert isinstance(on_kafka._inner, kafka.KafkaProducer)
        assert type(on_labkit) is KafkaProducer
    finally:
        on_kafka.close()
        on_labkit.close()


def test_produce_consume_commit_and_resume_through_labkit_classes(
    apache_kafka, admin, unique_topic
):
    admin.create_topics([NewTopic(unique_topic, 2, 1)])
    producer = KafkaProducer(
        bootstrap_servers=apache_kafka.bootstrap,
        value_serializer=lambda v: json.dumps(v).encode("utf-8"),
        key_serializer=str.encode,
        linger_ms=5,
    )
    metadata = producer.send(unique_topic, {"n": 0}, key="anna", partition=0).get(timeout=30)
    assert isinstance(metadata, labkit.RecordMetadata)
    assert (metadata.topic, metadata.partition, metadata.offset) == (unique_topic, 0, 0)
    seen = []
    for n in range(1, 6):
        producer.send(unique_topic, {"n": n}, key="anna", partition=n % 2).add_callback(seen.append)
    producer.flush(timeout=30)
    producer.close()
    assert len(seen) == 5
    assert all(isinstance(m, labkit.RecordMetadata) for m in seen)

    consumer = KafkaConsumer(
        bootstrap_servers=apache_kafka.bootstrap,
        group_id=f"{unique_topic}-g",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        value_deserializer=lambda b: json.loads(b),
    )
    assigned = []

    class Listener(labkit.ConsumerRebalanceListener):
        def on_partitions_revoked(self, revoked):
            pass

        def on_partitions_assigned(self, partitions):
            assigned.extend(partitions)

    consumer.subscribe([unique_topic], listener=Listener())
    records = poll_until(consumer, 6)
    assert sorted(r.value["n"] for r in records) == [0, 1, 2, 3, 4, 5]
    assert {r.key for r in records} == {b"anna"}
    assignment = consumer.assignment()
    assert assignment == {TopicPartition(unique_topic, 0), TopicPartition(unique_topic, 1)}
    assert all(type(tp) is TopicPartition for tp in assignment)
    assert sorted(assigned) == sorted(assignment)
    assert all(type(tp) is TopicPartition for tp in assigned)
    consumer.commit()
    assert consumer.committed(TopicPartition(unique_topic, 0)) == 3
    assert consumer.end_offsets([TopicPartition(unique_topic, 1)]) == {
        TopicPartition(unique_topic, 1): 3
    }
    (described,) = admin.describe_consumer_groups([f"{unique_topic}-g"])
    assert described.state == "Stable"
    assert len(described.members) == 1
    assert described.members[0].member_assignment.assignment == [(unique_topic, [0, 1])]
    consumer.close()

    committed = admin.list_consumer_group_offsets(f"{unique_topic}-g")
    assert committed == {
        TopicPartition(unique_topic, 0): OffsetAndMetadata(3, "", -1),
        TopicPartition(unique_topic, 1): OffsetAndMetadata(3, "", -1),
    }
    assert (f"{unique_topic}-g", "consumer") in admin.list_consumer_groups()
    # an admin rewind, then the group resumes from there
    admin.alter_consumer_group_offsets(f"{unique_topic}-g", {TopicPartition(unique_topic, 0): 1})
    again = KafkaConsumer(
        unique_topic,
        bootstrap_servers=apache_kafka.bootstrap,
        group_id=f"{unique_topic}-g",
        enable_auto_commit=False,
    )
    resumed = poll_until(again, 2)
    again.close()
    assert sorted((r.partition, r.offset) for r in resumed) == [(0, 1), (0, 2)]
    assert admin.delete_consumer_groups([f"{unique_topic}-g"]) == [
        (f"{unique_topic}-g", labkit.NoError)
    ]


def test_assign_seek_and_offsets_for_times(apache_kafka, admin, unique_topic):
    admin.create_topics([NewTopic(unique_topic, 1, 1)])
    producer = KafkaProducer(bootstrap_servers=apache_kafka.bootstrap)
    base = int(time.time() * 1000) - 10_000
    for n in range(4):
        producer.send(unique_topic, b"%d" % n, timestamp_ms=base + n * 1000)
    producer.flush(timeout=30)
    producer.close()
    tp = TopicPartition(unique_topic, 0)
    consumer = KafkaConsumer(bootstrap_servers=apache_kafka.bootstrap)
    consumer.assign([tp])
    found = consumer.offsets_for_times({tp: base + 2000})
    assert isinstance(found[tp], labkit.OffsetAndTimestamp)
    assert (found[tp].offset, found[tp].timestamp) == (2, base + 2000)
    consumer.seek(tp, found[tp].offset)
    assert [r.value for r in poll_until(consumer, 2)] == [b"2", b"3"]
    consumer.seek_to_beginning(tp)
    assert consumer.position(tp) == 0
    assert consumer.beginning_offsets([tp]) == {tp: 0}
    consumer.close()


def test_admin_topics_configs_partitions_and_records(apache_kafka, admin, unique_topic):
    result = admin.create_topics(
        [NewTopic(unique_topic, 1, 1, topic_configs={"retention.ms": "3600000"})]
    )
    assert result == {"topics": [{"name": unique_topic, "error_code": 0, "error_message": None}]}
    assert unique_topic in admin.list_topics()
    configs = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, unique_topic)])
    retention = configs["topic"][unique_topic]["retention.ms"]
    assert (retention["value"], retention["default"]) == ("3600000", False)
    assert configs["topic"][unique_topic]["cleanup.policy"]["default"] is True
    admin.alter_configs(
        [ConfigResource(ConfigResourceType.TOPIC, unique_topic, {"segment.ms": "600000"})]
    )
    admin.alter_configs(
        [ConfigResource(ConfigResourceType.TOPIC, unique_topic, {"retention.ms": None})]
    )
    after = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, unique_topic)])
    assert after["topic"][unique_topic]["segment.ms"]["value"] == "600000"  # kept
    assert after["topic"][unique_topic]["retention.ms"]["default"] is True  # reset

    admin.create_partitions({unique_topic: NewPartitions(3)})
    (described,) = admin.describe_topics([unique_topic])
    assert [p["partition"] for p in described["partitions"]] == [0, 1, 2]
    assert described["topic"] == unique_topic
    assert described["partitions"][0]["leader"] == 1

    producer = KafkaProducer(bootstrap_servers=apache_kafka.bootstrap)
    for _n in range(5):
        producer.send(unique_topic, b"x", partition=0)
    producer.flush(timeout=30)
    producer.close()
    tp = TopicPartition(unique_topic, 0)
    deleted = admin.delete_records({tp: 3})
    assert deleted[tp]["low_watermark"] == 3
    assert type(next(iter(deleted))) is TopicPartition
    with kafka.KafkaConsumer(bootstrap_servers=apache_kafka.bootstrap) as check:
        assert check.beginning_offsets([kafka.TopicPartition(unique_topic, 0)]) == {
            kafka.TopicPartition(unique_topic, 0): 3
        }
    admin.delete_topics([unique_topic])
    assert unique_topic not in admin.list_topics()


def test_errors_are_labkit_classes_with_the_brokers_words(apache_kafka, admin, unique_topic):
    admin.create_topics([NewTopic(unique_topic, 1, 1)])
    with pytest.raises(labkit.TopicAlreadyExistsError, match="already exists"):
        admin.create_topics([NewTopic(unique_topic, 1, 1)])
    with pytest.raises(labkit.UnknownTopicOrPartitionError):
        admin.delete_topics([f"{unique_topic}-missing"])
    with pytest.raises(labkit.GroupIdNotFoundError, match="list_consumer_groups"):
        admin.describe_consumer_groups([f"{unique_topic}-no-group"])
    for labkit_only in (
        admin.describe_client_throttles,
        admin.describe_client_quotas,
        lambda: admin.alter_client_quotas({"entity": {"client-id": "a"}, "ops": {}}),
    ):
        with pytest.raises(labkit.IncompatibleBrokerVersion, match="labkit-only"):
            labkit_only()
    with pytest.raises(labkit.KafkaConfigurationError, match="did you mean 'linger_ms'"):
        KafkaProducer(bootstrap_servers=apache_kafka.bootstrap, linger_msec=5)
    # kafka-python 2.0 names labkit accepts are left out, not refused
    consumer = KafkaConsumer(bootstrap_servers=apache_kafka.bootstrap, legacy_iterator=False)
    assert unique_topic in consumer.topics()
    consumer.close()
    producer = KafkaProducer(bootstrap_servers=apache_kafka.bootstrap)
    with pytest.raises(labkit.MessageSizeTooLargeError, match="max_request_size"):
        producer.send(unique_topic, b"x" * 2_000_000).get(timeout=30)
    producer.close()
