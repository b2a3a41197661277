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
"""

from __future__ import annotations

import operator
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
    """One record's headers. Raises CorruptRecordError unless ``blob`` is exactly one
    well-formed headers blob (count, then each key and value within it)."""
    if not blob:
        return []
    size = len(blob)
    try:
        (count,) = _HDR_COUNT.unpack_from(blob, 0)
        pos = 2
        out: list[tuple[str, bytes | None]] = []
        for _ in range(count):
            (klen,) = _HDR_KEY.unpack_from(blob, pos)
            pos += 2
            if pos + klen > size:
                raise CorruptRecordError("a header key runs past its record's headers")
            key = bytes(blob[pos : pos + klen]).decode("utf-8")
            pos += klen
            (vlen,) = _HDR_VALUE.unpack_from(blob, pos)
            pos += 4
            if vlen < 0:
                out.append((key, None))
            else:
                if pos + vlen > size:
                    raise CorruptRecordError("a header value runs past its record's headers")
                out.append((key, bytes(blob[pos : pos + vlen])))
                pos += vlen
    except (struct.error, UnicodeDecodeError) as exc:
        raise CorruptRecordError(f"a record's headers cannot be read: {exc}") from None
    if pos != size:
        raise CorruptRecordError(
            f"a record's headers hold {size - pos} bytes past their {count} headers"
        )
    return out


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
    return (
        HEADER.pack(
            base_offset,
            HEADER_SIZE - LENGTH_PREFIX + len(body),
            crc,
            MAGIC_V1,
            attributes,
            0,
            last_delta,
            base_ts,
            max_ts,
            count,
        )
        + body
    )


def read_header(buf, pos: int = 0) -> BatchHeader:
    """The header of the batch at ``pos``. Raises CorruptRecordError if it does not fit."""
    if len(buf) - pos < HEADER_SIZE:
        raise CorruptRecordError(f"batch header truncated at byte {pos}")
    return BatchHeader._make(HEADER.unpack_from(buf, pos))


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
    if HEADER_SIZE + header.record_count * _column_bytes(header.attributes) > header.size:
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
        columns = _read_columns(buf, pos, header)
        _check_timestamps(buf, pos, header, columns)
        _check_headers(buf, columns)
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


class _Columns(NamedTuple):
    """A batch's columns, checked against each other and the batch size."""

    deltas: array | None
    timestamps: array
    key_lens: array | None
    value_lens: array
    header_lens: array | None
    blobs: int  # absolute position of the keys blob (values, headers follow)
    end: int  # absolute end of the batch
    key_bytes: int
    value_bytes: int


_NON_NEGATIVE_TOP_BYTES = bytes(range(128))
_UP_TO = [bytes(range(top + 1)) for top in range(256)]  # translate() tables: bytes <= top


def _blob_bytes(buf, start: int, lengths: array, what: str, nullable: bool = True) -> int:
    """Bytes a blob with these lengths (read from ``buf[start:]``) takes; -1 = null.

    The common case (no negative length) costs one C-level ``sum``: the sign bits are
    found by deleting every non-negative top byte (byte 3 of each little-endian int32)."""
    top_bytes = buf[start + 3 : start + 4 * len(lengths) : 4]
    negatives = len(bytes(top_bytes).translate(None, _NON_NEGATIVE_TOP_BYTES))
    if not negatives:
        return sum(lengths)
    if not nullable or lengths.count(-1) != negatives:
        raise CorruptRecordError(f"a {what} length is negative")
    return sum(lengths) + negatives


def _read_columns(buf, pos: int, header: BatchHeader) -> _Columns:
    """Read and cross-check the columns (module docstring: Consistency), except the
    headers blobs. Raises CorruptRecordError naming what does not add up."""
    count = header.record_count
    attrs = header.attributes
    cur = pos + HEADER_SIZE
    end = pos + header.size
    if count < 0 or end > len(buf) or cur + count * _column_bytes(attrs) > end:
        raise CorruptRecordError(f"record count {count} does not fit in the batch")
    deltas = None
    if attrs & HAS_OFFSET_DELTAS:
        deltas, cur = _read_ints("i", buf, cur, count)
        if count and (
            deltas[0] < 0
            or deltas[-1] != header.last_offset_delta
            or not all(map(operator.lt, deltas, deltas[1:]))
        ):
            raise CorruptRecordError("the offset deltas are not increasing up to last_offset_delta")
    elif header.last_offset_delta != count - 1:
        raise CorruptRecordError("last_offset_delta does not match the record count")
    timestamps, cur = _read_ints("q", buf, cur, count)
    key_lens = None
    key_bytes = 0
    if attrs & HAS_KEYS:
        key_lens, nxt = _read_ints("i", buf, cur, count)
        key_bytes, cur = _blob_bytes(buf, cur, key_lens, "key"), nxt
    value_lens, nxt = _read_ints("i", buf, cur, count)
    value_bytes, cur = _blob_bytes(buf, cur, value_lens, "value"), nxt
    header_lens = None
    header_bytes = 0
    if attrs & HAS_HEADERS:
        header_lens, nxt = _read_ints("i", buf, cur, count)
        header_bytes, cur = _blob_bytes(buf, cur, header_lens, "headers", nullable=False), nxt
    if cur + key_bytes + value_bytes + header_bytes != end:
        raise CorruptRecordError("record lengths do not add up to the batch size")
    return _Columns(
        deltas, timestamps, key_lens, value_lens, header_lens, cur, end, key_bytes, value_bytes
    )


def _check_headers(buf, cols: _Columns) -> None:
    """Parse every distinct headers blob once (records often share the same headers:
    then one C-level comparison finds that they all do)."""
    lengths = cols.header_lens
    if lengths is None:
        return
    start = cols.blobs + cols.key_bytes + cols.value_bytes
    blob = bytes(buf[start : cols.end])
    first = lengths[0] if lengths else 0
    if blob == blob[:first] * len(lengths):  # every record has the same headers
        decode_headers(blob[:first])
        return
    for distinct in set(_slices(blob, lengths)):
        decode_headers(distinct)


def _check_timestamps(buf, pos: int, header: BatchHeader, cols: _Columns) -> None:
    """Retention and the time index trust the header's timestamps: they must be the records'."""
    ts = cols.timestamps
    if not ts:
        return
    start = pos + HEADER_SIZE  # a produced batch has no offset deltas
    raw = bytes(buf[start : start + 8 * len(ts)])
    if ts[0] != header.base_timestamp or not _largest_is(raw, ts, header.max_timestamp):
        raise CorruptRecordError(
            f"the batch says its timestamps start at {header.base_timestamp} and reach "
            f"{header.max_timestamp}, its records say {ts[0]} and {max(ts)}"
        )


def _largest_is(raw: bytes, ts: array, expected: int) -> bool:
    """Whether ``max(ts) == expected``; ``raw`` is the column's little-endian bytes.

    Usually without an int per record: when every timestamp shares its top seven bytes
    with ``expected`` (a batch spans less than 256 ms, but for a boundary), comparing
    the byte planes decides it -- each plane is one strided slice, compared in C."""
    if expected >= 0:
        want = struct.pack("<q", expected)
        count = len(ts)
        if all(raw[k::8] == want[k : k + 1] * count for k in range(7, 0, -1)):
            low_bytes = raw[0::8]
            return not low_bytes.translate(None, _UP_TO[want[0]]) and want[0:1] in low_bytes
    return max(ts) == expected


def first_timestamp_outside(
    buf, pos: int, header: BatchHeader, low: int, high: int
) -> tuple[int, int] | None:
    """(index, timestamp) of the first record of a validated produced batch whose timestamp
    is not in [low, high], or None. Costs no per-record work while ``low`` is below
    every possible timestamp (it trusts the validated ``max_timestamp`` for ``high``)."""
    if header.max_timestamp <= high and low <= -(1 << 63):
        return None
    ts, _end = _read_ints("q", buf, pos + HEADER_SIZE, header.record_count)
    if header.max_timestamp <= high and low <= min(ts):
        return None
    for index, value in enumerate(ts):
        if not low <= value <= high:
            return index, value
    return None


def _slices(blob, lengths) -> list:
    if not lengths:
        return []
    if min(lengths) >= 0:
        ends = list(accumulate(lengths))
        starts = [0, *ends[:-1]]
        return [blob[s:e] for s, e in zip(starts, ends, strict=False)]
    out: list = []
    pos = 0
    for n in lengths:
        if n < 0:
            out.append(None)
        else:
            out.append(blob[pos : pos + n])
            pos += n
    return out


def decode_batch(buf, pos: int = 0, header: BatchHeader | None = None) -> Batch:
    """Decode the batch at ``pos`` into columns. Keys/values come back as bytes.

    The caller checks the CRC if it wants to (the consumer does, once). Raises
    CorruptRecordError when the columns do not describe the batch's bytes exactly
    (module docstring: Consistency) -- and no other exception for any input.
    """
    if header is None:
        header = read_header(buf, pos)
    cols = _read_columns(buf, pos, header)
    count = header.record_count
    if cols.deltas is not None:
        base = header.base_offset
        offsets = [base + d for d in cols.deltas]
    else:
        offsets = list(range(header.base_offset, header.base_offset + count))
    blob = bytes(buf[cols.blobs : cols.end])
    if cols.key_lens is not None:
        keys = _slices(blob[: cols.key_bytes], cols.key_lens)
        key_sizes = cols.key_lens.tolist()
    else:
        keys = [None] * count
        key_sizes = [-1] * count
    vstart = cols.key_bytes
    vend = vstart + cols.value_bytes
    values = _slices(blob[vstart:vend], cols.value_lens)
    if cols.header_lens is not None:
        headers = [decode_headers(h) for h in _slices(blob[vend:], cols.header_lens)]
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
