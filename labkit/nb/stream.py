"""``nb.EventStream``: send generated events to a topic from a background thread.

Theory of operation
-------------------
An ``EventStream`` wraps one iterator of events (e.g. ``nb.transactions()``) and
one producer. ``start()`` creates the producer if it was given a bootstrap address
(so "no broker" is reported in the cell that called ``start()``), then starts one
daemon thread named ``labkit-eventstream``. The thread sends event after event
with ``producer.send(topic, value=event, key=key(event))``; with a ``rate`` it
paces them at ``start + n / rate`` on the injected clock, sleeping in
``stop_event.wait()`` so ``stop()`` interrupts a sleep at once; with
``rate=None`` it sends as fast as the producer takes them.

``stop()`` sets the stop event, joins the thread, flushes, and closes the
producer if the stream created it. ``start()`` after ``stop()`` continues with
the next event of the same iterator, so a notebook can pause and resume a stream;
``sent`` counts every event handed to the producer since the stream was made.
When the iterator is exhausted the thread flushes and ends by itself
(``join()`` waits for that). The first error -- a failed send, a failed
delivery reported to a future's errback, a serializer that raised -- stops the
thread and is kept in ``error``; ``join()`` re-raises it.

Threads and locks: at most one sender thread per stream; ``_lock`` guards
``sent``, ``error`` and the thread handle. Every running stream is listed in a
weak set, and ``stop_all()`` stops them (handy before re-running a notebook).
"""

from __future__ import annotations

import json
import threading
import weakref
from collections.abc import Callable, Iterable
from typing import Any

from labkit._address import bootstrap_list
from labkit._clock import REAL_CLOCK, Clock
from labkit.errors import IllegalArgumentError, IllegalStateError
from labkit.i18n import _

THREAD_NAME = "labkit-eventstream"
_STREAMS: weakref.WeakSet = weakref.WeakSet()


def bootstrap_servers() -> str:
    """The broker address notebooks should use: ``$LABKIT_BOOTSTRAP`` or ``localhost:9092``."""
    return ",".join(bootstrap_list())


def json_serializer(value: Any) -> bytes:
    """The course's JSON value serializer (UTF-8, non-ASCII kept as is)."""
    return json.dumps(value, ensure_ascii=False).encode("utf-8")


def stop_all() -> int:
    """Stop every running ``EventStream``; returns how many were running."""
    running = [s for s in list(_STREAMS) if s.running]
    for stream in running:
        stream.stop()
    return len(running)


def _configured(producer: Any, name: str) -> bool | None:
    config = getattr(producer, "config", None)
    if isinstance(config, dict):
        return config.get(name) is not None
    return None


class EventStream:
    """Send ``events`` to ``topic`` in the background at ``rate`` events/s (None = flat out).

    ``producer_or_bootstrap`` is a ``KafkaProducer`` (kept open on stop), or a
    bootstrap address / list / None (``$LABKIT_BOOTSTRAP``): then the stream makes
    its own producer with a JSON value serializer and closes it on ``stop()``.
    ``key`` is a function of the event, or the name of a field (``key="user_id"``).
    Raises ``IllegalArgumentError`` for a bad rate, topic or key.
    """

    def __init__(
        self,
        producer_or_bootstrap: Any,
        topic: str,
        events: Iterable[Any],
        *,
        rate: float | None = 10.0,
        key: Callable[[Any], Any] | str | None = None,
        clock: Clock = REAL_CLOCK,
    ):
        if not isinstance(topic, str) or not topic:
            raise IllegalArgumentError(
                _("topic must be a non-empty string, got {topic!r}").format(topic=topic)
            )
        if rate is not None and (not isinstance(rate, int | float) or not rate > 0):
            raise IllegalArgumentError(
                _(
                    "rate is events per second and must be > 0, or None to send as fast as possible; got {rate!r}"
                ).format(rate=rate)
            )
        if isinstance(key, str):
            field = key
            key = lambda event: event[field]  # noqa: E731
        elif key is not None and not callable(key):
            raise IllegalArgumentError(
                _(
                    "key must be a function of the event (key=lambda e: e['user_id']) or a field name (key='user_id'), got {key!r}"
                ).format(key=key)
            )
        self.topic = topic
        self.rate = None if rate is None else float(rate)
        self._key_fn = key
        self._clock = clock
        self._events = iter(events)
        self._given = producer_or_bootstrap if hasattr(producer_or_bootstrap, "send") else None
        self._bootstrap = None if self._given is not None else producer_or_bootstrap
        self._producer: Any = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._sent = 0
        self._error: BaseException | None = None
        self.exhausted = False
        _STREAMS.add(self)

    # -- state ---------------------------------------------------------------

    @property
    def sent(self) -> int:
        """How many events were handed to the producer so far (across restarts)."""
        with self._lock:
            return self._sent

    @property
    def error(self) -> BaseException | None:
        """The error that stopped the stream, if any."""
        with self._lock:
            return self._error

    @property
    def running(self) -> bool:
        with self._lock:
            return self._thread is not None and self._thread.is_alive()

    def __repr__(self) -> str:
        state = "running" if self.running else ("finished" if self.exhausted else "stopped")
        if self.error is not None:
            state = f"failed: {self.error}"
        rate = "as fast as possible" if self.rate is None else f"{self.rate:g}/s"
        return f"<EventStream topic={self.topic!r} rate={rate} sent={self.sent} {state}>"

    # -- control -------------------------------------------------------------

    def start(self) -> EventStream:
        """Start sending in a background thread; returns the stream. No-op if running.

        Raises ``IllegalStateError`` if the stream already failed (make a new one).
        """
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return self
            if self._error is not None:
                raise IllegalStateError(
                    _(
                        "this EventStream stopped with an error ({error}); fix it and create a new EventStream"
                    ).format(error=self._error)
                )
        if self._producer is None:
            self._producer = self._given if self._given is not None else self._make_producer()
        self._stop.clear()
        thread = threading.Thread(target=self._run, name=THREAD_NAME, daemon=True)
        with self._lock:
            self._thread = thread
        thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop sending, flush what was sent, and wait for the thread to end.

        Safe to call more than once. Closes the producer if the stream made it.
        """
        self._stop.set()
        with self._lock:
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        self._release_producer(timeout)

    def join(self, timeout: float | None = None) -> bool:
        """Wait until every event was sent (or the stream was stopped).

        Returns False if ``timeout`` passed first. Raises the error that stopped the
        stream, if any.
        """
        with self._lock:
            thread = self._thread
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():
                return False
        self._release_producer(10.0 if timeout is None else timeout)
        if self.error is not None:
            raise self.error
        return True

    def __enter__(self) -> EventStream:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- internals -----------------------------------------------------------

    def _make_producer(self) -> Any:
        from labkit import KafkaProducer

        servers = self._bootstrap if self._bootstrap else bootstrap_servers()
        return KafkaProducer(bootstrap_servers=servers, value_serializer=json_serializer)

    def _release_producer(self, timeout: float) -> None:
        if self.running:
            return
        producer, owned = self._producer, self._given is None
        if producer is None or not owned:
            return
        self._producer = None
        producer.close(timeout=timeout)

    def _fail(self, exc: BaseException) -> None:
        with self._lock:
            if self._error is None:
                self._error = exc
        self._stop.set()

    def _encode(self, value: Any, serializer: str) -> Any:
        if self._given is None:
            has_serializer = serializer == "value_serializer"  # our own producer's config
        else:
            has_serializer = _configured(self._given, serializer) is not False
        if has_serializer:
            return value
        if value is None or isinstance(value, bytes):
            return value
        if serializer == "key_serializer" and isinstance(value, str):
            return value.encode("utf-8")
        return json_serializer(value)

    def _run(self) -> None:
        producer = self._producer
        started = self._clock.monotonic()
        n = 0
        try:
            while not self._stop.is_set():
                if self.rate is not None:
                    delay = started + n / self.rate - self._clock.monotonic()
                    if delay > 0 and self._stop.wait(delay):
                        break
                try:
                    event = next(self._events)
                except StopIteration:
                    self.exhausted = True
                    break
                key = None if self._key_fn is None else self._key_fn(event)
                future = producer.send(
                    self.topic,
                    value=self._encode(event, "value_serializer"),
                    key=self._encode(key, "key_serializer"),
                )
                if hasattr(future, "add_errback"):
                    future.add_errback(self._fail)
                n += 1
                with self._lock:
                    self._sent += 1
            producer.flush()
        except Exception as exc:  # noqa: BLE001 - kept for the notebook, re-raised by join()
            self._fail(exc)
