"""Notebook 11, stream processing with quixstreams: the checks of its exercises (rules in
``labkit.course.exercises``).

- ``11.1`` (2 points) ``event_time_ms(value, headers, timestamp, timestamp_type)``: the
  timestamp extractor that gives quixstreams the transaction's own time (event time) in
  epoch milliseconds, a zone-less ISO ``timestamp`` read as UTC.
- ``11.2`` (4 points) The course's homework: alert when one user makes more than 3
  transactions within 60 s. Checked on the broker, as 10.2: the records handed in must be
  the alerts topic's own; every alert is keyed by its user and counts more than 3; the
  users alerted are exactly those with 4 or more transactions within 60 s of event time
  (the transactions topic read back: quixstreams' sliding windows include both ends, so
  4 transactions 60 s apart from first to last count); the app's consumer group committed
  every transaction. ``nb.reset("11.2")`` empties the alerts topic and deletes the group.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from datetime import UTC, datetime

from labkit.course.broker_checks import (
    expect_group_done,
    full_group,
    full_topic,
    read_topic,
    verify_records,
)
from labkit.course.checks import Registry, Wrong, call, counted, expect
from labkit.course.exercises._ref import values
from labkit.i18n import N_, _

EXERCISES = Registry()
exercise = EXERCISES.exercise

# the notebook's names (nb.topic / nb.group add a student's prefix)
TRANSACTIONS, USER_ALERTS, HOMEWORK_GROUP = (
    "nb11-transactions",
    "nb11-user-alerts",
    "nb11-homework",
)
WINDOW_MS, LIMIT = 60_000, 3
KAFKA_TIMESTAMP = 1_700_000_000_000  # the record's own timestamp in the 11.1 cases


def event_time_ref(value: Mapping) -> int:
    """A transaction's ``timestamp`` (ISO; UTC when it names no zone) in epoch ms."""
    moment = datetime.fromisoformat(value["timestamp"])
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return round(moment.timestamp() * 1000)


def _cases() -> list[dict]:
    times = ("2026-03-02T08:00:00", "2026-03-02T08:01:30.250", "2026-03-02T23:59:59")
    return [
        {"tx_id": f"TX{n:04d}", "user_id": "u03", "amount": 120.5, "timestamp": t}
        for n, t in enumerate(times, start=1)
    ]


@exercise("11.1", points=2, title=N_("Event time: the transaction's own timestamp in ms"))
def event_time(fn):
    """fn(value, headers, timestamp, timestamp_type) -> int epoch ms of value["timestamp"]."""
    for value in _cases():
        got = call(fn, dict(value), None, KAFKA_TIMESTAMP, 0)
        want = event_time_ref(value)
        when = value["timestamp"]
        expect(
            got != KAFKA_TIMESTAMP,
            _(
                "for {when} you returned the record's Kafka timestamp (when it was produced): return the transaction's own time, value['timestamp']"
            ).format(when=when),
        )
        expect(
            isinstance(got, int | float) and not isinstance(got, bool),
            _("for {when} you returned {got!r}: return a number, milliseconds since 1970").format(
                when=when, got=got
            ),
        )
        expect(
            abs(got * 1000 - want) > 1000,
            _(
                "for {when} you returned {got}, seconds: quixstreams wants milliseconds (multiply by 1000)"
            ).format(when=when, got=got),
        )
        hours_off = (got - want) / 3_600_000
        expect(
            not (got != want and hours_off == int(hours_off) and abs(hours_off) <= 14),
            _(
                "for {when} you are {hours} h off: a timestamp without a zone is UTC here; datetime.fromisoformat(...).replace(tzinfo=UTC) before .timestamp()"
            ).format(when=when, hours=int(hours_off)),
        )
        expect(
            got == want,
            _("for {when} expected {want}, got {got!r}").format(when=when, want=want, got=got),
        )
        expect(
            isinstance(got, int),
            _("for {when} you returned {got!r}: return whole milliseconds, an int").format(
                when=when, got=got
            ),
        )


def bursting_users(transactions: list[Mapping]) -> set[str]:
    """The users with more than 3 transactions within 60 s of event time (ends included)."""
    times: defaultdict[str, list[int]] = defaultdict(list)
    for tx in transactions:
        times[str(tx["user_id"])].append(event_time_ref(tx))
    flagged = set()
    for user, moments in times.items():
        moments.sort()
        if any(moments[i + LIMIT] - moments[i] <= WINDOW_MS for i in range(len(moments) - LIMIT)):
            flagged.add(user)
    return flagged


@exercise(
    "11.2",
    points=4,
    title=N_("The homework: more than 3 transactions of one user in 60 s"),
    topics={USER_ALERTS: 1},
    groups=(HOMEWORK_GROUP,),
)
def homework(alerts):
    """alerts: the ConsumerRecords read back from the user-alerts topic. The rest is read
    from the broker: the transactions topic and the app's committed offsets."""
    alerts_topic, source = full_topic(USER_ALERTS), full_topic(TRANSACTIONS)
    verify_records(alerts, topic=alerts_topic)
    on_broker = read_topic(alerts_topic)
    handed_in = {(r.partition, r.offset) for r in alerts}
    expect(
        handed_in == {(r.partition, r.offset) for r in on_broker},
        _(
            "you read {counted}, the alerts topic holds {n_on_broker}: read it from the beginning to the end (auto_offset_reset='earliest', no group, consumer_timeout_ms)"
        ).format(counted=counted(len(handed_in), "alert", "alerts"), n_on_broker=len(on_broker)),
    )
    want = bursting_users(values(read_topic(source)))
    got = set()
    for record in on_broker:
        value = _alert_value(record)
        user, count = value["user_id"], value["count"]
        expect(
            isinstance(count, int) and count > LIMIT,
            _(
                "the alert for {user} counts {count!r}: alert only when the window's count is more than 3 (filter after count())"
            ).format(user=user, count=count),
        )
        key = record.key.decode("utf-8", "replace") if record.key is not None else None
        expect(
            key == user,
            _(
                "the alert for {user} has key {key!r}: keep the stream keyed by user_id (the topic is keyed by it), so the window counts per user"
            ).format(user=user, key=key),
        )
        got.add(user)
    extra = sorted(got - want)
    expect(
        not extra,
        _(
            "{user} is alerted but never makes 4 transactions within 60 s: a sliding window of 60 s (duration_ms=60_000) on event time (timestamp_extractor=tx_time)"
        ).format(user=extra[0] if extra else ""),
    )
    missing = sorted(want - got)
    expect(
        not missing,
        _(
            "{counted} missing, e.g. {user}, who makes 4 transactions within 60 s: count in a sliding window of 60 s per user, on event time, and send each alert to the alerts topic"
        ).format(
            counted=counted(len(missing), "alerted user", "alerted users"),
            user=missing[0] if missing else "",
        ),
    )
    expect_group_done(full_group(HOMEWORK_GROUP), source)


def _alert_value(record) -> dict:
    value = values([record])[0]
    if not isinstance(value, Mapping) or "user_id" not in value or "count" not in value:
        raise Wrong(
            _(
                'the alert at partition {partition} offset {offset} is {text}: send JSON with the user and the count, {{"user_id": ..., "count": ...}}'
            ).format(partition=record.partition, offset=record.offset, text=repr(record.value)[:60])
        )
    return dict(value)
