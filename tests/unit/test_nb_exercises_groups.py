"""Notebook 06's checks (labkit.course.exercises.nb06): right, wrong and not-attempted answers."""

import pytest

from labkit import OffsetAndMetadata, TopicPartition, nb
from labkit.broker.assignors import range_assign as broker_range_assign
from labkit.course.exercises.nb06 import (
    RANGE_CASES,
    commit_cases,
    offsets_ref,
    range_assignment_ref,
)
from labkit.nb import evaluate


@pytest.fixture(autouse=True)
def _no_grading(monkeypatch):
    monkeypatch.delenv("LABKIT_GRADING", raising=False)
    monkeypatch.delenv("LABKIT_GRADE_LOG", raising=False)


def line(exercise_id, answer, **context):
    return evaluate(exercise_id, answer, **context).line


def test_the_checks_are_registered_with_the_course():
    ids = {e.id: e for e in nb.all_exercises()}
    assert {"06.1", "06.2", "06.3"} <= set(ids)
    assert [ids[i].points for i in ("06.2", "06.3")] == [2, 2]


# -- 06.2 range assignor -----------------------------------------------------------------


def right_range(num_partitions, members):
    members = sorted(members)
    share, extra = divmod(num_partitions, len(members))
    result, start = {}, 0
    for i, member in enumerate(members):
        size = share + (1 if i < extra else 0)
        result[member] = list(range(start, start + size))
        start += size
    return result


def test_06_2_reference_agrees_with_the_brokers_assignor():
    for n, members, _ in RANGE_CASES:
        broker = broker_range_assign({m: ["t"] for m in members}, {"t": n})
        assert range_assignment_ref(n, members) == {
            m: [p for _, p in tps] for m, tps in broker.items()
        }
    assert range_assignment_ref(3, ["b", "a", "c", "d"]) == {"a": [0], "b": [1], "c": [2], "d": []}


def test_06_2_right_answers_pass():
    def with_ranges_and_topic_partitions(n, members):
        return {
            m: [TopicPartition("t", p) for p in parts]
            for m, parts in right_range(n, members).items()
        }

    assert line("06.2", right_range) == "PASS 06.2 (2/2 points)"
    assert evaluate("06.2", with_ranges_and_topic_partitions).status == "PASS"
    assert (
        evaluate("06.2", lambda n, ms: {m: tuple(p) for m, p in right_range(n, ms).items()}).status
        == "PASS"
    )


def unsorted_range(n, members):
    share, extra = divmod(n, len(members))
    result, start = {}, 0
    for i, member in enumerate(members):  # the members' order as given
        size = share + (1 if i < extra else 0)
        result[member] = list(range(start, start + size))
        start += size
    return result


def round_robin(n, members):
    members = sorted(members)
    result = {m: [] for m in members}
    for p in range(n):
        result[members[p % len(members)]].append(p)
    return result


def no_idle(n, members):
    return {m: parts for m, parts in right_range(n, members).items() if parts}


def extra_to_last(n, members):
    members = sorted(members)
    share, extra = divmod(n, len(members))
    result, start = {}, 0
    for i, member in enumerate(members):
        size = share + (1 if i >= len(members) - extra else 0)
        result[member] = list(range(start, start + size))
        start += size
    return result


@pytest.mark.parametrize(
    ("wrong", "hint"),
    [
        (unsorted_range, "members given as ['c', 'a', 'b']: expected"),
        (round_robin, "contiguous block"),
        (no_idle, "idle) appears with []"),
        (extra_to_last, "7 partitions, 3 members: expected {'a': [0, 1, 2]"),
        (lambda n, ms: {m: list(range(n)) for m in ms}, "exactly one member"),
        (lambda n, ms: {m: n // len(ms) for m in ms}, "not one number"),
        (lambda n, ms: [right_range(n, ms)], "return a dict"),
        (
            lambda n, ms: {**right_range(n, ms), "stranger": []},
            "'stranger' is not one of the members",
        ),
    ],
)
def test_06_2_wrong_answers_fail_with_a_hint(wrong, hint):
    result = evaluate("06.2", wrong)
    assert result.status == "FAIL"
    assert hint in result.hint, result.hint


def test_06_2_not_attempted_and_crashing():
    def stub(num_partitions, members):
        """Kafka's range assignor."""
        ...

    assert evaluate("06.2", stub).status == "NOT ATTEMPTED"
    assert evaluate("06.2", ...).status == "NOT ATTEMPTED"
    crash = evaluate("06.2", lambda n, ms: 1 / 0)
    assert crash.status == "FAIL"
    assert "ZeroDivisionError" in crash.hint


# -- 06.3 offsets to commit --------------------------------------------------------------


def right_offsets(records):
    offsets = {}
    for record in records:
        offsets[TopicPartition(record.topic, record.partition)] = record.offset + 1
    return offsets


def test_06_3_reference_on_the_cases():
    batch, _ = commit_cases()[0]
    assert offsets_ref(batch) == {
        TopicPartition("nb06-transactions", 0): 15,
        TopicPartition("nb06-transactions", 2): 3,
        TopicPartition("nb06-transactions", 5): 43,
    }
    assert offsets_ref([]) == {}


def test_06_3_right_answers_pass():
    def with_metadata(records):
        return {tp: OffsetAndMetadata(o, "", -1) for tp, o in right_offsets(records).items()}

    def with_plain_tuples(records):
        return {(r.topic, r.partition): r.offset + 1 for r in records}

    assert line("06.3", right_offsets) == "PASS 06.3 (2/2 points)"
    assert evaluate("06.3", with_metadata).status == "PASS"
    assert evaluate("06.3", with_plain_tuples).status == "PASS"


def last_offsets(records):
    return {TopicPartition(r.topic, r.partition): r.offset for r in records}


def first_offsets(records):
    offsets = {}
    for r in records:
        offsets.setdefault(TopicPartition(r.topic, r.partition), r.offset + 1)
    return offsets


def only_last_record(records):
    if not records:
        return {}
    r = records[-1]
    return {TopicPartition(r.topic, r.partition): r.offset + 1}


def every_partition(records):
    offsets = {TopicPartition("nb06-transactions", p): 0 for p in range(6)}
    offsets.update(right_offsets(records))
    return offsets


def empty_is_none(records):
    return right_offsets(records) or None


@pytest.mark.parametrize(
    ("wrong", "hint"),
    [
        (last_offsets, "you commit 14, the offset of the last record; commit the NEXT offset"),
        (first_offsets, "for partition 0 of nb06-transactions commit 15"),
        (only_last_record, "partition 0 of nb06-transactions nothing is committed"),
        (every_partition, "partition 1 of nb06-transactions has no record in the batch"),
        (
            lambda records: {r.partition: r.offset + 1 for r in records},
            "not by the partition number",
        ),
        (empty_is_none, "an empty batch: return an empty dict"),
        (lambda records: [r.offset + 1 for r in records], "return a dict"),
    ],
)
def test_06_3_wrong_answers_fail_with_a_hint(wrong, hint):
    result = evaluate("06.3", wrong)
    assert result.status == "FAIL"
    assert hint in result.hint, result.hint


def test_06_3_not_attempted():
    def stub(records):
        """The offsets to commit."""

    assert evaluate("06.3", stub).status == "NOT ATTEMPTED"
    assert evaluate("06.3", lambda records: ...).status == "NOT ATTEMPTED"
