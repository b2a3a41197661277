"""Notebook 11's checks (labkit.course.exercises.nb11): 11.1's right, wrong and
not-attempted answers, and the reference 11.2 compares the alerts topic with."""

from datetime import UTC, datetime, timedelta

import pytest

from labkit import nb
from labkit.course.exercises.nb11 import bursting_users, event_time_ref
from labkit.ecosystem.quix_transactions import event_time_ms as labkit_event_time_ms
from labkit.nb import evaluate

pytestmark = pytest.mark.usefixtures("in_both_languages")  # tests/unit/conftest.py


@pytest.fixture(autouse=True)
def _no_grading(monkeypatch):
    monkeypatch.delenv("LABKIT_GRADING", raising=False)
    monkeypatch.delenv("LABKIT_GRADE_LOG", raising=False)


def test_the_checks_are_registered_with_the_course():
    ids = {e.id: e for e in nb.all_exercises()}
    assert [ids[i].points for i in ("11.1", "11.2")] == [2, 4]
    assert ids["11.2"].has_state  # nb.reset("11.2") clears the alerts topic and the group


# -- 11.1 event time --------------------------------------------------------------------


def right(value, headers, timestamp, timestamp_type):
    moment = datetime.fromisoformat(value["timestamp"]).replace(tzinfo=UTC)
    return round(moment.timestamp() * 1000)


def test_11_1_the_right_answer_and_labkits_own_extractor_pass():
    assert evaluate("11.1", right).status == "PASS"
    assert evaluate("11.1", labkit_event_time_ms).status == "PASS"
    assert evaluate("11.1", right).points == 2


def test_11_1_the_not_attempted_stub():
    def event_time_ms(value, headers, timestamp, timestamp_type):
        """The stub of the student version."""
        ...

    assert evaluate("11.1", event_time_ms).status == "NOT ATTEMPTED"


@pytest.mark.parametrize(
    ("answer", "hint"),
    [
        (lambda value, headers, timestamp, kind: timestamp, "the record's Kafka timestamp"),
        (lambda value, headers, timestamp, kind: right(value, 0, 0, 0) / 1000, "milliseconds"),
        (
            lambda value, headers, timestamp, kind: right(value, 0, 0, 0) + 3_600_000,
            "a timestamp without a zone is UTC",
        ),
        (lambda value, headers, timestamp, kind: float(right(value, 0, 0, 0)), "an int"),
        (lambda value, headers, timestamp, kind: value["timestamp"], "return a number"),
        (lambda value, headers, timestamp, kind: right(value, 0, 0, 0) + 7, "expected"),
    ],
    ids=["kafka-timestamp", "seconds", "local-time", "float", "text", "off-by-7ms"],
)
def test_11_1_wrong_answers_get_a_hint(answer, hint):
    result = evaluate("11.1", answer)
    assert result.status == "FAIL"
    assert hint in result.line


def test_11_1_an_exception_in_the_answer_is_a_fail_that_names_it():
    result = evaluate("11.1", lambda value, headers, timestamp, kind: value["time"])
    assert result.status == "FAIL"
    assert "KeyError" in result.line


# -- 11.2's reference -------------------------------------------------------------------

T0 = datetime(2026, 3, 2, 8, 0, 0)


def txs(user, *seconds):
    return [
        {"user_id": user, "timestamp": (T0 + timedelta(seconds=s)).isoformat()} for s in seconds
    ]


def test_11_2_four_within_60_s_both_ends_included_as_quixstreams_windows():
    assert bursting_users(txs("u01", 0, 20, 40, 60)) == {"u01"}  # exactly 60 s: flagged
    assert bursting_users(txs("u02", 0, 20, 40, 61)) == set()  # 61 s: not
    assert bursting_users(txs("u03", 0, 20, 40)) == set()  # 3 is not more than 3


def test_11_2_counts_per_user_and_in_event_time_not_arrival_order():
    stream = txs("u01", 50, 0, 40) + txs("u02", 10) + txs("u01", 30)
    assert bursting_users(stream) == {"u01"}
    assert bursting_users(txs("u01", 0, 20) + txs("u02", 30, 40)) == set()


def test_event_time_ref_reads_a_zone_less_time_as_utc_and_keeps_a_zone():
    assert event_time_ref({"timestamp": "1970-01-01T00:00:01.250"}) == 1250
    assert event_time_ref({"timestamp": "1970-01-01T01:00:00+01:00"}) == 0
