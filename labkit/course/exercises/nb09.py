"""Notebook 09, live analytics: the checks of its exercises (rules in ``labkit.course.exercises``).

Numbered in the order the notebook asks them:

- ``09.1`` (1 point) Count transactions per store
- ``09.2`` (2 points) Count, sum, min and max per category
- ``09.3`` (3 points) Alert when a user makes more than 3 transactions in 60 s
- ``09.4`` (2 points) Tumbling 10-second windows on event time
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from datetime import datetime, timedelta

from labkit.course.checks import Registry, Wrong, call, expect
from labkit.course.exercises._ref import burst_users, tumbling_counts, window_start
from labkit.i18n import N_, _
from labkit.nb.generators import CATEGORIES, STORES, sensors, transactions

EXERCISES = Registry()
exercise = EXERCISES.exercise


@exercise("09.1", points=1, title=N_("Count transactions per store"))
def per_store(fn):
    """fn(transactions) -> {store: number of transactions}."""
    data = list(transactions(seed=920, count=137))
    got = call(fn, [dict(tx) for tx in data])
    expect(
        isinstance(got, Mapping),
        _("return a dict or Counter {{store: count}}, got {name}").format(name=type(got).__name__),
    )
    want = Counter(tx["store"] for tx in data)
    for store in STORES:
        expect(
            got.get(store) == want[store],
            _("{store}: expected {want_item} transactions, got {got_get!r}").format(
                store=store, want_item=want[store], got_get=got.get(store)
            ),
        )


@exercise("09.2", points=2, title=N_("Count, sum, min and max per category"))
def per_category(fn):
    """fn(transactions) -> {category: {"count": n, "sum": s, "min": lo, "max": hi}}."""
    data = list(transactions(seed=930, count=150))
    got = call(fn, [dict(tx) for tx in data])
    expect(
        isinstance(got, Mapping),
        _("return a dict {{category: stats}}, got {name}").format(name=type(got).__name__),
    )
    for cat in CATEGORIES:
        amounts = [tx["amount"] for tx in data if tx["category"] == cat]
        want = {
            "count": len(amounts),
            "sum": sum(amounts),
            "min": min(amounts),
            "max": max(amounts),
        }
        stats = got.get(cat)
        expect(
            isinstance(stats, Mapping) and set(want) <= set(stats),
            _("stats for {cat!r} need the keys count, sum, min, max; got {stats!r}").format(
                cat=cat, stats=stats
            ),
        )
        for name, value in want.items():
            expect(
                isinstance(stats[name], int | float) and abs(stats[name] - value) < 0.01,
                _("{cat}: {name} should be {rounded_value}, got {stats_item!r}").format(
                    cat=cat, name=name, rounded_value=round(value, 2), stats_item=stats[name]
                ),
            )


def _burst_data() -> list[dict]:
    base = datetime(2026, 3, 2, 10, 0, 0)
    events = list(transactions(seed=909, count=240, interval_s=9, start=base, suspicious_share=0.0))
    planted = {
        "u91": [0, 10, 20, 50],
        "u92": [0, 30, 60, 90],
        "u93": [5, 8, 11],
        "u94": [0, 5, 10, 75, 140],
        "u95": [i * 70 for i in range(8)],
        "u96": [100, 112, 124, 136, 148, 160],
        "u97": [0, 20, 40, 60],
    }
    for user, offsets in planted.items():
        for n, off in enumerate(offsets):
            events.append(
                {
                    "tx_id": f"TX{user[1:]}{n:02d}",
                    "user_id": user,
                    "amount": 99.0,
                    "store": "Gdańsk",
                    "category": "książki",
                    "timestamp": (base + timedelta(seconds=300 + off)).isoformat(),
                }
            )
    events.sort(key=lambda tx: (tx["timestamp"], tx["tx_id"]))
    return events


def _user_ids(answer) -> set[str]:
    if isinstance(answer, str):
        raise Wrong(_("return a collection of user ids, e.g. {'u07', 'u12'}, not one string"))
    if isinstance(answer, Mapping):
        answer = answer.keys()
    return {item["user_id"] if isinstance(item, Mapping) else str(item) for item in answer}


@exercise("09.3", points=3, title=N_("Alert when a user makes more than 3 transactions in 60 s"))
def bursts(fn):
    """fn(transactions in time order) -> the user_ids that made > 3 transactions within 60 s."""
    data = _burst_data()
    got = _user_ids(call(fn, [dict(tx) for tx in data]))
    strict, inclusive = (
        burst_users(data, 60, inclusive=False),
        burst_users(data, 60, inclusive=True),
    )
    if got in (strict, inclusive):
        return
    missed = sorted(strict - got)
    if missed:
        user = missed[0]
        times = [tx["timestamp"][11:] for tx in data if tx["user_id"] == user]
        raise Wrong(
            _(
                "missed {user}, who paid at {value_join}: keep each user's recent timestamps and count those within the last 60 s"
            ).format(user=user, value_join=", ".join(times[:6]))
        )
    extra = sorted(got - inclusive)
    raise Wrong(
        _(
            "flagged {extra_0}, who never made more than 3 transactions within 60 s: count per user, only transactions less than 60 s apart"
        ).format(extra_0=extra[0])
    )


@exercise("09.4", points=2, title=N_("Tumbling 10-second windows on event time"))
def tumbling(fn):
    """fn(readings, size_s) -> {window start (ISO string or datetime): number of readings}."""
    data = list(sensors(seed=940, count=120, late_share=0.25, max_lateness_s=15))
    size_s = 10
    got = call(fn, [dict(r) for r in data], size_s)
    expect(
        isinstance(got, Mapping),
        _("return a dict {{window start: count}}, got {name}").format(name=type(got).__name__),
    )
    try:
        counts = {
            k if isinstance(k, datetime) else datetime.fromisoformat(str(k)): v
            for k, v in got.items()
        }
    except ValueError:
        raise Wrong(
            _("use the window start as key, e.g. '2026-03-02T08:00:10' or a datetime")
        ) from None
    want = tumbling_counts(data, size_s)
    if counts != want:
        raise Wrong(_window_diagnosis(data, counts, want, size_s))


def _window_diagnosis(data: list[dict], counts: dict, want: dict, size_s: int) -> str:
    """What is wrong with ``counts`` (tumbling windows of ``data``): the first mistake
    that explains it, tried from the most specific to the most general."""
    step = timedelta(seconds=size_s)
    misaligned = sorted(k for k in counts if k.microsecond or _since_midnight(k) % size_s)
    if misaligned:
        return _(
            "{misaligned_0:%H:%M:%S} is not the start of a window: windows start at multiples of {size_s} s (08:00:00, 08:00:10, ...); key each count by the start of its reading's window"
        ).format(misaligned_0=misaligned[0], size_s=size_s)
    if {start - step: n for start, n in counts.items()} == want:
        return _(
            "your keys are the windows' ends: key each window by its start (a reading stamped 08:00:07 is in the window that starts at 08:00:00)"
        )
    total = sum(n for n in counts.values() if isinstance(n, int))
    if total < len(data):
        return _(
            "your windows hold {total} of the {n_data} readings: count every reading, late ones too, in the window of its own 'time'"
        ).format(total=total, n_data=len(data))
    if total > len(data):
        return _(
            "your windows hold {total} readings, there are {n_data}: tumbling windows do not overlap, so each reading is counted once, in exactly one window"
        ).format(total=total, n_data=len(data))
    if counts in (_by_newest_seen(data, size_s), _by_position(data, size_s)):
        return _(
            "your windows follow the order the readings arrived in: put each reading in the window of its own 'time' (event time), late readings too"
        )
    start = min(k for k in set(want) | set(counts) if counts.get(k) != want.get(k))
    return _(
        "window {start:%H:%M:%S}: expected {want_get} readings, got {counts_get}: count each reading in the window that holds its own 'time' (its seconds since midnight, rounded down to a multiple of size_s)"
    ).format(start=start, want_get=want.get(start, 0), counts_get=counts.get(start, 0))


def _since_midnight(moment: datetime) -> int:
    return moment.hour * 3600 + moment.minute * 60 + moment.second


def _by_newest_seen(data: list[dict], size_s: int) -> dict:
    """Windows by the newest time seen so far: a late reading lands in the current window
    (what counting by arrival, i.e. processing time, gives)."""
    counts: Counter = Counter()
    newest = datetime.min
    for reading in data:
        newest = max(newest, datetime.fromisoformat(reading["time"]))
        counts[window_start(newest, size_s)] += 1
    return dict(counts)


def _by_position(data: list[dict], size_s: int) -> dict:
    """Windows by position in the list: size_s readings per window from the first one."""
    first = window_start(datetime.fromisoformat(data[0]["time"]), size_s)
    counts = Counter(first + timedelta(seconds=(i // size_s) * size_s) for i in range(len(data)))
    return dict(counts)
