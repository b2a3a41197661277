"""The ``delete_records`` API (Kafka's DeleteRecords, KIP-107): move log start offsets.

Theory of operation
-------------------
Request ``{"partitions": [[topic, partition, offset], ...], "timeout_ms": 30000}``;
records below ``offset`` go (``-1``: every record, up to the high watermark). Each
partition is answered alone, in order, as a ``DeletedRecords`` row
``[topic, partition, error, low_watermark, message]`` (labkit/protocol/messages.py):
the new log start offset, or Kafka's error: OFFSET_OUT_OF_RANGE past the high
watermark, UNKNOWN_TOPIC_OR_PARTITION, POLICY_VIOLATION for a topic whose
``cleanup.policy`` does not include ``delete`` (as Kafka). The start moves in memory
at once (``PartitionLog.move_log_start``: parked fetches are re-checked, and one below
the new start gets OFFSET_OUT_OF_RANGE); the reply lists the partitions whose new
start is not durable yet, and waits for the flusher's round that writes their
``log-start-offset.checkpoint`` files (``save_log_start``; broker/flusher.py), so an
acknowledged start survives a crash. A row whose write failed is answered
KAFKA_STORAGE_ERROR; a retry waits for the next round, which writes it again.
Pure: called on the loop thread with the topic registry, no sockets, no disk writes.
"""

from __future__ import annotations

from typing import Any

from labkit.broker.topics import TopicRegistry
from labkit.errors import InvalidRequestError, OffsetOutOfRangeError, PolicyViolationError
from labkit.log.partition import PartitionLog
from labkit.protocol.messages import DeletedRecords, DeleteRecordsPartition

HIGH_WATERMARK = -1
MAX_PARTITIONS = 10_000  # rows one request may name, as a fetch


def _wanted(header: dict[str, Any]) -> list[DeleteRecordsPartition]:
    """The request's rows, checked. Raises InvalidRequestError."""
    value = header.get("partitions")
    if not isinstance(value, list):
        raise InvalidRequestError("field 'partitions' must be a list of [topic, partition, offset]")
    if len(value) > MAX_PARTITIONS:
        raise InvalidRequestError(
            f"delete_records may name at most {MAX_PARTITIONS} partitions, got {len(value)}"
        )
    out, seen = [], set()
    for item in value:
        if (
            not isinstance(item, list)
            or len(item) != 3
            or not isinstance(item[0], str)
            or any(type(x) is not int for x in item[1:])
        ):
            raise InvalidRequestError(
                f"each entry must be [topic, partition, offset], got {item!r:.80}"
            )
        row = DeleteRecordsPartition(*item)
        if (row.topic, row.partition) in seen:  # as Kafka's tool: one offset per partition
            raise InvalidRequestError(
                f"partition {row.topic}-{row.partition} appears more than once; "
                "name each partition once"
            )
        seen.add((row.topic, row.partition))
        out.append(row)
    return out


def delete_records(
    registry: TopicRegistry, header: dict[str, Any], error_of
) -> tuple[dict[str, Any], bool, list]:
    """(reply header, whether any log start moved, [(row index, log)] of the rows whose
    start is not durable yet: the reply waits for them). ``error_of`` maps an exception
    to (code, message), as the other handlers do. Raises InvalidRequestError for a
    malformed request."""
    rows: list[DeletedRecords] = []
    moved = False
    unsaved: list[tuple[int, PartitionLog]] = []
    for want in _wanted(header):
        try:
            plog = registry.partition(want.topic, want.partition)
            if not plog.config.deletes:
                raise PolicyViolationError(
                    f"records of {want.topic}-{want.partition} can not be deleted: the "
                    "topic's cleanup.policy is compact (DeleteRecords needs 'delete' in it)"
                )
            before = plog.log_start_offset
            high = plog.high_watermark
            offset = high if want.offset == HIGH_WATERMARK else want.offset
            if offset > high:  # as Kafka: not past what every in-sync replica has
                raise OffsetOutOfRangeError(
                    f"cannot delete records before offset {offset} of {want.topic}-"
                    f"{want.partition}: its high watermark is {high} (the largest offset "
                    "allowed; -1 means it)"
                )
            low = plog.move_log_start(offset)
            moved |= low != before
            if plog.log_start_unsaved:  # moved now, or by a request not durable yet
                unsaved.append((len(rows), plog))
            rows.append(DeletedRecords(want.topic, want.partition, 0, low, None))
        except Exception as exc:  # noqa: BLE001 - one partition's failure is its row's error
            code, text = error_of(exc)
            rows.append(DeletedRecords(want.topic, want.partition, code, -1, text))
    return {"error": 0, "partitions": rows}, moved, unsaved
