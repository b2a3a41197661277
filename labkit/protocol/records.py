"""The record batch: many records, one header, one CRC (the codec).

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

Without HAS_OFFSET_DELTAS record i has offset ``base_offset + i`` and
``last_offset_delta == n - 1``. Only compaction writes batches with explicit deltas
(offsets never change in Kafka's log); they start at >= 0, strictly increase and
end at ``last_offset_delta``.

Consistency: a CRC only proves the bytes are the ones the writer sent, not that
the writer was sane. ``validate_batch`` for a produced batch therefore also checks
the columns (``_read_columns``): lengths >= -1 (headers >= 0), the blobs exactly
fill the batch, each headers blob parses exactly, ``base_timestamp`` is the first
record's and ``max_timestamp`` the largest (retention and the time index trust
it). All of it is C-level array and bytes work (the max timestamp by byte planes
when the batch spans under 256 ms) except the headers, parsed once per distinct
blob. ``decode_batch`` runs the same checks (timestamps aside: they do not stop a
decode), so a stored batch that is corrupt
(an older broker let it in, a bit flipped on disk) raises CorruptRecordError --
never ``struct.error`` or ``IndexError`` -- and its readers decide what to do.

Modules: the fixed layout (header struct, flags, named tuples) is in ``batch_layout.py``,
the headers blob codec and the column checks in ``batch_columns.py``; this module
encodes, frames, validates and decodes, and is where readers import every name from.
"""

from __future__ import annotations

import struct
import zlib

from labkit.errors import CorruptRecordError
from labkit.protocol.batch_columns import (
    check_headers,
    check_timestamps,
    decode_headers,
    encode_headers,
    first_timestamp_outside,
    read_columns,
    slices,
)
from labkit.protocol.batch_layout import (
    BASE_OFFSET,
    BATCH_LENGTH,
    CRC_START,
    HAS_HEADERS,
    HAS_KEYS,
    HAS_OFFSET_DELTAS,
    HEADER,
    HEADER_SIZE,
    KNOWN_ATTRIBUTES,
    LENGTH_PREFIX,
    LOG_APPEND_TIME,
    MAGIC_V1,
    Batch,
    BatchHeader,
    column_bytes,
    pack_ints,
    read_header,
)

# the codec's public names, wherever they are defined (readers import them from here)
__all__ = [
    "BASE_OFFSET",
    "BATCH_LENGTH",
    "CRC_START",
    "HAS_HEADERS",
    "HAS_KEYS",
    "HAS_OFFSET_DELTAS",
    "HEADER",
    "HEADER_SIZE",
    "KNOWN_ATTRIBUTES",
    "LENGTH_PREFIX",
    "LOG_APPEND_TIME",
    "MAGIC_V1",
    "Batch",
    "BatchHeader",
    "decode_batch",
    "decode_headers",
    "decode_single",
    "encode_batch",
    "encode_headers",
    "first_timestamp_outside",
    "read_header",
    "split_batches",
    "validate_batch",
    "walk_batches",
    "with_base_offset",
]


def _lengths(items: list) -> list[int]:
    if None in items:
        return [-1 if x is None else len(x) for x in items]
    return list(map(len, items))


def _blob(items: list) -> bytes:
    if None in items:
        return b"".join([x for x in items if x is not None])
    return b"".join(items)


def encode_batch(
    timestamps: list[int],
    keys: list[bytes | None] | None,
    values: list[bytes | None],
    headers: list | None = None,
    base_offset: int = 0,
    offset_deltas: list[int] | None = None,
    log_append_time: bool = False,
    value_lengths: list[int] | None = None,
) -> bytes:
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
        columns.append(pack_ints("i", offset_deltas))
        last_delta = offset_deltas[-1] if offset_deltas else 0
    else:
        last_delta = count - 1
    columns.append(pack_ints("q", timestamps))
    blobs = []
    if keys is not None:
        attributes |= HAS_KEYS
        columns.append(pack_ints("i", _lengths(keys)))
        blobs.append(_blob(keys))
    columns.append(pack_ints("i", value_lengths if value_lengths is not None else _lengths(values)))
    blobs.append(_blob(values))
    if headers is not None:
        attributes |= HAS_HEADERS
        encoded = [encode_headers(h) if h else b"" for h in headers]
        columns.append(pack_ints("i", map(len, encoded)))
        blobs.append(b"".join(encoded))
    if log_append_time:
        attributes |= LOG_APPEND_TIME
    parts = columns + blobs  # joined once, with the header: a batch may be a megabyte
    base_ts = timestamps[0] if count else -1
    max_ts = max(timestamps) if count else -1
    fixed = struct.pack("<BBHiqqi", MAGIC_V1, attributes, 0, last_delta, base_ts, max_ts, count)
    crc = zlib.crc32(fixed)
    for part in parts:
        crc = zlib.crc32(part, crc)
    header = HEADER.pack(
        base_offset,
        HEADER_SIZE - LENGTH_PREFIX + sum(map(len, parts)),
        crc,
        MAGIC_V1,
        attributes,
        0,
        last_delta,
        base_ts,
        max_ts,
        count,
    )
    return b"".join([header, *parts])


def validate_batch(buf, pos: int = 0, *, produced: bool = True) -> BatchHeader:
    """Check one batch's framing, magic, attributes and CRC; return its header.

    ``produced=True`` adds the rules for batches from a producer (no explicit
    offset deltas or LOG_APPEND_TIME, at least one record) and checks every column
    (module docstring: Consistency). Raises CorruptRecordError with a reason.
    """
    header = read_header(buf, pos)
    end = pos + header.size
    if header.batch_length < HEADER_SIZE - LENGTH_PREFIX or end > len(buf):
        raise CorruptRecordError(
            f"batch length {header.batch_length} does not match the "
            f"{len(buf) - pos} bytes available"
        )
    if header.magic != MAGIC_V1:
        raise CorruptRecordError(f"unknown record batch magic {header.magic}")
    if header.attributes & ~KNOWN_ATTRIBUTES:
        raise CorruptRecordError(f"unknown batch attributes 0x{header.attributes:x}")
    if header.record_count < 0 or header.last_offset_delta < 0:
        raise CorruptRecordError("negative record count or offset delta")
    if HEADER_SIZE + header.record_count * column_bytes(header.attributes) > header.size:
        raise CorruptRecordError(
            f"record count {header.record_count} does not fit in a batch of {header.size} bytes"
        )
    if produced:
        if header.attributes & HAS_OFFSET_DELTAS or header.record_count == 0:
            raise CorruptRecordError("a produced batch must hold records with implicit offsets")
        if header.attributes & LOG_APPEND_TIME:
            raise CorruptRecordError(
                "a produced batch may not set LOG_APPEND_TIME (the "
                "broker decides the timestamp type)"
            )
        if header.last_offset_delta != header.record_count - 1:
            raise CorruptRecordError("last_offset_delta does not match the record count")
    crc = zlib.crc32(memoryview(buf)[pos + CRC_START : end])
    if crc != header.crc:
        raise CorruptRecordError(f"CRC mismatch (stored {header.crc:08x}, computed {crc:08x})")
    if produced:
        columns = read_columns(buf, pos, header)
        check_timestamps(buf, pos, header, columns)
        check_headers(buf, columns)
    return header


def split_batches(buf) -> list[tuple[int, int]]:
    """(start, end) of each whole batch in a buffer of concatenated batches.

    Stops at a partial trailing batch (a fetch may cut the last one). Raises
    CorruptRecordError when a length field is nonsense.
    """
    spans, error = walk_batches(buf)
    if error is not None:
        raise error
    return spans


def walk_batches(buf) -> tuple[list[tuple[int, int]], CorruptRecordError | None]:
    """``split_batches`` that keeps the batches before a nonsense length field: (their
    spans, the error at it or None). Readers deliver those before reporting it."""
    out: list[tuple[int, int]] = []
    pos = 0
    size = len(buf)
    while size - pos >= LENGTH_PREFIX:
        (length,) = BATCH_LENGTH.unpack_from(buf, pos + 8)
        if length < HEADER_SIZE - LENGTH_PREFIX:
            return out, CorruptRecordError(f"invalid batch length {length} at byte {pos}")
        end = pos + LENGTH_PREFIX + length
        if end > size:
            break
        out.append((pos, end))
        pos = end
    return out, None


def with_base_offset(batch, base_offset: int) -> bytes:
    """The batch bytes with ``base_offset`` stamped in (the CRC does not cover it)."""
    return BASE_OFFSET.pack(base_offset) + bytes(memoryview(batch)[8:])


_ONE_KEYED = struct.Struct("<qii")  # one record's columns: timestamp, key length, value length
_ONE_KEYLESS = struct.Struct("<qi")  # ... without HAS_KEYS: timestamp, value length


def decode_single(buf, pos: int, header: BatchHeader) -> tuple | None:
    """(timestamp, key, value, key size, value size) of a batch that holds exactly one
    record with implicit offsets and no headers, or None for any other batch -- and for
    one whose columns do not add up, which ``decode_batch``'s general path then refuses
    with its own error. The classroom's producers send one record a second, so every
    batch a consumer decodes there is such a batch: this path costs ~1 us where the
    columns' costs ~8 (array reads, slices, lists of one)."""
    attributes = header.attributes
    if (
        header.record_count != 1
        or header.last_offset_delta != 0
        or attributes & (HAS_OFFSET_DELTAS | HAS_HEADERS)
    ):
        return None
    start = pos + HEADER_SIZE
    end = pos + header.size
    if end > len(buf):
        return None
    if attributes & HAS_KEYS:
        if end - start < _ONE_KEYED.size:
            return None
        timestamp, key_size, value_size = _ONE_KEYED.unpack_from(buf, start)
        at = start + _ONE_KEYED.size
    else:
        if end - start < _ONE_KEYLESS.size:
            return None
        timestamp, value_size = _ONE_KEYLESS.unpack_from(buf, start)
        key_size = -1
        at = start + _ONE_KEYLESS.size
    if key_size < -1 or value_size < -1:
        return None
    key_end = at + key_size if key_size > 0 else at
    if key_end + (value_size if value_size > 0 else 0) != end:
        return None
    key = None if key_size < 0 else bytes(buf[at:key_end])
    value = None if value_size < 0 else bytes(buf[key_end:end])
    return timestamp, key, value, key_size, value_size


def decode_batch(buf, pos: int = 0, header: BatchHeader | None = None) -> Batch:
    """Decode the batch at ``pos`` into columns. Keys/values come back as bytes.

    The caller checks the CRC if it wants to (the consumer does, once). Raises
    CorruptRecordError when the columns do not describe the batch's bytes exactly
    (module docstring: Consistency) -- and no other exception for any input.
    """
    if header is None:
        header = read_header(buf, pos)
    one = decode_single(buf, pos, header)
    if one is not None:
        timestamp, key, value, key_size, value_size = one
        return Batch(
            [header.base_offset],
            [timestamp],
            [key],
            [value],
            [[]],
            [key_size],
            [value_size],
            bool(header.attributes & LOG_APPEND_TIME),
        )
    return decode_columns(buf, pos, header)


def decode_columns(buf, pos: int, header: BatchHeader) -> Batch:
    """``decode_batch`` for any batch, column by column (the general path)."""
    cols = read_columns(buf, pos, header)
    count = header.record_count
    if cols.deltas is not None:
        base = header.base_offset
        offsets = [base + d for d in cols.deltas]
    else:
        offsets = list(range(header.base_offset, header.base_offset + count))
    blob = bytes(buf[cols.blobs : cols.end])
    if cols.key_lens is not None:
        keys = slices(blob[: cols.key_bytes], cols.key_lens)
        key_sizes = cols.key_lens.tolist()
    else:
        keys = [None] * count
        key_sizes = [-1] * count
    vstart = cols.key_bytes
    vend = vstart + cols.value_bytes
    values = slices(blob[vstart:vend], cols.value_lens)
    if cols.header_lens is not None:
        headers = [decode_headers(h) for h in slices(blob[vend:], cols.header_lens)]
    else:
        headers = [[] for _ in range(count)]  # one list each: callers may mutate
    return Batch(
        offsets,
        cols.timestamps.tolist(),
        keys,
        values,
        headers,
        key_sizes,
        cols.value_lens.tolist(),
        bool(header.attributes & LOG_APPEND_TIME),
    )
