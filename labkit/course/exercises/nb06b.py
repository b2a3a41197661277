"""Notebook 06b, commits and delivery guarantees: the checks of its exercises.

The exercises kept their ids when notebook 06 was split (06.3 was in 06); rules in
``labkit.course.exercises``. Both are functions, checked on the check's own data:

| id   | check call                                 | answer                                          |
|------|--------------------------------------------|-------------------------------------------------|
| 06.3 | ``nb.check("06.3", offsets_to_commit)``    | ``offsets_to_commit(records)`` ->               |
|      |                                            | ``{TopicPartition: last offset + 1}``           |
| 06.4 | ``nb.check("06.4", can_lose)``             | ``can_lose(acks, min_insync_replicas)`` -> bool |
|      |                                            | for replication.factor=3 and a dying leader     |
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from labkit.course.checks import Registry, Wrong, call, expect
from labkit.i18n import N_, _

EXERCISES = Registry()
exercise = EXERCISES.exercise


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
    t = "nb06b-transactions"
    batch = (
        [_record(t, 0, o) for o in range(10, 15)]
        + [_record(t, 2, o) for o in range(0, 3)]
        + [_record(t, 5, o) for o in range(41, 43)]
    )
    two_topics = [_record(t, 1, 7), _record("nb06b-refunds", 1, 0), _record("nb06b-refunds", 1, 1)]
    return [
        (batch, N_("a batch from partitions 0, 2 and 5")),
        ([_record(t, 3, 99)], N_("one record at offset 99 of partition 3")),
        (two_topics, N_("partition 1 of two topics")),
        ([], N_("an empty batch")),
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
        return _("partition {partition} of {topic}").format(partition=tp[1], topic=tp[0])
    return repr(tp)


def _offset(value: Any) -> Any:
    return getattr(value, "offset", value)  # OffsetAndMetadata or an int


@exercise("06.3", points=2, title=N_("Which offsets to commit after processing a batch"))
def offsets_to_commit(fn):
    """fn(records) -> {TopicPartition: offset of the next record to read} for each partition."""
    for records, case in commit_cases():
        what = _(case)
        answer = call(fn, list(records))
        if not records and answer in (None, [], ()):
            raise Wrong(
                _("{what}: return an empty dict, there is nothing to commit").format(what=what)
            )
        expect(
            isinstance(answer, Mapping),
            _("return a dict {{TopicPartition: offset}}, got {name}").format(
                name=type(answer).__name__
            ),
        )
        want = offsets_ref(records)
        keys = list(answer)
        if any(isinstance(k, int) for k in keys) and want:
            raise Wrong(
                _(
                    "key the dict by TopicPartition(record.topic, record.partition), not by the partition number: commit() needs the topic too"
                )
            )
        got = {tuple(k) if isinstance(k, tuple) else k: _offset(v) for k, v in answer.items()}
        extra = [k for k in got if k not in want]
        if extra:
            raise Wrong(
                _(
                    "{what}: {name_extra_0} has no record in the batch; commit only the partitions you read from (key: TopicPartition)"
                ).format(what=what, name_extra_0=_name(extra[0]))
            )
        for tp, offset in want.items():
            where = _("{what}: for {name_tp}").format(what=what, name_tp=_name(tp))
            expect(
                tp in got,
                _("{where} nothing is committed: commit every partition of the batch").format(
                    where=where
                ),
            )
            expect(
                got[tp] != offset - 1,
                _(
                    "{where} you commit {value}, the offset of the last record; commit the NEXT offset to read ({offset}), or a restart reads that record again"
                ).format(where=where, value=offset - 1, offset=offset),
            )
            expect(
                got[tp] == offset,
                _("{where} commit {offset} (the last offset read + 1), got {got_item!r}").format(
                    where=where, offset=offset, got_item=got[tp]
                ),
            )


# -- 06.4 acks x min.insync.replicas ----------------------------------------------------

ACKS_CASES: list[tuple[Any, int]] = [(acks, isr) for acks in (0, 1, "all", -1) for isr in (1, 2, 3)]


def can_lose_ref(acks: Any, min_insync_replicas: int) -> bool:
    """Replication factor 3, the leader dies right after acknowledging: can the record be lost?

    ``acks='all'`` waits for every replica in the ISR, and the broker refuses the write while
    the ISR is smaller than ``min.insync.replicas``: with 2 or more, another in-sync replica has
    the record and only an in-sync replica becomes the leader. With 1, the ISR may be the
    leader alone. ``acks=1`` answers after the leader's own write, ``acks=0`` never answers;
    ``min.insync.replicas`` does not count for either.
    """
    if acks in ("all", -1):
        return min_insync_replicas < 2
    return True


def _acks_hint(acks: Any, isr: int, got: bool) -> str:
    where = _("can_lose({acks!r}, {isr}) returned {got!r}").format(acks=acks, isr=isr, got=got)
    if acks == 0:
        return _(
            "{where}: with acks=0 the producer does not wait for the leader at all, so a record it counts as sent may never have been kept"
        ).format(where=where)
    if acks == 1:
        return _(
            "{where}: with acks=1 the leader answers after its own write, before the followers copied it; min.insync.replicas only counts for acks='all'"
        ).format(where=where)
    if isr == 1:
        return _(
            "{where}: 'all' means every replica in the ISR; when both followers fell behind, the ISR is the leader alone, and min.insync.replicas=1 lets it answer by itself"
        ).format(where=where)
    return _(
        "{where}: with acks='all' and min.insync.replicas={isr} at least {isr} replicas have the record, and only an in-sync replica can become the new leader"
    ).format(where=where, isr=isr)


@exercise("06.4", points=2, title=N_("Which acks x min.insync.replicas settings can lose data"))
def can_lose(fn):
    """fn(acks, min_insync_replicas) -> True when an acknowledged record can be lost."""
    for acks, isr in ACKS_CASES:
        got = call(fn, acks, isr)
        expect(
            isinstance(got, bool),
            _("can_lose({acks!r}, {isr}) returned {got!r}: return True or False").format(
                acks=acks, isr=isr, got=got
            ),
        )
        if got != can_lose_ref(acks, isr):
            raise Wrong(_acks_hint(acks, isr, got))
