"""Notebook 08, event-driven vs data-driven apps: the checks of its exercises.

- ``08.1`` ``is_suspicious(tx) -> bool``: the fraud rule both apps share, the course's
  rules R1-R3 of notebook 10 -- ``amount > 3000`` +3, ``elektronika`` and ``amount > 1500``
  +2, the hour of ``timestamp`` below 6 +2 -- suspicious at 3 points or more.
- ``08.2`` the ConsumerRecords the event-driven consumer loop flagged: each must be on the
  broker, in the notebook's topic (``verify_records``), and together they must be exactly the
  suspicious transactions of what was sent, each once.
- ``08.3`` which kind of app fits each situation of ``SITUATIONS``.

08.1 and 08.3 are pure; 08.2 asks the broker whether the flagged records are real. None
looks at latencies (those depend on the machine), only at *which* transactions were flagged. ``labkit.course.exercises.load()``
adds them to the course's registry.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping

from labkit.course.broker_checks import full_topic, verify_records
from labkit.course.checks import Registry, Wrong, call, counted, expect
from labkit.course.exercises._ref import fraud_score, values
from labkit.i18n import N_, _
from labkit.nb.generators import transactions

EXERCISES = Registry()
exercise = EXERCISES.exercise

FLAG_AT = 3  # points: the same rule as notebook 10's scoring service
TOPIC = "nb08-transactions"  # as the notebook names it (nb.topic adds a student's prefix)


# letter -> (situation, the right kind, why); notebook 08 lists the same situations and
# discusses the reasons
SITUATIONS: dict[str, tuple[str, str, str]] = {
    "a": (
        N_("block a card while the customer is still at the till when a payment looks fraudulent"),
        "event",
        "the action must follow each payment within a second",
    ),
    "b": (
        N_("a daily report of sales per store for the shop managers"),
        "data",
        "a periodic query over stored data is enough; nobody waits for single events",
    ),
    "c": (
        N_("send the customer a text message a few seconds after a payment above 3000 PLN"),
        "event",
        "it reacts to one event, right after it happens",
    ),
    "d": (
        N_("an analyst looks for new fraud patterns in last year's transactions"),
        "data",
        "ad-hoc questions over history need the data stored and queryable",
    ),
    "e": (
        N_("switch off a cooling unit as soon as its sensor reports more than 90 °C"),
        "event",
        "a late reaction costs money: react to each reading as it arrives",
    ),
    "f": (
        N_("a chart of revenue per category, refreshed every 15 minutes"),
        "data",
        "a refresh on a schedule is what a query over stored data gives",
    ),
}
_KIND_WORDS = {
    "event": "event",
    "event-driven": "event",
    "event driven": "event",
    "data": "data",
    "data-driven": "data",
    "data driven": "data",
}


def is_suspicious_ref(tx: Mapping) -> bool:
    """The reference rule: notebook 10's fraud score (R1-R3) is 3 or more."""
    return fraud_score(tx) >= FLAG_AT


def _tx(tx_id: str, amount: float, time: str, category: str = "odzież") -> dict:
    return {
        "tx_id": tx_id,
        "user_id": "u03",
        "amount": amount,
        "store": "Wrocław",
        "category": category,
        "timestamp": f"2026-03-02T{time}",
    }


def rule_cases() -> list[tuple[dict, str]]:
    """Edge cases of the rule with what each tests, then ordinary seeded transactions."""
    edges = [
        (_tx("TX7001", 120.0, "12:00:00"), N_("120.00 PLN at noon (0 points)")),
        (_tx("TX7002", 3000.0, "12:00:00"), N_("exactly 3000.00 PLN at noon (R1 needs > 3000)")),
        (_tx("TX7003", 3000.01, "12:00:00"), N_("3000.01 PLN at noon (R1: 3 points)")),
        (
            _tx("TX7004", 4999.99, "18:30:00", "elektronika"),
            N_("electronics for 4999.99 PLN in the evening (R1 + R2: 5 points)"),
        ),
        (_tx("TX7005", 15.0, "00:00:00"), N_("15.00 PLN at midnight (R3 alone: 2 points)")),
        (_tx("TX7006", 15.0, "05:59:59"), N_("15.00 PLN at 05:59:59 (R3 alone: 2 points)")),
        (_tx("TX7007", 15.0, "06:00:00"), N_("15.00 PLN at 06:00:00 (hour 6 is not < 6)")),
        (_tx("TX7008", 4200.0, "03:10:00"), N_("4200.00 PLN at 03:10 (R1 + R3: 5 points)")),
        (_tx("TX7009", 2999.99, "23:59:59"), N_("2999.99 PLN at 23:59:59 (0 points)")),
        (
            _tx("TX7010", 1500.01, "03:00:00", "elektronika"),
            N_("electronics for 1500.01 PLN at 03:00 (R2 + R3: 4 points)"),
        ),
        (
            _tx("TX7011", 1500.0, "03:00:00", "elektronika"),
            N_("electronics for exactly 1500.00 PLN at 03:00 (R2 needs > 1500: 2 points)"),
        ),
        (
            _tx("TX7012", 2000.0, "12:00:00", "elektronika"),
            N_("electronics for 2000.00 PLN at noon (R2 alone: 2 points)"),
        ),
        (
            _tx("TX7013", 2000.0, "03:00:00", "książki"),
            N_("books for 2000.00 PLN at 03:00 (R2 is for elektronika only: 2 points)"),
        ),
        (
            _tx("TX7014", 2000.0, "06:00:00", "elektronika"),
            N_("electronics for 2000.00 PLN at 06:00:00 (R2 alone: hour 6 is not < 6)"),
        ),
    ]
    ordinary = [
        (tx, _describe(tx)) for tx in transactions(seed=801, count=80, suspicious_share=0.3)
    ]
    return edges + ordinary


@exercise("08.1", points=2, title=N_("The fraud rule both apps share"))
def rule(fn):
    """fn(tx) -> True when R1-R3 give 3 points or more, else False."""
    for tx, case in rule_cases():
        why = _(case)
        got = call(fn, dict(tx))
        if got is None:
            got = False
        expect(
            isinstance(got, bool),
            _("return True or False, got {got!r} for {why}").format(got=got, why=why),
        )
        want = is_suspicious_ref(tx)
        expect(
            got == want,
            _(
                "{why}: expected {want}, got {got}: add the points, amount > 3000 +3, elektronika and amount > 1500 +2, hour of 'timestamp' < 6 +2; suspicious at 3 or more"
            ).format(why=why, want=want, got=got),
        )


def _flagged_ids(answer) -> list[str]:
    """tx_ids from a list of transactions, records, tx_ids or (item, ...) tuples, or a
    dict keyed by tx_id."""
    if isinstance(answer, str | bytes):
        raise Wrong(_("give a list of the flagged transactions (or their tx_ids), not one string"))
    if isinstance(answer, Mapping):
        if "tx_id" in answer:
            raise Wrong(_("this is one transaction: collect every flagged transaction in a list"))
        answer = list(answer.keys())
    if not isinstance(answer, Iterable):
        raise Wrong(
            _("give a list of the flagged transactions, got {name}").format(
                name=type(answer).__name__
            )
        )
    ids = []
    for item in answer:
        if isinstance(item, tuple | list) and item and not hasattr(item, "value"):
            item = item[0]
        value = values([item])[0]
        if isinstance(value, Mapping):
            if "tx_id" not in value:
                raise Wrong(
                    _("{dict_value!r} has no tx_id: keep the transactions (record.value)").format(
                        dict_value=dict(value)
                    )
                )
            ids.append(str(value["tx_id"]))
        else:
            ids.append(str(value))
    return ids


def _describe(tx: Mapping) -> str:
    return _("{tx_id} ({amount:.2f} PLN at {time})").format(
        tx_id=tx["tx_id"], amount=float(tx["amount"]), time=str(tx["timestamp"])[11:]
    )


@exercise(
    "08.2", points=2, title=N_("The event-driven app flags exactly the suspicious transactions")
)
def event_driven(flagged, *, sent):
    """flagged: the ConsumerRecords the consumer loop flagged; sent: every transaction the
    stream sent."""
    verify_records(flagged, topic=full_topic(TOPIC))
    sent_txs = {tx["tx_id"]: tx for tx in values(sent)}
    want = {tx_id for tx_id, tx in sent_txs.items() if is_suspicious_ref(tx)}
    got = Counter(_flagged_ids(flagged))
    expect(
        got,
        _(
            "nothing flagged, {n_want} expected: poll the topic until you have seen all {n_sent_txs} transactions and flag each one is_suspicious() accepts"
        ).format(n_want=len(want), n_sent_txs=len(sent_txs)),
    )
    unknown = sorted(set(got) - set(sent_txs))
    expect(
        not unknown,
        _(
            "{value} was not sent in this run: start from an empty list and read only this notebook's topic"
        ).format(value=unknown[0] if unknown else ""),
    )
    extra = sorted(set(got) - want)
    expect(
        not extra,
        _("{value} is not suspicious: flag only what the rule of 08.1 accepts").format(
            value=_describe(sent_txs[extra[0]]) if extra else ""
        ),
    )
    missing = sorted(want - set(got))
    expect(
        not missing,
        _(
            "{counted} not flagged, e.g. {value}: check that 08.1 passes, and keep polling until all {n_sent_txs} transactions arrived (use a deadline, not a fixed number of polls)"
        ).format(
            counted=counted(len(missing), "suspicious transaction", "suspicious transactions"),
            value=_describe(sent_txs[missing[0]]) if missing else "",
            n_sent_txs=len(sent_txs),
        ),
    )
    twice = sorted(k for k, n in got.items() if n > 1)
    expect(
        not twice,
        _("{value} is flagged {value2} times: flag each transaction once").format(
            value=twice[0] if twice else "", value2=got[twice[0]] if twice else 0
        ),
    )


def _kind(answer: object) -> str | None:
    if not isinstance(answer, str):
        return None
    return _KIND_WORDS.get(answer.strip().lower())


@exercise("08.3", points=1, title=N_("Event-driven or data-driven?"))
def which_app(choices):
    """choices: {letter: "event" or "data"} for each situation a-f."""
    expect(isinstance(choices, Mapping), _('give a dict like {"a": "event", "b": "data", ...}'))
    picked = {str(k).strip().lower(): v for k, v in choices.items()}
    missing = [letter for letter in SITUATIONS if letter not in picked]
    expect(
        not missing,
        _("situation {value} has no answer: give one for each letter a-f").format(
            value=missing[0] if missing else ""
        ),
    )
    for letter, (situation, want, _why) in SITUATIONS.items():
        got = _kind(picked[letter])
        expect(
            got is not None,
            _("{letter}: answer 'event' or 'data', got {picked_item!r}").format(
                letter=letter, picked_item=picked[letter]
            ),
        )
        if got != want:
            raise Wrong(
                _(
                    "{letter} ({situation}): think again about how soon the result is needed and whether it reacts to single events or queries stored data"
                ).format(letter=letter, situation=_(situation))
            )
