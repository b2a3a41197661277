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

Speed (benchmarks/kafka_batches.py; benchmarks/NOTES.md section 10 has the conditions),
CPU ms per batch of 1,000 records x 100 B (no keys/headers), load average 11-13 on
2 vCPUs (2026-12-06, 22:10 UTC; at loads 2-10 earlier runs gave ~0.6x these):

    direction        this module   aiokafka 0.14 (Cython)   kafka-python 3.0.12
    Kafka -> labkit  0.72          0.80 (read + encode)     6.5 (read + encode)
    labkit -> Kafka  0.83          0.94 (+decode)           4.0 (+decode)

Kafka -> labkit: a record is a chain of varints (each decides where the next field
starts), but a producer's records usually share one shape, and then
``batch_runs.read_runs`` reads them a column at a time (0.41 ms of the 0.72 above; the
reference loop alone takes 1.35). The records it leaves (headers, mixed sizes) go
through ``_read_records``' loop: one- and two-byte varints inline through one zigzag
table, fields appended through bound methods, ~1 us per record. labkit -> Kafka runs
no bytecode per record unless a record has headers: each varint column is one
``itemgetter`` over a precomputed table and each record one C-level ``b"".join``.

Modules: the v2 header ``struct``, attribute bits and varint tables are in
``batch_layout.py``, labkit -> Kafka in ``batch_build.py``, decompression in
``compression.py``, the fast path for runs of one shape in ``batch_runs.py``; this
module reads Kafka batches and is where callers import every name from.

Size: ~480 lines: both directions of the converter share the varint tables and the
validation rules; the layout, the builder and the codecs already live in batch_layout.py,
batch_build.py and compression.py.
"""

from __future__ import annotations

import operator
import struct
from typing import NamedTuple

import crc32c

from labkit.errors import CorruptRecordError, InvalidRecordError
from labkit.kafka import batch_runs, compression
from labkit.kafka.batch_build import labkit_batches_to_kafka, labkit_to_kafka
from labkit.kafka.batch_layout import (
    BATCH_LENGTH,
    CODEC_MASK,
    CONTROL,
    CRC_START,
    DEFAULT_MAX_BATCH_BYTES,
    HEADER,
    HEADER_SIZE,
    INT32_MAX,
    INT32_MIN,
    INT64_MAX,
    INT64_MIN,
    LENGTH_PREFIX,
    LOG_APPEND_TIME,
    MAGIC_V2,
    MIN_RECORD_SIZE,
    TRANSACTIONAL,
    ZIGZAG,
    KafkaBatchHeader,
    check_magic,
)
from labkit.protocol import records as labkit_records

__all__ = [
    "CODEC_MASK",
    "CONTROL",
    "LOG_APPEND_TIME",
    "MAGIC_V2",
    "TRANSACTIONAL",
    "Converted",
    "KafkaBatchHeader",
    "kafka_to_labkit",
    "labkit_batches_to_kafka",
    "labkit_to_kafka",
    "produced_batches",
    "read_kafka_header",
    "split_kafka_batches",
]


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
        (length,) = BATCH_LENGTH.unpack_from(buf, pos + 8)
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
    check_magic(records, 0)
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


def read_kafka_header(buf, pos: int = 0) -> KafkaBatchHeader:
    """The Kafka batch header at ``pos``, its size and magic checked (not its CRC).

    Raises CorruptRecordError (does not fit) or InvalidRecordError (magic != 2)."""
    available = len(buf) - pos
    check_magic(buf, pos)
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
    value_lengths: list[int] | None = None  # when the runs read every record


def _read_records(data: bytes, count: int, base_timestamp: int, *, runs: bool = True) -> _Records:
    """Parse ``count`` records filling ``data`` exactly. Raises InvalidRecordError, or
    IndexError when a record runs past the end (the caller reports it).

    ``runs``: the leading records that come in runs of one shape are read a column at a
    time (``batch_runs.read_runs``, the same answer); the loop below reads the rest (all
    of them with ``runs=False``, the reference the tests hold the fast path to).
    Written for CPython's bytecode count: a varint of one or two bytes (every length
    and delta under 8,192) is read inline through one table, longer ones by ``_varint``;
    fields are appended to column lists through bound methods."""
    zigzag = ZIGZAG
    long_varint = _varint
    fast = batch_runs.read_runs(data, count) if runs else batch_runs.Runs(0, 0, [], [], [], [])
    timestamps: list[int] = fast.timestamp_deltas
    deltas: list[int] = list(range(fast.read))
    keys: list = fast.keys
    values: list = fast.values
    header_rows: list[tuple[int, list]] = []  # (record index, headers), only records with any
    seen_headers: dict[bytes, list] = {}  # a record's header bytes -> its parsed headers
    add_ts, add_delta, add_key, add_value = (
        timestamps.append,
        deltas.append,
        keys.append,
        values.append,
    )
    has_keys = fast.read > keys.count(None)
    pos = fast.pos
    for index in range(fast.read, count):
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
    headers: list[list[tuple[str, bytes | None]]] | None = None
    if header_rows:
        headers = [[] for _ in range(count)]
        for index, record_headers in header_rows:
            headers[index] = record_headers
    if base_timestamp:
        timestamps = list(map(base_timestamp.__add__, timestamps))
    value_lengths = fast.value_lengths if fast.read == count else None
    return _Records(timestamps, deltas, keys if has_keys else None, values, headers, value_lengths)


def _varint(data: bytes, pos: int, max_bytes: int) -> tuple[int, int]:
    """A zigzag varint of at most ``max_bytes`` bytes at ``pos``: (value, next pos)."""
    n = 0
    shift = 0
    for i in range(max_bytes):
        b = data[pos + i]
        n |= (b & 0x7F) << shift
        if b < 0x80:
            value = (n >> 1) ^ -(n & 1)
            if max_bytes == 5 and not INT32_MIN <= value <= INT32_MAX:
                break
            return value, pos + i + 1
        shift += 7
    raise InvalidRecordError(f"a varint at byte {pos} of the records is too long")


def _read_headers(data: bytes, pos: int, record_end: int) -> tuple[list, int]:
    """A record's headers (they run to its end): ([(key, value)], next pos). One- and
    two-byte varints inline, as in ``_read_records``."""
    zigzag = ZIGZAG
    b = data[pos]
    if b < 0x80:
        count = zigzag[b]
        pos += 1
    else:
        count, pos = _varint(data, pos, 5)
    if count < 0 or count > (record_end - pos) // 2:
        raise InvalidRecordError(f"a record's header count {count} does not fit in the record")
    out: list[tuple[str, bytes | None]] = []
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
    elif timestamps and not (min(timestamps) >= INT64_MIN and max(timestamps) <= INT64_MAX):
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
            value_lengths=records.value_lengths,
        )
    except (struct.error, OverflowError) as exc:
        raise InvalidRecordError(
            f"a record cannot be stored by labkit (header keys up to 65,535 bytes, "
            f"up to 65,535 headers per record): {exc}"
        ) from None
