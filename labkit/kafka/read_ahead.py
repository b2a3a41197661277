"""Fetch read-ahead: the next answer of a Kafka consumer that is catching up, made ready
while the client is busy with the last one. The functions are pure; ``ReadAheads`` keeps
the listener's read-aheads and their byte budget. The listener owns the sockets.

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
seeks), gets no more of them. Memory: one read-ahead per connection, at most
``BUDGET_BYTES`` held across the listener (labkit bytes plus their Kafka form).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from labkit.errors import CorruptRecordError
from labkit.kafka.produce_fetch import kafka_records
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


def clean(reply: dict | None) -> bool:
    """An answer with no error (the request's or a partition's) and no throttle."""
    if not reply or reply.get("error") or reply.get("throttle_time_ms"):
        return False
    return not any(row[2] for row in reply.get("partitions") or ())


def next_fetch(header: dict, reply: dict | None, payloads: list) -> dict | None:
    """The labkit fetch the client will send after this answer, or None when nothing is
    waiting (then the client will wait for new records, and a read-ahead gains nothing)
    or the answer was an error or a throttle."""
    if reply is None or not clean(reply):
        return None
    rows = reply.get("partitions") or []
    asked = header["partitions"]
    if len(rows) != len(asked) or len(payloads) != len(asked):
        return None
    waiting = False
    predicted = []
    for row, reply_row, data in zip(asked, rows, payloads, strict=True):
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
    return clean(reply) and any(payloads)


class Ahead:
    """One read-ahead: the labkit fetch sent for a client's predicted next Fetch and,
    once the broker answered, its answer in Kafka's form."""

    __slots__ = ("rid", "key", "header", "sent_at", "reply", "converted", "payloads", "size")

    def __init__(self, rid: bytes, header: dict, sent_at: float):
        self.rid = rid
        self.key = key(header)
        self.header = header
        self.sent_at = sent_at
        self.reply: dict | None = None  # None: still on its way
        self.converted: list = []
        self.payloads: list = []  # the labkit bytes (the read-ahead after this one needs them)
        self.size = 0  # bytes held (labkit and Kafka form), counted in the budget


class Slot:
    """One connection's read-ahead (None: none) and how its read-aheads fared."""

    __slots__ = ("ahead", "hits", "misses")

    def __init__(self) -> None:
        self.ahead: Ahead | None = None
        self.hits = 0  # read-aheads that answered a Fetch
        self.misses = 0  # and that were dropped unused (MAX_MISSES)


class ReadAheads:
    """Every connection's read-ahead, the bytes they hold together (``BUDGET_BYTES``) and
    the listener's counters ``read_aheads`` (sent) and ``read_aheads_used``."""

    def __init__(self, stats: dict) -> None:
        self.stats = stats
        stats["read_aheads"] = 0
        stats["read_aheads_used"] = 0
        self.held_bytes = 0

    def claim(self, slot: Slot, header: dict) -> Ahead | None:
        """The read-ahead that answers this labkit fetch, taken out of ``slot``: either
        answered (``reply`` set) or still on its way (its answer is this request's).
        None: there is none, or it is dropped (stale, another request, or short of the
        request's ``min_bytes``: the broker would park that request, so let it)."""
        ahead = slot.ahead
        if ahead is None:
            return None
        self.drop(slot)
        if time.monotonic() - ahead.sent_at > MAX_AGE_S or ahead.key != key(header):
            slot.misses += 1
            return None
        if ahead.reply is not None and sum(map(len, ahead.payloads)) < header["min_bytes"]:
            return None
        slot.hits += 1
        self.stats["read_aheads_used"] += 1
        return ahead

    def start(self, slot: Slot, header: dict | None, send: Callable[[dict], bytes]) -> None:
        """Read ahead ``header`` (the predicted next fetch; None: nothing to read ahead)
        unless the slot is busy, the budget spent or the connection keeps missing.
        ``send`` sends a labkit fetch to the broker and returns its request id."""
        if (
            header is None
            or slot.ahead is not None
            or self.held_bytes >= BUDGET_BYTES
            or slot.misses > slot.hits + MAX_MISSES
        ):
            return
        slot.ahead = Ahead(send(header), header, time.monotonic())
        self.stats["read_aheads"] += 1

    def arrived(self, slot: Slot, reply: dict, payloads: list) -> None:
        """The broker answered the slot's read-ahead: convert it now, while the client is
        busy (or drop it: nothing usable, or past the budget)."""
        ahead = slot.ahead
        assert ahead is not None
        size = sum(map(len, payloads))
        if not usable(reply, payloads) or self.held_bytes + 2 * size > BUDGET_BYTES:
            slot.ahead = None
            return
        ahead.reply, ahead.payloads = reply, payloads
        ahead.converted = kafka_records(payloads)
        ahead.size = size + sum(len(r) for r in ahead.converted if not isinstance(r, int))
        self.held_bytes += ahead.size

    def drop(self, slot: Slot) -> None:
        """Forget the slot's read-ahead (the broker's answer to one still on its way is
        then ignored: its request id waits for nothing)."""
        if slot.ahead is not None:
            self.held_bytes -= slot.ahead.size
            slot.ahead = None
