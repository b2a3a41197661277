"""``from labkit import nb``: everything a lab notebook needs, behind one import.

- ``nb.check("02.1", answer, ...)`` -- check an exercise, print one PASS/FAIL line;
  ``nb.all_exercises()`` lists them; ``@nb.exercise`` registers a new one;
  ``nb.reset("10.2")`` clears what a wrong attempt left on the broker. The
  exercises are ``labkit.course``'s, loaded on the first check (this facade is the one
  place in ``labkit.nb`` that loads the course).
- ``nb.transactions(...)``, ``nb.sensors(...)`` -- seeded event generators;
  ``nb.EventStream(...)`` sends them to a topic from a background thread.
- ``nb.topic("nb03-alerts")``, ``nb.group("nb06-fraud")`` -- this notebook's topic and
  group names: as written on a private broker, ``anna.nb03-alerts`` on a broker shared by a
  class (``LABKIT_STUDENT=anna``; ``labkit.nb.names``); ``nb.student()`` is the name in use.
- ``nb.cluster()`` -- a ZooKeeper and three labkit brokers in cluster mode for notebook 13
  (``labkit.nb.cluster_mode``): describe, kill, pause and start brokers, watch leaders move.
- ``nb.LivePlot``, ``nb.dashboard()``, ``nb.doctor()``, ``nb.progress(...)`` -- live
  plots and widgets (``labkit.nb.live``, ``.dashboard_widget``, ``.doctor_checks``,
  ``.progress_bar``), imported on first use so that ``import labkit.nb`` stays light
  (no matplotlib).

Theory of operation for the lazy names: a module-level ``__getattr__`` (PEP 562)
imports the module that defines a name on first access and returns that name.
``dashboard``, ``doctor`` and ``progress`` are functions here; the modules that
define them have other names, so importing one never rebinds ``nb.doctor`` to a
module.
"""

from __future__ import annotations

import functools
import importlib
import sys
from collections.abc import Callable
from typing import Any

from labkit.course.checks import (
    CheckFailed,
    Exercise,
    Registry,
    Result,
    Wrong,
    call,
    expect,
    is_grading,
)
from labkit.errors import IllegalArgumentError, IllegalStateError
from labkit.nb.generators import CATEGORIES, SENSOR_IDS, STORES, sensors, transactions
from labkit.nb.names import group, student, topic
from labkit.nb.stream import EventStream, bootstrap_servers, json_serializer
from labkit.nb.tools_path import ensure_on_path

# `!labkit ...` and `!kafka-topics.sh ...` cells: this installation's console tools on
# the kernel's PATH, however Jupyter was started (labkit.nb.tools_path)
ensure_on_path()

__all__ = [
    "CATEGORIES",
    "SENSOR_IDS",
    "STORES",
    "CheckFailed",
    "EventStream",
    "IllegalArgumentError",
    "IllegalStateError",
    "LivePlot",
    "Wrong",
    "bootstrap_servers",
    "call",
    "check",
    "cluster",
    "dashboard",
    "doctor",
    "all_exercises",
    "evaluate",
    "exercise",
    "expect",
    "group",
    "is_grading",
    "json_serializer",
    "language",
    "progress",
    "reset",
    "sensors",
    "stop_all",
    "student",
    "topic",
    "transactions",
]

# name -> module that defines it (the module's attribute of the same name is used)
_LAZY = {
    "LivePlot": "labkit.nb.live",
    "cluster": "labkit.nb.cluster_mode",
    "dashboard": "labkit.nb.dashboard_widget",
    "doctor": "labkit.nb.doctor_checks",
    "progress": "labkit.nb.progress_bar",
}
_OPTIONAL_MODULES = (
    "labkit.nb.live",
    "labkit.nb.dashboard_widget",
    "labkit.nb.doctor_checks",
    "labkit.nb.progress_bar",
)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    if not name.startswith("_"):
        for module_name in _OPTIONAL_MODULES:
            module = importlib.import_module(module_name)
            if name in getattr(module, "__all__", ()):
                return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@functools.cache
def _course() -> Registry:
    # Imported here, not at the top: the exercises import labkit.nb.generators, which
    # runs this package's __init__ first.
    from labkit.course import exercises

    return exercises.load()


def check(exercise_id: str, answer: Any, /, **context: Any) -> None:
    """Check ``answer`` for exercise ``exercise_id`` and print one PASS/FAIL line.

    Keyword arguments are passed to the check (e.g. ``topic=TOPIC``). Returns None, so a
    notebook shows only the line. Raises ``CheckFailed`` for a non-PASS only under
    grading (``LABKIT_GRADING=1``); ``IllegalArgumentError`` for an unknown id.
    """
    _course().check(exercise_id, answer, **context)


def evaluate(exercise_id: str, answer: Any, /, **context: Any) -> Result:
    """The ``Result`` of checking ``answer`` (nothing printed); raises only for an unknown id."""
    return _course().evaluate(exercise_id, answer, **context)


def all_exercises() -> list[Exercise]:
    """Every exercise of the course (and any registered with ``nb.exercise``), by id."""
    return _course().all()


def exercise(exercise_id: str, *, points: int, title: str, **state: Any) -> Callable:
    """Decorator: register a check of your own next to the course's (``nb.check`` runs it);
    ``topics=``/``groups=`` declare what ``nb.reset`` clears (``Registry.exercise``)."""
    return _course().exercise(exercise_id, points=points, title=title, **state)


def reset(exercise_id: str) -> None:
    """Start exercise ``exercise_id`` afresh: delete the topics and consumer groups it
    declares (your own, prefixed on a shared broker) and re-create its topics empty; print
    what was done. Offered by the FAIL line of such an exercise. Raises
    ``IllegalArgumentError`` for an unknown id or an exercise with nothing to reset,
    ``IllegalStateError`` while a consumer of its group is still open."""
    from labkit.course.reset import reset_exercise

    print(reset_exercise(_course().get(exercise_id)).line, flush=True)


def language(code: str | None = None) -> str:
    """The language of labkit's messages in this kernel; ``nb.language("pl")`` switches to
    Polish (``"en"``: English), ``nb.language()`` only tells. Without a call it comes from
    the notebook's metadata, ``LABKIT_LANG`` or the locale (``labkit.i18n``). Raises
    ``IllegalArgumentError`` naming the languages for one labkit does not speak."""
    from labkit import i18n

    if code is None:
        return i18n.language()
    try:
        return i18n.set_language(code)
    except ValueError as exc:
        raise IllegalArgumentError(str(exc)) from None


def stop_all() -> int:
    """Stop every background event stream, live plot and dashboard; returns how many ran."""
    from labkit.nb import stream

    stopped = stream.stop_all()
    live = sys.modules.get("labkit.nb.live")
    if live is not None and callable(getattr(live, "stop_all", None)):
        stopped += live.stop_all()
    return stopped


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
