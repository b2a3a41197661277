"""``ConsumerCoordinator``: a ``KafkaConsumer``'s consumer group (protocol: docs/groups.md).

Theory of operation
-------------------
``KafkaConsumer`` builds a ``ConsumerCoordinator`` (Kafka's and kafka-python's name)
when ``group_id`` is set and calls it for everything group-related (the
``Coordinator`` protocol in labkit/client/coordinator.py). It gets what it uses
explicitly: the consumer's config, transport, ``SubscriptionState``, clock, and a
function that interrupts the consumer's wait. It owns one sans-I/O ``GroupMember``
(labkit/client/group.py) and connects it to the consumer on two threads:

- **I/O thread.** A transport driver (``_drive``) sends the member's next request
  (at most one is in flight) and feeds the answer back; between requests the
  thread sleeps until ``member.next_wakeup`` (``_nudge`` wakes it when this
  thread makes a request due sooner). When the member has
  rebalance work for ``poll()`` (``member.wake``), it interrupts the consumer's
  blocking wait, so a long ``poll(timeout_ms)`` does not delay a revocation.
- **Application thread.** ``poll()`` passes subscription changes to the member,
  runs the callbacks of finished async commits (as kafka-python does), lets the
  member revoke and take up partitions, and auto-commits every
  ``auto_commit_interval_ms``.

The member calls back (application thread, see ``RebalanceHooks``):
``before_revoke`` commits the positions of partitions it gives up (only with
auto-commit), ``revoked``/``assigned`` change the consumer's ``SubscriptionState``
(the fetcher drops data of revoked partitions). The member calls the user's
``ConsumerRebalanceListener`` itself.

Commits: ``member.commit_header`` (fenced by member id and generation; raises
CommitFailedError when the consumer is not an active member; a consumer that used
``assign()`` commits as a tool), sent as ``offset_commit``, then
``member.check_commit_response``. Sync commits block the caller; async ones finish
on the I/O thread and their callbacks run in the next ``poll()``.

Thread-safety: the member has its own lock; everything else here is touched by the
application thread only, except ``_finished`` (a deque: appended by the I/O thread).
"""

from __future__ import annotations

import logging
import socket
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from labkit._clock import Clock
from labkit.client import config as cfg
from labkit.client.future import Future
from labkit.client.group import GroupMember, offset_fetch_header, parse_offset_fetch
from labkit.client.group_route import GroupRoute
from labkit.client.structs import OffsetAndMetadata, TopicPartition
from labkit.client.subscription import SubscriptionState
from labkit.client.transport import raise_for_error
from labkit.errors import (
    CommitFailedError,
    KafkaConfigurationError,
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
    UnknownMemberIdError,
)

log = logging.getLogger(__name__)

LEAVE_WAIT_S = 1.0  # close(): how long to wait for the leave_group answer


def assignor_names(strategies: Any) -> list[str]:
    """``partition_assignment_strategy`` -> assignor names, in order of preference.

    Takes names (``'range'``, ``'roundrobin'``, ``'sticky'``) or kafka-python's
    assignor classes (their ``.name``). Raises KafkaConfigurationError otherwise.
    """
    if isinstance(strategies, str) or hasattr(strategies, "name"):
        strategies = [strategies]
    names = []
    for item in strategies or ():
        name = item if isinstance(item, str) else getattr(item, "name", None)
        if not isinstance(name, str) or not name:
            raise KafkaConfigurationError(
                f"partition_assignment_strategy: {item!r} is not an assignor; use names like "
                "['range', 'roundrobin'] (or kafka-python's RangePartitionAssignor, ...)"
            )
        names.append(name)
    if not names:
        raise KafkaConfigurationError(
            "partition_assignment_strategy is empty; use e.g. ['range', 'roundrobin']"
        )
    return names


def local_host(broker_address: str) -> str:
    """``/<ip>`` of this machine as the broker sees it (Kafka's CONSUMER-ID HOST column).

    A UDP socket is "connected" to the broker only to ask the OS which local address
    it would use; nothing is sent.
    """
    host, _, port = broker_address.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    try:
        infos = socket.getaddrinfo(host, int(port or 9092), type=socket.SOCK_DGRAM)
        family, _, _, _, address = infos[0]
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.connect(address)
            return "/" + probe.getsockname()[0]
    except (OSError, ValueError, IndexError):
        return "/127.0.0.1"


def _log_commit_failure(offsets: dict, exception: BaseException | None) -> None:
    if exception is not None:
        log.warning("Offset commit failed: %s", exception)


class ConsumerCoordinator:
    """The group side of one ``KafkaConsumer`` (see the module docstring)."""

    def __init__(
        self,
        config: dict[str, Any],
        *,
        transport: Any,
        subscription: SubscriptionState,
        clock: Clock,
        interrupt: Callable[[], None],
        **route_options: Any,
    ):
        cfg.check_numbers(
            config,
            {
                "session_timeout_ms": 1,
                "max_poll_interval_ms": 1,
                "heartbeat_interval_ms": 1,
                "auto_commit_interval_ms": 0,
            },
        )
        self.group_id: str = config["group_id"]
        if not isinstance(self.group_id, str) or not self.group_id:
            raise KafkaConfigurationError(
                f"group_id must be a non-empty string (e.g. 'fraud-detection'), got "
                f"{self.group_id!r}; use group_id=None to read without a group"
            )
        self._transport = transport
        self._sub = subscription
        self._clock = clock
        self._interrupt = interrupt  # wakes the consumer's wait in poll() (any thread)
        self._request_timeout_ms = float(config["request_timeout_ms"])
        self._session_ms = int(config["session_timeout_ms"])
        self._backoff = config["retry_backoff_ms"] / 1000.0
        self._auto_commit = bool(config["enable_auto_commit"])
        self._auto_interval = config["auto_commit_interval_ms"] / 1000.0
        self._next_auto = self._clock.monotonic() + self._auto_interval
        self._default_callback = config["default_offset_commit_callback"] or _log_commit_failure
        self._leave_on_close = bool(config["leave_group_on_close"])
        self._commit_on_revoke = self._auto_commit
        self._committed: dict[TopicPartition, int] = {}  # last successful commit, per tp
        self._finished: deque = deque()  # (callback, offsets, exception) of async commits
        self._applied: tuple[frozenset[str], Any] | None = None  # subscription given to member
        self.member = GroupMember(
            self.group_id,
            client_id=config["client_id"],
            client_host=local_host(self._transport.address),
            assignors=assignor_names(config["partition_assignment_strategy"]),
            session_timeout_ms=self._session_ms,
            max_poll_interval_ms=int(config["max_poll_interval_ms"]),
            heartbeat_interval_ms=int(config["heartbeat_interval_ms"]),
            retry_backoff_ms=int(config["retry_backoff_ms"]),
            clock=self._clock,
            hooks=self,
        )
        # in cluster mode every group request goes to the group's coordinator
        self.route = GroupRoute(
            transport, self.group_id, config["retry_backoff_ms"], clock, **route_options
        )
        self._transport.add_driver(self._drive)

    # -- I/O thread ----------------------------------------------------------------

    def _drive(self, now: float) -> float:
        member = self.member
        route = self.route
        if not route.ready(now):  # finding the coordinator (cluster mode)
            if member.wake.is_set():
                self._interrupt()
            return min(member.next_wakeup(now), route.next_wakeup(now))
        request = member.next_request(now)
        if request is not None:
            future = self._transport.request(
                request.api,
                request.header,
                idempotent=request.idempotent,
                timeout_ms=self._session_ms,
                node=route.node,
            )
            future.add_callback(self._answered, request.token)
            future.add_errback(self._failed, request.token)
        if member.wake.is_set():
            self._interrupt()
        return member.next_wakeup(now)

    def _answered(self, token: int, response: Any) -> None:
        self.route.check(response.header)  # NOT_COORDINATOR...: find it again, then retry
        self.member.on_response(token, response.header)
        if self.member.wake.is_set():
            self._interrupt()

    def _failed(self, token: int, exc: BaseException) -> None:
        if isinstance(exc, (KafkaConnectionError, KafkaTimeoutError)):
            self.route.lost()  # its broker may be gone: find the coordinator again
        self.member.on_failure(token, exc)

    # -- application thread: poll ----------------------------------------------------

    def _subscribed(self) -> bool:
        sub = self._sub
        return sub.mode in (sub.AUTO_TOPICS, sub.AUTO_PATTERN)

    def _sync_subscription(self) -> None:
        """Hand a new subscription (topics, listener) to the member."""
        if not self._subscribed():
            return
        topics = frozenset(self._sub.subscription or ())
        listener = self._sub.listener
        if self._applied is None or self._applied[0] != topics or self._applied[1] is not listener:
            self.member.subscribe(topics, listener)
            self._applied = (topics, listener)

    def poll(self, timeout_s: float = 0.0) -> bool:
        """Rebalance work, async-commit callbacks and auto-commit; called by
        ``KafkaConsumer.poll()``. Raises a KafkaError when joining the group failed
        for a reason retrying cannot fix (e.g. InconsistentGroupProtocolError)."""
        self._sync_subscription()
        self._run_callbacks()
        self.member.poll()
        self._nudge()
        if self._auto_commit:
            self._maybe_auto_commit()
        return True

    def _nudge(self) -> None:
        """Wake the I/O thread when the member has a request to send right now (a new
        subscription, partitions released or lost): it sleeps until the deadline it
        computed before this thread changed the member's state."""
        if self.member.next_wakeup() <= 0.0:
            self._transport.wakeup()

    def fetchable(self) -> set[TopicPartition] | None:
        """Partitions the consumer may fetch and return now (None: all it has assigned)."""
        return self.member.fetchable() if self._subscribed() else None

    def on_unsubscribe(self) -> None:
        self.member.unsubscribe()
        self._applied = None
        self._nudge()

    def close(self, autocommit: bool = True, timeout_ms: float | None = None) -> None:
        """Commit (auto-commit and ``autocommit``), give up every partition, leave."""
        self._commit_on_revoke = autocommit and self._auto_commit
        if self._commit_on_revoke and not self._subscribed():
            try:  # assign(): no revocation will commit for us
                self.commit_offsets_sync(self._sub.all_consumed_offsets(), timeout_ms)
            except KafkaError as exc:
                log.warning("group '%s': committing on close failed: %s", self.group_id, exc)
        leave = self.member.close()
        self._run_callbacks()
        if leave is not None and self._leave_on_close:
            wait = LEAVE_WAIT_S if timeout_ms is None else min(LEAVE_WAIT_S, timeout_ms / 1000.0)
            future = self._transport.request(
                "leave_group",
                leave,
                idempotent=True,
                timeout_ms=wait * 1000.0,
                node=self.route.node,
            )
            future.wait(wait)

    # -- rebalance hooks (called by GroupMember on the application thread) -----------

    def before_revoke(self, partitions: list[TopicPartition]) -> None:
        if not self._commit_on_revoke:
            return
        assignment = self._sub.assignment
        offsets = {
            tp: OffsetAndMetadata(st.position, "", -1)
            for tp in partitions
            if (st := assignment.get(tp)) is not None and st.position is not None
        }
        self.commit_offsets_sync(offsets)

    def revoked(self, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            self._committed.pop(tp, None)
        if self._subscribed():
            self._sub.assign_from_subscribed(
                set(self._sub.assignment) - set(partitions), notify_listener=False
            )

    def assigned(self, partitions: list[TopicPartition]) -> None:
        if self._subscribed():
            self._sub.assign_from_subscribed(
                set(self._sub.assignment) | set(partitions), notify_listener=False
            )

    # -- commits ----------------------------------------------------------------------

    def _check(self, header: dict[str, Any], response: dict[str, Any]) -> None:
        if not header["member_id"] and response.get("error") == UnknownMemberIdError.errno:
            raise CommitFailedError(
                f"Commit cannot be completed: group '{self.group_id}' has active members, and "
                "only they may commit while it is active. This consumer used assign(); "
                "subscribe() with this group_id instead, or use a group_id of its own. "
                f"(The broker said: {response.get('message')})"
            )
        self.member.check_commit_response(response)

    def commit_offsets_sync(self, offsets: dict, timeout_ms: float | None = None) -> None:
        """Commit ``{tp: OffsetAndMetadata or int}`` and wait until it is on disk.

        Raises CommitFailedError (not an active member, or fenced: the group
        rebalanced), KafkaTimeoutError, or the broker's error.
        """
        self._run_callbacks()
        offsets = dict(offsets)
        if not offsets:
            return
        self._sync_subscription()  # subscribed but never polled: not a member yet
        header = self.member.commit_header(offsets)
        timeout_ms = self._request_timeout_ms if timeout_ms is None else float(timeout_ms)
        try:
            answer = self.route.call("offset_commit", header, timeout_ms=timeout_ms)
        except KafkaTimeoutError:
            raise KafkaTimeoutError(
                f"committing offsets for group '{self.group_id}' took "
                f"longer than {timeout_ms:.0f} ms; is the broker running?"
            ) from None
        self._check(header, answer)
        self._remember(offsets)

    def commit_offsets_async(self, offsets: dict, callback: Any = None) -> Future:
        """Send a commit; ``callback(offsets, exception_or_None)`` runs in a later
        ``poll()``. Returns a Future (resolved on the I/O thread)."""
        callback = callback or self._default_callback
        offsets = dict(offsets)
        result = Future()
        if not offsets:
            return result.success(None)
        self._sync_subscription()
        try:
            header = self.member.commit_header(offsets)
        except KafkaError as exc:
            self._finished.append((callback, offsets, exc))
            return result.failure(exc)
        future = self._transport.request(
            "offset_commit",
            header,
            idempotent=True,
            timeout_ms=self._request_timeout_ms,
            node=self.route.node,
        )

        def answered(response: Any) -> None:  # I/O thread
            self.route.check(response.header)  # a coordinator error: the next one re-finds
            try:
                self._check(header, response.header)
            except KafkaError as exc:
                failed(exc)
                return
            self._finished.append((callback, offsets, None))
            result.success(None)

        def failed(exc: BaseException) -> None:  # I/O thread
            if isinstance(exc, KafkaConnectionError):
                self.route.lost()
            self._finished.append((callback, offsets, exc))
            result.failure(exc)

        future.add_callback(answered)
        future.add_errback(failed)
        return result

    def _remember(self, offsets: dict) -> None:
        for tp, value in offsets.items():
            self._committed[tp] = value if isinstance(value, int) else value.offset

    def _run_callbacks(self) -> None:
        while self._finished:
            callback, offsets, exc = self._finished.popleft()
            if exc is None:
                self._remember(offsets)
            try:
                callback(offsets, exc)
            except Exception:  # a user's callback must not break poll() (as kafka-python)
                log.exception("group '%s': the offset commit callback raised", self.group_id)

    def _maybe_auto_commit(self) -> None:
        now = self._clock.monotonic()
        if now < self._next_auto:
            return
        if self._subscribed() and not self.member.in_group:
            self._next_auto = now + self._backoff  # joining: try again soon
            return
        self._next_auto = now + self._auto_interval
        offsets = {
            tp: om
            for tp, om in self._sub.all_consumed_offsets().items()
            if self._committed.get(tp) != om.offset
        }
        if offsets:
            self.commit_offsets_async(offsets, self._auto_commit_done)

    def _auto_commit_done(self, offsets: dict, exc: BaseException | None) -> None:
        if exc is not None:
            log.warning(
                "group '%s': auto-commit of %d offset(s) failed: %s",
                self.group_id,
                len(offsets),
                exc,
            )

    def fetch_committed_offsets(
        self, partitions: Iterable[TopicPartition], timeout_ms: float | None = None
    ) -> dict[TopicPartition, OffsetAndMetadata | None]:
        """``{tp: OffsetAndMetadata or None}`` (None: nothing committed). Raises
        KafkaTimeoutError or the broker's error."""
        partitions = list(partitions)
        if not partitions:
            return {}
        timeout_ms = self._request_timeout_ms if timeout_ms is None else float(timeout_ms)
        answer = self.route.call(
            "offset_fetch", offset_fetch_header(self.group_id, partitions), timeout_ms=timeout_ms
        )
        return parse_offset_fetch(raise_for_error(answer))
