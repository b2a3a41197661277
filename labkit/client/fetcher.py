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

Decoding a partition's payload: split it into whole batches, check each batch's
CRC (``check_crcs``), decode it into columns and build ``ConsumerRecord`` tuples
with one ``map`` over the zipped columns (no per-record method calls beyond the
deserializers). Records before the fetch offset (a batch may start earlier) are
skipped. Each buffer remembers the partition's ``epoch`` it was fetched for; a
seek or reset bumps the epoch and stale data is dropped.

Poison messages: when a key/value deserializer raises, the records of the
partition before the bad one are kept and decoding stops there; the buffer
remembers the failure (``_Buffer.poison``) and no further fetch of the partition
goes out. Once poll() has returned the good records, the next poll() raises the
deserializer's own exception, as kafka-python does (so ``except ValueError`` in course
code still works), with a note naming topic, partition and offset and the attributes
``topic_partition``, ``offset`` and ``what``, and drops the buffer. The position stays at the bad record: a
later poll() fetches it again and raises again, until the app seeks past it.

Corrupt batches (a bad CRC with ``check_crcs``, or columns that do not add up: the
broker refuses them on produce, but one may be on disk from an older broker or a
flipped bit) take the same path, as Kafka's CorruptRecordException: the records
before the batch are returned, then poll() raises CorruptRecordError naming topic,
partition and offset and the offset to seek to (``next_offset``: the next batch's
base offset when the fetch held it), and keeps raising until the app seeks.

Errors per partition: OFFSET_OUT_OF_RANGE resets the position by
``auto_offset_reset`` ('earliest'/'latest'), or raises OffsetOutOfRangeError when
it is 'none'; unknown-partition errors ask for fresh metadata.

Cluster mode: each fetch is split into one request per partition leader
(client/routing.py), all in flight at once. NOT_LEADER_OR_FOLLOWER /
LEADER_NOT_AVAILABLE, or a leader that cannot be reached, ask for fresh metadata and
hold the partitions back ``retry_backoff_ms`` (``_held``); fetching then resumes
from the position, at the leader metadata names.

Positions a partition lacks are resolved by ``reset_offsets_if_needed``
(kafka-python's name), implemented in positions.py. Size: about 650 lines (leader
routing added ~40; the routing itself is in routing.py) while the fetch path is being reworked (prefetch from the I/O thread); decoding (``_decode``,
``_corrupt``, ``_deserialize``) is the seam to split off once that has landed.
"""

from __future__ import annotations

import functools
import logging
import threading
from bisect import bisect_left
from collections import deque
from collections.abc import Iterable
from itertools import repeat
from typing import Any

from labkit._clock import REAL_CLOCK
from labkit.client.coordinator import Coordinator
from labkit.client.poison import annotate_poison
from labkit.client.positions import OffsetLookup, PositionResolver
from labkit.client.routing import ANY_BROKER, Backoff
from labkit.client.structs import ConsumerRecord, TopicPartition
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
from labkit.protocol.records import decode_batch, read_header, validate_batch, walk_batches

log = logging.getLogger(__name__)

_make_record = functools.partial(tuple.__new__, ConsumerRecord)
_OUT_OF_RANGE = OffsetOutOfRangeError.errno
_STALE_METADATA = (
    UnknownTopicOrPartitionError.errno,
    LeaderNotAvailableError.errno,
    NotLeaderForPartitionError.errno,
)


class _Buffer:
    """Decoded records of one partition waiting to be returned by poll(); ``poison``:
    (offset, exception, 'key'/'value'/'batch') of the record after them that failed to
    deserialize or is in a corrupt batch, or None."""

    __slots__ = ("records", "index", "epoch", "poison")

    def __init__(self, records: list, epoch: int):
        self.records = records
        self.index = 0
        self.epoch = epoch
        self.poison: tuple[int, BaseException, str] | None = None

    def remaining(self) -> int:
        return len(self.records) - self.index


def _deserialize(fn: Any, topic: str, items: list) -> tuple[list, Exception | None]:
    """(deserialized items, None), or the items before the one that raised and its error."""
    out: list = []
    try:  # extend() keeps what it appended before an exception
        if not callable(fn):
            method = fn.deserialize
            out.extend(None if x is None else method(topic, x) for x in items)
        elif None in items:
            out.extend(None if x is None else fn(x) for x in items)
        else:
            out.extend(map(fn, items))
    except Exception as exc:  # noqa: BLE001 - the user's deserializer: any error is a poison message
        return out, exc
    return out, None


def _tp_of_row(row: tuple) -> tuple[str, int]:
    return row[0][0], row[0][1]  # a (fetch part, asked) pair: the part's topic, partition


def _call_now(fn: Any) -> None:
    fn()


def _end_offset(payload: Any, offset: int) -> int | None:
    """Where the fetch after this answer starts: the end of its last whole batch
    (as ``Fetcher._decode`` finds it), or None when its framing is damaged."""
    spans, framing_error = walk_batches(payload)
    if framing_error is not None:
        return None
    if not spans:
        return offset
    try:
        return max(offset, read_header(payload, spans[-1][0]).next_offset)
    except CorruptRecordError:
        return None


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
        self._buffers: dict[TopicPartition, _Buffer] = {}
        self._next_fetch: dict[TopicPartition, tuple[int, int]] = {}  # tp -> (epoch, offset)
        self._lock = threading.Lock()  # guards _in_flight (consumer and I/O threads)
        self._in_flight: set[TopicPartition] = set()  # partitions in a fetch in flight
        self._completed: deque = deque()  # (asked, response, error, prefetched tps)
        self._poisoned: set[TopicPartition] = set()  # buffers that end at a poison message
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
            end = _end_offset(payloads[index] if index < len(payloads) else b"", offset)
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
            if records or poison is not None:
                buf = self._buffers.get(tp)
                if buf is not None and buf.epoch == epoch and buf.remaining():
                    buf.records = buf.records[buf.index :] + records
                    buf.index = 0
                else:
                    buf = self._buffers[tp] = _Buffer(records, epoch)
                if poison is not None:
                    buf.poison = poison
                    self._poisoned.add(tp)
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
            error = CorruptRecordError(
                f"the broker cannot read topic '{tp.topic}' partition {tp.partition} at offset "
                f"{offset}: its log is damaged there (the broker's log says more). Skip it "
                f"with consumer.seek(TopicPartition('{tp.topic}', {tp.partition}), "
                f"{offset + 1}) and further if needed."
            )
            error.topic_partition, error.offset, error.next_offset = tp, offset, offset + 1
            raise error
        elif code in _STALE_METADATA:
            self.needs_metadata = True
            self._held.hold((tp,), self._clock.monotonic())
            log.warning("fetch from %s: %s", tp, for_code(code).description)
        else:
            raise for_code(code)(f"fetch from {tp} at offset {offset} failed")

    def _decode(
        self, tp: TopicPartition, buf: Any, fetch_offset: int
    ) -> tuple[list, int, tuple[int, BaseException, str] | None]:
        """(records, next fetch offset, poison): decoding stops at a record a
        deserializer raised on, or at a corrupt batch; poison is then (its offset, the
        error, 'key'/'value'/'batch') and the next fetch offset is its offset."""
        out: list = []
        next_offset = fetch_offset
        topic, partition = tp
        check = self._check_crcs
        kd, vd = self._key_deserializer, self._value_deserializer
        spans, framing_error = walk_batches(buf)
        for index, (start, _end) in enumerate(spans):
            try:
                header = (
                    validate_batch(buf, start, produced=False) if check else read_header(buf, start)
                )
                if header.next_offset <= fetch_offset:
                    continue
                batch = decode_batch(buf, start, header)
            except CorruptRecordError as exc:
                base = read_header(buf, start).base_offset
                after = spans[index + 1][0] if index + 1 < len(spans) else None
                skip_to = read_header(buf, after).base_offset if after is not None else None
                return out, *self._corrupt(tp, max(base, next_offset), skip_to, exc)
            next_offset = header.next_offset
            offsets = batch.offsets
            n = len(offsets)
            if not n:
                continue
            skip = bisect_left(offsets, fetch_offset) if offsets[0] < fetch_offset else 0
            keys, values, headers = batch.keys, batch.values, batch.headers
            key_sizes, value_sizes, timestamps = (
                batch.key_sizes,
                batch.value_sizes,
                batch.timestamps,
            )
            if skip:
                offsets, timestamps = offsets[skip:], timestamps[skip:]
                keys, values, headers = keys[skip:], values[skip:], headers[skip:]
                key_sizes, value_sizes = key_sizes[skip:], value_sizes[skip:]
            poison = None
            if kd is not None:
                keys, error = _deserialize(kd, topic, keys)
                if error is not None:
                    poison = (len(keys), error, "key")
                    values = values[: len(keys)]
            if vd is not None:
                values, error = _deserialize(vd, topic, values)
                if error is not None:
                    poison = (len(values), error, "value")
            if poison is not None:
                good = poison[0]
                offsets, timestamps, headers = offsets[:good], timestamps[:good], headers[:good]
                keys, values = keys[:good], values[:good]
                key_sizes, value_sizes = key_sizes[:good], value_sizes[:good]
            header_sizes: Iterable[int]
            if header.attributes & 0x02:  # HAS_HEADERS
                header_sizes = [
                    sum(len(k.encode("utf-8")) + (len(v) if v is not None else 0) for k, v in h)
                    if h
                    else -1
                    for h in headers
                ]
            else:
                header_sizes = repeat(-1)
            out.extend(
                map(
                    _make_record,
                    zip(
                        repeat(topic),
                        repeat(partition),
                        repeat(-1),
                        offsets,
                        timestamps,
                        repeat(1 if batch.log_append_time else 0),
                        keys,
                        values,
                        headers,
                        repeat(None),
                        key_sizes,
                        value_sizes,
                        header_sizes,
                    ),
                )
            )
            if poison is not None:
                bad_offset = batch.offsets[skip + poison[0]]
                return out, bad_offset, (bad_offset, poison[1], poison[2])
        if framing_error is not None and next_offset == fetch_offset:
            # nothing readable before the damaged length field: report it now
            return out, *self._corrupt(tp, fetch_offset, None, framing_error)
        return out, next_offset, None

    @staticmethod
    def _corrupt(
        tp: TopicPartition, offset: int, skip_to: int | None, exc: CorruptRecordError
    ) -> tuple[int, tuple[int, BaseException, str]]:
        """(next fetch offset, poison) for a corrupt batch at ``offset``, as Kafka's
        CorruptRecordException: the error names where it is and how to get past it."""
        reason = exc.args[0] if exc.args else type(exc).__name__
        where = f"TopicPartition('{tp.topic}', {tp.partition})"
        if skip_to is not None and skip_to > offset:
            how = (
                f"skip the whole batch with consumer.seek({where}, {skip_to}) (the next "
                "batch starts there)"
            )
        else:
            skip_to = offset + 1
            how = (
                f"skip it with consumer.seek({where}, {skip_to}) and seek further if the "
                "next offsets are in the same damaged batch"
            )
        error = CorruptRecordError(
            f"the record batch at offset {offset} of topic '{tp.topic}' partition "
            f"{tp.partition} is corrupt ({reason}); poll() returned the records before it "
            f"and stays at offset {offset}. The data on the broker is damaged: {how}."
        )
        error.topic_partition, error.offset, error.next_offset = tp, offset, skip_to
        return offset, (offset, error, "batch")

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
        (auto_offset_reset='none') and errors the broker reported for a partition.
        """
        if self._completed:
            self._process_completed()
        if self._poisoned:
            self._raise_poison(allowed)
        out: dict[TopicPartition, list] = {}
        room = max_records
        assignment = self._subscription.assignment
        for tp, buf in list(self._buffers.items()):
            if room <= 0:
                break
            st = assignment.get(tp)
            if st is None or buf.epoch != st.epoch:
                del self._buffers[tp]
                continue
            if st.paused or not buf.remaining() or (allowed is not None and tp not in allowed):
                continue
            start = buf.index
            end = min(len(buf.records), start + room)
            chunk = buf.records[start:end]
            if chunk[0].offset < (st.position or 0):  # skip what the user already saw
                keep = bisect_left([r.offset for r in chunk], st.position)
                chunk = chunk[keep:]
            buf.index = end
            if buf.index >= len(buf.records) and buf.poison is None:
                del self._buffers[tp]
            if not chunk:
                continue
            out[tp] = chunk
            room -= len(chunk)
            if update_offsets:
                st.position = chunk[-1].offset + 1
        return out

    def _raise_poison(self, allowed: set[TopicPartition] | None) -> None:
        """Raise the deserializer's exception for a partition whose good records were all
        handed out and whose next record failed to deserialize (dropping its buffer, so
        the record is fetched, and fails, again until the app seeks past it)."""
        assignment = self._subscription.assignment
        for tp in list(self._poisoned):
            buf = self._buffers.get(tp)
            st = assignment.get(tp)
            if buf is None or buf.poison is None or st is None or buf.epoch != st.epoch:
                self._poisoned.discard(tp)  # sought, reset or revoked since
                continue
            if buf.remaining() or st.paused or (allowed is not None and tp not in allowed):
                continue
            self._poisoned.discard(tp)
            del self._buffers[tp]
            offset, error, what = buf.poison
            if what == "batch":
                raise error  # a corrupt batch: the error says it all (see _corrupt)
            annotate_poison(
                error,
                tp,
                offset,
                what,
                "poll() returned the records before it and stays at this one.",
            )
            raise error

    def has_buffered(self) -> bool:
        return bool(self._completed) or any(b.remaining() for b in self._buffers.values())

    def buffered_count(self) -> int:
        return sum(b.remaining() for b in self._buffers.values())
