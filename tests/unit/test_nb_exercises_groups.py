"""Notebooks 06 and 06b's function checks (labkit.course.exercises.nb06, nb06b): right, wrong
and not-attempted answers, and a right answer passing after a wrong one (checks keep no state).
06.1 asks the broker: tests/integration/test_nb_exercises_06_07_broker.py."""

import pytest

from labkit import OffsetAndMetadata, TopicPartition, nb
from labkit.broker.assignors import range_assign as broker_range_assign
from labkit.course.exercises.nb06 import RANGE_CASES, range_assignment_ref
from labkit.course.exercises.nb06b import ACKS_CASES, can_lose_ref, commit_cases, offsets_ref
from labkit.nb import evaluate

pytestmark = pytest.mark.usefixtures("in_both_languages")  # tests/unit/conftest.py


@pytest.fixture(autouse=True)
def _no_grading(monkeypatch):
    monkeypatch.delenv("LABKIT_GRADING", raising=False)
    monkeypatch.delenv("LABKIT_GRADE_LOG", raising=False)


def line(exercise_id, answer, **context):
    return evaluate(exercise_id, answer, **context).line


def test_the_checks_are_registered_with_the_course():
    ids = {e.id: e for e in nb.all_exercises()}
    assert {"06.1", "06.2", "06.3", "06.4", "07.5"} <= set(ids)
    assert [ids[i].points for i in ("06.2", "06.3", "06.4", "07.5")] == [2, 2, 2, 2]


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
        TopicPartition("nb06b-transactions", 0): 15,
        TopicPartition("nb06b-transactions", 2): 3,
        TopicPartition("nb06b-transactions", 5): 43,
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
    offsets = {TopicPartition("nb06b-transactions", p): 0 for p in range(6)}
    offsets.update(right_offsets(records))
    return offsets


def empty_is_none(records):
    return right_offsets(records) or None


@pytest.mark.parametrize(
    ("wrong", "hint"),
    [
        (last_offsets, "you commit 14, the offset of the last record; commit the NEXT offset"),
        (first_offsets, "for partition 0 of nb06b-transactions commit 15"),
        (only_last_record, "partition 0 of nb06b-transactions nothing is committed"),
        (every_partition, "partition 1 of nb06b-transactions has no record in the batch"),
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


# -- 06.4 acks x min.insync.replicas --------------------------------------------------------


def right_can_lose(acks, min_insync_replicas):
    return not (acks in ("all", -1) and min_insync_replicas >= 2)


def test_06_4_reference_on_the_grid():
    assert {(a, i): can_lose_ref(a, i) for a, i in ACKS_CASES if a != -1} == {
        (0, 1): True,
        (0, 2): True,
        (0, 3): True,
        (1, 1): True,
        (1, 2): True,
        (1, 3): True,
        ("all", 1): True,
        ("all", 2): False,
        ("all", 3): False,
    }
    assert all(can_lose_ref(-1, i) == can_lose_ref("all", i) for i in (1, 2, 3))


@pytest.mark.parametrize(
    ("wrong", "hint"),
    [
        # "min.insync.replicas protects acks=1 too"
        (
            lambda acks, isr: acks == 0 or isr < 2,
            "can_lose(1, 2) returned False: with acks=1 the leader",
        ),
        # "acks='all' is always safe"
        (lambda acks, isr: acks not in ("all", -1), "the ISR is the leader alone"),
        # "-1 is not 'all'"
        (lambda acks, isr: not (acks == "all" and isr >= 2), "can_lose(-1, 2) returned True"),
        # acks=0 "cannot lose what was never acknowledged"
        (lambda acks, isr: acks != 0 and right_can_lose(acks, isr), "acks=0 the producer"),
        (lambda acks, isr: "yes", "return True or False"),
    ],
)
def test_06_4_wrong_answers_fail_with_a_hint(wrong, hint):
    result = evaluate("06.4", wrong)
    assert result.status == "FAIL", result.line
    assert hint in result.line, result.line


def test_06_4_right_not_attempted_and_a_rerun_after_a_wrong_answer():
    def stub(acks, min_insync_replicas):
        """True when a record acknowledged with these settings can be lost."""
        ...

    assert evaluate("06.4", stub).status == "NOT ATTEMPTED"
    assert evaluate("06.4", lambda acks, isr: False).status == "FAIL"
    assert line("06.4", right_can_lose) == "PASS 06.4 (2/2 points)"


def test_06_2_and_06_3_pass_when_run_again_after_a_wrong_answer():
    assert evaluate("06.2", lambda n, ms: {m: [] for m in ms}).status == "FAIL"
    assert evaluate("06.2", range_assignment_ref).status == "PASS"
    assert evaluate("06.3", lambda records: {}).status == "FAIL"
    assert evaluate("06.3", offsets_ref).status == "PASS"


# -- 07.5 a compacted topic as a table ----------------------------------------------------


def right_table(records):
    table = {}
    for record in records:
        if record.value is None:
            table.pop(record.key, None)
        else:
            table[record.key] = record.value
    return table


def test_07_5_right_answers_pass_also_after_a_wrong_one():
    assert evaluate("07.5", lambda records: {r.key: r.value for r in records}).status == "FAIL"
    assert line("07.5", right_table) == "PASS 07.5 (2/2 points)"


@pytest.mark.parametrize(
    ("wrong", "hint"),
    [
        # a tombstone stored as a row
        (lambda records: {r.key: r.value for r in records}, "'u03' should not be in the table"),
        # a tombstone deletes the key forever
        (
            lambda records: {
                r.key: r.value
                for r in records
                if not any(o.key == r.key and o.value is None for o in records)
            },
            "'u04' is missing: a key written again after its tombstone",
        ),
        # keeps the first value of each key
        (
            lambda records: right_table(
                [r for i, r in enumerate(records) if r.key not in {o.key for o in records[:i]}]
            ),
            "'u03' should not be in the table: its latest record is a tombstone",
        ),
        (lambda records: [(r.key, r.value) for r in records], "return a dict"),
        # later values replace earlier ones, but a value is stored as its key
        (lambda records: {k: k for k in right_table(records)}, "'u01' should be"),
        (lambda records: {r.key: r.value for r in records if r.value} | {"x": 1}, "'u03'"),
    ],
)
def test_07_5_wrong_answers_fail_with_a_hint(wrong, hint):
    result = evaluate("07.5", wrong)
    assert result.status == "FAIL", result.line
    assert hint in result.line, result.line


def test_07_5_not_attempted_and_a_tombstone_for_an_unknown_key():
    def stub(records):
        """The current table."""
        ...

    assert evaluate("07.5", stub).status == "NOT ATTEMPTED"

    def crashes_on_unknown_key(records):
        table = {}
        for record in records:
            if record.value is None:
                del table[record.key]
            else:
                table[record.key] = record.value
        return table

    result = evaluate("07.5", crashes_on_unknown_key)
    assert result.status == "FAIL", result.line
    assert "KeyError" in result.line, result.line
