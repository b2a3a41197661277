"""The group coordinator's two indexes, so that nothing is proportional to everything.

Theory of operation
-------------------
- ``ExpiryHeap``: members' deadlines (session timeout, or the rebalance timeout of a
  member asked to release partitions), for ``Coordinator.tick``, which pops only the
  members whose deadline has come. One live entry per member: ``Member.due`` is the
  deadline of that entry, a heartbeat only moves ``last_seen`` (no push), and an
  entry that pops early is pushed again at the member's real deadline. Entries of
  members that left stay until popped, so once they outnumber the live members by
  ``STALE_SLACK`` the heap is rebuilt from the live ones (amortised: a join/leave
  loop cannot grow it).
- ``TopicSubscribers``: topic -> ids of the groups whose members subscribe to it, so
  ``Coordinator.topics_changed`` looks groups up instead of scanning them; kept in
  step with each group's ``partition_counts`` keys by the coordinator's rebalance.

Not thread-safe: the broker's loop thread owns them.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Iterable

from labkit.broker.group_members import Member

STALE_SLACK = 1024  # stale heap entries tolerated beyond one per live member


class ExpiryHeap:
    """(due, seq, group id, member id) entries; see the module docstring."""

    def __init__(self) -> None:
        self._entries: list[tuple[float, int, str, str]] = []
        self._seq = 0
        self._members = 0  # live members in all groups (sizes the heap)

    def __len__(self) -> int:
        return len(self._entries)

    def schedule(self, group_id: str, member: Member) -> None:
        """Make sure the heap holds an entry no later than the member's deadline."""
        deadline = member.deadline()
        if deadline < member.due:
            member.due = deadline
            self._seq += 1
            heapq.heappush(self._entries, (deadline, self._seq, group_id, member.member_id))

    def pop_due(
        self, now: float, find: Callable[[str, str], Member | None]
    ) -> list[tuple[str, Member]]:
        """(group id, member) of each live entry due by ``now``; ``find`` looks a member
        up (None: gone). Their ``due`` is reset: schedule them again if they stay."""
        popped = []
        while self._entries and self._entries[0][0] <= now:
            due, _seq, group_id, member_id = heapq.heappop(self._entries)
            member = find(group_id, member_id)
            if member is None or member.due != due:
                continue  # gone already, or a stale entry
            member.due = math.inf
            popped.append((group_id, member))
        return popped

    def added(self) -> None:
        self._members += 1

    def removed(self, live: Callable[[], Iterable[tuple[str, Member]]]) -> None:
        """A member left; ``live`` lists (group id, member) of all members, for a rebuild."""
        self._members -= 1
        if len(self._entries) > 2 * self._members + STALE_SLACK:
            entries = []
            for group_id, member in live():
                if member.due != math.inf:
                    self._seq += 1
                    entries.append((member.due, self._seq, group_id, member.member_id))
            heapq.heapify(entries)
            self._entries = entries


class TopicSubscribers:
    """topic -> ids of the groups subscribing to it."""

    def __init__(self) -> None:
        self._groups: dict[str, set[str]] = {}

    def of(self, topic: str) -> Iterable[str]:
        return self._groups.get(topic, ())

    def watch(self, group_id: str, topics: Iterable[str]) -> None:
        for topic in topics:
            self._groups.setdefault(topic, set()).add(group_id)

    def unwatch(self, group_id: str, topics: Iterable[str]) -> None:
        for topic in topics:
            watchers = self._groups.get(topic)
            if watchers is not None:
                watchers.discard(group_id)
                if not watchers:
                    del self._groups[topic]
