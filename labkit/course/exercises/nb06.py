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
from labkit.i18n import N_, _

EXERCISES = Registry()
exercise = EXERCISES.exercise


@exercise(
    "06.1",
    points=2,
    title=N_("Two consumer groups each read everything"),
    groups=("nb06-fraud-detection", "nb06-reporting"),
)
def two_groups(answer, *, topic):
    """answer: {group_id: the ConsumerRecords that group read}; topic: the notebook's topic.

    Judged on the broker: each group committed the end of every partition, and its records
    are the topic's records (at their offsets, with their values), every one of them.
    """
    from labkit.course.broker_checks import expect_group_done, read_topic, verify_records

    expect(
        isinstance(answer, Mapping),
        _("give a dict {{group_id: list of the records it read}}").format(),
    )
    expect(
        len(answer) >= 2,
        _("read with two different group_ids (e.g. fraud-detection and reporting)"),
    )
    on_broker = {(r.partition, r.offset) for r in read_topic(topic)}
    for group, records in sorted(answer.items(), key=lambda kv: str(kv[0])):
        expect(
            isinstance(group, str) and group != "",
            _("key the dict by the group_id each consumer used, got {group!r}").format(group=group),
        )
        got = {(r.partition, r.offset) for r in verify_records(records, topic=topic)}
        expect(
            on_broker <= got,
            _(
                "group {group!r} read {n_value} of {n_on_broker} records: each group has its own offsets, and a group the broker has never seen starts where auto_offset_reset says: use auto_offset_reset='earliest' (the cell deletes the groups first, so just run it again)"
            ).format(group=group, n_value=len(on_broker & got), n_on_broker=len(on_broker)),
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
    (6, ["consumer-1", "consumer-2", "consumer-3"], N_("6 partitions, 3 members")),
    (6, ["c", "a", "b"], N_("6 partitions, members given as ['c', 'a', 'b']")),
    (7, ["a", "b", "c"], N_("7 partitions, 3 members")),
    (12, ["m1", "m2", "m3", "m4", "m5"], N_("12 partitions, 5 members")),
    (4, ["solo"], N_("4 partitions, 1 member")),
    (3, ["m1", "m2", "m3", "m4", "m5"], N_("3 partitions, 5 members")),
]


def _partition_list(value: Any, member: str) -> list[int]:
    if isinstance(value, int) and not isinstance(value, bool):
        raise Wrong(
            _("{member!r}: give a list of partitions (e.g. [0, 1]), not one number").format(
                member=member
            )
        )
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        raise Wrong(
            _("{member!r}: give a list of partition numbers, got {name}").format(
                member=member, name=type(value).__name__
            )
        )
    parts = []
    for p in value:
        p = getattr(p, "partition", p)  # a TopicPartition is fine too
        if not isinstance(p, int) or isinstance(p, bool):
            raise Wrong(
                _("{member!r}: partitions are ints (0, 1, ...), got {p!r}").format(
                    member=member, p=p
                )
            )
        parts.append(p)
    return sorted(parts)


def _range_hint(got: dict[str, list[int]], want: dict[str, list[int]], n: int) -> str:
    missing = [m for m in want if m not in got]
    if missing:
        idle = not want[missing[0]]
        if idle:
            return _(
                "member {member!r} is missing from your dict: a member with no partition (idle) appears with []"
            ).format(member=missing[0])
        return _("member {member!r} is missing from your dict: every member gets an entry").format(
            member=missing[0]
        )
    extra = sorted(set(got) - set(want))
    if extra:
        return _(
            "{extra_0!r} is not one of the members: use the member names you were given"
        ).format(extra_0=extra[0])
    handed = sorted(p for parts in got.values() for p in parts)
    if handed != list(range(n)):
        return _(
            "with {n} partitions every partition 0..{value} goes to exactly one member; yours hand out {handed}"
        ).format(n=n, value=n - 1, handed=handed)
    sizes_got = [len(got[m]) for m in want]
    sizes_want = [len(want[m]) for m in want]
    if sorted(sizes_got) != sorted(sizes_want):
        return _(
            "expected block sizes {sizes_want} (members in sorted order), got {sizes_got}: divmod({n}, {n_want}) gives the share, and the first members get one more"
        ).format(sizes_want=sizes_want, sizes_got=sizes_got, n=n, n_want=len(want))
    if any(
        parts and parts != list(range(parts[0], parts[0] + len(parts))) for parts in got.values()
    ):
        return _(
            "range gives each member one contiguous block ([0, 1], [2, 3], ...); dealing partitions out in turn is the roundrobin assignor"
        )
    return _(
        "sort the members by name first: the first member in sorted order gets the first block, and the first members get the extra partitions"
    )


@exercise("06.2", points=2, title=N_("Which member reads which partition (range assignor)"))
def range_assignor(fn):
    """fn(num_partitions, members) -> {member: [partitions]} as Kafka's range assignor."""
    for n, members, case in RANGE_CASES:
        what = _(case)
        answer = call(fn, n, list(members))
        expect(
            isinstance(answer, Mapping),
            _("return a dict {{member: [partitions]}}, got {name}").format(
                name=type(answer).__name__
            ),
        )
        got = {str(m): _partition_list(parts, str(m)) for m, parts in answer.items()}
        want = range_assignment_ref(n, members)
        if got != want:
            raise Wrong(
                _("{what}: expected {want}; {range_hint_got}").format(
                    what=what, want=want, range_hint_got=_range_hint(got, want, n)
                )
            )
