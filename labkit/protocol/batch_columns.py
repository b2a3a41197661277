"""A record batch's columns: the headers blob codec, and reading the columns of a batch
with every cross-check of records.py's "Consistency" rules.

``read_columns`` checks lengths against each other and the batch size;
``check_headers`` parses each distinct headers blob once; ``check_timestamps`` compares
the header's timestamps with the records'; ``first_timestamp_outside`` finds a record
outside the broker's timestamp bounds. All raise CorruptRecordError naming what does not
add up, never ``struct.error`` or ``IndexError``. Split out of records.py (the codec) to
keep each module small; pure: no I/O, no state.
"""

from __future__ import annotations

import operator
import struct
from array import array
from itertools import accumulate
from typing import NamedTuple

from labkit.errors import CorruptRecordError
from labkit.protocol.batch_layout import (
    HAS_HEADERS,
    HAS_KEYS,
    HAS_OFFSET_DELTAS,
    HEADER_SIZE,
    BatchHeader,
    column_bytes,
    read_ints,
)

_HDR_COUNT = struct.Struct("<H")
_HDR_KEY = struct.Struct("<H")
_HDR_VALUE = struct.Struct("<i")


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


def read_columns(buf, pos: int, header: BatchHeader) -> _Columns:
    """Read and cross-check the columns (module docstring: Consistency), except the
    headers blobs. Raises CorruptRecordError naming what does not add up."""
    count = header.record_count
    attrs = header.attributes
    cur = pos + HEADER_SIZE
    end = pos + header.size
    if count < 0 or end > len(buf) or cur + count * column_bytes(attrs) > end:
        raise CorruptRecordError(f"record count {count} does not fit in the batch")
    deltas = None
    if attrs & HAS_OFFSET_DELTAS:
        deltas, cur = read_ints("i", buf, cur, count)
        if count and (
            deltas[0] < 0
            or deltas[-1] != header.last_offset_delta
            or not all(map(operator.lt, deltas, deltas[1:]))
        ):
            raise CorruptRecordError("the offset deltas are not increasing up to last_offset_delta")
    elif header.last_offset_delta != count - 1:
        raise CorruptRecordError("last_offset_delta does not match the record count")
    timestamps, cur = read_ints("q", buf, cur, count)
    key_lens = None
    key_bytes = 0
    if attrs & HAS_KEYS:
        key_lens, nxt = read_ints("i", buf, cur, count)
        key_bytes, cur = _blob_bytes(buf, cur, key_lens, "key"), nxt
    value_lens, nxt = read_ints("i", buf, cur, count)
    value_bytes, cur = _blob_bytes(buf, cur, value_lens, "value"), nxt
    header_lens = None
    header_bytes = 0
    if attrs & HAS_HEADERS:
        header_lens, nxt = read_ints("i", buf, cur, count)
        header_bytes, cur = _blob_bytes(buf, cur, header_lens, "headers", nullable=False), nxt
    if cur + key_bytes + value_bytes + header_bytes != end:
        raise CorruptRecordError("record lengths do not add up to the batch size")
    return _Columns(
        deltas, timestamps, key_lens, value_lens, header_lens, cur, end, key_bytes, value_bytes
    )


def check_headers(buf, cols: _Columns) -> None:
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
    for distinct in set(slices(blob, lengths)):
        decode_headers(distinct)


def check_timestamps(buf, pos: int, header: BatchHeader, cols: _Columns) -> None:
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
    ts, _end = read_ints("q", buf, pos + HEADER_SIZE, header.record_count)
    if header.max_timestamp <= high and low <= min(ts):
        return None
    for index, value in enumerate(ts):
        if not low <= value <= high:
            return index, value
    return None


def slices(blob, lengths) -> list:
    if not lengths:
        return []
    if min(lengths) >= 0:
        ends = list(accumulate(lengths))
        starts = [0, *ends[:-1]]
        return [blob[s:e] for s, e in zip(starts, ends, strict=False)]
    out: list = []  # slices of blob (its type), None for a null
    pos = 0
    for n in lengths:
        if n < 0:
            out.append(None)
        else:
            out.append(blob[pos : pos + n])
            pos += n
    return out
