"""DescribeTopicPartitions (labkit/kafka/topic_partitions.py) without sockets: the
request becomes labkit's metadata, and the answer is paged as Kafka's handler pages it."""

from __future__ import annotations

import sys

import pytest
from kio.index import load_request_schema

from labkit.kafka import bridges, codec
from labkit.kafka.apis import Context
from labkit.kafka.topic_partitions import (
    describe_topic_partitions_to_kafka as to_kafka,
)
from labkit.kafka.topic_partitions import (
    describe_topic_partitions_to_labkit as to_labkit,
)

SCHEMA = load_request_schema(75, 0)
MODULE = sys.modules[SCHEMA.__module__]
CONTEXT = Context("broker.example", 19092)
REPLY = {
    "error": 0,
    "topics": [
        {"name": "b", "error": 0, "partitions": [{"partition": i} for i in range(2)]},
        {"name": "a", "error": 0, "partitions": [{"partition": i} for i in (2, 0, 1)]},
        {"name": "gone", "error": 3, "partitions": []},
    ],
}


def request(topics=(), limit=2000, cursor=None):
    return SCHEMA(
        topics=tuple(MODULE.TopicRequest(name=t) for t in topics),
        response_partition_limit=limit,
        cursor=None
        if cursor is None
        else MODULE.Cursor(topic_name=cursor[0], partition_index=cursor[1]),
    )


def shown(response):
    cursor = response.next_cursor
    return (
        [
            (t.name, t.error_code, [p.partition_index for p in t.partitions])
            for t in response.topics
        ],
        None if cursor is None else (cursor.topic_name, cursor.partition_index),
    )


def test_it_is_advertised_and_bridged_as_v0():
    assert codec.SUPPORTED[75] == (0, 0)
    assert 75 in bridges.BRIDGED


def test_the_request_is_labkit_metadata_without_auto_creation():
    assert to_labkit(request(["b", "a", "b"]), 0) == (
        "metadata",
        {"topics": ["a", "b"], "allow_auto_create": False},
    )
    assert to_labkit(request(), 0) == ("metadata", {"topics": None, "allow_auto_create": False})


def test_one_broker_every_partition_led_by_node_0_with_empty_elr():
    response = to_kafka(REPLY, request(["a"]), 0, CONTEXT)
    partition = response.topics[0].partitions[0]
    assert (partition.leader_id, partition.leader_epoch) == (0, 0)
    assert (partition.replica_nodes, partition.isr_nodes) == ((0,), (0,))
    assert (partition.eligible_leader_replicas, partition.last_known_elr) == ((), ())
    assert partition.offline_replicas == ()
    assert response.topics[0].topic_id.int == 0


@pytest.mark.parametrize(
    ("topics", "limit", "cursor", "expected"),
    [
        # sorted by name, partitions in order; a named unknown topic keeps its error
        (
            ["gone", "b", "a"],
            2000,
            None,
            ([("a", 0, [0, 1, 2]), ("b", 0, [0, 1]), ("gone", 3, [])], None),
        ),
        # listing every topic leaves the failed ones out
        ([], 2000, None, ([("a", 0, [0, 1, 2]), ("b", 0, [0, 1])], None)),
        # a topic cut by the limit: the cursor names its first partition left out
        (["a", "b"], 2, None, ([("a", 0, [0, 1])], ("a", 2))),
        (["a", "b"], 2, ("a", 2), ([("a", 0, [2]), ("b", 0, [0])], ("b", 1))),
        # the limit used up exactly before a topic: that topic's partition 0
        (["a", "b"], 3, None, ([("a", 0, [0, 1, 2])], ("b", 0))),
        (["a", "b"], 3, ("b", 0), ([("b", 0, [0, 1])], None)),
        # a limit below 1 is 1, as Kafka's
        (["a"], 0, None, ([("a", 0, [0])], ("a", 1))),
        (["a"], -5, ("a", 2), ([("a", 0, [2])], None)),
        # a cursor past the last partition gives the topic with none
        (["a"], 10, ("a", 9), ([("a", 0, [])], None)),
    ],
)
def test_pages_as_kafka(topics, limit, cursor, expected):
    assert shown(to_kafka(REPLY, request(topics, limit, cursor), 0, CONTEXT)) == expected


@pytest.mark.parametrize("cursor", [("c", 0), ("a", -1)])
def test_a_bad_cursor_fails_every_named_topic_with_invalid_request(cursor):
    response = to_kafka(REPLY, request(["a", "b"], 10, cursor), 0, CONTEXT)
    assert shown(response) == ([("a", 42, []), ("b", 42, [])], None)


def test_a_failed_metadata_request_fails_every_named_topic():
    response = to_kafka({"error": 56, "message": "disk"}, request(["a"]), 0, CONTEXT)
    assert shown(response) == ([("a", 56, [])], None)
    assert len(codec.encode_response(7, response)) > 4
