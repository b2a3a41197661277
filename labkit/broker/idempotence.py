"""Idempotent producers on the broker: InitProducerId and the produce-side checks.

Theory of operation
-------------------
``init_producer_id`` answers Kafka's InitProducerId for a producer without a
transactional id: a new producer id (broker/producer_ids.py) with epoch 0. A
transactional id gets UNSUPPORTED_VERSION (35), Kafka's answer for what a broker
does not support: labkit has no transaction coordinator.

A produce may carry, per target, ``[producer_id, producer_epoch, base_sequence]``
(docs/wire.md). ``check`` runs before the batch is appended: it opens the
partition's producer state on first use (labkit/log/producer_journal.py) and asks
it whether the batch is a duplicate (then the handler answers the original base
offset and appends nothing) or out of order (an error for that target).
``record`` runs after the append. Every ``producer.id.expiration.check.interval.ms``
a produce also expires producers idle for ``producer.id.expiration.ms``. All of it
runs on the loop thread, with no fsync: the journal's entry reaches the OS before
the produce is answered, and the flusher makes it durable with the log.
"""

from __future__ import annotations

from typing import NamedTuple

from labkit._clock import Clock
from labkit.broker.config import BrokerConfig
from labkit.broker.producer_ids import ProducerIds
from labkit.broker.replies import Reply
from labkit.broker.topics import TopicRegistry
from labkit.errors import InvalidRequestError, UnsupportedVersionError
from labkit.log.partition import PartitionLog
from labkit.log.producer_journal import PartitionProducers
from labkit.log.producer_state import MAX_SEQUENCE, last_sequence
from labkit.protocol.records import BatchHeader

INT64_MAX = 2**63 - 1
INT16_MAX = 2**15 - 1


class ProducerFields(NamedTuple):
    producer_id: int
    epoch: int
    base_sequence: int


def producer_rows(header: dict, targets: int) -> list[ProducerFields | None] | None:
    """The produce header's optional ``producers`` list, checked. Raises InvalidRequestError."""
    rows = header.get("producers")
    if rows is None:
        return None
    if not isinstance(rows, list) or len(rows) != targets:
        raise InvalidRequestError(
            f"field 'producers' must be a list of {targets} rows (one per target): "
            "[producer_id, producer_epoch, base_sequence] or null"
        )
    out: list[ProducerFields | None] = []
    for row in rows:
        if row is None:
            out.append(None)
            continue
        if (
            not isinstance(row, list)
            or len(row) != 3
            or any(type(v) is not int for v in row)
            or not 0 <= row[0] <= INT64_MAX
            or not 0 <= row[1] <= INT16_MAX
            or not 0 <= row[2] <= MAX_SEQUENCE
        ):
            raise InvalidRequestError(
                f"producers row {row!r} is not [producer_id >= 0, 0 <= producer_epoch <= "
                f"{INT16_MAX}, 0 <= base_sequence <= {MAX_SEQUENCE}] (get an id with "
                "init_producer_id) or null"
            )
        out.append(ProducerFields(*row))
    return out


class Idempotence:
    """Producer ids and the per-partition producer state, for the handlers."""

    def __init__(self, registry: TopicRegistry, config: BrokerConfig, clock: Clock):
        self.registry = registry
        self.clock = clock
        self.ids = ProducerIds(config.data_dir)
        self.expiration_ms = config.producer_id_expiration_ms
        self.check_interval_ms = config.producer_id_expiration_check_interval_ms
        self._next_expiry = clock.time_ms() + self.check_interval_ms

    def init_producer_id(self, header: dict, payloads: list) -> Reply:
        transactional_id = header.get("transactional_id")
        if transactional_id is not None:
            raise UnsupportedVersionError(
                f"transactional_id={transactional_id!r}: labkit has no transactions (no "
                "transaction coordinator); use an idempotent producer without "
                "transactional_id (enable_idempotence=True)"
            )
        return Reply({"error": 0, "producer_id": self.ids.next_id(), "producer_epoch": 0})

    def state_of(self, plog: PartitionLog) -> PartitionProducers:
        """The partition's producer state, loaded on first use; producers that expired
        while the broker was down are forgotten at once (their entries are still in
        the journal until its next snapshot)."""
        producers = plog.producers
        if producers is None:
            producers = plog.producers = PartitionProducers.open(
                plog.directory, plog.recovered_end_offset
            )
            producers.expire(self.clock.time_ms(), self.expiration_ms)
        return producers

    def check(self, plog: PartitionLog, fields: ProducerFields, batch: BatchHeader) -> int | None:
        """The original base offset of a duplicate, or None: append it. Raises
        InvalidProducerEpochError, OutOfOrderSequenceNumberError."""
        last = last_sequence(fields.base_sequence, batch.last_offset_delta)
        return self.state_of(plog).check(
            fields.producer_id, fields.epoch, fields.base_sequence, last
        )

    def record(
        self, plog: PartitionLog, fields: ProducerFields, batch: BatchHeader, base: int
    ) -> None:
        last = last_sequence(fields.base_sequence, batch.last_offset_delta)
        self.state_of(plog).record(
            fields.producer_id, fields.epoch, fields.base_sequence, last, base, self.clock.time_ms()
        )

    def maybe_expire(self) -> int:
        """Expire idle producers once per check interval; returns how many went."""
        now = self.clock.time_ms()
        if now < self._next_expiry:
            return 0
        self._next_expiry = now + self.check_interval_ms
        gone = 0
        for _topic, _partition, plog in self.registry.partitions_snapshot():
            if plog.producers is not None:
                gone += plog.producers.expire(now, self.expiration_ms)
        return gone
