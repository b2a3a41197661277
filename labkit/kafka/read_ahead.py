"""Fetch read-ahead: the next answer of a Kafka consumer that is catching up, made ready
while the client is busy with the last one. Pure: the listener owns the sockets.

Why: kafka-python (like Java's consumer, per partition) sends its next Fetch only after
it has handed out the last answer's records. While it decodes them the listener is
idle; then the client waits for the broker's read *and* the labkit -> Kafka conversion
of its next answer (~9-15 ms per 1 MB, batch_build.py), where Apache Kafka sends file
bytes as they are (benchmarks/NOTES.md sections 19-20).

How: after answering a Fetch that left records waiting (an answered partition's next
offset is below its high watermark), the listener sends the broker ``next_fetch``: the
request the client will send next — the same partitions, each answered one's offset
moved past what it got — with ``max_wait_ms`` 0, and converts its answer in its idle
time. When the client's next Fetch is that request (``key``) within ``MAX_AGE_S``, it
gets that answer, or waits for it if it is still on its way. Anything else — a seek,
another set of partitions, an older read-ahead, an error, a throttle, an answer short
of the client's ``min_bytes`` — drops it, and the request goes to the broker as always.

What a client can see: an answer the broker read up to ``MAX_AGE_S`` before the request
arrived (a high watermark that much older). Every byte is read, and counted against
the client's fetch quota, once, except when a prediction misses (then one answer was
read for nothing). A connection whose read-aheads miss more than they hit, by more than
``MAX_MISSES`` (a consumer that fetches its partitions one at a time, in turns, or
seeks), gets no more of them. Memory: one read-ahead per connection, at most ``BUDGET_BYTES`` held
across the listener (labkit bytes plus their Kafka form).
"""

from __future__ import annotations

from labkit.errors import CorruptRecordError
from labkit.protocol import records as labkit_records

MAX_AGE_S = 0.5  # an unused read-ahead older than this is dropped
BUDGET_BYTES = 64 * 1024 * 1024  # read-aheads held by one listener, at most
MAX_MISSES = 2  # unused read-aheads a connection may have beyond those it used


def key(header: dict) -> tuple:
    """What makes two labkit fetch requests read the same bytes: the partition rows
    (topic, partition, offset, partition_max_bytes, leader epoch) and ``max_bytes``.
    ``max_wait_ms`` and ``min_bytes`` only say how long to wait for them."""
    return header["max_bytes"], tuple(map(tuple, header["partitions"]))


def next_offset(data) -> int | None:
    """The offset after the last whole batch of a partition's fetched bytes (None: no
    whole batch, or bytes that do not frame)."""
    try:
        spans = labkit_records.split_batches(data)
    except CorruptRecordError:
        return None
    if not spans:
        return None
    last = labkit_records.read_header(data, spans[-1][0])
    return last.base_offset + last.last_offset_delta + 1


def next_fetch(header: dict, reply: dict | None, payloads: list) -> dict | None:
    """The labkit fetch the client will send after this answer, or None when nothing is
    waiting (then the client will wait for new records, and a read-ahead gains nothing)
    or the answer was an error or a throttle."""
    if not reply or reply.get("error") or reply.get("throttle_time_ms"):
        return None
    rows = reply.get("partitions") or []
    asked = header["partitions"]
    if len(rows) != len(asked) or len(payloads) != len(asked):
        return None
    waiting = False
    predicted = []
    for row, reply_row, data in zip(asked, rows, payloads, strict=True):
        if reply_row[2]:  # this partition's error
            return None
        moved = next_offset(data) if data else None
        if moved is None:
            predicted.append(list(row))
            continue
        waiting = waiting or moved < reply_row[3]  # below the high watermark
        predicted.append([row[0], row[1], moved, *row[3:]])
    if not waiting:
        return None
    return {**header, "max_wait_ms": 0, "min_bytes": 0, "partitions": predicted}


def usable(reply: dict | None, payloads: list) -> bool:
    """A read-ahead answer worth keeping: no error, no throttle, some records."""
    if not reply or reply.get("error") or reply.get("throttle_time_ms"):
        return False
    if any(row[2] for row in reply.get("partitions") or ()):
        return False
    return any(payloads)
