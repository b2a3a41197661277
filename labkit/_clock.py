"""An injectable clock. Logic takes a clock; only ``RealClock`` reads the system time.

``monotonic()`` is seconds for deadlines and timeouts; ``time_ms()`` is wall-clock
milliseconds since the epoch, for record timestamps and retention; ``time_ns()`` the
same in nanoseconds (the producer's hot path: a builtin call, no Python frame).
Tests use ``labkit.testing.FakeClock``, which has the same methods.
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def monotonic(self) -> float: ...

    def time_ms(self) -> int: ...

    def time_ns(self) -> int: ...


class RealClock:
    __slots__ = ()

    time_ns = staticmethod(time.time_ns)  # a builtin: no Python frame on the send() path

    def monotonic(self) -> float:
        return time.monotonic()

    def time_ms(self) -> int:
        return time.time_ns() // 1_000_000


REAL_CLOCK = RealClock()
