"""Notebook 12's connector-config checks (labkit.course.exercises.nb12, 12.1 and 12.2):
right, wrong and not-attempted answers; 12.3 and 12.4 read the broker and are tested in
tests/integration/test_nb12_connect_checks.py."""

import pytest

from labkit import nb
from labkit.nb import evaluate

pytestmark = pytest.mark.usefixtures("in_both_languages")  # tests/unit/conftest.py

TX_FILE, ALERTS_FILE = "/lab/connect-lab/transactions.jsonl", "/lab/connect-lab/alerts.txt"
TRANSACTIONS, ALERTS = "nb12-transactions", "nb12-alerts"


@pytest.fixture(autouse=True)
def _no_grading(monkeypatch):
    monkeypatch.delenv("LABKIT_GRADING", raising=False)
    monkeypatch.delenv("LABKIT_GRADE_LOG", raising=False)
    monkeypatch.delenv("LABKIT_STUDENT", raising=False)  # a private lab unless a test says
    monkeypatch.delenv("LABKIT_SHARED", raising=False)


def source(**changes):
    config = {
        "name": "nb12-transactions-in",
        "connector.class": "FileStreamSource",
        "tasks.max": "1",
        "file": TX_FILE,
        "topic": TRANSACTIONS,
    }
    config.update(changes)
    return {k: v for k, v in config.items() if v is not None}


def sink(**changes):
    config = {
        "name": "nb12-alerts-out",
        "connector.class": "FileStreamSink",
        "tasks.max": "1",
        "topics": ALERTS,
        "file": ALERTS_FILE,
    }
    config.update(changes)
    return {k: v for k, v in config.items() if v is not None}


def check_source(answer):
    return evaluate("12.1", answer, file=TX_FILE, topic=TRANSACTIONS)


def check_sink(answer):
    return evaluate("12.2", answer, topic=ALERTS, file=ALERTS_FILE)


def test_the_checks_are_registered_with_the_course():
    ids = {e.id: e for e in nb.all_exercises()}
    assert [ids[i].points for i in ("12.1", "12.2", "12.3", "12.4")] == [2, 2, 3, 3]


@pytest.mark.parametrize(
    "answer",
    [
        source(),
        source(**{"tasks.max": None}),  # one task is the default
        source(**{"connector.class": "org.apache.kafka.connect.file.FileStreamSourceConnector"}),
        source(file="/lab/connect-lab/../connect-lab/transactions.jsonl"),  # the same file
    ],
)
def test_12_1_a_right_source_config_passes(answer):
    assert check_source(answer).status == "PASS"


@pytest.mark.parametrize(
    ("answer", "hint"),
    [
        (source(topic=None, topics=TRANSACTIONS), '"topic" (singular)'),
        (source(**{"connector.class": "FileStreamSink"}), "the other direction"),
        (source(**{"connector.class": "FileSource"}), "'FileStreamSource'"),
        (source(topic="transactions"), "TRANSACTIONS ('nb12-transactions')"),
        (source(file=ALERTS_FILE), "str(TX_FILE)"),
        (source(file=None), "str(TX_FILE)"),
        (source(name=None), '"name"'),
        (source(name="transactions-in"), "SOURCE_NAME ('nb12-transactions-in')"),
        (source(**{"tasks.max": "2"}), "one task"),
        ("FileStreamSource", "dict of strings"),
    ],
)
def test_12_1_a_wrong_source_config_fails_with_a_hint(answer, hint):
    result = check_source(answer)
    assert result.status == "FAIL"
    if nb.language() == "en":
        assert hint in result.line


def test_12_1_and_12_2_the_placeholder_is_not_attempted():
    assert check_source(...).status == "NOT ATTEMPTED"
    assert check_sink(...).status == "NOT ATTEMPTED"


def test_12_2_a_right_sink_config_passes():
    assert check_sink(sink()).status == "PASS"
    assert check_sink(sink(topics=f" {ALERTS} ")).status == "PASS"


@pytest.mark.parametrize(
    ("answer", "hint"),
    [
        (sink(topics=None, topic=ALERTS), '"topics" (plural'),
        (sink(**{"connector.class": "FileStreamSource"}), "the other direction"),
        (sink(topics=f"{ALERTS},{TRANSACTIONS}"), "ALERTS ('nb12-alerts')"),
        (sink(topics=TRANSACTIONS), "ALERTS ('nb12-alerts')"),
        (sink(file=TX_FILE), "str(ALERTS_FILE)"),
        (sink(name="alerts-out"), "SINK_NAME ('nb12-alerts-out')"),
    ],
)
def test_12_2_a_wrong_sink_config_fails_with_a_hint(answer, hint):
    result = check_sink(answer)
    assert result.status == "FAIL"
    if nb.language() == "en":
        assert hint in result.line


def test_on_a_shared_broker_each_students_sink_has_a_consumer_group_of_their_own(monkeypatch):
    """Connect's group for a sink is "connect-" + the connector's name: the name the check
    asks for carries the student's prefix, so two students' sinks never share a group."""
    groups = {}
    for student in ("anna", "bob"):
        monkeypatch.setenv("LABKIT_STUDENT", student)
        unprefixed = check_sink(sink())  # "nb12-alerts-out", as on a private lab
        assert unprefixed.status == "FAIL"
        if nb.language() == "en":
            assert f"SINK_NAME ('{student}.nb12-alerts-out')" in unprefixed.line
        named = sink(name=nb.group("nb12-alerts-out"))  # the notebook's SINK_NAME
        assert check_sink(named).status == "PASS"
        groups[student] = "connect-" + named["name"]  # Connect's group id for this sink
    assert groups == {
        "anna": "connect-anna.nb12-alerts-out",
        "bob": "connect-bob.nb12-alerts-out",
    }
