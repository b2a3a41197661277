"""Exercises declare the broker state they leave (topics, groups); a FAIL line of such an
exercise offers nb.reset (issue 18.3). The reset itself runs against a real broker in
tests/integration/test_course_broker_checks.py."""

from __future__ import annotations

import pytest

from labkit.course.checks import Registry, expect
from labkit.course.reset import reset_exercise
from labkit.errors import IllegalArgumentError


def _registry(**state):
    registry = Registry()

    @registry.exercise("t.1", points=2, title="Test exercise", **state)
    def _check(answer):
        expect(answer == 1, "the answer is 1; " + "look closely " * 40)

    return registry


def test_a_fail_line_of_an_exercise_with_state_offers_the_reset_uncut():
    registry = _registry(topics={"nb99-alerts": 1}, groups=("nb99-scoring",))
    ex = registry.get("t.1")
    assert ex.topics == {"nb99-alerts": 1}
    assert ex.groups == ("nb99-scoring",)
    line = registry.evaluate("t.1", 2).line
    assert line.startswith("FAIL t.1 (0/2 points): the answer is 1;")
    assert line.endswith("| to start t.1 afresh: nb.reset('t.1'), then run its cells again")
    assert registry.evaluate("t.1", 1).line == "PASS t.1 (2/2 points)"
    assert "nb.reset" not in registry.evaluate("t.1", ...).line


def test_an_exercise_without_state_offers_no_reset():
    registry = _registry()
    assert not registry.get("t.1").has_state
    assert "nb.reset" not in registry.evaluate("t.1", 2).line
    with pytest.raises(IllegalArgumentError, match="nothing to reset"):
        reset_exercise(registry.get("t.1"), bootstrap="localhost:1")


@pytest.mark.parametrize(
    "state",
    [
        {"topics": {"nb99-a": 0}},
        {"topics": {"nb99-a": "3"}},
        {"topics": {"": 1}},
        {"groups": ("",)},
    ],
)
def test_malformed_declarations_are_refused(state):
    with pytest.raises(IllegalArgumentError, match="declare"):
        _registry(**state)


def test_a_single_group_name_is_one_group():
    assert _registry(groups="nb99-g").get("t.1").groups == ("nb99-g",)
