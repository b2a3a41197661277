"""The Kafka listener's codec and API translation, without sockets (labkit/kafka/)."""

from __future__ import annotations

import dataclasses
import datetime
import io
import random
import struct
import types
import typing
import uuid

import pytest
from kio.index import load_request_schema, load_response_schema
from kio.schema.errors import ErrorCode
from kio.schema.types import ProducerId
from kio.serial import entity_reader, entity_writer

from labkit.kafka import apis, codec

MAX_FRAME = 1 << 20
TIMEOUT = datetime.timedelta(seconds=30)
ADVERTISED = [(18, v) for v in range(5)] + [(3, v) for v in range(13)]
ADVERTISED += [(19, v) for v in range(2, 8)] + [(20, v) for v in range(1, 6)]
ADVERTISED += [(32, v) for v in range(1, 5)] + [(2, v) for v in range(1, 8)]
ADVERTISED += [(21, v) for v in range(3)] + [(33, v) for v in range(3)]
ADVERTISED += [(37, v) for v in range(4)] + [(44, v) for v in range(2)]
ADVERTISED += [(22, v) for v in range(5)]  # InitProducerId
# the group APIs (group_apis.py)
ADVERTISED += [(8, v) for v in range(2, 9)] + [(9, v) for v in range(1, 8)]
ADVERTISED += [(10, v) for v in range(4)] + [(11, v) for v in range(8)]
ADVERTISED += [(12, v) for v in range(5)] + [(13, v) for v in range(5)]
ADVERTISED += [(14, v) for v in range(6)] + [(15, v) for v in range(6)]
ADVERTISED += [(16, v) for v in range(5)] + [(42, v) for v in range(3)]
ADVERTISED += [(47, 0)]  # OffsetDelete (group_apis.py)
ADVERTISED += [(75, 0)]  # DescribeTopicPartitions (topic_partitions.py)
ADVERTISED += [(0, v) for v in range(3, 10)] + [(1, v) for v in range(4, 13)]  # Produce, Fetch


def request_frame(api_key: int, version: int, body=None, correlation_id: int = 7) -> bytes:
    """A request frame (no size prefix) written with kio's writers."""
    schema = load_request_schema(api_key, version)
    header_schema = schema.__header_schema__
    out = io.BytesIO()
    entity_writer(header_schema)(
        out,
        header_schema(
            request_api_key=api_key,
            request_api_version=version,
            correlation_id=correlation_id,
            client_id="test-client",
        ),
    )
    if body is None:
        body = default_body(schema, version)
    entity_writer(schema)(out, body)
    return out.getvalue()


def produce_fetch_body(schema, module):
    """A Produce (empty records) or Fetch request of any version (produce_fetch.py)."""
    if schema.__name__ == "ProduceRequest":
        data = module.PartitionProduceData(index=0, records=b"")
        topic = module.TopicProduceData(name="orders", partition_data=(data,))
        return schema(transactional_id=None, acks=-1, timeout=TIMEOUT, topic_data=(topic,))
    partition = apis._make(
        module.FetchPartition, partition=0, fetch_offset=0, partition_max_bytes=1 << 20
    )
    topic = module.FetchTopic(topic="orders", partitions=(partition,))
    return apis._make(
        schema,
        replica_id=-1,
        max_wait=TIMEOUT,
        min_bytes=1,
        max_bytes=1 << 20,
        isolation_level=0,
        session_id=0,
        session_epoch=-1,
        topics=(topic,),
        forgotten_topics_data=(),
        rack_id="",
    )


def default_body(schema, version):
    module = __import__(schema.__module__, fromlist=["x"])
    if schema.__name__ in ("ProduceRequest", "FetchRequest"):
        return produce_fetch_body(schema, module)
    if schema.__name__ == "ApiVersionsRequest":
        return apis._make(schema, client_software_name="kio-test", client_software_version="1")
    if schema.__name__ == "CreateTopicsRequest":
        config = module.CreatableTopicConfig(name="retention.ms", value="5000")
        topics = (
            module.CreatableTopic(
                name="orders", num_partitions=3, replication_factor=1, assignments=(), configs=()
            ),
            module.CreatableTopic(
                name="auto",
                num_partitions=-1,
                replication_factor=-1,
                assignments=(),
                configs=(config,),
            ),
        )
        return apis._make(schema, topics=topics, timeout=TIMEOUT, validate_only=False)
    if schema.__name__ == "DescribeConfigsRequest":
        resource = module.DescribeConfigsResource(
            resource_type=2, resource_name="orders", configuration_keys=None
        )
        return apis._make(schema, resources=(resource,), include_synonyms=True)
    if schema.__name__ == "ListOffsetsRequest":
        partitions = tuple(
            apis._make(module.ListOffsetsPartition, partition_index=p, timestamp=ts)
            for p, ts in enumerate((-2, -1, 1_000, -3))
        )
        topic = module.ListOffsetsTopic(name="orders", partitions=partitions)
        return apis._make(schema, replica_id=-1, isolation_level=0, topics=(topic,))
    if schema.__name__ == "DeleteTopicsRequest":
        return apis._make(schema, topic_names=("orders", "nope"), timeout=TIMEOUT)
    if schema.__name__ in ADMIN_BODIES:
        return ADMIN_BODIES[schema.__name__](module, schema)
    if schema.__name__ == "InitProducerIdRequest":
        return apis._make(
            schema,
            transactional_id=None,
            transaction_timeout=TIMEOUT,
            producer_id=ProducerId(-1),
            producer_epoch=-1,
        )
    if schema.__name__ != "MetadataRequest":
        return filled_entity(schema)
    topic = __import__(schema.__module__, fromlist=["x"]).MetadataRequestTopic
    topics = (apis._make(topic, name="orders", topic_id=apis.ZERO_UUID),)
    return apis._make(
        schema,
        topics=topics,
        allow_auto_topic_creation=False,
        include_cluster_authorized_operations=False,
        include_topic_authorized_operations=False,
    )


def _create_partitions_body(module, schema):
    topic = module.CreatePartitionsTopic(name="orders", count=4, assignments=None)
    return schema(topics=(topic,), timeout=TIMEOUT, validate_only=False)


def _alter_configs_body(module, schema):
    config = apis._make(module.AlterableConfig, name="retention.ms", config_operation=0, value="1")
    resource = module.AlterConfigsResource(
        resource_type=2, resource_name="orders", configs=(config,)
    )
    return schema(resources=(resource,), validate_only=False)


def filled_entity(cls):
    """An instance of kio's ``cls`` with a plain value in every field (one item per
    array), for the APIs whose contents these tests do not look at (the group APIs)."""
    hints = typing.get_type_hints(cls)
    values = {}
    for f in dataclasses.fields(cls):
        values[f.name] = _filled(hints[f.name])
    return cls(**values)


def _filled(hint):
    if typing.get_origin(hint) in (types.UnionType, typing.Union):
        return _filled(next(a for a in typing.get_args(hint) if a is not type(None)))
    if typing.get_origin(hint) is tuple:
        return (_filled(typing.get_args(hint)[0]),)
    if dataclasses.is_dataclass(hint):
        return filled_entity(hint)
    if issubclass(hint, bool):
        return False
    if issubclass(hint, datetime.timedelta):
        return hint(datetime.timedelta(seconds=10))
    if issubclass(hint, int):
        return hint(1)
    if issubclass(hint, bytes):
        return b"\0"
    if issubclass(hint, uuid.UUID):
        return apis.ZERO_UUID
    return hint("g")


def _delete_records_body(module, schema):
    partition = module.DeleteRecordsPartition(partition_index=0, offset=3)
    topic = module.DeleteRecordsTopic(name="orders", partitions=(partition,))
    return schema(topics=(topic,), timeout=TIMEOUT)


ADMIN_BODIES = {
    "CreatePartitionsRequest": _create_partitions_body,
    "AlterConfigsRequest": _alter_configs_body,
    "IncrementalAlterConfigsRequest": _alter_configs_body,
    "DeleteRecordsRequest": _delete_records_body,
}


def decode_response(frame: bytes, api_key: int, version: int):
    """(correlation id, response entity) of a response frame (size prefix included)."""
    (size,) = struct.unpack_from(">i", frame)
    assert size == len(frame) - 4
    schema = load_response_schema(api_key, version)
    header, used = entity_reader(schema.__header_schema__)(frame[4:], 0)
    body, body_size = entity_reader(schema)(frame[4:], used)
    assert used + body_size == size
    return header.correlation_id, body


# -- framing -------------------------------------------------------------------------------


def test_frames_come_whole_however_the_bytes_are_split():
    frames = [request_frame(18, v, correlation_id=v) for v in range(5)]
    stream = b"".join(struct.pack(">i", len(f)) + f for f in frames)
    for cut in (1, 3, 7, 64, len(stream)):
        reader = codec.FrameReader(MAX_FRAME)
        got = []
        for start in range(0, len(stream), cut):
            got += reader.feed(stream[start : start + cut])
        assert got == frames
        assert reader.buffered == 0


@pytest.mark.parametrize("size", [MAX_FRAME + 1, -1, -(1 << 31)])
def test_a_frame_size_over_the_limit_or_negative_is_refused(size):
    reader = codec.FrameReader(MAX_FRAME)
    with pytest.raises(codec.FrameTooLarge, match=r"socket\.request\.max\.bytes"):
        reader.feed(struct.pack(">i", size))


def test_a_frame_of_exactly_the_limit_is_accepted():
    reader = codec.FrameReader(16)
    assert reader.feed(struct.pack(">i", 16) + b"x" * 16) == [b"x" * 16]


# -- requests ------------------------------------------------------------------------------


def test_the_advertised_ranges_are_these():
    assert sorted((k, v) for k, (lo, hi) in codec.SUPPORTED.items() for v in range(lo, hi + 1)) == (
        sorted(ADVERTISED)
    )


@pytest.mark.parametrize(("api_key", "version"), ADVERTISED)
def test_every_advertised_version_decodes(api_key, version):
    header, request = codec.decode_request(request_frame(api_key, version))
    assert (header.request_api_key, header.request_api_version) == (api_key, version)
    assert header.correlation_id == 7
    assert type(request) is load_request_schema(api_key, version)


def test_an_unknown_api_versions_version_is_read_as_v0_for_kip_511():
    frame = request_frame(18, 0)
    newer = struct.pack(">hh", 18, 99) + frame[4:]
    header, request = codec.decode_request(newer)
    assert request is None
    assert header.correlation_id == 7


@pytest.mark.parametrize(
    ("frame", "says"),
    [
        (struct.pack(">hhi", 1000, 0, 1) + b"\0\0", "api key 1000 is not supported"),
        (struct.pack(">hhi", 0, 2, 1) + b"\0\0", "version 2 is not supported"),
        (struct.pack(">hhi", 3, 13, 1) + b"\0\0", "version 13 is not supported"),
        (struct.pack(">hhi", 3, -1, 1) + b"\0\0", "version -1 is not supported"),
        (b"\0\x03", "shorter than a request header"),
    ],
)
def test_requests_the_listener_cannot_answer_are_bad(frame, says):
    with pytest.raises(codec.BadRequest, match=says):
        codec.decode_request(frame)


def test_bytes_after_the_fields_are_ignored_as_kafka_ignores_them():
    """librdkafka 2.16's Metadata v12 for every topic ends with 3 bytes past its fields;
    Apache Kafka 4.1 answers it (checked by hand), so the listener reads it too."""
    frame = bytes.fromhex("0003000c00000003000772646b61666b610000000000010000")
    _header, request = codec.decode_request(frame)
    assert request.topics is None
    assert (
        codec.decode_request(request_frame(3, 12) + b"extra")[1]
        == (codec.decode_request(request_frame(3, 12))[1])
    )


def test_garbage_raises_only_bad_request():
    """Random, truncated and mutated frames of every advertised version: BadRequest or a
    request, never another exception (nothing a client sends stops the listener)."""
    rnd = random.Random(13)
    seeds = [request_frame(key, version) for key, version in ADVERTISED]
    decoded = refused = 0
    for _ in range(20_000):
        frame = bytearray(rnd.choice(seeds))
        for _ in range(rnd.randint(1, 6)):
            frame[rnd.randrange(len(frame))] = rnd.randrange(256)
        if rnd.random() < 0.3:
            del frame[rnd.randrange(len(frame)) :]
        if rnd.random() < 0.2:  # a huge array length where an array starts
            at = rnd.randrange(len(frame) + 1)
            frame[at : at + 4] = b"\x7f\xff\xff\xff"
        if rnd.random() < 0.1:
            frame = bytearray(rnd.randbytes(rnd.randrange(64)))
        try:
            codec.decode_request(bytes(frame))
            decoded += 1
        except codec.BadRequest:
            refused += 1
    assert refused > 1000
    assert decoded > 100


# -- responses -----------------------------------------------------------------------------


@pytest.mark.parametrize("version", range(5))
def test_api_versions_answers_with_header_v0_and_the_supported_ranges(version):
    frame = codec.encode_response(42, apis.api_versions_response(version))
    assert frame[4:8] == struct.pack(">i", 42)
    correlation, body = decode_response(frame, 18, version)
    assert correlation == 42
    assert body.error_code is ErrorCode.none
    assert {k.api_key: (k.min_version, k.max_version) for k in body.api_keys} == codec.SUPPORTED


def test_the_kip_511_fallback_is_a_v0_body_with_error_35():
    frame = codec.encode_response(5, apis.api_versions_response(0, ErrorCode.unsupported_version))
    _, body = decode_response(frame, 18, 0)
    assert body.error_code == 35
    assert (18, 0, 4) in {(k.api_key, k.min_version, k.max_version) for k in body.api_keys}


LABKIT_METADATA = {
    "error": 0,
    "cluster_id": "abc",
    "controller_id": 0,
    "brokers": [{"node_id": 0, "host": "zmq-host", "port": 9092}],
    "topics": [
        {
            "name": "orders",
            "error": 0,
            "is_internal": False,
            "partitions": [
                {"partition": p, "leader": 0, "replicas": [0], "isr": [0]} for p in range(2)
            ],
        },
        {"name": "nope", "error": 3, "message": "no", "is_internal": False, "partitions": []},
    ],
}


@pytest.mark.parametrize("version", range(13))
def test_metadata_from_a_labkit_reply(version):
    request = default_body(load_request_schema(3, version), version)
    response = apis.metadata_to_kafka(
        LABKIT_METADATA, request, version, apis.Context("kafka-host", 19092)
    )
    _, body = decode_response(codec.encode_response(1, response), 3, version)
    (broker,) = body.brokers
    assert (broker.node_id, broker.host, broker.port) == (0, "kafka-host", 19092)
    orders, nope = body.topics
    assert orders.name == "orders"
    assert orders.error_code is ErrorCode.none
    assert [p.partition_index for p in orders.partitions] == [0, 1]
    assert all(p.replica_nodes == (0,) and p.isr_nodes == (0,) for p in orders.partitions)
    assert nope.error_code is ErrorCode.unknown_topic_or_partition
    if version >= 10:
        assert orders.topic_id is None  # kio reads the zero UUID (Kafka's "no id") as None
    if version >= 2:
        assert body.cluster_id == "abc"


def test_metadata_v0_asks_all_topics_with_an_empty_list_and_v1_with_null():
    v0 = load_request_schema(3, 0)(topics=())
    assert apis.metadata_to_labkit(v0, 0)[1]["topics"] is None
    v1_none = load_request_schema(3, 1)(topics=())
    assert apis.metadata_to_labkit(v1_none, 1)[1]["topics"] == []
    v1_all = load_request_schema(3, 1)(topics=None)
    assert apis.metadata_to_labkit(v1_all, 1)[1]["topics"] is None


def test_metadata_auto_creates_only_when_the_client_allows_it():
    v12 = load_request_schema(3, 12)
    off = v12(
        topics=None, allow_auto_topic_creation=False, include_topic_authorized_operations=False
    )
    assert apis.metadata_to_labkit(off, 12)[1]["allow_auto_create"] is False
    v3 = load_request_schema(3, 3)(topics=None)  # no flag before v4: the broker decides
    assert apis.metadata_to_labkit(v3, 3)[1]["allow_auto_create"] is True


# -- configuration -------------------------------------------------------------------------


def test_the_old_kafka_port_setting_adds_a_listener():
    from labkit.broker.config import BrokerConfig

    assert [item.port for item in BrokerConfig.build().listeners] == [9092]
    listeners = BrokerConfig.build(overrides={"kafka.port": "19092"}).listeners
    assert [(item.name, item.port) for item in listeners] == [
        ("PLAINTEXT", 9092),
        ("KAFKA_PORT", 19092),
    ]


@pytest.mark.parametrize("value", ["-1", "65536", "nine"])
def test_a_bad_kafka_port_says_what_to_write(value):
    from labkit.broker.config import BrokerConfig
    from labkit.errors import KafkaConfigurationError

    with pytest.raises(KafkaConfigurationError, match=r"kafka\.port"):
        BrokerConfig.build(overrides={"kafka.port": value})


# -- CreateTopics / DeleteTopics -----------------------------------------------------------


@pytest.mark.parametrize("version", range(2, 8))
def test_create_topics_as_labkit_asks_and_answers(version):
    request = default_body(load_request_schema(19, version), version)
    api, header = apis.create_topics_to_labkit(request, version)
    assert api == "create_topics"
    assert header == {
        "topics": [
            {"name": "orders", "num_partitions": 3, "replication_factor": 1, "configs": {}},
            {
                "name": "auto",
                "num_partitions": -1,
                "replication_factor": -1,
                "configs": {"retention.ms": "5000"},
            },
        ],
        "validate_only": False,
    }
    reply = {
        "error": 0,
        "topics": [
            {"name": "orders", "error": 0, "message": None},
            {"name": "auto", "error": 36, "message": "topic 'auto' already exists"},
        ],
    }
    response = apis.create_topics_to_kafka(reply, request, version, apis.Context("h", 1, 6))
    _, body = decode_response(codec.encode_response(3, response), 19, version)
    orders, auto = body.topics
    assert (orders.name, orders.error_code) == ("orders", ErrorCode.none)
    assert (auto.name, auto.error_code) == ("auto", ErrorCode.topic_already_exists)
    assert auto.error_message == "topic 'auto' already exists"
    if version >= 5:
        assert (orders.num_partitions, orders.replication_factor) == (3, 1)
        assert orders.configs == ()  # never null: Java's admin client would fail on it


def test_create_topics_with_minus_one_answers_the_brokers_default_count():
    request = default_body(load_request_schema(19, 7), 7)
    reply = {"error": 0, "topics": [{"name": n, "error": 0} for n in ("orders", "auto")]}
    response = apis.create_topics_to_kafka(reply, request, 7, apis.Context("h", 1, 6))
    assert [t.num_partitions for t in response.topics] == [3, 6]


def test_a_replica_assignment_on_broker_0_is_a_partition_count():
    module = __import__(load_request_schema(19, 7).__module__, fromlist=["x"])
    assignments = tuple(
        module.CreatableReplicaAssignment(partition_index=p, broker_ids=(0,)) for p in range(4)
    )
    topic = module.CreatableTopic(
        name="t", num_partitions=-1, replication_factor=-1, assignments=assignments, configs=()
    )
    request = module.CreateTopicsRequest(topics=(topic,), timeout=TIMEOUT, validate_only=False)
    spec = apis.create_topics_to_labkit(request, 7)[1]["topics"][0]
    assert (spec["num_partitions"], spec["replication_factor"]) == (4, -1)
    two = tuple(
        module.CreatableReplicaAssignment(partition_index=p, broker_ids=(0, 1)) for p in range(2)
    )
    request = module.CreateTopicsRequest(
        topics=(apis._make(module.CreatableTopic, **{**_fields(topic), "assignments": two}),),
        timeout=TIMEOUT,
    )
    spec = apis.create_topics_to_labkit(request, 7)[1]["topics"][0]
    assert spec["replication_factor"] == 2  # refused by the broker, with its message


def _fields(entity) -> dict:
    import dataclasses

    return {f.name: getattr(entity, f.name) for f in dataclasses.fields(entity)}


@pytest.mark.parametrize("version", range(1, 6))
def test_delete_topics_as_labkit_asks_and_answers(version):
    request = default_body(load_request_schema(20, version), version)
    assert apis.delete_topics_to_labkit(request, version) == (
        "delete_topics",
        {"topics": ["orders", "nope"]},
    )
    reply = {
        "error": 0,
        "topics": [
            {"name": "orders", "error": 0, "message": None},
            {"name": "nope", "error": 3, "message": "topic 'nope' does not exist"},
        ],
    }
    response = apis.delete_topics_to_kafka(reply, request, version, apis.Context("h", 1))
    _, body = decode_response(codec.encode_response(4, response), 20, version)
    assert [(r.name, r.error_code) for r in body.responses] == [
        ("orders", ErrorCode.none),
        ("nope", ErrorCode.unknown_topic_or_partition),
    ]


def test_a_request_the_broker_refused_whole_is_an_error_on_every_topic():
    request = default_body(load_request_schema(20, 5), 5)
    reply = {"error": 42, "message": "malformed request: ..."}
    response = apis.delete_topics_to_kafka(reply, request, 5, apis.Context("h", 1))
    assert {r.error_code for r in response.responses} == {ErrorCode.invalid_request}


# -- DescribeConfigs -----------------------------------------------------------------------


@pytest.mark.parametrize("version", range(1, 5))
def test_describe_configs_of_topics(version):
    schema = load_request_schema(32, version)
    module = __import__(schema.__module__, fromlist=["x"])
    resources = (
        module.DescribeConfigsResource(
            resource_type=2, resource_name="orders", configuration_keys=None
        ),
        module.DescribeConfigsResource(resource_type=4, resource_name="0", configuration_keys=None),
        module.DescribeConfigsResource(
            resource_type=2, resource_name="nope", configuration_keys=("retention.ms",)
        ),
    )
    request = apis._make(schema, resources=resources, include_synonyms=False)
    assert apis.describe_configs_to_labkit(request, version) == (
        "describe_configs",
        {"topics": ["orders", "nope"]},
    )
    reply = {
        "error": 0,
        "topics": [
            {
                "name": "orders",
                "error": 0,
                "configs": [
                    {"name": "retention.ms", "value": "5000", "default": False},
                    {"name": "segment.bytes", "value": "1073741824", "default": True},
                ],
            },
            {"name": "nope", "error": 3, "message": "no such topic", "configs": []},
        ],
    }
    response = apis.describe_configs_to_kafka(reply, request, version, apis.Context("h", 1))
    _, body = decode_response(codec.encode_response(8, response), 32, version)
    orders, broker, nope = body.results
    assert [(c.name, c.value, c.config_source) for c in orders.configs] == [
        ("retention.ms", "5000", apis.DYNAMIC_TOPIC_CONFIG),
        ("segment.bytes", "1073741824", apis.DEFAULT_CONFIG),
    ]
    assert broker.error_code is ErrorCode.invalid_request
    assert "topic configs" in (broker.error_message)
    assert (nope.error_code, nope.configs) == (ErrorCode.unknown_topic_or_partition, ())


# -- ListOffsets ---------------------------------------------------------------------------


@pytest.mark.parametrize("version", range(1, 8))
def test_list_offsets_earliest_latest_by_time_and_the_max_timestamp_it_lacks(version):
    request = default_body(load_request_schema(2, version), version)
    assert apis.list_offsets_to_labkit(request, version) == (
        "list_offsets",
        {"partitions": [["orders", 0, -2], ["orders", 1, -1], ["orders", 2, 1000]]},
    )
    reply = {
        "error": 0,
        "partitions": [["orders", 0, 0, 4, -1], ["orders", 1, 0, 9, -1], ["orders", 2, 0, 6, 1002]],
    }
    response = apis.list_offsets_to_kafka(reply, request, version, apis.Context("h", 1))
    _, body = decode_response(codec.encode_response(2, response), 2, version)
    (topic,) = body.topics
    got = [(p.partition_index, p.error_code, p.offset, p.timestamp) for p in topic.partitions]
    assert got == [
        (0, ErrorCode.none, 4, -1),
        (1, ErrorCode.none, 9, -1),
        (2, ErrorCode.none, 6, 1002),
        (3, ErrorCode.invalid_request, -1, -1),  # -3 (max timestamp) is not labkit's yet
    ]


def test_every_advertised_api_is_bridged_or_answered_by_the_listener():
    from labkit.kafka import bridges

    assert set(codec.SUPPORTED) == set(bridges.BRIDGED) | {codec.API_VERSIONS_KEY}
