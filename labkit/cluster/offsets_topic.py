"""The internal topic ``__consumer_offsets``: which partition holds a group, and its records.

Theory of operation
-------------------
In cluster mode a group's committed offsets live in one partition of the replicated,
compacted topic ``__consumer_offsets``, as in Kafka: partition
``abs(group_id.hashCode()) % partitions`` (``partition_for``; Java's ``String.hashCode``
over UTF-16 code units, and Kafka's ``Utils.abs``, so a group lands on the partition
number Kafka would pick). The leader of that partition is the group's coordinator.

Each committed offset is one record, in Kafka's own binary layout (so Kafka's tools can
read it):

    key    OffsetCommitKey v1     version int16 = 1, group string, topic string,
                                  partition int32
    value  OffsetCommitValue v3   version int16 = 3, offset int64, leader epoch int32
                                  (-1), metadata string, commit timestamp int64
    a deleted offset (OffsetDelete, a deleted or expired group): the key with a null
    value (a tombstone), which compaction removes in time

(``string``: int16 length + UTF-8.) Keys of other versions (Kafka's GroupMetadataKey,
version 2, holds a group's membership; labkit does not write it) are skipped when read
(``decode_key`` returns None). Pure: no I/O.
"""

from __future__ import annotations

import struct

OFFSETS_TOPIC = "__consumer_offsets"
DEFAULT_PARTITIONS = 3  # offsets.topic.num.partitions (Kafka: 50); docs/replication.md says why
DEFAULT_REPLICATION_FACTOR = 3  # offsets.topic.replication.factor (bounded by live brokers)

KEY_VERSION = 1
VALUE_VERSION = 3
NO_LEADER_EPOCH = -1

_I16 = struct.Struct(">h")
_I32 = struct.Struct(">i")
_VALUE_HEAD = struct.Struct(">hqi")  # version, offset, leader epoch
_I64 = struct.Struct(">q")


def java_string_hash(text: str) -> int:
    """Java's ``String.hashCode()``: s[0]*31^(n-1) + ... over UTF-16 code units, int32."""
    h = 0
    units = text.encode("utf-16-be")
    for i in range(0, len(units), 2):
        h = (31 * h + (units[i] << 8 | units[i + 1])) & 0xFFFFFFFF
    return h - (1 << 32) if h >= 1 << 31 else h


def partition_for(group_id: str, partitions: int) -> int:
    """The ``__consumer_offsets`` partition of a group, as Kafka's
    ``Utils.abs(groupId.hashCode()) % partitions`` (abs of Integer.MIN_VALUE is 0)."""
    if partitions < 1:
        raise ValueError(f"{OFFSETS_TOPIC} needs at least one partition, got {partitions}")
    h = java_string_hash(group_id)
    return (0 if h == -(1 << 31) else abs(h)) % partitions


def _string(text: str) -> bytes:
    data = text.encode("utf-8")
    if len(data) > 0x7FFF:
        raise ValueError(f"a string of {len(data)} bytes does not fit an int16 length")
    return _I16.pack(len(data)) + data


def _read_string(data: bytes, pos: int) -> tuple[str, int]:
    (length,) = _I16.unpack_from(data, pos)
    pos += 2
    if length < 0 or pos + length > len(data):
        raise ValueError("a string runs past the end of the record")
    return data[pos : pos + length].decode("utf-8"), pos + length


def encode_key(group_id: str, topic: str, partition: int) -> bytes:
    return _I16.pack(KEY_VERSION) + _string(group_id) + _string(topic) + _I32.pack(partition)


def encode_value(offset: int, metadata: str, commit_ms: int) -> bytes:
    return (
        _VALUE_HEAD.pack(VALUE_VERSION, offset, NO_LEADER_EPOCH)
        + _string(metadata)
        + _I64.pack(commit_ms)
    )


def decode_key(key: bytes | None) -> tuple[str, str, int] | None:
    """(group, topic, partition) of an offset commit's key; None for any other key
    (a group metadata key, or one labkit cannot read). Raises ValueError when an offset
    commit key is cut short."""
    if key is None or len(key) < 2:
        return None
    (version,) = _I16.unpack_from(key, 0)
    if version not in (0, 1):  # 0 and 1 are offset commits; 2 is group metadata
        return None
    try:
        group, pos = _read_string(key, 2)
        topic, pos = _read_string(key, pos)
        (partition,) = _I32.unpack_from(key, pos)
    except struct.error as exc:
        raise ValueError(f"an offset commit key is cut short: {exc}") from None
    return group, topic, partition


def decode_value(value: bytes) -> tuple[int, str, int]:
    """(offset, metadata, commit timestamp ms) of an OffsetCommitValue v1..v3.
    Raises ValueError for another version or a cut value."""
    try:
        (version,) = _I16.unpack_from(value, 0)
        if version == 3:
            _version, offset, _epoch = _VALUE_HEAD.unpack_from(value, 0)
            pos = _VALUE_HEAD.size
        elif version in (1, 2):
            (offset,) = _I64.unpack_from(value, 2)
            pos = 10
        else:
            raise ValueError(f"offset commit value version {version} is not known here")
        metadata, pos = _read_string(value, pos)
        (commit_ms,) = _I64.unpack_from(value, pos)
    except struct.error as exc:
        raise ValueError(f"an offset commit value is cut short: {exc}") from None
    return offset, metadata, commit_ms
