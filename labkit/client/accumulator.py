"""The producer's record accumulator: per-partition batches, record futures.

(``ProducerBatch`` and ``FutureRecordMetadata`` live in producer_batch.py.)

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

import logging
import threading
from collections import deque
from collections.abc import Callable

from labkit._clock import Clock
from labkit.client.producer_batch import (
    FutureRecordMetadata,
    ProducerBatch,
    run_callback,
)
from labkit.client.structs import TopicPartition
from labkit.errors import KafkaTimeoutError
from labkit.protocol.records import decode_batch, encode_batch

log = logging.getLogger(__name__)

RECORD_OVERHEAD = 16  # timestamp (8) + length fields (4 + 4) in the columnar batch
BATCH_OVERHEAD = 44  # the batch header (labkit.protocol.records.HEADER_SIZE)
_new_tuple = tuple.__new__


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
        lock.acquire()  # try/finally, not 'with': ~120 ns less (see send())
        try:
            batch = self.open
            values = batch.records
            if batch.nbytes + size > self.limit and values:
                fresh = ProducerBatch(self.tp)  # first: if it raises, nothing moved
                self.ready.append(batch)
                batch = self.open = fresh
                values = batch.records
            # the open batch is never sealed (take_open swaps it out under this lock first)
            assert values is not None
            assert batch.ts is not None
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
        finally:
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
            taken_batch = buf.take_open(batch)
            if taken_batch is None:  # send() queued it meanwhile: the ready queue goes first
                next_due = 0.0
                continue
            used += self._seal(taken_batch, batches)
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
            run_callback(batch, index, fn, is_errback)

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
        # complete() calls this for parts only; split() gave their root offsets and errors
        assert root is not None
        assert root.offsets is not None
        assert root.errors is not None
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
        run_callback(batch, index, fn, is_errback)

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
