"""Test helpers: a fake clock and a real broker process for tests (``BrokerProcess``)."""

from labkit.testing.broker import BrokerProcess, RawClient
from labkit.testing.clock import FakeClock

__all__ = ["BrokerProcess", "FakeClock", "RawClient"]
