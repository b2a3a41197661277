"""Notebook 03, the consumer: the checks of its exercises (rules in ``labkit.course.exercises``).

- ``03.1`` (2 points) Format an alert for amount > 3000
- ``03.2`` (2 points) Read the topic and collect the alerts
- ``03.3`` (2 points) Seek to an offset and read from there

How the notebook calls them:

| id   | check call                                              | answer                                  |
|------|---------------------------------------------------------|-----------------------------------------|
| 03.3 | ``nb.check("03.3", read, topic=T, start=150)``          | the ConsumerRecords read after ``seek(tp, 150)`` |

03.3 asks for the ``ConsumerRecord``s themselves and verifies them on the broker: each is
at its topic/partition/offset there, and together they are offsets 150 to the end of
partition 0 (a slice of the notebook's ``sent`` list is not records and fails).
"""

from __future__ import annotations

from collections import Counter

from labkit.course import broker_checks
from labkit.course.checks import Registry, Wrong, call, counted, expect
from labkit.course.exercises._ref import alert_line, values
from labkit.i18n import N_, _
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


@exercise("03.1", points=2, title=N_("Format an alert for amount > 3000"))
def format_alert(fn):
    """fn(tx) -> 'ALERT: TX0042 | 2345.67 PLN | Warszawa | elektronika' if amount > 3000, else None."""
    for tx in _alert_cases():
        got = call(fn, dict(tx))
        want = alert_line(tx) if tx["amount"] > 3000 else None
        if want is None:
            if isinstance(got, str | bool) and not got:
                raise Wrong(
                    _(
                        "for {tx_tx_id} (amount {tx_amount:.2f}, not > 3000) your function returned {got!r}: return None (the value that means 'no alert')"
                    ).format(tx_tx_id=tx["tx_id"], tx_amount=tx["amount"], got=got)
                )
            expect(
                got is None,
                _(
                    "{tx_tx_id} has amount {tx_amount:.2f}, which is not > 3000, but your function returned an alert; return None for it"
                ).format(tx_tx_id=tx["tx_id"], tx_amount=tx["amount"]),
            )
            continue
        expect(
            got not in (None, "", False),
            _(
                "no alert for {tx_tx_id} with amount {tx_amount:.2f} PLN: alert when amount > 3000"
            ).format(tx_tx_id=tx["tx_id"], tx_amount=tx["amount"]),
        )
        expect(
            isinstance(got, str),
            _("return the alert as a str, got {name}").format(name=type(got).__name__),
        )
        expect(
            got.strip() == want,
            _(
                "for {tx_tx_id} expected {want!r}, got {got_strip!r} (amount with 2 decimals, parts separated by ' | ')"
            ).format(tx_tx_id=tx["tx_id"], want=want, got_strip=got.strip()),
        )


@exercise("03.2", points=2, title=N_("Read the topic and collect the alerts"))
def collected_alerts(lines, *, sent):
    """lines: the alert lines printed while reading the topic; sent: the transactions sent."""
    if isinstance(lines, str):
        lines = lines.splitlines()
    got = Counter(str(line).strip() for line in lines if str(line).strip())
    want = Counter(alert_line(tx) for tx in values(sent) if tx["amount"] > 3000)
    extra, missing = got - want, want - got
    if missing and not got:
        raise Wrong(
            _(
                "no alerts collected, {total_want_values} expected: read the topic from the beginning (auto_offset_reset='earliest') and stop with consumer_timeout_ms"
            ).format(total_want_values=sum(want.values()))
        )
    if extra:
        raise Wrong(
            _(
                "{counted} should not be there, e.g. {first_extra!r}: only amount > 3000, each transaction once"
            ).format(counted=counted(sum(extra.values()), "line", "lines"), first_extra=min(extra))
        )
    if missing:
        raise Wrong(
            _(
                "{counted} missing, e.g. {first_missing!r}: read every partition from the beginning until no more records come"
            ).format(
                counted=counted(sum(missing.values()), "alert", "alerts"),
                first_missing=min(missing),
            )
        )


@exercise("03.3", points=2, title=N_("Seek to an offset and read from there"))
def read_from_offset(read, *, topic, start):
    """read: the ConsumerRecords read after ``seek(tp, start)`` on partition 0 of ``topic``."""
    if isinstance(read, str):
        raise Wrong(_("give a list of the records you read, not one string"))
    records = broker_checks.verify_records(read, topic=topic)
    expect(
        records,
        _(
            "nothing read: after consumer.seek(tp, {start}) read with poll() or a for loop (with consumer_timeout_ms so it ends)"
        ).format(start=start),
    )
    others = sorted({r.partition for r in records} - {0})
    expect(
        not others,
        _("a record comes from partition {value}: read partition 0").format(
            value=others[0] if others else ""
        ),
    )
    offsets = [r.offset for r in records]
    expect(
        offsets[0] >= start,
        _(
            "you started at offset {offsets_0}: call consumer.seek(tp, {start}) after assign() and before reading"
        ).format(offsets_0=offsets[0], start=start),
    )
    twice = sorted(o for o, n in Counter(offsets).items() if n > 1)
    expect(
        not twice,
        _("offset {value} was read twice: keep each record once").format(
            value=twice[0] if twice else ""
        ),
    )
    expect(
        offsets[0] == start,
        _(
            "your first record has offset {offsets_0}, not {start}: seek to offset {start} of partition 0 and keep every record from there"
        ).format(offsets_0=offsets[0], start=start),
    )
    end = broker_checks.end_offsets(broker_checks.full_topic(topic))[0]
    expect(
        len(offsets) >= end - start,
        _(
            "read {n_offsets} of the {value} records from offset {start} on: keep reading until no more records come"
        ).format(n_offsets=len(offsets), value=end - start, start=start),
    )
    expect(
        offsets == list(range(start, end)),
        _("expected the records at offsets {start} to {value}, in offset order").format(
            start=start, value=end - 1
        ),
    )
