"""Seeded event generators for the labs: card transactions and sensor readings.

Both generators are pure: the same arguments give the same events, byte for byte,
on every machine. Nothing reads the wall clock -- an event's time is ``start`` plus
its index times ``interval_s`` (the event-time spacing), so a notebook re-run
produces identical data and check cells stay deterministic. How fast the events
are *sent* is a separate matter, handled by ``EventStream`` (``labkit.nb.stream``).

Transactions (the course's storyline, a shop network in four cities)::

    {"tx_id": "TX0001", "user_id": "u07", "amount": 123.45, "store": "Kraków",
     "category": "żywność", "timestamp": "2026-03-02T08:00:00"}

Ordinary amounts follow a log-normal curve per category (electronics dearer than
food); a ``suspicious_share`` of the events is suspicious, of three kinds:

- ``large``: 3000.01-5000 PLN;
- ``night``: stamped between 00:00 and 05:59 of the same day (a terminal that
  uploads late), so such an event is out of time order;
- ``burst``: one user makes 4-6 transactions in a row, a few seconds apart.

With ``label=True`` each event also carries ``"suspicious": None | "large" |
"night" | "burst"`` (for experiments that measure detection; students' data has
no labels).

Sensor readings (the 2021-2025 labs' late-event stream)::

    {"time": "2026-03-02T08:00:00", "sensor_id": "c", "temperature": 21.37, "pressure": 12.5}

A ``late_share`` of the readings is stamped 1..``max_lateness_s`` seconds in the
past, so they arrive out of order (``label=True`` adds ``"late_by_s"``).
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from datetime import datetime, timedelta

from labkit.errors import IllegalArgumentError
from labkit.i18n import _

STORES = ("Warszawa", "Kraków", "Gdańsk", "Wrocław")
CATEGORIES = ("elektronika", "odzież", "żywność", "książki")
SENSOR_IDS = ("a", "b", "c", "d", "e")
DEFAULT_START = datetime(2026, 3, 2, 8, 0, 0)
MIN_AMOUNT = 5.0
MAX_AMOUNT = 5000.0
LARGE_MIN = 3000.01
SUSPICIOUS_KINDS = ("large", "night", "burst")

# log-normal (mu, sigma) of an ordinary amount per category: medians ~ 400, 150, 60, 45 PLN
_AMOUNT_CURVE = {
    "elektronika": (6.0, 0.9),
    "odzież": (5.0, 0.7),
    "żywność": (4.1, 0.8),
    "książki": (3.8, 0.5),
}
_BURST_MIN, _BURST_MAX = 4, 6
# A burst emits (4+6)/2 = 5 events; the other kinds 1. Starting a suspicious run with
# probability q gives a share f = q*(2/3 + 5/3) / (1 + q*4/3), so q = 3f / (7 - 4f).
_EVENTS_PER_BURST = (_BURST_MIN + _BURST_MAX) / 2


def _start_probability(share: float) -> float:
    extra = _EVENTS_PER_BURST - 1
    mean_events = (2 + _EVENTS_PER_BURST) / 3
    return share / (mean_events - share * extra / 3)


def _check_common(seed: object, start: datetime, interval_s: float, count: int | None) -> None:
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise IllegalArgumentError(
            _("seed must be an int (e.g. seed=42), got {seed!r}").format(seed=seed)
        )
    if not isinstance(start, datetime):
        raise IllegalArgumentError(
            _("start must be a datetime, e.g. datetime(2026, 3, 2, 8, 0), got {start!r}").format(
                start=start
            )
        )
    if not (isinstance(interval_s, int | float) and math.isfinite(interval_s) and interval_s > 0):
        raise IllegalArgumentError(
            _(
                "interval_s is the event-time gap between events in seconds and must be > 0, got {interval_s!r}"
            ).format(interval_s=interval_s)
        )
    if count is not None and (not isinstance(count, int) or count < 0):
        raise IllegalArgumentError(
            _("count must be None (endless) or an int >= 0, got {count!r}").format(count=count)
        )


def _share(name: str, value: object) -> float:
    if not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
        raise IllegalArgumentError(
            _("{name} is a fraction between 0 and 1 (e.g. 0.05), got {value!r}").format(
                name=name, value=value
            )
        )
    return float(value)


def _timespec(start: datetime, interval_s: float) -> str:
    whole = float(interval_s).is_integer() and start.microsecond == 0
    return "seconds" if whole else "milliseconds"


def _amount(rng: random.Random, category: str) -> float:
    mu, sigma = _AMOUNT_CURVE[category]
    value = rng.lognormvariate(mu, sigma)
    return round(min(MAX_AMOUNT, max(MIN_AMOUNT, value)), 2)


def transactions(
    seed: int = 42,
    suspicious_share: float = 0.05,
    *,
    start: datetime = DEFAULT_START,
    interval_s: float = 1.0,
    count: int | None = None,
    users: int = 20,
    label: bool = False,
) -> Iterator[dict]:
    """Card transactions, endless unless ``count`` is given; deterministic for a seed.

    ``interval_s`` is the event-time gap (1.0: one transaction per second of event
    time). Raises ``IllegalArgumentError`` for an out-of-range argument.
    """
    _check_common(seed, start, interval_s, count)
    share = _share("suspicious_share", suspicious_share)
    if not isinstance(users, int) or not 1 <= users <= 999:
        raise IllegalArgumentError(
            _("users must be an int between 1 and 999, got {users!r}").format(users=users)
        )
    return _transactions(seed, share, start, float(interval_s), count, users, label)


def _transactions(
    seed: int,
    share: float,
    start: datetime,
    interval_s: float,
    count: int | None,
    users: int,
    label: bool,
) -> Iterator[dict]:
    rng = random.Random(seed)
    p_start = _start_probability(share)
    user_ids = [f"u{n:02d}" for n in range(1, users + 1)]
    timespec = _timespec(start, interval_s)
    burst_user, burst_left = "", 0
    index = 0
    while count is None or index < count:
        moment = start + timedelta(seconds=index * interval_s)
        kind = None
        if burst_left:
            kind, user = "burst", burst_user
            burst_left -= 1
        else:
            user = rng.choice(user_ids)
            if rng.random() < p_start:
                kind = rng.choice(SUSPICIOUS_KINDS)
                if kind == "burst":
                    burst_user, burst_left = user, rng.randint(_BURST_MIN, _BURST_MAX) - 1
        store = rng.choice(STORES)
        if kind == "large":
            category = rng.choice(("elektronika", "elektronika", "odzież"))
            amount = round(rng.uniform(LARGE_MIN, MAX_AMOUNT), 2)
        else:
            category = rng.choice(CATEGORIES)
            amount = _amount(rng, category)
        if kind == "night":
            midnight = moment.replace(hour=0, minute=0, second=0, microsecond=0)
            moment = midnight + timedelta(seconds=rng.randrange(6 * 3600))
        index += 1
        event = {
            "tx_id": f"TX{index:04d}",
            "user_id": user,
            "amount": amount,
            "store": store,
            "category": category,
            "timestamp": moment.isoformat(timespec=timespec),
        }
        if label:
            event["suspicious"] = kind
        yield event


def sensors(
    seed: int = 42,
    late_share: float = 0.1,
    max_lateness_s: float = 15,
    *,
    start: datetime = DEFAULT_START,
    interval_s: float = 1.0,
    count: int | None = None,
    sensor_ids: tuple[str, ...] = SENSOR_IDS,
    label: bool = False,
) -> Iterator[dict]:
    """Sensor readings, endless unless ``count`` is given; deterministic for a seed.

    Readings take turns over ``sensor_ids`` at random; each sensor's temperature is a
    random walk within -100..100 and its pressure within 0..50. A ``late_share`` of
    them is stamped up to ``max_lateness_s`` seconds in the past. Raises
    ``IllegalArgumentError`` for an out-of-range argument.
    """
    _check_common(seed, start, interval_s, count)
    share = _share("late_share", late_share)
    if not isinstance(max_lateness_s, int | float) or not 1 <= max_lateness_s <= 3600:
        raise IllegalArgumentError(
            _("max_lateness_s must be between 1 and 3600 seconds, got {max_lateness_s!r}").format(
                max_lateness_s=max_lateness_s
            )
        )
    ids = tuple(sensor_ids)
    if not ids or not all(isinstance(s, str) and s for s in ids):
        raise IllegalArgumentError(
            _("sensor_ids must be non-empty strings, got {sensor_ids!r}").format(
                sensor_ids=sensor_ids
            )
        )
    return _sensors(seed, share, float(max_lateness_s), start, float(interval_s), count, ids, label)


def _sensors(
    seed: int,
    share: float,
    max_lateness_s: float,
    start: datetime,
    interval_s: float,
    count: int | None,
    ids: tuple[str, ...],
    label: bool,
) -> Iterator[dict]:
    rng = random.Random(seed)
    temperature = {s: rng.uniform(-20.0, 40.0) for s in ids}
    pressure = {s: rng.uniform(5.0, 45.0) for s in ids}
    late_whole = float(max_lateness_s).is_integer()
    timespec = _timespec(start, interval_s) if late_whole else "milliseconds"
    index = 0
    while count is None or index < count:
        sensor = rng.choice(ids)
        temperature[sensor] = min(100.0, max(-100.0, temperature[sensor] + rng.gauss(0.0, 1.5)))
        pressure[sensor] = min(50.0, max(0.0, pressure[sensor] + rng.gauss(0.0, 0.4)))
        moment = start + timedelta(seconds=index * interval_s)
        late_by = 0.0
        if rng.random() < share:
            late_by = (
                float(rng.randint(1, int(max_lateness_s)))
                if late_whole
                else round(rng.uniform(1.0, max_lateness_s), 3)
            )
            moment -= timedelta(seconds=late_by)
        index += 1
        event = {
            "time": moment.isoformat(timespec=timespec),
            "sensor_id": sensor,
            "temperature": round(temperature[sensor], 2),
            "pressure": round(pressure[sensor], 2),
        }
        if label:
            event["late_by_s"] = late_by
        yield event
