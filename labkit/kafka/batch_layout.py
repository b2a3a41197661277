"""Kafka's record batch v2: the fixed layout (header ``struct``, attribute bits) and
the zigzag varint tables both directions use. The byte layout is documented in
``batches.py``. Pure: no I/O, no state.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from labkit.errors import InvalidRecordError

MAGIC_V2 = 2
HEADER = struct.Struct(">qiibIhiqqqhii")
HEADER_SIZE = HEADER.size  # 61
LENGTH_PREFIX = 12  # base_offset + batch_length
CRC_START = 21
MAGIC_AT = 16
BATCH_LENGTH = struct.Struct(">i")
TAIL = struct.Struct(">hiqqqhii")  # attributes .. record_count, what the CRC starts with
FRONT = struct.Struct(">qiibI")  # base_offset .. crc

CODEC_MASK = 0x07
LOG_APPEND_TIME = 0x08
TRANSACTIONAL = 0x10
CONTROL = 0x20
MIN_RECORD_SIZE = 7  # length, attributes, timestamp, offset, key and value lengths, headers
DEFAULT_MAX_BATCH_BYTES = 1048588  # Kafka's message.max.bytes

INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1
INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1

# the zigzag value of every varint of one or two bytes, indexed by its 14 payload bits
ZIGZAG = [(n >> 1) ^ -(n & 1) for n in range(1 << 14)]


def zigzag_bytes(value: int) -> bytes:
    n = (value << 1) ^ (value >> 63)
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


# the encoding of every varint in [0, TABLE_TOP), and of -1 (a null's length) last, so
# that ``VARINT[v]`` is v's encoding for every v in [-1, TABLE_TOP)
TABLE_TOP = 1 << 14
VARINT = [zigzag_bytes(v) for v in range(TABLE_TOP)] + [zigzag_bytes(-1)]


def varint_bytes(value: int) -> bytes:
    if -1 <= value < TABLE_TOP:
        return VARINT[value]
    return zigzag_bytes(value)


class KafkaBatchHeader(NamedTuple):
    base_offset: int
    batch_length: int
    partition_leader_epoch: int
    magic: int
    crc: int
    attributes: int
    last_offset_delta: int
    base_timestamp: int
    max_timestamp: int
    producer_id: int
    producer_epoch: int
    base_sequence: int
    record_count: int

    @property
    def size(self) -> int:
        return LENGTH_PREFIX + self.batch_length

    @property
    def codec(self) -> int:
        return self.attributes & CODEC_MASK


def check_magic(buf, pos: int) -> None:
    """Raise InvalidRecordError unless the batch at ``pos`` has magic 2 (every message
    format keeps its magic at byte 16, so this is read before the v2 header)."""
    if len(buf) - pos > MAGIC_AT and buf[pos + MAGIC_AT] != MAGIC_V2:
        raise InvalidRecordError(
            f"record batch magic {buf[pos + MAGIC_AT]}: this broker reads only magic 2 "
            "(Kafka 0.11+ clients; upgrade the client or set its api_version to (0, 11) or later)"
        )
