"""Notebook 08's checks (labkit.course.exercises.nb08): right, wrong and not-attempted answers."""

import json
from datetime import datetime
from types import SimpleNamespace

import pytest

from labkit import nb
from labkit.course.exercises.nb08 import SITUATIONS, is_suspicious_ref, rule_cases
from labkit.nb import evaluate
from labkit.nb.generators import transactions


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
    return tx["amount"] > 3000 or datetime.fromisoformat(tx["timestamp"]).hour < 6


def test_08_1_the_reference_rule_on_its_edges():
    verdicts = {tx["tx_id"]: is_suspicious_ref(tx) for tx, _ in rule_cases()[:9]}
    assert verdicts == {
        "TX7001": False,
        "TX7002": False,
        "TX7003": True,
        "TX7004": True,
        "TX7005": True,
        "TX7006": True,
        "TX7007": False,
        "TX7008": True,
        "TX7009": False,
    }
    ordinary = [tx for tx, _ in rule_cases()[9:]]
    assert any(is_suspicious_ref(tx) for tx in ordinary)
    assert not all(is_suspicious_ref(tx) for tx in ordinary)


def test_08_1_right_answer_passes_and_none_counts_as_false():
    def with_fallthrough(tx):
        if right_rule(tx):
            return True

    assert line("08.1", right_rule) == "PASS 08.1 (2/2 points)"
    assert evaluate("08.1", with_fallthrough).status == "PASS"


@pytest.mark.parametrize(
    ("wrong", "hint"),
    [
        (lambda tx: tx["amount"] > 3000, "15.00 PLN at midnight (night: hour 0): expected True"),
        (lambda tx: tx["amount"] >= 3000 or right_rule(tx), "exactly 3000.00 PLN at noon"),
        (
            lambda tx: tx["amount"] > 3000 or datetime.fromisoformat(tx["timestamp"]).hour <= 6,
            "06:00:00 (hour 6 is not < 6): expected False",
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
    return list(transactions(seed=808, count=150, suspicious_share=0.2))


def suspicious(sent):
    return [tx for tx in sent if is_suspicious_ref(tx)]


def record(tx):
    return SimpleNamespace(value=json.dumps(tx).encode(), timestamp=0)


def test_08_2_accepts_transactions_records_ids_pairs_and_dicts(sent):
    flagged = suspicious(sent)
    assert len(flagged) > 5
    ids = [tx["tx_id"] for tx in flagged]
    for answer in (
        flagged,
        [record(tx) for tx in flagged],
        ids,
        [(tx, 12.5) for tx in flagged],
        {i: 3.0 for i in ids},
    ):
        assert evaluate("08.2", answer, sent=sent).status == "PASS", answer
    assert (
        evaluate("08.2", [record(tx) for tx in flagged], sent=[record(tx) for tx in sent]).status
        == "PASS"
    )


def test_08_2_wrong_answers(sent):
    flagged = suspicious(sent)
    large_only = [tx for tx in sent if tx["amount"] > 3000]
    assert "not flagged, e.g." in line("08.2", large_only, sent=sent)
    assert "check that 08.1 passes" in line("08.2", large_only, sent=sent)
    ordinary = next(tx for tx in sent if not is_suspicious_ref(tx))
    assert f"{ordinary['tx_id']} (" in line("08.2", [*flagged, ordinary], sent=sent)
    assert "is not suspicious" in line("08.2", [*flagged, ordinary], sent=sent)
    assert "flagged 2 times" in line("08.2", flagged + flagged[:1], sent=sent)
    assert "nothing flagged" in line("08.2", [], sent=sent)
    assert "was not sent in this run" in line("08.2", [*flagged, "TX9999"], sent=sent)
    assert "one transaction" in line("08.2", flagged[0], sent=sent)
    assert "not one string" in line("08.2", "TX0001", sent=sent)


def test_08_2_not_attempted_and_missing_context(sent):
    assert evaluate("08.2", ..., sent=sent).status == "NOT ATTEMPTED"
    assert evaluate("08.2", [...], sent=sent).status == "NOT ATTEMPTED"
    assert "nb.check('08.2', answer, sent=...)" in line("08.2", suspicious(sent))


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
