"""The course's exercises: one module per notebook (``nb00`` ... ``nb13``, and ``nb06b``).

Each module has a registry of its own, ``EXERCISES``, and one decorated check
function per exercise::

    EXERCISES = Registry()
    exercise = EXERCISES.exercise

    @exercise("03.9", points=2, title="Count alerts per store")
    def alerts_per_store(answer, *, sent):
        expected = ...
        expect(dict(answer) == expected, "count only transactions with amount > 3000")

The first argument is what the student passes to ``nb.check(id, answer, ...)``;
keyword arguments are the context the notebook passes (``sent=``, ``topic=``).
Raise ``Wrong`` (via ``expect``) with a hint that says what to look at; call
student functions through ``call()``. Checks of student *functions* use their own
seeded data, so they are deterministic and pure (no broker, no clock); checks of *Kafka
work* verify it on the broker (``labkit.course.broker_checks``), never only on a list the
notebook keeps. An exercise that leaves topics or committed offsets behind declares them
(``topics=``, ``groups=``) so that ``nb.reset(id)`` can clear them (``labkit.course.reset``).

Importing a module registers nothing anywhere else: ``load()`` builds the course's
registry from the modules' registries (``nb.check`` calls it once, lazily).
Reference answers shared by checks and masters live in ``_ref``.
"""

from __future__ import annotations

import importlib

from labkit.course.checks import Registry

NOTEBOOKS = (
    "nb00",
    "nb01",
    "nb02",
    "nb03",
    "nb04",
    "nb05",
    "nb06",
    "nb06b",
    "nb07",
    "nb08",
    "nb09",
    "nb10",
    "nb11",
    "nb12",
    "nb13",
)


def load() -> Registry:
    """A new registry holding every exercise of the series (ids must not clash)."""
    course = Registry()
    for name in NOTEBOOKS:
        module = importlib.import_module(f"{__name__}.{name}")
        course.update(module.EXERCISES)
    return course
