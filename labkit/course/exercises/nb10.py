"""Notebook 10, the fraud pipeline (capstone): the checks of its exercises (rules in ``labkit.course.exercises``).

- ``10.1`` (3 points) Score a transaction with rules R1-R3
- ``10.2`` (3 points) The alerts topic holds exactly the flagged transactions: checked on
  the broker -- the records handed in must be the alerts topic's own, the topic must hold
  exactly the transactions topic's flagged ones (once each, with their score, keyed by
  user_id), and the scoring group must have committed every transaction. ``nb.reset("10.2")``
  empties the alerts topic and deletes the group, so a re-run after a wrong attempt can pass.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping

from labkit.course.broker_checks import (
    expect_group_done,
    full_group,
    full_topic,
    read_topic,
    verify_records,
)
from labkit.course.checks import Registry, Wrong, call, counted, expect
from labkit.course.exercises._ref import fraud_score, score_cases, values

EXERCISES = Registry()
exercise = EXERCISES.exercise

# the pipeline's names as the notebook writes them (nb.topic / nb.group add a student's prefix)
TRANSACTIONS, ALERTS, SCORING_GROUP = "nb10-transactions", "nb10-alerts", "nb10-scoring-group"
PARTITIONS = 3


@exercise("10.1", points=3, title="Score a transaction with rules R1-R3")
def score(fn):
    """fn(tx) -> int: +3 if amount > 3000; +2 if elektronika and amount > 1500; +2 if hour < 6."""
    for tx, why in score_cases():
        got = call(fn, dict(tx))
        want = fraud_score(tx)
        expect(got == want, f"{why}: expected score {want}, got {got!r}")


@exercise(
    "10.2",
    points=3,
    title="The alerts topic holds exactly the flagged transactions",
    topics={ALERTS: PARTITIONS},
    groups=(SCORING_GROUP,),
)
def flagged(alerts):
    """alerts: the ConsumerRecords read back from the alerts topic. Everything else is read
    from the broker: the transactions topic, the alerts topic, the scoring group's offsets."""
    alerts_topic, source = full_topic(ALERTS), full_topic(TRANSACTIONS)
    verify_records(alerts, topic=alerts_topic)
    on_broker = read_topic(alerts_topic)
    handed_in = {(r.partition, r.offset) for r in alerts}
    expect(
        handed_in == {(r.partition, r.offset) for r in on_broker},
        f"you read {counted(len(handed_in), 'alert')}, the alerts topic holds "
        f"{len(on_broker)}: read it from the beginning of every partition to the end "
        "(auto_offset_reset='earliest', no group, consumer_timeout_ms)",
    )
    transactions = values(read_topic(source))
    scores = {tx["tx_id"]: fraud_score(tx) for tx in transactions}
    want = {tx_id: points for tx_id, points in scores.items() if points >= 3}
    records = [(r, _alert_value(r)) for r in on_broker]
    got = Counter(str(value.get("tx_id")) for _, value in records)
    extra = sorted(set(got) - set(want))
    expect(
        not extra,
        f"{extra[0] if extra else ''} is in alerts but scores "
        f"{scores.get(extra[0], 'nothing: it is not in the transactions topic') if extra else ''}"
        ": flag only score >= 3",
    )
    missing = sorted(set(want) - set(got))
    expect(
        not missing,
        f"{counted(len(missing), 'flagged transaction')} missing from alerts, e.g. "
        f"{missing[0] if missing else ''} (score {want.get(missing[0]) if missing else ''})"
        ": send every transaction with score >= 3 to the alerts topic (and flush())",
    )
    twice = sorted(k for k, n in got.items() if n > 1)
    expect(
        not twice,
        f"{twice[0] if twice else ''} is in alerts {got[twice[0]] if twice else 0} times: "
        "send each flagged transaction once",
    )
    for record, value in records:
        tx_id = value["tx_id"]
        expect(
            value.get("score") == want[tx_id],
            f"{tx_id} has score {want[tx_id]}, your alert says {value.get('score')!r}: "
            'send {**tx, "score": points}',
        )
        key = record.key.decode("utf-8", "replace") if record.key is not None else None
        expect(
            key == value.get("user_id"),
            f"the alert of {tx_id} has key {key!r}: key each alert by its user_id "
            "(key=tx['user_id'], key_serializer=str.encode)",
        )
    expect_group_done(full_group(SCORING_GROUP), source)


def _alert_value(record) -> dict:
    value = values([record])[0]
    if not isinstance(value, Mapping) or "tx_id" not in value:
        raise Wrong(
            f"the alert at partition {record.partition} offset {record.offset} is "
            f"{repr(record.value)[:60]}: send the transaction as JSON with its score "
            "(value_serializer=nb.json_serializer)"
        )
    return value
