"""Kafka's windowed byte rate and throttle time, for client quotas (broker/quotas.py).

Theory of operation
-------------------
**Measure (Kafka's ``Rate`` over a ``SampledStat``).** Per (key, client id) a
``Rate`` keeps at most ``quota.window.num`` samples (11), each open for
``quota.window.size.seconds`` (1 s) after the record that started it. Samples
older than the full window (11 s) are forgotten. The rate is the sum of the
samples over the time since the oldest one started, but never over less than
``num - 1`` windows (10 s): so a client's first request does not look like a
huge rate, and a new client may send up to ~10 s worth of its quota at once, as
in Kafka.

**Throttle (KIP-13/KIP-219's formula).** After recording a request's bytes
(produce: the record batches received; fetch: the record batches returned), if
the rate is above the quota the throttle time is
``(rate - quota) / quota * window``: how long the client must stay silent for
the rate to fall back to the quota (labkit bounds it to 30 s). The reply carries
it as ``throttle_time_ms`` and the connection is muted that long
(``broker/throttle.py``); nothing is dropped: the records are appended (produce)
or read (fetch) as usual.

Pure: time is passed in; no state beyond each ``Rate``'s samples.
"""

from __future__ import annotations

import math
from collections import deque

DEFAULT_WINDOW_NUM = 11  # quota.window.num
DEFAULT_WINDOW_SIZE_S = 1  # quota.window.size.seconds


class Rate:
    """Bytes per second over a window of samples (Kafka's ``Rate``/``SampledStat``)."""

    __slots__ = ("_num", "_size", "_samples")

    def __init__(self, num: int = DEFAULT_WINDOW_NUM, size_s: float = DEFAULT_WINDOW_SIZE_S):
        self._num = num
        self._size = size_s
        self._samples: deque[list[float]] = deque()  # [start, total], oldest first

    def record(self, value: float, now: float) -> None:
        samples = self._samples
        if not samples or now - samples[-1][0] >= self._size:
            samples.append([now, 0.0])
            if len(samples) > self._num:
                samples.popleft()
        samples[-1][1] += value

    def _purge(self, now: float) -> None:
        expire = self._num * self._size
        samples = self._samples
        while samples and now - samples[0][0] >= expire:
            samples.popleft()

    def window_s(self, now: float) -> float:
        """Seconds the rate is measured over: since the oldest sample, at least
        ``num - 1`` windows."""
        self._purge(now)
        elapsed = now - self._samples[0][0] if self._samples else 0.0
        full = int(elapsed // self._size)
        if full < self._num - 1:
            elapsed += (self._num - 1 - full) * self._size
        return elapsed

    def measure(self, now: float) -> float:
        window = self.window_s(now)
        return sum(s[1] for s in self._samples) / window

    def idle_since(self) -> float:
        return self._samples[-1][0] if self._samples else -math.inf


def throttle_ms(rate: float, quota: float, window_s: float, max_ms: int) -> int:
    """Kafka's throttle time: ``(rate - quota) / quota * window``, in whole ms, 0..max_ms."""
    if rate <= quota:
        return 0
    return min(max_ms, round((rate - quota) / quota * window_s * 1000.0))
