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
from labkit.nb.generators import STORES, transactions

EXERCISES = Registry()
exercise = EXERCISES.exercise


@exercise("00.1", points=1, title="Warm-up: the four cities of the shop network")
def four_cities(answer):
    """answer: the four store cities (any order), e.g. a list of strings."""
    expect(
        isinstance(answer, list | tuple | set),
        f"give a list of strings, got {type(answer).__name__}",
    )
    got = {str(city).strip() for city in answer}
    missing = [c for c in STORES if c not in got]
    extra = sorted(got - set(STORES))
    expect(
        not extra,
        f"{extra[0]!r} is not one of the cities; check the spelling "
        "(Polish letters: Kraków, Gdańsk, Wrocław)"
        if extra
        else "",
    )
    expect(
        not missing,
        f"{counted(len(missing), 'city')} missing: look at the 'store' field of a transaction",
    )


def _biggest_cases() -> list[list[dict]]:
    return [
        list(transactions(seed=seed, count=count, suspicious_share=0.1))
        for seed, count in ((2001, 250), (2002, 40))
    ]


@exercise("00.2", points=1, title="Warm-up: find the biggest transaction")
def biggest_transaction(fn):
    """fn(transactions) -> the transaction (dict) with the largest amount, or its tx_id."""
    for data in _biggest_cases():
        want = max(data, key=lambda tx: tx["amount"])
        got = call(fn, [dict(tx) for tx in data])
        if isinstance(got, int | float) and not isinstance(got, bool):
            raise Wrong(
                f"you returned the number {got!r}: return the whole transaction (the "
                "dict), e.g. max(transactions, key=lambda tx: tx['amount'])"
            )
        got_id = got.get("tx_id") if isinstance(got, Mapping) else got
        if not isinstance(got_id, str):
            raise Wrong(f"return one transaction (a dict with 'tx_id'), got {type(got).__name__}")
        if got_id == want["tx_id"]:
            continue
        smallest = min(data, key=lambda tx: tx["amount"])
        expect(
            got_id != smallest["tx_id"],
            f"{got_id} has the smallest amount "
            f"({smallest['amount']:.2f} PLN): look for the largest",
        )
        amounts = {tx["tx_id"]: tx["amount"] for tx in data}
        shown = f" ({amounts[got_id]:.2f} PLN)" if got_id in amounts else ""
        raise Wrong(
            f"expected {want['tx_id']} ({want['amount']:.2f} PLN), got {got_id}{shown}: "
            "compare the 'amount' field of every transaction"
        )
