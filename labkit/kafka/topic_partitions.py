"""DescribeTopicPartitions (Kafka API 75, KIP-966): what Kafka 4's ``kafka-topics.sh
--describe`` asks when the broker advertises it. No sockets (an ``Api`` pair as in
apis.py).

Theory of operation
-------------------
The request becomes labkit's ``metadata`` for the named topics (all topics for an
empty list; never auto-created) and the answer is cut as Kafka's
DescribeTopicPartitionsRequestHandler cuts it: topics sorted by name, starting at the
cursor's topic and partition; at most ``response_partition_limit`` partitions (at
least 1, at most Kafka's ``max.request.partition.size.limit``, 2000); when a topic's
partitions do not all fit, ``next_cursor`` names the first one left out (and when the
limit is used up exactly before a topic, that topic's partition 0). A named topic that
does not exist is listed with its error (UNKNOWN_TOPIC_OR_PARTITION, or
INVALID_TOPIC_EXCEPTION for an illegal name); listing all topics lists only existing
ones. A cursor whose topic is not among the named ones, or whose partition is
negative, fails every named topic with INVALID_REQUEST, as Kafka does.

labkit has one broker: every partition is led by node 0 with leader epoch 0, replicas
and ISR [0], the eligible leader replicas (ELR) and last known ELR empty (nothing can
be an eligible leader but the leader itself), no offline replicas, the zero topic id.
"""

from __future__ import annotations

import datetime
from typing import Any

from kio.index import load_response_schema
from kio.schema.errors import ErrorCode

from labkit.kafka.apis import NODE_ID, ZERO_UUID, Api, Context, _error, _make, _nested

DESCRIBE_TOPIC_PARTITIONS_KEY = 75
MAX_PARTITIONS = 2000  # Kafka's max.request.partition.size.limit (default)
_NO_THROTTLE = datetime.timedelta(0)


def describe_topic_partitions_to_labkit(request: Any, version: int) -> tuple[str, dict]:
    names = sorted({t.name for t in request.topics}) or None  # empty: every topic
    return "metadata", {"topics": names, "allow_auto_create": False}


def _bad_cursor(request: Any) -> str | None:
    cursor = request.cursor
    if cursor is None:
        return None
    if cursor.partition_index < 0:
        return "the cursor's partition index must be >= 0"
    if request.topics and cursor.topic_name not in {t.name for t in request.topics}:
        return "the topic list must contain the cursor's topic"
    return None


def describe_topic_partitions_to_kafka(
    reply: dict, request: Any, version: int, context: Context
) -> Any:
    cls = load_response_schema(DESCRIBE_TOPIC_PARTITIONS_KEY, version)
    topic_cls = _nested(cls, "DescribeTopicPartitionsResponseTopic")
    partition_cls = _nested(cls, "DescribeTopicPartitionsResponsePartition")
    cursor_cls = _nested(cls, "Cursor")
    error = reply.get("error", 0)
    if error or _bad_cursor(request):
        code = _error(error) if error else ErrorCode.invalid_request
        failed = tuple(
            _make(topic_cls, error_code=code, name=t.name, topic_id=ZERO_UUID, partitions=())
            for t in request.topics
        )
        return _make(cls, throttle_time=_NO_THROTTLE, topics=failed, next_cursor=None)
    list_all = not request.topics
    asked = {t.name for t in request.topics}
    cursor = request.cursor
    remaining = max(min(MAX_PARTITIONS, request.response_partition_limit), 1)
    topics, next_cursor = [], None
    for row in sorted(reply.get("topics", ()), key=lambda r: r["name"]):
        name = row["name"]
        if (not list_all and name not in asked) or (
            cursor is not None and name < cursor.topic_name
        ):
            continue
        code = row.get("error", 0)
        if code:
            if not list_all:
                topics.append(
                    _make(
                        topic_cls,
                        error_code=_error(code),
                        name=name,
                        topic_id=ZERO_UUID,
                        partitions=(),
                    )
                )
            continue
        if remaining == 0:  # the previous topics used the limit up exactly
            next_cursor = _make(cursor_cls, topic_name=name, partition_index=0)
            break
        start = cursor.partition_index if cursor is not None and name == cursor.topic_name else 0
        by_index = {p["partition"]: p for p in row.get("partitions", ())}
        indexes = [i for i in sorted(by_index) if i >= start]
        shown, rest = indexes[:remaining], indexes[remaining:]
        topics.append(
            _make(
                topic_cls,
                error_code=ErrorCode.none,
                name=name,
                topic_id=ZERO_UUID,
                is_internal=bool(row.get("is_internal", False)),
                partitions=tuple(
                    _make(
                        partition_cls,
                        error_code=_error(by_index[index].get("error", 0)),
                        partition_index=index,
                        # cluster mode names them (broker/cluster_sync.py); else node 0
                        leader_id=by_index[index].get("leader", NODE_ID),
                        leader_epoch=by_index[index].get("leader_epoch", 0),
                        replica_nodes=tuple(by_index[index].get("replicas", (NODE_ID,))),
                        isr_nodes=tuple(by_index[index].get("isr", (NODE_ID,))),
                        eligible_leader_replicas=(),
                        last_known_elr=(),
                        offline_replicas=tuple(by_index[index].get("offline_replicas", ())),
                    )
                    for index in shown
                ),
            )
        )
        if rest:
            next_cursor = _make(cursor_cls, topic_name=name, partition_index=rest[0])
            break
        remaining -= len(shown)
    return _make(cls, throttle_time=_NO_THROTTLE, topics=tuple(topics), next_cursor=next_cursor)


# api key -> its pair: bridges.BRIDGED's row (codec.SUPPORTED advertises 75: v0)
BRIDGED: dict[int, Api] = {
    DESCRIBE_TOPIC_PARTITIONS_KEY: Api(
        describe_topic_partitions_to_labkit, describe_topic_partitions_to_kafka
    ),
}
