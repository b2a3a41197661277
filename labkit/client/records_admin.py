"""``KafkaAdminClient.delete_records`` (kafka-python 2.x's signature and result shape).

``RecordsAdminMixin`` is mixed into ``KafkaAdminClient`` (labkit/client/admin.py) and
uses only ``self._call(api, header, timeout_ms, idempotent)``. One ``delete_records``
request (docs/wire.md) moves each partition's log start offset; records below it can
no longer be read (a consumer positioned there gets OFFSET_OUT_OF_RANGE and resets by
``auto_offset_reset``). Stateless; thread-safe as its transport.
"""

from __future__ import annotations

from typing import Any

from labkit.client.structs import TopicPartition
from labkit.errors import BrokerResponseError, IllegalArgumentError, for_code
from labkit.protocol.messages import DeletedRecords, DeleteRecordsPartition, rows

HIGH_WATERMARK = -1  # "delete every record", as Kafka's RecordsToDelete.beforeOffset(-1)


def _requests(records_to_delete: Any) -> list[DeleteRecordsPartition]:
    if not isinstance(records_to_delete, dict) or not records_to_delete:
        raise IllegalArgumentError(
            "delete_records needs a non-empty dict {TopicPartition('t', 0): offset}; records "
            "below each offset are deleted (-1: all of them)"
        )
    out = []
    for tp, offset in records_to_delete.items():
        if not isinstance(tp, tuple) or len(tp) != 2:
            raise IllegalArgumentError(
                f"delete_records keys must be TopicPartition('topic', 0), got {tp!r}"
            )
        if type(offset) is not int or offset < HIGH_WATERMARK:
            raise IllegalArgumentError(
                f"the offset for {tp[0]}-{tp[1]} must be an integer >= 0 (the new first "
                f"offset) or -1 (delete everything), got {offset!r}"
            )
        out.append(DeleteRecordsPartition(tp[0], int(tp[1]), offset))
    return sorted(out)


class RecordsAdminMixin:
    """``delete_records`` of ``KafkaAdminClient`` (see the module docstring)."""

    _call: Any  # KafkaAdminClient._call(api, header, timeout_ms, idempotent)

    def delete_records(
        self,
        records_to_delete: dict,
        timeout_ms: float | None = None,
        partition_leader_id: Any = None,
    ) -> dict[TopicPartition, dict[str, int]]:
        """Delete the records below the given offset of each partition (Kafka's
        DeleteRecords): ``{TopicPartition: offset}``, offset ``-1`` = up to the high
        watermark (every record so far).

        Returns ``{TopicPartition: {"partition_index", "low_watermark", "error_code"}}``:
        ``low_watermark`` is the partition's new log start offset (``error_code`` is
        always 0: errors are raised, as in kafka-python). Raises, for one failed
        partition, its error (OffsetOutOfRangeError for an offset past the high
        watermark, UnknownTopicOrPartitionError, PolicyViolationError for a compacted
        topic) and BrokerResponseError naming each partition when several failed;
        IllegalArgumentError for a malformed argument. labkit has one broker, so
        ``partition_leader_id`` is accepted and ignored.
        """
        wanted = _requests(records_to_delete)
        header: dict[str, Any] = {"partitions": wanted}
        if timeout_ms is not None:
            header["timeout_ms"] = int(timeout_ms)
        # deleting below the same offset twice is harmless: a lost reply may be retried
        reply = self._call("delete_records", header, timeout_ms, idempotent=True).header
        results: dict[TopicPartition, dict[str, int]] = {}
        failed: list[DeletedRecords] = []
        for row in rows(DeletedRecords, reply.get("partitions", []), "delete_records"):
            if row.error:
                failed.append(row)
                continue
            results[TopicPartition(row.topic, row.partition)] = {
                "partition_index": row.partition,
                "low_watermark": row.low_watermark,
                "error_code": 0,
            }
        if len(failed) == 1:
            (row,) = failed
            raise for_code(row.error)(
                row.message
                or f"Error deleting records from topic {row.topic} partition {row.partition}"
            )
        if failed:
            raise BrokerResponseError(
                "The following errors occurred when trying to delete records: "
                + ", ".join(
                    f"{r.topic}(partition={r.partition}): {for_code(r.error).__name__}"
                    + (f" ({r.message})" if r.message else "")
                    for r in failed
                )
            )
        return results
