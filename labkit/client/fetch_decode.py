"""Decoding a fetched partition's payload into ConsumerRecords (consumer thread).

Theory of operation
-------------------
A fetch answer holds, per partition, whole record batches straight from the
broker's log. ``decode_records`` splits them into batches, checks each batch's CRC
(``check_crcs``), decodes it into columns and builds ``ConsumerRecord`` tuples with
one ``map`` over the zipped columns (no per-record method calls beyond the
deserializers). Records before the fetch offset (a batch may start earlier) are
skipped.

Decoding stops at the first record a key/value deserializer raises on (a poison
message) or at a corrupt batch (a bad CRC with ``check_crcs``, or columns that do
not add up: the broker refuses them on produce, but one may be on disk from an older
broker or a flipped bit). The records before it are returned with the poison:
(its offset, the error, 'key'/'value'/'batch'); fetch_buffers.py holds it until
poll() has handed out those records. A corrupt batch's error is Kafka's
CorruptRecordException's: it names topic, partition and offset and the offset to seek
to (``next_offset``: the next batch's base offset when the fetch held it).

``end_offset`` reads only the batch headers: where the next fetch starts, for the
I/O thread's prefetch (fetcher.py). Pure functions, no state.
"""

from __future__ import annotations

import functools
from bisect import bisect_left
from collections.abc import Iterable
from itertools import repeat
from typing import Any

from labkit.client.structs import ConsumerRecord, TopicPartition
from labkit.errors import CorruptRecordError
from labkit.protocol.records import (
    LOG_APPEND_TIME,
    decode_batch,
    decode_single,
    read_header,
    validate_batch,
    walk_batches,
)

_make_record = functools.partial(tuple.__new__, ConsumerRecord)


def decode_records(
    tp: TopicPartition,
    buf: Any,
    fetch_offset: int,
    check_crcs: bool,
    key_deserializer: Any,
    value_deserializer: Any,
) -> tuple[list, int, tuple[int, BaseException, str] | None]:
    """(records, next fetch offset, poison): decoding stops at a record a
    deserializer raised on, or at a corrupt batch; poison is then (its offset, the
    error, 'key'/'value'/'batch') and the next fetch offset is its offset."""
    out: list = []
    next_offset = fetch_offset
    topic, partition = tp
    spans, framing_error = walk_batches(buf)
    for index, (start, _end) in enumerate(spans):
        try:
            header = (
                validate_batch(buf, start, produced=False)
                if check_crcs
                else read_header(buf, start)
            )
            if header.next_offset <= fetch_offset:
                continue
            one = decode_single(buf, start, header)
            if one is not None:  # a batch of one record: no columns, no lists
                offset = header.base_offset
                timestamp, key, value, key_size, value_size = one
                try:
                    if key_deserializer is not None and key is not None:
                        key = _deserializer(key_deserializer, topic)(key)
                except Exception as exc:  # noqa: BLE001 - a poison message (_deserialize)
                    return out, offset, (offset, exc, "key")
                try:
                    if value_deserializer is not None and value is not None:
                        value = _deserializer(value_deserializer, topic)(value)
                except Exception as exc:  # noqa: BLE001 - a poison message (_deserialize)
                    return out, offset, (offset, exc, "value")
                out.append(
                    _make_record(
                        (
                            topic,
                            partition,
                            -1,
                            offset,
                            timestamp,
                            1 if header.attributes & LOG_APPEND_TIME else 0,
                            key,
                            value,
                            [],
                            None,
                            key_size,
                            value_size,
                            -1,
                        )
                    )
                )
                next_offset = header.next_offset
                continue
            batch = decode_batch(buf, start, header)
        except CorruptRecordError as exc:
            base = read_header(buf, start).base_offset
            after = spans[index + 1][0] if index + 1 < len(spans) else None
            skip_to = read_header(buf, after).base_offset if after is not None else None
            return out, *corrupt_batch(tp, max(base, next_offset), skip_to, exc)
        next_offset = header.next_offset
        offsets = batch.offsets
        n = len(offsets)
        if not n:
            continue
        skip = bisect_left(offsets, fetch_offset) if offsets[0] < fetch_offset else 0
        keys, values, headers = batch.keys, batch.values, batch.headers
        key_sizes, value_sizes, timestamps = (
            batch.key_sizes,
            batch.value_sizes,
            batch.timestamps,
        )
        if skip:
            offsets, timestamps = offsets[skip:], timestamps[skip:]
            keys, values, headers = keys[skip:], values[skip:], headers[skip:]
            key_sizes, value_sizes = key_sizes[skip:], value_sizes[skip:]
        poison = None
        if key_deserializer is not None:
            keys, error = _deserialize(key_deserializer, topic, keys)
            if error is not None:
                poison = (len(keys), error, "key")
                values = values[: len(keys)]
        if value_deserializer is not None:
            values, error = _deserialize(value_deserializer, topic, values)
            if error is not None:
                poison = (len(values), error, "value")
        if poison is not None:
            good = poison[0]
            offsets, timestamps, headers = offsets[:good], timestamps[:good], headers[:good]
            keys, values = keys[:good], values[:good]
            key_sizes, value_sizes = key_sizes[:good], value_sizes[:good]
        header_sizes: Iterable[int]
        if header.attributes & 0x02:  # HAS_HEADERS
            header_sizes = [
                sum(len(k.encode("utf-8")) + (len(v) if v is not None else 0) for k, v in h)
                if h
                else -1
                for h in headers
            ]
        else:
            header_sizes = repeat(-1)
        out.extend(
            map(
                _make_record,
                zip(
                    repeat(topic),
                    repeat(partition),
                    repeat(-1),
                    offsets,
                    timestamps,
                    repeat(1 if batch.log_append_time else 0),
                    keys,
                    values,
                    headers,
                    repeat(None),
                    key_sizes,
                    value_sizes,
                    header_sizes,
                ),
            )
        )
        if poison is not None:
            bad_offset = batch.offsets[skip + poison[0]]
            return out, bad_offset, (bad_offset, poison[1], poison[2])
    if framing_error is not None and next_offset == fetch_offset:
        # nothing readable before the damaged length field: report it now
        return out, *corrupt_batch(tp, fetch_offset, None, framing_error)
    return out, next_offset, None


def corrupt_batch(
    tp: TopicPartition, offset: int, skip_to: int | None, exc: CorruptRecordError
) -> tuple[int, tuple[int, BaseException, str]]:
    """(next fetch offset, poison) for a corrupt batch at ``offset``, as Kafka's
    CorruptRecordException: the error names where it is and how to get past it."""
    reason = exc.args[0] if exc.args else type(exc).__name__
    where = f"TopicPartition('{tp.topic}', {tp.partition})"
    if skip_to is not None and skip_to > offset:
        how = (
            f"skip the whole batch with consumer.seek({where}, {skip_to}) (the next "
            "batch starts there)"
        )
    else:
        skip_to = offset + 1
        how = (
            f"skip it with consumer.seek({where}, {skip_to}) and seek further if the "
            "next offsets are in the same damaged batch"
        )
    error = CorruptRecordError(
        f"the record batch at offset {offset} of topic '{tp.topic}' partition "
        f"{tp.partition} is corrupt ({reason}); poll() returned the records before it "
        f"and stays at offset {offset}. The data on the broker is damaged: {how}."
    )
    error.topic_partition, error.offset, error.next_offset = tp, offset, skip_to
    return offset, (offset, error, "batch")


def unreadable_log(tp: TopicPartition, offset: int) -> CorruptRecordError:
    """The error for a fetch the broker answered CORRUPT_MESSAGE: it cannot even walk
    its log at ``offset``, so there are no batches to decode."""
    error = CorruptRecordError(
        f"the broker cannot read topic '{tp.topic}' partition {tp.partition} at offset "
        f"{offset}: its log is damaged there (the broker's log says more). Skip it "
        f"with consumer.seek(TopicPartition('{tp.topic}', {tp.partition}), "
        f"{offset + 1}) and further if needed."
    )
    error.topic_partition, error.offset, error.next_offset = tp, offset, offset + 1
    return error


def _deserializer(fn: Any, topic: str) -> Any:
    """A one-argument callable for a deserializer: a function, or an object with
    ``deserialize(topic, data)`` (kafka-python's Deserializer classes)."""
    return fn if callable(fn) else functools.partial(fn.deserialize, topic)


def _deserialize(fn: Any, topic: str, items: list) -> tuple[list, Exception | None]:
    """(deserialized items, None), or the items before the one that raised and its error."""
    out: list = []
    try:  # extend() keeps what it appended before an exception
        if not callable(fn):
            method = fn.deserialize
            out.extend(None if x is None else method(topic, x) for x in items)
        elif None in items:
            out.extend(None if x is None else fn(x) for x in items)
        else:
            out.extend(map(fn, items))
    except Exception as exc:  # noqa: BLE001 - the user's deserializer: any error is a poison message
        return out, exc
    return out, None


def end_offset(payload: Any, offset: int) -> int | None:
    """Where the fetch after this answer starts: the end of its last whole batch
    (as ``decode_records`` finds it), or None when its framing is damaged."""
    spans, framing_error = walk_batches(payload)
    if framing_error is not None:
        return None
    if not spans:
        return offset
    try:
        return max(offset, read_header(payload, spans[-1][0]).next_offset)
    except CorruptRecordError:
        return None
