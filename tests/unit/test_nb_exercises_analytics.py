"""Notebooks 08-10's checks beyond right/wrong/not attempted (those are in
test_nb_checks.py and test_nb_exercises_apps.py): the hint names the mistake the answer
actually makes, and a re-run after a wrong first attempt can pass."""

from collections import Counter
from datetime import datetime, timedelta

import pytest

from labkit import nb
from labkit.course.exercises._ref import burst_users, fraud_score
from labkit.nb import evaluate

pytestmark = pytest.mark.usefixtures("in_both_languages")  # tests/unit/conftest.py


@pytest.fixture(autouse=True)
def _no_grading(monkeypatch):
    monkeypatch.delenv("LABKIT_GRADING", raising=False)
    monkeypatch.delenv("LABKIT_GRADE_LOG", raising=False)


def test_09_exercises_are_numbered_in_the_order_the_notebook_asks_them():
    titles = {e.id: e.title for e in nb.all_exercises() if e.id.startswith("09.")}
    assert [titles[i].split()[0] for i in sorted(titles)][:4] == [
        "Count",  # per store
        "Count,",  # count, sum, min and max per category
        "Alert",  # more than 3 transactions in 60 s
        "Tumbling",
    ]


# -- 09.4 tumbling windows: which mistake ----------------------------------------------


def _start(moment: datetime, size_s: int) -> datetime:
    moment = moment.replace(microsecond=0)
    since_midnight = moment.hour * 3600 + moment.minute * 60 + moment.second
    return moment - timedelta(seconds=since_midnight % size_s)


def _time(reading) -> datetime:
    return datetime.fromisoformat(reading["time"])


def by_window_start(readings, size_s):
    return Counter(_start(_time(r), size_s).isoformat() for r in readings)


def by_window_end(readings, size_s):
    return Counter(
        (_start(_time(r), size_s) + timedelta(seconds=size_s)).isoformat() for r in readings
    )


def by_own_time(readings, size_s):
    return Counter(r["time"] for r in readings)


def by_newest_seen(readings, size_s):
    """Processing time: a late reading counts in the window the stream has reached."""
    counts, newest = Counter(), datetime.min
    for r in readings:
        newest = max(newest, _time(r))
        counts[_start(newest, size_s)] += 1
    return counts


def dropping_late(readings, size_s):
    counts, newest = Counter(), datetime.min
    for r in readings:
        if _time(r) >= newest:
            newest = _time(r)
            counts[_start(newest, size_s)] += 1
    return counts


def twice_each(readings, size_s):
    counts = by_window_start(readings, size_s)
    return {k: 2 * n for k, n in counts.items()}


@pytest.mark.parametrize(
    ("answer", "hint"),
    [
        (by_window_end, "your keys are the windows' ends: key each window by its start"),
        (by_own_time, "is not the start of a window"),
        (by_newest_seen, "follow the order the readings arrived in"),
        (dropping_late, "of the 120 readings: count every reading, late ones too"),
        (twice_each, "tumbling windows do not overlap"),
    ],
)
def test_09_4_the_hint_names_the_mistake(answer, hint):
    assert evaluate("09.4", by_window_start).status == "PASS"
    result = evaluate("09.4", answer)
    assert result.status == "FAIL"
    assert hint in result.line


def test_09_4_keyed_by_window_end_is_not_told_about_arrival_time():
    line = evaluate("09.4", by_window_end).line
    assert "arrived" not in line
    assert "event time" not in line


# -- 10.3 schema v2: risk_level added without breaking a v1 consumer ------------------


def enrich_right(tx):
    points = fraud_score(tx)
    level = "HIGH" if points >= 3 else "MEDIUM" if points >= 1 else "LOW"
    return {**tx, "risk_level": level, "schema_version": 2}


def enrich_in_place(tx):
    tx.update(risk_level=enrich_right(tx)["risk_level"], schema_version=2)
    return tx


@pytest.mark.parametrize(
    ("answer", "hint"),
    [
        (
            lambda tx: {"transaction": tx, "risk_level": "LOW", "schema_version": 2},
            "a consumer written for v1 breaks on your record",
        ),
        (
            lambda tx: dict(enrich_right(tx), amount=f"{tx['amount']:.2f} PLN"),
            "TypeError: amount is str, not float",
        ),
        (
            lambda tx: dict(enrich_right(tx), store=tx["store"].upper()),
            "a v1 consumer reads your record for",
        ),
        (lambda tx: {**tx, "risk_level": enrich_right(tx)["risk_level"]}, "schema_version None"),
        (
            lambda tx: dict(enrich_right(tx), risk_level="HIGH" if fraud_score(tx) >= 3 else "LOW"),
            "its risk_level is MEDIUM, not LOW",
        ),
        (lambda tx: dict(enrich_right(tx), risk_level="high"), "risk_level is one of"),
        (lambda tx: dict(enrich_right(tx), score=fraud_score(tx)), "your record has score too"),
        (enrich_in_place, "enrich changed its input"),
    ],
)
def test_10_3_schema_v2_hints(answer, hint):
    assert evaluate("10.3", enrich_right).status == "PASS"
    result = evaluate("10.3", answer)
    assert result.status == "FAIL"
    assert hint in result.line


def test_10_3_not_attempted():
    def enrich(tx):
        """Schema v2."""
        ...

    assert evaluate("10.3", enrich).status == "NOT ATTEMPTED"


# -- a re-run after a wrong first attempt passes: the function checks keep no state ----


def stats_right(txs):
    stats = {}
    for tx in txs:
        s = stats.setdefault(tx["category"], {"count": 0, "sum": 0.0, "min": 1e9, "max": 0.0})
        s["count"] += 1
        s["sum"] += tx["amount"]
        s["min"] = min(s["min"], tx["amount"])
        s["max"] = max(s["max"], tx["amount"])
    return stats


def bursts_right(txs):
    return burst_users(txs, 60)


CHOICES = {"a": "event", "b": "data", "c": "event", "d": "data", "e": "event", "f": "data"}
RIGHT_AND_WRONG = {
    "08.1": (lambda tx: fraud_score(tx) >= 3, lambda tx: tx["amount"] > 3000),
    "08.3": (CHOICES, dict(CHOICES, a="data")),
    "09.1": (lambda txs: Counter(tx["store"] for tx in txs), lambda txs: {}),
    "09.2": (stats_right, lambda txs: {}),
    "09.3": (bursts_right, lambda txs: set()),
    "09.4": (by_window_start, by_window_end),
    "10.1": (fraud_score, lambda tx: 0),
    "10.3": (enrich_right, lambda tx: dict(tx)),
}


@pytest.mark.parametrize("exercise_id", sorted(RIGHT_AND_WRONG))
def test_a_rerun_after_a_wrong_attempt_passes(exercise_id):
    """These checks keep no state (08.2, 10.2 and 10.4 ask the broker: their re-run tests
    are in tests/integration/test_nb08_event_driven.py and test_nb10_capstone_checks.py)."""
    right, wrong = RIGHT_AND_WRONG[exercise_id]
    assert evaluate(exercise_id, wrong).status == "FAIL"
    assert evaluate(exercise_id, right).status == "PASS"
