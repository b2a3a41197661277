"""The small value types of kafka-python's public API (``kafka.structs`` and friends).

They are namedtuples with kafka-python's field names and order, so code that
unpacks them, compares them or uses them as dict keys keeps working:

- ``TopicPartition(topic, partition)``
- ``OffsetAndMetadata(offset, metadata='', leader_epoch=-1)`` -- the 3-field form of
  kafka-python 2.x; ``OffsetAndMetadata(5, '')`` (the old 2-field call) still works.
- ``OffsetAndTimestamp(offset, timestamp, leader_epoch=-1)``
- ``ConsumerRecord`` (13 fields, ``leader_epoch`` third, as in kafka-python 2.x)
- ``RecordMetadata`` (what ``producer.send(...).get()`` returns)

labkit's broker has no leader epochs: ``leader_epoch`` is always -1 ("unknown").
"""

from __future__ import annotations

from collections import namedtuple

TopicPartition = namedtuple("TopicPartition", ["topic", "partition"])
TopicPartition.__doc__ = """A topic and a partition number: the key of most consumer maps.

Keyword Arguments:
    topic (str): a topic name
    partition (int): a partition id
"""

TopicPartitionReplica = namedtuple("TopicPartitionReplica", ["topic", "partition", "broker_id"])

OffsetAndMetadata = namedtuple(
    "OffsetAndMetadata", ["offset", "metadata", "leader_epoch"], defaults=["", -1]
)
OffsetAndMetadata.__doc__ = """An offset to commit, with a free-form metadata string.

``OffsetAndMetadata(42)``, ``OffsetAndMetadata(42, '')`` (kafka-python 1.x/2.0) and
``OffsetAndMetadata(42, '', -1)`` (kafka-python 2.x) all build the same value.
The offset to commit is the *next* record to read: ``last_processed.offset + 1``.
"""

OffsetAndTimestamp = namedtuple(
    "OffsetAndTimestamp", ["offset", "timestamp", "leader_epoch"], defaults=[-1]
)
OffsetAndTimestamp.__doc__ = """What ``KafkaConsumer.offsets_for_times`` returns per partition:
the first offset whose record timestamp is >= the requested time, and that timestamp."""

BrokerMetadata = namedtuple("BrokerMetadata", ["nodeId", "host", "port", "rack"])

PartitionMetadata = namedtuple(
    "PartitionMetadata",
    [
        "topic",
        "partition",
        "leader",
        "leader_epoch",
        "replicas",
        "isr",
        "offline_replicas",
        "error",
    ],
)

ConsumerRecord = namedtuple(
    "ConsumerRecord",
    [
        "topic",
        "partition",
        "leader_epoch",
        "offset",
        "timestamp",
        "timestamp_type",
        "key",
        "value",
        "headers",
        "checksum",
        "serialized_key_size",
        "serialized_value_size",
        "serialized_header_size",
    ],
)
ConsumerRecord.__doc__ = """One record read from a partition.

Fields (kafka-python 2.x order): topic, partition, leader_epoch (-1), offset,
timestamp (ms since the epoch), timestamp_type (0 = CreateTime set by the producer,
1 = LogAppendTime set by the broker), key, value (after the deserializers),
headers (list of (str, bytes)), checksum (None: batches carry one CRC, not
records), serialized_key_size / serialized_value_size (-1 for None),
serialized_header_size (-1 without headers).
"""

RecordMetadata = namedtuple(
    "RecordMetadata",
    [
        "topic",
        "partition",
        "topic_partition",
        "offset",
        "timestamp",
        "checksum",
        "serialized_key_size",
        "serialized_value_size",
        "serialized_header_size",
    ],
)
RecordMetadata.__doc__ = """Where an acknowledged record was written.

``offset`` is -1 with ``acks=0`` (the broker does not answer). ``timestamp`` is the
record's timestamp in ms. ``checksum`` is None (one CRC per batch).
"""

# A record with this timestamp type had its timestamp set by the producer.
CREATE_TIME = 0
# ... or by the broker when it appended the batch (topic config message.timestamp.type).
LOG_APPEND_TIME = 1

__all__ = [
    "TopicPartition",
    "TopicPartitionReplica",
    "OffsetAndMetadata",
    "OffsetAndTimestamp",
    "BrokerMetadata",
    "PartitionMetadata",
    "ConsumerRecord",
    "RecordMetadata",
    "CREATE_TIME",
    "LOG_APPEND_TIME",
]
