"""Kafka record batches (v2) <-> labkit's columnar batches (labkit/protocol/records.py).

Theory of operation
-------------------
The Kafka listener receives Kafka v2 batches in Produce and must answer Fetch with
them, while the broker stores labkit's own batches. ``kafka_to_labkit`` turns one
produced Kafka batch into one labkit batch (and keeps the producer id, epoch and base
sequence for idempotence); ``labkit_to_kafka`` turns one stored labkit batch into one
uncompressed Kafka batch. The Kafka v2 layout (all integers big-endian)::

    offset size field
    0      8    base_offset             int64
    8      4    batch_length            int32  bytes after this field
    12     4    partition_leader_epoch  int32
    16     1    magic                   int8   = 2
    17     4    crc                     uint32 CRC-32C of bytes [21, end)
    21     2    attributes              int16  bits 0-2 codec, 3 LogAppendTime,
                                               4 transactional, 5 control
    23     4    last_offset_delta       int32
    27     8    base_timestamp          int64
    35     8    max_timestamp           int64
    43     8    producer_id             int64  -1 = none
    51     2    producer_epoch          int16
    53     4    base_sequence           int32
    57     4    record_count            int32
    61          records (compressed as one block when the codec is not 0), each:
                  length varint, attributes int8, timestamp_delta varlong,
                  offset_delta varint, key_length varint (-1 = null), key,
                  value_length varint (-1 = null), value, header_count varint,
                  headers: key_length varint, key (UTF-8), value_length varint, value

Varints are zigzag-encoded (Kafka's ``ByteUtils.writeVarint``), at most 5 bytes for an
int32 and 10 for an int64.

Validation (Kafka -> labkit), as Apache Kafka 4.1's broker answers a producer (the
exception classes of its DefaultRecordBatch, DefaultRecord, ProduceRequest): a batch
size that does not fit, a bad CRC-32C, a compressed block that does not decompress ->
CORRUPT_MESSAGE (CorruptRecordError); one that expands past ``max_decompressed`` (pass
message.max.bytes) -> MESSAGE_TOO_LARGE (MessageSizeTooLargeError); behind a good
CRC, records that do not exactly fill the batch (count, varints, lengths, headers),
magic != 2, control or transactional batches (transactions are out of scope), offset
deltas other than 0..n-1 or LogAppendTime from a producer, a record labkit cannot store
(a header key over 65,535 bytes, over 65,535 headers) -> INVALID_RECORD
(InvalidRecordError); a codec this broker cannot read -> UNSUPPORTED_COMPRESSION_TYPE
(compression.py). No other exception escapes for any input (a corrupted-byte sweep
tests it).

labkit -> Kafka: one uncompressed v2 batch per labkit batch, base offset and timestamps
kept (LogAppendTime batches keep the flag; Kafka readers then take max_timestamp),
headers kept, the offsets compaction left kept as offset deltas (a batch compaction
emptied stays, with no records, so a consumer skips past its offsets). Producer id,
epoch and base sequence are -1 (labkit's format does not keep them yet).

Speed (benchmarks/kafka_batches.py; benchmarks/NOTES.md section 9 has the conditions),
CPU ms per batch of 1,000 records x 100 B (no keys/headers), load average 2.3-9.7 on
2 vCPUs, ranges over runs:

    direction        this module   aiokafka 0.14 (Cython)   kafka-python 3.0.12
    Kafka -> labkit  1.11-1.85     0.55-0.83 (+encode)      3.8-6.7 (+encode)
    labkit -> Kafka  0.57-0.85     0.62-0.97 (+decode)      2.5-4.3 (+decode)

Kafka -> labkit is a loop per record (each varint decides where the next field starts):
one- and two-byte varints are read inline through one zigzag table, fields appended
through bound methods. labkit -> Kafka runs no bytecode per record unless a record has
headers: each varint column is one ``itemgetter`` over a precomputed table and
each record one C-level ``b"".join``. aiokafka's compiled reader is ~2x faster for
Kafka -> labkit but is not a dependency, and would need these checks anyway.
"""

from __future__ import annotations

import operator
import struct
from collections.abc import Sequence
from itertools import chain, repeat
from operator import itemgetter
from typing import NamedTuple

import crc32c

from labkit.errors import CorruptRecordError, InvalidRecordError
from labkit.kafka import compression
from labkit.protocol import records as labkit_records
from labkit.protocol.batch_columns import decode_headers, read_columns, slices

MAGIC_V2 = 2
HEADER = struct.Struct(">qiibIhiqqqhii")
HEADER_SIZE = HEADER.size  # 61
LENGTH_PREFIX = 12  # base_offset + batch_length
CRC_START = 21
_MAGIC_AT = 16
_BATCH_LENGTH = struct.Struct(">i")
_TAIL = struct.Struct(">hiqqqhii")  # attributes .. record_count, what the CRC starts with
_FRONT = struct.Struct(">qiibI")  # base_offset .. crc

CODEC_MASK = 0x07
LOG_APPEND_TIME = 0x08
TRANSACTIONAL = 0x10
CONTROL = 0x20
MIN_RECORD_SIZE = 7  # length, attributes, timestamp, offset, key and value lengths, headers
DEFAULT_MAX_BATCH_BYTES = 1048588  # Kafka's message.max.bytes

_INT32_MIN, _INT32_MAX = -(1 << 31), (1 << 31) - 1
_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1

# the zigzag value of every varint of one or two bytes, indexed by its 14 payload bits
_ZIGZAG = [(n >> 1) ^ -(n & 1) for n in range(1 << 14)]


def _zigzag_bytes(value: int) -> bytes:
    n = (value << 1) ^ (value >> 63)
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


# the encoding of every varint in [0, _TABLE_TOP), and of -1 (a null's length) last, so
# that ``_VARINT[v]`` is v's encoding for every v in [-1, _TABLE_TOP)
_TABLE_TOP = 1 << 14
_VARINT = [_zigzag_bytes(v) for v in range(_TABLE_TOP)] + [_zigzag_bytes(-1)]


def _varint_bytes(value: int) -> bytes:
    if -1 <= value < _TABLE_TOP:
        return _VARINT[value]
    return _zigzag_bytes(value)


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


class Converted(NamedTuple):
    """One Kafka batch as a labkit batch, with the Kafka header it came with."""

    labkit_batch: bytes
    kafka_header: KafkaBatchHeader


def split_kafka_batches(buf) -> list[tuple[int, int]]:
    """(start, end) of each whole Kafka batch in ``buf``; a partial trailing batch is
    left out (a fetch may cut one). Raises CorruptRecordError for a nonsense length."""
    spans = []
    pos = 0
    size = len(buf)
    while size - pos >= LENGTH_PREFIX:
        (length,) = _BATCH_LENGTH.unpack_from(buf, pos + 8)
        if length < HEADER_SIZE - LENGTH_PREFIX:
            raise CorruptRecordError(f"record batch size {length} at byte {pos} is too small")
        end = pos + LENGTH_PREFIX + length
        if end > size:
            break
        spans.append((pos, end))
        pos = end
    return spans


def produced_batches(
    records, *, max_decompressed: int = DEFAULT_MAX_BATCH_BYTES
) -> list[Converted]:
    """A Produce request's ``records`` for one partition, every batch converted.

    As Kafka's ProduceRequest: at least one batch, and the bytes are whole batches (a
    producer never cuts one). Raises what ``kafka_to_labkit`` raises; InvalidRecordError
    for no batch, CorruptRecordError for bytes past the last whole batch."""
    _check_magic(records, 0)
    spans = split_kafka_batches(records)
    if not spans:
        raise InvalidRecordError(
            "a produce request must have at least one record batch per partition"
        )
    if spans[-1][1] != len(records):
        raise CorruptRecordError(
            f"a produce request holds {len(records) - spans[-1][1]} bytes past its last batch"
        )
    return [
        kafka_to_labkit(records, start, max_decompressed=max_decompressed) for start, _end in spans
    ]


def _check_magic(buf, pos: int) -> None:
    # every message format keeps its magic at byte 16: read it before the v2 header
    if len(buf) - pos > _MAGIC_AT and buf[pos + _MAGIC_AT] != MAGIC_V2:
        raise InvalidRecordError(
            f"record batch magic {buf[pos + _MAGIC_AT]}: this broker reads only magic 2 "
            "(Kafka 0.11+ clients; upgrade the client or set its api_version to (0, 11) or later)"
        )


def read_kafka_header(buf, pos: int = 0) -> KafkaBatchHeader:
    """The Kafka batch header at ``pos``, its size and magic checked (not its CRC).

    Raises CorruptRecordError (does not fit) or InvalidRecordError (magic != 2)."""
    available = len(buf) - pos
    _check_magic(buf, pos)
    if available < HEADER_SIZE:
        raise CorruptRecordError(
            f"a record batch needs {HEADER_SIZE} header bytes, {available} are left"
        )
    header = KafkaBatchHeader._make(HEADER.unpack_from(buf, pos))
    if header.batch_length < HEADER_SIZE - LENGTH_PREFIX or pos + header.size > len(buf):
        raise CorruptRecordError(
            f"record batch size {header.batch_length} does not match the "
            f"{len(buf) - pos - LENGTH_PREFIX} bytes sent"
        )
    return header


def kafka_to_labkit(
    buf,
    pos: int = 0,
    *,
    produced: bool = True,
    max_decompressed: int = DEFAULT_MAX_BATCH_BYTES,
) -> Converted:
    """Validate the Kafka batch at ``pos`` as Kafka's broker does and convert it.

    ``produced``: the batch comes from a producer (offset deltas 0..n-1, CreateTime, at
    least one record); otherwise explicit offset deltas and LogAppendTime are kept.
    Raises CorruptRecordError, InvalidRecordError, UnsupportedCompressionTypeError or
    MessageSizeTooLargeError (module docstring: Validation), never anything else.
    """
    header = read_kafka_header(buf, pos)
    end = pos + header.size
    view = memoryview(buf)
    crc = crc32c.crc32c(view[pos + CRC_START : end])
    if crc != header.crc:
        raise CorruptRecordError(
            f"record batch CRC-32C mismatch (stored {header.crc:08x}, computed {crc:08x})"
        )
    attrs = header.attributes
    if attrs & (CONTROL | TRANSACTIONAL):
        raise InvalidRecordError(
            "transactional and control batches are not supported by labkit's broker: "
            "use a producer without transactional_id"
        )
    count = header.record_count
    if produced:
        if count < 1 or header.last_offset_delta != count - 1:
            raise InvalidRecordError(
                f"a produced batch of {count} records must have last_offset_delta "
                f"{count - 1}, not {header.last_offset_delta}"
            )
        if attrs & LOG_APPEND_TIME:
            raise InvalidRecordError(
                "a producer may not set LogAppendTime on a batch (the topic's "
                "message.timestamp.type decides it)"
            )
    if header.codec:
        data = compression.decompress(header.codec, view[pos + HEADER_SIZE : end], max_decompressed)
    else:
        data = bytes(view[pos + HEADER_SIZE : end])
    if count < 0 or count > len(data) // MIN_RECORD_SIZE:
        raise InvalidRecordError(
            f"record count {count} does not fit in {len(data)} bytes of records"
        )
    try:
        columns = _read_records(data, count, header.base_timestamp)
    except IndexError:
        raise InvalidRecordError("a record runs past the end of its batch") from None
    return Converted(_to_labkit(header, columns, produced), header)


class _Records(NamedTuple):
    timestamps: list[int]
    deltas: list[int]
    keys: list | None  # None when no record has a key
    values: list
    headers: list | None  # None when no record has headers


def _read_records(data: bytes, count: int, base_timestamp: int) -> _Records:
    """Parse ``count`` records filling ``data`` exactly. Raises InvalidRecordError, or
    IndexError when a record runs past the end (the caller reports it).

    Written for CPython's bytecode count: a varint of one or two bytes (every length
    and delta under 8,192) is read inline through one table, longer ones by ``_varint``;
    fields are appended to column lists through bound methods."""
    zigzag = _ZIGZAG
    long_varint = _varint
    timestamps: list[int] = []
    deltas: list[int] = []
    keys: list = []
    values: list = []
    header_rows: list[tuple[int, list]] = []  # (record index, headers), only records with any
    seen_headers: dict[bytes, list] = {}  # a record's header bytes -> its parsed headers
    add_ts, add_delta, add_key, add_value = (
        timestamps.append,
        deltas.append,
        keys.append,
        values.append,
    )
    has_keys = False
    pos = 0
    for index in range(count):
        b = data[pos]
        if b < 0x80:
            length = zigzag[b]
            pos += 1
        elif data[pos + 1] < 0x80:
            length = zigzag[(data[pos + 1] << 7) + b - 0x80]
            pos += 2
        else:
            length, pos = long_varint(data, pos, 5)
        record_end = pos + length
        b = data[pos + 1]  # after the record's attributes (unused by Kafka)
        if b < 0x80:
            add_ts(zigzag[b])
            pos += 2
        elif data[pos + 2] < 0x80:
            add_ts(zigzag[(data[pos + 2] << 7) + b - 0x80])
            pos += 3
        else:
            delta, pos = long_varint(data, pos + 1, 10)
            add_ts(delta)
        b = data[pos]
        if b < 0x80:
            add_delta(zigzag[b])
            pos += 1
        elif data[pos + 1] < 0x80:
            add_delta(zigzag[(data[pos + 1] << 7) + b - 0x80])
            pos += 2
        else:
            delta, pos = long_varint(data, pos, 5)
            add_delta(delta)
        b = data[pos]
        if b == 1:  # zigzag -1: a null key
            add_key(None)
            pos += 1
        else:
            if b < 0x80:
                size = zigzag[b]
                pos += 1
            else:
                size, pos = long_varint(data, pos, 5)
            if size < 0:
                raise InvalidRecordError(f"a record's key length is {size}")
            add_key(data[pos : pos + size])
            pos += size
            has_keys = True
        b = data[pos]
        if b < 0x80:
            size = zigzag[b]
            pos += 1
        elif data[pos + 1] < 0x80:
            size = zigzag[(data[pos + 1] << 7) + b - 0x80]
            pos += 2
        else:
            size, pos = long_varint(data, pos, 5)
        if size >= 0:
            add_value(data[pos : pos + size])
            pos += size
        elif size == -1:
            add_value(None)
        else:
            raise InvalidRecordError(f"a record's value length is {size}")
        if data[pos] == 0:  # no headers
            pos += 1
        else:  # headers end the record: records often repeat them, parse each once
            raw_headers = data[pos:record_end]
            record_headers = seen_headers.get(raw_headers)
            if record_headers is None:
                record_headers, pos = _read_headers(data, pos, record_end)
                seen_headers[raw_headers] = record_headers
            else:
                pos = record_end
            header_rows.append((index, list(record_headers)))
        if pos != record_end:
            raise InvalidRecordError(
                f"a record's fields take {pos - record_end + length} bytes, its length says "
                f"{length}"
            )
    if pos != len(data):
        raise InvalidRecordError(
            f"the batch holds {len(data) - pos} bytes past its {count} records"
        )
    headers = None
    if header_rows:
        headers = [[] for _ in range(count)]
        for index, record_headers in header_rows:
            headers[index] = record_headers
    if base_timestamp:
        timestamps = list(map(base_timestamp.__add__, timestamps))
    return _Records(timestamps, deltas, keys if has_keys else None, values, headers)


def _varint(data: bytes, pos: int, max_bytes: int) -> tuple[int, int]:
    """A zigzag varint of at most ``max_bytes`` bytes at ``pos``: (value, next pos)."""
    n = 0
    shift = 0
    for i in range(max_bytes):
        b = data[pos + i]
        n |= (b & 0x7F) << shift
        if b < 0x80:
            value = (n >> 1) ^ -(n & 1)
            if max_bytes == 5 and not _INT32_MIN <= value <= _INT32_MAX:
                break
            return value, pos + i + 1
        shift += 7
    raise InvalidRecordError(f"a varint at byte {pos} of the records is too long")


def _read_headers(data: bytes, pos: int, record_end: int) -> tuple[list, int]:
    """A record's headers (they run to its end): ([(key, value)], next pos). One- and
    two-byte varints inline, as in ``_read_records``."""
    zigzag = _ZIGZAG
    b = data[pos]
    if b < 0x80:
        count = zigzag[b]
        pos += 1
    else:
        count, pos = _varint(data, pos, 5)
    if count < 0 or count > (record_end - pos) // 2:
        raise InvalidRecordError(f"a record's header count {count} does not fit in the record")
    out = []
    for _ in range(count):
        b = data[pos]
        if b < 0x80:
            size = zigzag[b]
            pos += 1
        else:
            size, pos = _varint(data, pos, 5)
        if size < 0 or pos + size > record_end:
            raise InvalidRecordError(f"a header key length {size} does not fit in the record")
        try:
            key = data[pos : pos + size].decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidRecordError("a header key is not UTF-8") from None
        pos += size
        b = data[pos]
        if b < 0x80:
            size = zigzag[b]
            pos += 1
        else:
            size, pos = _varint(data, pos, 5)
        if size >= 0 and pos + size <= record_end:
            out.append((key, data[pos : pos + size]))
            pos += size
        elif size == -1:
            out.append((key, None))
        else:
            raise InvalidRecordError(f"a header value length {size} does not fit in the record")
    return out, pos


def _to_labkit(header: KafkaBatchHeader, records: _Records, produced: bool) -> bytes:
    count = header.record_count
    deltas = records.deltas
    if produced:
        if deltas != list(range(count)):
            raise InvalidRecordError(
                "a produced batch's records must have offset deltas 0, 1, 2, ... in order"
            )
        offset_deltas = None
    else:
        if deltas and (deltas[0] < 0 or not all(map(operator.lt, deltas, deltas[1:]))):
            raise InvalidRecordError("a batch's offset deltas are not increasing")
        if deltas and deltas[-1] != header.last_offset_delta:
            raise InvalidRecordError("a batch's last offset delta is not its last record's")
        # an emptied batch keeps no offsets in labkit's format (it has no records)
        offset_deltas = None if count and deltas == list(range(count)) else deltas
    timestamps = records.timestamps
    log_append_time = bool(header.attributes & LOG_APPEND_TIME)
    if log_append_time:
        timestamps = [header.max_timestamp] * count
    elif timestamps and not (_INT64_MIN <= min(timestamps) and max(timestamps) <= _INT64_MAX):
        raise InvalidRecordError("a record's timestamp does not fit in 64 bits")
    try:
        return labkit_records.encode_batch(
            timestamps,
            records.keys,
            records.values,
            records.headers,
            base_offset=header.base_offset,
            offset_deltas=offset_deltas,
            log_append_time=log_append_time,
        )
    except (struct.error, OverflowError) as exc:
        raise InvalidRecordError(
            f"a record cannot be stored by labkit (header keys up to 65,535 bytes, "
            f"up to 65,535 headers per record): {exc}"
        ) from None


def labkit_to_kafka(batch, pos: int = 0, *, partition_leader_epoch: int = -1) -> bytes:
    """The labkit batch at ``pos`` as one uncompressed Kafka v2 batch. The partition leader
    epoch defaults to -1 (none: a client then skips leader-epoch validation, KIP-320),
    as a producer's batch carries it.

    Raises CorruptRecordError when the labkit batch's columns or headers do not add up
    (its CRC is the broker's to check when it stores the batch)."""
    header = labkit_records.read_header(batch, pos)
    cols = read_columns(batch, pos, header)
    count = header.record_count
    base_ts = header.base_timestamp if count else -1
    body = _encode_records(batch, cols, count, base_ts)
    attributes = LOG_APPEND_TIME if header.attributes & labkit_records.LOG_APPEND_TIME else 0
    tail = _TAIL.pack(
        attributes,
        header.last_offset_delta,
        base_ts,
        header.max_timestamp if count else -1,
        -1,  # producer id, epoch, base sequence: labkit's format does not keep them (yet)
        -1,
        -1,
        count,
    )
    crc = crc32c.crc32c(body, crc32c.crc32c(tail))
    front = _FRONT.pack(
        header.base_offset,
        HEADER_SIZE - LENGTH_PREFIX + len(body),
        partition_leader_epoch,
        MAGIC_V2,
        crc,
    )
    return b"".join((front, tail, body))


def labkit_batches_to_kafka(buf, *, partition_leader_epoch: int = -1) -> bytes:
    """Every whole labkit batch in ``buf`` (a fetch result) as Kafka v2 batches, in order.
    Raises CorruptRecordError when a batch is corrupt."""
    return b"".join(
        labkit_to_kafka(buf, start, partition_leader_epoch=partition_leader_epoch)
        for start, _end in labkit_records.split_batches(buf)
    )


def _varints(values: list[int], *, lowest: int | None = None) -> Sequence[bytes]:
    """The varint encoding of each int: one C-level ``itemgetter`` over the table when all
    are in it. ``lowest``: a bound the caller already knows (saves a ``min``)."""
    if len(values) > 1 and -1 <= (min(values) if lowest is None else lowest):
        if max(values) < _TABLE_TOP:
            return itemgetter(*values)(_VARINT)
    return [_varint_bytes(v) for v in values]


def _encode_records(batch, cols, count: int, base_ts: int) -> bytes:
    """The records of a labkit batch in Kafka's layout, built column by column.

    Each column of varints (timestamp deltas, offset deltas, lengths) is one lookup of
    them all in the precomputed table; each record is one C-level ``b"".join`` of its
    fields; no Python bytecode runs per record unless a record has headers."""
    blob = bytes(batch[cols.blobs : cols.end])
    key_end = cols.key_bytes
    value_end = key_end + cols.value_bytes
    value_lens = cols.value_lens
    values = slices(blob[key_end:value_end], value_lens)
    if -1 in value_lens:
        values = [b"" if v is None else v for v in values]
    if cols.deltas is None:
        offset_varints = _VARINT[:count] if count < _TABLE_TOP else _varints(list(range(count)))
    else:
        offset_varints = _varints(cols.deltas.tolist(), lowest=0)  # checked increasing from 0
    timestamp_varints = _varints(list(map(operator.sub, cols.timestamps, repeat(base_ts))))
    if cols.key_lens is None:
        key_lengths = repeat(b"\x01")  # zigzag -1: a null key
        keys = repeat(b"")
    else:
        key_lengths = _varints(cols.key_lens.tolist(), lowest=-1)  # read_columns checked
        keys = slices(blob[:key_end], cols.key_lens)
        if -1 in cols.key_lens:
            keys = [b"" if k is None else k for k in keys]
    if cols.header_lens is None:
        header_parts = repeat(b"\x00")  # no headers
    else:
        header_parts = _convert_headers(slices(blob[value_end:], cols.header_lens))
    bodies = list(
        map(
            b"".join,
            zip(
                repeat(b"\x00"),  # record attributes
                timestamp_varints,
                offset_varints,
                key_lengths,
                keys,
                _varints(value_lens.tolist(), lowest=-1),  # read_columns checked them
                values,
                header_parts,
            ),
        )
    )
    lengths = _varints(list(map(len, bodies)), lowest=1)
    return b"".join(chain.from_iterable(zip(lengths, bodies, strict=True)))


def _convert_headers(blobs: list[bytes]) -> list[bytes]:
    """Each record's labkit headers blob in Kafka's encoding; records often carry the
    same headers, so each distinct blob is converted once."""
    done: dict[bytes, bytes] = {b"": b"\x00"}
    out = []
    for blob in blobs:
        part = done.get(blob)
        if part is None:
            part = done[blob] = _encode_headers(decode_headers(blob))
        out.append(part)
    return out


def _encode_headers(headers) -> bytes:
    out = [_varint_bytes(len(headers))]
    for key, value in headers:
        raw = key.encode("utf-8")
        out.append(_varint_bytes(len(raw)))
        out.append(raw)
        if value is None:
            out.append(b"\x01")
        else:
            out.append(_varint_bytes(len(value)))
            out.append(value)
    return b"".join(out)
