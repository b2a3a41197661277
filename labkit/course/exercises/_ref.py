"""Reference answers and answer-normalising helpers for the course's checks
(``labkit.course.exercises``).

Pure functions only: the checks compare a student's result with these. They are
also what an instructor's master notebook may call to show the expected output.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict, deque
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any


def alert_line(tx: Mapping) -> str:
    """The course's alert format: ``ALERT: TX0042 | 2345.67 PLN | Warszawa | elektronika``."""
    return (
        f"ALERT: {tx['tx_id']} | {float(tx['amount']):.2f} PLN | {tx['store']} | {tx['category']}"
    )


def fraud_score(tx: Mapping) -> int:
    """Rules R1-R3: amount > 3000 +3; elektronika and amount > 1500 +2; hour < 6 +2."""
    amount = float(tx["amount"])
    score = 0
    if amount > 3000:
        score += 3
    if tx["category"] == "elektronika" and amount > 1500:
        score += 2
    if datetime.fromisoformat(tx["timestamp"]).hour < 6:
        score += 2
    return score


RISK_LEVELS = ("LOW", "MEDIUM", "HIGH")
SCHEMA_VERSION = 2
"""The enriched transaction's schema version; a record without ``schema_version`` is 1."""


def risk_level(tx: Mapping) -> str:
    """HIGH for a fraud score of 3 or more (what the scorer flags), MEDIUM for 1-2 (one
    warning sign), LOW for 0."""
    points = fraud_score(tx)
    return "HIGH" if points >= 3 else "MEDIUM" if points >= 1 else "LOW"


def enrich_ref(tx: Mapping) -> dict:
    """Schema v2 of a transaction: every v1 field unchanged, plus ``risk_level`` and
    ``schema_version``."""
    return {**tx, "risk_level": risk_level(tx), "schema_version": SCHEMA_VERSION}


def _tx(tx_id: str, amount: float, category: str, time: str, store: str = "Warszawa") -> dict:
    return {
        "tx_id": tx_id,
        "user_id": "u05",
        "amount": amount,
        "store": store,
        "category": category,
        "timestamp": f"2026-03-02T{time}",
    }


def score_cases() -> list[tuple[dict, str]]:
    """Transactions that each test one edge of R1-R3, with what they test."""
    return [
        (
            _tx("TX8001", 120.0, "żywność", "12:00:00"),
            "an ordinary 120.00 PLN food purchase at noon",
        ),
        (_tx("TX8002", 3000.0, "odzież", "12:00:00"), "amount exactly 3000.00 (R1 needs > 3000)"),
        (
            _tx("TX8003", 3000.01, "odzież", "12:00:00"),
            "amount 3000.01 of clothes at noon (R1 only)",
        ),
        (
            _tx("TX8004", 1500.0, "elektronika", "12:00:00"),
            "electronics for exactly 1500.00 (R2 needs > 1500)",
        ),
        (
            _tx("TX8005", 1500.01, "elektronika", "12:00:00"),
            "electronics for 1500.01 at noon (R2 only)",
        ),
        (
            _tx("TX8006", 2000.0, "książki", "12:00:00"),
            "books for 2000.00 (R2 is for elektronika only)",
        ),
        (_tx("TX8007", 3500.0, "elektronika", "14:30:00"), "electronics for 3500.00 (R1 and R2)"),
        (_tx("TX8008", 10.0, "żywność", "05:59:59"), "10.00 PLN at 05:59:59 (R3: hour < 6)"),
        (_tx("TX8009", 10.0, "żywność", "06:00:00"), "10.00 PLN at 06:00:00 (hour 6 is not < 6)"),
        (
            _tx("TX8010", 2000.0, "elektronika", "03:00:00"),
            "electronics for 2000.00 at 03:00 (R2 and R3)",
        ),
        (
            _tx("TX8011", 4000.0, "elektronika", "01:00:00"),
            "electronics for 4000.00 at 01:00 (all rules)",
        ),
        (
            _tx("TX8012", 4500.0, "odzież", "00:00:00"),
            "clothes for 4500.00 at midnight (R1 and R3)",
        ),
    ]


def values(items: Any) -> list:
    """Record values from a list of dicts, ConsumerRecords, or JSON bytes/str."""
    if items is None:
        return []
    if isinstance(items, Mapping):
        items = [items]
    result = []
    for item in items:
        if hasattr(item, "value") and not isinstance(item, Mapping):
            item = item.value
        if isinstance(item, bytes | bytearray):
            item = item.decode("utf-8")
        if isinstance(item, str) and item.lstrip().startswith("{"):
            item = json.loads(item)
        result.append(item)
    return result


def tx_ids(items: Any) -> list[str]:
    """The ``tx_id`` of each item (a transaction dict, a record, or a tx_id string)."""
    return [item["tx_id"] if isinstance(item, Mapping) else str(item) for item in values(items)]


def burst_users(
    transactions: Iterable[Mapping], window_s: float, *, limit: int = 3, inclusive: bool = False
) -> set[str]:
    """Users with more than ``limit`` transactions within ``window_s`` seconds.

    ``inclusive`` counts two transactions exactly ``window_s`` apart as within it.
    """
    recent: dict[str, deque] = defaultdict(deque)
    flagged: set[str] = set()
    for tx in sorted(transactions, key=lambda t: t["timestamp"]):
        now = datetime.fromisoformat(tx["timestamp"])
        times = recent[tx["user_id"]]
        times.append(now)
        while (now - times[0]).total_seconds() > window_s or (
            not inclusive and (now - times[0]).total_seconds() >= window_s
        ):
            times.popleft()
        if len(times) > limit:
            flagged.add(tx["user_id"])
    return flagged


def window_start(moment: datetime, size_s: int) -> datetime:
    """The start of the tumbling window of ``size_s`` seconds holding ``moment``."""
    since_midnight = moment.hour * 3600 + moment.minute * 60 + moment.second
    return moment.replace(microsecond=0) - timedelta(seconds=since_midnight % size_s)


def tumbling_counts(readings: Iterable[Mapping], size_s: int, field: str = "time") -> dict:
    """Readings per tumbling event-time window: ``{window start: count}``."""
    counts = Counter(window_start(datetime.fromisoformat(r[field]), size_s) for r in readings)
    return dict(counts)
