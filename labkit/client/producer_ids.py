"""The idempotent producer's id and sequence numbers (KIP-98; the sender's I/O thread).

Theory of operation
-------------------
Before its first produce the sender asks the broker for a producer id
(``init_producer_id``; a retriable error, or a lost connection, is asked again after
``retry_backoff_ms``; a broker that cannot give ids leaves ``error`` set, and the
sender fails its batches with it). Each batch gets the next sequence of its
partition the first time it is sent under an id (``sequenced``) and keeps it on
every retry, so the broker recognises a retried batch it already appended. A batch
given up leaves a hole in its partition's sequence: ``reset`` drops the id, the
sender asks for a new one, and every partition is numbered from 0 again (Kafka's
clients before KIP-360 did the same). Sequences are int32 >= 0 and wrap to 0
(``next_sequence``, ``earlier``).

``acked``: the partitions a batch of the current id was answered for; until then the
sender keeps anything from overtaking a partition's first batch (the broker accepts
any sequence from an id it does not know yet). Everything here runs on the I/O
thread: no lock.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from labkit.client.accumulator import ProducerBatch
from labkit.client.structs import TopicPartition
from labkit.errors import BrokerResponseError, KafkaError, from_wire

log = logging.getLogger(__name__)

SEQUENCES = 2**31  # a producer's sequence numbers are int32 >= 0, wrapping to 0


class ProducerIds:
    def __init__(self, transport: Any, backoff: float, clock: Callable[[], float]):
        self._transport = transport
        self._backoff = backoff  # seconds
        self._clock = clock
        self.producer_id: int | None = None
        self._producer_epoch = 0
        self._id_in_flight = False
        self._id_retry_at = 0.0
        self.error: BaseException | None = None  # a broker that cannot give ids
        self._next_sequence: dict[TopicPartition, int] = {}
        self.acked: set[TopicPartition] = set()  # a batch of the id answered

    def sequenced(self, batch: ProducerBatch) -> list[int]:
        """[producer id, epoch, base sequence] of a batch; numbered at its first send
        (or again after the producer id changed)."""
        pid = self.producer_id
        assert pid is not None  # the sender sends nothing before the id is known
        if batch.producer_id != pid:
            batch.producer_id = pid
            batch.sequence = self._next_sequence.get(batch.tp, 0)
            self._next_sequence[batch.tp] = next_sequence(batch.sequence, batch.count)
        return [pid, self._producer_epoch, batch.sequence]

    def reset(self) -> None:
        log.info("taking a new producer id (producer %s gave a batch up)", self.producer_id)
        self.producer_id = None
        self._next_sequence.clear()
        self.acked.clear()

    def request(self, now: float) -> None:
        """Ask for a producer id, unless a request is in flight or backing off."""
        if not self._id_in_flight and now >= self._id_retry_at:
            self._id_in_flight = True
            future = self._transport.request(
                "init_producer_id", {"transactional_id": None}, idempotent=True
            )
            future.add_callback(self._on_producer_id)
            future.add_errback(self._on_producer_id_failure)

    def _on_producer_id(self, response: Any) -> None:
        self._id_in_flight = False
        header = response.header
        code = header.get("error", 0)
        if code == 0:
            self.producer_id = header["producer_id"]
            self._producer_epoch = header.get("producer_epoch", 0)
            return
        self._on_producer_id_failure(from_wire(code, header.get("message")))

    def _on_producer_id_failure(self, error: BaseException) -> None:
        self._id_in_flight = False
        if getattr(error, "retriable", False) or not isinstance(error, BrokerResponseError):
            self._id_retry_at = self._clock() + self._backoff  # ask again
            return
        log.error("the broker gives no producer id (%s): idempotent sends fail", error)
        self.error = KafkaError(
            f"enable_idempotence=True needs producer ids, and the broker gave none: {error}. "
            "Upgrade the broker, or use enable_idempotence=False"
        )
        self.error.__cause__ = error


def earlier(batch: ProducerBatch, others: Iterable[ProducerBatch]) -> bool:
    """Whether one of ``others`` is an earlier batch of ``batch``'s partition and id."""
    for other in others:
        if (
            other is not batch
            and other.tp == batch.tp
            and other.producer_id == batch.producer_id
            and 0 < (batch.sequence - other.sequence) % SEQUENCES < SEQUENCES // 2
        ):
            return True
    return False


def next_sequence(sequence: int, count: int) -> int:
    """The sequence after ``count`` records from ``sequence`` (wraps after 2**31-1)."""
    return (sequence + count) % SEQUENCES
