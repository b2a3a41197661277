"""Notebook 09, live analytics: the checks of its exercises (rules in ``labkit.course.exercises``).

- ``09.1`` (3 points) Alert when a user makes more than 3 transactions in 60 s
- ``09.2`` (1 points) Count transactions per store
- ``09.3`` (2 points) Count, sum, min and max per category
- ``09.4`` (2 points) Tumbling 10-second windows on event time
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from datetime import datetime, timedelta

from labkit.course.checks import Registry, Wrong, call, expect
from labkit.course.exercises._ref import burst_users, tumbling_counts
from labkit.nb.generators import CATEGORIES, STORES, sensors, transactions

EXERCISES = Registry()
exercise = EXERCISES.exercise


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
        raise Wrong("return a collection of user ids, e.g. {'u07', 'u12'}, not one string")
    if isinstance(answer, Mapping):
        answer = answer.keys()
    return {item["user_id"] if isinstance(item, Mapping) else str(item) for item in answer}


@exercise("09.1", points=3, title="Alert when a user makes more than 3 transactions in 60 s")
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
            f"missed {user}, who paid at {', '.join(times[:6])}: keep each user's recent "
            "timestamps and count those within the last 60 s"
        )
    extra = sorted(got - inclusive)
    raise Wrong(
        f"flagged {extra[0]}, who never made more than 3 transactions within 60 s: count "
        "per user, only transactions less than 60 s apart"
    )


@exercise("09.2", points=1, title="Count transactions per store")
def per_store(fn):
    """fn(transactions) -> {store: number of transactions}."""
    data = list(transactions(seed=920, count=137))
    got = call(fn, [dict(tx) for tx in data])
    expect(
        isinstance(got, Mapping),
        f"return a dict or Counter {{store: count}}, got {type(got).__name__}",
    )
    want = Counter(tx["store"] for tx in data)
    for store in STORES:
        expect(
            got.get(store) == want[store],
            f"{store}: expected {want[store]} transactions, got {got.get(store)!r}",
        )


@exercise("09.3", points=2, title="Count, sum, min and max per category")
def per_category(fn):
    """fn(transactions) -> {category: {"count": n, "sum": s, "min": lo, "max": hi}}."""
    data = list(transactions(seed=930, count=150))
    got = call(fn, [dict(tx) for tx in data])
    expect(isinstance(got, Mapping), f"return a dict {{category: stats}}, got {type(got).__name__}")
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
            f"stats for {cat!r} need the keys count, sum, min, max; got {stats!r}",
        )
        for name, value in want.items():
            expect(
                isinstance(stats[name], int | float) and abs(stats[name] - value) < 0.01,
                f"{cat}: {name} should be {round(value, 2)}, got {stats[name]!r}",
            )


@exercise("09.4", points=2, title="Tumbling 10-second windows on event time")
def tumbling(fn):
    """fn(readings, size_s) -> {window start (ISO string or datetime): number of readings}."""
    data = list(sensors(seed=940, count=120, late_share=0.25, max_lateness_s=15))
    got = call(fn, [dict(r) for r in data], 10)
    expect(
        isinstance(got, Mapping), f"return a dict {{window start: count}}, got {type(got).__name__}"
    )
    try:
        counts = {
            k if isinstance(k, datetime) else datetime.fromisoformat(str(k)): v
            for k, v in got.items()
        }
    except ValueError:
        raise Wrong(
            "use the window start as key, e.g. '2026-03-02T08:00:10' or a datetime"
        ) from None
    want = tumbling_counts(data, 10)
    for start, n in sorted(want.items()):
        expect(
            counts.get(start) == n,
            f"window {start:%H:%M:%S}: expected {n} readings, got "
            f"{counts.get(start, 0)}: put each reading in the window of its own 'time' "
            "(event time), not by when it arrived",
        )
    extra = sorted(set(counts) - set(want))
    expect(
        not extra,
        f"there is no reading in window {extra[0] if extra else ''}: windows start "
        "at multiples of 10 s (08:00:00, 08:00:10, ...)",
    )
