"""Notebook 06, consumer groups: the checks of its exercises (06.1 two groups, and these).

One decorated check per exercise (rules in ``labkit.course.exercises``): the first
argument is the student's answer, checks are pure (no broker, no clock) and a wrong answer raises ``Wrong`` with a hint
that says what to look at. Both are functions, checked on the check's own data:

| id   | check call                                 | answer                                          |
|------|--------------------------------------------|-------------------------------------------------|
| 06.2 | ``nb.check("06.2", range_assign)``         | ``range_assign(num_partitions, members)`` ->    |
|      |                                            | ``{member: [partitions]}``, Kafka's range rule  |
| 06.3 | ``nb.check("06.3", offsets_to_commit)``    | ``offsets_to_commit(records)`` ->               |
|      |                                            | ``{TopicPartition: last offset + 1}``           |
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from labkit.course.checks import Registry, Wrong, call, expect
from labkit.course.exercises._ref import tx_ids

EXERCISES = Registry()
exercise = EXERCISES.exercise


@exercise("06.1", points=2, title="Two consumer groups each read everything")
def two_groups(answer, *, sent):
    """answer: {group_id: values (or tx_ids) that group read}; sent: the transactions sent."""
    expect(isinstance(answer, Mapping), "give a dict {group_id: list of what that group read}")
    expect(
        len(answer) >= 2, "read with two different group_ids (e.g. fraud-detection and reporting)"
    )
    want = set(tx_ids(sent))
    for group, read in sorted(answer.items(), key=lambda kv: str(kv[0])):
        got = set(tx_ids(read))
        expect(
            want <= got,
            f"group {group!r} read {len(want & got)} of {len(want)} transactions: "
            "each group has its own offsets; start it from the beginning "
            "(auto_offset_reset='earliest') with a new group_id",
        )


# -- 06.2 the range assignor ------------------------------------------------------------


def range_assignment_ref(num_partitions: int, members: Iterable[str]) -> dict[str, list[int]]:
    """Kafka's RangeAssignor for one topic: members sorted by id, contiguous blocks,
    the first ``num_partitions % len(members)`` members get one partition more."""
    ordered = sorted(members)
    share, extra = divmod(num_partitions, len(ordered))
    result, start = {}, 0
    for i, member in enumerate(ordered):
        n = share + (1 if i < extra else 0)
        result[member] = list(range(start, start + n))
        start += n
    return result


RANGE_CASES: list[tuple[int, list[str], str]] = [
    (6, ["consumer-1", "consumer-2", "consumer-3"], "6 partitions, 3 members"),
    (6, ["c", "a", "b"], "6 partitions, members given as ['c', 'a', 'b']"),
    (7, ["a", "b", "c"], "7 partitions, 3 members"),
    (12, ["m1", "m2", "m3", "m4", "m5"], "12 partitions, 5 members"),
    (4, ["solo"], "4 partitions, 1 member"),
    (3, ["m1", "m2", "m3", "m4", "m5"], "3 partitions, 5 members"),
]


def _partition_list(value: Any, member: str) -> list[int]:
    if isinstance(value, int) and not isinstance(value, bool):
        raise Wrong(f"{member!r}: give a list of partitions (e.g. [0, 1]), not one number")
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        raise Wrong(f"{member!r}: give a list of partition numbers, got {type(value).__name__}")
    parts = []
    for p in value:
        p = getattr(p, "partition", p)  # a TopicPartition is fine too
        if not isinstance(p, int) or isinstance(p, bool):
            raise Wrong(f"{member!r}: partitions are ints (0, 1, ...), got {p!r}")
        parts.append(p)
    return sorted(parts)


def _range_hint(got: dict[str, list[int]], want: dict[str, list[int]], n: int) -> str:
    missing = [m for m in want if m not in got]
    if missing:
        idle = not want[missing[0]]
        return f"member {missing[0]!r} is missing from your dict" + (
            ": a member with no partition (idle) appears with []"
            if idle
            else ": every member gets an entry"
        )
    extra = sorted(set(got) - set(want))
    if extra:
        return f"{extra[0]!r} is not one of the members: use the member names you were given"
    handed = sorted(p for parts in got.values() for p in parts)
    if handed != list(range(n)):
        return (
            f"with {n} partitions every partition 0..{n - 1} goes to exactly one member; "
            f"yours hand out {handed}"
        )
    sizes_got = [len(got[m]) for m in want]
    sizes_want = [len(want[m]) for m in want]
    if sorted(sizes_got) != sorted(sizes_want):
        return (
            f"expected block sizes {sizes_want} (members in sorted order), got {sizes_got}: "
            f"divmod({n}, {len(want)}) gives the share, and the first members get one more"
        )
    if any(
        parts and parts != list(range(parts[0], parts[0] + len(parts))) for parts in got.values()
    ):
        return (
            "range gives each member one contiguous block ([0, 1], [2, 3], ...); dealing "
            "partitions out in turn is the roundrobin assignor"
        )
    return (
        "sort the members by name first: the first member in sorted order gets the first "
        "block, and the first members get the extra partitions"
    )


@exercise("06.2", points=2, title="Which member reads which partition (range assignor)")
def range_assignor(fn):
    """fn(num_partitions, members) -> {member: [partitions]} as Kafka's range assignor."""
    for n, members, what in RANGE_CASES:
        answer = call(fn, n, list(members))
        expect(
            isinstance(answer, Mapping),
            f"return a dict {{member: [partitions]}}, got {type(answer).__name__}",
        )
        got = {str(m): _partition_list(parts, str(m)) for m, parts in answer.items()}
        want = range_assignment_ref(n, members)
        if got != want:
            raise Wrong(f"{what}: expected {want}; {_range_hint(got, want, n)}")


# -- 06.3 offsets to commit -------------------------------------------------------------


def _record(topic: str, partition: int, offset: int) -> Any:
    from labkit.client.structs import ConsumerRecord  # the client (and zmq) only when checked

    return ConsumerRecord(
        topic,
        partition,
        -1,
        offset,
        1_772_438_400_000 + offset,
        0,
        None,
        {"tx_id": f"TX{offset:04d}"},
        [],
        None,
        -1,
        20,
        -1,
    )


def commit_cases() -> list[tuple[list[Any], str]]:
    """Batches as ``poll()`` hands them over (partition by partition), with what each tests."""
    t = "nb06-transactions"
    batch = (
        [_record(t, 0, o) for o in range(10, 15)]
        + [_record(t, 2, o) for o in range(0, 3)]
        + [_record(t, 5, o) for o in range(41, 43)]
    )
    two_topics = [_record(t, 1, 7), _record("nb06-refunds", 1, 0), _record("nb06-refunds", 1, 1)]
    return [
        (batch, "a batch from partitions 0, 2 and 5"),
        ([_record(t, 3, 99)], "one record at offset 99 of partition 3"),
        (two_topics, "partition 1 of two topics"),
        ([], "an empty batch"),
    ]


def offsets_ref(records: Iterable[Any]) -> dict[Any, int]:
    """The offsets to commit after processing ``records``: per partition, last offset + 1."""
    from labkit.client.structs import TopicPartition

    result: dict[Any, int] = {}
    for r in records:
        tp = TopicPartition(r.topic, r.partition)
        result[tp] = max(result.get(tp, 0), r.offset + 1)
    return result


def _name(tp: Any) -> str:
    if isinstance(tp, tuple) and len(tp) == 2:
        return f"partition {tp[1]} of {tp[0]}"
    return repr(tp)


def _offset(value: Any) -> Any:
    return getattr(value, "offset", value)  # OffsetAndMetadata or an int


@exercise("06.3", points=2, title="Which offsets to commit after processing a batch")
def offsets_to_commit(fn):
    """fn(records) -> {TopicPartition: offset of the next record to read} for each partition."""
    for records, what in commit_cases():
        answer = call(fn, list(records))
        if not records and answer in (None, [], ()):
            raise Wrong(f"{what}: return an empty dict, there is nothing to commit")
        expect(
            isinstance(answer, Mapping),
            f"return a dict {{TopicPartition: offset}}, got {type(answer).__name__}",
        )
        want = offsets_ref(records)
        keys = list(answer)
        if any(isinstance(k, int) for k in keys) and want:
            raise Wrong(
                "key the dict by TopicPartition(record.topic, record.partition), not by "
                "the partition number: commit() needs the topic too"
            )
        got = {tuple(k) if isinstance(k, tuple) else k: _offset(v) for k, v in answer.items()}
        extra = [k for k in got if k not in want]
        if extra:
            raise Wrong(
                f"{what}: {_name(extra[0])} has no record in the batch; commit only "
                "the partitions you read from (key: TopicPartition)"
            )
        for tp, offset in want.items():
            where = f"{what}: for {_name(tp)}"
            expect(tp in got, f"{where} nothing is committed: commit every partition of the batch")
            expect(
                got[tp] != offset - 1,
                f"{where} you commit {offset - 1}, the offset of the last record; commit the "
                f"NEXT offset to read ({offset}), or a restart reads that record again",
            )
            expect(
                got[tp] == offset,
                f"{where} commit {offset} (the last offset read + 1), got {got[tp]!r}",
            )
