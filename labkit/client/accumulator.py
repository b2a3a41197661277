"""The producer's record accumulator: per-partition buffers, sealed batches, record futures.

Theory of operation
-------------------
``KafkaProducer.send()`` must be cheap, so it does almost nothing per record: it
appends one tuple ``(timestamp, key, value, headers, size, future)`` to the list of
the record's partition (``PartitionBuffer.records``). A list append is atomic under
the GIL, so several threads may send at once without a lock.

The I/O thread (``drain``) seals batches: it slices the first records off a buffer
(``chunk = records[:m]``, then ``del records[:k]``: both atomic; appends that happen
meanwhile land after index ``k`` and are kept), turns the row tuples into columns
with one ``zip(*chunk)``, cuts the batch at ``batch_size`` bytes and encodes it with
``labkit.protocol.records.encode_batch``. Only this thread removes records.

Each record's ``FutureRecordMetadata`` is a two-slot object: the sealing loop
stores its batch and its index in it. When the broker answers, ``complete`` marks
the batch done under the accumulator's condition variable and wakes ``get()``
callers; callbacks live in a side table (``_callbacks``) so a producer that never
registers one pays nothing for them. A ``RecordMetadata`` is only built when asked
for. Every producer gets its own ``FutureRecordMetadata`` subclass whose class
attribute ``_owner`` points back at its accumulator, so a future needs no per-record
reference to find the condition variable.
"""

from __future__ import annotations

import functools
import logging
import threading
from bisect import bisect_right
from collections.abc import Callable
from itertools import accumulate
from typing import Any

from labkit._clock import Clock
from labkit.client.structs import RecordMetadata, TopicPartition
from labkit.errors import KafkaTimeoutError
from labkit.protocol.records import encode_batch

log = logging.getLogger(__name__)

RECORD_OVERHEAD = 16  # timestamp (8) + length fields (4 + 4) in the columnar batch
BATCH_OVERHEAD = 44  # the batch header (labkit.protocol.records.HEADER_SIZE)


def _sizes(items) -> list[int]:
    if None in items:
        return [-1 if x is None else len(x) for x in items]
    return list(map(len, items))


def _header_sizes(headers) -> list[int]:
    return [sum(len(k.encode("utf-8")) + (len(v) if v is not None else 0) for k, v in h)
            if h else -1 for h in headers]


class FutureRecordMetadata:
    """The result of one ``send()``: resolves to ``RecordMetadata`` once acknowledged.

    kafka-python's API: ``get(timeout=None)``, ``is_done``, ``value``, ``exception``,
    ``succeeded()``, ``failed()``, ``add_callback(fn, *args)``, ``add_errback(fn, *args)``,
    ``add_both``. Callbacks run on the producer's I/O thread (as in kafka-python);
    keep them short.
    """

    __slots__ = ("_batch", "_index")
    _owner: RecordAccumulator  # set on the per-producer subclass

    @property
    def is_done(self) -> bool:
        batch = getattr(self, "_batch", None)
        return batch is not None and batch.done

    def succeeded(self) -> bool:
        return self.is_done and self._batch.error is None

    def failed(self) -> bool:
        return self.is_done and self._batch.error is not None

    def retriable(self) -> bool:
        return self.failed() and bool(getattr(self._batch.error, "retriable", False))

    @property
    def value(self) -> RecordMetadata | None:
        return self._batch.metadata(self._index) if self.succeeded() else None

    @property
    def exception(self) -> BaseException | None:
        return self._batch.error if self.is_done else None

    def get(self, timeout: float | None = None) -> RecordMetadata:
        """Block until acknowledged; return RecordMetadata.

        Raises the send's error, or KafkaTimeoutError after ``timeout`` seconds.
        """
        if not self.is_done:
            self._owner.wait_for(self, timeout)
        batch = self._batch
        if batch.error is not None:
            raise batch.error
        return batch.metadata(self._index)

    def add_callback(self, fn: Callable, *args: Any, **kwargs: Any) -> FutureRecordMetadata:
        """Call ``fn(*args, record_metadata, **kwargs)`` when the record is acknowledged."""
        if args or kwargs:
            fn = functools.partial(fn, *args, **kwargs)
        self._owner.add_callback(self, fn, False)
        return self

    def add_errback(self, fn: Callable, *args: Any, **kwargs: Any) -> FutureRecordMetadata:
        """Call ``fn(*args, exception, **kwargs)`` if the send fails."""
        if args or kwargs:
            fn = functools.partial(fn, *args, **kwargs)
        self._owner.add_callback(self, fn, True)
        return self

    def add_both(self, fn: Callable, *args: Any, **kwargs: Any) -> FutureRecordMetadata:
        self.add_callback(fn, *args, **kwargs)
        return self.add_errback(fn, *args, **kwargs)

    def __repr__(self) -> str:
        state = "done" if self.is_done else "pending"
        return f"<FutureRecordMetadata {state}>"


class ProducerBatch:
    """One sealed batch: the encoded bytes plus what is needed to answer futures."""

    __slots__ = ("tp", "data", "count", "futures", "timestamps", "key_sizes", "value_sizes",
                 "header_sizes", "base_offset", "error", "done", "attempts", "retry_at")

    def __init__(self, tp: TopicPartition, data: bytes, futures, timestamps, key_sizes,
                 value_sizes, header_sizes):
        self.tp = tp
        self.data = data
        self.count = len(futures)
        self.futures = futures
        self.timestamps = timestamps
        self.key_sizes = key_sizes
        self.value_sizes = value_sizes
        self.header_sizes = header_sizes
        self.base_offset = -1
        self.error: BaseException | None = None
        self.done = False
        self.attempts = 0
        self.retry_at = 0.0

    def metadata(self, index: int) -> RecordMetadata:
        base = self.base_offset
        return RecordMetadata(
            self.tp.topic, self.tp.partition, self.tp, base + index if base >= 0 else -1,
            self.timestamps[index], None,
            self.key_sizes[index] if self.key_sizes is not None else -1,
            self.value_sizes[index],
            self.header_sizes[index] if self.header_sizes is not None else -1)


class PartitionBuffer:
    """Records of one partition waiting to be sealed into a batch."""

    __slots__ = ("tp", "records", "first_seen", "avg_size", "full_count")

    def __init__(self, tp: TopicPartition, batch_size: int):
        self.tp = tp
        self.records: list[tuple] = []
        self.first_seen: float | None = None
        self.avg_size = 128.0
        self.full_count = max(1, int(batch_size // self.avg_size))


class RecordAccumulator:
    def __init__(self, *, batch_size: int, max_request_size: int, linger_ms: float,
                 buffer_memory: int, clock: Clock):
        self.batch_size = max(1, int(batch_size))
        self.max_request_size = int(max_request_size)
        self.linger = linger_ms / 1000.0
        self.buffer_memory = buffer_memory
        self._clock = clock
        self.cond = threading.Condition()
        self._callbacks: dict[FutureRecordMetadata, list[tuple[Callable, bool]]] = {}
        self.buffers: list[PartitionBuffer] = []
        self.incomplete = 0  # sealed batches not yet acknowledged (I/O thread writes)
        self.in_flight_bytes = 0
        self.flushing = 0
        self.closing = False
        self.full = False  # buffered bytes over buffer_memory: send() must wait
        self.wake_on_append = True
        self.future_class = type("FutureRecordMetadata", (FutureRecordMetadata,),
                                 {"__slots__": (), "_owner": self,
                                  "__module__": FutureRecordMetadata.__module__})

    def new_buffer(self, tp: TopicPartition) -> PartitionBuffer:
        buf = PartitionBuffer(tp, self.batch_size)
        self.buffers = [*self.buffers, buf]  # replace, never mutate: drain iterates it
        return buf

    # -- I/O thread ------------------------------------------------------------

    def drain(self, now: float, budget: int, on_seal: Callable[[PartitionBuffer], None]
              ) -> tuple[list[ProducerBatch], float | None]:
        """Seal ready batches worth at most ``budget`` bytes (at least one batch).

        Returns (batches, seconds until the next lingering buffer is due, or None).
        """
        batches: list[ProducerBatch] = []
        used = 0
        next_due = None
        buffered = 0.0
        force = self.flushing or self.closing or self.linger <= 0
        for buf in self.buffers:
            records = buf.records
            if not records:
                buf.first_seen = None
                continue
            buffered += len(records) * buf.avg_size
            if not force:
                if buf.first_seen is None:
                    buf.first_seen = now
                due = buf.first_seen + self.linger
                if now < due and len(records) < buf.full_count:
                    wait = due - now
                    next_due = wait if next_due is None else min(next_due, wait)
                    continue
            while records and (not batches or used < budget):
                batch = self._seal(buf, budget - used if batches else self.max_request_size)
                if batch is None:
                    break
                batches.append(batch)
                used += len(batch.data)
                on_seal(buf)
            if records:
                next_due = 0.0  # ready, but this request is full
            else:
                buf.first_seen = None
        self.full = buffered + self.in_flight_bytes > self.buffer_memory
        self.wake_on_append = next_due is None
        return batches, next_due

    def _seal(self, buf: PartitionBuffer, room: int) -> ProducerBatch | None:
        records = buf.records
        limit = min(self.batch_size, room) - BATCH_OVERHEAD
        estimate = int(self.batch_size / buf.avg_size * 1.25) + 8
        chunk = records[:estimate]
        ts, keys, values, headers, sizes, futures = zip(*chunk, strict=False)
        cumulative = list(accumulate(sizes))
        k = bisect_right(cumulative, limit)
        if k == 0:  # the first record alone is larger than batch_size: a batch of its own
            if cumulative[0] + BATCH_OVERHEAD > room and room < self.max_request_size:
                return None  # does not fit in this request; the next one takes it
            k = 1
        if k < len(chunk):
            ts, keys, values, headers, futures = ts[:k], keys[:k], values[:k], headers[:k], futures[:k]
        del records[:k]
        buf.avg_size = max(16.0, cumulative[k - 1] / k)
        buf.full_count = max(1, int(self.batch_size // buf.avg_size))
        if keys.count(None) == k:
            keys = None
        if headers.count(None) == k:
            headers = None
        data = encode_batch(ts, keys, values, headers)
        batch = ProducerBatch(buf.tp, data, futures, ts,
                              _sizes(keys) if keys is not None else None, _sizes(values),
                              _header_sizes(headers) if headers is not None else None)
        for index, future in enumerate(futures):
            future._index = index
            future._batch = batch
        self.incomplete += 1
        self.in_flight_bytes += len(data)
        return batch

    def complete(self, batch: ProducerBatch, base_offset: int,
                 error: BaseException | None = None) -> None:
        """Resolve a batch's futures (I/O thread). Runs callbacks outside the lock."""
        with self.cond:
            batch.base_offset = base_offset
            batch.error = error
            batch.done = True
            self.incomplete -= 1
            self.in_flight_bytes -= len(batch.data)
            batch.data = b""
            self.cond.notify_all()
            fire = None
            if self._callbacks:
                pop = self._callbacks.pop
                fire = [(f, pop(f)) for f in batch.futures if f in self._callbacks]
        if fire:
            for future, fns in fire:
                for fn, is_errback in fns:
                    _run_callback(future, fn, is_errback)

    # -- user threads ------------------------------------------------------------

    def add_callback(self, future: FutureRecordMetadata, fn: Callable, is_errback: bool) -> None:
        with self.cond:
            if not future.is_done:
                self._callbacks.setdefault(future, []).append((fn, is_errback))
                return
        _run_callback(future, fn, is_errback)

    def wait_for(self, future: FutureRecordMetadata, timeout: float | None) -> None:
        deadline = None if timeout is None else self._clock.monotonic() + timeout
        with self.cond:
            while not future.is_done:
                if deadline is None:
                    self.cond.wait(1.0)
                    continue
                left = deadline - self._clock.monotonic()
                if left <= 0:
                    raise KafkaTimeoutError(f"Timeout after waiting for {timeout} secs.")
                self.cond.wait(left)

    def pending_records(self) -> int:
        return sum(len(buf.records) for buf in self.buffers)

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


def _run_callback(future: FutureRecordMetadata, fn: Callable, is_errback: bool) -> None:
    batch = future._batch
    try:
        if batch.error is None and not is_errback:
            fn(batch.metadata(future._index))
        elif batch.error is not None and is_errback:
            fn(batch.error)
    except Exception:
        log.exception("Error in a send() callback %r", fn)
