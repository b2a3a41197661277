"""Notebook 06, consumer groups: the checks of its exercises (rules in ``labkit.course.exercises``).

The first argument is the student's answer; a wrong answer raises ``Wrong`` with a hint that
says what to look at. 06.1 is judged on the broker (the group's committed offsets and the
records themselves); 06.2 is a function, checked on the check's own data. (06.3 moved to
notebook 06b with the split, under the same id.)

| id   | check call                                 | answer                                          |
|------|--------------------------------------------|-------------------------------------------------|
| 06.1 | ``nb.check("06.1", read, topic=TOPIC)``    | ``{group_id: ConsumerRecords it read}``         |
| 06.2 | ``nb.check("06.2", range_assign)``         | ``range_assign(num_partitions, members)`` ->    |
|      |                                            | ``{member: [partitions]}``, Kafka's range rule  |
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from labkit.course.checks import Registry, Wrong, call, expect

EXERCISES = Registry()
exercise = EXERCISES.exercise


@exercise(
    "06.1",
    points=2,
    title="Two consumer groups each read everything",
    groups=("nb06-fraud-detection", "nb06-reporting"),
)
def two_groups(answer, *, topic):
    """answer: {group_id: the ConsumerRecords that group read}; topic: the notebook's topic.

    Judged on the broker: each group committed the end of every partition, and its records
    are the topic's records (at their offsets, with their values), every one of them.
    """
    from labkit.course.broker_checks import expect_group_done, read_topic, verify_records

    expect(isinstance(answer, Mapping), "give a dict {group_id: list of the records it read}")
    expect(
        len(answer) >= 2, "read with two different group_ids (e.g. fraud-detection and reporting)"
    )
    on_broker = {(r.partition, r.offset) for r in read_topic(topic)}
    for group, records in sorted(answer.items(), key=lambda kv: str(kv[0])):
        expect(
            isinstance(group, str) and group != "",
            f"key the dict by the group_id each consumer used, got {group!r}",
        )
        got = {(r.partition, r.offset) for r in verify_records(records, topic=topic)}
        expect(
            on_broker <= got,
            f"group {group!r} read {len(on_broker & got)} of {len(on_broker)} records: each "
            "group has its own offsets, and a group the broker has never seen starts where "
            "auto_offset_reset says: use auto_offset_reset='earliest' (the cell deletes the "
            "groups first, so just run it again)",
        )
        expect_group_done(group, topic)  # the records were read by this group, and committed


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
