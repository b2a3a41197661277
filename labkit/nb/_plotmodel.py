"""Pure data models behind ``nb.LivePlot``: windowing, aggregation, histogram bins.

Theory of operation
-------------------
Nothing here draws, sleeps or imports matplotlib/ipywidgets; the renderer in
``labkit/nb/live.py`` asks a model for a ``snapshot()`` and draws that.

Three models, one per plot kind:

- ``LineModel`` -- points ``(x, y)`` per series. ``x`` is event time (seconds,
  Kafka millisecond timestamps, ``datetime`` or ISO text) or, when the caller
  gives only ``y``, the arrival index (0, 1, 2, ... over all series). With
  ``bucket_s`` points falling into the same bucket are aggregated (``agg``),
  e.g. ``add(ts, 1)`` with ``bucket_s=1, agg="sum"`` plots events per second.
- ``BarModel`` -- one aggregate per key (``count``, ``sum``, ``mean``, ``min``,
  ``max``, ``last``); ``update(mapping)`` replaces what is shown.
- ``HistModel`` -- value counts in fixed or automatic bins.

Windows. ``window_s`` keeps what lies within ``window_s`` seconds of the
*watermark*: the largest event time seen so far. A point older than
``watermark - window_s`` is evicted, and a late event that arrives already
outside the window is dropped and counted in ``dropped_late`` (the same rule a
stream processor applies to late data). Events without a time are stamped with
the injected clock's wall time (processing time). ``window_n`` keeps the last
``n`` events (arrival order). Both may be given; both apply.

Thread-safety: models are not locked; ``LivePlot`` serialises access.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections import deque
from collections.abc import Hashable, Iterable, Mapping
from datetime import date, datetime
from typing import Any

from labkit._clock import REAL_CLOCK, Clock
from labkit.errors import IllegalArgumentError
from labkit.i18n import _

AGGS = ("count", "sum", "mean", "min", "max", "last")
MS_THRESHOLD = 1e11
"""Numbers above this are Kafka millisecond timestamps, not seconds (1e11 s is year 5138)."""
EPOCH_THRESHOLD = 1e9
"""x values above this (September 2001 in seconds) are drawn as clock times."""


def to_seconds(t: Any) -> float:
    """Event time as float seconds since the epoch (or any consistent origin).

    Accepts int/float seconds, Kafka millisecond timestamps (numbers above 1e11),
    ``datetime``/``date`` and ISO-8601 text (``"2024-05-01T12:00:00Z"``).
    Raises ``IllegalArgumentError`` for anything else.
    """
    if isinstance(t, bool):
        raise IllegalArgumentError(
            _("event time must be a number, datetime or ISO text, not {t!r}").format(t=t)
        )
    if isinstance(t, int | float):
        if math.isnan(t) or math.isinf(t):
            raise IllegalArgumentError(_("event time must be finite, got {t!r}").format(t=t))
        return t / 1000.0 if abs(t) > MS_THRESHOLD else float(t)
    if isinstance(t, datetime):
        return t.timestamp()
    if isinstance(t, date):
        return datetime(t.year, t.month, t.day).timestamp()
    if isinstance(t, str):
        try:
            return datetime.fromisoformat(t.strip()).timestamp()
        except ValueError:
            pass
        try:
            return to_seconds(float(t))
        except ValueError:
            pass
    raise IllegalArgumentError(
        _(
            "cannot read {t!r} as an event time: pass seconds, a Kafka timestamp in ms, a datetime, or ISO text like '2024-05-01T12:00:00'"
        ).format(t=t)
    )


def _check_agg(agg: str) -> str:
    if agg not in AGGS:
        raise IllegalArgumentError(
            _("agg={agg!r} is not one of {value_join}").format(agg=agg, value_join=", ".join(AGGS))
        )
    return agg


def _check_window(window_s: float | None, window_n: int | None) -> None:
    if window_s is not None and not window_s > 0:
        raise IllegalArgumentError(
            _("window_s must be a positive number of seconds, got {window_s!r}").format(
                window_s=window_s
            )
        )
    if window_n is not None and (not isinstance(window_n, int) or window_n < 1):
        raise IllegalArgumentError(
            _("window_n must be a positive whole number, got {window_n!r}").format(
                window_n=window_n
            )
        )


def _number(v: Any, what: str) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise IllegalArgumentError(
            _("{what} must be a number, got {v!r} ({name})").format(
                what=what, v=v, name=type(v).__name__
            )
        )
    return float(v)


class Agg:
    """A running aggregate of numbers: count, sum, min, max, last (mean derived)."""

    __slots__ = ("count", "sum", "min", "max", "last")

    def __init__(self) -> None:
        self.count = 0
        self.sum = 0.0
        self.min = math.inf
        self.max = -math.inf
        self.last = 0.0

    def add(self, v: float) -> None:
        self.count += 1
        self.sum += v
        self.min = min(self.min, v)
        self.max = max(self.max, v)
        self.last = v

    def value(self, agg: str) -> float:
        if agg == "count":
            return float(self.count)
        if agg == "mean":
            return self.sum / self.count if self.count else 0.0
        return float(getattr(self, agg))


def _aggregate(values: Iterable[float], agg: str) -> float:
    a = Agg()
    for v in values:
        a.add(v)
    return a.value(agg)


def _sort_key(k: Hashable) -> tuple:
    """Natural order: numbers before text, 'p2' before 'p10'."""
    if isinstance(k, int | float) and not isinstance(k, bool):
        return (0, k, "")
    s = str(k)
    digits = s.rstrip("0123456789")
    tail = s[len(digits) :]
    return (1, digits, int(tail) if tail else -1, s)


class _EventWindow:
    """Events ``(t, item)`` kept by event-time window and/or count, in arrival order."""

    def __init__(self, window_s: float | None, window_n: int | None, clock: Clock):
        self.window_s = window_s
        self.window_n = window_n
        self._clock = clock
        self._events: deque[tuple[float, Any]] = deque()
        self.watermark = -math.inf
        self.dropped_late = 0

    def add(self, t: Any, item: Any) -> bool:
        ts = to_seconds(t) if t is not None else self._clock.time_ms() / 1000.0
        if self.window_s is not None and ts < self.watermark - self.window_s:
            self.dropped_late += 1
            return False
        self.watermark = max(self.watermark, ts)
        self._events.append((ts, item))
        self._evict()
        return True

    def _evict(self) -> None:
        if self.window_n is not None:
            while len(self._events) > self.window_n:
                self._events.popleft()
        if self.window_s is not None:
            lo = self.watermark - self.window_s
            # arrival order is not time order: filter when the oldest-arrived is stale
            if any(ts < lo for ts, _ in self._events):
                self._events = deque(e for e in self._events if e[0] >= lo)

    def items(self) -> list[Any]:
        return [item for _, item in self._events]

    def clear(self) -> None:
        self._events.clear()

    def __len__(self) -> int:
        return len(self._events)


class LineModel:
    """Points per series, ordered by x, windowed and optionally bucketed."""

    def __init__(
        self,
        *,
        window_s: float | None = None,
        window_n: int | None = None,
        bucket_s: float | None = None,
        agg: str = "sum",
        max_points: int = 5000,
    ):
        _check_window(window_s, window_n)
        if bucket_s is not None and not bucket_s > 0:
            raise IllegalArgumentError(
                _("bucket_s must be a positive number of seconds, got {bucket_s!r}").format(
                    bucket_s=bucket_s
                )
            )
        self.window_s = window_s
        self.window_n = window_n
        self.bucket_s = bucket_s
        self.agg = _check_agg(agg)
        self.max_points = window_n if window_n is not None else max_points
        self._series: dict[Hashable, tuple[list[float], list[Agg]]] = {}
        self._index = 0
        self.x_is_time = False
        self.watermark = -math.inf
        self.dropped_late = 0
        self.total = 0

    def add(self, x: Any, y: Any = None, series: Hashable = "value") -> bool:
        """Add one point; ``add(y)`` alone puts it at the next arrival index.

        Returns False when the point was too late for the window (and dropped).
        """
        if y is None:
            y, xs = x, float(self._index)
        else:
            xs = to_seconds(x)
            if not isinstance(x, int | float) or abs(x) > EPOCH_THRESHOLD:
                self.x_is_time = True
        self._index += 1
        yv = _number(y, "y")
        if self.bucket_s is not None:
            xs = math.floor(xs / self.bucket_s) * self.bucket_s
        if self.window_s is not None and xs < self.watermark - self.window_s:
            self.dropped_late += 1
            return False
        self.total += 1
        self.watermark = max(self.watermark, xs)
        xl, al = self._series.setdefault(series, ([], []))
        i = bisect.bisect_left(xl, xs)
        if self.bucket_s is not None and i < len(xl) and xl[i] == xs:
            al[i].add(yv)
        else:
            a = Agg()
            a.add(yv)
            # equal x without buckets: keep arrival order (insert after equals)
            j = bisect.bisect_right(xl, xs)
            xl.insert(j, xs)
            al.insert(j, a)
        self._evict()
        return True

    def update(self, values: Mapping[Hashable, Any], x: Any = None) -> None:
        """One point per series at ``x`` (or the next arrival index), e.g. counts per key."""
        if x is None:
            xs = self._index
            for name, v in values.items():
                self._index = xs
                self.add(v, series=name)
            self._index = xs + 1
        else:
            for name, v in values.items():
                self.add(x, v, series=name)

    def _evict(self) -> None:
        lo = self.watermark - self.window_s if self.window_s is not None else -math.inf
        for xl, al in self._series.values():
            cut = bisect.bisect_left(xl, lo)
            cut = max(cut, len(xl) - self.max_points)
            if cut > 0:
                del xl[:cut]
                del al[:cut]

    def snapshot(self) -> dict[Hashable, tuple[list[float], list[float]]]:
        """``{series: (xs, ys)}`` in x order."""
        return {
            name: (list(xl), [a.value(self.agg) for a in al])
            for name, (xl, al) in self._series.items()
        }

    def clear(self) -> None:
        self._series.clear()
        self._index = 0
        self.watermark = -math.inf


class BarModel:
    """One aggregate per key; windowed by event time or count, or running totals."""

    def __init__(
        self,
        *,
        agg: str = "sum",
        window_s: float | None = None,
        window_n: int | None = None,
        sort: str = "key",
        top_n: int | None = None,
        clock: Clock = REAL_CLOCK,
    ):
        _check_window(window_s, window_n)
        if sort not in ("key", "value"):
            raise IllegalArgumentError(_("sort={sort!r}: use 'key' or 'value'").format(sort=sort))
        if top_n is not None and (not isinstance(top_n, int) or top_n < 1):
            raise IllegalArgumentError(
                _("top_n must be a positive whole number, got {top_n!r}").format(top_n=top_n)
            )
        self.agg = _check_agg(agg)
        self.sort = sort
        self.top_n = top_n
        self._windowed = window_s is not None or window_n is not None
        self._window = _EventWindow(window_s, window_n, clock)
        self._running: dict[Hashable, Agg] = {}
        self.total = 0

    @property
    def dropped_late(self) -> int:
        return self._window.dropped_late

    def add(self, key: Hashable, value: Any = 1, t: Any = None) -> bool:
        """Aggregate ``value`` under ``key`` (``add(key)`` counts 1). False if too late."""
        v = _number(value, "value")
        if self._windowed:
            if not self._window.add(t, (key, v)):
                return False
        else:
            self._running.setdefault(key, Agg()).add(v)
        self.total += 1
        return True

    def update(self, values: Mapping[Hashable, Any]) -> None:
        """Replace everything shown with ``values`` (e.g. end offsets per partition)."""
        checked = {k: _number(v, f"value for {k!r}") for k, v in values.items()}
        self.clear()
        for k, v in checked.items():
            if self._windowed:
                self._window.add(
                    self._window.watermark if self._window.watermark > -math.inf else None, (k, v)
                )
            else:
                self._running.setdefault(k, Agg()).add(v)

    def snapshot(self) -> list[tuple[Hashable, float]]:
        """``[(key, value), ...]`` sorted by key (natural order) or by value, descending."""
        if self._windowed:
            groups: dict[Hashable, list[float]] = {}
            for k, v in self._window.items():
                groups.setdefault(k, []).append(v)
            pairs = [(k, _aggregate(vs, self.agg)) for k, vs in groups.items()]
        else:
            pairs = [(k, a.value(self.agg)) for k, a in self._running.items()]
        if self.sort == "value":
            pairs.sort(key=lambda kv: (-kv[1], _sort_key(kv[0])))
        else:
            pairs.sort(key=lambda kv: _sort_key(kv[0]))
        return pairs[: self.top_n] if self.top_n else pairs

    def clear(self) -> None:
        self._window.clear()
        self._running.clear()


class HistModel:
    """Counts of values per bin, over a window of recent values (10,000 by default)."""

    def __init__(
        self,
        *,
        bins: int | Iterable[float] = 20,
        range: tuple[float, float] | None = None,
        window_s: float | None = None,
        window_n: int | None = None,
        clock: Clock = REAL_CLOCK,
    ):
        _check_window(window_s, window_n)
        if isinstance(bins, int):
            if bins < 1:
                raise IllegalArgumentError(
                    _("bins must be at least 1, got {bins}").format(bins=bins)
                )
            self._edges: list[float] | None = None
            self.nbins = bins
        else:
            edges = [_number(e, "bin edge") for e in bins]
            if len(edges) < 2 or any(b <= a for a, b in itertools.pairwise(edges)):
                raise IllegalArgumentError(_("bin edges must be at least two increasing numbers"))
            self._edges = edges
            self.nbins = len(edges) - 1
        if range is not None:
            lo, hi = (_number(r, "range") for r in range)
            if not hi > lo:
                raise IllegalArgumentError(
                    _("range must be (low, high) with low < high, got {range!r}").format(
                        range=range
                    )
                )
            self.range: tuple[float, float] | None = (lo, hi)
        else:
            self.range = None
        if window_s is None and window_n is None:
            window_n = 10_000
        self._window = _EventWindow(window_s, window_n, clock)
        self.total = 0

    @property
    def dropped_late(self) -> int:
        return self._window.dropped_late

    def add(self, value: Any, t: Any = None) -> bool:
        v = _number(value, "value")
        if math.isnan(v):
            return False
        ok = self._window.add(t, v)
        self.total += ok
        return ok

    def extend(self, values: Iterable[Any]) -> None:
        for v in values:
            self.add(v)

    def update(self, values: Iterable[Any]) -> None:
        """Replace the values with ``values``."""
        self._window.clear()
        self.extend(values)

    def edges(self) -> list[float]:
        if self._edges is not None:
            return list(self._edges)
        if self.range is not None:
            lo, hi = self.range
        else:
            vals = self._window.items()
            lo, hi = (min(vals), max(vals)) if vals else (0.0, 1.0)
            if hi == lo:
                lo, hi = lo - 0.5, hi + 0.5
        step = (hi - lo) / self.nbins
        return [lo + i * step for i in range(self.nbins)] + [hi]

    def snapshot(self) -> tuple[list[float], list[int], int, int]:
        """``(edges, counts, below, above)``; the last bin includes its right edge."""
        edges = self.edges()
        counts = [0] * (len(edges) - 1)
        below = above = 0
        for v in self._window.items():
            if v < edges[0]:
                below += 1
            elif v > edges[-1]:
                above += 1
            else:
                i = min(bisect.bisect_right(edges, v) - 1, len(counts) - 1)
                counts[i] += 1
        return edges, counts, below, above

    def clear(self) -> None:
        self._window.clear()
