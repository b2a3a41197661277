"""Notebook 13, replication and failover: the checks of its exercises (rules in
``labkit.course.exercises``).

The notebook runs its own cluster (``nb.cluster()``: ZooKeeper and three labkit brokers),
so the checks that ask the cluster get it as ``cluster=`` and read the state its controller
wrote in ZooKeeper (``cluster.describe(topic)``, ``cluster.topic_config(topic)``), never a
value the notebook computed. 13.2 and 13.4 are functions, checked on cases of their own.

| id   | check call                                                       | answer                      |
|------|------------------------------------------------------------------|-----------------------------|
| 13.1 | ``nb.check("13.1", ORDERS, cluster=cluster)``                    | the topic created with 3    |
|      |                                                                  | partitions, RF 3, min ISR 2 |
| 13.2 | ``nb.check("13.2", lost_records)``                               | ``lost_records(acked,       |
|      |                                                                  | records)`` -> acked values  |
|      |                                                                  | missing from the log        |
| 13.3 | ``nb.check("13.3", new_leader, cluster=, topic=, killed=)``      | the partition's leader      |
|      |                                                                  | after the old one was killed|
| 13.4 | ``nb.check("13.4", can_write)``                                  | ``can_write(isr_size,       |
|      |                                                                  | min_insync, acks)`` -> bool |
| 13.5 | ``nb.check("13.5", refused, cluster=, topic=)``                  | the exception of an         |
|      |                                                                  | acks='all' send refused     |
"""

from __future__ import annotations

from collections import namedtuple
from typing import Any

from labkit.course.checks import Registry, Wrong, call, expect
from labkit.errors import IllegalArgumentError
from labkit.i18n import N_, _

EXERCISES = Registry()
exercise = EXERCISES.exercise

NOT_ENOUGH_REPLICAS = 19
NOT_ENOUGH_REPLICAS_AFTER_APPEND = 20


def _describe(cluster: Any, topic: str) -> list:
    try:
        return cluster.describe(topic)
    except IllegalArgumentError as exc:  # no such topic: the cluster's words say so
        raise Wrong(str(exc)) from None


# -- 13.1 a replicated topic ---------------------------------------------------------------


@exercise("13.1", points=2, title=N_("Create a replicated topic (replication factor, min ISR)"))
def replicated_topic(answer, *, cluster):
    """answer: the topic's ``NewTopic`` (or its name); the cluster must hold the topic with 3
    partitions, 3 replicas each on 3 different brokers, and min.insync.replicas=2."""
    answer = getattr(answer, "name", answer)
    expect(
        isinstance(answer, str),
        _("pass the NewTopic you created (orders_topic), got {name}").format(
            name=type(answer).__name__
        ),
    )
    rows = _describe(cluster, answer)
    expect(
        len(rows) == 3,
        _("{topic!r} has {count} partitions: create it with num_partitions=3").format(
            topic=answer, count=len(rows)
        ),
    )
    for row in rows:
        expect(
            len(set(row.replicas)) == 3,
            _(
                "partition {partition} has the replicas {replicas}: create the topic with replication_factor=3 (one copy on each broker)"
            ).format(partition=row.partition, replicas=list(row.replicas)),
        )
    configured = cluster.topic_config(answer).get("min.insync.replicas")
    expect(
        configured == "2",
        _(
            "the topic's min.insync.replicas is {value}, not 2: pass topic_configs={{'min.insync.replicas': '2'}} when you create it (it cannot be changed afterwards here)"
        ).format(value=configured or _("the broker's default (1)")),
    )


# -- 13.2 what a failure lost ---------------------------------------------------------------

_Record = namedtuple("_Record", "topic partition offset key value")


def lost_cases() -> list[tuple[list[bytes], list[Any], list[bytes], str]]:
    """(acked values, records on the log, the lost values in acked order, what it tests)."""

    def records(*values: bytes) -> list[Any]:
        return [_Record("nb13", 0, i, None, v) for i, v in enumerate(values)]

    return [
        (
            [b"o-1", b"o-2", b"o-3", b"o-4"],
            records(b"o-1", b"o-2", b"o-3", b"o-4"),
            [],
            N_("every acknowledged record is on the log"),
        ),
        (
            [b"o-1", b"o-5", b"o-2", b"o-4", b"o-3"],
            records(b"o-1", b"o-2"),
            [b"o-5", b"o-4", b"o-3"],
            N_("three acknowledged records are gone"),
        ),
        (
            [b"o-2", b"o-1", b"o-3"],
            records(b"o-1", b"o-1", b"o-9", b"o-3"),
            [b"o-2"],
            N_("a retried record written twice, a record written but never acknowledged, one lost"),
        ),
        ([], records(b"o-1"), [], N_("nothing acknowledged")),
    ]


@exercise("13.2", points=1, title=N_("Count the acknowledged records a failure lost"))
def lost_records(fn):
    """fn(acked, records) -> the acked values not among the records' values, in acked order."""
    for acked, records, want, case in lost_cases():
        what = _(case)
        got = call(fn, list(acked), list(records))
        expect(
            isinstance(got, list | tuple),
            _("{what}: return a list of values, got {name}").format(
                what=what, name=type(got).__name__
            ),
        )
        if list(got) != want:
            raise Wrong(
                _(
                    "{what}: expected {want!r}, got {got!r}: keep each acknowledged value that no record on the log has (record.value), in the order they were acknowledged"
                ).format(what=what, want=want, got=list(got))
            )


# -- 13.3 the new leader ----------------------------------------------------------------------


@exercise("13.3", points=2, title=N_("Wait for the new leader after a broker dies"))
def new_leader(answer, *, cluster, topic, killed, partition=0):
    """answer: the broker id that leads ``partition`` now; ``killed`` was its leader."""
    expect(
        isinstance(answer, int) and not isinstance(answer, bool),
        _("new_leader should be a broker id (an int), got {answer!r}").format(answer=answer),
    )
    state = _describe_one(cluster, topic, partition)
    expect(
        answer != killed,
        _(
            "broker {killed} is the one you killed: wait (poll cluster.state(...).leader) until the controller names another leader, about zookeeper.session.timeout.ms (4 s) later"
        ).format(killed=killed),
    )
    expect(
        state.leader >= 0,
        _("partition {partition} has no leader right now: wait for the controller").format(
            partition=partition
        ),
    )
    expect(
        answer == state.leader,
        _(
            "the cluster names broker {leader} as the leader of partition {partition}, not {answer}"
        ).format(leader=state.leader, partition=partition, answer=answer),
    )


def _describe_one(cluster: Any, topic: str, partition: int) -> Any:
    for row in _describe(cluster, topic):
        if row.partition == partition:
            return row
    raise Wrong(
        _("topic {topic!r} has no partition {partition}").format(topic=topic, partition=partition)
    )


# -- 13.4 when can a producer write? -----------------------------------------------------------


def can_write_reference(isr_size: int, min_insync: int, acks: int | str) -> bool:
    """Kafka's rule: no ISR, no leader; acks=all needs min.insync.replicas in the ISR."""
    if isr_size < 1:
        return False
    if acks in ("all", -1):
        return isr_size >= min_insync
    return True


def can_write_cases() -> list[tuple[int, int, int | str]]:
    return [
        (isr, min_insync, acks)
        for isr in (0, 1, 2, 3)
        for min_insync in (1, 2, 3)
        for acks in (0, 1, "all", -1)
    ]


@exercise(
    "13.4", points=2, title=N_("Predict when a write is accepted (acks, min.insync.replicas)")
)
def can_write(fn):
    """fn(isr_size, min_insync, acks) -> True when the leader accepts the write."""
    for isr, min_insync, acks in can_write_cases():
        got = call(fn, isr, min_insync, acks)
        want = can_write_reference(isr, min_insync, acks)
        if got is not want and got != want:
            raise Wrong(
                _(
                    "can_write({isr}, {min_insync}, {acks!r}) returned {got!r}, expected {want}: with no replica in sync there is no leader; acks=0 and acks=1 need only the leader; acks='all' (or -1) needs at least min.insync.replicas in the ISR"
                ).format(isr=isr, min_insync=min_insync, acks=acks, got=got, want=want)
            )


# -- 13.5 a write refused ------------------------------------------------------------------------


@exercise("13.5", points=2, title=N_("See min.insync.replicas refuse a write"))
def refused_write(answer, *, cluster, topic, partition=0):
    """answer: the exception an acks='all' send raised; the partition's ISR must be below
    the topic's min.insync.replicas now."""
    expect(
        isinstance(answer, BaseException),
        _(
            "refused should be the exception your except block caught (except KafkaError as exc: refused = exc), got {answer!r}"
        ).format(answer=answer),
    )
    errno = getattr(answer, "errno", None)
    if type(answer).__name__ == "KafkaTimeoutError":
        raise Wrong(
            _(
                "the producer gave up waiting ({exc}): make it with retries=0, so that the broker's refusal comes back at once instead of being retried"
            ).format(exc=answer)
        )
    expect(
        errno in (NOT_ENOUGH_REPLICAS, NOT_ENOUGH_REPLICAS_AFTER_APPEND),
        _(
            "{name} is not the broker refusing the write (NotEnoughReplicasError, error 19): send with acks='all' while the ISR is below min.insync.replicas"
        ).format(name=type(answer).__name__),
    )
    state = _describe_one(cluster, topic, partition)
    minimum = int(cluster.topic_config(topic).get("min.insync.replicas", "1"))
    expect(
        len(state.isr) < minimum,
        _(
            "the ISR of {topic!r} is {isr} now, min.insync.replicas is {minimum}: run the check while the followers are down"
        ).format(topic=topic, isr=list(state.isr), minimum=minimum),
    )
