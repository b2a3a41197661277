"""Partition assignors: which member of a group reads which partition. Pure functions.

The group coordinator runs the assignor (server-side assignment, as in Kafka's
KIP-848); clients only name the one they want (kafka-python's
``partition_assignment_strategy`` names: ``range``, ``roundrobin``, ``sticky``,
``cooperative-sticky``).

Every assignor has the same signature::

    assign(subscriptions, partition_counts, previous) -> {member_id: [(topic, partition), ...]}

- ``subscriptions``: member id -> the topics it subscribes to.
- ``partition_counts``: topic -> number of partitions (a topic missing or with 0
  partitions is simply not assigned).
- ``previous``: member id -> the partitions it had in the last target assignment
  (only ``sticky`` looks at it).

Every member appears in the result, possibly with an empty list (an idle member:
more members than partitions). Each partition goes to exactly one member that
subscribes to its topic. Members are ordered by member id, as in Kafka, so the
result is deterministic.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

TP = tuple[str, int]
Assignment = dict[str, list[TP]]
Assignor = Callable[
    [Mapping[str, Iterable[str]], Mapping[str, int], Mapping[str, Iterable[TP]]], Assignment
]


def _topic_members(
    subscriptions: Mapping[str, Iterable[str]], partition_counts: Mapping[str, int]
) -> dict[str, list[str]]:
    """topic -> sorted member ids subscribed to it (topics with partitions only)."""
    by_topic: dict[str, list[str]] = {}
    for member_id in sorted(subscriptions):
        for topic in set(subscriptions[member_id]):
            if partition_counts.get(topic, 0) > 0:
                by_topic.setdefault(topic, []).append(member_id)
    return by_topic


def range_assign(
    subscriptions: Mapping[str, Iterable[str]],
    partition_counts: Mapping[str, int],
    previous: Mapping[str, Iterable[TP]] | None = None,
) -> Assignment:
    """Kafka's RangeAssignor: per topic, contiguous ranges; the first members get one extra."""
    result: Assignment = {m: [] for m in subscriptions}
    for topic, members in sorted(_topic_members(subscriptions, partition_counts).items()):
        count = partition_counts[topic]
        share, extra = divmod(count, len(members))
        start = 0
        for i, member_id in enumerate(members):
            n = share + (1 if i < extra else 0)
            result[member_id].extend((topic, p) for p in range(start, start + n))
            start += n
    return {m: sorted(tps) for m, tps in result.items()}


def roundrobin_assign(
    subscriptions: Mapping[str, Iterable[str]],
    partition_counts: Mapping[str, int],
    previous: Mapping[str, Iterable[TP]] | None = None,
) -> Assignment:
    """Kafka's RoundRobinAssignor: all partitions in order, dealt to members in turn
    (a member that does not subscribe to a partition's topic is skipped)."""
    result: Assignment = {m: [] for m in subscriptions}
    members = sorted(subscriptions)
    if not members:
        return result
    topics_of = {m: set(subscriptions[m]) for m in members}
    turn = 0
    for topic in sorted(t for t, n in partition_counts.items() if n > 0):
        eligible = [m for m in members if topic in topics_of[m]]
        if not eligible:
            continue
        for partition in range(partition_counts[topic]):
            # the next member in the circle that subscribes to this topic
            while topic not in topics_of[members[turn % len(members)]]:
                turn += 1
            result[members[turn % len(members)]].append((topic, partition))
            turn += 1
    return result


def sticky_assign(
    subscriptions: Mapping[str, Iterable[str]],
    partition_counts: Mapping[str, int],
    previous: Mapping[str, Iterable[TP]] | None = None,
) -> Assignment:
    """Balanced like roundrobin, but a partition stays with its previous owner when
    that keeps the balance (fewer partitions move in a rebalance).

    Greedy and cheap (not Kafka's optimal StickyAssignor): keep previous
    partitions up to a fair share, give the rest to the least-loaded eligible
    member, then move single partitions from the most- to the least-loaded member
    while the difference is two or more.
    """
    members = sorted(subscriptions)
    result: dict[str, set[TP]] = {m: set() for m in members}
    by_topic = _topic_members(subscriptions, partition_counts)
    all_tps = [(t, p) for t in sorted(by_topic) for p in range(partition_counts[t])]
    if not members or not all_tps:
        return {m: [] for m in members}
    eligible = {t: set(ms) for t, ms in by_topic.items()}
    fair = -(-len(all_tps) // len(members))  # ceil
    taken: set[TP] = set()
    for member_id in members:
        kept = sorted(
            tp
            for tp in (previous or {}).get(member_id, ())
            if tp[0] in eligible
            and tp[1] < partition_counts[tp[0]]
            and member_id in eligible[tp[0]]
            and tp not in taken
        )
        for tp in kept[:fair]:
            result[member_id].add(tp)
            taken.add(tp)
    for tp in all_tps:
        if tp not in taken:
            owner = min(eligible[tp[0]], key=lambda m: (len(result[m]), m))
            result[owner].add(tp)
    for _ in range(len(all_tps)):  # bounded: each move narrows the spread
        if not _move_one(result, eligible):
            break
    return {m: sorted(tps) for m, tps in result.items()}


def _move_one(result: dict[str, set[TP]], eligible: dict[str, set[str]]) -> bool:
    for donor in sorted(result, key=lambda m: (-len(result[m]), m)):
        for tp in sorted(result[donor], reverse=True):
            receivers = [m for m in eligible[tp[0]] if len(result[m]) <= len(result[donor]) - 2]
            if receivers:
                receiver = min(receivers, key=lambda m: (len(result[m]), m))
                result[donor].discard(tp)
                result[receiver].add(tp)
                return True
    return False


ASSIGNORS: dict[str, Assignor] = {
    "range": range_assign,
    "roundrobin": roundrobin_assign,
    "sticky": sticky_assign,
    "cooperative-sticky": sticky_assign,
}
DEFAULT_ASSIGNOR = "range"
