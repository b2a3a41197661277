"""Notebook 00, start here: the checks of its exercises (rules in ``labkit.course.exercises``).

- ``00.1`` (1 points) Warm-up: the four cities of the shop network
- ``00.2`` (1 points) Warm-up: find the biggest transaction

How the notebook calls them:

| id   | check call                                              | answer                                  |
|------|---------------------------------------------------------|-----------------------------------------|
| 00.2 | ``nb.check("00.2", biggest)``                           | ``biggest(txs)``: the largest transaction |
"""

from __future__ import annotations

from collections.abc import Mapping

from labkit.course.checks import Registry, Wrong, call, counted, expect
from labkit.i18n import N_, _
from labkit.nb.generators import STORES, transactions

EXERCISES = Registry()
exercise = EXERCISES.exercise


@exercise("00.1", points=1, title=N_("Warm-up: the four cities of the shop network"))
def four_cities(answer):
    """answer: the four store cities (any order), e.g. a list of strings."""
    expect(
        isinstance(answer, list | tuple | set),
        _("give a list of strings, got {name}").format(name=type(answer).__name__),
    )
    got = {str(city).strip() for city in answer}
    missing = [c for c in STORES if c not in got]
    extra = sorted(got - set(STORES))
    expect(
        not extra,
        _(
            "{extra_0!r} is not one of the cities; check the spelling (Polish letters: Kraków, Gdańsk, Wrocław)"
        ).format(extra_0=extra[0])
        if extra
        else "",
    )
    expect(
        not missing,
        _("{counted} missing: look at the 'store' field of a transaction").format(
            counted=counted(len(missing), "city", "cities")
        ),
    )


def _biggest_cases() -> list[list[dict]]:
    return [
        list(transactions(seed=seed, count=count, suspicious_share=0.1))
        for seed, count in ((2001, 250), (2002, 40))
    ]


@exercise("00.2", points=1, title=N_("Warm-up: find the biggest transaction"))
def biggest_transaction(fn):
    """fn(transactions) -> the transaction (dict) with the largest amount, or its tx_id."""
    for data in _biggest_cases():
        want = max(data, key=lambda tx: tx["amount"])
        got = call(fn, [dict(tx) for tx in data])
        if isinstance(got, int | float) and not isinstance(got, bool):
            raise Wrong(
                _(
                    "you returned the number {got!r}: return the whole transaction (the dict), e.g. max(transactions, key=lambda tx: tx['amount'])"
                ).format(got=got)
            )
        got_id = got.get("tx_id") if isinstance(got, Mapping) else got
        if not isinstance(got_id, str):
            raise Wrong(
                _("return one transaction (a dict with 'tx_id'), got {name}").format(
                    name=type(got).__name__
                )
            )
        if got_id == want["tx_id"]:
            continue
        smallest = min(data, key=lambda tx: tx["amount"])
        expect(
            got_id != smallest["tx_id"],
            _(
                "{got_id} has the smallest amount ({smallest_amount:.2f} PLN): look for the largest"
            ).format(got_id=got_id, smallest_amount=smallest["amount"]),
        )
        amounts = {tx["tx_id"]: tx["amount"] for tx in data}
        shown = (
            _(" ({amounts_item:.2f} PLN)").format(amounts_item=amounts[got_id])
            if got_id in amounts
            else ""
        )
        raise Wrong(
            _(
                "expected {want_tx_id} ({want_amount:.2f} PLN), got {got_id}{shown}: compare the 'amount' field of every transaction"
            ).format(
                want_tx_id=want["tx_id"], want_amount=want["amount"], got_id=got_id, shown=shown
            )
        )
