"""The extra exercises of notebooks 00-05 (labkit/course/exercises/nb00-nb05): for each, a right
answer passes, typical wrong answers fail with a hint that says what to do, and the
placeholder is NOT ATTEMPTED."""

import json

import pytest

from labkit import nb
from labkit.client.partitioner import murmur2
from labkit.course.exercises.nb00 import _biggest_cases
from labkit.course.exercises.nb04 import _is_json
from labkit.nb import evaluate
from labkit.nb.generators import transactions

pytestmark = pytest.mark.usefixtures("in_both_languages")  # tests/unit/conftest.py


@pytest.fixture(autouse=True)
def _no_grading(monkeypatch):
    monkeypatch.delenv("LABKIT_GRADING", raising=False)
    monkeypatch.delenv("LABKIT_GRADE_LOG", raising=False)


def line(exercise_id, answer, **context):
    return evaluate(exercise_id, answer, **context).line


def assert_outcomes(exercise_id, right, wrong, hint_part, **context):
    assert evaluate(exercise_id, right, **context).status == "PASS", line(
        exercise_id, right, **context
    )
    result = evaluate(exercise_id, wrong, **context)
    assert result.status == "FAIL", result.line
    assert hint_part in result.line, result.line
    assert evaluate(exercise_id, ..., **context).status == "NOT ATTEMPTED"


def test_the_extra_exercises_are_registered_with_the_course_ones():
    ids = {e.id: e for e in nb.all_exercises()}
    for needed in ["00.2", "01.1", "01.2", "02.2", "03.3", "04.2", "05.2"]:
        assert needed in ids
        assert ids[needed].title
        assert ids[needed].points >= 1
    assert "00.1" in ids
    assert "05.1" in ids


# -- 00.2 ----------------------------------------------------------------------------


def test_00_2_the_data_has_one_biggest_transaction_per_case():
    for data in _biggest_cases():
        amounts = sorted((tx["amount"] for tx in data), reverse=True)
        assert amounts[0] > amounts[1]


def test_00_2_biggest_transaction():
    def right(txs):
        return max(txs, key=lambda tx: tx["amount"])

    def smallest(txs):
        return min(txs, key=lambda tx: tx["amount"])

    assert_outcomes("00.2", right, smallest, "smallest amount")
    assert evaluate("00.2", lambda txs: right(txs)["tx_id"]).status == "PASS"
    assert "the whole transaction" in line("00.2", lambda txs: right(txs)["amount"])
    assert "compare the 'amount'" in line("00.2", lambda txs: txs[0])
    # the text order of amounts is not their numeric order
    by_text = line("00.2", lambda txs: max(txs, key=lambda tx: str(tx["amount"])))
    assert by_text.startswith("FAIL 00.2")
    assert "expected TX" in by_text

    def stub(txs):
        """The transaction with the largest amount."""
        # YOUR CODE HERE
        ...

    assert evaluate("00.2", stub).status == "NOT ATTEMPTED"


# -- 01.1 ----------------------------------------------------------------------------


def description(name, partitions, error_code=0):
    return {
        "error_code": error_code,
        "topic": name,
        "name": name,
        "is_internal": False,
        "partitions": [
            {"partition": p, "leader": 0, "replicas": [0], "isr": [0]} for p in range(partitions)
        ],
    }


def test_01_1_describe_a_new_topic():
    """What the description itself shows; the topic on the broker: test_series_a_checks."""
    ctx = {"topic": "nb01-payments", "partitions": 4}
    assert "num_partitions=4" in line("01.1", description("nb01-payments", 1), **ctx)
    assert "not 'nb01-payments'" in line("01.1", description("nb01-rta", 4), **ctx)
    assert "does not exist" in line("01.1", description("nb01-payments", 0, error_code=3), **ctx)
    assert "describe_topics" in line("01.1", "nb01-payments", **ctx)
    assert evaluate("01.1", ..., **ctx).status == "NOT ATTEMPTED"


# -- 01.2 ----------------------------------------------------------------------------


LINES = [
    f"{key}:{n}"
    for n, key in enumerate(
        ["jan", "ewa", "ola", "piotr", "jan", "ewa", "kasia", "jan", "marek", "ola", "ewa", "zofia"]
    )
]


def expected_counts(lines, num_partitions):
    counts = dict.fromkeys(range(num_partitions), 0)
    for text in lines:
        key = text.split(":", 1)[0].encode()
        counts[(murmur2(key) & 0x7FFFFFFF) % num_partitions] += 1
    return counts


def test_01_2_the_lines_spread_over_several_partitions():
    counts = expected_counts(LINES, 4)
    assert sum(1 for n in counts.values() if n) >= 3


def test_01_2_records_per_partition():
    """The answer's shape; the counts against the broker: test_series_a_checks."""
    ctx = {"topic": "nb01-payments", "lines": LINES, "num_partitions": 4}
    right = expected_counts(LINES, 4)
    assert "does not exist" in line("01.2", {**right, 7: 0}, **ctx)
    assert "must be an int" in line("01.2", {0: "3"}, **ctx)
    assert "dict" in line("01.2", [3, 4, 5], **ctx)
    assert evaluate("01.2", ..., **ctx).status == "NOT ATTEMPTED"


# -- 02.2 ----------------------------------------------------------------------------


def test_02_2_flushed_count():
    """The answer's type; the count on the broker: test_series_a_checks."""
    assert "as an int" in line("02.2", "30", topic="nb02-flush", sent=30)
    assert "as an int" in line("02.2", True, topic="nb02-flush", sent=1)
    assert evaluate("02.2", ..., topic="nb02-flush", sent=30).status == "NOT ATTEMPTED"


# -- 03.3 ----------------------------------------------------------------------------


def test_03_3_read_from_an_offset():
    """Values are not records (the cheating answer `sent[150:]`); records against the broker:
    test_series_a_checks."""
    sent = list(transactions(seed=33, count=200))
    ctx = {"topic": "nb03-transactions", "start": 150}
    assert "ConsumerRecords themselves" in line("03.3", sent[150:], **ctx)
    assert "ConsumerRecords themselves" in line("03.3", [tx["tx_id"] for tx in sent[150:]], **ctx)
    assert "not one string" in line("03.3", "TX0151", **ctx)
    assert evaluate("03.3", ..., **ctx).status == "NOT ATTEMPTED"


# -- 04.2 ----------------------------------------------------------------------------


def raw_messages():
    messages = [json.dumps(tx).encode() for tx in transactions(seed=44, count=30)]
    for at, poison in [
        (4, b"{not json"),
        (11, b""),
        (19, b"\xff\xfe garbage"),
        (25, b'{"tx_id": '),
    ]:
        messages.insert(at, poison)
    return messages


def test_04_2_is_json_agrees_with_04_1s_cases():
    assert [_is_json(raw) for raw in (b'{"a": 1}', b"[1]", b"{not", b"", b"\xff")] == [
        True,
        True,
        False,
        False,
        False,
    ]


def test_04_2_dead_letters():
    """The answer's shape; the dead-letter topic on the broker: test_series_a_checks."""
    sent = raw_messages()
    poison = [raw for raw in sent if not _is_json(raw)]
    assert len(poison) == 4
    ctx = {"topic": "nb04-payments-dlt", "sent": sent}
    decoded = [raw.decode("utf-8", errors="replace") for raw in poison]
    assert "raw bytes" in line("04.2", decoded, **ctx)
    assert "not one value" in line("04.2", b"{not json", **ctx)
    assert evaluate("04.2", ..., **ctx).status == "NOT ATTEMPTED"


# -- 05.2 ----------------------------------------------------------------------------


def test_05_2_per_key_order():
    sent = list(transactions(seed=55, count=120))
    right: dict = {}
    for tx in sent:
        right.setdefault(tx["user_id"], []).append(tx["tx_id"])
    swapped = {user: list(ids) for user, ids in right.items()}
    user = next(u for u in sorted(swapped) if len(swapped[u]) >= 2)
    swapped[user][0], swapped[user][1] = swapped[user][1], swapped[user][0]
    assert_outcomes("05.2", right, swapped, f"{user}'s transaction number 1", sent=sent)
    as_dicts = {u: [tx for tx in sent if tx["user_id"] == u] for u in right}
    assert evaluate("05.2", as_dicts, sent=sent).status == "PASS"
    fewer = dict(right)
    fewer.pop(sorted(right)[0])
    assert "1 user missing" in line("05.2", fewer, sent=sent)
    doubled = {u: ids + ids[:1] for u, ids in right.items()}
    assert "expected" in line("05.2", doubled, sent=sent)
    assert "dict" in line("05.2", list(right.items()), sent=sent)
