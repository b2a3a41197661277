"""Hostile requests for the Kafka APIs added to close gaps with Apache Kafka's tools:
OffsetDelete (47) with any group id, topic names, partition numbers and array sizes,
and DescribeTopicPartitions (75) with any topic names, limits and cursors, are answered
with Kafka's codes (never UNKNOWN, never a dropped connection), and the broker keeps
answering well-behaved clients."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kio.index import load_request_schema

from labkit import KafkaAdminClient as LabkitAdmin
from labkit import NewTopic
from labkit.testing import BrokerProcess, RawClient
from tests.raw_connections import KafkaConnection

WAIT_S = 30  # "answers, does not hang": a generous bound on a loaded machine
OFFSET_DELETE = 47
DESCRIBE_TOPIC_PARTITIONS = 75
# NONE, UNKNOWN_TOPIC_OR_PARTITION, INVALID_TOPIC_EXCEPTION, INVALID_REQUEST
TOPIC_CODES = {0, 3, 17, 42}
TOPIC = "gaps-topic"
GROUP_CODES = {0, 24, 69}  # NONE, INVALID_GROUP_ID, GROUP_ID_NOT_FOUND
PARTITION_CODES = {0, 3, 86}  # NONE, UNKNOWN_TOPIC_OR_PARTITION, GROUP_SUBSCRIBED_TO_TOPIC


@pytest.fixture(scope="module")
def kafka_broker(tmp_path_factory):
    with BrokerProcess(data_dir=tmp_path_factory.mktemp("kafka-gap-apis")) as proc:
        admin = LabkitAdmin(bootstrap_servers=proc.bootstrap)
        try:
            admin.create_topics([NewTopic(TOPIC, 2, 1)])
        finally:
            admin.close()
        yield proc


@pytest.fixture(scope="module")
def kafka(kafka_broker):
    with RawClient(kafka_broker.bootstrap) as raw:  # a group with offsets to delete from
        header, _ = raw.request(
            "offset_commit",
            {
                "group_id": "fuzz",
                "member_id": "",
                "generation": -1,
                "offsets": [[TOPIC, 0, 1, ""], [TOPIC, 1, 1, ""]],
            },
        )
        assert header["error"] == 0, header
    conn = KafkaConnection.connect(kafka_broker.port)
    yield conn
    conn.close()


names = st.one_of(
    st.sampled_from(["fuzz", TOPIC, "", "nope"]),
    st.text(max_size=300),
    st.text(st.characters(codec="ascii"), min_size=250, max_size=260),
)
partitions = st.integers(-(2**31), 2**31 - 1) | st.integers(-1, 3)


def offset_delete(group: str, topics: list[tuple[str, list[int]]]):
    schema = load_request_schema(OFFSET_DELETE, 0)
    module = __import__(schema.__module__, fromlist=["x"])
    return schema(
        group_id=group,
        topics=tuple(
            module.OffsetDeleteRequestTopic(
                name=name,
                partitions=tuple(
                    module.OffsetDeleteRequestPartition(partition_index=p) for p in parts
                ),
            )
            for name, parts in topics
        ),
    )


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(names, st.lists(st.tuples(names, st.lists(partitions, max_size=5)), max_size=6))
def test_offset_delete_answers_any_request_with_kafkas_codes(kafka, group, topics):
    response = kafka.call(OFFSET_DELETE, 0, offset_delete(group, topics))
    assert response.error_code in GROUP_CODES, response
    if response.error_code:
        assert response.topics == ()
        return
    for topic in response.topics:
        for row in topic.partitions:
            assert row.error_code in PARTITION_CODES, response


def test_a_huge_offset_delete_is_answered_and_the_broker_stays_up(kafka, kafka_broker):
    topics = [(f"t{i}", list(range(50))) for i in range(200)] + [(TOPIC, [0] * 1000)]
    response = kafka.call(OFFSET_DELETE, 0, offset_delete("fuzz", topics))
    assert response.error_code in GROUP_CODES
    with RawClient(kafka_broker.bootstrap) as raw:
        assert raw.request("api_versions", {}, timeout=WAIT_S)[0]["error"] == 0
    assert kafka_broker.proc.poll() is None
    assert "Traceback" not in kafka_broker.output()


def describe_topic_partitions(topics: list[str], limit: int, cursor):
    schema = load_request_schema(DESCRIBE_TOPIC_PARTITIONS, 0)
    module = __import__(schema.__module__, fromlist=["x"])
    return schema(
        topics=tuple(module.TopicRequest(name=name) for name in topics),
        response_partition_limit=limit,
        cursor=None
        if cursor is None
        else module.Cursor(topic_name=cursor[0], partition_index=cursor[1]),
    )


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(names, max_size=6),
    st.integers(-(2**31), 2**31 - 1) | st.integers(-1, 3),
    st.none() | st.tuples(names, partitions),
)
def test_describe_topic_partitions_answers_any_request_with_kafkas_codes(
    kafka, topics, limit, cursor
):
    response = kafka.call(
        DESCRIBE_TOPIC_PARTITIONS, 0, describe_topic_partitions(topics, limit, cursor)
    )
    shown = 0
    for topic in response.topics:
        assert topic.error_code in TOPIC_CODES, response
        shown += len(topic.partitions)
    assert shown <= max(min(limit, 2000), 1)
    if response.next_cursor is not None:
        assert response.next_cursor.partition_index >= 0


def test_describing_every_topic_one_partition_at_a_time_ends(kafka):
    cursor, pages = None, 0
    while True:
        pages += 1
        assert pages < 100, "the cursor should reach the end"
        response = kafka.call(
            DESCRIBE_TOPIC_PARTITIONS, 0, describe_topic_partitions([], 1, cursor)
        )
        assert sum(len(t.partitions) for t in response.topics) <= 1
        if response.next_cursor is None:
            break
        cursor = (response.next_cursor.topic_name, response.next_cursor.partition_index)
    assert pages >= 2  # TOPIC has two partitions
