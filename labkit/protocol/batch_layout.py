"""The record batch's fixed layout: the header ``struct``, the attribute flags, the two
named tuples (``BatchHeader``, ``Batch``) and little-endian integer columns.

The byte layout is documented in ``records.py`` (the codec); this module holds what the
codec (``records.py``) and the column checks (``batch_columns.py``) both need, so neither
imports the other. Pure: no I/O, no state.
"""

from __future__ import annotations

import struct
import sys
from array import array
from typing import NamedTuple

from labkit.errors import CorruptRecordError

MAGIC_V1 = 1
HEADER = struct.Struct("<qiIBBHiqqi")
HEADER_SIZE = HEADER.size  # 44
LENGTH_PREFIX = 12  # base_offset + batch_length: the bytes before batch_length counts
CRC_START = 16
BASE_OFFSET = struct.Struct("<q")
BATCH_LENGTH = struct.Struct("<i")

HAS_KEYS = 0x01
HAS_HEADERS = 0x02
HAS_OFFSET_DELTAS = 0x04
LOG_APPEND_TIME = 0x08
KNOWN_ATTRIBUTES = HAS_KEYS | HAS_HEADERS | HAS_OFFSET_DELTAS | LOG_APPEND_TIME

_BIG_ENDIAN = sys.byteorder == "big"


class BatchHeader(NamedTuple):
    base_offset: int
    batch_length: int
    crc: int
    magic: int
    attributes: int
    reserved: int
    last_offset_delta: int
    base_timestamp: int
    max_timestamp: int
    record_count: int

    @property
    def size(self) -> int:
        """Bytes the whole batch takes, header included."""
        return LENGTH_PREFIX + self.batch_length

    @property
    def last_offset(self) -> int:
        return self.base_offset + self.last_offset_delta

    @property
    def next_offset(self) -> int:
        return self.base_offset + self.last_offset_delta + 1


class Batch(NamedTuple):
    """A decoded batch as columns (lists of equal length)."""

    offsets: list[int]
    timestamps: list[int]
    keys: list[bytes | None]
    values: list[bytes | None]
    headers: list[list[tuple[str, bytes | None]]]
    key_sizes: list[int]
    value_sizes: list[int]
    log_append_time: bool


def pack_ints(typecode: str, values) -> bytes:
    arr = array(typecode, values)
    if _BIG_ENDIAN:
        arr.byteswap()
    return arr.tobytes()


def read_ints(typecode: str, buf, start: int, count: int) -> tuple[array, int]:
    arr = array(typecode)
    end = start + count * arr.itemsize
    arr.frombytes(buf[start:end])
    if _BIG_ENDIAN:
        arr.byteswap()
    return arr, end


def column_bytes(attributes: int) -> int:
    """Bytes of fixed-size columns per record for these attributes."""
    per_record = 8 + 4  # timestamp + value length
    for flag in (HAS_KEYS, HAS_HEADERS, HAS_OFFSET_DELTAS):
        if attributes & flag:
            per_record += 4
    return per_record


def read_header(buf, pos: int = 0) -> BatchHeader:
    """The header of the batch at ``pos``. Raises CorruptRecordError if it does not fit."""
    if len(buf) - pos < HEADER_SIZE:
        raise CorruptRecordError(f"batch header truncated at byte {pos}")
    return BatchHeader._make(HEADER.unpack_from(buf, pos))
