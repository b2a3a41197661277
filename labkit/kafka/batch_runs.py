"""Kafka records read a column at a time when they share one shape (the Produce fast path).

Theory of operation
-------------------
A producer's batch usually holds records of one *shape*: values of one length, no key
(or keys of one length), no headers, timestamp deltas of one varint width. Records of
one shape whose offset deltas also take the same width (one byte below 64, two below
8,192, three below 2**20) have the same size, so record k of such a run starts at ``start + k * stride`` and
each byte of a field is a *column*, ``region[offset::stride]``: one C-level slice for
every record at once. ``read_runs`` proves a run with a few columns instead of decoding
each record: every byte the reference reader (``batches._read_records``) decodes as
structure (the record's length, offset delta, key and value lengths, header count) must
equal what the shape says (canonical varints), and every timestamp delta must be a
varint of the shape's width. Records that pass decode to exactly what the reference
reader gives; the first one that does not ends the run, and the next record's shape is
tried. The fast path gives up, and leaves the rest of the batch to the reference reader
(which also raises every error), at a record with headers or a varint it does not
take, at a run shorter than ``MIN_RUN`` records (records of mixed sizes: JSON values,
keys of varying length) and at record 65,536. It never
raises: it stops.

Cost per run: a handful of slices, ``lstrip``s and comparisons of one byte per record;
per record: its value (and its key) cut out by one ``struct.iter_unpack`` of the run,
and two or three C-level table lookups for its timestamp, no Python bytecode (benchmarks/NOTES.md, section 10).

Pure: no I/O, no state.
"""

from __future__ import annotations

import functools
from itertools import repeat
from operator import add, itemgetter, mul
from struct import iter_unpack
from typing import NamedTuple

from labkit.kafka.batch_layout import INT32_MAX, INT32_MIN, ZIGZAG, varint_bytes

MIN_RUN = 16  # a shorter run ends the fast path: mixed records cost a probe each
# offset deltas below 64 take one varint byte, below 8,192 two, below 2**20 three;
# librdkafka sends up to 10,000 records a batch, the fast path reads up to 65,536
OFFSET_WIDTHS = ((0, 64), (64, 8192), (8192, 1 << 16))  # (first, end) per width 1, 2, 3
LAST_OFFSET = OFFSET_WIDTHS[-1][1]
_LOW_BYTES = bytes(range(0x80))  # a varint's last byte
_HIGH_BYTES = bytes(range(0x80, 0x100))  # a varint's other bytes
_LOW_7_BITS = bytes(range(0x80)) * 2  # bytes.translate table: b & 0x7f
_FIRST = itemgetter(0)


class Shape(NamedTuple):
    """What records of one run share; ``fixed`` is a record's length but its offset delta."""

    timestamp_width: int  # 1 or 2
    key_length: bytes  # its varint as sent (b"\\x01": null)
    key_size: int  # -1: null
    value_length: bytes
    value_size: int  # -1: null
    fixed: int


class Runs(NamedTuple):
    """The records ``read_runs`` read: the first ``read`` of the batch, ending at ``pos``."""

    read: int
    pos: int
    timestamp_deltas: list[int]
    keys: list
    values: list
    value_lengths: list[int]  # -1: null


def read_runs(data: bytes, count: int) -> Runs:
    """The leading records of the batch's ``data`` (its ``count`` records, uncompressed)
    that come in runs of one shape. Never raises: a record it cannot prove is left (with
    every record after it) to the reference reader."""
    out = Runs(0, 0, [], [], [], [])
    limit = min(count, LAST_OFFSET)
    index = pos = 0
    while index < limit:
        shape = record_shape(data, pos, index)
        if shape is None:
            break
        done, pos = _read_run(data, pos, index, limit, shape, out)
        index += done
        if done < MIN_RUN:
            break
    return out._replace(read=index, pos=pos)


@functools.cache
def _offset_columns(width: int) -> tuple[bytes, ...]:
    """Byte i of the offset deltas that take ``width`` varint bytes, one column per i
    (built at first use: three-byte ones take 172 KB)."""
    first, end = OFFSET_WIDTHS[width - 1]
    encoded = b"".join(map(varint_bytes, range(first, end)))
    return tuple(encoded[i::width] for i in range(width))


def _canonical_varint(data: bytes, pos: int) -> tuple[int, int] | None:
    """(value, width) of the zigzag int32 varint at ``pos`` if it is written in its
    shortest form (then every reader decodes it the same); else None."""
    n = shift = 0
    for i in range(5):
        b = data[pos + i]
        n |= (b & 0x7F) << shift
        if b < 0x80:
            if i and not b:
                return None  # a trailing zero byte: not the shortest form
            value = (n >> 1) ^ -(n & 1)
            return (value, i + 1) if INT32_MIN <= value <= INT32_MAX else None
        shift += 7
    return None


def record_shape(data: bytes, pos: int, index: int) -> Shape | None:
    """The shape of record ``index`` at ``pos``, or None when it has headers, a varint
    not in its shortest form, a timestamp delta over two bytes, an offset delta other
    than ``index``, or does not fit."""
    try:
        length = _canonical_varint(data, pos)
        if length is None:
            return None
        p = pos + length[1] + 1  # after the record's attributes (any: Kafka ignores them)
        if data[p] < 0x80:
            timestamp_width = 1
        elif data[p + 1] < 0x80:
            timestamp_width = 2
        else:
            return None
        p += timestamp_width
        offset = varint_bytes(index)
        if data[p : p + len(offset)] != offset:
            return None
        p += len(offset)
        key = _canonical_varint(data, p)
        if key is None or key[0] < -1:
            return None
        key_length = data[p : p + key[1]]
        p += key[1] + max(key[0], 0)
        value = _canonical_varint(data, p)
        if value is None or value[0] < -1:
            return None
        value_length = data[p : p + value[1]]
        p += value[1] + max(value[0], 0)
        if data[p] != 0:  # headers
            return None
    except IndexError:
        return None
    fixed = 1 + timestamp_width + len(key_length) + max(key[0], 0)
    fixed += len(value_length) + max(value[0], 0) + 1
    if length[0] != fixed + len(offset):
        return None
    return Shape(timestamp_width, key_length, key[0], value_length, value[0], fixed)


def _agree(column: bytes, expected: bytes) -> int:
    """How many leading bytes of ``column`` equal ``expected``'s (same length)."""
    if column == expected:
        return len(column)
    lo, hi = 0, len(column)  # column[:lo] agrees, column[:hi] does not
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if column[:mid] == expected[:mid]:
            lo = mid
        else:
            hi = mid
    return lo


def _in_set(column: bytes, allowed: bytes) -> int:
    """How many leading bytes of ``column`` are in ``allowed``."""
    return len(column) - len(column.lstrip(allowed))


def _read_run(
    data: bytes, pos: int, index: int, limit: int, shape: Shape, out: Runs
) -> tuple[int, int]:
    """Read records ``index``.. of ``shape`` from ``pos`` while they prove to have it,
    appending to ``out``'s columns: (records read, next pos)."""
    done = 0
    while index < limit:
        offset_width = 1 if index < 64 else 2 if index < 8192 else 3
        first, end = OFFSET_WIDTHS[offset_width - 1]
        end = min(limit, end)
        length = varint_bytes(shape.fixed + offset_width)
        stride = len(length) + shape.fixed + offset_width
        n = min(end - index, (len(data) - pos) // stride)
        if n <= 0:
            break
        stop = pos + n * stride
        good = n
        # the structure: each byte a column that must hold one value throughout
        at = pos
        constants = [(at, length)]
        at += len(length) + 1
        timestamp_at = at
        at += shape.timestamp_width
        offset_at = at
        at += offset_width
        key_at = at + len(shape.key_length)
        constants.append((at, shape.key_length))
        at = key_at + max(shape.key_size, 0)
        value_at = at + len(shape.value_length)
        constants.append((at, shape.value_length))
        constants.append((value_at + max(shape.value_size, 0), b"\x00"))
        for start, expected in constants:
            for i, byte in enumerate(expected):
                column = data[start + i : stop : stride][:good]
                good = min(good, _in_set(column, bytes((byte,))))
        first = index - first
        for i, table in enumerate(_offset_columns(offset_width)):
            good = _agree(data[offset_at + i : stop : stride][:good], table[first : first + good])
        timestamps = data[timestamp_at:stop:stride][:good]
        if shape.timestamp_width == 1:
            good = _in_set(timestamps, _LOW_BYTES)
            out.timestamp_deltas.extend(map(ZIGZAG.__getitem__, timestamps[:good]))
        else:
            good = _in_set(timestamps, _HIGH_BYTES)
            high = data[timestamp_at + 1 : stop : stride][:good]
            good = _in_set(high, _LOW_BYTES)
            low = timestamps[:good].translate(_LOW_7_BITS)
            out.timestamp_deltas.extend(
                map(ZIGZAG.__getitem__, map(add, map(mul, high[:good], repeat(128)), low))
            )
        span = good * stride
        for fields, at, size in (
            (out.keys, key_at, shape.key_size),
            (out.values, value_at, shape.value_size),
        ):
            if size < 0:
                fields.extend(repeat(None, good))
            elif good:  # each record's field: one C-level unpack of the whole run
                layout = f"{at - pos}x{size}s{pos + stride - at - size}x"
                run = memoryview(data)[pos : pos + span]
                fields.extend(map(_FIRST, iter_unpack(layout, run)))
        out.value_lengths.extend(repeat(shape.value_size, good))
        pos += span
        index += good
        done += good
        if good < n:
            break
    return done, pos
