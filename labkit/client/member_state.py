"""The group member's states and the events that move it, as one table (h11's ``_state.py``).

``GroupMember`` (labkit/client/group.py) is in exactly one ``MemberState``; it
changes state only through ``next_state(state, event)``, which looks the pair up in
``TRANSITIONS`` and raises IllegalStateError for a pair the table does not have
(a bug: the member would be in two minds about its membership).

    UNJOINED --JOIN_SENT--> JOINING --JOIN_ACCEPTED--> JOINED --ANNOUNCED--> STABLE
       ^                       |  \\--JOIN_REFUSED--> FAILED --FAILURE_REPORTED--+
       |<------JOIN_RETRY------+                                                 |
       |<-----------------------------------------------------------------------+
       |<--LOSS_REPORTED-- LOST <--MEMBERSHIP_LOST-- JOINED, STABLE
       |<--LEFT-- (every state but CLOSED: unsubscribe(), or a poll timeout with
                  no partitions to report lost)
    every state --CLOSE--> CLOSED

What the states mean to the application thread: ``JOINED`` and ``STABLE`` are
members (they heartbeat; their partitions may be fetched while the session is
good); ``JOINED`` still owes the listener its ``on_partitions_assigned`` call,
made by the next ``poll()``. ``LOST`` owes it ``on_partitions_lost`` and
``FAILED`` owes it the join error (``poll()`` raises it); neither joins again until
``poll()`` paid that debt. The rest of the member's data is not state but
payload: what is owned and targeted, the request in flight, a queued
``leave_group``, and whether the subscription changed since the last heartbeat.
"""

from __future__ import annotations

from enum import Enum

from labkit.errors import IllegalStateError


class MemberState(Enum):
    UNJOINED = "unjoined"  # not a member; joins when subscribed and the backoff passed
    JOINING = "joining"  # join_group in flight
    JOINED = "joined"  # a member; poll() has not announced the assignment yet
    STABLE = "stable"  # a member; the listener knows what it holds
    LOST = "lost"  # the membership is gone; poll() reports the partitions lost
    FAILED = "failed"  # joining was refused for good; poll() raises the error
    CLOSED = "closed"  # close(): nothing more is sent


class MemberEvent(Enum):
    JOIN_SENT = "join_group sent"
    JOIN_ACCEPTED = "join_group answered"
    JOIN_RETRY = "join_group failed, retriable"
    JOIN_REFUSED = "join_group refused (retrying cannot help)"
    ANNOUNCED = "poll() announced the assignment"
    MEMBERSHIP_LOST = "membership lost (unknown member, session or poll timeout)"
    LOSS_REPORTED = "poll() reported the partitions lost"
    FAILURE_REPORTED = "poll() raised the join error"
    LEFT = "left the group"
    CLOSE = "close()"


S, E = MemberState, MemberEvent
MEMBER_STATES = frozenset({S.JOINED, S.STABLE})

TRANSITIONS: dict[tuple[MemberState, MemberEvent], MemberState] = {
    (S.UNJOINED, E.JOIN_SENT): S.JOINING,
    (S.JOINING, E.JOIN_ACCEPTED): S.JOINED,
    (S.JOINING, E.JOIN_RETRY): S.UNJOINED,
    (S.JOINING, E.JOIN_REFUSED): S.FAILED,
    (S.JOINED, E.ANNOUNCED): S.STABLE,
    (S.JOINED, E.MEMBERSHIP_LOST): S.LOST,
    (S.STABLE, E.MEMBERSHIP_LOST): S.LOST,
    (S.LOST, E.LOSS_REPORTED): S.UNJOINED,
    (S.FAILED, E.FAILURE_REPORTED): S.UNJOINED,
    **{(state, E.LEFT): S.UNJOINED for state in S if state is not S.CLOSED},
    **{(state, E.CLOSE): S.CLOSED for state in S},
}
del S, E


def next_state(state: MemberState, event: MemberEvent) -> MemberState:
    """The state ``event`` moves ``state`` to. Raises IllegalStateError when the
    table has no such transition."""
    try:
        return TRANSITIONS[state, event]
    except KeyError:
        raise IllegalStateError(
            f"group member: no transition from {state.name} on {event.name} "
            f"({event.value}); this is a bug in labkit's client, please report it"
        ) from None
