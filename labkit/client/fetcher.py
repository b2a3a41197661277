"""The consumer's fetcher: one fetch in flight, whole batches in, ConsumerRecords out.

Theory of operation
-------------------
``send_fetches()`` (consumer thread) asks for every fetchable partition whose
buffer is nearly drained, starting at that partition's *next fetch offset* -- the
end of what is already buffered, so fetching runs ahead of the user's position.
A partition is in at most one fetch at a time (``_in_flight``, under ``_lock``:
both threads change it); the broker long-polls a fetch (``fetch_max_wait_ms``,
``fetch_min_bytes``). Usually one fetch covers every partition; a partition whose
buffer drains while a fetch for the others waits (they are caught up) goes out in a
fetch of its own instead of waiting for it.

The response arrives on the I/O thread. **Prefetch**: when the consumer is keeping
up (no undecoded response waiting, and this answer plus the partition's buffer hold
fewer than ``max_poll_records``), the I/O thread sends the partition's next fetch at
once, at the end of the batches just received (read from their headers), as Kafka's
Fetcher keeps a fetch in flight: no round trip through ``poll()``, and no wake-up of
the I/O thread by the consumer's thread, per delivered record. Such a partition stays
in ``_in_flight``. An answer that only says "nothing new" for prefetched partitions
is settled there too (high watermark), without waking ``poll()``. Everything else
goes to ``_completed`` and wakes ``poll()`` (``_signal``: a lock used as a one-shot
flag, cheaper than an Event); all decoding happens on the consumer's thread, in
``fetched_records()``. A prefetched answer that does not start where decoding ended
(decoding stopped at a poison or corrupt record) is dropped there.

Decoding (fetch_decode.py) turns whole batches into ``ConsumerRecord`` tuples and
stops at a poison message or a corrupt batch; the records wait in their partition's
buffer (fetch_buffers.py) until poll() takes them. A buffer that ends at a poison
message stops the partition's fetching, and the poll() after its good records raises
the error, until the app seeks past it. A seek or reset bumps the partition's
``epoch``: data fetched for an older one is dropped.

Errors per partition: OFFSET_OUT_OF_RANGE resets the position by
``auto_offset_reset`` ('earliest'/'latest'), or raises OffsetOutOfRangeError when
it is 'none'; unknown-partition errors ask for fresh metadata.

Cluster mode: each fetch is split into one request per partition leader
(client/routing.py), all in flight at once. NOT_LEADER_OR_FOLLOWER /
LEADER_NOT_AVAILABLE, or a leader that cannot be reached, ask for fresh metadata and
hold the partitions back ``retry_backoff_ms`` (``_held``); fetching then resumes
from the position, at the leader metadata names.

Positions a partition lacks are resolved by ``reset_offsets_if_needed``
(kafka-python's name), implemented in positions.py.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from typing import Any

from labkit._clock import REAL_CLOCK
from labkit.client.coordinator import Coordinator
from labkit.client.fetch_buffers import RecordBuffers
from labkit.client.fetch_decode import decode_records, end_offset, unreadable_log
from labkit.client.positions import OffsetLookup, PositionResolver
from labkit.client.routing import ANY_BROKER, Backoff
from labkit.client.structs import TopicPartition
from labkit.client.subscription import SubscriptionState
from labkit.errors import (
    CorruptRecordError,
    KafkaError,
    LeaderNotAvailableError,
    NotLeaderForPartitionError,
    OffsetOutOfRangeError,
    UnknownTopicOrPartitionError,
    for_code,
)

log = logging.getLogger(__name__)

_OUT_OF_RANGE = OffsetOutOfRangeError.errno
_STALE_METADATA = (
    UnknownTopicOrPartitionError.errno,
    LeaderNotAvailableError.errno,
    NotLeaderForPartitionError.errno,
)


def _tp_of_row(row: tuple) -> tuple[str, int]:
    return row[0][0], row[0][1]  # a (fetch part, asked) pair: the part's topic, partition


def _call_now(fn: Any) -> None:
    fn()


class Fetcher:
    def __init__(self, transport: Any, subscription: SubscriptionState, config: dict[str, Any]):
        self._transport = transport
        self._subscription = subscription
        self._max_wait_ms = int(config["fetch_max_wait_ms"])
        self._min_bytes = int(config["fetch_min_bytes"])
        self._max_bytes = int(config["fetch_max_bytes"])
        self._partition_max_bytes = int(config["max_partition_fetch_bytes"])
        self._check_crcs = bool(config["check_crcs"])
        self._key_deserializer = config["key_deserializer"]
        self._value_deserializer = config["value_deserializer"]
        self._reset_policy = config["auto_offset_reset"]
        self._prefetch = max(1, int(config["max_poll_records"]))
        self._timeout_ms = config["request_timeout_ms"] + self._max_wait_ms
        self._records = RecordBuffers(subscription)
        self._buffers = self._records.buffers  # the same dict: read when planning fetches
        self._next_fetch: dict[TopicPartition, tuple[int, int]] = {}  # tp -> (epoch, offset)
        self._lock = threading.Lock()  # guards _in_flight (consumer and I/O threads)
        self._in_flight: set[TopicPartition] = set()  # partitions in a fetch in flight
        self._completed: deque = deque()  # (asked, response, error, prefetched tps)
        self._poisoned = self._records.poisoned  # buffers that end at a poison message
        self._allowed: set[TopicPartition] | None = None  # the member's, at the last poll
        self._signal = threading.Lock()  # released = something for poll() to look at
        self._signal.acquire()
        self.prefetches = 0  # fetches the I/O thread sent on its own (tests, metrics)
        # wake poll() when the I/O thread's turn is over, not in the middle of it
        self._notify = getattr(transport, "notify_before_sleep", None) or _call_now
        self.needs_metadata = False
        self._routes = getattr(transport, "routes", None)
        self._clock = getattr(transport, "clock", REAL_CLOCK)
        self._held = Backoff(config.get("retry_backoff_ms", 100))
        self._positions = PositionResolver(
            subscription, OffsetLookup(transport), config.get("group_id")
        )
        subscription.add_assignment_hook(self._on_assignment)

    def reset_offsets_if_needed(
        self, coordinator: Coordinator, timeout_ms: float | None = None, *, in_poll: bool = False
    ) -> None:
        """Give every assigned partition without a position one: the group's committed
        offset, else by ``auto_offset_reset`` (kafka-python's name; labkit/client/positions.py).
        ``in_poll``: a leader error (moving, gone) is tried again after fresh metadata."""
        try:
            self._positions.reset_offsets_if_needed(coordinator, timeout_ms)
        except KafkaError as exc:
            if not (in_poll and getattr(exc, "invalid_metadata", False)):
                raise
            log.info("looking up positions failed, retrying after metadata: %s", exc)
            self.needs_metadata = True
            missing = self._subscription.missing_positions()
            self._held.hold(missing, self._clock.monotonic())

    def _on_assignment(self, revoked: set, added: set) -> None:
        for tp in revoked:
            self._buffers.pop(tp, None)
            self._next_fetch.pop(tp, None)

    def forget(self, tp: TopicPartition) -> None:
        """Drop buffered data for ``tp`` (after a seek)."""
        self._buffers.pop(tp, None)
        self._next_fetch.pop(tp, None)

    # -- sending -----------------------------------------------------------------

    def send_fetches(self, allowed: set[TopicPartition] | None = None) -> bool:
        """Fetch the partitions that need data and are not in a fetch already. True if
        a fetch is in flight afterwards.

        ``allowed``: only these partitions may be fetched (a group member's; None = all).
        """
        parts: list[list[Any]] = []  # [topic, partition, offset, max bytes]
        asked: list[tuple[TopicPartition, int, int]] = []  # (tp, epoch, offset)
        in_flight = self._in_flight
        self._allowed = allowed
        with self._lock:
            self._plan_fetches(allowed, parts, asked)
            if not parts:
                return bool(in_flight)
            in_flight.update(tp for tp, _, _ in asked)
        self._send(parts, asked)
        return True

    def _plan_fetches(self, allowed: set | None, parts: list, asked: list) -> None:
        in_flight = self._in_flight
        held, now = self._held, self._clock.monotonic()
        for tp, st in self._subscription.assignment.items():
            if (
                st.paused
                or st.position is None
                or tp in in_flight
                or (allowed is not None and tp not in allowed)
                or (held and held.held(tp, now))
            ):
                continue
            buf = self._buffers.get(tp)
            if (
                buf is not None
                and buf.epoch == st.epoch
                and (buf.remaining() >= self._prefetch or buf.poison is not None)
            ):
                continue
            planned = self._next_fetch.get(tp)
            offset = planned[1] if planned is not None and planned[0] == st.epoch else st.position
            parts.append([tp.topic, tp.partition, offset, self._partition_max_bytes])
            asked.append((tp, st.epoch, offset))

    def _send(self, parts: list, asked: list) -> None:
        routes = self._routes
        if routes is None or not routes.multi:
            self._send_to(ANY_BROKER, parts, asked)
            return
        for node, group in routes.split(zip(parts, asked, strict=True), _tp_of_row):
            self._send_to(node, [g[0] for g in group], [g[1] for g in group])

    def retry_in(self) -> float | None:
        """Seconds until a partition held back after a leader error may be fetched."""
        return self._held.next_in(self._clock.monotonic())

    def _send_to(self, node: int | None, parts: list, asked: list) -> None:
        header = {
            "max_wait_ms": self._max_wait_ms,
            "min_bytes": self._min_bytes,
            "max_bytes": self._max_bytes,
            "partitions": parts,
        }
        future = self._transport.request(
            "fetch",
            header,
            timeout_ms=self._timeout_ms,
            idempotent=True,
            **({} if node is ANY_BROKER else {"node": node}),  # cluster mode: the leader
        )
        future.add_callback(self._arrived, asked)
        future.add_errback(self._failed, asked)

    def _arrived(self, asked: list, response: Any) -> None:  # I/O thread
        prefetched = self._prefetch_next(asked, response)
        if prefetched and len(prefetched) == len(asked) and not any(response.payloads):
            self._settle_empty(asked, response)  # nothing new: poll() need not wake
            return
        self._completed.append((asked, response, None, prefetched))
        self._notify(self.interrupt)

    def _failed(self, asked: list, error: BaseException) -> None:  # I/O thread
        self._completed.append((asked, None, error, ()))
        self._notify(self.interrupt)

    def _prefetch_next(self, asked: list, response: Any) -> set[TopicPartition]:
        """Send the next fetch of the answered partitions the consumer keeps up with
        (see the module docstring); return them (they stay in ``_in_flight``)."""
        header = response.header
        if self._completed or header.get("error", 0):
            return set()  # poll() has undecoded answers: it paces the fetching
        assignment = self._subscription.assignment
        allowed = self._allowed
        entries = header.get("partitions", [])
        payloads = response.payloads
        by_tp = {(entry[0], entry[1]): index for index, entry in enumerate(entries)}
        parts: list = []
        again: list = []
        for tp, epoch, offset in asked:
            index = by_tp.get(tp)
            st = assignment.get(tp)
            if (
                index is None
                or entries[index][2] != 0
                or st is None
                or st.epoch != epoch
                or st.paused
                or (allowed is not None and tp not in allowed)
                or tp in self._poisoned
            ):
                continue
            planned = self._next_fetch.get(tp)  # where decoding ended (consumer thread)
            if planned is not None and planned[0] == epoch and planned[1] != offset:
                continue  # a stale answer (past a poison record): poll() drops it
            end = end_offset(payloads[index] if index < len(payloads) else b"", offset)
            buf = self._buffers.get(tp)  # read without the consumer's lock: an estimate
            buffered = buf.remaining() if buf is not None and buf.epoch == epoch else 0
            if end is None or end - offset + buffered >= self._prefetch:
                continue
            parts.append([tp.topic, tp.partition, end, self._partition_max_bytes])
            again.append((tp, epoch, end))
        if not parts:
            return set()
        self.prefetches += 1
        self._send(parts, again)  # these partitions never left _in_flight
        return {tp for tp, _, _ in again}

    def _settle_empty(self, asked: list, response: Any) -> None:  # I/O thread
        """An answer with no records for partitions fetched again already: keep the
        high watermark and log start it reports."""
        entries = {(e[0], e[1]): e for e in response.header.get("partitions", [])}
        assignment = self._subscription.assignment
        for tp, epoch, _ in asked:
            st, entry = assignment.get(tp), entries.get(tp)
            if st is not None and entry is not None and st.epoch == epoch:
                st.highwater, st.log_start = entry[3], entry[4]

    def wait(self, timeout: float) -> bool:
        """Block until a fetch response is waiting, ``interrupt()`` is called, or
        ``timeout`` seconds pass. True when woken early."""
        return self._signal.acquire(timeout=max(0.0, timeout))

    def interrupt(self) -> None:
        """Wake a ``wait()`` in progress (any thread): e.g. a group rebalance needs poll()."""
        try:
            self._signal.release()
        except RuntimeError:
            pass  # already set: one wake-up is enough

    # -- receiving -------------------------------------------------------------

    def _process_completed(self) -> None:
        self._signal.acquire(blocking=False)  # the caller looks at _completed now
        while self._completed:
            asked, response, error, prefetched = self._completed.popleft()
            with self._lock:
                self._in_flight.difference_update(tp for tp, _, _ in asked if tp not in prefetched)
            if error is not None:
                log.warning("fetch failed: %s", error)
                if getattr(error, "invalid_metadata", False):  # a leader gone: ask anew
                    self.needs_metadata = True
                    self._held.hold((tp for tp, _, _ in asked), self._clock.monotonic())
                continue
            header = response.header
            if header.get("error", 0):
                log.warning("fetch failed: %s", for_code(header["error"])(header.get("message")))
                continue
            by_tp = {}
            for index, entry in enumerate(header.get("partitions", [])):
                payload = response.payloads[index] if index < len(response.payloads) else b""
                by_tp[TopicPartition(entry[0], entry[1])] = (entry, payload)
            for tp, epoch, offset in asked:
                item = by_tp.get(tp)
                if item is not None:
                    self._handle_partition(tp, epoch, offset, item[0], item[1])

    def _handle_partition(
        self, tp: TopicPartition, epoch: int, offset: int, entry: list, payload: Any
    ) -> None:
        st = self._subscription.assignment.get(tp)
        if st is None or st.epoch != epoch:
            return  # revoked, or sought elsewhere since the fetch was sent
        planned = self._next_fetch.get(tp)
        if planned is not None and planned[0] == epoch and planned[1] != offset:
            return  # prefetched past where decoding stopped (a poison or corrupt record)
        _, _, code, highwater, log_start = entry[:5]
        if code == 0:
            st.highwater = highwater
            st.log_start = log_start
            records, next_offset, poison = self._decode(tp, payload, offset)
            self._next_fetch[tp] = (epoch, next_offset)
            self._records.add(tp, epoch, records, poison)
        elif code == _OUT_OF_RANGE:
            self._next_fetch.pop(tp, None)
            if st.position != offset:
                return
            if self._reset_policy in ("earliest", "latest"):
                log.info(
                    "offset %d is out of range for %s (log start %s, end %s); resetting to %s",
                    offset,
                    tp,
                    log_start,
                    highwater,
                    self._reset_policy,
                )
                st.request_reset(self._reset_policy)
            else:
                raise OffsetOutOfRangeError(
                    f"Offsets out of range with no configured reset policy for partitions: "
                    f"{ {tp: offset} } (the log now starts at {log_start} and ends at "
                    f"{highwater}). Use auto_offset_reset='earliest' or 'latest', or seek()."
                )
        elif code == CorruptRecordError.errno:  # the broker cannot even walk its log there
            raise unreadable_log(tp, offset)
        elif code in _STALE_METADATA:
            self.needs_metadata = True
            self._held.hold((tp,), self._clock.monotonic())
            log.warning("fetch from %s: %s", tp, for_code(code).description)
        else:
            raise for_code(code)(f"fetch from {tp} at offset {offset} failed")

    def _decode(
        self, tp: TopicPartition, buf: Any, fetch_offset: int
    ) -> tuple[list, int, tuple[int, BaseException, str] | None]:
        """(records, next fetch offset, poison) of one partition's payload (fetch_decode.py)."""
        return decode_records(
            tp,
            buf,
            fetch_offset,
            self._check_crcs,
            self._key_deserializer,
            self._value_deserializer,
        )

    # -- handing records to poll() ------------------------------------------------------

    def fetched_records(
        self,
        max_records: int,
        update_offsets: bool = True,
        allowed: set[TopicPartition] | None = None,
    ) -> dict[TopicPartition, list]:
        """Up to ``max_records`` buffered records, grouped by partition.

        With ``update_offsets`` the positions move past them (poll); without, the
        caller moves them record by record (iteration). Partitions not in
        ``allowed`` (when given) keep their records buffered. Raises OffsetOutOfRangeError
        (auto_offset_reset='none'), errors the broker reported for a partition, and a
        poison message's exception (fetch_buffers.py).
        """
        if self._completed:
            self._process_completed()
        return self._records.take(max_records, update_offsets, allowed)

    def has_buffered(self) -> bool:
        return bool(self._completed) or any(b.remaining() for b in self._buffers.values())

    def buffered_count(self) -> int:
        return sum(b.remaining() for b in self._buffers.values())
