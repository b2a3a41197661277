"""``KafkaProducer``: kafka-python's producer API on labkit's transport.

Theory of operation
-------------------
``send()`` serializes the key and value, picks a partition and appends the record
to that partition's buffer in the ``RecordAccumulator``; it returns a
``FutureRecordMetadata`` at once. The common case (a value only, to a topic
already known) takes an inlined fast path; everything else goes through
``_send``, which validates and partitions in full. The transport's I/O thread runs the ``Sender``
driver, which seals buffers into record batches (``batch_size`` bytes, after
``linger_ms``) and sends ``produce`` requests with several in flight. Nothing on
the per-record path takes a lock or packs bytes.

Topic metadata is fetched (blocking, at most ``max_block_ms``) on the first send to
a topic, with auto-creation allowed as in kafka-python; the topic's state is then
read without locks (``self._topics`` is replaced, never mutated).

Records still buffered when the interpreter exits are flushed by an ``atexit``
hook (bounded by ``request_timeout_ms``), so a script that ends right after
``send()`` does not lose them. ``close()`` flushes too.

Serializer calls, record and settings checks: producer_checks.py. (About 490 lines:
``send()``'s fast path repeats ``PartitionBuffer.append`` inline, as measured.)
"""

from __future__ import annotations

import atexit
import itertools
import logging
import random
import threading
import weakref
from typing import Any, ClassVar

from labkit._clock import REAL_CLOCK, Clock
from labkit.client import config as cfg
from labkit.client.accumulator import (
    RECORD_OVERHEAD,
    PartitionBuffer,
    ProducerBatch,
    RecordAccumulator,
)
from labkit.client.backend import on_kafka
from labkit.client.metadata import ClusterMetadata, refresh, topic_error
from labkit.client.partitioner import DefaultPartitioner
from labkit.client.producer_checks import (
    bytes_or_error,
    check_idempotence,
    headers_size,
    parse_acks,
    serialize,
    serializer,
)
from labkit.client.sender import Sender
from labkit.client.structs import TopicPartition
from labkit.client.transport import Transport
from labkit.errors import (
    IllegalStateError,
    KafkaConfigurationError,
    KafkaTimeoutError,
    MessageSizeTooLargeError,
    UnknownTopicOrPartitionError,
    UnsupportedCodecError,
)

log = logging.getLogger(__name__)
_IDS = itertools.count(1)
_new_tuple = tuple.__new__


class _TopicState:
    __slots__ = ("name", "n", "buffers", "all", "sticky")

    def __init__(self, name: str, buffers: list[PartitionBuffer]):
        self.name = name
        self.buffers = buffers
        self.n = len(buffers)
        self.all = list(range(self.n))
        self.sticky = random.randrange(self.n)


class KafkaProducer:
    """Publish records to the broker (kafka-python's ``KafkaProducer``).

    Keyword arguments are kafka-python's (``bootstrap_servers``, ``key_serializer``,
    ``value_serializer``, ``acks``, ``linger_ms``, ``batch_size``, ...); see
    ``DEFAULT_CONFIG``. Raises KafkaConfigurationError for an unknown or invalid
    setting and NoBrokersAvailable when no broker answers (after
    ``api_version_auto_timeout_ms`` when nothing listens, else ``request_timeout_ms``).
    """

    DEFAULT_CONFIG: ClassVar[dict[str, Any]] = {
        "key_serializer": None,
        "value_serializer": None,
        "acks": -1,  # kafka-python 3.0 (KIP-679): 'all'
        "bootstrap_topics_filter": set(),
        "compression_type": None,
        "retries": 0,
        "batch_size": 16384,
        "linger_ms": 0,
        "partitioner": None,  # None -> DefaultPartitioner()
        "buffer_memory": 33554432,
        "max_block_ms": 60000,
        "max_request_size": 1048576,
        "allow_auto_create_topics": True,
        "enable_idempotence": False,
        "delivery_timeout_ms": 120000,
        "transactional_id": None,
        "transaction_timeout_ms": 60000,
    }

    def __new__(cls, *args: Any, **configs: Any) -> Any:
        if cls is KafkaProducer and "clock" not in configs and on_kafka(configs):
            from labkit.client.delegate import DelegatingProducer

            return DelegatingProducer(cls, *args, **configs)  # a Kafka broker that is not labkit
        return super().__new__(cls)

    def __init__(self, *, clock: Clock = REAL_CLOCK, **configs: Any):
        self.config = config = cfg.resolve("KafkaProducer", self.DEFAULT_CONFIG, configs)
        cfg.check_numbers(
            config,
            {
                "batch_size": 0,
                "linger_ms": 0,
                "max_block_ms": 0,
                "max_request_size": 1,
                "buffer_memory": 1,
                "retries": 0,
                "max_in_flight_requests_per_connection": 1,
            },
        )
        self._acks = parse_acks(config["acks"])
        if config["compression_type"] is not None:
            raise UnsupportedCodecError(
                f"compression_type={config['compression_type']!r}: labkit's producer does not "
                "compress batches; leave compression_type out (or set it to None)."
            )
        if config["transactional_id"] is not None:
            raise KafkaConfigurationError("labkit has no transactions: remove transactional_id")
        check_idempotence(config, self._acks, configs)
        self._key_serializer = serializer(config["key_serializer"], "key_serializer")
        self._value_serializer = serializer(config["value_serializer"], "value_serializer")
        partitioner = config["partitioner"]
        if partitioner is None:
            partitioner = config["partitioner"] = DefaultPartitioner()
        if not callable(partitioner):
            raise KafkaConfigurationError(
                "partitioner must be callable as partitioner(key_bytes, all_partitions, "
                "available_partitions) -> partition"
            )
        self._partitioner = partitioner
        self._default_partitioner = type(partitioner) is DefaultPartitioner
        if config["client_id"] is None:
            config["client_id"] = f"kafka-python-producer-{next(_IDS)}"
        self._clock = clock  # injectable for tests (keyword-only, undocumented)
        self._time_ns = self._clock.time_ns
        self._max_request_size = int(config["max_request_size"])
        self._max_block = config["max_block_ms"] / 1000.0
        self._closed = False
        self._topics: dict[str, _TopicState] = {}
        self._topics_lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._cluster = ClusterMetadata()
        self._acc = RecordAccumulator(
            batch_size=config["batch_size"],
            max_request_size=self._max_request_size,
            linger_ms=config["linger_ms"],
            buffer_memory=config["buffer_memory"],
            clock=self._clock,
        )
        self._transport = Transport(
            config["bootstrap_servers"],
            client_id=config["client_id"],
            request_timeout_ms=config["request_timeout_ms"],
            connect_timeout_ms=config["api_version_auto_timeout_ms"],
            reconnect_backoff_ms=config["reconnect_backoff_ms"],
            reconnect_backoff_max_ms=config["reconnect_backoff_max_ms"],
            clock=self._clock,
            name="producer",
        )
        ref = weakref.ref(self)
        self._sender = Sender(
            self._transport,
            self._acc,
            self._cluster,
            acks=self._acks,
            retries=config["retries"],
            retry_backoff_ms=config["retry_backoff_ms"],
            request_timeout_ms=config["request_timeout_ms"],
            max_in_flight=config["max_in_flight_requests_per_connection"],
            idempotence=config["enable_idempotence"],
            delivery_timeout_ms=config["delivery_timeout_ms"],
            metadata_max_age_ms=config["metadata_max_age_ms"],
            on_metadata=lambda header: _call_alive(ref, "_on_metadata", header),
            on_seal=lambda buf: _call_alive(ref, "_on_seal", buf),
        )
        self._transport.add_driver(self._sender)
        self._cleanup = _cleanup_hook(ref, config["request_timeout_ms"] / 1000.0)
        atexit.register(self._cleanup)

    # -- send ------------------------------------------------------------------

    def send(
        self,
        topic: str,
        value: Any = None,
        key: Any = None,
        headers: Any = None,
        partition: int | None = None,
        timestamp_ms: int | None = None,
    ):
        """Queue one record; return a ``FutureRecordMetadata`` at once (raises: see _send)."""
        if (
            key is None
            and headers is None
            and partition is None
            and timestamp_ms is None
            and not self._closed
        ):
            # fast path: PartitionBuffer.append inlined for a value-only record (a
            # key_serializer is called on the None key too, as in kafka-python: _send)
            vs = self._value_serializer
            if vs is not None and value is not None:
                value = vs(value)
            st = self._topics.get(topic)
            if type(value) is bytes and st is not None and self._key_serializer is None:
                size = len(value) + RECORD_OVERHEAD
                if size <= self._max_request_size:
                    buf = st.buffers[st.sticky]
                    now = self._time_ns() // 1_000_000
                    # acquire/try/finally, not 'with': as safe, and 'with' on a Lock costs
                    # ~120 ns more per call on CPython 3.11: +17 % of send() (benchmarks/NOTES.md)
                    lock = buf.lock
                    lock.acquire()
                    try:
                        batch = buf.open
                        values = batch.records
                        if batch.nbytes + size > buf.limit and values:
                            fresh = ProducerBatch(buf.tp)  # first: if it raises, nothing moved
                            buf.ready.append(batch)
                            batch = buf.open = fresh
                            values = batch.records
                        # the open batch is never sealed (take_open swaps it out first)
                        assert values is not None
                        assert batch.ts is not None
                        index = len(values)
                        values.append(value)
                        batch.ts.append(now)
                        if batch.keys is not None:
                            batch.keys.append(None)
                        if batch.hdrs is not None:
                            batch.hdrs.append(None)
                        batch.nbytes += size
                    finally:
                        lock.release()
                    if self._transport._sleeping and (self._acc.wake_on_append or buf.ready):
                        self._transport.wakeup()
                    if self._acc.full:
                        self._wait_for_space()
                    return _new_tuple(buf.future_class, (batch, index))
            return self._send(topic, value, None, None, None, None, True)
        return self._send(topic, value, key, headers, partition, timestamp_ms, False)

    def _send(
        self,
        topic: str,
        value: Any,
        key: Any,
        headers: Any,
        partition: int | None,
        timestamp_ms: int | None,
        serialized: bool,
    ):
        """Queue one record; return a ``FutureRecordMetadata`` at once.

        Raises TypeError when the value/key is not bytes and no serializer is set,
        InvalidTopicError for a bad topic name, MessageSizeTooLargeError for a record
        over ``max_request_size``, UnknownTopicOrPartitionError for a partition the
        topic does not have, KafkaTimeoutError when metadata or buffer space takes
        longer than ``max_block_ms``, IllegalStateError after ``close()``.
        """
        if self._closed:
            raise IllegalStateError("KafkaProducer already closed! Create a new one to send.")
        if value is None and key is None:
            raise ValueError("Need at least one: key or value")
        # the serializers see None too, as in kafka-python: a JSON value_serializer
        # turns value=None into b"null", not a tombstone (send value=None without one)
        if not serialized and self._value_serializer is not None:
            value = serialize(self._value_serializer, value, "value")
        if value is not None and type(value) is not bytes:
            value = bytes_or_error(value, "value", self._value_serializer)
        ks = self._key_serializer
        if ks is not None:
            key = serialize(ks, key, "key")
        if key is not None and type(key) is not bytes:
            key = bytes_or_error(key, "key", ks)
        st = self._topics.get(topic)
        if st is None:
            st = self._topic_state(topic)
        size = RECORD_OVERHEAD + (len(value) if value is not None else 0)
        if key is not None:
            size += len(key)
        if headers:
            size += headers_size(headers)
        else:
            headers = None
        if size > self._max_request_size:
            raise MessageSizeTooLargeError(
                f"The message is {size} bytes when serialized which is larger than the maximum "
                f"request size you have configured with the max_request_size configuration "
                f"({self._max_request_size}). Send smaller records or raise max_request_size "
                "(the broker's message.max.bytes limits it too)."
            )
        if partition is None:
            if key is None:
                partition = st.sticky
            elif self._default_partitioner:
                partition = self._partitioner.index(key, st.n)
            else:
                partition = self._partitioner(key, st.all, st.all)
        elif type(partition) is not int or not 0 <= partition < st.n:
            raise UnknownTopicOrPartitionError(
                f"topic '{topic}' has partitions 0..{st.n - 1}; there is no partition "
                f"{partition!r}. Add partitions with `labkit topics --alter --topic {topic} "
                "--partitions N` or leave partition=None."
            )
        if timestamp_ms is None:
            timestamp_ms = self._time_ns() // 1_000_000
        buf = st.buffers[partition]
        future = buf.append((timestamp_ms, key, value, headers, size))
        if self._transport._sleeping and (self._acc.wake_on_append or buf.ready):
            self._transport.wakeup()
        if self._acc.full:
            self._wait_for_space()
        return future

    def _topic_state(self, topic: str) -> _TopicState:
        cfg.validate_topic(topic)
        with self._topics_lock:
            st = self._topics.get(topic)
            if st is not None:
                return st
            n = self._cluster.num_partitions(topic)
            if not n:
                n = self._fetch_partitions(topic)
            buffers = [self._acc.new_buffer(TopicPartition(topic, p)) for p in range(n)]
            st = _TopicState(topic, buffers)
            self._topics = {**self._topics, topic: st}
            return st

    def _fetch_partitions(self, topic: str) -> int:
        deadline = self._clock.monotonic() + self._max_block
        while True:
            left = deadline - self._clock.monotonic()
            if left <= 0:
                raise KafkaTimeoutError(
                    f"Failed to update metadata after {self._max_block:.1f} secs. (topic '{topic}')"
                )
            header = refresh(
                self._transport,
                self._cluster,
                [topic],
                self.config["allow_auto_create_topics"],
                self._clock.monotonic(),
                timeout_ms=min(left, self._transport.request_timeout) * 1000,
            )
            error = topic_error(header, topic)
            n = self._cluster.num_partitions(topic)
            if n:
                return n
            if (error is not None and not getattr(error, "retriable", False)) or isinstance(
                error, UnknownTopicOrPartitionError
            ):
                raise error
            self._clock_sleep(self.config["retry_backoff_ms"] / 1000.0)

    @staticmethod
    def _clock_sleep(seconds: float) -> None:
        threading.Event().wait(seconds)

    def _wait_for_space(self) -> None:
        deadline = self._clock.monotonic() + self._max_block
        with self._acc.cond:
            while self._acc.full:
                self._transport.wakeup()
                left = deadline - self._clock.monotonic()
                if left <= 0:
                    raise KafkaTimeoutError(
                        f"Failed to allocate memory within the configured max blocking time "
                        f"{self.config['max_block_ms']} ms: more than buffer_memory bytes are "
                        "waiting to be sent. Is the broker keeping up?"
                    )
                self._acc.cond.wait(min(left, 0.01))

    # -- I/O-thread hooks ----------------------------------------------------------

    def _on_metadata(self, header: dict) -> None:
        for name, st in list(self._topics.items()):
            n = self._cluster.num_partitions(name)
            if n and n > st.n:
                new = [self._acc.new_buffer(TopicPartition(name, p)) for p in range(st.n, n)]
                st.buffers = st.buffers + new  # grow buffers before n: send() reads n first
                st.all = list(range(n))
                st.n = n
                log.info("topic '%s' now has %d partitions", name, n)

    def _on_seal(self, buf: PartitionBuffer) -> None:
        st = self._topics.get(buf.tp.topic)
        if st is not None and st.n > 1 and st.sticky == buf.tp.partition:
            choice = random.randrange(st.n - 1)
            st.sticky = choice if choice < buf.tp.partition else choice + 1

    # -- flush / close / info ------------------------------------------------------

    def flush(self, timeout: float | None = None) -> None:
        """Send everything buffered now (ignoring linger_ms) and wait for the answers.

        Raises KafkaTimeoutError if that takes longer than ``timeout`` seconds.
        """
        with self._flush_lock:
            self._acc.flushing += 1
        try:
            self._transport.wakeup()
            if not self._acc.wait_idle(timeout):
                raise KafkaTimeoutError(
                    f"Timeout after waiting for {timeout} secs. "
                    "(flush: records are still waiting for the broker)"
                )
        finally:
            with self._flush_lock:
                self._acc.flushing -= 1

    def close(self, timeout: float | None = None) -> None:
        """Flush (waiting at most ``timeout`` seconds), then release the connection.

        Records that could not be sent in time fail with KafkaTimeoutError.
        """
        if self._closed:
            return
        self._closed = True
        if self._cleanup is not None:
            atexit.unregister(self._cleanup)
            self._cleanup = None
        self._acc.closing = True
        self._transport.wakeup()
        if not self._acc.wait_idle(timeout):
            log.warning(
                "KafkaProducer.close: %d records were not acknowledged within %s s",
                self._acc.pending_records() + self._acc.incomplete,
                timeout,
            )
        self._transport.close()  # joins the I/O thread: nothing drains after this
        error = KafkaTimeoutError("the producer was closed before this record was sent")
        self._sender.abort(error)
        self._acc.abort(error)

    def partitions_for(self, topic: str) -> set[int]:
        """The partition ids of ``topic`` (fetching metadata, auto-creating like send())."""
        return set(range(self._topic_state(topic).n))

    def bootstrap_connected(self) -> bool:
        return self._transport.connected

    def metrics(self, raw: bool = False) -> dict[str, dict[str, Any]]:
        """A minimal metrics map (kafka-python's is much larger)."""
        return {
            "producer-metrics": {
                "records-buffered": self._acc.pending_records(),
                "batches-in-flight": self._acc.incomplete,
                "connection-count": 1 if self._transport.connected else 0,
            }
        }

    def __enter__(self) -> KafkaProducer:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        if not getattr(self, "_closed", True) and hasattr(self, "_cleanup"):
            try:
                self.close(timeout=1)
            except Exception:  # noqa: BLE001 - interpreter shutdown: nothing useful left to do
                pass

    def __repr__(self) -> str:
        return (
            f"<KafkaProducer client_id={self.config['client_id']!r} "
            f"broker={self._transport.address}>"
        )


def _call_alive(ref: weakref.ref, method: str, arg: Any) -> None:
    obj = ref()
    if obj is not None:
        getattr(obj, method)(arg)


def _cleanup_hook(ref: weakref.ref, timeout: float):
    def cleanup() -> None:
        producer = ref()
        if producer is not None and not producer._closed:
            pending = producer._acc.pending_records() + producer._acc.incomplete
            if pending:
                log.info("flushing %d buffered records before exit", pending)
            producer.close(timeout=timeout)

    return cleanup
