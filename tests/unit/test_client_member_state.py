"""The group member's state table (labkit/client/member_state.py), transition by
transition: the table itself, then each transition as GroupMember makes it, driven
by hand-written coordinator answers and a FakeClock (no broker, no sockets)."""

from __future__ import annotations

import pytest

from labkit.client.group import GroupMember
from labkit.client.member_state import (
    MEMBER_STATES,
    TRANSITIONS,
    MemberEvent,
    MemberState,
    next_state,
)
from labkit.client.structs import TopicPartition
from labkit.errors import (
    CoordinatorNotAvailableError,
    IllegalStateError,
    InconsistentGroupProtocolError,
    KafkaConnectionError,
    UnknownMemberIdError,
)
from labkit.testing import FakeClock

S, E = MemberState, MemberEvent
T0 = TopicPartition("t", 0)


# -- the table ---------------------------------------------------------------------------


@pytest.mark.parametrize("state", list(S))
@pytest.mark.parametrize("event", list(E))
def test_a_pair_outside_the_table_raises_and_names_it(state, event):
    if (state, event) in TRANSITIONS:
        assert next_state(state, event) is TRANSITIONS[state, event]
    else:
        with pytest.raises(IllegalStateError, match=f"from {state.name} on {event.name}"):
            next_state(state, event)


def test_every_state_is_reachable_and_only_closed_is_final():
    reached, frontier = {S.UNJOINED}, [S.UNJOINED]
    while frontier:
        state = frontier.pop()
        for (source, _), target in TRANSITIONS.items():
            if source is state and target not in reached:
                reached.add(target)
                frontier.append(target)
    assert reached == set(S)
    leaving = {source for (source, _), target in TRANSITIONS.items() if target is not source}
    assert set(S) - leaving == {S.CLOSED}


# -- GroupMember, transition by transition --------------------------------------------------


class Listener:
    def __init__(self):
        self.calls = []

    def on_partitions_revoked(self, revoked):
        self.calls.append(("revoked", revoked))

    def on_partitions_assigned(self, assigned):
        self.calls.append(("assigned", assigned))

    def on_partitions_lost(self, lost):
        self.calls.append(("lost", lost))


def answer(assignment=((T0.topic, T0.partition),), **extra):
    return {
        "error": 0,
        "member_id": "m-1",
        "generation": 1,
        "assignment": [list(row) for row in assignment],
        "heartbeat_interval_ms": 100,
        **extra,
    }


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def listener():
    return Listener()


def unjoined(clock, listener, **kw):
    member = GroupMember("g", clock=clock, retry_backoff_ms=100, **kw)
    member.subscribe(["t"], listener)
    return member


def joining(clock, listener, **kw):
    member = unjoined(clock, listener, **kw)
    request = member.next_request()
    return member, request


def joined(clock, listener, **kw):
    member, request = joining(clock, listener, **kw)
    member.on_response(request.token, answer())
    return member


def stable(clock, listener, **kw):
    member = joined(clock, listener, **kw)
    member.poll()
    return member


def test_unjoined_sends_a_join_when_subscribed(clock, listener):
    member = GroupMember("g", clock=clock)
    assert member.state is S.UNJOINED
    assert member.next_request() is None
    member.subscribe(["t"], listener)
    request = member.next_request()
    assert request.api == "join_group"
    assert member.state is S.JOINING
    assert member.next_request() is None  # one request at a time


def test_joining_accepted_becomes_joined_and_wakes_poll(clock, listener):
    member, request = joining(clock, listener)
    member.on_response(request.token, answer())
    assert member.state is S.JOINED
    assert member.in_group
    assert member.wake.is_set()
    assert member.fetchable() == set()  # not taken up before poll() announced it


@pytest.mark.parametrize("how", ["retriable error", "no answer"])
def test_joining_that_fails_retriably_joins_again_after_the_backoff(clock, listener, how):
    member, request = joining(clock, listener)
    if how == "no answer":
        member.on_failure(request.token, KafkaConnectionError("gone"))
    else:
        member.on_response(request.token, {"error": CoordinatorNotAvailableError.errno})
    assert member.state is S.UNJOINED
    assert member.next_request() is None
    clock.advance(0.1)
    assert member.next_request().api == "join_group"


def test_joining_refused_fails_until_poll_raises_the_error(clock, listener):
    member, request = joining(clock, listener)
    member.on_response(
        request.token, {"error": InconsistentGroupProtocolError.errno, "message": "assignors"}
    )
    assert member.state is S.FAILED
    assert member.wake.is_set()
    clock.advance(10)
    assert member.next_request() is None  # no join before poll() reported the failure
    with pytest.raises(InconsistentGroupProtocolError, match="assignors"):
        member.poll()
    assert member.state is S.UNJOINED
    member.poll()  # raised once
    assert member.next_request().api == "join_group"


def test_joined_announces_the_assignment_in_poll_and_becomes_stable(clock, listener):
    member = joined(clock, listener)
    member.poll()
    assert member.state is S.STABLE
    assert listener.calls == [("assigned", [T0])]
    assert member.fetchable() == {T0}
    member.poll()
    assert listener.calls == [("assigned", [T0])]  # once


@pytest.mark.parametrize("state", [S.JOINED, S.STABLE])
def test_a_member_the_coordinator_forgot_is_lost(clock, listener, state):
    member = joined(clock, listener) if state is S.JOINED else stable(clock, listener)
    clock.advance(1)
    beat = member.next_request()
    assert beat.api == "heartbeat"
    member.on_response(beat.token, {"error": UnknownMemberIdError.errno})
    assert member.state is S.LOST
    assert not member.in_group
    assert member.fetchable() == set()


def test_a_silent_coordinator_loses_the_membership_after_the_session(clock, listener):
    member = stable(clock, listener, session_timeout_ms=3000)
    clock.advance(1)
    beat = member.next_request()  # never answered
    assert beat is not None
    clock.advance(2.001)
    assert member.next_request() is None
    assert member.state is S.LOST


def test_lost_reports_the_partitions_in_poll_then_joins_again(clock, listener):
    member = stable(clock, listener)
    clock.advance(1)
    member.on_response(member.next_request().token, {"error": UnknownMemberIdError.errno})
    assert member.next_request() is None  # no join before poll() reported the loss
    member.poll()
    assert member.state is S.UNJOINED
    assert listener.calls[-1] == ("lost", [T0])
    assert member.assignment == set()
    assert member.next_request().api == "join_group"


def test_a_poll_timeout_holding_partitions_is_lost_and_leaves(clock, listener):
    member = stable(clock, listener, max_poll_interval_ms=1000, session_timeout_ms=60_000)
    clock.advance(1.001)
    request = member.next_request()
    assert request.api == "leave_group"
    assert member.state is S.LOST


def test_a_poll_timeout_holding_nothing_just_leaves(clock, listener):
    member = unjoined(clock, listener, max_poll_interval_ms=1000, session_timeout_ms=60_000)
    request = member.next_request()
    member.on_response(request.token, answer(assignment=()))
    member.poll()
    clock.advance(1.001)
    assert member.next_request().api == "leave_group"
    assert member.state is S.UNJOINED


@pytest.mark.parametrize("state", [S.UNJOINED, S.JOINING, S.JOINED, S.STABLE])
def test_unsubscribe_leaves_from_any_state(clock, listener, state):
    build = {S.UNJOINED: unjoined, S.JOINED: joined, S.STABLE: stable}
    member = joining(clock, listener)[0] if state is S.JOINING else build[state](clock, listener)
    assert member.state is state
    member.unsubscribe()
    assert member.state is S.UNJOINED
    request = member.next_request()
    if state in MEMBER_STATES:
        assert request.api == "leave_group"
        assert ("lost", [T0]) not in listener.calls  # revoked, not lost
        request = member.next_request()
    assert request is None  # and no join: nothing is subscribed


@pytest.mark.parametrize("state", [S.UNJOINED, S.JOINING, S.JOINED, S.STABLE, S.LOST, S.FAILED])
def test_close_ends_every_state(clock, listener, state):
    if state is S.LOST:
        member = stable(clock, listener)
        clock.advance(1)
        member.on_response(member.next_request().token, {"error": UnknownMemberIdError.errno})
    elif state is S.FAILED:
        member, request = joining(clock, listener)
        member.on_response(request.token, {"error": InconsistentGroupProtocolError.errno})
    elif state is S.JOINING:
        member = joining(clock, listener)[0]
    else:
        member = {S.UNJOINED: unjoined, S.JOINED: joined, S.STABLE: stable}[state](clock, listener)
    assert member.state is state
    leave = member.close()
    assert member.state is S.CLOSED
    assert (leave is not None) == (state in MEMBER_STATES)
    clock.advance(10)
    assert member.next_request() is None
    member.close()  # again: still closed
    assert member.state is S.CLOSED


def test_unsubscribe_after_close_stays_closed(clock, listener):
    member = stable(clock, listener)
    member.close()
    member.unsubscribe()
    assert member.state is S.CLOSED
    assert member.next_request() is None
