"""A clock for tests: time moves only when the test says so."""

from __future__ import annotations


class FakeClock:
    def __init__(self, start_ms: int = 1_700_000_000_000, start_monotonic: float = 1000.0):
        self._ms = start_ms
        self._mono = start_monotonic

    def monotonic(self) -> float:
        return self._mono

    def time_ms(self) -> int:
        return self._ms

    def time_ns(self) -> int:
        return self._ms * 1_000_000

    def advance(self, seconds: float) -> None:
        """Move both clocks forward by ``seconds``."""
        if seconds < 0:
            raise ValueError("time does not go backwards")
        self._mono += seconds
        self._ms += round(seconds * 1000)
