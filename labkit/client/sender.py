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

Idempotence (``enable_idempotence=True``, KIP-98). Before its first produce the
sender asks the broker for a producer id (``init_producer_id``; a retriable error
is asked again after ``retry_backoff_ms``). Each batch gets the next sequence of
its partition the first time it is sent and keeps it on every retry, so the broker
recognises a retried batch it already appended and answers its first offset
instead of appending it again. Batches are pipelined (as Kafka allows with
``max_in_flight_requests_per_connection`` <= 5): each request takes at most one
batch per partition, so at most 5 of a partition's batches are unanswered -- the
broker's window of 5 -- and a partition is muted only while one of its batches
waits for a retry, and while its first batch under a producer id is unanswered (the
broker accepts any sequence from an id it does not know, so nothing may overtake
that one). A batch sent behind one that failed gets
OUT_OF_ORDER_SEQUENCE_NUMBER (45); while an earlier batch of its partition is being
retried that answer just means "after it": the batch is queued again behind it
(responses arrive in order, so the retry queue keeps each partition's sequence
order). A batch given up (not retriable, retries or ``delivery_timeout_ms`` spent,
or 45 with no earlier batch pending) leaves a hole in its partition's sequence: the sender then takes a new producer id and numbers every
partition from 0 again (Kafka's clients before KIP-360 did the same); batches
waiting for a retry are renumbered under the new id.

It also refreshes topic metadata every ``metadata_max_age_ms`` (and at once after
an error that says metadata is stale), so partitions added while the producer runs
are used. In cluster mode a drained set of batches becomes one request per partition
leader (client/routing.py), all in flight at once; NOT_LEADER_OR_FOLLOWER,
LEADER_NOT_AVAILABLE or a lost connection to a leader are retriable and stale
metadata: the batch is retried (with its sequence) after ``retry_backoff_ms``, on the
leader the refreshed metadata names. A request a leader leaves unanswered times out
and counts the same (the transport marks it). With idempotence, a batch the new leader
answers OUT_OF_ORDER_SEQUENCE_NUMBER while an earlier batch of its partition is still
unanswered at the old leader (``_unanswered``) is retried behind it.

No batch is ever dropped: if draining, sending or handling an answer raises
unexpectedly (a bug), every batch taken for that request completes with a
KafkaError whose ``__cause__`` is the original exception, so its futures fail and
``flush()`` returns instead of waiting forever.

Everything here runs on the I/O thread, so the sender's own state needs no lock.
"""

from __future__ import annotations

import logging
import random
from collections import deque
from collections.abc import Callable
from typing import Any

from labkit.client.accumulator import PartitionBuffer, ProducerBatch, RecordAccumulator
from labkit.client.metadata import ClusterMetadata, request_header
from labkit.client.routing import ANY_BROKER
from labkit.client.structs import TopicPartition
from labkit.errors import (
    BrokerResponseError,
    KafkaError,
    MessageSizeTooLargeError,
    OutOfOrderSequenceNumberError,
    from_wire,
)

log = logging.getLogger(__name__)

SEQUENCES = 2**31  # a producer's sequence numbers are int32 >= 0, wrapping to 0


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
        self._metadata_age = metadata_max_age_ms / 1000.0
        self._on_metadata = on_metadata
        self._on_seal = on_seal
        self._in_flight = 0
        self._retry: deque[ProducerBatch] = deque()
        self._splitting: set[ProducerBatch] = set()  # split batches with a part in flight
        self._new_parts: list[ProducerBatch] = []  # split while handling one answer
        self._metadata_due: float | None = None
        self._metadata_in_flight = False
        self._delivery_timeout = delivery_timeout_ms / 1000.0
        self._idempotence = idempotence
        self._producer_id: int | None = None
        self._producer_epoch = 0
        self._id_in_flight = False
        self._id_retry_at = 0.0
        self._id_error: BaseException | None = None  # a broker that cannot give ids
        self._next_sequence: dict[TopicPartition, int] = {}
        # retries may reorder: keep one batch per partition in flight (see above)
        self._keep_order = retries > 0 and acks != 0 and not idempotence
        self._retried: set[ProducerBatch] = set()  # idempotence: failed, not yet settled
        self._acked: set[TopicPartition] = set()  # idempotence: a batch of the id answered
        self._in_flight_by_tp: dict[TopicPartition, int] = {}
        # cluster mode, idempotence: batches sent and not answered. After a leader moves,
        # a batch at the new leader may be answered OUT_OF_ORDER_SEQUENCE_NUMBER while an
        # earlier one is still unanswered at the old leader: it is retried behind it
        self._unanswered: set[ProducerBatch] = set()

    def __call__(self, now: float) -> float | None:
        self._maybe_refresh_metadata(now)
        if self._idempotence and self._producer_id is None:
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
        if self._metadata_due is not None:
            wait = max(0.0, self._metadata_due - now)
            next_due = wait if next_due is None else min(next_due, wait)
        return next_due

    def abort(self, error: BaseException) -> None:
        """Fail the batches waiting to be sent again (close(), after the I/O thread stopped)."""
        retry, self._retry = self._retry, deque()
        self._splitting.clear()
        self._retried.clear()
        for batch in retry:
            self._acc.complete(batch, -1, error)

    def schedule_metadata(self, now: float, delay: float = 0.0) -> None:
        due = now + delay
        if self._metadata_due is None or due < self._metadata_due:
            self._metadata_due = due

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
            header["producers"] = [self._sequenced(b) for b in batches]
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
                    if batch.producer_id == self._producer_id:
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
                        sequence = _next(sequence, part.count)
                        self._retried.add(part)
                    self._new_parts.append(part)
                self._retried.discard(batch)
                return
            error = self._record_too_large(batch, error)
        if getattr(error, "invalid_metadata", False):
            self.schedule_metadata(now)
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
            if self._earlier(batch, self._unanswered):  # still unanswered at the old leader
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
            if batch.producer_id == self._producer_id:
                self._reset_producer_id()  # its sequence is a hole now
        self._acc.complete(batch, -1, error)

    def _record_too_large(self, batch: ProducerBatch, error: BaseException) -> KafkaError:
        topic = batch.tp.topic
        wrapped = MessageSizeTooLargeError(
            f"the broker refused a record for topic '{topic}': it is {len(batch.data)} bytes "
            "as a batch of its own, more than the topic's max.message.bytes. Send a smaller "
            f"record, or raise the topic's limit (labkit topics --alter --topic {topic} "
            "--config max.message.bytes=N) and keep the producer's max_request_size (now "
            f"{self._acc.max_request_size}) at least that large. The broker said: {error}"
        )
        wrapped.__cause__ = error
        return wrapped

    def _transport_clock(self) -> float:
        return self._acc._clock.monotonic()

    # -- idempotence -------------------------------------------------------------

    def _sequenced(self, batch: ProducerBatch) -> list[int]:
        """[producer id, epoch, base sequence] of a batch; numbered at its first send
        (or again after the producer id changed)."""
        pid = self._producer_id
        assert pid is not None  # __call__ sends nothing before the id is known
        if batch.producer_id != pid:
            batch.producer_id = pid
            batch.sequence = self._next_sequence.get(batch.tp, 0)
            self._next_sequence[batch.tp] = _next(batch.sequence, batch.count)
        return [pid, self._producer_epoch, batch.sequence]

    def _behind_a_retry(self, batch: ProducerBatch) -> bool:
        """Whether an OUT_OF_ORDER_SEQUENCE_NUMBER for ``batch`` only says that an
        earlier batch of its partition failed and is being sent again (or that its
        producer id was replaced meanwhile): then it is retried behind that one."""
        if batch.producer_id != self._producer_id:
            return True
        return self._earlier(batch, (*self._retried, *self._new_parts))

    @staticmethod
    def _earlier(batch: ProducerBatch, others) -> bool:
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

    def _reset_producer_id(self) -> None:
        log.info("taking a new producer id (producer %s gave a batch up)", self._producer_id)
        self._producer_id = None
        self._next_sequence.clear()
        self._acked.clear()

    def _wait_for_producer_id(self, now: float) -> float:
        """Ask for a producer id; until it comes nothing is sent (the id's error, if the
        broker cannot give one, fails the batches instead)."""
        if self._id_error is not None:
            batches: list[ProducerBatch] = [*self._retry]
            self._retry.clear()
            self._acc.drain(now, 1 << 62, self._on_seal, out=batches)
            for batch in batches:
                self._acc.complete(batch, -1, self._id_error)
            return self._backoff
        if not self._id_in_flight and now >= self._id_retry_at:
            self._id_in_flight = True
            future = self._transport.request(
                "init_producer_id", {"transactional_id": None}, idempotent=True
            )
            future.add_callback(self._on_producer_id)
            future.add_errback(self._on_producer_id_failure)
        return max(0.01, self._backoff)

    def _on_producer_id(self, response: Any) -> None:
        self._id_in_flight = False
        header = response.header
        code = header.get("error", 0)
        if code == 0:
            self._producer_id = header["producer_id"]
            self._producer_epoch = header.get("producer_epoch", 0)
            return
        self._on_producer_id_failure(from_wire(code, header.get("message")))

    def _on_producer_id_failure(self, error: BaseException) -> None:
        self._id_in_flight = False
        if getattr(error, "retriable", False) or not isinstance(error, BrokerResponseError):
            self._id_retry_at = self._transport_clock() + self._backoff  # ask again
            return
        log.error("the broker gives no producer id (%s): idempotent sends fail", error)
        self._id_error = KafkaError(
            f"enable_idempotence=True needs producer ids, and the broker gave none: {error}. "
            "Upgrade the broker, or use enable_idempotence=False"
        )
        self._id_error.__cause__ = error

    # -- metadata --------------------------------------------------------------

    def _maybe_refresh_metadata(self, now: float) -> None:
        if self._metadata_due is None:
            self._metadata_due = now + self._metadata_age
            return
        if now < self._metadata_due or self._metadata_in_flight:
            return
        topics = sorted(self._cluster.topics(exclude_internal=False))
        self._metadata_due = now + self._metadata_age
        if not topics:
            return
        self._metadata_in_flight = True
        future = self._transport.request("metadata", request_header(topics, False), idempotent=True)
        future.add_callback(self._on_metadata_response, topics)
        future.add_errback(self._on_metadata_failure)

    def _on_metadata_response(self, topics: list[str], response: Any) -> None:
        self._metadata_in_flight = False
        if not response.header.get("error", 0):
            self._cluster.update(response.header, topics, self._transport_clock())
            self._on_metadata(response.header)

    def _on_metadata_failure(self, error: BaseException) -> None:
        self._metadata_in_flight = False
        self.schedule_metadata(self._transport_clock(), self._backoff + random.random() * 0.1)


def _tp_of(batch: ProducerBatch) -> TopicPartition:
    return batch.tp


def _next(sequence: int, count: int) -> int:
    """The sequence after ``count`` records from ``sequence`` (wraps after 2**31-1)."""
    return (sequence + count) % SEQUENCES
