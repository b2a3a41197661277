"""Kafka's Produce (v3-9) and Fetch (v4-12) as labkit's produce and fetch. No sockets.

Theory of operation
-------------------
Both APIs carry record bytes, so they are ``Api(..., payloads=True)`` rows of
``BRIDGED`` (bridges.py): ``to_labkit(request, version, context)`` returns a ``Bridged`` (the
labkit request with its payload frames, plus a ``state`` handed back later) and
``to_kafka(reply, payloads, state, request, version, context)`` builds the Kafka
response from the broker's reply header and payload frames (docs/wire.md).

**Produce.** Every partition's ``records`` go through ``batches.produced_batches``
(CRC-32C, decompression, Kafka's checks) *before* anything is sent: a partition whose
bytes fail gets its error (CORRUPT_MESSAGE, INVALID_RECORD, MESSAGE_TOO_LARGE,
UNSUPPORTED_COMPRESSION_TYPE...) in the response and nothing of it is appended; the
other partitions go on. Each Kafka batch becomes one labkit batch and one target of
the labkit produce request, so the broker's validation, storage, quotas and
``acks=all`` group commit apply as to labkit's own producer. A partition answers with
its first batch's base offset (producers send one batch per partition), or the first
error among its batches. Decompressed, a request's batches may take at most
``Context.max_records_bytes`` (socket.request.max.bytes): a compressed bomb is cut
there with MESSAGE_TOO_LARGE. ``acks=0``: Kafka sends no response; the listener sends
the labkit request with acks=1 and does not wait for it (the answer only tells it
whether to close the connection, as Kafka does after a failed ``acks=0`` produce).

Idempotence hook: ``produce_request`` is the one place that turns converted batches
into the labkit request; each ``ProducedBatch`` keeps its Kafka batch header
(``producer_id``, ``producer_epoch``, ``base_sequence``, ``record_count``), so passing
them to the broker is a change there and in the broker's produce handler.

**Fetch.** One labkit fetch (``max_wait_ms``, ``min_bytes``, ``max_bytes``, one row per
partition with its ``partition_max_bytes``), parked by the broker exactly as labkit's
own consumer's. Each partition's labkit batches come back as uncompressed Kafka v2
batches (``labkit_batches_to_kafka``, no per-record Python objects). There are no
transactions, so ``last_stable_offset`` is the high watermark, ``aborted_transactions``
is null (empty for read_committed, as Kafka answers) and read_committed reads what
read_uncommitted reads. Fetch sessions (v7+, KIP-227): every answer has session id 0,
"no session", so clients keep sending full fetches; a request naming a session
(incremental fetch) gets FETCH_SESSION_ID_NOT_FOUND and the client starts over.

Speed: the records stay byte strings, one per partition, end to end (kio's native
reader hands a Produce's records over as bytes; kio's Python writer writes a Fetch
response's records as one length and one byte string). Measured under a
confluent-kafka consumer, kio's writing is ~1 % of the listener thread's time and the
labkit -> Kafka conversion ~20 % (benchmarks/NOTES.md section 11), so the records
field is not spliced into the response by hand. On Produce the Kafka -> labkit
conversion is still most of the listener thread's time (~85 % under confluent-kafka),
at ~0.5-0.7 us per record since its fast path for runs of one shape (batch_runs.py).
"""

from __future__ import annotations

import datetime
from typing import Any, NamedTuple

from kio.index import load_response_schema
from kio.schema.errors import ErrorCode

from labkit.errors import (
    CorruptRecordError,
    InvalidRecordError,
    KafkaError,
    MessageSizeTooLargeError,
    UnknownError,
)
from labkit.kafka.apis import Api, Bridged, Context, _error, _make, _nested
from labkit.kafka.batches import KafkaBatchHeader, labkit_batches_to_kafka, produced_batches

PRODUCE_KEY = 0
FETCH_KEY = 1
NO_SESSION = 0  # KIP-227's INVALID_SESSION_ID: "this fetch has no session"
NO_REPLICA = -1  # preferred_read_replica: read from the leader
READ_COMMITTED = 1
_NO_THROTTLE = datetime.timedelta(0)


def _ms(value: Any) -> int:
    """kio's i32Timedelta fields as whole milliseconds."""
    if isinstance(value, datetime.timedelta):
        return int(value / datetime.timedelta(milliseconds=1))
    return int(value)


def _throttle(reply: dict | None) -> datetime.timedelta:
    ms = (reply or {}).get("throttle_time_ms") or 0
    return datetime.timedelta(milliseconds=ms) if ms else _NO_THROTTLE


# -- Produce --------------------------------------------------------------------------


class ProducedBatch(NamedTuple):
    """One Kafka batch of a Produce request, converted (the idempotence hook)."""

    topic: str
    partition: int
    labkit_batch: bytes
    kafka_header: KafkaBatchHeader  # producer_id, producer_epoch, base_sequence, record_count


class _Slot(NamedTuple):
    """One partition of the request: its targets in the labkit request, or its error."""

    first: int  # index of its first batch among the labkit targets (-1: refused here)
    batches: int
    error: int
    message: str | None


def produce_request(acks: int, timeout_ms: int, batches: list[ProducedBatch]) -> tuple[dict, list]:
    """The labkit produce request (header, payload frames) for converted batches.

    The place to pass what idempotence needs from each ``batch.kafka_header``."""
    header: dict[str, Any] = {
        "acks": acks,
        "timeout_ms": timeout_ms,
        "targets": [[batch.topic, batch.partition] for batch in batches],
    }
    producers = [_producer_row(batch.kafka_header) for batch in batches]
    if any(producers):  # idempotent producers' batches (broker/idempotence.py checks them)
        header["producers"] = producers
    return header, [batch.labkit_batch for batch in batches]


def _producer_row(kafka_header: KafkaBatchHeader) -> list[int] | None:
    """[producer_id, producer_epoch, base_sequence] of an idempotent producer's batch
    (Kafka's producer id -1: none)."""
    if kafka_header.producer_id < 0:
        return None
    return [kafka_header.producer_id, kafka_header.producer_epoch, kafka_header.base_sequence]


def produce_to_labkit(request: Any, version: int, context: Context) -> Bridged:
    budget = context.max_records_bytes
    batches: list[ProducedBatch] = []
    slots: list[_Slot] = []
    for topic in request.topic_data:
        for partition in topic.partition_data:
            try:
                if partition.records is None:
                    raise InvalidRecordError("a produce request sent no records for a partition")
                converted = produced_batches(partition.records, max_decompressed=max(budget, 0))
            except MessageSizeTooLargeError:
                slots.append(_too_large_slot(budget))
                continue
            except KafkaError as exc:  # the converter's refusals (batches.py): this partition's
                text = str(exc.args[0]) if exc.args else type(exc).__name__
                code = getattr(exc, "errno", None) or UnknownError.errno
                slots.append(_Slot(-1, 0, code, text))
                continue
            size = sum(len(c.labkit_batch) for c in converted)
            if size > budget:
                slots.append(_too_large_slot(budget))
                continue
            budget -= size
            slots.append(_Slot(len(batches), len(converted), 0, None))
            batches.extend(
                ProducedBatch(topic.name, partition.index, c.labkit_batch, c.kafka_header)
                for c in converted
            )
    acks = request.acks
    silent = acks == 0
    refused = next((slot.message for slot in slots if slot.error), None) if silent else None
    close = None if refused is None else f"a produce with acks=0 failed ({refused})"
    if not batches:
        return Bridged(None, {}, [], slots, reply_expected=not silent, close=close)
    # acks=0 goes as acks=1: its answer tells the listener whether to close (see above)
    header, payloads = produce_request(1 if silent else acks, _ms(request.timeout), batches)
    return Bridged("produce", header, payloads, slots, reply_expected=not silent, close=close)


def _too_large_slot(left: int) -> _Slot:
    return _Slot(
        -1,
        0,
        MessageSizeTooLargeError.errno,
        f"the records of this partition expand past the {max(left, 0)} bytes left of this "
        "produce request's budget (the broker's socket.request.max.bytes, decompressed): "
        "send smaller batches (batch_size, max_request_size)",
    )


def produce_failed(reply: dict | None) -> str | None:
    """Why an ``acks=0`` produce failed (the listener then closes, as Kafka does), or None."""
    if reply is None:
        return None
    if reply.get("error"):
        return reply.get("message") or f"error {reply['error']}"
    for row in reply.get("results") or ():
        if row[1]:
            return row[3] or f"error {row[1]}"
    return None


def produce_to_kafka(
    reply: dict | None, payloads: list, state: list[_Slot], request: Any, version: int, context
) -> Any:
    if request.acks == 0:  # the client reads no response: only whether to close
        why = produce_failed(reply)
        return None if why is None else f"a produce with acks=0 failed ({why})"
    cls = load_response_schema(PRODUCE_KEY, version)
    topic_cls = _nested(cls, "TopicProduceResponse")
    partition_cls = _nested(cls, "PartitionProduceResponse")
    whole_error = (reply or {}).get("error", 0)
    results = (reply or {}).get("results") or []
    slots = iter(state)
    topics = []
    for topic in request.topic_data:
        partitions = []
        for partition in topic.partition_data:
            slot = next(slots)
            error, message, base, log_start = slot.error, slot.message, -1, -1
            if slot.first >= 0:
                if whole_error:
                    error, message = whole_error, reply.get("message") if reply else None
                else:
                    rows = results[slot.first : slot.first + slot.batches]
                    failed = [row for row in rows if row[1]]
                    if len(rows) != slot.batches:  # cannot happen: one result per target
                        error, message = ErrorCode.unknown_server_error.value, "no answer for it"
                    elif failed:
                        error, message = failed[0][1], failed[0][3]
                    else:
                        base, log_start = rows[0][0], rows[0][2]
            partitions.append(
                _make(
                    partition_cls,
                    index=partition.index,
                    error_code=_error(error),
                    base_offset=base,
                    log_append_time=None,  # -1: labkit topics use CreateTime
                    log_start_offset=log_start,
                    record_errors=(),
                    error_message=message if error else None,
                )
            )
        topics.append(_make(topic_cls, name=topic.name, partition_responses=tuple(partitions)))
    return _make(cls, responses=tuple(topics), throttle_time=_throttle(reply))


# -- Fetch ----------------------------------------------------------------------------


def fetch_to_labkit(request: Any, version: int, context: Context) -> Bridged:
    if getattr(request, "session_id", NO_SESSION) != NO_SESSION:
        # an incremental fetch of a session this broker never created (it creates none)
        return Bridged(None, {}, [], ErrorCode.fetch_session_id_not_found)
    rows = [
        [
            topic.topic,
            partition.partition,
            partition.fetch_offset,
            partition.partition_max_bytes,
            getattr(partition, "current_leader_epoch", -1),  # v9+ (KIP-320); -1: no check
        ]
        for topic in request.topics
        for partition in topic.partitions
    ]
    header = {
        "max_wait_ms": max(_ms(request.max_wait), 0),
        "min_bytes": request.min_bytes,
        "max_bytes": max(request.max_bytes, 0),
        "partitions": rows,
    }
    return Bridged("fetch", header, [], ErrorCode.none)


def kafka_records(payloads: list) -> list:
    """Each partition's labkit bytes as uncompressed Kafka v2 batches, or CORRUPT_MESSAGE's
    code (an int) for bytes that do not convert. The listener also calls it ahead of
    time (read_ahead.py)."""
    out: list = []
    for data in payloads:
        try:
            out.append(labkit_batches_to_kafka(data) if data else b"")
        except CorruptRecordError:
            out.append(CorruptRecordError.errno)
    return out


def fetch_to_kafka(
    reply: dict | None, payloads: list, state: ErrorCode, request: Any, version: int, context
) -> Any:
    return fetch_response(reply, kafka_records(payloads), state, request, version)


def fetch_response(
    reply: dict | None, converted: list, state: ErrorCode, request: Any, version: int
) -> Any:
    """The Fetch response for the broker's ``reply`` and the partitions' records already
    in Kafka's form (``kafka_records``)."""
    cls = load_response_schema(FETCH_KEY, version)
    topic_cls = _nested(cls, "FetchableTopicResponse")
    partition_cls = _nested(cls, "PartitionData")
    if state != ErrorCode.none:  # the whole request refused (v7+ has a top-level error)
        return _make(
            cls, throttle_time=_NO_THROTTLE, error_code=state, session_id=NO_SESSION, responses=()
        )
    reply = reply or {}
    whole_error = reply.get("error", 0)
    rows = iter(reply.get("partitions") or ())
    records_of = iter(converted)
    aborted = () if request.isolation_level == READ_COMMITTED else None
    topics = []
    for topic in request.topics:
        partitions = []
        for partition in topic.partitions:
            error, high, start, records = whole_error, -1, -1, b""
            if not whole_error:
                row, records = next(rows, None), next(records_of, b"")
                if row is None:  # cannot happen: one row per partition asked
                    error, records = ErrorCode.unknown_server_error.value, b""
                else:
                    error, high, start = row[2], row[3], row[4]
                    if isinstance(records, int):  # the labkit bytes did not convert
                        error, records = records, b""
            partitions.append(
                _make(
                    partition_cls,
                    partition_index=partition.partition,
                    error_code=_error(error),
                    high_watermark=high,
                    last_stable_offset=high,  # no transactions: everything is stable
                    log_start_offset=start,
                    aborted_transactions=aborted,
                    preferred_read_replica=NO_REPLICA,
                    records=records,
                )
            )
        topics.append(_make(topic_cls, topic=topic.topic, partitions=tuple(partitions)))
    return _make(
        cls,
        throttle_time=_throttle(reply),
        error_code=ErrorCode.none,
        session_id=NO_SESSION,
        responses=tuple(topics),
    )


# api key -> its pair (bridges.py merges this table with the others)
BRIDGED: dict[int, Api] = {
    PRODUCE_KEY: Api(produce_to_labkit, produce_to_kafka, payloads=True),
    FETCH_KEY: Api(fetch_to_labkit, fetch_to_kafka, payloads=True),
}
