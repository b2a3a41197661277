"""Kafka's classic group coordinator (JoinGroup/SyncGroup/Heartbeat/LeaveGroup) for
Kafka clients on the Kafka listener: the requests. The groups' state, rebalance phases
and deadlines are ``ClassicGroups`` (classic_rebalance.py), which this class extends.
Pure: no sockets, time from the injected clock.

Theory of operation
-------------------
The clients assign (client-side assignment): the coordinator only gathers members,
picks a protocol every member supports, names a leader, hands the leader every
member's metadata and hands each member what the leader assigned.

- ``join`` checks the protocol type and strategies against the members', hands out a
  member id (MEMBER_ID_REQUIRED first, KIP-394, unless the member is static), records
  the member and parks its JoinGroup; a join starts a rebalance unless the member's
  generation still stands (``_current_generation``: a retry with the same protocols).
- ``sync`` parks a follower's SyncGroup until the leader's brings the assignments
  (CompletingRebalance -> Stable), then answers every waiting one.
- ``heartbeat`` and ``check_commit`` are answered at once; during a rebalance they
  answer REBALANCE_IN_PROGRESS (27) so the members rejoin. ``leave`` removes members.
- Static members (KIP-345, ``group.instance.id``): one coming back gets a new member id
  (the old one is fenced, FENCED_INSTANCE_ID); a follower with unchanged protocols
  keeps its assignment without a rebalance (``_rejoin_static``).

Requests that wait (JoinGroup, a follower's SyncGroup) are *parked* as the broker
parks fetches: each call takes an opaque ``waiter`` (the loop's client and request id)
and every method returns the answers that are due now, ``[(waiter, response), ...]``,
possibly for other members' parked requests; ``tick()`` returns those the clock made
due. Metadata and assignments are opaque bytes (base64 on labkit's wire); only
``describe`` decodes them, leniently (consumer_protocol.py). Responses are labkit wire
headers (docs/wire.md, "Classic consumer groups"); the wire checks are in
classic_api.py. Not thread-safe: the broker's loop thread owns it.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable

from labkit.broker.classic_members import (
    COMPLETING,
    DEAD,
    EMPTY,
    PREPARING,
    STABLE,
    Answer,
    ClassicGroup,
    ClassicMember,
    Waiter,
    error_answer,
    everyone,
    join_answer,
    static_member,
    sync_answer,
)
from labkit.broker.classic_rebalance import DEFAULT_INITIAL_DELAY_MS, ClassicGroups
from labkit.errors import (
    FencedInstanceIdError,
    GroupMaxSizeReachedError,
    IllegalGenerationError,
    InconsistentGroupProtocolError,
    MemberIdRequiredError,
    RebalanceInProgressError,
    UnknownMemberIdError,
)

log = logging.getLogger(__name__)

# the group states and the parked-answer types, as callers imported them before the split
__all__ = [
    "COMPLETING",
    "DEAD",
    "DEFAULT_INITIAL_DELAY_MS",
    "EMPTY",
    "PREPARING",
    "STABLE",
    "Answer",
    "ClassicCoordinator",
    "Waiter",
]


class ClassicCoordinator(ClassicGroups):
    """Every classic group, driven by Kafka's group requests (see the module docstring)."""

    # -- requests -----------------------------------------------------------------------

    def join(
        self,
        waiter: Waiter,
        group_id: str,
        *,
        member_id: str,
        group_instance_id: str | None,
        client_id: str,
        client_host: str,
        session_timeout_ms: int,
        rebalance_timeout_ms: int,
        protocol_type: str,
        protocols: list[tuple[str, bytes]],
        require_member_id: bool,
    ) -> list[Answer]:
        """A JoinGroup. Raises (answered at once): InconsistentGroupProtocolError,
        MemberIdRequiredError (with the new id in ``member_id`` of the exception),
        UnknownMemberIdError. Otherwise parked until the join phase ends."""
        now = self._clock.monotonic()
        group = self._groups.get(group_id)
        names = [name for name, _ in protocols]
        if not protocol_type or not protocols:
            raise InconsistentGroupProtocolError(
                f"a JoinGroup for group '{group_id}' must name a protocol type and at least "
                "one protocol (partition assignment strategy)"
            )
        if group is not None and group.members:
            if protocol_type != group.protocol_type:
                raise InconsistentGroupProtocolError(
                    f"group '{group_id}' has members of protocol type "
                    f"'{group.protocol_type}', this client joined as '{protocol_type}'"
                )
            others = [m for mid, m in group.members.items() if mid != member_id]
            if others and not self._candidates(others) & set(names):
                raise InconsistentGroupProtocolError(
                    f"group '{group_id}' uses the assignment strategies "
                    f"{sorted(self._candidates(others))} but this consumer asked for "
                    f"{names}; give every consumer of a group a common "
                    "partition.assignment.strategy"
                )
        if group is None:
            group = self._groups[group_id] = ClassicGroup(group_id)
        new_static = False
        if group_instance_id:  # static membership (KIP-345)
            static = static_member(group, group_instance_id)
            if static is not None and member_id and member_id != static.member_id:
                raise self._fenced(group_instance_id, member_id)
            if static is not None and not member_id:
                return self._rejoin_static(group, static, waiter, protocols, now)
            if not member_id:  # a new static member needs no MEMBER_ID_REQUIRED round
                member_id = f"{group_instance_id}-{uuid.uuid4()}"
                new_static = True
        answers: list[Answer] = []
        known = member_id in group.members or member_id in group.pending
        if not known and len(group.members) + len(group.pending) >= self._max_group_size:
            raise GroupMaxSizeReachedError(
                f"group '{group_id}' already has {len(group.members)} members, the most this "
                f"broker allows (group.max.size={self._max_group_size}); use fewer consumers "
                "or another group id"
            )
        if not member_id:
            member_id = f"{client_id or 'consumer'}-{uuid.uuid4()}"
            if require_member_id:
                group.pending[member_id] = now + session_timeout_ms / 1000.0
                self._schedule(group, group.pending[member_id])
                error = MemberIdRequiredError(
                    "join again with the member id in this answer (KIP-394)"
                )
                error.member_id = member_id  # type: ignore[attr-defined]
                raise error
        elif not new_static and member_id not in group.members and member_id not in group.pending:
            raise UnknownMemberIdError(
                f"member {member_id} is not in group '{group_id}' (it left or its session "
                "timed out); join again with an empty member id"
            )
        group.pending.pop(member_id, None)
        member = group.members.get(member_id)
        if member is None:
            member = ClassicMember(
                member_id=member_id,
                group_instance_id=group_instance_id,
                client_id=client_id,
                client_host=client_host,
                session_timeout=session_timeout_ms / 1000.0,
                rebalance_timeout=rebalance_timeout_ms / 1000.0,
                protocol_type=protocol_type,
                protocols=list(protocols),
                last_seen=now,
            )
            group.members[member_id] = member
            group.empty_since_ms = None
            log.info("classic group %s: member %s joined", group_id, member_id)
        else:
            unchanged = member.protocols == list(protocols)
            member.protocols = list(protocols)
            member.session_timeout = session_timeout_ms / 1000.0
            member.rebalance_timeout = rebalance_timeout_ms / 1000.0
            member.last_seen = now
            current = self._current_generation(group, member, unchanged)
            if current is not None:
                return [(waiter, current)]
        group.protocol_type = protocol_type
        if member.join_waiter is not None:  # a join sent again (a retry after a timeout)
            answers.append((member.join_waiter, error_answer(RebalanceInProgressError.errno)))
        member.join_waiter = waiter
        if group.state != PREPARING:
            answers += self._prepare_rebalance(group, now, f"member {member_id} joined")
        elif group.delay_until > now:  # the initial delay grows with each new member
            group.delay_until = min(now + self._initial_delay, group.join_deadline)
        answers += self._maybe_complete_join(group, now)
        self._schedule(group, self._next_deadline(group))
        return answers

    def sync(
        self,
        waiter: Waiter,
        group_id: str,
        *,
        member_id: str,
        generation: int,
        protocol_type: str | None,
        protocol_name: str | None,
        assignments: dict[str, bytes],
        group_instance_id: str | None = None,
    ) -> list[Answer]:
        """A SyncGroup: answered now, or parked until the leader's arrives."""
        now = self._clock.monotonic()
        group, member = self._member(group_id, member_id, group_instance_id)
        if generation != group.generation:
            raise IllegalGenerationError(
                f"SyncGroup with generation {generation}, but group '{group_id}' is at "
                f"generation {group.generation}; join again"
            )
        if (protocol_type is not None and protocol_type != group.protocol_type) or (
            protocol_name is not None and protocol_name != group.protocol_name
        ):
            raise InconsistentGroupProtocolError(
                f"SyncGroup names protocol {protocol_type}/{protocol_name}, the group uses "
                f"{group.protocol_type}/{group.protocol_name}"
            )
        if group.state == PREPARING:
            raise RebalanceInProgressError(f"group '{group_id}' is rebalancing; join again")
        member.last_seen = now
        if group.state == STABLE:
            return [(waiter, sync_answer(group, member))]
        # CompletingRebalance
        answers: list[Answer] = []
        if member.sync_waiter is not None:
            answers.append((member.sync_waiter, error_answer(RebalanceInProgressError.errno)))
        member.sync_waiter = waiter
        member.synced = True
        if member_id == group.leader:
            for mid, m in group.members.items():
                m.assignment = assignments.get(mid, b"")
            group.state = STABLE
            log.info(
                "classic group %s: generation %d stable with %d member(s) (%s)",
                group_id,
                group.generation,
                len(group.members),
                group.protocol_name,
            )
            for m in group.members.values():
                if m.sync_waiter is not None:
                    answers.append((m.sync_waiter, sync_answer(group, m)))
                    m.sync_waiter = None
                    m.last_seen = now  # its session runs from the answer
        self._schedule(group, self._next_deadline(group))
        return answers

    def heartbeat(
        self, group_id: str, member_id: str, generation: int, group_instance_id: str | None = None
    ) -> dict:
        """A Heartbeat: answered at once; raises what Kafka answers with."""
        now = self._clock.monotonic()
        group, member = self._member(group_id, member_id, group_instance_id)
        if generation != group.generation:
            raise IllegalGenerationError(
                f"heartbeat with generation {generation}, but group '{group_id}' is at "
                f"generation {group.generation}; join again"
            )
        member.last_seen = now
        if group.state == PREPARING:
            raise RebalanceInProgressError(f"group '{group_id}' is rebalancing; join again")
        return {"error": 0}

    def leave(self, group_id: str, member_ids: Iterable[str]) -> tuple[list[int], list[Answer]]:
        """LeaveGroup for several members (v3+ batch): one error code per member, and the
        answers the departures make due."""
        now = self._clock.monotonic()
        group = self._groups.get(group_id)
        codes, answers = [], []
        for member_id in member_ids:
            if group is None or member_id not in group.members:
                if group is not None and group.pending.pop(member_id, None) is not None:
                    codes.append(0)
                    continue
                codes.append(UnknownMemberIdError.errno)
                continue
            codes.append(0)
            answers += self._remove(group, group.members[member_id], now, "left the group")
        if group is not None:
            answers += self._maybe_complete_join(group, now)
            self._schedule(group, self._next_deadline(group))
        return codes, answers

    def check_commit(self, group_id: str, member_id: str, generation: int) -> None:
        """Raise unless an OffsetCommit from (member, generation) may be stored, as Kafka
        decides: a simple consumer (generation < 0, no member id) only to an empty group."""
        group = self._groups.get(group_id)
        if generation < 0 and not member_id and (group is None or not group.members):
            return
        group, member = self._member(group_id, member_id)
        if generation != group.generation:
            raise IllegalGenerationError(
                f"commit with generation {generation}, but group '{group_id}' is at "
                f"generation {group.generation}; the group rebalanced: poll() again"
            )
        if group.state == COMPLETING:
            raise RebalanceInProgressError(f"group '{group_id}' is rebalancing; join again")
        member.last_seen = self._clock.monotonic()

    # -- internals ----------------------------------------------------------------------

    def _member(
        self, group_id: str, member_id: str, group_instance_id: str | None = None
    ) -> tuple[ClassicGroup, ClassicMember]:
        group = self._groups.get(group_id)
        member = group.members.get(member_id) if group is not None else None
        if (
            group is not None
            and member is None
            and group_instance_id
            and static_member(group, group_instance_id) is not None
        ):
            raise self._fenced(group_instance_id, member_id)
        if group is None or member is None:
            raise UnknownMemberIdError(
                f"member {member_id or '(none)'} is not in group '{group_id}' (it left or "
                "its session timed out); join again"
            )
        return group, member

    @staticmethod
    def _fenced(instance_id: str, member_id: str) -> FencedInstanceIdError:
        return FencedInstanceIdError(
            f"group.instance.id '{instance_id}' is used by another consumer now (this one "
            f"was member {member_id or '(none)'}); give each consumer its own group.instance.id"
        )

    def _rejoin_static(
        self,
        group: ClassicGroup,
        member: ClassicMember,
        waiter: Waiter,
        protocols: list[tuple[str, bytes]],
        now: float,
    ) -> list[Answer]:
        """A static member came back (a restart) with its group.instance.id: it gets a new
        member id (the old one is fenced) and, as in Kafka, a follower whose protocols did
        not change keeps its assignment without a rebalance."""
        answers: list[Answer] = []
        for old in (member.join_waiter, member.sync_waiter):
            if old is not None:
                answers.append((old, error_answer(FencedInstanceIdError.errno)))
        member.join_waiter = member.sync_waiter = None
        old_id = member.member_id
        del group.members[old_id]
        member.member_id = f"{member.group_instance_id}-{uuid.uuid4()}"
        group.members[member.member_id] = member
        was_leader = group.leader == old_id
        if was_leader:
            group.leader = member.member_id
        unchanged = member.protocols == list(protocols)
        member.protocols = list(protocols)
        member.last_seen = now
        log.info(
            "classic group %s: static member %s came back as %s",
            group.group_id,
            member.group_instance_id,
            member.member_id,
        )
        if group.state == STABLE and unchanged and not was_leader:
            answers.append(
                (
                    waiter,
                    join_answer(group, member.member_id, []),
                )
            )
            return answers
        member.join_waiter = waiter
        if group.state != PREPARING:
            answers += self._prepare_rebalance(
                group, now, f"static member {member.member_id} rejoined"
            )
        answers += self._maybe_complete_join(group, now)
        self._schedule(group, self._next_deadline(group))
        return answers

    @staticmethod
    def _current_generation(
        group: ClassicGroup, member: ClassicMember, unchanged: bool
    ) -> dict | None:
        """Kafka's answer to a member that joins again with the same protocols while its
        generation stands: the current generation, no rebalance (a client that missed
        its JoinGroup answer, or kafka-python's follower rejoining after its poll()
        timed out mid-join, would otherwise restart the rebalance forever). In STABLE
        the leader's join still rebalances (it may want to reassign); None: rebalance."""
        if not unchanged or member.join_waiter is not None:
            return None
        is_leader = member.member_id == group.leader
        if group.state == COMPLETING:
            return join_answer(group, member.member_id, everyone(group) if is_leader else [])
        if group.state == STABLE and not is_leader:
            return join_answer(group, member.member_id, [])
        return None
