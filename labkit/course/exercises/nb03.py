"""Notebook 03, the consumer: the checks of its exercises (rules in ``labkit.course.exercises``).

- ``03.1`` (2 points) Format an alert for amount > 3000
- ``03.2`` (2 points) Read the topic and collect the alerts
- ``03.3`` (2 points) Seek to an offset and read from there

How the notebook calls them:

| id   | check call                                              | answer                                  |
|------|---------------------------------------------------------|-----------------------------------------|
| 03.3 | ``nb.check("03.3", read, sent=sent, start=150)``        | what was read after ``seek(tp, 150)``   |
"""

from __future__ import annotations

from collections import Counter

from labkit.course.checks import Registry, Wrong, call, counted, expect
from labkit.course.exercises._ref import alert_line, tx_ids, values
from labkit.nb.generators import transactions

EXERCISES = Registry()
exercise = EXERCISES.exercise


def _alert_cases() -> list[dict]:
    cases = list(transactions(seed=303, count=60, suspicious_share=0.3))
    edge = [
        ("TX9001", 3000.0, "Gdańsk", "odzież"),
        ("TX9002", 3000.01, "Wrocław", "książki"),
        ("TX9003", 4999.5, "Kraków", "elektronika"),
        ("TX9004", 4000, "Warszawa", "żywność"),
    ]
    for tx_id, amount, store, category in edge:
        cases.append(
            {
                "tx_id": tx_id,
                "user_id": "u01",
                "amount": amount,
                "store": store,
                "category": category,
                "timestamp": "2026-03-02T12:00:00",
            }
        )
    return cases


@exercise("03.1", points=2, title="Format an alert for amount > 3000")
def format_alert(fn):
    """fn(tx) -> 'ALERT: TX0042 | 2345.67 PLN | Warszawa | elektronika' if amount > 3000, else None."""
    for tx in _alert_cases():
        got = call(fn, dict(tx))
        want = alert_line(tx) if tx["amount"] > 3000 else None
        if want is None:
            expect(
                got in (None, "", False),
                f"{tx['tx_id']} has amount {tx['amount']:.2f}, "
                "which is not > 3000, but your function returned an alert; return None for it",
            )
            continue
        expect(
            got not in (None, "", False),
            f"no alert for {tx['tx_id']} with amount "
            f"{tx['amount']:.2f} PLN: alert when amount > 3000",
        )
        expect(isinstance(got, str), f"return the alert as a str, got {type(got).__name__}")
        expect(
            got.strip() == want,
            f"for {tx['tx_id']} expected {want!r}, got {got.strip()!r} "
            "(amount with 2 decimals, parts separated by ' | ')",
        )


@exercise("03.2", points=2, title="Read the topic and collect the alerts")
def collected_alerts(lines, *, sent):
    """lines: the alert lines printed while reading the topic; sent: the transactions sent."""
    if isinstance(lines, str):
        lines = lines.splitlines()
    got = Counter(str(line).strip() for line in lines if str(line).strip())
    want = Counter(alert_line(tx) for tx in values(sent) if tx["amount"] > 3000)
    extra, missing = got - want, want - got
    if missing and not got:
        raise Wrong(
            f"no alerts collected, {sum(want.values())} expected: read the topic from "
            "the beginning (auto_offset_reset='earliest') and stop with consumer_timeout_ms"
        )
    if extra:
        raise Wrong(
            f"{counted(sum(extra.values()), 'line')} should not be there, e.g. "
            f"{min(extra)!r}: only amount > 3000, each transaction once"
        )
    if missing:
        raise Wrong(
            f"{counted(sum(missing.values()), 'alert')} missing, e.g. {min(missing)!r}: "
            "read every partition from the beginning until no more records come"
        )


@exercise("03.3", points=2, title="Seek to an offset and read from there")
def read_from_offset(read, *, sent, start):
    """read: the transactions (values, records or tx_ids) read after ``seek(tp, start)``."""
    if isinstance(read, str):
        raise Wrong("give a list of what you read (transactions or tx_ids), not one string")
    got = tx_ids(read)
    want = tx_ids(sent)[start:]
    expect(
        got,
        f"nothing read: after consumer.seek(tp, {start}) read with poll() or a for "
        "loop (with consumer_timeout_ms so it ends)",
    )
    all_ids = tx_ids(sent)
    if got[0] in all_ids and all_ids.index(got[0]) < start:
        raise Wrong(
            f"you started at offset {all_ids.index(got[0])} ({got[0]}): call "
            f"consumer.seek(tp, {start}) after assign() and before reading"
        )
    twice = sorted(k for k, n in Counter(got).items() if n > 1)
    expect(not twice, f"{twice[0] if twice else ''} was read twice: keep each record once")
    expect(
        got[0] == want[0],
        f"the record at offset {start} is {want[0]}, but you started "
        f"with {got[0]}: seek to offset {start} of partition 0",
    )
    expect(
        len(got) >= len(want),
        f"read {len(got)} of the {len(want)} records from offset "
        f"{start} on: keep reading until no more records come",
    )
    expect(
        got == want,
        f"expected {len(want)} records from {want[0]} to {want[-1]}, in "
        "offset order: read only the notebook's topic",
    )
