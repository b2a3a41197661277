"""Notebook 08's checks (labkit.course.exercises.nb08): right, wrong and not-attempted answers."""

from datetime import datetime

import pytest

from labkit import nb
from labkit.course.exercises._ref import fraud_score
from labkit.course.exercises.nb08 import SITUATIONS, is_suspicious_ref, rule_cases
from labkit.nb import evaluate
from labkit.nb.generators import transactions

pytestmark = pytest.mark.usefixtures("in_both_languages")  # tests/unit/conftest.py


@pytest.fixture(autouse=True)
def _no_grading(monkeypatch):
    monkeypatch.delenv("LABKIT_GRADING", raising=False)
    monkeypatch.delenv("LABKIT_GRADE_LOG", raising=False)


def line(exercise_id, answer, **context):
    return evaluate(exercise_id, answer, **context).line


def test_the_checks_are_registered_with_the_course():
    ids = {e.id: e for e in nb.all_exercises()}
    assert {"08.1", "08.2", "08.3"} <= set(ids)
    assert [ids[i].points for i in ("08.1", "08.2", "08.3")] == [2, 2, 1]


# -- 08.1 the rule -------------------------------------------------------------------


def right_rule(tx):
    """Notebook 10's rules R1-R3, suspicious at 3 points or more."""
    points = 3 if tx["amount"] > 3000 else 0
    points += 2 if tx["category"] == "elektronika" and tx["amount"] > 1500 else 0
    points += 2 if datetime.fromisoformat(tx["timestamp"]).hour < 6 else 0
    return points >= 3


def old_rule(tx):
    """What 08.1 asked before: large or at night (not the rule notebook 10 uses)."""
    return tx["amount"] > 3000 or datetime.fromisoformat(tx["timestamp"]).hour < 6


def test_08_1_the_reference_rule_is_notebook_10s_score_of_3_or_more():
    verdicts = {tx["tx_id"]: is_suspicious_ref(tx) for tx, _ in rule_cases()[:14]}
    assert verdicts == {
        "TX7001": False,
        "TX7002": False,
        "TX7003": True,
        "TX7004": True,
        "TX7005": False,
        "TX7006": False,
        "TX7007": False,
        "TX7008": True,
        "TX7009": False,
        "TX7010": True,
        "TX7011": False,
        "TX7012": False,
        "TX7013": False,
        "TX7014": False,
    }
    ordinary = [tx for tx, _ in rule_cases()[14:]]
    assert any(is_suspicious_ref(tx) for tx in ordinary)
    assert not all(is_suspicious_ref(tx) for tx in ordinary)
    assert all(is_suspicious_ref(tx) == (fraud_score(tx) >= 3) for tx, _ in rule_cases())


def test_08_1_right_answer_passes_and_none_counts_as_false():
    def with_fallthrough(tx):
        if right_rule(tx):
            return True

    assert line("08.1", right_rule) == "PASS 08.1 (2/2 points)"
    assert evaluate("08.1", with_fallthrough).status == "PASS"


@pytest.mark.parametrize(
    ("wrong", "hint"),
    [
        (old_rule, "15.00 PLN at midnight (R3 alone: 2 points): expected False"),
        (lambda tx: tx["amount"] > 3000, "electronics for 1500.01 PLN at 03:00 (R2 + R3"),
        (lambda tx: tx["amount"] >= 3000 or right_rule(tx), "exactly 3000.00 PLN at noon"),
        (
            lambda tx: right_rule(dict(tx, timestamp=tx["timestamp"].replace("T06:", "T05:"))),
            "06:00:00 (R2 alone: hour 6 is not < 6): expected False",
        ),
        (lambda tx: "ALERT" if right_rule(tx) else "", "return True or False, got ''"),
    ],
)
def test_08_1_wrong_rules_get_a_hint_naming_the_case(wrong, hint):
    result = evaluate("08.1", wrong)
    assert result.status == "FAIL"
    assert hint in result.line


def test_08_1_not_attempted_and_a_crashing_rule():
    def stub(tx):
        """True when the transaction is suspicious."""
        # YOUR CODE HERE
        ...

    assert evaluate("08.1", stub).status == "NOT ATTEMPTED"
    assert evaluate("08.1", ...).status == "NOT ATTEMPTED"
    crash = evaluate("08.1", lambda tx: tx["time"])
    assert crash.status == "FAIL"
    assert "KeyError" in crash.line


# -- 08.2 the event-driven loop ------------------------------------------------------


@pytest.fixture
def sent():
    return list(transactions(seed=808, count=600, suspicious_share=0.2))


def suspicious(sent):
    return [tx for tx in sent if is_suspicious_ref(tx)]


def test_08_2_not_attempted_and_missing_context(sent):
    assert evaluate("08.2", ..., sent=sent).status == "NOT ATTEMPTED"
    assert evaluate("08.2", [...], sent=sent).status == "NOT ATTEMPTED"
    assert "nb.check('08.2', answer, sent=...)" in line("08.2", suspicious(sent))
    # the answers themselves are checked on the broker: tests/integration/test_nb08_event_driven.py


# -- 08.3 which kind of app ----------------------------------------------------------


def right_choices():
    return {letter: kind for letter, (_, kind, _) in SITUATIONS.items()}


def test_08_3_right_answers_in_several_spellings():
    assert line("08.3", right_choices()) == "PASS 08.3 (1/1 points)"
    long_names = {k.upper(): f" {v.title()}-Driven " for k, v in right_choices().items()}
    assert evaluate("08.3", long_names).status == "PASS"


def test_08_3_wrong_answers():
    swapped = dict(right_choices(), b="event")
    assert line("08.3", swapped).startswith("FAIL 08.3 (0/1 points): b (a daily report")
    partial = {k: v for k, v in right_choices().items() if k != "f"}
    assert "situation f has no answer" in line("08.3", partial)
    assert "answer 'event' or 'data', got 'stream'" in line(
        "08.3", dict(right_choices(), a="stream")
    )
    assert "give a dict" in line("08.3", ["event", "data"])


def test_08_3_not_attempted():
    assert evaluate("08.3", ...).status == "NOT ATTEMPTED"
    assert evaluate("08.3", dict(right_choices(), c=...)).status == "NOT ATTEMPTED"
