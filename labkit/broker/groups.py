"""The group coordinator: membership, generations, assignment and safe hand-over.

Theory of operation
-------------------
Server-side assignment, as in Kafka's KIP-848. A member joins with its
subscription, then heartbeats; every heartbeat says which partitions the member
*owns* (holds, or may still pick up) and is answered with the partitions it may
own now (``assignment``).

- **Generation (group epoch).** Any change that affects the assignment bumps the
  group's generation and recomputes the *target* assignment with the group's
  assignor: a member joins, leaves, expires, changes its subscription, or a
  subscribed topic's partition count changes (the broker calls
  ``topics_changed`` with the names of topics it created, deleted or grew).
- **Hand-over without overlap.** A member's ``assignment`` is its target minus
  partitions that another member still *holds*. A member holds what it last
  reported owning plus what it was last told it may own. So a partition moves
  only after its previous owner has reported releasing it (or has left or
  expired): no partition is ever read by two members at once. While a member
  has partitions to release or to receive, it is told to heartbeat quickly
  (``REBALANCE_HEARTBEAT_MS``) so a rebalance finishes in a fraction of a second.
- **States.** Empty (no members), PreparingRebalance (some member does not yet
  own exactly its target), Stable, Dead (deleted; never stored).
- **Timeouts.** A member that sends nothing for ``session_timeout_ms`` is removed;
  so is a member that has not released revoked partitions within its
  ``max_poll_interval_ms`` (it is stuck; its partitions go to the others).
- **Cost.** Nothing is proportional to everything: ``tick`` pops only members
  whose deadline has come from a heap, and ``topics_changed`` looks up the groups
  that subscribe to a topic in an index (both in broker/group_index.py). Work
  happens when something changes: a join, a leave, an expiry, a topic change.
- **Empty groups.** A group remembers when it became empty (``empty_since_ms``,
  wall clock) so the service can expire it and its offsets after
  ``offsets.retention.minutes``, as Kafka does since 2.1.
- **Fencing.** ``check_commit`` lets a member commit only partitions it holds,
  with a generation between its join and the group's current one; a member that
  was removed is unknown. Tools commit with member ``""`` and generation -1, only
  while the group has no members.

The records it keeps per group and member are in broker/group_members.py.
Methods take no time argument: ``now`` comes from the injected clock. Errors are
raised as labkit.errors broker errors with messages for students; responses are
plain dicts in the wire shape of docs/groups.md. Not thread-safe: the broker
calls it from its one I/O thread.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterable

from labkit._clock import Clock
from labkit.broker.assignors import ASSIGNORS
from labkit.broker.group_index import ExpiryHeap, TopicSubscribers
from labkit.broker.group_members import DEAD, TP, Group, Member
from labkit.errors import (
    GroupMaxSizeReachedError,
    IllegalGenerationError,
    InconsistentGroupProtocolError,
    NonEmptyGroupError,
    UnknownMemberIdError,
)

log = logging.getLogger(__name__)

DEFAULT_MAX_GROUP_SIZE = 1000  # group.max.size (Kafka: unlimited; a join rebalances all)
REBALANCE_HEARTBEAT_MS = 50  # while a member's assignment is changing
STABLE_HEARTBEAT_MS = 250  # otherwise (a new member is noticed within this)


class Coordinator:
    """All consumer groups' membership and assignments (offsets are kept elsewhere)."""

    def __init__(
        self,
        clock: Clock,
        partitions_of: Callable[[str], int | None],
        max_group_size: int = DEFAULT_MAX_GROUP_SIZE,
    ):
        self._clock = clock
        self._max_group_size = max_group_size
        self._partitions_of = partitions_of
        self._groups: dict[str, Group] = {}
        self._subscribers = TopicSubscribers()  # topic -> ids of groups subscribing
        self._deadlines = ExpiryHeap()

    # -- membership -------------------------------------------------------------

    def join(
        self,
        group_id: str,
        *,
        client_id: str,
        client_host: str,
        topics: Iterable[str],
        assignors: Iterable[str],
        session_timeout_ms: int,
        max_poll_interval_ms: int,
        member_id: str = "",
    ) -> dict:
        """Add a member (or update a known one) and answer like a heartbeat.

        Raises InconsistentGroupProtocolError when no assignor is shared with the
        group's members, GroupMaxSizeReachedError when a new member would make the
        group larger than ``group.max.size``.
        """
        now = self._clock.monotonic()
        group = self._groups.get(group_id) or Group(group_id)
        self._expire(group, now)
        wanted = tuple(a for a in assignors if a in ASSIGNORS) or ()
        if not wanted:
            raise InconsistentGroupProtocolError(
                f"none of the assignors {list(assignors)} is known; use one of {sorted(ASSIGNORS)} in "
                "partition_assignment_strategy"
            )
        others = [m for m in group.members.values() if m.member_id != member_id]
        if others and not any(all(a in m.assignors for m in others) for a in wanted):
            raise InconsistentGroupProtocolError(
                f"group '{group_id}' uses the assignor '{group.assignor}' but this consumer asked for {list(wanted)}; give every "
                "consumer of a group the same partition_assignment_strategy"
            )
        member = group.members.get(member_id) if member_id else None
        if member is None and len(group.members) >= self._max_group_size:
            raise GroupMaxSizeReachedError(
                f"group '{group_id}' already has {len(group.members)} members, the most "
                f"this broker allows (group.max.size={self._max_group_size}); a group never "
                "needs more consumers than its topics have partitions. Use fewer consumers "
                "or another group_id"
            )
        self._groups[group_id] = group
        if member is None:
            member = Member(
                member_id=f"{client_id or 'consumer'}-{uuid.uuid4()}",
                client_id=client_id,
                client_host=client_host,
                topics=frozenset(topics),
                assignors=wanted,
                session_timeout=session_timeout_ms / 1000.0,
                rebalance_timeout=max_poll_interval_ms / 1000.0,
                joined_generation=group.generation + 1,
                last_seen=now,
            )
            group.members[member.member_id] = member
            self._deadlines.added()
            group.empty_since_ms = None
            self._deadlines.schedule(group.group_id, member)
            log.info(
                "group %s: member %s joined (%s)",
                group_id,
                member.member_id,
                ", ".join(sorted(member.topics)) or "no topics",
            )
        else:
            member.topics = frozenset(topics)
            member.assignors = wanted
            member.session_timeout = session_timeout_ms / 1000.0
            member.rebalance_timeout = max_poll_interval_ms / 1000.0
            member.last_seen = now
            self._deadlines.schedule(group.group_id, member)  # a shorter timeout moves its deadline
        self._rebalance(group, f"member {member.member_id} joined")
        return self._answer(group, member, now)

    def heartbeat(
        self,
        group_id: str,
        member_id: str,
        generation: int,
        owned: Iterable[TP],
        topics: Iterable[str] | None = None,
    ) -> dict:
        """Record a member's owned partitions; answer with its assignment.

        Raises UnknownMemberIdError when the member is not (or no longer) in the
        group: it must join again.
        """
        now = self._clock.monotonic()
        group, member = self._member(group_id, member_id, now)
        member.last_seen = now
        member.owned = frozenset(owned)
        if topics is not None and frozenset(topics) != member.topics:
            member.topics = frozenset(topics)
            self._rebalance(group, f"member {member_id} changed its subscription")
        return self._answer(group, member, now)

    def leave(self, group_id: str, member_id: str) -> None:
        """Remove a member; its partitions are free at once. Raises UnknownMemberIdError."""
        now = self._clock.monotonic()
        group, member = self._member(group_id, member_id, now)
        self._remove(group, member, "left the group")

    def check_commit(
        self, group_id: str, member_id: str, generation: int, partitions: Iterable[TP]
    ) -> None:
        """Raise unless this commit may be stored (see "Fencing" above).

        Raises UnknownMemberIdError or IllegalGenerationError; nothing for a tool's
        commit (member "" and generation -1) to a group without members.
        """
        now = self._clock.monotonic()
        group = self._groups.get(group_id)
        if group is not None:
            self._expire(group, now)
        if not member_id and generation < 0:
            if group is not None and group.members:
                raise UnknownMemberIdError(
                    f"group '{group_id}' has {len(group.members)} active member(s); only its "
                    "members may commit while it is active. Stop its consumers first, or "
                    "commit from a consumer that subscribed with this group_id"
                )
            return
        group, member = self._member(group_id, member_id, now)
        if not member.joined_generation <= generation <= group.generation:
            raise IllegalGenerationError(
                f"member {member_id} committed with generation {generation}, but its "
                f"generations are {member.joined_generation}..{group.generation}; the group "
                "rebalanced: poll() again and commit the new positions"
            )
        lost = sorted(set(partitions) - member.holds())
        if lost:
            raise IllegalGenerationError(
                f"member {member_id} does not own {', '.join(f'{t}-{p}' for t, p in lost)} "
                f"any more (group '{group_id}' rebalanced and gave them to another member, "
                f"generation {group.generation}); those records will be processed again by "
                "their new owner. Poll more often or commit in on_partitions_revoked"
            )

    # -- admin --------------------------------------------------------------------

    def has_members(self, group_id: str) -> bool:
        group = self._groups.get(group_id)
        if group is None:
            return False
        self._expire(group, self._clock.monotonic())
        return bool(group.members)

    def group_ids(self) -> list[str]:
        return sorted(self._groups)

    def subscribed_topics(self, group_id: str) -> set[str]:
        """The topics the group's members subscribe to (none for an unknown group)."""
        if not self.has_members(group_id):
            return set()
        return self._groups[group_id].subscribed_topics()

    def state_of(self, group_id: str) -> str:
        group = self._groups.get(group_id)
        return DEAD if group is None else group.state()

    def describe(self, group_id: str) -> dict | None:
        """The group in the wire shape of describe_groups, or None when unknown."""
        group = self._groups.get(group_id)
        if group is None:
            return None
        self._expire(group, self._clock.monotonic())
        members = []
        for m in sorted(group.members.values(), key=lambda m: m.member_id):
            members.append(
                {
                    "member_id": m.member_id,
                    "client_id": m.client_id,
                    "client_host": m.client_host,
                    "topics": sorted(m.topics),
                    "assignment": [list(tp) for tp in sorted(m.owned & m.sent)],
                    "target": [list(tp) for tp in sorted(group.target.get(m.member_id, ()))],
                }
            )
        return {
            "group_id": group_id,
            "error": 0,
            "state": group.state(),
            "protocol_type": "consumer",
            "assignor": group.assignor,
            "generation": group.generation,
            "members": members,
        }

    def delete(self, group_id: str) -> None:
        """Forget an empty group. Raises NonEmptyGroupError while it has members."""
        group = self._groups.get(group_id)
        if group is None:
            return
        self._expire(group, self._clock.monotonic())
        if group.members:
            raise NonEmptyGroupError(
                f"group '{group_id}' still has {len(group.members)} active member(s); stop "
                "(close) its consumers and try again"
            )
        self.forget(group_id)

    def empty_since_ms(self, group_id: str) -> int | None:
        """Wall-clock ms when the group lost its last member; None if it has members
        or is unknown here."""
        group = self._groups.get(group_id)
        if group is None:
            return None
        self._expire(group, self._clock.monotonic())
        return group.empty_since_ms

    def forget(self, group_id: str) -> None:
        """Drop an empty group (offset expiry); a group with members is kept."""
        group = self._groups.get(group_id)
        if group is not None and not group.members:
            self._subscribers.unwatch(group_id, group.partition_counts)
            del self._groups[group_id]

    def tick(self) -> None:
        """Expire members whose deadline has passed (only those: see "Cost")."""
        now = self._clock.monotonic()
        popped = [
            (self._groups[group_id], member)
            for group_id, member in self._deadlines.pop_due(now, self._find_member)
        ]
        # re-pushed only after the loop: a member exactly at its deadline is not yet
        # expired (the test is strict), and must wait for the next tick, not spin here
        for group, member in popped:
            if group.members.get(member.member_id) is member:
                self._expire(group, now)
            if group.members.get(member.member_id) is member:
                self._deadlines.schedule(group.group_id, member)

    def topics_changed(self, topics: Iterable[str]) -> None:
        """Topics were created, deleted or got partitions: rebalance the groups that
        subscribe to them and see a different partition count."""
        changed: dict[str, Group] = {}
        for topic in topics:
            for group_id in self._subscribers.of(topic):
                group = self._groups[group_id]
                if (self._partitions_of(topic) or 0) != group.partition_counts.get(topic):
                    changed[group_id] = group
        for group in changed.values():
            self._rebalance(group, "the partition count of a subscribed topic changed")

    # -- internals ----------------------------------------------------------------

    def _member(self, group_id: str, member_id: str, now: float) -> tuple[Group, Member]:
        group = self._groups.get(group_id)
        if group is not None:
            self._expire(group, now)
            member = group.members.get(member_id)
            if member is not None:
                return group, member
        raise UnknownMemberIdError(
            f"member '{member_id}' is not in group '{group_id}': it left, or its session expired (no heartbeat "
            "within session_timeout_ms), or it was removed for not releasing revoked "
            "partitions within max_poll_interval_ms. Join the group again"
        )

    def _expire(self, group: Group, now: float) -> None:
        for member in list(group.members.values()):
            if now - member.last_seen > member.session_timeout:
                self._remove(
                    group,
                    member,
                    f"expired: no heartbeat within {round(member.session_timeout * 1000)} ms",
                )
            elif (
                member.revoking_since is not None
                and now - member.revoking_since > member.rebalance_timeout
            ):
                self._remove(
                    group,
                    member,
                    "removed: did not release revoked partitions "
                    "within max_poll_interval_ms "
                    f"({round(member.rebalance_timeout * 1000)} ms)",
                )

    def _remove(self, group: Group, member: Member, why: str) -> None:
        del group.members[member.member_id]
        self._deadlines.removed(self._all_members)
        if not group.members:
            group.empty_since_ms = self._clock.time_ms()
        log.info("group %s: member %s %s", group.group_id, member.member_id, why)
        self._rebalance(group, f"member {member.member_id} {why}")

    def _partition_counts(self, group: Group) -> dict[str, int]:
        return {t: self._partitions_of(t) or 0 for t in sorted(group.subscribed_topics())}

    def _find_member(self, group_id: str, member_id: str) -> Member | None:
        group = self._groups.get(group_id)
        return group.members.get(member_id) if group is not None else None

    def _all_members(self) -> Iterable[tuple[str, Member]]:
        for group in self._groups.values():
            for member in group.members.values():
                yield group.group_id, member

    def _choose_assignor(self, group: Group) -> str:
        members = sorted(group.members.values(), key=lambda m: m.joined_generation)
        if not members:
            return group.assignor
        for name in members[0].assignors:
            if all(name in m.assignors for m in members):
                return name
        return group.assignor

    def _rebalance(self, group: Group, why: str) -> None:
        group.generation += 1
        group.assignor = self._choose_assignor(group)
        old_topics = group.partition_counts.keys()
        counts = self._partition_counts(group)
        self._subscribers.unwatch(group.group_id, old_topics - counts.keys())
        self._subscribers.watch(group.group_id, counts.keys() - old_topics)
        group.partition_counts = counts
        subscriptions = {m.member_id: m.topics for m in group.members.values()}
        target = ASSIGNORS[group.assignor](subscriptions, group.partition_counts, group.target)
        group.target = {m: frozenset(tps) for m, tps in target.items()}
        log.info(
            "group %s: generation %d (%s), %s assignment over %d member(s)",
            group.group_id,
            group.generation,
            why,
            group.assignor,
            len(group.members),
        )

    def _answer(self, group: Group, member: Member, now: float) -> dict:
        target = group.target.get(member.member_id, frozenset())
        held_by_others: set[TP] = set()
        for other in group.members.values():
            if other is not member:
                held_by_others |= other.holds()
        keep = member.sent & target
        free = {tp for tp in target - keep if tp not in held_by_others}
        member.sent = frozenset(keep | free)
        member.generation = group.generation
        releasing = member.owned - target
        if releasing:
            if member.revoking_since is None:
                member.revoking_since = now
                self._deadlines.schedule(group.group_id, member)
        else:
            member.revoking_since = None
        pending = target - member.sent
        busy = bool(releasing or pending or member.owned != member.sent)
        return {
            "error": 0,
            "member_id": member.member_id,
            "generation": group.generation,
            "assignment": [list(tp) for tp in sorted(member.sent)],
            "pending": [list(tp) for tp in sorted(pending)],
            "heartbeat_interval_ms": REBALANCE_HEARTBEAT_MS if busy else STABLE_HEARTBEAT_MS,
            "state": group.state(),
            "assignor": group.assignor,
            "members": len(group.members),
            "partitions": sum(group.partition_counts.get(t, 0) for t in member.topics),
        }
