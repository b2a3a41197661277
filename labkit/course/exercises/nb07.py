"""Notebook 07, retention and replay: the checks of its exercises (rules in ``labkit.course.exercises``).

- ``07.1`` (1 points) Replay a topic from the beginning
"""

from __future__ import annotations

from collections import Counter

from labkit.course.checks import Registry, expect
from labkit.course.exercises._ref import tx_ids

EXERCISES = Registry()
exercise = EXERCISES.exercise


@exercise("07.1", points=1, title="Replay a topic from the beginning")
def replay(answer, *, sent):
    """answer: the values (or tx_ids) read again after seeking to the beginning."""
    got = Counter(tx_ids(answer))
    want = Counter(tx_ids(sent))
    missing = want - got
    expect(
        not missing,
        f"{sum(missing.values())} of {sum(want.values())} records not replayed: "
        "call seek_to_beginning() before reading again",
    )
