"""Notebook 10, the fraud pipeline (capstone): the checks of its exercises (rules in ``labkit.course.exercises``).

- ``10.1`` (3 points) Score a transaction with rules R1-R3
- ``10.2`` (3 points) The alerts topic holds exactly the flagged transactions: checked on
  the broker -- the records handed in must be the alerts topic's own, the topic must hold
  exactly the transactions topic's flagged ones (once each, with their score, keyed by
  user_id), and the scoring group must have committed every transaction. ``nb.reset("10.2")``
  empties the alerts topic and deletes the group, so a re-run after a wrong attempt can pass.
- ``10.3`` (2 points) ``enrich(tx)``: schema v2 adds ``risk_level`` (HIGH/MEDIUM/LOW) and
  ``schema_version`` without breaking a v1 consumer (every v1 field kept as it was).
- ``10.4`` (3 points) The enrichment consumer, in a group of its own, wrote every
  transaction enriched to the enriched topic once and committed everything: checked on the
  broker like 10.2; ``nb.reset("10.4")``.
"""

from __future__ import annotations

import json
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
from labkit.course.exercises._ref import (
    RISK_LEVELS,
    SCHEMA_VERSION,
    alert_line,
    enrich_ref,
    fraud_score,
    score_cases,
    values,
)
from labkit.i18n import N_, _
from labkit.nb.generators import transactions

EXERCISES = Registry()
exercise = EXERCISES.exercise

# the pipeline's names as the notebook writes them (nb.topic / nb.group add a student's prefix)
TRANSACTIONS, ALERTS, SCORING_GROUP = "nb10-transactions", "nb10-alerts", "nb10-scoring-group"
ENRICHED, ENRICHMENT_GROUP = "nb10-enriched", "nb10-enrichment-group"
V1_FIELDS = {
    "tx_id": str,
    "user_id": str,
    "amount": float,
    "store": str,
    "category": str,
    "timestamp": str,
}
PARTITIONS = 3


@exercise("10.1", points=3, title=N_("Score a transaction with rules R1-R3"))
def score(fn):
    """fn(tx) -> int: +3 if amount > 3000; +2 if elektronika and amount > 1500; +2 if hour < 6."""
    for tx, why in score_cases():
        got = call(fn, dict(tx))
        want = fraud_score(tx)
        expect(
            got == want,
            _("{why}: expected score {want}, got {got!r}").format(why=why, want=want, got=got),
        )


@exercise(
    "10.2",
    points=3,
    title=N_("The alerts topic holds exactly the flagged transactions"),
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
        _(
            "you read {counted}, the alerts topic holds {n_on_broker}: read it from the beginning of every partition to the end (auto_offset_reset='earliest', no group, consumer_timeout_ms)"
        ).format(counted=counted(len(handed_in), "alert", "alerts"), n_on_broker=len(on_broker)),
    )
    transactions = values(read_topic(source))
    scores = {tx["tx_id"]: fraud_score(tx) for tx in transactions}
    want = {tx_id: points for tx_id, points in scores.items() if points >= 3}
    records = [(r, _alert_value(r)) for r in on_broker]
    got = Counter(str(value.get("tx_id")) for _, value in records)
    extra = sorted(set(got) - set(want))
    expect(
        not extra,
        _("{value} is in alerts but scores {value2}: flag only score >= 3").format(
            value=extra[0] if extra else "",
            value2=scores.get(extra[0], _("nothing: it is not in the transactions topic"))
            if extra
            else "",
        ),
    )
    missing = sorted(set(want) - set(got))
    expect(
        not missing,
        _(
            "{counted} missing from alerts, e.g. {value} (score {value2}): send every transaction with score >= 3 to the alerts topic (and flush())"
        ).format(
            counted=counted(len(missing), "flagged transaction", "flagged transactions"),
            value=missing[0] if missing else "",
            value2=want.get(missing[0]) if missing else "",
        ),
    )
    twice = sorted(k for k, n in got.items() if n > 1)
    expect(
        not twice,
        _("{value} is in alerts {value2} times: send each flagged transaction once").format(
            value=twice[0] if twice else "", value2=got[twice[0]] if twice else 0
        ),
    )
    for record, value in records:
        tx_id = value["tx_id"]
        expect(
            value.get("score") == want[tx_id],
            _(
                '{tx_id} has score {want_item}, your alert says {value_get!r}: send {{**tx, "score": points}}'
            ).format(tx_id=tx_id, want_item=want[tx_id], value_get=value.get("score")),
        )
        key = record.key.decode("utf-8", "replace") if record.key is not None else None
        expect(
            key == value.get("user_id"),
            _(
                "the alert of {tx_id} has key {key!r}: key each alert by its user_id (key=tx['user_id'], key_serializer=str.encode)"
            ).format(tx_id=tx_id, key=key),
        )
    expect_group_done(full_group(SCORING_GROUP), source)


def _alert_value(record) -> dict:
    value = values([record])[0]
    if not isinstance(value, Mapping) or "tx_id" not in value:
        raise Wrong(
            _(
                "the alert at partition {partition} offset {offset} is {text_value_item}: send the transaction as JSON with its score (value_serializer=nb.json_serializer)"
            ).format(
                partition=record.partition,
                offset=record.offset,
                text_value_item=repr(record.value)[:60],
            )
        )
    return value


def _v1_consumer(raw: bytes) -> tuple[str, int]:
    """What a consumer written for schema v1 does with a record: parse it, validate the v1
    fields it relies on (unknown fields are ignored), print the alert line and score it."""
    tx = json.loads(raw)
    for name, kind in V1_FIELDS.items():
        if not isinstance(tx[name], kind if kind is not float else (int, float)):
            raise TypeError(
                _("{name} is {name2}, not {name3}").format(
                    name=name, name2=type(tx[name]).__name__, name3=kind.__name__
                )
            )
    return alert_line(tx), fraud_score(tx)


def _enrich_cases() -> list[tuple[dict, str]]:
    seeded = [(tx, tx["tx_id"]) for tx in transactions(seed=1003, count=60, suspicious_share=0.4)]
    return score_cases() + seeded


@exercise("10.3", points=2, title=N_("Schema v2: add risk_level without breaking old consumers"))
def enrich(fn):
    """fn(tx) -> the v2 record: tx's fields unchanged, plus risk_level and schema_version."""
    for tx, why in _enrich_cases():
        original = dict(tx)
        got = call(fn, tx)
        expect(
            tx == original,
            _("enrich changed its input ({why}): return a new dict, {{**tx, ...}}").format(why=why),
        )
        expect(
            isinstance(got, Mapping),
            _("return a dict, got {name} for {why}").format(name=type(got).__name__, why=why),
        )
        try:
            raw = json.dumps(got).encode("utf-8")
        except (TypeError, ValueError) as exc:
            raise Wrong(
                _("the record for {why} is not JSON ({exc}): use str, int, float").format(
                    why=why, exc=exc
                )
            ) from None
        try:
            old_view = _v1_consumer(raw)
        except (KeyError, TypeError, ValueError) as exc:
            raise Wrong(
                _(
                    "a consumer written for v1 breaks on your record for {why} ({name}: {exc}): keep every v1 field with its name, type and value; only add new fields"
                ).format(why=why, name=type(exc).__name__, exc=exc)
            ) from None
        expect(
            old_view == _v1_consumer(json.dumps(tx).encode()),
            _(
                "a v1 consumer reads your record for {why} differently: keep every v1 field's value as it was"
            ).format(why=why),
        )
        want = enrich_ref(tx)
        expect(
            got.get("schema_version") == SCHEMA_VERSION,
            _(
                "the record for {why} has schema_version {got_get!r}: mark the new shape with schema_version {schema_version} (no field means version 1)"
            ).format(why=why, got_get=got.get("schema_version"), schema_version=SCHEMA_VERSION),
        )
        expect(
            got.get("risk_level") in RISK_LEVELS,
            _("risk_level is one of {value_join}, got {got_get!r}").format(
                value_join=", ".join(RISK_LEVELS), got_get=got.get("risk_level")
            ),
        )
        expect(
            got["risk_level"] == want["risk_level"],
            _(
                "{why} scores {fraud_score_tx}: its risk_level is {want_risk_level}, not {got_risk_level} (HIGH for 3 or more, MEDIUM for 1-2, LOW for 0)"
            ).format(
                why=why,
                fraud_score_tx=fraud_score(tx),
                want_risk_level=want["risk_level"],
                got_risk_level=got["risk_level"],
            ),
        )
        extra = sorted(set(got) - set(want))
        expect(
            not extra,
            _("your record has {value} too: v2 adds risk_level and schema_version only").format(
                value=extra[0] if extra else ""
            ),
        )


@exercise(
    "10.4",
    points=3,
    title=N_("The enrichment consumer, in a group of its own"),
    topics={ENRICHED: PARTITIONS},
    groups=(ENRICHMENT_GROUP,),
)
def enrichment(enriched):
    """enriched: the ConsumerRecords read back from the enriched topic; the rest is read
    from the broker (transactions, enriched topic, the enrichment group's offsets)."""
    topic, source = full_topic(ENRICHED), full_topic(TRANSACTIONS)
    verify_records(enriched, topic=topic)
    on_broker = read_topic(topic)
    handed_in = {(r.partition, r.offset) for r in enriched}
    expect(
        handed_in == {(r.partition, r.offset) for r in on_broker},
        _(
            "you read {counted}, the enriched topic holds {n_on_broker}: read it from the beginning of every partition to the end"
        ).format(counted=counted(len(handed_in), "record", "records"), n_on_broker=len(on_broker)),
    )
    by_id = {tx["tx_id"]: tx for tx in values(read_topic(source))}
    got = Counter()
    for record in on_broker:
        value = values([record])[0]
        expect(
            isinstance(value, Mapping) and value.get("tx_id") in by_id,
            _(
                "the record at partition {partition} offset {offset} is not an enriched transaction of the transactions topic: send enrich(tx) for each one"
            ).format(partition=record.partition, offset=record.offset),
        )
        want = enrich_ref(by_id[value["tx_id"]])
        if dict(value) != want:
            raise Wrong(
                _(
                    "{value_tx_id} is enriched as {differences_value}: send enrich(tx) (check that 10.3 passes)"
                ).format(value_tx_id=value["tx_id"], differences_value=_differences(value, want))
            )
        key = record.key.decode("utf-8", "replace") if record.key is not None else None
        expect(
            key == want["user_id"],
            _("{value_tx_id} has key {key!r}: key each record by its user_id").format(
                value_tx_id=value["tx_id"], key=key
            ),
        )
        got[value["tx_id"]] += 1
    missing = sorted(set(by_id) - set(got))
    expect(
        not missing,
        _(
            "{counted} missing from the enriched topic, e.g. {value}: enrich every transaction, not only the flagged ones"
        ).format(
            counted=counted(len(missing), "transaction", "transactions"),
            value=missing[0] if missing else "",
        ),
    )
    twice = sorted(k for k, n in got.items() if n > 1)
    expect(
        not twice,
        _("{value} is in the enriched topic {value2} times: send each transaction once").format(
            value=twice[0] if twice else "", value2=got[twice[0]] if twice else 0
        ),
    )
    expect_group_done(full_group(ENRICHMENT_GROUP), source)


def _differences(value: Mapping, want: Mapping) -> str:
    name = next(k for k in sorted(set(value) | set(want)) if value.get(k) != want.get(k))
    return _("{name}={value!r} (expected {expected!r})").format(
        name=name, value=value.get(name), expected=want.get(name)
    )
