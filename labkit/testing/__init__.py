"""Test helpers: a fake clock and a real broker process for tests (``broker_process``)."""

from labkit.testing.clock import FakeClock

__all__ = ["FakeClock"]
