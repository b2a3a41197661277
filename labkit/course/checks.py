"""Exercise checks: ``nb.check("02.1", answer)`` prints one line a student can act on.

Theory of operation
-------------------
An exercise is an id (``"02.1"``: notebook 02, exercise 1), a number of points, a
title and a *check function*, registered in a ``Registry`` with its ``@exercise``
decorator (the course's exercises live in ``labkit.course.exercises``, one module
per notebook, each with a registry of its own; ``exercises.load()`` merges them). A check function takes the
student's answer as its first argument, plus keyword arguments for whatever it
needs to judge it (``topic=``, ``sent=``), and is pure: it returns normally when
the answer is right and raises ``Wrong("what to look at")`` -- usually through
``expect(condition, hint)`` -- when it is not. Student code that the check calls
goes through ``call()``, which turns its exceptions into a FAIL naming them.

``registry.check(id, answer, **context)`` runs the check and prints exactly one line::

    PASS 02.1 (2/2 points)
    FAIL 02.1 (0/2 points): <hint>
    NOT ATTEMPTED 02.1 (0/2 points): replace the ... with your answer

An answer is *not attempted* when it is ``...`` (or a list/tuple/set/dict holding
``...``), or a function whose body is only ``...``/``pass`` (a stub), or when a
student function called through ``call()`` returns ``...``. Any exception from a
check becomes a FAIL with a one-line reason: never a traceback wall.

An exercise may declare the topics and consumer groups it leaves on the broker
(``topics=``, ``groups=``); its FAIL line then ends with the offer to start afresh with
``nb.reset(id)`` (``labkit.course.reset``), so a wrong first attempt never traps a re-run.

Grading: with ``LABKIT_GRADING=1`` a non-PASS also raises ``CheckFailed`` (same
one-line message; IPython shows just that line), so nbval and ``labkit grade``
count the cell as failed. When ``LABKIT_GRADE_LOG`` names a file, every check
appends one JSON line ``{"exercise", "status", "points", "max_points", "title",
"message"}`` to it; ``labkit grade`` reads that file.

This module never imports the exercises (they import it). A registry is not meant to
be changed from several threads at once.
"""

from __future__ import annotations

import dis
import inspect
import json
import os
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from labkit.errors import IllegalArgumentError
from labkit.i18n import N_, _
from labkit.i18n import counted as counted  # check functions import it from here

GRADING_ENV = "LABKIT_GRADING"
GRADE_LOG_ENV = "LABKIT_GRADE_LOG"
PASS, FAIL, NOT_ATTEMPTED = "PASS", "FAIL", "NOT ATTEMPTED"
# The statuses as a student reads them (the log and the grader keep the English codes).
STATUS_WORDS = {PASS: N_("PASS"), FAIL: N_("FAIL"), NOT_ATTEMPTED: N_("NOT ATTEMPTED")}
NOT_ATTEMPTED_HINT = N_("replace the ... with your answer")
MAX_HINT = 300


class Wrong(Exception):
    """Raised by a check function: the answer is wrong; the message says what to look at."""


class NotAttempted(Exception):
    """Raised by a check function when the answer is still the ``...`` placeholder."""


class StudentCodeError(Exception):
    """The student's function raised while a check called it (see ``call``)."""


class CheckFailed(AssertionError):
    """Raised by ``check`` under grading (``LABKIT_GRADING=1``) for a non-PASS result."""

    def _render_traceback_(self) -> list[str]:  # IPython: show one line, not a traceback
        return [str(self)]


@dataclass(frozen=True)
class Exercise:
    id: str
    points: int
    title: str
    check: Callable[..., Any]
    topics: Mapping[str, int | None] = field(default_factory=dict)
    """The topics the exercise writes, bare names (``"nb10-alerts"``) -> partitions to
    re-create them with on ``nb.reset``, or None to only delete (a topic the student
    creates in the exercise)."""
    groups: tuple[str, ...] = ()
    """The consumer groups the exercise commits offsets for (bare names)."""

    @property
    def has_state(self) -> bool:
        """True when the exercise leaves state on the broker that ``nb.reset`` clears."""
        return bool(self.topics or self.groups)


@dataclass(frozen=True)
class Result:
    exercise: str
    status: str
    points: int
    max_points: int
    title: str
    hint: str = ""

    @property
    def line(self) -> str:
        head = _("{status} {exercise} ({points}/{max_points} points)").format(
            status=_(STATUS_WORDS.get(self.status, self.status)),
            exercise=self.exercise,
            points=self.points,
            max_points=self.max_points,
        )
        return f"{head}: {self.hint}" if self.hint else head

    def as_record(self) -> dict:
        return {
            "exercise": self.exercise,
            "status": self.status,
            "points": self.points,
            "max_points": self.max_points,
            "title": self.title,
            "message": self.line,
        }


class Registry:
    """Exercises by id: the course's (``labkit.course.exercises.load()``) or a test's own.

    ``@registry.exercise(id, points=, title=)`` registers a check function;
    ``registry.evaluate(id, answer, **context)`` runs it and returns a ``Result``;
    ``registry.check(...)`` also prints the line and logs it for grading.
    """

    def __init__(self, exercises: Iterable[Exercise] = ()) -> None:
        self._by_id: dict[str, Exercise] = {}
        for ex in exercises:
            self.add(ex)

    def exercise(
        self,
        exercise_id: str,
        *,
        points: int,
        title: str,
        topics: Mapping[str, int | None] | None = None,
        groups: Iterable[str] = (),
    ) -> Callable:
        """Decorator: register ``fn(answer, **context)`` as the check of ``exercise_id``.

        ``topics`` (``{"nb10-alerts": 1}``: bare name -> partitions, None to only delete)
        and ``groups`` (``("nb10-scoring",)``) declare the broker state the exercise leaves
        behind: ``nb.reset(exercise_id)`` deletes it (re-creating the topics empty), and
        a FAIL line offers that reset. Raises ``IllegalArgumentError`` for a malformed id,
        points < 1, a malformed topic declaration, or an id that another function already
        registered.
        """
        if not isinstance(exercise_id, str) or not exercise_id or " " in exercise_id:
            raise IllegalArgumentError(
                _("an exercise id is a short string like '02.1', got {exercise_id!r}").format(
                    exercise_id=exercise_id
                )
            )
        if not isinstance(points, int) or points < 1:
            raise IllegalArgumentError(
                _("exercise {exercise_id}: points must be an int >= 1, got {points!r}").format(
                    exercise_id=exercise_id, points=points
                )
            )

        state = _state_names(exercise_id, topics, groups)

        def register(fn: Callable) -> Callable:
            self.add(Exercise(exercise_id, points, title, fn, *state))
            return fn

        return register

    def add(self, ex: Exercise) -> None:
        """Register ``ex``; the same function again (a re-run cell) replaces it."""
        old = self._by_id.get(ex.id)
        same = old is not None and (old.check.__module__, old.check.__qualname__) == (
            ex.check.__module__,
            ex.check.__qualname__,
        )
        if old is not None and not same:
            raise IllegalArgumentError(
                _(
                    "exercise {id} is already registered by {module}.{qualname}; pick another id"
                ).format(id=ex.id, module=old.check.__module__, qualname=old.check.__qualname__)
            )
        self._by_id[ex.id] = ex

    def update(self, other: Registry) -> None:
        """Add every exercise of ``other`` (same rules as ``add``)."""
        for ex in other.all():
            self.add(ex)

    def get(self, exercise_id: str) -> Exercise:
        """The registered exercise. Raises ``IllegalArgumentError`` naming the known ids."""
        try:
            return self._by_id[exercise_id]
        except KeyError:
            known = ", ".join(sorted(self._by_id)) or "none"
            raise IllegalArgumentError(
                _(
                    "there is no exercise {exercise_id!r}; check the id in the cell (known: {known})"
                ).format(exercise_id=exercise_id, known=known)
            ) from None

    def all(self) -> list[Exercise]:
        """Every registered exercise, by id."""
        return [self._by_id[k] for k in sorted(self._by_id)]

    def __contains__(self, exercise_id: object) -> bool:
        return exercise_id in self._by_id

    def __len__(self) -> int:
        return len(self._by_id)

    def evaluate(self, exercise_id: str, answer: Any, /, **context: Any) -> Result:
        """Run the check of ``exercise_id`` on ``answer``; never raises for a wrong answer."""
        return evaluate(self.get(exercise_id), answer, **context)

    def check(self, exercise_id: str, answer: Any, /, **context: Any) -> None:
        """Check ``answer``, print one PASS/FAIL line (see ``check``)."""
        check(self.get(exercise_id), answer, **context)


def _state_names(
    exercise_id: str, topics: Mapping[str, int | None] | None, groups: Iterable[str]
) -> tuple[dict[str, int | None], tuple[str, ...]]:
    topics = dict(topics or {})
    for name, partitions in topics.items():
        ok_partitions = partitions is None or (
            isinstance(partitions, int) and not isinstance(partitions, bool) and partitions >= 1
        )
        if not isinstance(name, str) or not name or not ok_partitions:
            raise IllegalArgumentError(
                _(
                    "exercise {exercise_id}: declare topics as {{name: partitions >= 1 or None}}, got {name!r}: {partitions!r}"
                ).format(exercise_id=exercise_id, name=name, partitions=partitions)
            )
    if isinstance(groups, str):
        groups = (groups,)
    group_names = tuple(groups)
    if not all(isinstance(g, str) and g for g in group_names):
        raise IllegalArgumentError(
            _(
                "exercise {exercise_id}: declare groups as a tuple of names, got {group_names!r}"
            ).format(exercise_id=exercise_id, group_names=group_names)
        )
    return topics, group_names


# -- helpers for check functions ---------------------------------------------------


def expect(condition: object, hint: str) -> None:
    """Raise ``Wrong(hint)`` unless ``condition`` is true."""
    if not condition:
        raise Wrong(hint)


def is_stub_function(fn: object) -> bool:
    """True for a function whose body is only ``...``/``pass`` (and maybe a docstring)."""
    code = getattr(inspect.unwrap(fn) if callable(fn) else fn, "__code__", None)
    if code is None or code.co_flags & (inspect.CO_GENERATOR | inspect.CO_COROUTINE):
        return False
    ops = [(i.opname, i.argval) for i in dis.get_instructions(code) if i.opname not in _NOISE]
    return ops in (
        [("LOAD_CONST", None), ("RETURN_VALUE", None)],
        [("LOAD_CONST", Ellipsis), ("RETURN_VALUE", None)],
        [("RETURN_CONST", None)],
        [("RETURN_CONST", Ellipsis)],
    )


_NOISE = frozenset({"RESUME", "NOP", "CACHE", "COPY_FREE_VARS", "MAKE_CELL"})


def is_placeholder(value: object) -> bool:
    """True for ``...``, a container holding ``...`` at its top level, or a stub function."""
    if value is Ellipsis:
        return True
    if isinstance(value, list | tuple | set | frozenset):
        return any(v is Ellipsis for v in value)
    if isinstance(value, Mapping):
        return any(k is Ellipsis or v is Ellipsis for k, v in value.items())
    return inspect.isfunction(value) and is_stub_function(value)


def call(fn: object, *args: Any, **kwargs: Any) -> Any:
    """Call the student's function; raise ``NotAttempted`` for a stub or a ``...`` result.

    An exception raised by the student's code becomes ``StudentCodeError`` (a FAIL
    that names it); a non-callable answer becomes ``Wrong``.
    """
    if is_placeholder(fn):
        raise NotAttempted()
    if not callable(fn):
        raise Wrong(
            _(
                "expected a function, got {kind_fn}; define it with def and pass its name (without parentheses)"
            ).format(kind_fn=_kind(fn))
        )
    try:
        result = fn(*args, **kwargs)
    except Exception as exc:  # reported to the student as one line
        raise StudentCodeError(
            _(
                "your function raised {one_line_exc}; run it on its own in a cell to see where"
            ).format(one_line_exc=_one_line(exc))
        ) from exc
    if is_placeholder(result):
        raise NotAttempted()
    return result


def _kind(value: object) -> str:
    text = repr(value)
    text = text if len(text) <= 60 else text[:57] + "..."
    return f"{type(value).__name__} {text}"


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _shorten(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_HINT else text[: MAX_HINT - 3] + "..."


# -- running a check ---------------------------------------------------------------


def _missing_context(ex: Exercise, context: dict) -> str | None:
    try:
        inspect.signature(ex.check).bind(None, **context)
    except TypeError as exc:
        params = list(inspect.signature(ex.check).parameters.values())[1:]
        needed = ", ".join(f"{p.name}=..." for p in params if p.default is p.empty) or "no extras"
        return _("call it as nb.check({id!r}, answer, {needed}) ({value_join})").format(
            id=ex.id, needed=needed, value_join=" ".join(str(exc).split())
        )
    return None


def reset_offer(ex: Exercise) -> str:
    """What a FAIL line of an exercise with broker state adds: how to start it afresh."""
    return (
        _(" | to start {id} afresh: nb.reset({id!r}), then run its cells again").format(id=ex.id)
        if ex.has_state
        else ""
    )


def evaluate(ex: Exercise, answer: Any, /, **context: Any) -> Result:
    """Run the check of ``ex`` on ``answer``; never raises for a wrong answer.

    A FAIL of an exercise that declares topics or groups ends with the ``nb.reset`` offer
    (after the hint is shortened, so the offer is never cut off).
    """

    def result(status: str, hint: str = "") -> Result:
        points = ex.points if status == PASS else 0
        hint = _shorten(hint) + (reset_offer(ex) if status == FAIL else "")
        return Result(ex.id, status, points, ex.points, ex.title, hint)

    if is_placeholder(answer):
        return result(NOT_ATTEMPTED, _(NOT_ATTEMPTED_HINT))
    problem = _missing_context(ex, context)
    if problem:
        return result(FAIL, problem)
    try:
        ex.check(answer, **context)
    except NotAttempted:
        return result(NOT_ATTEMPTED, _(NOT_ATTEMPTED_HINT))
    except (Wrong, StudentCodeError) as exc:
        return result(FAIL, str(exc) or _("the answer is not right yet"))
    except Exception as exc:  # noqa: BLE001 - a crash in a check is a FAIL, not a traceback
        return result(
            FAIL,
            _(
                "could not check your answer ({one_line_exc}); look at the type and shape of what you passed"
            ).format(one_line_exc=_one_line(exc)),
        )
    return result(PASS)


def is_grading() -> bool:
    """True when running under ``labkit grade`` (``LABKIT_GRADING=1``)."""
    return os.environ.get(GRADING_ENV, "").strip().lower() in {"1", "true", "yes"}


def _log(result: Result) -> None:
    path = os.environ.get(GRADE_LOG_ENV, "").strip()
    if not path:
        return
    with open(path, "a", encoding="utf-8") as log:
        log.write(json.dumps(result.as_record(), ensure_ascii=False, sort_keys=True) + "\n")


def check(ex: Exercise, answer: Any, /, **context: Any) -> None:
    """Check ``answer`` for exercise ``ex`` and print one PASS/FAIL line.

    Keyword arguments are passed to the check function (e.g. ``topic=TOPIC``).
    Returns None (so a notebook shows only the line). Raises ``CheckFailed`` for a
    non-PASS only under grading.
    """
    result = evaluate(ex, answer, **context)
    print(result.line, file=sys.stdout, flush=True)
    _log(result)
    if result.status != PASS and is_grading():
        raise CheckFailed(result.line)
