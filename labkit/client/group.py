"""The consumer's side of group membership, sans-I/O (protocol: docs/groups.md).

Theory of operation
-------------------
``GroupMember`` holds one consumer's membership and turns it into requests; it
never touches a socket. The consumer drives it from two threads:

- the **I/O thread** (a transport driver) calls ``next_request(now)``, sends the
  request it returns (at most one is in flight), and feeds the answer back with
  ``on_response`` or ``on_failure``; ``next_wakeup(now)`` says when to ask again.
- the **application thread** calls ``poll(now)`` from ``KafkaConsumer.poll()``.
  That is where partitions are revoked (commit first, then the listener) and
  taken up (then the listener), as in kafka-python, and where
  ``max_poll_interval_ms`` is measured. ``close`` and ``unsubscribe`` revoke
  everything there too.

Membership: one ``MemberState`` (unjoined, joining, joined, stable, lost, failed,
closed), changed only through the transition table in labkit/client/member_state.py
(which draws the diagram). Partitions: ``owned`` (taken up: ``assignment``) and
``target`` (the latest ``assignment`` from the coordinator). Every heartbeat
reports ``owned | target``, everything the member holds or may still take up; a
partition is taken up only
if it is still in ``target`` at that moment (under the lock). Together these
let the coordinator hand a partition on only after this member released it.
``fetchable()`` is ``owned & target`` while the member is in good standing and
empty otherwise (lost, left, closed): the consumer fetches, and returns records
of, only those partitions.

A lost membership (``UNKNOWN_MEMBER_ID``, no answer for ``session_timeout_ms``,
or ``max_poll_interval_ms`` without ``poll()`` - then the member leaves, as in
kafka-python) makes ``fetchable()`` empty at once; the next ``poll()`` reports the
partitions lost (``on_partitions_lost``) and the member joins again.

The listener (``ConsumerRebalanceListener``, labkit/client/subscription.py) is
told incrementally, as in KIP-848: ``on_partitions_revoked`` gets only the
partitions taken away, ``on_partitions_assigned`` only the new ones (and is
called once, possibly empty, after every join).

Thread-safety: one lock guards the state; callbacks (hooks, listener) run on the
application thread outside the lock. Warnings for students go to ``logging``.

Size: about 600 lines, over the house's ~450, on purpose: ``GroupMember`` is one
state machine whose methods share one lock and one set of invariants (owned vs
target, one request in flight); what could leave without scattering those has
left (the state table: member_state.py; start-position logging: positions.py).
Much of the length is the explanations students read in the log.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from labkit._clock import REAL_CLOCK, Clock
from labkit.client.member_state import MEMBER_STATES, MemberEvent, MemberState, next_state
from labkit.client.structs import OffsetAndMetadata, TopicPartition
from labkit.errors import (
    CommitFailedError,
    GroupMaxSizeReachedError,
    IllegalGenerationError,
    InconsistentGroupProtocolError,
    InvalidGroupIdError,
    InvalidRequestError,
    InvalidSessionTimeoutError,
    InvalidTopicError,
    KafkaError,
    UnknownMemberIdError,
    from_wire,
)
from labkit.protocol.messages import committed_offsets, offset_fetch_request

log = logging.getLogger(__name__)

_UNKNOWN_MEMBER, _ILLEGAL_GENERATION = UnknownMemberIdError.errno, IllegalGenerationError.errno
# config mistakes (and a full group, as in Kafka): retrying will not help
_FATAL_JOIN_ERRORS = frozenset(
    error.errno
    for error in (
        InvalidTopicError,
        InconsistentGroupProtocolError,
        InvalidGroupIdError,
        InvalidSessionTimeoutError,
        InvalidRequestError,
        GroupMaxSizeReachedError,
    )
)


class RebalanceHooks(Protocol):
    """What the consumer does around the listener (all on the application thread)."""

    def before_revoke(self, partitions: list[TopicPartition]) -> None:
        """Commit the positions of these partitions (auto-commit); errors are logged."""

    def revoked(self, partitions: list[TopicPartition]) -> None:
        """Forget positions and buffered records of these partitions."""

    def assigned(self, partitions: list[TopicPartition]) -> None:
        """Track these partitions; their positions come from committed offsets."""


class _NoHooks:
    def before_revoke(self, partitions):
        pass

    def revoked(self, partitions):
        pass

    def assigned(self, partitions):
        pass


@dataclass(frozen=True, slots=True)
class Request:
    """One request to send: ``transport.request(api, header, idempotent=idempotent)``."""

    token: int
    api: str
    header: dict[str, Any]
    idempotent: bool


def _tps(rows: Iterable) -> frozenset[TopicPartition]:
    return frozenset(TopicPartition(t, p) for t, p in rows)


def _wire(tps: Iterable[TopicPartition]) -> list[list]:
    return [[tp.topic, tp.partition] for tp in sorted(tps)]


def _names(tps: Iterable[TopicPartition]) -> str:
    return ", ".join(f"{tp.topic}-{tp.partition}" for tp in sorted(tps)) or "none"


class GroupMember:
    """One consumer's membership in ``group_id`` (see the module docstring)."""

    def __init__(
        self,
        group_id: str,
        *,
        client_id: str = "labkit",
        client_host: str = "",
        assignors: Iterable[str] = ("range",),
        session_timeout_ms: int = 45_000,
        max_poll_interval_ms: int = 300_000,
        heartbeat_interval_ms: int = 3000,
        retry_backoff_ms: int = 100,
        clock: Clock = REAL_CLOCK,
        hooks: RebalanceHooks | None = None,
    ):
        self.group_id = group_id
        self._client_id, self._client_host = client_id, client_host
        self._assignors = list(assignors)
        self._session_ms, self._max_poll_ms = session_timeout_ms, max_poll_interval_ms
        self._session = session_timeout_ms / 1000.0
        self._max_poll = max_poll_interval_ms / 1000.0
        # Kafka wants heartbeats well inside the session (it recommends a third of it)
        self._default_interval = min(heartbeat_interval_ms, session_timeout_ms / 3) / 1000.0
        self._backoff = retry_backoff_ms / 1000.0
        self._clock = clock
        self._hooks: RebalanceHooks = hooks or _NoHooks()
        self._listener: Any = None
        self._lock = threading.Lock()
        self.wake = threading.Event()  # set when poll() has rebalance work to do
        self._state = MemberState.UNJOINED  # changed only by _fire (member_state.py)
        self._topics: frozenset[str] = frozenset()
        self._topics_dirty = False
        self.member_id = ""
        self.generation = -1
        self._owned: frozenset[TopicPartition] = frozenset()
        self._target: frozenset[TopicPartition] = frozenset()
        self._tokens = 0
        self._in_flight: tuple[int, str] | None = None
        self._leave: dict[str, Any] | None = None
        now = clock.monotonic()
        self._next_beat = now
        self._last_ok = now
        self._last_poll = now
        self._fatal: KafkaError | None = None  # FAILED: the error poll() raises
        self._idle_warned = -1

    # -- application thread ---------------------------------------------------------

    @property
    def subscription(self) -> set[str]:
        return set(self._topics)

    @property
    def assignment(self) -> set[TopicPartition]:
        """The partitions this consumer has taken up (``KafkaConsumer.assignment()``)."""
        return set(self._owned)

    @property
    def state(self) -> MemberState:
        return self._state

    @property
    def in_group(self) -> bool:
        return self._state in MEMBER_STATES and bool(self.member_id)

    def fetchable(self) -> set[TopicPartition]:
        """Partitions the consumer may fetch, and return records of, right now."""
        with self._lock:
            if not self._good_standing(self._clock.monotonic()):
                return set()
            return set(self._owned & self._target)

    def subscribe(self, topics: Iterable[str], listener: Any = None) -> None:
        """Set the subscription (replaces the old one); a change rebalances the group."""
        topics = frozenset(topics)
        with self._lock:
            if listener is not None:
                self._listener = listener
            if topics != self._topics:
                self._topics = topics
                self._topics_dirty = True
                self._next_beat = self._clock.monotonic()
            self._last_poll = self._clock.monotonic()

    def unsubscribe(self) -> None:
        """Give up every partition (commit hook, listener) and leave the group."""
        self._revoke_everything()
        with self._lock:
            self._topics = frozenset()
            self._queue_leave("unsubscribe()", report_lost=False)

    def poll(self, now: float | None = None) -> None:
        """Run pending rebalance work; call at the start of (and while waiting in)
        ``KafkaConsumer.poll()``. Raises a KafkaError when joining failed for a
        reason that retrying cannot fix (e.g. inconsistent assignors)."""
        now = self._clock.monotonic() if now is None else now
        with self._lock:
            self._last_poll = now
            self.wake.clear()
            if self._state is MemberState.FAILED:
                fatal, self._fatal = self._fatal, None
                self._fire(MemberEvent.FAILURE_REPORTED)
                if fatal is not None:
                    raise fatal
            lost: frozenset[TopicPartition] = frozenset()
            if self._state is MemberState.LOST:
                lost, self._owned = self._owned, frozenset()
                self._fire(MemberEvent.LOSS_REPORTED)
                self._next_beat = now
            member = self._state in MEMBER_STATES
            revoked = self._owned - self._target if member else frozenset()
            added = self._target - self._owned if member else frozenset()
            announce = self._state is MemberState.JOINED
            if announce:
                self._fire(MemberEvent.ANNOUNCED)
        if lost:
            self._hooks.revoked(sorted(lost))
            self._call_listener("on_partitions_lost", lost)
        if revoked:
            self._revoke(revoked)
        if added or announce:
            with self._lock:
                added = added & self._target  # it may have moved on meanwhile
                self._owned = self._owned | added
            if added:
                self._hooks.assigned(sorted(added))
            self._call_listener("on_partitions_assigned", added)

    def close(self) -> dict[str, Any] | None:
        """Revoke everything (commit hook, listener) and stop. Returns the
        ``leave_group`` header to send (None when not in a group)."""
        self._revoke_everything()
        with self._lock:
            header = None
            if self.member_id:
                header = {"group_id": self.group_id, "member_id": self.member_id}
            self._fire(MemberEvent.CLOSE)
            self._leave = None
            self.member_id, self.generation = "", -1
            self._target = frozenset()
            return header

    # -- commits ------------------------------------------------------------------------

    def commit_header(self, offsets: dict[TopicPartition, Any]) -> dict[str, Any]:
        """The ``offset_commit`` header for ``{tp: OffsetAndMetadata or int}``.

        Raises CommitFailedError when the consumer subscribed but is not (or no
        longer) an active member: its partitions may belong to someone else.
        """
        rows = []
        for tp, value in sorted(offsets.items()):
            if isinstance(value, int):
                value = OffsetAndMetadata(value, "")
            rows.append([tp.topic, tp.partition, int(value.offset), value.metadata or ""])
        with self._lock:
            if not self._topics and not self.member_id:
                member_id, generation = "", -1  # manual assign(): a simple commit
            elif not self.in_group or not self._good_standing(self._clock.monotonic()):
                raise CommitFailedError(
                    f"Commit cannot be completed: this consumer is not an active member of "
                    f"group '{self.group_id}' right now (it is joining, or it left or was "
                    "removed because poll() was not called within max_poll_interval_ms or "
                    "its session expired). Call poll() to rejoin; records of partitions it "
                    "lost will be delivered to their new owner."
                )
            else:
                member_id, generation = self.member_id, self.generation
        return {
            "group_id": self.group_id,
            "member_id": member_id,
            "generation": generation,
            "offsets": rows,
        }

    def check_commit_response(self, header: dict[str, Any]) -> None:
        """Raise for a failed commit: CommitFailedError when it was fenced, else the
        broker's error."""
        code = header.get("error", 0)
        if not code:
            return
        if code in (_UNKNOWN_MEMBER, _ILLEGAL_GENERATION):
            raise CommitFailedError(
                "Commit cannot be completed since the group has already rebalanced and "
                "assigned the partitions to another member (the broker said: "
                f"{header.get('message')}). This means the time between calls to poll() was "
                "longer than max_poll_interval_ms, or the session expired. Poll more often, "
                "process fewer records per poll (max_poll_records), or commit in "
                "on_partitions_revoked; the records will be delivered again."
            )
        raise from_wire(code, header.get("message"))

    # -- I/O thread ----------------------------------------------------------------------

    def next_request(self, now: float | None = None) -> Request | None:
        """The request to send now, or None (one at a time; see ``next_wakeup``)."""
        now = self._clock.monotonic() if now is None else now
        with self._lock:
            if self._state is MemberState.CLOSED:
                return None
            member = self._state in MEMBER_STATES
            if member and now - self._last_poll > self._max_poll:
                log.warning(
                    "Consumer poll timeout has expired: poll() was not called for more than "
                    "max_poll_interval_ms (%d ms), so this consumer leaves group '%s' and its "
                    "partitions go to the other members. Process fewer records per poll "
                    "(max_poll_records) or raise max_poll_interval_ms. It rejoins on the "
                    "next poll().",
                    self._max_poll_ms,
                    self.group_id,
                )
                self._queue_leave("poll timeout", report_lost=True)
            elif member and not self._good_standing(now):
                log.warning(
                    "group '%s': no answer from the coordinator for %d ms "
                    "(session_timeout_ms); the group has given this consumer's "
                    "partitions to others. Rejoining on the next poll().",
                    self.group_id,
                    self._session_ms,
                )
                self._lose()
            if self._in_flight is not None:
                return None
            if self._leave is not None:
                header, self._leave = self._leave, None
                return self._send("leave_group", header, idempotent=True)
            if self._state in MEMBER_STATES and now >= self._next_beat:
                return self._heartbeat()
            if self._state is MemberState.UNJOINED and self._topics and now >= self._next_beat:
                self._fire(MemberEvent.JOIN_SENT)
                self._topics_dirty = False
                return self._send(
                    "join_group",
                    {
                        "group_id": self.group_id,
                        "member_id": "",
                        "client_id": self._client_id,
                        "client_host": self._client_host,
                        "topics": sorted(self._topics),
                        "assignors": self._assignors,
                        "session_timeout_ms": self._session_ms,
                        "max_poll_interval_ms": self._max_poll_ms,
                    },
                    idempotent=False,
                )
            return None

    def next_wakeup(self, now: float | None = None) -> float:
        """Seconds until ``next_request`` may have something to send (the I/O loop
        should also ask after every response)."""
        now = self._clock.monotonic() if now is None else now
        with self._lock:
            idle = 1.0
            if self._state is MemberState.CLOSED:
                return idle
            if self._leave is not None and self._in_flight is None:
                return 0.0
            if self._state in MEMBER_STATES:
                deadline = min(self._last_poll + self._max_poll, self._last_ok + self._session)
                if self._in_flight is None:
                    deadline = min(deadline, self._next_beat)
                return max(0.0, deadline - now)
            if self._state is MemberState.UNJOINED and self._topics and self._in_flight is None:
                return max(0.0, self._next_beat - now)
            return idle

    def on_response(self, token: int, header: dict[str, Any], now: float | None = None) -> None:
        """Apply the answer to the request ``token`` (a late, stale answer is ignored)."""
        now = self._clock.monotonic() if now is None else now
        with self._lock:
            if self._in_flight is None or self._in_flight[0] != token:
                return
            api = self._in_flight[1]
            self._in_flight = None
            if api == "leave_group" or self._state is MemberState.CLOSED:
                return
            code = header.get("error", 0)
            if code == 0:
                self._apply(header, now)
            elif code == _UNKNOWN_MEMBER and api == "heartbeat":
                log.warning(
                    "group '%s': the coordinator no longer knows this consumer (%s); "
                    "its partitions are lost. Rejoining.",
                    self.group_id,
                    header.get("message"),
                )
                self._lose()
            elif code in _FATAL_JOIN_ERRORS and api == "join_group":
                self._fatal = from_wire(code, header.get("message"))
                self._fire(MemberEvent.JOIN_REFUSED)
                self._next_beat = now + max(1.0, self._backoff)
                self.wake.set()
            else:
                log.info(
                    "group '%s': %s failed (%s: %s); retrying",
                    self.group_id,
                    api,
                    code,
                    header.get("message"),
                )
                self._retry(api, now)

    def on_failure(self, token: int, exc: BaseException, now: float | None = None) -> None:
        """The request ``token`` got no answer (timeout, connection lost)."""
        now = self._clock.monotonic() if now is None else now
        with self._lock:
            if self._in_flight is None or self._in_flight[0] != token:
                return
            api = self._in_flight[1]
            self._in_flight = None
            if self._state is not MemberState.CLOSED and api != "leave_group":
                log.debug("group '%s': %s failed: %s", self.group_id, api, exc)
                self._retry(api, now)

    # -- internals (lock held unless noted) ---------------------------------------------

    def _fire(self, event: MemberEvent) -> None:
        self._state = next_state(self._state, event)

    def _send(self, api: str, header: dict[str, Any], *, idempotent: bool) -> Request:
        self._tokens += 1
        self._in_flight = (self._tokens, api)
        return Request(self._tokens, api, header, idempotent)

    def _heartbeat(self) -> Request:
        header = {
            "group_id": self.group_id,
            "member_id": self.member_id,
            "generation": self.generation,
            "owned": _wire(self._owned | self._target),
        }
        if self._topics_dirty:
            header["topics"] = sorted(self._topics)
            self._topics_dirty = False
        return self._send("heartbeat", header, idempotent=True)

    def _good_standing(self, now: float) -> bool:
        return self._state in MEMBER_STATES and now - self._last_ok <= self._session

    def _apply(self, header: dict[str, Any], now: float) -> None:
        if self._state is MemberState.JOINING:
            self._fire(MemberEvent.JOIN_ACCEPTED)
            log.info(
                "group '%s': joined as %s (generation %s)",
                self.group_id,
                header.get("member_id"),
                header.get("generation"),
            )
        self.member_id = header.get("member_id", self.member_id)
        self.generation = header.get("generation", self.generation)
        self._target = _tps(header.get("assignment", []))
        self._last_ok = now
        self._next_beat = now + self._beat_interval(header)
        if self._target != self._owned or self._state is MemberState.JOINED:
            self.wake.set()
        self._maybe_warn_idle(header)

    def _beat_interval(self, header: dict[str, Any]) -> float:
        """Seconds to the next heartbeat. While this member's assignment is moving (the
        coordinator has partitions pending for it, or it still has to take up or
        release some) it follows the coordinator's pace, so a rebalance completes in
        a few round trips; settled, it beats every ``heartbeat_interval_ms`` (Kafka's
        3 s) and never faster than the coordinator asks. An idle member then costs
        one request per interval, and a newcomer may wait up to one interval before
        the settled members hear of it (Kafka's members likewise learn of a
        rebalance at their next heartbeat)."""
        interval = header.get("heartbeat_interval_ms")
        asked = interval / 1000.0 if isinstance(interval, int) and interval > 0 else None
        if asked is None:
            return self._default_interval
        settled = not header.get("pending") and self._target == self._owned
        return max(asked, self._default_interval) if settled else asked

    def _maybe_warn_idle(self, header: dict[str, Any]) -> None:
        members, partitions = header.get("members", 0), header.get("partitions", 0)
        idle = not header.get("assignment") and not header.get("pending")
        if idle and members > partitions and self._idle_warned != self.generation:
            self._idle_warned = self.generation
            log.warning(
                "consumer %s in group '%s' is idle: the group has %d consumers but %s %s only "
                "%d partition(s), and each partition is read by one consumer of a group. It "
                "gets records only when another consumer leaves. Add partitions (labkit topics "
                "--alter --topic T --partitions N) or run fewer consumers.",
                self.member_id,
                self.group_id,
                members,
                ", ".join(sorted(self._topics)),
                "has" if len(self._topics) == 1 else "have",
                partitions,
            )

    def _drop_membership(self, event: MemberEvent) -> None:
        self._in_flight = None  # a late answer to it is ignored
        self.member_id, self.generation = "", -1
        self._target = frozenset()
        self._topics_dirty = False
        self._fire(event)
        self.wake.set()

    def _lose(self) -> None:
        self._drop_membership(MemberEvent.MEMBERSHIP_LOST)

    def _retry(self, api: str, now: float) -> None:
        if api == "join_group":
            self._fire(MemberEvent.JOIN_RETRY)
        self._next_beat = now + self._backoff

    def _queue_leave(self, why: str, *, report_lost: bool) -> None:
        """Queue a leave_group (when a member) and drop the membership; with
        ``report_lost`` the next poll() reports the owned partitions lost."""
        if self._state is MemberState.CLOSED:
            return  # unsubscribe() after close(): nothing left to leave
        if self.member_id:
            self._leave = {"group_id": self.group_id, "member_id": self.member_id}
            log.info("group '%s': leaving (%s)", self.group_id, why)
        lost = report_lost and bool(self._owned)
        self._drop_membership(MemberEvent.MEMBERSHIP_LOST if lost else MemberEvent.LEFT)

    def _revoke(self, revoked: frozenset[TopicPartition]) -> None:
        """Commit hook, listener, forget; then report the release (no lock held)."""
        partitions = sorted(revoked)
        try:
            self._hooks.before_revoke(partitions)
        except KafkaError as exc:
            log.warning(
                "group '%s': committing %s before giving them up failed: %s",
                self.group_id,
                _names(revoked),
                exc,
            )
        self._call_listener("on_partitions_revoked", revoked)
        self._hooks.revoked(partitions)
        with self._lock:
            self._owned = self._owned - revoked
            self._next_beat = self._clock.monotonic()  # tell the coordinator at once

    def _revoke_everything(self) -> None:
        with self._lock:
            owned = self._owned
        if owned:
            self._revoke(owned)

    def _call_listener(self, name: str, partitions: frozenset[TopicPartition]) -> None:
        if self._listener is None:
            return
        method = getattr(self._listener, name, None)
        if method is None and name == "on_partitions_lost":
            method = getattr(self._listener, "on_partitions_revoked", None)
        if method is None:
            return
        try:
            method(sorted(partitions))
        except Exception:  # a user's callback must not break the consumer (as kafka-python)
            log.exception(
                "group '%s': the rebalance listener's %s raised an exception", self.group_id, name
            )


def offset_fetch_header(group_id: str, partitions: Iterable[TopicPartition] | None = None) -> dict:
    """The ``offset_fetch`` header (``None`` = every partition the group committed)."""
    return offset_fetch_request(group_id, partitions)


def parse_offset_fetch(header: dict[str, Any]) -> dict[TopicPartition, OffsetAndMetadata | None]:
    """``{tp: OffsetAndMetadata or None (nothing committed)}`` from an offset_fetch answer.
    Raises the broker's error."""
    return {
        TopicPartition(row.topic, row.partition): (
            OffsetAndMetadata(row.offset, row.metadata, -1) if row.offset >= 0 else None
        )
        for row in committed_offsets(header)
    }
