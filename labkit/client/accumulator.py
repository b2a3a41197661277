"""The producer's record accumulator: per-partition batches, record futures.

Theory of operation
-------------------
``KafkaProducer.send()`` must be cheap, so per record it only appends the value
and the timestamp to the column lists of the *open* batch of the record's
partition (``PartitionBuffer.append``, or the same steps inlined in
``KafkaProducer.send``'s fast path), under that partition's lock, and returns a
``FutureRecordMetadata`` -- a 2-tuple ``(batch, index)``. The key and headers
columns exist only once a record of the batch has a key/headers (back-filled with
None). When the open batch reaches ``batch_size`` bytes, it moves to the
partition's ``ready`` queue and a new one opens. No container object is kept per
record, and a future the caller ignores is freed at once: the garbage collector
does not slow a producer down as records pile up.

The I/O thread (``drain``) takes ready batches, and the open batch once
``linger_ms`` passed since it saw its first record (at once when flushing or
closing): it swaps in a new open batch under the lock and encodes the columns
with ``labkit.protocol.records.encode_batch``. After that nobody appends to the batch.
Batches leave a buffer in the order they opened, which is what keeps a partition's
records in ``send()`` order: ``drain`` looks at the ready queue and the open batch
without the lock, so ``take_open`` checks again under it that nothing was queued
meanwhile (a ``send()`` on another thread may have filled the open batch between the
look and the take; taking the *new* open batch then would let it overtake the full one).
Code that reads a ``ready`` deque while ``send()`` may append to it (``drain``,
``pending``) iterates a ``tuple()`` snapshot: iterating the deque itself raises
"deque mutated during iteration" when the GIL switches threads in between.

When the broker answers, ``complete`` marks the batch done under the accumulator's
condition variable and wakes ``get()`` callers. Callbacks are kept per batch in a
side table, so a producer that never registers one pays nothing for them. A
``RecordMetadata`` is built only when asked for. Every producer gets its own
``FutureRecordMetadata`` subclass whose class attribute ``_owner`` points back at
its accumulator.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

from labkit._clock import Clock
from labkit.client.structs import RecordMetadata, TopicPartition
from labkit.errors import KafkaTimeoutError
from labkit.protocol.records import decode_batch, encode_batch

log = logging.getLogger(__name__)

RECORD_OVERHEAD = 16  # timestamp (8) + length fields (4 + 4) in the columnar batch
BATCH_OVERHEAD = 44  # the batch header (labkit.protocol.records.HEADER_SIZE)
_new_tuple = tuple.__new__


def _sizes(items) -> list[int]:
    if None in items:
        return [-1 if x is None else len(x) for x in items]
    return list(map(len, items))


def _error_of(batch: ProducerBatch, index: int) -> BaseException | None:
    errors = batch.errors
    return batch.error if errors is None else errors[index]


def _header_sizes(headers) -> list[int]:
    return [
        sum(len(k.encode("utf-8")) + (len(v) if v is not None else 0) for k, v in h) if h else -1
        for h in headers
    ]


class FutureRecordMetadata(tuple):
    """The result of one ``send()``: resolves to ``RecordMetadata`` once acknowledged.

    kafka-python's API: ``get(timeout=None)``, ``is_done``, ``value``, ``exception``,
    ``succeeded()``, ``failed()``, ``add_callback(fn, *args)``, ``add_errback(fn, *args)``,
    ``add_both``. Callbacks run on the producer's I/O thread (as in kafka-python);
    keep them short. (Internally a 2-tuple: the record's batch and its index.)
    """

    __slots__ = ()
    _owner: RecordAccumulator  # set on the per-producer subclass

    @property
    def is_done(self) -> bool:
        return self[0].done

    def succeeded(self) -> bool:
        batch = self[0]
        return batch.done and _error_of(batch, self[1]) is None

    def failed(self) -> bool:
        batch = self[0]
        return batch.done and _error_of(batch, self[1]) is not None

    def retriable(self) -> bool:
        return self.failed() and bool(getattr(_error_of(self[0], self[1]), "retriable", False))

    @property
    def value(self) -> RecordMetadata | None:
        return self[0].metadata(self[1]) if self.succeeded() else None

    @property
    def exception(self) -> BaseException | None:
        return _error_of(self[0], self[1]) if self[0].done else None

    def get(self, timeout: float | None = None) -> RecordMetadata:
        """Block until acknowledged; return RecordMetadata.

        Raises the send's error, or KafkaTimeoutError after ``timeout`` seconds.
        """
        batch = self[0]
        if not batch.done:
            self._owner.wait_for(batch, timeout)
        error = batch.error if batch.errors is None else batch.errors[self[1]]
        if error is not None:
            raise error
        return batch.metadata(self[1])

    def add_callback(self, fn: Callable, *args: Any, **kwargs: Any) -> FutureRecordMetadata:
        """Call ``fn(*args, record_metadata, **kwargs)`` when the record is acknowledged."""
        if args or kwargs:
            fn = functools.partial(fn, *args, **kwargs)
        self._owner.add_callback(self[0], self[1], fn, False)
        return self

    def add_errback(self, fn: Callable, *args: Any, **kwargs: Any) -> FutureRecordMetadata:
        """Call ``fn(*args, exception, **kwargs)`` if the send fails."""
        if args or kwargs:
            fn = functools.partial(fn, *args, **kwargs)
        self._owner.add_callback(self[0], self[1], fn, True)
        return self

    def add_both(self, fn: Callable, *args: Any, **kwargs: Any) -> FutureRecordMetadata:
        self.add_callback(fn, *args, **kwargs)
        return self.add_errback(fn, *args, **kwargs)

    def __eq__(self, other: object) -> bool:
        return self is other

    def __hash__(self) -> int:
        return id(self)

    def __repr__(self) -> str:
        return f"<FutureRecordMetadata {'done' if self.is_done else 'pending'}>"


class ProducerBatch:
    """Records of one partition that go to the broker as one record batch.

    Open: the columns ``records`` (the values), ``ts`` and, once a record has one,
    ``keys``/``hdrs`` grow under the partition's lock. Sealed: ``data`` holds the
    encoded bytes and the columns needed to answer futures; ``records`` is None.

    Split (the broker refused it as too large, see ``RecordAccumulator.split``): the
    futures stay on this batch; ``offsets``/``errors`` then hold each record's own
    outcome, filled in by the *parts* (batches whose ``parent`` is this one, holding
    records ``first``.. of it) as they complete; ``left`` counts records still open.
    """

    __slots__ = (
        "tp",
        "records",
        "ts",
        "keys",
        "hdrs",
        "nbytes",
        "first_seen",
        "data",
        "count",
        "timestamps",
        "key_sizes",
        "value_sizes",
        "header_sizes",
        "base_offset",
        "error",
        "done",
        "attempts",
        "retry_at",
        "parent",
        "first",
        "offsets",
        "errors",
        "left",
    )

    def __init__(self, tp: TopicPartition):
        self.tp = tp
        # Lists while open, None once sealed; Any because send()'s fast path appends
        # to them without a check (a sealed batch is never open).
        self.records: Any = []  # the values column
        self.ts: Any = []
        self.keys: list | None = None  # created (back-filled with None) at the first key
        self.hdrs: list | None = None  # likewise at the first record with headers
        self.nbytes = 0
        self.first_seen: float | None = None
        self.data = b""
        self.count = 0
        self.timestamps: Any = ()
        self.key_sizes: list[int] | None = None
        self.value_sizes: list[int] = []
        self.header_sizes: list[int] | None = None
        self.base_offset = -1
        self.error: BaseException | None = None
        self.done = False
        self.attempts = 0
        self.retry_at = 0.0
        self.parent: ProducerBatch | None = None
        self.first = 0
        self.offsets: list[int] | None = None
        self.errors: list[BaseException | None] | None = None
        self.left = 0

    def seal(self) -> None:
        """Encode the records (I/O thread, after the batch left its partition's buffer)."""
        values, self.records = self.records, None
        ts, keys, headers = self.ts, self.keys, self.hdrs
        self.ts = self.keys = self.hdrs = None
        self.count = len(values)
        self.value_sizes = sizes = _sizes(values)
        self.data = encode_batch(ts, keys, values, headers, value_lengths=sizes)
        self.timestamps = ts
        self.key_sizes = _sizes(keys) if keys is not None else None
        self.header_sizes = _header_sizes(headers) if headers is not None else None

    def metadata(self, index: int) -> RecordMetadata:
        base = self.base_offset
        if self.offsets is not None:
            offset = self.offsets[index]
        else:
            offset = base + index if base >= 0 else -1
        return RecordMetadata(
            self.tp.topic,
            self.tp.partition,
            self.tp,
            offset,
            self.timestamps[index],
            None,
            self.key_sizes[index] if self.key_sizes is not None else -1,
            self.value_sizes[index],
            self.header_sizes[index] if self.header_sizes is not None else -1,
        )


class PartitionBuffer:
    """The open batch of one partition, and its full batches waiting to be sent."""

    __slots__ = ("tp", "lock", "open", "ready", "limit", "future_class")

    def __init__(self, tp: TopicPartition, limit: int, future_class: type):
        self.tp = tp
        self.lock = threading.Lock()
        self.open = ProducerBatch(tp)
        self.ready: deque[ProducerBatch] = deque()
        self.limit = limit
        self.future_class = future_class

    def append(self, record: tuple) -> FutureRecordMetadata:
        """Add ``(timestamp, key, value, headers, size)``; any thread. Returns its future."""
        timestamp, key, value, headers, size = record
        lock = self.lock
        lock.acquire()
        batch = self.open
        values = batch.records
        if batch.nbytes + size > self.limit and values:
            self.ready.append(batch)
            batch = self.open = ProducerBatch(self.tp)
            values = batch.records
        index = len(values)
        values.append(value)
        batch.ts.append(timestamp)
        if key is not None or batch.keys is not None:
            if batch.keys is None:
                batch.keys = [None] * index
            batch.keys.append(key)
        if headers is not None or batch.hdrs is not None:
            if batch.hdrs is None:
                batch.hdrs = [None] * index
            batch.hdrs.append(headers)
        batch.nbytes += size
        lock.release()
        return _new_tuple(self.future_class, (batch, index))

    def take_open(self, expected: ProducerBatch | None = None) -> ProducerBatch | None:
        """Swap in a fresh open batch; return the old one if it holds records.

        Returns None instead when a batch is queued in ``ready`` (it holds older records
        and must leave first) or the open batch is no longer ``expected`` (the one the
        caller looked at): ``send()`` may have filled and queued it meanwhile.
        """
        with self.lock:
            batch = self.open
            if not batch.records or self.ready or (expected is not None and batch is not expected):
                return None
            self.open = ProducerBatch(self.tp)
            return batch

    def buffered_bytes(self) -> int:
        # tuple(): see pending()
        return sum(b.nbytes for b in tuple(self.ready)) + self.open.nbytes

    def pending(self) -> int:
        # tuple(): a snapshot taken in one C call under the GIL; send() may append meanwhile
        return len(self.open.records or ()) + sum(len(b.records or ()) for b in tuple(self.ready))


class RecordAccumulator:
    def __init__(
        self,
        *,
        batch_size: int,
        max_request_size: int,
        linger_ms: float,
        buffer_memory: int,
        clock: Clock,
    ):
        self.batch_size = max(0, int(batch_size))
        self.max_request_size = int(max_request_size)
        self.limit = max(0, min(self.batch_size, self.max_request_size) - BATCH_OVERHEAD)
        self.linger = linger_ms / 1000.0
        self.buffer_memory = buffer_memory
        self._clock = clock
        self.cond = threading.Condition()
        self._callbacks: dict[ProducerBatch, list[tuple[int, Callable, bool]]] = {}
        self.buffers: list[PartitionBuffer] = []
        self.incomplete = 0  # sealed batches not yet acknowledged (I/O thread writes)
        self.in_flight_bytes = 0
        self.flushing = 0
        self.closing = False
        self.full = False  # buffered bytes over buffer_memory: send() must wait
        self.wake_on_append = True
        self.future_class = type(
            "FutureRecordMetadata",
            (FutureRecordMetadata,),
            {"__slots__": (), "_owner": self, "__module__": FutureRecordMetadata.__module__},
        )

    def new_buffer(self, tp: TopicPartition) -> PartitionBuffer:
        buf = PartitionBuffer(tp, self.limit, self.future_class)
        self.buffers = [*self.buffers, buf]  # replace, never mutate: drain iterates it
        return buf

    # -- I/O thread ------------------------------------------------------------

    def drain(
        self,
        now: float,
        budget: int,
        on_seal: Callable[[PartitionBuffer], None],
        out: list[ProducerBatch] | None = None,
        muted: set[TopicPartition] | None = None,
    ) -> tuple[list[ProducerBatch], float | None]:
        """Seal ready batches worth about ``budget`` bytes (at least one batch).

        Returns (batches, seconds until the next lingering batch is due, or None).
        Each batch is appended to ``out`` (when given) *before* it is sealed, so if
        anything here raises, the caller still holds every batch taken from a buffer
        and must complete them (``complete(batch, -1, error)``); none is lost.

        With ``muted`` (the sender keeps order under retries), partitions in it are
        skipped, and each partition this call takes a batch from is added to it: at
        most one batch per partition. The caller wakes up again when one is answered.
        """
        batches: list[ProducerBatch] = [] if out is None else out
        taken = len(batches)
        used = 0
        next_due = None
        buffered = 0
        force = self.flushing or self.closing or self.linger <= 0
        for buf in self.buffers:
            ready = buf.ready
            if muted is not None and buf.tp in muted:
                buffered += buf.buffered_bytes()
                continue
            while ready and (len(batches) == taken or used + ready[0].nbytes <= budget):
                used += self._seal(ready.popleft(), batches)
                on_seal(buf)
                if muted is not None:
                    muted.add(buf.tp)
                    break
            if muted is not None and buf.tp in muted:
                buffered += buf.buffered_bytes()
                continue
            if ready:
                next_due = 0.0  # more is ready than this request takes
                # tuple(): one C call under the GIL. A generator over the deque itself
                # let send() append in the middle: "deque mutated during iteration"
                buffered += sum(b.nbytes for b in tuple(ready))
                continue
            batch = buf.open
            if not batch.records:
                continue
            buffered += batch.nbytes
            if not force:
                if batch.first_seen is None:
                    batch.first_seen = now
                due = batch.first_seen + self.linger
                if now < due:
                    wait = due - now
                    next_due = wait if next_due is None else min(next_due, wait)
                    continue
            if len(batches) > taken and used + batch.nbytes > budget:
                next_due = 0.0
                continue
            taken_open = buf.take_open(batch)
            if taken_open is None:  # send() queued it meanwhile: the ready queue goes first
                next_due = 0.0
                continue
            batch = taken_open
            used += self._seal(batch, batches)
            on_seal(buf)
            if muted is not None:
                muted.add(buf.tp)
        self.full = buffered + self.in_flight_bytes > self.buffer_memory
        self.wake_on_append = next_due is None
        return batches, next_due

    def _seal(self, batch: ProducerBatch, out: list[ProducerBatch]) -> int:
        out.append(batch)  # first: if sealing fails, the caller fails the batch
        self.incomplete += 1
        try:
            batch.seal()
        except Exception:
            batch.data = b""  # in_flight_bytes never counted it
            raise
        self.in_flight_bytes += len(batch.data)
        return len(batch.data)

    def complete(
        self, batch: ProducerBatch, base_offset: int, error: BaseException | None = None
    ) -> None:
        """Resolve a batch's futures (I/O thread). Runs callbacks outside the lock.

        A batch already completed is left as it is (completing is idempotent). A
        part of a split batch records its outcome in the batch it came from, which
        completes once all its parts have."""
        if batch.parent is not None:
            self._complete_part(batch, base_offset, error)
            return
        with self.cond:
            if batch.done:
                return
            batch.base_offset = base_offset
            batch.error = error
            batch.done = True
            self.incomplete -= 1
            self.in_flight_bytes -= len(batch.data)
            batch.data = b""
            self.cond.notify_all()
            fire = self._callbacks.pop(batch, None) if self._callbacks else None
        for index, fn, is_errback in fire or ():
            _run_callback(batch, index, fn, is_errback)

    def split(self, batch: ProducerBatch) -> list[ProducerBatch]:
        """Two parts holding the records of ``batch`` (sealed, at least two records),
        to send instead of it after the broker refused it as too large (I/O thread).

        As the Java client does, halves are tried until every batch fits or holds a
        single record; the records' futures stay on the original batch.
        """
        root = batch.parent if batch.parent is not None else batch
        if root.offsets is None:
            root.offsets = [-1] * root.count
            root.errors = [None] * root.count
            root.left = root.count
        decoded = decode_batch(batch.data)
        keys = decoded.keys if any(k is not None for k in decoded.keys) else None
        headers = decoded.headers if any(decoded.headers) else None
        half = batch.count // 2
        parts = []
        for lo, hi in ((0, half), (half, batch.count)):
            part = ProducerBatch(batch.tp)
            part.records = part.ts = None
            part.parent = root
            part.first = batch.first + lo
            part.count = hi - lo
            part.data = encode_batch(
                decoded.timestamps[lo:hi],
                keys[lo:hi] if keys is not None else None,
                decoded.values[lo:hi],
                headers[lo:hi] if headers is not None else None,
            )
            parts.append(part)
        if batch is not root:
            batch.done, batch.data = True, b""  # replaced by its parts
        return parts

    def _complete_part(
        self, part: ProducerBatch, base_offset: int, error: BaseException | None
    ) -> None:
        root = part.parent
        assert root is not None, "a part always has its parent"
        assert root.offsets is not None, "split() gave the parent its offsets"
        assert root.errors is not None, "and its errors"
        with self.cond:
            if part.done or root.done:
                return
            part.done, part.data = True, b""
            first = part.first
            for i in range(part.count):
                root.offsets[first + i] = base_offset + i if base_offset >= 0 else -1
                root.errors[first + i] = error
            root.left -= part.count
            finished = root.left <= 0
        if finished:
            self.complete(root, root.offsets[0])

    # -- user threads ------------------------------------------------------------

    def add_callback(
        self, batch: ProducerBatch, index: int, fn: Callable, is_errback: bool
    ) -> None:
        with self.cond:
            if not batch.done:
                self._callbacks.setdefault(batch, []).append((index, fn, is_errback))
                return
        _run_callback(batch, index, fn, is_errback)

    def wait_for(self, batch: ProducerBatch, timeout: float | None) -> None:
        deadline = None if timeout is None else self._clock.monotonic() + timeout
        with self.cond:
            while not batch.done:
                if deadline is None:
                    self.cond.wait(1.0)
                    continue
                left = deadline - self._clock.monotonic()
                if left <= 0:
                    raise KafkaTimeoutError(f"Timeout after waiting for {timeout} secs.")
                self.cond.wait(left)

    def pending_records(self) -> int:
        return sum(buf.pending() for buf in self.buffers)

    def wait_idle(self, timeout: float | None) -> bool:
        """Block until nothing is buffered or in flight; False on timeout."""
        deadline = None if timeout is None else self._clock.monotonic() + timeout
        with self.cond:
            while self.incomplete > 0 or self.pending_records():
                left = 0.05 if deadline is None else min(0.05, deadline - self._clock.monotonic())
                if left <= 0:
                    return False
                self.cond.wait(left)
        return True

    def abort(self, error: BaseException) -> None:
        """Fail every record still buffered (close() after its timeout)."""
        for buf in self.buffers:
            batches = list(buf.ready)
            buf.ready.clear()
            batch = buf.take_open()
            if batch is not None:
                batches.append(batch)
            for batch in batches:
                batch.seal()
                self.incomplete += 1
                self.in_flight_bytes += len(batch.data)
                self.complete(batch, -1, error)


def _run_callback(batch: ProducerBatch, index: int, fn: Callable, is_errback: bool) -> None:
    error = _error_of(batch, index)
    try:
        if error is None and not is_errback:
            fn(batch.metadata(index))
        elif error is not None and is_errback:
            fn(error)
    except Exception:
        log.exception("Error in a send() callback %r", fn)
