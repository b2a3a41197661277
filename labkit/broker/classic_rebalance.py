"""Kafka's classic groups as state: the table of groups, their rebalance phases and their
deadlines. The requests that drive it (JoinGroup, SyncGroup, Heartbeat, LeaveGroup) are
handled in classic_groups.py (``ClassicCoordinator``, a subclass). Pure: no sockets, time
from the injected clock.

Theory of operation
-------------------
Per group, as Kafka's GroupCoordinator:

- **Empty** -> a join -> **PreparingRebalance** (``_prepare_rebalance``): every member
  must (re)join. The join phase ends (``_maybe_complete_join``) when all known members
  have a JoinGroup waiting (and no member id handed out with MEMBER_ID_REQUIRED is still
  outstanding, and ``initial_delay_s`` has passed for a group that was empty), or at the
  rebalance deadline (the largest ``rebalance_timeout`` of the members), which drops the
  members that did not rejoin.
- Join phase over -> generation + 1, **CompletingRebalance**: every waiting JoinGroup is
  answered (the leader's answer lists every member's metadata for the chosen protocol,
  the one most members name first among those all support). A member that has not
  synced within its rebalance timeout is dropped, so a member that joins and never
  syncs stalls nobody. The leader's SyncGroup makes it **Stable**.
- In Stable or CompletingRebalance, a member's departure (``_remove``) starts a new
  rebalance; the last one leaving makes the group Empty (generation + 1).
- A member that sends nothing for ``session_timeout`` is dropped (``_expire``), unless a
  JoinGroup or SyncGroup of its is waiting (the join and sync deadlines bound those).

Deadlines: each group's next one (``_next_deadline``: sessions, pending member ids, the
join or sync deadline) sits in a heap (``_timers``, at most one live entry a group, its
time in ``group.timer``); ``tick()`` looks only at the groups whose time has come and
returns the answers that came due, ``[(waiter, response), ...]``. Records and the
answers' shapes live in classic_members.py. Not thread-safe: the broker's loop thread
owns it.
"""

from __future__ import annotations

import heapq
import logging
from collections.abc import Iterable

from labkit._clock import Clock
from labkit.broker.classic_members import (
    COMPLETING,
    DEAD,
    EMPTY,
    PREPARING,
    STABLE,
    Answer,
    ClassicGroup,
    ClassicMember,
    describe_group,
    error_answer,
    everyone,
    join_answer,
)
from labkit.errors import RebalanceInProgressError, UnknownMemberIdError
from labkit.kafka.consumer_protocol import decode_subscription

log = logging.getLogger("labkit.broker.classic_groups")  # one logger for the coordinator

DEFAULT_INITIAL_DELAY_MS = 0  # group.initial.rebalance.delay.ms (Kafka: 3000)


class ClassicGroups:
    """Every classic group's state and deadlines (see the module docstring)."""

    def __init__(
        self,
        clock: Clock,
        initial_delay_ms: int = DEFAULT_INITIAL_DELAY_MS,
        max_group_size: int = 1000,
    ):
        self._clock = clock
        self._max_group_size = max_group_size
        self._initial_delay = initial_delay_ms / 1000.0
        self._groups: dict[str, ClassicGroup] = {}
        self._timers: list[tuple[float, str]] = []

    # -- queries ------------------------------------------------------------------------

    def has_members(self, group_id: str) -> bool:
        group = self._groups.get(group_id)
        return bool(group and (group.members or group.pending))

    def knows(self, group_id: str) -> bool:
        return group_id in self._groups

    def group_ids(self) -> list[str]:
        return sorted(self._groups)

    def state_of(self, group_id: str) -> str:
        group = self._groups.get(group_id)
        return DEAD if group is None else group.state

    def empty_since_ms(self, group_id: str) -> int | None:
        group = self._groups.get(group_id)
        return None if group is None else group.empty_since_ms

    def forget(self, group_id: str) -> bool:
        """Drop an empty group (deleted, or expired with its offsets); False if it has
        members."""
        group = self._groups.get(group_id)
        if group is None:
            return True
        if group.members or group.pending:
            return False
        del self._groups[group_id]
        return True

    def unload(self, group_id: str) -> list[Answer]:
        """Cluster mode: this broker stopped coordinating the group (its __consumer_offsets
        partition is led elsewhere). Drop it; its parked joins and syncs get
        NOT_COORDINATOR (16), so the clients find the new coordinator at once."""
        group = self._groups.pop(group_id, None)
        if group is None:
            return []
        answers = []
        for m in group.members.values():
            for waiter in (m.join_waiter, m.sync_waiter):
                if waiter is not None:
                    answers.append((waiter, error_answer(16)))
            m.join_waiter = m.sync_waiter = None
        return answers

    def subscribed_topics(self, group_id: str) -> set[str] | None:
        """The topics the members subscribe to (Kafka's consumer protocol); None when
        the group has members of another protocol type (e.g. Kafka Connect's)."""
        group = self._groups.get(group_id)
        if group is None or not group.members:
            return set()
        if group.protocol_type != "consumer":
            return None
        topics: set[str] = set()
        for member in group.members.values():
            metadata = member.metadata_for(group.protocol_name or "")
            topics.update(decode_subscription(metadata) or ())
        return topics

    def describe(self, group_id: str) -> dict | None:
        """The group in describe_groups' wire shape, or None when unknown."""
        group = self._groups.get(group_id)
        return None if group is None else describe_group(group)

    def tick(self) -> list[Answer]:
        """What the clock made due: expired members, ended join phases, sync timeouts."""
        now = self._clock.monotonic()
        answers: list[Answer] = []
        due = set()
        while self._timers and self._timers[0][0] <= now:
            due.add(heapq.heappop(self._timers)[1])
        for group_id in sorted(due):  # each group once per tick: a tick never spins
            group = self._groups.get(group_id)
            if group is None:
                continue
            group.timer = None
            answers += self._expire(group, now)
            self._schedule(group, self._next_deadline(group))
        return answers

    def answer_all(self) -> list[Answer]:
        """Shutdown: every parked request gets COORDINATOR_NOT_AVAILABLE (15), so the
        clients look for the coordinator again."""
        answers = []
        for group in self._groups.values():
            for m in group.members.values():
                for waiter in (m.join_waiter, m.sync_waiter):
                    if waiter is not None:
                        answers.append((waiter, error_answer(15)))
                m.join_waiter = m.sync_waiter = None
        return answers

    # -- phases -------------------------------------------------------------------------

    @staticmethod
    def _candidates(members: Iterable[ClassicMember]) -> set[str]:
        """The protocols every one of ``members`` supports."""
        sets = [{name for name, _ in m.protocols} for m in members]
        return set.intersection(*sets) if sets else set()

    def _prepare_rebalance(self, group: ClassicGroup, now: float, why: str) -> list[Answer]:
        answers = []
        for m in group.members.values():  # a sync waiting from the ended generation
            if m.sync_waiter is not None:
                answers.append((m.sync_waiter, error_answer(RebalanceInProgressError.errno)))
                m.sync_waiter = None
                m.last_seen = now  # its session runs from the answer
        was_empty = group.state == EMPTY
        group.state = PREPARING
        longest = max((m.rebalance_timeout for m in group.members.values()), default=0.0)
        group.join_deadline = now + longest
        group.delay_until = (
            min(now + self._initial_delay, group.join_deadline) if was_empty else 0.0
        )
        log.info("classic group %s: rebalancing (%s)", group.group_id, why)
        return answers

    def _maybe_complete_join(self, group: ClassicGroup, now: float) -> list[Answer]:
        if group.state != PREPARING:
            return []
        all_joined = all(m.join_waiter is not None for m in group.members.values())
        if now < group.join_deadline and (
            not all_joined or group.pending or now < group.delay_until
        ):
            return []
        answers: list[Answer] = []
        for m in [m for m in group.members.values() if m.join_waiter is None]:
            answers += self._remove(
                group, m, now, "did not rejoin within the rebalance timeout", rebalance=False
            )
        group.pending.clear()
        group.generation += 1
        if not group.members:
            self._become_empty(group)
            return answers
        candidates = self._candidates(group.members.values())
        votes: dict[str, int] = {}
        for m in group.members.values():  # each votes for its favourite candidate (Kafka)
            favourite = next(name for name, _ in m.protocols if name in candidates)
            votes[favourite] = votes.get(favourite, 0) + 1
        group.protocol_name = max(sorted(votes), key=lambda name: votes[name])
        if group.leader not in group.members:
            group.leader = next(iter(group.members))
        group.state = COMPLETING
        group.sync_deadline = now + max(m.rebalance_timeout for m in group.members.values())
        members = everyone(group)
        for m in group.members.values():
            m.synced = False
            m.assignment = b""
            m.last_seen = now
            answers.append(
                (
                    m.join_waiter,
                    join_answer(group, m.member_id, members if m.member_id == group.leader else []),
                )
            )
            m.join_waiter = None
        return answers

    def _remove(
        self,
        group: ClassicGroup,
        member: ClassicMember,
        now: float,
        why: str,
        rebalance: bool = True,
    ) -> list[Answer]:
        answers = []
        for waiter in (member.join_waiter, member.sync_waiter):
            if waiter is not None:
                answers.append((waiter, error_answer(UnknownMemberIdError.errno)))
        del group.members[member.member_id]
        log.info("classic group %s: member %s %s", group.group_id, member.member_id, why)
        if group.leader == member.member_id:
            group.leader = None
        if rebalance:
            if group.members and group.state in (STABLE, COMPLETING):
                answers += self._prepare_rebalance(group, now, f"member {member.member_id} {why}")
            elif not group.members and group.state != PREPARING:
                group.generation += 1
                self._become_empty(group)
        return answers

    def _become_empty(self, group: ClassicGroup) -> None:
        group.state = EMPTY
        group.leader = None
        group.protocol_name = None
        group.empty_since_ms = self._clock.time_ms()

    def _expire(self, group: ClassicGroup, now: float) -> list[Answer]:
        answers: list[Answer] = []
        for member_id, expiry in list(group.pending.items()):
            if expiry <= now:
                del group.pending[member_id]
        for m in list(group.members.values()):
            if m.join_waiter is not None or m.sync_waiter is not None:
                continue  # bounded by the join and sync deadlines below
            if m.last_seen + m.session_timeout <= now:
                answers += self._remove(
                    group, m, now, "timed out (no heartbeat within session.timeout.ms)"
                )
        if group.state == COMPLETING and now >= group.sync_deadline:
            for m in [m for m in group.members.values() if not m.synced]:
                answers += self._remove(group, m, now, "did not sync within the rebalance timeout")
        answers += self._maybe_complete_join(group, now)
        return answers

    def _next_deadline(self, group: ClassicGroup) -> float | None:
        times = list(group.pending.values())
        times += [
            m.last_seen + m.session_timeout
            for m in group.members.values()
            if m.join_waiter is None and m.sync_waiter is None
        ]
        if group.state == PREPARING:
            times.append(group.join_deadline)
            if group.delay_until > self._clock.monotonic():
                times.append(group.delay_until)
        elif group.state == COMPLETING:
            times.append(group.sync_deadline)
        return min(times, default=None)

    def _schedule(self, group: ClassicGroup, when: float | None) -> None:
        if when is None or (group.timer is not None and group.timer <= when):
            return
        group.timer = when
        heapq.heappush(self._timers, (when, group.group_id))
