"""The producer's sender: turns sealed batches into ``produce`` requests (I/O thread).

Theory of operation
-------------------
``Sender`` is a transport driver: the transport's I/O thread calls it on every
loop turn. Each call drains the accumulator into requests of at most
``max_request_size`` bytes (several batches, possibly several for one partition,
listed in order under ``targets``) while fewer than
``max_in_flight_requests_per_connection`` requests are unanswered. The answer
completes each batch: offset on success; on a retriable error the batch is queued
again after ``retry_backoff_ms`` while it has retries left (``retries``); otherwise
its futures fail with Kafka's error class. With ``acks=0`` the broker does not
answer: batches complete (offset -1) once the request is handed to the socket.

A batch of several records the broker refuses as too large (MESSAGE_TOO_LARGE:
over the topic's ``max.message.bytes``) is split in two and the halves go to the
front of the retry queue (as the Java client does), again and again, so only a
record too large on its own fails, with MessageSizeTooLargeError naming the limits
to raise. The parts of one batch are sent one request at a time, so its records
keep their order.

Order under retries. Records of one partition are appended in ``send()`` order:
batches leave the accumulator in order and requests are answered in order. A retry
could break that -- a later batch of the partition, sent while the failed one waits
for ``retry_backoff_ms``, would land first. So with ``retries`` > 0 a partition is
*muted* while one of its batches is in flight or waiting to be sent again (what the
Java client does for ``max.in.flight.requests.per.connection=1``, per partition):
at most one batch per partition is in flight, other partitions keep going.
With ``retries=0`` (the default) nothing is retried and batches are pipelined.

Idempotence (``enable_idempotence=True``, KIP-98): nothing is sent before the
producer id comes, and a batch keeps the sequence of its first send on every retry
(producer_ids.py). Batches are pipelined (``max_in_flight_requests_per_connection``
<= 5, the broker's window): each request takes at most one batch per partition, and
a partition is muted only while one of its batches waits for a retry, and while its
first batch under a producer id is unanswered (the broker accepts any sequence from
an id it does not know, so nothing may overtake that one). A batch sent behind one
that failed gets OUT_OF_ORDER_SEQUENCE_NUMBER (45); while an earlier batch of its
partition is being retried that only means "after it": the batch is queued again
behind it (answers come in order, so the retry queue keeps each partition's sequence
order). A batch given up (not retriable, retries or ``delivery_timeout_ms`` spent,
or 45 with no earlier batch pending) leaves a hole in its partition's sequence: the
sender takes a new producer id and renumbers the batches waiting for a retry.

It also refreshes topic metadata every ``metadata_max_age_ms`` (and at once after
an error that says metadata is stale; producer_metadata.py), so partitions added
while the producer runs are used. In cluster mode a drained set of batches becomes
one request per partition leader (client/routing.py), all in flight at once;
NOT_LEADER_OR_FOLLOWER, LEADER_NOT_AVAILABLE or a lost connection to a leader are
retriable and stale metadata: the batch is retried (with its sequence) after
``retry_backoff_ms``, on the leader the refreshed metadata names. A request a leader
leaves unanswered times out and counts the same (the transport marks it). With
idempotence, a batch the new leader answers OUT_OF_ORDER_SEQUENCE_NUMBER while an
earlier batch of its partition is still unanswered at the old leader
(``_unanswered``) is retried behind it.

No batch is ever dropped: if draining, sending or handling an answer raises
unexpectedly (a bug), every batch taken for that request completes with a
KafkaError whose ``__cause__`` is the original exception, so its futures fail and
``flush()`` returns instead of waiting forever.

Everything here runs on the I/O thread, so the sender's own state needs no lock.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from typing import Any

from labkit.client.accumulator import PartitionBuffer, ProducerBatch, RecordAccumulator
from labkit.client.metadata import ClusterMetadata
from labkit.client.producer_checks import record_too_large
from labkit.client.producer_ids import ProducerIds, earlier, next_sequence
from labkit.client.producer_metadata import MetadataRefresh
from labkit.client.routing import ANY_BROKER
from labkit.client.structs import TopicPartition
from labkit.errors import (
    KafkaError,
    MessageSizeTooLargeError,
    OutOfOrderSequenceNumberError,
    from_wire,
)

log = logging.getLogger(__name__)


class Sender:
    def __init__(
        self,
        transport: Any,
        accumulator: RecordAccumulator,
        cluster: ClusterMetadata,
        *,
        acks: int,
        retries: float,
        retry_backoff_ms: float,
        request_timeout_ms: float,
        max_in_flight: int,
        metadata_max_age_ms: float,
        idempotence: bool = False,
        delivery_timeout_ms: float = 120_000,
        on_metadata: Callable[[dict], None],
        on_seal: Callable[[PartitionBuffer], None],
    ):
        self._transport = transport
        self._routes = getattr(transport, "routes", None)  # cluster mode: leaders
        self._acc = accumulator
        self._cluster = cluster
        self._acks = acks
        self._retries = retries
        self._backoff = retry_backoff_ms / 1000.0
        self._timeout_ms = request_timeout_ms
        self._max_in_flight = max(1, int(max_in_flight))
        self._on_seal = on_seal
        self._in_flight = 0
        self._retry: deque[ProducerBatch] = deque()
        self._splitting: set[ProducerBatch] = set()  # split batches with a part in flight
        self._new_parts: list[ProducerBatch] = []  # split while handling one answer
        self._metadata = MetadataRefresh(
            transport,
            cluster,
            metadata_max_age_ms / 1000.0,
            self._backoff,
            on_metadata,
            self._transport_clock,
        )
        self._delivery_timeout = delivery_timeout_ms / 1000.0
        self._idempotence = idempotence
        self._ids = ProducerIds(transport, self._backoff, self._transport_clock)
        # retries may reorder: keep one batch per partition in flight (see above)
        self._keep_order = retries > 0 and acks != 0 and not idempotence
        self._retried: set[ProducerBatch] = set()  # idempotence: failed, not yet settled
        self._acked = self._ids.acked  # the same set: partitions a batch of the id was answered for
        self._in_flight_by_tp: dict[TopicPartition, int] = {}
        # cluster mode, idempotence: batches sent and not answered. After a leader moves,
        # a batch at the new leader may be answered OUT_OF_ORDER_SEQUENCE_NUMBER while an
        # earlier one is still unanswered at the old leader: it is retried behind it
        self._unanswered: set[ProducerBatch] = set()

    def __call__(self, now: float) -> float | None:
        self._metadata.maybe_refresh(now)
        if self._idempotence and self._ids.producer_id is None:
            return self._wait_for_producer_id(now)
        next_due = None
        while self._in_flight < self._max_in_flight:
            batches = self._ready_retries(now)
            try:
                budget = self._acc.max_request_size - sum(len(b.data) for b in batches)
                if budget > 0:
                    _, next_due = self._acc.drain(
                        now, budget, self._on_seal, out=batches, muted=self._muted(batches)
                    )
                else:
                    next_due = 0.0
                if not batches:
                    break
                self._send(batches)
            except Exception as exc:  # a bug must fail these records, not lose them
                log.exception("the producer's sender failed; failing %d batches", len(batches))
                self._fail_taken(batches, exc)
                return 0.1
        head = self._retry[0] if self._retry else None
        if head is not None and (head.parent is None or head.parent not in self._splitting):
            wait = max(0.0, head.retry_at - now)  # (a blocked part waits for an answer)
            next_due = wait if next_due is None else min(next_due, wait)
        if self._metadata.due is not None:
            wait = max(0.0, self._metadata.due - now)
            next_due = wait if next_due is None else min(next_due, wait)
        return next_due

    def abort(self, error: BaseException) -> None:
        """Fail the batches waiting to be sent again (close(), after the I/O thread stopped)."""
        retry, self._retry = self._retry, deque()
        self._splitting.clear()
        self._retried.clear()
        for batch in retry:
            self._acc.complete(batch, -1, error)

    # -- produce ---------------------------------------------------------------

    def _muted(self, retrying: list[ProducerBatch]) -> set[TopicPartition] | None:
        """Partitions that must not send a new batch now (None: order needs no muting)."""
        if self._idempotence:  # one batch per partition per request; none behind a retry
            waiting = {b.tp for b in self._retry}
            waiting.update(b.tp for b in retrying)
            # nor behind a first batch: the broker takes any sequence from an id it does
            # not know yet, so a batch overtaking a failed first one would be accepted
            waiting.update(tp for tp in self._in_flight_by_tp if tp not in self._acked)
            return waiting
        if not self._keep_order:
            return None
        muted = set(self._in_flight_by_tp)
        muted.update(b.tp for b in self._retry)
        muted.update(b.tp for b in retrying)
        return muted

    def _ready_retries(self, now: float) -> list[ProducerBatch]:
        out: list[ProducerBatch] = []
        size = 0
        while self._retry and self._retry[0].retry_at <= now:
            head = self._retry[0]
            if head.parent is not None and head.parent in self._splitting:
                break  # the previous part of its batch is in flight: keep the order
            if out and size + len(head.data) > self._acc.max_request_size:
                break
            batch = self._retry.popleft()
            size += len(batch.data)
            out.append(batch)
            if batch.parent is not None:
                self._splitting.add(batch.parent)
        return out

    def _send(self, batches: list[ProducerBatch]) -> None:
        routes = self._routes
        if routes is None or not routes.multi:  # one broker: one request, as always
            self._send_to(ANY_BROKER, batches)
            return
        if self._idempotence:
            self._unanswered.update(batches)
        for node, group in routes.split(batches, _tp_of):  # cluster: one per leader
            self._send_to(node, group)

    def _send_to(self, node: int | None, batches: list[ProducerBatch]) -> None:
        header: dict[str, Any] = {
            "acks": self._acks,
            "timeout_ms": int(self._timeout_ms),
            "targets": [[b.tp.topic, b.tp.partition] for b in batches],
        }
        if self._idempotence:
            header["producers"] = [self._ids.sequenced(b) for b in batches]
        sent_at = self._transport_clock()
        for batch in batches:
            batch.attempts += 1
            if batch.first_seen is None:  # delivery_timeout_ms counts from here (linger 0)
                batch.first_seen = sent_at
        future = self._transport.request(
            "produce",
            header,
            [b.data for b in batches],
            timeout_ms=self._timeout_ms,
            idempotent=False,
            expect_response=self._acks != 0,
            **({} if node is ANY_BROKER else {"node": node}),  # cluster mode: the leader
        )
        self._in_flight += 1
        if self._keep_order or self._idempotence:
            counts = self._in_flight_by_tp
            for batch in batches:
                counts[batch.tp] = counts.get(batch.tp, 0) + 1
        future.add_callback(self._on_response, batches)
        future.add_errback(self._on_failure, batches)

    def _fail_taken(self, batches: list[ProducerBatch], exc: BaseException) -> None:
        """Complete, with an error, every batch taken for a request that went wrong
        unexpectedly: its futures fail and flush() does not wait for it forever."""
        for batch in batches:
            self._splitting.discard(batch.parent)
            if batch.done or batch in self._retry:
                continue
            self._retried.discard(batch)
            error = KafkaError(
                f"labkit's producer failed while sending records to {batch.tp.topic} "
                f"partition {batch.tp.partition} ({type(exc).__name__}: {exc}); these "
                "records were not written. Send them again; please report this as a bug "
                "with the traceback in the log."
            )
            error.__cause__ = exc
            self._acc.complete(batch, -1, error)

    def _on_response(self, batches: list[ProducerBatch], response: Any) -> None:
        self._settle(batches, self._handle_response, response)

    def _on_failure(self, batches: list[ProducerBatch], error: BaseException) -> None:
        self._settle(batches, self._fail_all, error)

    def _settle(self, batches: list[ProducerBatch], handle, outcome: Any) -> None:
        """Handle the outcome of one produce request; a bug in handling it fails its
        batches instead of leaving their futures (and flush()) waiting forever."""
        self._in_flight -= 1
        self._answered(batches)
        try:
            handle(batches, outcome)
        except Exception as exc:
            log.exception("handling the outcome of a produce request failed")
            self._fail_taken(batches, exc)
        finally:
            self._queue_new_parts()

    def _fail_all(self, batches: list[ProducerBatch], error: BaseException) -> None:
        for batch in batches:
            self._fail_or_retry(batch, error)

    def _answered(self, batches: list[ProducerBatch]) -> None:
        counts = self._in_flight_by_tp
        if self._unanswered:
            self._unanswered.difference_update(batches)
        for batch in batches:
            if batch.parent is not None:
                self._splitting.discard(batch.parent)
            left = counts.get(batch.tp)
            if left is not None:
                if left > 1:
                    counts[batch.tp] = left - 1
                else:
                    del counts[batch.tp]

    def _queue_new_parts(self) -> None:
        """Put the parts of batches split while handling an answer at the front of the
        retry queue, in the order of their records."""
        parts, self._new_parts = self._new_parts, []
        self._retry.extendleft(reversed(parts))

    def _handle_response(self, batches: list[ProducerBatch], response: Any) -> None:
        if response is None:  # acks=0: nothing comes back
            for batch in batches:
                self._acc.complete(batch, -1)
            return
        header = response.header
        if header.get("error", 0):
            self._fail_all(batches, from_wire(header["error"], header.get("message")))
            return
        results = header.get("results") or []
        for index, batch in enumerate(batches):
            if index >= len(results):
                self._fail_or_retry(
                    batch,
                    KafkaError("the broker's produce answer is missing a result for this batch"),
                )
                continue
            base_offset, code = results[index][0], results[index][1]
            if code == 0:
                if self._idempotence:
                    self._retried.discard(batch)
                    if batch.producer_id == self._ids.producer_id:
                        self._acked.add(batch.tp)
                self._acc.complete(batch, base_offset)
            else:
                message = results[index][3] if len(results[index]) > 3 else None
                self._fail_or_retry(batch, from_wire(code, message))

    def _fail_or_retry(self, batch: ProducerBatch, error: BaseException) -> None:
        now = self._transport_clock()
        if isinstance(error, MessageSizeTooLargeError):
            if batch.count > 1:
                log.info(
                    "the broker refused a batch of %d records to %s as too large; "
                    "sending it in two halves",
                    batch.count,
                    batch.tp,
                )
                sequence = batch.sequence
                for part in self._acc.split(batch):
                    part.retry_at = now  # due at once, ahead of other retries
                    if batch.producer_id >= 0:  # the parts take the batch's sequences
                        part.producer_id, part.sequence = batch.producer_id, sequence
                        sequence = next_sequence(sequence, part.count)
                        self._retried.add(part)
                    self._new_parts.append(part)
                self._retried.discard(batch)
                return
            error = record_too_large(
                batch.tp.topic, len(batch.data), self._acc.max_request_size, error
            )
        if getattr(error, "invalid_metadata", False):
            self._metadata.schedule(now)
        if (
            self._idempotence
            and isinstance(error, OutOfOrderSequenceNumberError)
            and not self._acc.closing
        ):
            if self._behind_a_retry(batch):
                batch.retry_at = now  # its turn comes after the earlier one, already queued
                self._retried.add(batch)
                self._retry.append(batch)
                return
            if earlier(batch, self._unanswered):  # still unanswered at the old leader
                batch.retry_at = now + self._backoff
                self._retried.add(batch)
                self._retry.append(batch)
                return
        if (
            getattr(error, "retriable", False)
            and batch.attempts <= self._retries
            and not self._acc.closing
            and (batch.first_seen is None or now - batch.first_seen < self._delivery_timeout)
        ):
            log.info("retrying a batch for %s after %s", batch.tp, error)
            batch.retry_at = now + self._backoff
            self._retry.append(batch)
            if self._idempotence:
                self._retried.add(batch)
            return
        log.warning("producing %d records to %s failed: %s", batch.count, batch.tp, error)
        if self._idempotence:
            self._retried.discard(batch)
            if batch.producer_id == self._ids.producer_id:
                self._ids.reset()  # its sequence is a hole now
        self._acc.complete(batch, -1, error)

    def _transport_clock(self) -> float:
        return self._acc._clock.monotonic()

    # -- idempotence -------------------------------------------------------------

    def _behind_a_retry(self, batch: ProducerBatch) -> bool:
        """Whether an OUT_OF_ORDER_SEQUENCE_NUMBER for ``batch`` only says that an
        earlier batch of its partition failed and is being sent again (or that its
        producer id was replaced meanwhile): then it is retried behind that one."""
        if batch.producer_id != self._ids.producer_id:
            return True
        return earlier(batch, (*self._retried, *self._new_parts))

    def _wait_for_producer_id(self, now: float) -> float:
        """Ask for a producer id; until it comes nothing is sent (the id's error, if the
        broker cannot give one, fails the batches instead)."""
        if self._ids.error is not None:
            batches: list[ProducerBatch] = [*self._retry]
            self._retry.clear()
            self._acc.drain(now, 1 << 62, self._on_seal, out=batches)
            for batch in batches:
                self._acc.complete(batch, -1, self._ids.error)
            return self._backoff
        self._ids.request(now)
        return max(0.01, self._backoff)


def _tp_of(batch: ProducerBatch) -> TopicPartition:
    return batch.tp
