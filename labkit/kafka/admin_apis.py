"""Kafka's topic-admin APIs on labkit's: CreatePartitions, AlterConfigs,
IncrementalAlterConfigs and DeleteRecords. No sockets.

Theory of operation
-------------------
Each API is a pair of pure functions like those in apis.py: the Kafka request becomes
one labkit request (docs/wire.md) and the reply becomes the response of the request's
version. The broker does the work (its handlers, durability rounds and errors); what is
Kafka's alone is decided here:

- resources that are not topics (a broker's configs: labkit's are its ``--config``
  flags) and IncrementalAlterConfigs' APPEND / SUBTRACT get INVALID_REQUEST with a
  message that says what works; such resources never reach the broker;
- a topic named twice in one request gets INVALID_REQUEST for each of its rows, as
  Kafka answers (the labkit request is keyed by topic name);
- AlterConfigs replaces a topic's whole set of overrides (labkit's ``replace``), while
  IncrementalAlterConfigs' SET and DELETE are labkit's incremental alter_configs.
"""

from __future__ import annotations

import collections
from typing import Any

from kio.index import load_response_schema
from kio.schema.errors import ErrorCode

from labkit.kafka.apis import (
    _NO_THROTTLE,
    TOPIC_RESOURCE,
    Api,
    Context,
    _error,
    _make,
    _nested,
    _rows_by_name,
)

DELETE_RECORDS_KEY = 21
ALTER_CONFIGS_KEY = 33
CREATE_PARTITIONS_KEY = 37
INCREMENTAL_ALTER_CONFIGS_KEY = 44
SET, DELETE, APPEND, SUBTRACT = 0, 1, 2, 3  # IncrementalAlterConfigs' operations

NOT_A_TOPIC = (
    "labkit alters topic configs only; broker settings are the broker's --config flags "
    "(docs/broker.md)"
)
ONLY_SET_DELETE = (
    "labkit supports the SET and DELETE operations; to change a list config such as "
    "cleanup.policy, SET its whole value (e.g. cleanup.policy=compact,delete)"
)
NAMED_TWICE = "the topic is named more than once in this request; name it once"
NO_ASSIGNMENT = (
    "labkit has one broker (id 0): a manual assignment may name only broker 0; leave "
    "the assignment out to let the broker place the partitions"
)


def _duplicates(names: list[str]) -> set[str]:
    return {name for name, n in collections.Counter(names).items() if n > 1}


# -- CreatePartitions ----------------------------------------------------------------------


def _refused_assignment(topic: Any) -> bool:
    return any(tuple(a.broker_ids) != (0,) for a in topic.assignments or ())


def create_partitions_to_labkit(request: Any, version: int) -> tuple[str, dict]:
    twice = _duplicates([t.name for t in request.topics])
    wanted = {
        t.name: t.count
        for t in request.topics
        if t.name not in twice and not _refused_assignment(t)
    }
    return "create_partitions", {"topics": wanted, "validate_only": bool(request.validate_only)}


def create_partitions_to_kafka(reply: dict, request: Any, version: int, context: Context) -> Any:
    cls = load_response_schema(CREATE_PARTITIONS_KEY, version)
    result_cls = _nested(cls, "CreatePartitionsTopicResult")
    twice = _duplicates([t.name for t in request.topics])
    asked = [t.name for t in request.topics if t.name not in twice and not _refused_assignment(t)]
    rows = dict(zip(asked, _rows_by_name(reply, asked), strict=True))
    results = []
    for topic in request.topics:
        if topic.name in twice:
            error, message = ErrorCode.invalid_request, NAMED_TWICE
        elif _refused_assignment(topic):
            error, message = ErrorCode.invalid_replica_assignment, NO_ASSIGNMENT
        else:
            row = rows[topic.name]
            error, message = _error(row["error"]), row.get("message")
        results.append(_make(result_cls, name=topic.name, error_code=error, error_message=message))
    return _make(cls, throttle_time=_NO_THROTTLE, results=tuple(results))


# -- AlterConfigs / IncrementalAlterConfigs -------------------------------------------------


def _refusal(resource: Any, names: list[str], twice: set[str]) -> tuple[ErrorCode, str] | None:
    """Why the listener answers this resource itself, or None to ask the broker."""
    if resource.resource_type != TOPIC_RESOURCE:
        return ErrorCode.invalid_request, NOT_A_TOPIC
    if resource.resource_name in twice:
        return ErrorCode.invalid_request, NAMED_TWICE
    if any(getattr(c, "config_operation", SET) not in (SET, DELETE) for c in resource.configs):
        return ErrorCode.invalid_request, ONLY_SET_DELETE
    if len({c.name for c in resource.configs}) != len(resource.configs):
        return ErrorCode.invalid_request, "a config is named more than once; name it once"
    return None


def _plan(request: Any) -> tuple[dict[str, dict], list]:
    """({topic: {config: value or None}} for the broker, [(resource, refusal)])."""
    names = [r.resource_name for r in request.resources if r.resource_type == TOPIC_RESOURCE]
    twice = _duplicates(names)
    wanted: dict[str, dict] = {}
    rows = []
    for resource in request.resources:
        refusal = _refusal(resource, names, twice)
        rows.append((resource, refusal))
        if refusal is None:
            wanted[resource.resource_name] = {
                c.name: None if getattr(c, "config_operation", SET) == DELETE else c.value
                for c in resource.configs
            }
    return wanted, rows


def alter_configs_to_labkit(request: Any, version: int) -> tuple[str, dict]:
    wanted, _rows = _plan(request)
    header = {"topics": wanted, "validate_only": bool(request.validate_only), "replace": True}
    return "alter_configs", header


def incremental_alter_configs_to_labkit(request: Any, version: int) -> tuple[str, dict]:
    wanted, _rows = _plan(request)
    return "alter_configs", {"topics": wanted, "validate_only": bool(request.validate_only)}


def _alter_response(key: int, reply: dict, request: Any, version: int) -> Any:
    cls = load_response_schema(key, version)
    result_cls = _nested(cls, "AlterConfigsResourceResponse")
    wanted, plan = _plan(request)
    asked = list(wanted)
    answers = dict(zip(asked, _rows_by_name(reply, asked), strict=True))
    results = []
    for resource, refusal in plan:
        if refusal is None:
            row = answers[resource.resource_name]
            error, message = _error(row["error"]), row.get("message")
        else:
            error, message = refusal
        results.append(
            _make(
                result_cls,
                error_code=error,
                error_message=message,
                resource_type=resource.resource_type,
                resource_name=resource.resource_name,
            )
        )
    return _make(cls, throttle_time=_NO_THROTTLE, responses=tuple(results))


def alter_configs_to_kafka(reply: dict, request: Any, version: int, context: Context) -> Any:
    return _alter_response(ALTER_CONFIGS_KEY, reply, request, version)


def incremental_alter_configs_to_kafka(
    reply: dict, request: Any, version: int, context: Context
) -> Any:
    return _alter_response(INCREMENTAL_ALTER_CONFIGS_KEY, reply, request, version)


# -- DeleteRecords ------------------------------------------------------------------------


def delete_records_to_labkit(request: Any, version: int) -> tuple[str, dict]:
    rows = [
        [topic.name, partition.partition_index, partition.offset]
        for topic in request.topics
        for partition in topic.partitions
    ]
    return "delete_records", {"partitions": rows}


def delete_records_to_kafka(reply: dict, request: Any, version: int, context: Context) -> Any:
    cls = load_response_schema(DELETE_RECORDS_KEY, version)
    topic_cls = _nested(cls, "DeleteRecordsTopicResult")
    partition_cls = _nested(cls, "DeleteRecordsPartitionResult")
    whole_error = reply.get("error", 0)
    rows = iter(reply.get("partitions") or ())
    topics = []
    for topic in request.topics:
        partitions = []
        for partition in topic.partitions:
            row = None if whole_error else next(rows, None)
            if row is None:  # the whole request failed (e.g. a partition named twice)
                error, low = _error(whole_error or ErrorCode.unknown_server_error), -1
            else:
                error, low = _error(row[2]), row[3]
            partitions.append(
                _make(
                    partition_cls,
                    partition_index=partition.partition_index,
                    low_watermark=low,
                    error_code=error,
                )
            )
        topics.append(_make(topic_cls, name=topic.name, partitions=tuple(partitions)))
    return _make(cls, throttle_time=_NO_THROTTLE, topics=tuple(topics))


BRIDGED: dict[int, Api] = {
    CREATE_PARTITIONS_KEY: Api(create_partitions_to_labkit, create_partitions_to_kafka),
    ALTER_CONFIGS_KEY: Api(alter_configs_to_labkit, alter_configs_to_kafka),
    INCREMENTAL_ALTER_CONFIGS_KEY: Api(
        incremental_alter_configs_to_labkit, incremental_alter_configs_to_kafka
    ),
    DELETE_RECORDS_KEY: Api(delete_records_to_labkit, delete_records_to_kafka),
}
