"""Notebook 09's and 10's checks beyond right/wrong/not attempted (those are in
test_nb_checks.py): the hint names the mistake the answer actually makes."""

from collections import Counter
from datetime import datetime, timedelta

import pytest

from labkit import nb
from labkit.nb import evaluate


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
    "answer, hint",
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
    assert "arrived" not in line and "event time" not in line
