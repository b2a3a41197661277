"""Kafka requests as labkit requests, labkit replies as Kafka responses. No sockets.

Theory of operation
-------------------
Each Kafka API the listener answers is a pair of pure functions:

- ``to_labkit(request, version)`` -> ``(labkit api, JSON header)`` (protocol/frames.py's
  envelope; docs/wire.md), or ``None`` when the listener answers alone (ApiVersions);
- ``to_kafka(labkit reply header, request, version, context)`` -> the kio response
  entity of the request's version.

APIs that carry record bytes (Produce, Fetch: produce_fetch.py) are rows with
``payloads=True``: their ``to_labkit(request, version, context)`` returns a ``Bridged``
(labkit api or None, header, payload frames, a state for later, whether the Kafka
client reads a response, a reason to close the connection) and their
``to_kafka(reply, payloads, state, request, version, context)`` also gets the reply's
payload frames; for a request the client reads no response to, it returns None or a
reason to close the connection. ``Api(to_labkit, to_kafka)`` rows are header-only, as
before.

kio has one dataclass per (API, version), each with only that version's fields, so
responses are built from one set of values with ``_make`` (kio_glue.py), which keeps
the fields the version's class has (metadata v0 has no ``cluster_id``, v10 adds
``topic_id``...).
Error codes become kio ``ErrorCode`` members; topic ids are the zero UUID (labkit has
none, and every version advertised lets a client name topics).
"""

from __future__ import annotations

import uuid
from typing import Any, NamedTuple

from kio.index import load_response_schema
from kio.schema.errors import ErrorCode

from labkit.kafka.codec import API_VERSIONS_KEY, SUPPORTED

# kio_glue's helpers under the names the converters here (and admin_apis.py,
# produce_fetch.py, topic_partitions.py, which import them from this module) use
from labkit.kafka.kio_glue import NO_THROTTLE as _NO_THROTTLE
from labkit.kafka.kio_glue import error_code as _error
from labkit.kafka.kio_glue import make as _make
from labkit.kafka.kio_glue import nested as _nested
from labkit.kafka.producer_ids import (
    INIT_PRODUCER_ID_KEY,
    init_producer_id_to_kafka,
    init_producer_id_to_labkit,
)

METADATA_KEY = 3
CREATE_TOPICS_KEY = 19
DELETE_TOPICS_KEY = 20
DESCRIBE_CONFIGS_KEY = 32
LIST_OFFSETS_KEY = 2
EARLIEST, LATEST = -2, -1  # ListOffsets' special timestamps labkit answers
TOPIC_RESOURCE = 2  # Kafka's ConfigResource.Type.TOPIC
# Kafka's ConfigSource: a topic's own setting, or the default
DYNAMIC_TOPIC_CONFIG, DEFAULT_CONFIG = 1, 5
ZERO_UUID = uuid.UUID(int=0)
NODE_ID = 0  # the broker's id in labkit's own metadata (one broker)


class Context(NamedTuple):
    """What a response needs from the listener: the Kafka address it advertises, and
    the broker's ``num.partitions`` (the count of a topic created with -1);
    ``max_records_bytes``: what one Produce request's records may take decompressed
    (the broker's socket.request.max.bytes)."""

    host: str
    port: int
    default_partitions: int = 1
    max_records_bytes: int = 16 * 1024 * 1024  # labkit's default socket.request.max.bytes


# -- ApiVersions ------------------------------------------------------------------------


def api_versions_response(version: int, error: ErrorCode = ErrorCode.none) -> Any:
    """The listener's own ApiVersions answer (``version`` 0 for the KIP-511 fallback)."""
    cls = load_response_schema(API_VERSIONS_KEY, version)
    row = _nested(cls, "ApiVersion")
    keys = tuple(
        row(api_key=key, min_version=low, max_version=high)
        for key, (low, high) in sorted(SUPPORTED.items())
    )
    return _make(cls, error_code=error, api_keys=keys, throttle_time=_NO_THROTTLE)


# -- Metadata ---------------------------------------------------------------------------


def metadata_to_labkit(request: Any, version: int) -> tuple[str, dict]:
    topics = request.topics
    if topics is None or (version == 0 and not topics):  # v0: an empty list means all
        names = None
    else:
        names = [topic.name for topic in topics]  # a topic asked by id only has no name
    # v0-v3 have no flag: those clients rely on the broker's auto.create.topics.enable
    allow = getattr(request, "allow_auto_topic_creation", True)
    return "metadata", {"topics": names, "allow_auto_create": bool(allow)}


def metadata_to_kafka(reply: dict, request: Any, version: int, context: Context) -> Any:
    cls = load_response_schema(METADATA_KEY, version)
    broker_cls = _nested(cls, "MetadataResponseBroker")
    topic_cls = _nested(cls, "MetadataResponseTopic")
    partition_cls = _nested(cls, "MetadataResponsePartition")
    if reply.get("error"):
        # the whole request failed (labkit answers per topic; this is a bad request)
        asked = [] if request.topics is None else request.topics
        topics = tuple(
            _make(
                topic_cls,
                error_code=_error(reply["error"]),
                name=topic.name,
                topic_id=ZERO_UUID,
                partitions=(),
            )
            for topic in asked
        )
        brokers: tuple[Any, ...] = ()
    else:
        topics = tuple(
            _make(
                topic_cls,
                error_code=_error(row.get("error", 0)),
                name=row["name"],
                topic_id=ZERO_UUID,
                is_internal=bool(row.get("is_internal", False)),
                partitions=tuple(
                    _make(
                        partition_cls,
                        error_code=_error(part.get("error", 0)),
                        partition_index=part["partition"],
                        leader_id=part.get("leader", NODE_ID),
                        leader_epoch=part.get("leader_epoch", 0),
                        replica_nodes=tuple(part.get("replicas", (NODE_ID,))),
                        isr_nodes=tuple(part.get("isr", (NODE_ID,))),
                        offline_replicas=tuple(part.get("offline_replicas", ())),
                    )
                    for part in row.get("partitions", ())
                ),
            )
            for row in reply.get("topics", ())
        )
        brokers = (_make(broker_cls, node_id=NODE_ID, host=context.host, port=context.port),)
        if "zmq_port" in next(iter(reply.get("brokers", ())), {}):  # cluster mode: every live one
            brokers = tuple(
                _make(broker_cls, node_id=row["node_id"], host=row["host"], port=row["port"])
                for row in reply["brokers"]
            )
    return _make(
        cls,
        throttle_time=_NO_THROTTLE,
        brokers=brokers,
        cluster_id=reply.get("cluster_id"),
        controller_id=reply.get("controller_id", NODE_ID),
        topics=topics,
    )


# -- CreateTopics / DeleteTopics ---------------------------------------------------------


def create_topics_to_labkit(request: Any, version: int) -> tuple[str, dict]:
    topics = []
    for topic in request.topics:
        spec: dict[str, Any] = {
            "name": topic.name,
            "num_partitions": topic.num_partitions,
            "replication_factor": topic.replication_factor,
            "configs": {config.name: config.value for config in topic.configs},
        }
        if topic.assignments:
            # labkit has one broker: a manual assignment can only say what it would do
            # anyway, and Kafka requires num_partitions -1 with one
            spec["num_partitions"] = len(topic.assignments)
            if any(tuple(a.broker_ids) != (NODE_ID,) for a in topic.assignments):
                spec["replication_factor"] = max(len(a.broker_ids) for a in topic.assignments)
        topics.append(spec)
    validate_only = bool(getattr(request, "validate_only", False))
    return "create_topics", {"topics": topics, "validate_only": validate_only}


def create_topics_to_kafka(reply: dict, request: Any, version: int, context: Context) -> Any:
    cls = load_response_schema(CREATE_TOPICS_KEY, version)
    result_cls = _nested(cls, "CreatableTopicResult")
    rows = _rows_by_name(reply, [topic.name for topic in request.topics])
    results = []
    for topic, row in zip(request.topics, rows, strict=True):
        ok = row["error"] == 0
        partitions = topic.num_partitions
        if topic.assignments:
            partitions = len(topic.assignments)
        elif partitions == -1:
            partitions = context.default_partitions
        results.append(
            _make(
                result_cls,
                name=topic.name,
                topic_id=ZERO_UUID,
                error_code=_error(row["error"]),
                error_message=row.get("message"),
                num_partitions=partitions if ok else -1,
                replication_factor=1 if ok else -1,
                configs=(),  # never null: Java's admin client reads it (NPE on null)
            )
        )
    return _make(cls, throttle_time=_NO_THROTTLE, topics=tuple(results))


def delete_topics_to_labkit(request: Any, version: int) -> tuple[str, dict]:
    return "delete_topics", {"topics": list(request.topic_names)}


def delete_topics_to_kafka(reply: dict, request: Any, version: int, context: Context) -> Any:
    cls = load_response_schema(DELETE_TOPICS_KEY, version)
    result_cls = _nested(cls, "DeletableTopicResult")
    names = list(request.topic_names)
    results = tuple(
        _make(
            result_cls,
            name=name,
            error_code=_error(row["error"]),
            error_message=row.get("message"),
        )
        for name, row in zip(names, _rows_by_name(reply, names), strict=True)
    )
    return _make(cls, throttle_time=_NO_THROTTLE, responses=results)


# -- ListOffsets ----------------------------------------------------------------------------


def _asked_offsets(request: Any):
    for topic in request.topics:
        for partition in topic.partitions:
            yield topic.name, partition.partition_index, partition.timestamp


def list_offsets_to_labkit(request: Any, version: int) -> tuple[str, dict]:
    # -3 (max timestamp) and below are not labkit's: answered in list_offsets_to_kafka
    rows = [[n, p, ts] for n, p, ts in _asked_offsets(request) if ts >= EARLIEST]
    return "list_offsets", {"partitions": rows}


def list_offsets_to_kafka(reply: dict, request: Any, version: int, context: Context) -> Any:
    cls = load_response_schema(LIST_OFFSETS_KEY, version)
    topic_cls = _nested(cls, "ListOffsetsTopicResponse")
    partition_cls = _nested(cls, "ListOffsetsPartitionResponse")
    whole_error = reply.get("error", 0)
    rows = iter(reply.get("partitions") or ())
    topics = []
    for topic in request.topics:
        partitions = []
        for partition in topic.partitions:
            error, offset, timestamp = ErrorCode.none, -1, -1
            if partition.timestamp < EARLIEST:
                error = ErrorCode.invalid_request  # Kafka's spec labkit lacks (see docs)
            elif whole_error:
                error = _error(whole_error)
            else:
                row = next(rows, None)
                if row is None:  # cannot happen: one row per partition asked
                    error = ErrorCode.unknown_server_error
                else:
                    error, offset, timestamp = _error(row[2]), row[3], row[4]
            partitions.append(
                _make(
                    partition_cls,
                    partition_index=partition.partition_index,
                    error_code=error,
                    timestamp=timestamp,
                    offset=offset,
                    leader_epoch=0 if error == ErrorCode.none else -1,
                )
            )
        topics.append(_make(topic_cls, name=topic.name, partitions=tuple(partitions)))
    return _make(cls, throttle_time=_NO_THROTTLE, topics=tuple(topics))


# -- DescribeConfigs -----------------------------------------------------------------------


def describe_configs_to_labkit(request: Any, version: int) -> tuple[str, dict]:
    names = [r.resource_name for r in request.resources if r.resource_type == TOPIC_RESOURCE]
    return "describe_configs", {"topics": names}


def describe_configs_to_kafka(reply: dict, request: Any, version: int, context: Context) -> Any:
    cls = load_response_schema(DESCRIBE_CONFIGS_KEY, version)
    result_cls = _nested(cls, "DescribeConfigsResult")
    entry_cls = _nested(cls, "DescribeConfigsResourceResult")
    synonym_cls = _nested(cls, "DescribeConfigsSynonym")  # every advertised version has it
    with_synonyms = bool(getattr(request, "include_synonyms", False))
    topics = [r.resource_name for r in request.resources if r.resource_type == TOPIC_RESOURCE]
    rows = iter(_rows_by_name(reply, topics))
    results = []
    for resource in request.resources:
        if resource.resource_type != TOPIC_RESOURCE:
            results.append(
                _make(
                    result_cls,
                    error_code=ErrorCode.invalid_request,
                    error_message="labkit describes topic configs only; broker settings are "
                    "the broker's --config flags (docs/broker.md)",
                    resource_type=resource.resource_type,
                    resource_name=resource.resource_name,
                    configs=(),
                )
            )
            continue
        row = next(rows)
        keys = resource.configuration_keys
        entries = tuple(
            _make(
                entry_cls,
                name=config["name"],
                value=config["value"],
                read_only=False,
                is_default=bool(config.get("default")),
                config_source=DEFAULT_CONFIG if config.get("default") else DYNAMIC_TOPIC_CONFIG,
                is_sensitive=False,
                # as Kafka: a topic's own setting is its first synonym (kafka-configs.sh
                # prints it); labkit's defaults come from --config, which has no synonyms
                synonyms=(
                    (
                        synonym_cls(
                            name=config["name"],
                            value=config["value"],
                            source=DYNAMIC_TOPIC_CONFIG,
                        ),
                    )
                    if with_synonyms and not config.get("default")
                    else ()
                ),
                documentation=None,
            )
            for config in row.get("configs") or ()
            if keys is None or config["name"] in keys
        )
        results.append(
            _make(
                result_cls,
                error_code=_error(row["error"]),
                error_message=row.get("message"),
                resource_type=TOPIC_RESOURCE,
                resource_name=resource.resource_name,
                configs=entries,
            )
        )
    return _make(cls, throttle_time=_NO_THROTTLE, results=tuple(results))


def _rows_by_name(reply: dict, names: list[str]) -> list[dict]:
    """One ``{"error", "message"}`` row per asked name, in order: labkit's rows, or the
    whole request's error on every name when the broker refused the request itself."""
    if reply.get("error"):
        row = {"error": reply["error"], "message": reply.get("message")}
        return [row] * len(names)
    rows = reply.get("topics", [])
    if len(rows) != len(names):  # cannot happen: the broker answers one row per name
        missing = {"error": ErrorCode.unknown_server_error, "message": "no answer for it"}
        return [missing] * len(names)
    return rows


class Api(NamedTuple):
    to_labkit: Any
    to_kafka: Any
    payloads: bool = False  # True: a records API (module docstring)


class Bridged(NamedTuple):
    """What a payload API's ``to_labkit`` returns (module docstring).

    ``api`` None: nothing goes to the broker, ``to_kafka`` answers at once (reply None).
    ``reply_expected`` False: the Kafka client reads no response (Produce acks=0).
    ``close``: why to close the connection once the request is sent (a failed acks=0
    produce: Kafka closes so that the producer notices)."""

    api: str | None
    header: dict
    payloads: list
    state: Any  # handed to to_kafka
    reply_expected: bool = True
    close: str | None = None


# api key -> its pair (ApiVersions is answered by the listener alone)
BRIDGED: dict[int, Api] = {
    METADATA_KEY: Api(metadata_to_labkit, metadata_to_kafka),
    CREATE_TOPICS_KEY: Api(create_topics_to_labkit, create_topics_to_kafka),
    DELETE_TOPICS_KEY: Api(delete_topics_to_labkit, delete_topics_to_kafka),
    DESCRIBE_CONFIGS_KEY: Api(describe_configs_to_labkit, describe_configs_to_kafka),
    LIST_OFFSETS_KEY: Api(list_offsets_to_labkit, list_offsets_to_kafka),
    INIT_PRODUCER_ID_KEY: Api(init_producer_id_to_labkit, init_producer_id_to_kafka),
}
