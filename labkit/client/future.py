"""``Future``: kafka-python's future API (``kafka.future.Future``), thread-safe.

A future is resolved once, by ``success(value)`` or ``failure(exc)``, usually on
the client's I/O thread. Callbacks registered before that run on the resolving
thread; callbacks registered after run at once on the caller's thread. A callback
that raises is logged and does not stop the others. ``get(timeout)`` blocks.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable
from typing import Any

from labkit.errors import KafkaError, KafkaTimeoutError

log = logging.getLogger(__name__)


class Future:
    __slots__ = ("is_done", "value", "exception", "_callbacks", "_errbacks", "_event", "_lock")

    def __init__(self) -> None:
        self.is_done = False
        self.value: Any = None
        self.exception: BaseException | None = None
        self._callbacks: list[Callable] | None = []
        self._errbacks: list[Callable] | None = []
        self._event: threading.Event | None = None
        self._lock = threading.Lock()

    def succeeded(self) -> bool:
        return self.is_done and self.exception is None

    def failed(self) -> bool:
        return self.is_done and self.exception is not None

    def retriable(self) -> bool:
        return self.failed() and bool(getattr(self.exception, "retriable", False))

    def success(self, value: Any) -> Future:
        with self._lock:
            if self.is_done:
                return self
            self.value = value
            self.is_done = True
            callbacks, self._callbacks, self._errbacks = self._callbacks, None, None
            event = self._event
        if event is not None:
            event.set()
        for fn in callbacks or ():
            _call(fn, value)
        return self

    def failure(self, exc: BaseException | type) -> Future:
        if isinstance(exc, type):
            exc = exc()
        if not isinstance(exc, BaseException):
            raise TypeError("future failed without an exception")
        with self._lock:
            if self.is_done:
                return self
            self.exception = exc
            self.is_done = True
            errbacks, self._callbacks, self._errbacks = self._errbacks, None, None
            event = self._event
        if event is not None:
            event.set()
        for fn in errbacks or ():
            _call(fn, exc)
        return self

    def add_callback(self, fn: Callable, *args: Any, **kwargs: Any) -> Future:
        """Call ``fn(*args, value, **kwargs)`` on success (at once if already done)."""
        if args or kwargs:
            fn = functools.partial(fn, *args, **kwargs)
        with self._lock:
            if self._callbacks is not None:  # None once done
                self._callbacks.append(fn)
                return self
        if self.exception is None:
            _call(fn, self.value)
        return self

    def add_errback(self, fn: Callable, *args: Any, **kwargs: Any) -> Future:
        """Call ``fn(*args, exception, **kwargs)`` on failure (at once if already failed)."""
        if args or kwargs:
            fn = functools.partial(fn, *args, **kwargs)
        with self._lock:
            if self._errbacks is not None:  # None once done
                self._errbacks.append(fn)
                return self
        if self.exception is not None:
            _call(fn, self.exception)
        return self

    def add_both(self, fn: Callable, *args: Any, **kwargs: Any) -> Future:
        self.add_callback(fn, *args, **kwargs)
        return self.add_errback(fn, *args, **kwargs)

    def chain(self, future: Future) -> Future:
        self.add_callback(future.success)
        return self.add_errback(future.failure)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until resolved or ``timeout`` seconds pass; True if resolved."""
        with self._lock:
            if self.is_done:
                return True
            if self._event is None:
                self._event = threading.Event()
            event = self._event
        return event.wait(timeout)

    def get(self, timeout: float | None = None) -> Any:
        """The value; raises the failure, or KafkaTimeoutError after ``timeout`` seconds."""
        if not self.wait(timeout):
            raise KafkaTimeoutError(f"Timeout after waiting for {timeout} secs.")
        if self.exception is not None:
            raise self.exception
        return self.value


def _call(fn: Callable, arg: Any) -> None:
    try:
        fn(arg)
    except Exception:  # a user's callback must not break the I/O thread
        log.exception("Error in a future callback %r", fn)


def failed_future(exc: KafkaError) -> Future:
    return Future().failure(exc)
