"""Notebook 10, the fraud pipeline (capstone): the checks of its exercises (rules in ``labkit.course.exercises``).

- ``10.1`` (3 points) Score a transaction with rules R1-R3
- ``10.2`` (3 points) The alerts topic holds exactly the flagged transactions
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping

from labkit.course.checks import Registry, call, counted, expect
from labkit.course.exercises._ref import (
    fraud_score,
    score_cases,
    tx_ids,
    values,
)

EXERCISES = Registry()
exercise = EXERCISES.exercise


@exercise("10.1", points=3, title="Score a transaction with rules R1-R3")
def score(fn):
    """fn(tx) -> int: +3 if amount > 3000; +2 if elektronika and amount > 1500; +2 if hour < 6."""
    for tx, why in score_cases():
        got = call(fn, dict(tx))
        want = fraud_score(tx)
        expect(got == want, f"{why}: expected score {want}, got {got!r}")


@exercise("10.2", points=3, title="The alerts topic holds exactly the flagged transactions")
def flagged(alerts, *, sent):
    """alerts: values read from the alerts topic (dicts with tx_id); sent: transactions sent."""
    records = values(alerts)
    want = {tx["tx_id"]: fraud_score(tx) for tx in values(sent) if fraud_score(tx) >= 3}
    got = Counter(tx_ids(records))
    scores = {tx["tx_id"]: fraud_score(tx) for tx in values(sent)}
    extra = sorted(set(got) - set(want))
    expect(
        not extra,
        f"{extra[0] if extra else ''} is in alerts but scores "
        f"{scores.get(extra[0]) if extra else ''}: flag only score >= 3",
    )
    missing = sorted(set(want) - set(got))
    expect(
        not missing,
        f"{counted(len(missing), 'flagged transaction')} missing from alerts, e.g. "
        f"{missing[0] if missing else ''} (score {want.get(missing[0]) if missing else ''})"
        ": send every transaction with score >= 3 to the alerts topic",
    )
    twice = sorted(k for k, n in got.items() if n > 1)
    expect(
        not twice,
        f"{twice[0] if twice else ''} is in alerts {got[twice[0]] if twice else 0} times: "
        "send each flagged transaction once",
    )
    for record in records:
        if isinstance(record, Mapping) and "score" in record:
            expect(
                record["score"] == want[record["tx_id"]],
                f"{record['tx_id']} has score {want[record['tx_id']]}, your alert says "
                f"{record['score']!r}",
            )
