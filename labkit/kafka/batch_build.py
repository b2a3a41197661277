"""labkit batch -> Kafka record batch v2 (the Fetch direction), column by column.

Each column of varints (timestamp deltas, offset deltas, key and value lengths) is one
lookup of them all in the precomputed table (``batch_layout.VARINT``); each record is
one C-level ``b"".join`` of its fields, so no Python bytecode runs per record unless a
record has headers (each distinct headers blob is converted once). Layout and rules in
``batches.py``, which re-exports ``labkit_to_kafka`` and ``labkit_batches_to_kafka``.
Pure: no I/O, no state.
"""

from __future__ import annotations

import operator
from collections.abc import Iterable, Sequence
from itertools import chain, repeat
from operator import itemgetter

import crc32c

from labkit.kafka.batch_layout import (
    FRONT,
    HEADER_SIZE,
    LENGTH_PREFIX,
    LOG_APPEND_TIME,
    MAGIC_V2,
    TABLE_TOP,
    TAIL,
    VARINT,
    varint_bytes,
)
from labkit.protocol import records as labkit_records
from labkit.protocol.batch_columns import decode_headers, read_columns, slices


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
    tail = TAIL.pack(
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
    front = FRONT.pack(
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
    if (
        len(values) > 1
        and (min(values) if lowest is None else lowest) >= -1
        and max(values) < TABLE_TOP
    ):
        return itemgetter(*values)(VARINT)
    return [varint_bytes(v) for v in values]


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
        offset_varints = VARINT[:count] if count < TABLE_TOP else _varints(list(range(count)))
    else:
        offset_varints = _varints(cols.deltas.tolist(), lowest=0)  # checked increasing from 0
    timestamp_varints = _varints(list(map(operator.sub, cols.timestamps, repeat(base_ts))))
    # each column: a sequence of encoded parts, or an endless repeat of one
    key_lengths: Iterable[bytes]
    keys: Iterable[bytes]
    header_parts: Iterable[bytes]
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
    out = [varint_bytes(len(headers))]
    for key, value in headers:
        raw = key.encode("utf-8")
        out.append(varint_bytes(len(raw)))
        out.append(raw)
        if value is None:
            out.append(b"\x01")
        else:
            out.append(varint_bytes(len(value)))
            out.append(value)
    return b"".join(out)
