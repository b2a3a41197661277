"""The record batch: many records, one header, one CRC.

Theory of operation
-------------------
A producer encodes the records of one partition into a batch; the broker checks
the CRC, writes its own ``base_offset`` over the first 8 bytes and appends the
batch to the log as it is; a fetch returns whole batches; the consumer decodes.
The broker never looks at individual records (except compaction).

The layout is columnar, so that Python can encode and decode a batch with a few
C-level calls (``array``, ``bytes.join``) instead of a loop of ``struct`` calls
per record. All integers are little-endian::

    offset size field
    0      8    base_offset        int64  offset of the first record (broker stamps it)
    8      4    batch_length       int32  bytes after this field
    12     4    crc                uint32 zlib.crc32 of bytes [16, end)
    16     1    magic              uint8  = 1
    17     1    attributes         uint8  HAS_KEYS | HAS_HEADERS | HAS_OFFSET_DELTAS | LOG_APPEND_TIME
    18     2    reserved           uint16 = 0
    20     4    last_offset_delta  int32  offset of the last record minus base_offset
    24     8    base_timestamp     int64  timestamp of the first record (ms)
    32     8    max_timestamp      int64  largest record timestamp (ms)
    40     4    record_count       int32  n >= 1 (a compacted batch may hold 0)
    44          columns, each n entries, in this order:
                  offset_deltas  int32[n]  only with HAS_OFFSET_DELTAS (compacted batches)
                  timestamps     int64[n]  absolute, ms
                  key_lengths    int32[n]  only with HAS_KEYS; -1 = null key
                  value_lengths  int32[n]  -1 = null value (a tombstone)
                  header_lengths int32[n]  only with HAS_HEADERS
                then the blobs: keys, values, headers (each the concatenation)

A record's headers blob is ``u16 count`` then per header ``u16 key_len, key
(UTF-8), i32 value_len (-1 = None), value``.

Without HAS_OFFSET_DELTAS record i has offset ``base_offset + i``; the broker
requires ``last_offset_delta == n - 1`` for produced batches. Only compaction
writes batches with explicit deltas (offsets never change in Kafka's log).
"""

from __future__ import annotations

import struct
import sys
import zlib
from array import array
from itertools import accumulate
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
_HDR_COUNT = struct.Struct("<H")
_HDR_KEY = struct.Struct("<H")
_HDR_VALUE = struct.Struct("<i")


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


def _ints(typecode: str, values) -> bytes:
    arr = array(typecode, values)
    if _BIG_ENDIAN:
        arr.byteswap()
    return arr.tobytes()


def _read_ints(typecode: str, buf, start: int, count: int) -> tuple[array, int]:
    arr = array(typecode)
    end = start + count * arr.itemsize
    arr.frombytes(buf[start:end])
    if _BIG_ENDIAN:
        arr.byteswap()
    return arr, end


def encode_headers(headers) -> bytes:
    parts = [_HDR_COUNT.pack(len(headers))]
    for key, value in headers:
        kb = key.encode("utf-8")
        parts.append(_HDR_KEY.pack(len(kb)))
        parts.append(kb)
        if value is None:
            parts.append(_HDR_VALUE.pack(-1))
        else:
            parts.append(_HDR_VALUE.pack(len(value)))
            parts.append(value)
    return b"".join(parts)


def decode_headers(blob) -> list[tuple[str, bytes | None]]:
    if not blob:
        return []
    (count,) = _HDR_COUNT.unpack_from(blob, 0)
    pos = 2
    out = []
    for _ in range(count):
        (klen,) = _HDR_KEY.unpack_from(blob, pos)
        pos += 2
        key = bytes(blob[pos:pos + klen]).decode("utf-8")
        pos += klen
        (vlen,) = _HDR_VALUE.unpack_from(blob, pos)
        pos += 4
        if vlen < 0:
            out.append((key, None))
        else:
            out.append((key, bytes(blob[pos:pos + vlen])))
            pos += vlen
    return out


def _lengths(items: list) -> list[int]:
    if None in items:
        return [-1 if x is None else len(x) for x in items]
    return list(map(len, items))


def _blob(items: list) -> bytes:
    if None in items:
        return b"".join([x for x in items if x is not None])
    return b"".join(items)


def encode_batch(timestamps: list[int], keys: list[bytes | None] | None,
                 values: list[bytes | None], headers: list | None = None,
                 base_offset: int = 0, offset_deltas: list[int] | None = None,
                 log_append_time: bool = False, value_lengths: list[int] | None = None) -> bytes:
    """Encode one batch. ``keys``/``headers`` may be None when no record has any.
    ``value_lengths``: the values' lengths (-1 for None) when the caller has them already.

    Every list has one entry per record; values are bytes or None. Raises
    ValueError for an empty batch without offset deltas.
    """
    count = len(values)
    if count == 0 and offset_deltas is None:
        raise ValueError("a batch needs at least one record")
    attributes = 0
    columns = []
    if offset_deltas is not None:
        attributes |= HAS_OFFSET_DELTAS
        columns.append(_ints("i", offset_deltas))
        last_delta = offset_deltas[-1] if offset_deltas else 0
    else:
        last_delta = count - 1
    columns.append(_ints("q", timestamps))
    blobs = []
    if keys is not None:
        attributes |= HAS_KEYS
        columns.append(_ints("i", _lengths(keys)))
        blobs.append(_blob(keys))
    columns.append(_ints("i", value_lengths if value_lengths is not None else _lengths(values)))
    blobs.append(_blob(values))
    if headers is not None:
        attributes |= HAS_HEADERS
        encoded = [encode_headers(h) if h else b"" for h in headers]
        columns.append(_ints("i", map(len, encoded)))
        blobs.append(b"".join(encoded))
    if log_append_time:
        attributes |= LOG_APPEND_TIME
    body = b"".join(columns) + b"".join(blobs)
    base_ts = timestamps[0] if count else -1
    max_ts = max(timestamps) if count else -1
    fixed = struct.pack("<BBHiqqi", MAGIC_V1, attributes, 0, last_delta, base_ts, max_ts, count)
    crc = zlib.crc32(body, zlib.crc32(fixed))
    return HEADER.pack(base_offset, HEADER_SIZE - LENGTH_PREFIX + len(body), crc,
                       MAGIC_V1, attributes, 0, last_delta, base_ts, max_ts, count) + body


def read_header(buf, pos: int = 0) -> BatchHeader:
    """The header of the batch at ``pos``. Raises CorruptRecordError if it does not fit."""
    if len(buf) - pos < HEADER_SIZE:
        raise CorruptRecordError(f"batch header truncated at byte {pos}")
    return BatchHeader._make(HEADER.unpack_from(buf, pos))


def validate_batch(buf, pos: int = 0, *, produced: bool = True) -> BatchHeader:
    """Check one batch's framing, magic, attributes and CRC; return its header.

    ``produced=True`` adds the rules for batches from a producer (no explicit
    offset deltas, at least one record). Raises CorruptRecordError with a reason.
    """
    header = read_header(buf, pos)
    end = pos + header.size
    if header.batch_length < HEADER_SIZE - LENGTH_PREFIX or end > len(buf):
        raise CorruptRecordError(f"batch length {header.batch_length} does not match the "
                                 f"{len(buf) - pos} bytes available")
    if header.magic != MAGIC_V1:
        raise CorruptRecordError(f"unknown record batch magic {header.magic}")
    if header.attributes & ~KNOWN_ATTRIBUTES:
        raise CorruptRecordError(f"unknown batch attributes 0x{header.attributes:x}")
    if header.record_count < 0 or header.last_offset_delta < 0:
        raise CorruptRecordError("negative record count or offset delta")
    if HEADER_SIZE + header.record_count * _column_bytes(header.attributes) > header.size:
        raise CorruptRecordError(f"record count {header.record_count} does not fit in a batch of "
                                 f"{header.size} bytes")
    if produced:
        if header.attributes & HAS_OFFSET_DELTAS or header.record_count == 0:
            raise CorruptRecordError("a produced batch must hold records with implicit offsets")
        if header.last_offset_delta != header.record_count - 1:
            raise CorruptRecordError("last_offset_delta does not match the record count")
    crc = zlib.crc32(memoryview(buf)[pos + CRC_START:end])
    if crc != header.crc:
        raise CorruptRecordError(f"CRC mismatch (stored {header.crc:08x}, computed {crc:08x})")
    return header


def _column_bytes(attributes: int) -> int:
    """Bytes of fixed-size columns per record for these attributes."""
    per_record = 8 + 4  # timestamp + value length
    for flag in (HAS_KEYS, HAS_HEADERS, HAS_OFFSET_DELTAS):
        if attributes & flag:
            per_record += 4
    return per_record


def split_batches(buf) -> list[tuple[int, int]]:
    """(start, end) of each whole batch in a buffer of concatenated batches.

    Stops at a partial trailing batch (a fetch may cut the last one). Raises
    CorruptRecordError when a length field is nonsense.
    """
    out = []
    pos = 0
    size = len(buf)
    while size - pos >= LENGTH_PREFIX:
        (length,) = BATCH_LENGTH.unpack_from(buf, pos + 8)
        if length < HEADER_SIZE - LENGTH_PREFIX:
            raise CorruptRecordError(f"invalid batch length {length} at byte {pos}")
        end = pos + LENGTH_PREFIX + length
        if end > size:
            break
        out.append((pos, end))
        pos = end
    return out


def with_base_offset(batch, base_offset: int) -> bytes:
    """The batch bytes with ``base_offset`` stamped in (the CRC does not cover it)."""
    return BASE_OFFSET.pack(base_offset) + bytes(memoryview(batch)[8:])


def _slices(blob, lengths) -> list:
    if not lengths:
        return []
    if min(lengths) >= 0:
        ends = list(accumulate(lengths))
        starts = [0, *ends[:-1]]
        return [blob[s:e] for s, e in zip(starts, ends, strict=False)]
    out = []
    pos = 0
    for n in lengths:
        if n < 0:
            out.append(None)
        else:
            out.append(blob[pos:pos + n])
            pos += n
    return out


def decode_batch(buf, pos: int = 0, header: BatchHeader | None = None) -> Batch:
    """Decode the batch at ``pos`` into columns. Keys/values come back as bytes.

    The caller has validated the batch (the consumer checks the CRC once).
    Raises CorruptRecordError on inconsistent lengths.
    """
    if header is None:
        header = read_header(buf, pos)
    count = header.record_count
    attrs = header.attributes
    cur = pos + HEADER_SIZE
    end = pos + header.size
    if end > len(buf) or cur + count * _column_bytes(attrs) > end:
        raise CorruptRecordError(f"record count {count} does not fit in the batch")
    if attrs & HAS_OFFSET_DELTAS:
        deltas, cur = _read_ints("i", buf, cur, count)
        base = header.base_offset
        offsets = [base + d for d in deltas]
    else:
        offsets = list(range(header.base_offset, header.base_offset + count))
    timestamps, cur = _read_ints("q", buf, cur, count)
    if attrs & HAS_KEYS:
        key_lens, cur = _read_ints("i", buf, cur, count)
    else:
        key_lens = None
    value_lens, cur = _read_ints("i", buf, cur, count)
    if attrs & HAS_HEADERS:
        header_lens, cur = _read_ints("i", buf, cur, count)
    else:
        header_lens = None
    blob = bytes(buf[cur:end])
    bpos = 0
    if key_lens is not None:
        ksize = sum(n for n in key_lens if n > 0)
        keys = _slices(blob[bpos:bpos + ksize], key_lens)
        bpos += ksize
        key_sizes = key_lens.tolist()
    else:
        keys = [None] * count
        key_sizes = [-1] * count
    vsize = sum(n for n in value_lens if n > 0)
    values = _slices(blob[bpos:bpos + vsize], value_lens)
    bpos += vsize
    if header_lens is not None:
        hblob = blob[bpos:]
        headers = [decode_headers(h) for h in _slices(hblob, header_lens)]
        bpos += sum(header_lens)
    else:
        headers = [[] for _ in range(count)]  # one list each: callers may mutate
    if bpos != len(blob):
        raise CorruptRecordError("record lengths do not add up to the batch size")
    return Batch(offsets, timestamps.tolist(), keys, values, headers, key_sizes,
                 value_lens.tolist(), bool(attrs & LOG_APPEND_TIME))
