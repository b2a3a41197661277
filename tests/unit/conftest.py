"""Fixtures for the unit tests.

``in_both_languages``: the exercise tests (tests/unit/test_nb_exercises_*.py) run twice,
in English and in Polish (issue 15: the wrong-answer tests run in both languages). In
the Polish run every ``evaluate`` runs the check in Polish *and* in English: the status
and points must be the same, a FAIL's Polish line must differ from the English one (its
hint is translated, and formatting it with the check's values must work), and the
English result goes back to the test, whose hint assertions are written in English.
"""

from __future__ import annotations

import sys

import pytest

from labkit import i18n
from labkit import nb as labkit_nb


def _in_both(evaluate):
    def evaluate_in_both(exercise_id, answer, /, **context):
        i18n.set_language("pl")
        try:
            polish = evaluate(exercise_id, answer, **context)
        finally:
            i18n.set_language("en")
        english = evaluate(exercise_id, answer, **context)
        assert (polish.status, polish.points) == (english.status, english.points), (
            polish.line,
            english.line,
        )
        if english.status == "FAIL":
            assert polish.line != english.line, f"not translated: {english.line}"
        return english

    return evaluate_in_both


@pytest.fixture(params=["en", "pl"])
def in_both_languages(request, monkeypatch):
    i18n.set_language("en")
    if request.param == "pl":
        wrapped = _in_both(labkit_nb.evaluate)
        monkeypatch.setattr(labkit_nb, "evaluate", wrapped)
        monkeypatch.setattr(sys.modules[request.module.__name__], "evaluate", wrapped)
    yield request.param
    i18n.set_language(None)
