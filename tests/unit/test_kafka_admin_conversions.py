"""The admin bridges' pure functions: what the listener answers itself and what it asks
the broker (labkit/kafka/admin_apis.py)."""

from __future__ import annotations

import sys

from kio.index import load_request_schema
from kio.schema.errors import ErrorCode

from labkit.kafka import admin_apis
from labkit.kafka.apis import Context

CONTEXT = Context("localhost", 9092)


def _module(key: int, version: int):
    schema = load_request_schema(key, version)
    return schema, sys.modules[schema.__module__]


def test_create_partitions_answers_a_twice_named_topic_and_a_foreign_assignment_itself():
    schema, m = _module(admin_apis.CREATE_PARTITIONS_KEY, 3)
    topics = (
        m.CreatePartitionsTopic(name="a", count=3, assignments=None),
        m.CreatePartitionsTopic(name="a", count=4, assignments=None),
        m.CreatePartitionsTopic(
            name="b", count=2, assignments=(m.CreatePartitionsAssignment(broker_ids=(1,)),)
        ),
        m.CreatePartitionsTopic(name="c", count=5, assignments=None),
    )
    request = schema(topics=topics, timeout=0, validate_only=True)
    api, header = admin_apis.create_partitions_to_labkit(request, 3)
    assert (api, header) == ("create_partitions", {"topics": {"c": 5}, "validate_only": True})
    reply = {"error": 0, "topics": [{"name": "c", "error": 37, "message": "fewer"}]}
    results = admin_apis.create_partitions_to_kafka(reply, request, 3, CONTEXT).results
    assert [(r.name, r.error_code) for r in results] == [
        ("a", ErrorCode.invalid_request),
        ("a", ErrorCode.invalid_request),
        ("b", ErrorCode.invalid_replica_assignment),
        ("c", ErrorCode.invalid_partitions),
    ]
    assert results[3].error_message == "fewer"


def test_incremental_set_and_delete_reach_the_broker_append_does_not():
    schema, m = _module(admin_apis.INCREMENTAL_ALTER_CONFIGS_KEY, 1)

    def resource(name, *ops):
        configs = tuple(
            m.AlterableConfig(name=key, config_operation=op, value=value) for key, op, value in ops
        )
        return m.AlterConfigsResource(resource_type=2, resource_name=name, configs=configs)

    request = schema(
        resources=(
            resource(
                "t", ("retention.ms", admin_apis.SET, "5"), ("segment.ms", admin_apis.DELETE, None)
            ),
            resource("u", ("cleanup.policy", admin_apis.APPEND, "compact")),
            m.AlterConfigsResource(resource_type=4, resource_name="0", configs=()),
        ),
        validate_only=False,
    )
    api, header = admin_apis.incremental_alter_configs_to_labkit(request, 1)
    assert api == "alter_configs"
    assert header == {
        "topics": {"t": {"retention.ms": "5", "segment.ms": None}},
        "validate_only": False,
    }
    reply = {"error": 0, "topics": [{"name": "t", "error": 0, "message": None}]}
    answer = admin_apis.incremental_alter_configs_to_kafka(reply, request, 1, CONTEXT)
    assert [(r.resource_name, r.error_code) for r in answer.responses] == [
        ("t", ErrorCode.none),
        ("u", ErrorCode.invalid_request),
        ("0", ErrorCode.invalid_request),
    ]
    assert "SET" in answer.responses[1].error_message


def test_alter_configs_asks_the_broker_to_replace_the_whole_set():
    schema, m = _module(admin_apis.ALTER_CONFIGS_KEY, 2)
    config = m.AlterableConfig(name="retention.ms", value="5")
    request = schema(
        resources=(m.AlterConfigsResource(resource_type=2, resource_name="t", configs=(config,)),),
        validate_only=False,
    )
    _api, header = admin_apis.alter_configs_to_labkit(request, 2)
    assert header["replace"] is True
    assert header["topics"] == {"t": {"retention.ms": "5"}}


def test_delete_records_maps_a_whole_request_error_to_every_partition():
    schema, m = _module(admin_apis.DELETE_RECORDS_KEY, 2)
    parts = tuple(m.DeleteRecordsPartition(partition_index=p, offset=1) for p in (0, 0))
    request = schema(topics=(m.DeleteRecordsTopic(name="t", partitions=parts),), timeout=0)
    _api, header = admin_apis.delete_records_to_labkit(request, 2)
    assert header == {"partitions": [["t", 0, 1], ["t", 0, 1]]}
    answer = admin_apis.delete_records_to_kafka(
        {"error": 42, "message": "twice"}, request, 2, CONTEXT
    )
    rows = answer.topics[0].partitions
    assert [(r.error_code, r.low_watermark) for r in rows] == [(ErrorCode.invalid_request, -1)] * 2
