"""One producer batch and the futures of its records (used by the accumulator).

Theory of operation
-------------------
A ``ProducerBatch`` is open while ``send()`` appends to its columns (values,
timestamps, and keys/headers once a record has them) under its partition's lock,
then sealed once by the I/O thread: encoded into the bytes of one record batch,
keeping only the columns a ``RecordMetadata`` needs. ``FutureRecordMetadata`` is the
2-tuple ``(batch, index)`` ``send()`` returns: it owns nothing, and asks the batch
(done? error? offset?) and the accumulator (wait, callbacks) when asked. A split
batch (too large for the broker) keeps its futures; its parts write each record's
outcome back into it (``offsets``/``errors``).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any, Protocol

from labkit.client.structs import RecordMetadata, TopicPartition
from labkit.protocol.records import encode_batch

log = logging.getLogger(__name__)


class _Owner(Protocol):
    """What a future asks of its producer's accumulator."""

    def wait_for(self, batch: ProducerBatch, timeout: float | None) -> None: ...

    def add_callback(
        self, batch: ProducerBatch, index: int, fn: Callable, is_errback: bool
    ) -> None: ...


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
    _owner: _Owner  # the RecordAccumulator, set on the per-producer subclass

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
        "producer_id",
        "sequence",
    )

    def __init__(self, tp: TopicPartition):
        self.tp = tp
        self.records: list | None = []  # the values column while open; None once sealed
        self.ts: list | None = []
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
        self.producer_id = -1  # idempotence: the id and first sequence it was sent with
        self.sequence = -1

    def seal(self) -> None:
        """Encode the records (I/O thread, after the batch left its partition's buffer)."""
        values, self.records = self.records, None
        ts, keys, headers = self.ts, self.keys, self.hdrs
        self.ts = self.keys = self.hdrs = None
        # the accumulator seals a batch once, after it left its partition's buffer
        assert values is not None, "a batch sealed twice"
        assert ts is not None
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


def run_callback(batch: ProducerBatch, index: int, fn: Callable, is_errback: bool) -> None:
    error = _error_of(batch, index)
    try:
        if error is None and not is_errback:
            fn(batch.metadata(index))
        elif error is not None and is_errback:
            fn(error)
    except Exception:
        log.exception("Error in a send() callback %r", fn)
