"""Where a consumer group's requests go: its coordinator (Kafka's FindCoordinator).

Theory of operation
-------------------
In a labkit cluster (docs/replication.md, "Committed group offsets") a group's
coordinator is the leader of its ``__consumer_offsets`` partition; the other brokers
answer its requests NOT_COORDINATOR (16). ``GroupRoute`` keeps the coordinator's node
id and sends the group's requests over that broker's connection (``node=`` of the
transport, client/connections.py), as Kafka's clients do:

- **Single-broker mode** (``routes.multi`` is False and no coordinator error was
  seen): nothing is asked, ``node`` is ``ANY_BROKER`` (the bootstrap connection):
  today's path, no extra request.
- **Cluster mode**: before the first group request, ``find_coordinator`` (any broker
  answers it) names the coordinator and its ZeroMQ endpoint (the transport adds it
  to ``routes``, so its connection can be opened).
- **Losing it**: an answer NOT_COORDINATOR / COORDINATOR_NOT_AVAILABLE /
  COORDINATOR_LOAD_IN_PROGRESS, or a lost connection / no answer, makes the route
  ``lost(now)``: the coordinator is found again after ``retry_backoff_ms`` and the
  request is retried (``call``; the group member retries its own).

Two threads use it: the I/O thread (``ready``, the member's driver: never blocks,
the lookup is a request whose answer arrives on the I/O thread) and the application
thread (``call``: blocks until an answer or its deadline). One lock guards the state.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from labkit._clock import Clock
from labkit.client.future import Future
from labkit.client.routing import ANY_BROKER
from labkit.errors import (
    CoordinatorLoadInProgressError,
    CoordinatorNotAvailableError,
    KafkaConnectionError,
    KafkaTimeoutError,
    NotCoordinatorError,
    from_wire,
)

COORDINATOR_ERRORS = frozenset(
    e.errno
    for e in (NotCoordinatorError, CoordinatorNotAvailableError, CoordinatorLoadInProgressError)
)


class GroupRoute:
    def __init__(
        self,
        transport: Any,
        group_id: str,
        retry_backoff_ms: float,
        clock: Clock,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self._transport = transport
        self._sleep = sleep  # call()'s backoff (tests advance a FakeClock)
        self._group_id = group_id
        self._backoff = retry_backoff_ms / 1000.0
        self._clock = clock
        self._lock = threading.RLock()  # a lookup may resolve at once, inside
        self.node: int | None = ANY_BROKER  # the coordinator (ANY_BROKER: single broker)
        self._known = False
        self._lost = False  # a coordinator error was seen: look it up even on one broker
        self._lookup: Future | None = None  # the find_coordinator in flight
        self._next_lookup = 0.0

    def _needed(self) -> bool:
        return not self._known and (self._lost or self._transport.routes.multi)

    # -- I/O thread ------------------------------------------------------------------

    def ready(self, now: float) -> bool:
        """True when the group's requests may go to ``node``; otherwise a lookup is
        started (when its backoff allows) and the caller asks again later."""
        with self._lock:
            if not self._needed():
                return True
            self._start_lookup(now)
            return False

    def next_wakeup(self, now: float) -> float:
        """Seconds until ``ready`` may change by itself (a lookup's backoff)."""
        with self._lock:
            if not self._needed() or self._lookup is not None:
                return self._backoff
            return max(0.0, self._next_lookup - now)

    def _start_lookup(self, now: float) -> Future | None:  # lock held
        if self._lookup is None and now >= self._next_lookup:
            future = self._transport.request(
                "find_coordinator", {"key": self._group_id}, idempotent=True
            )
            self._lookup = future
            future.add_callback(self._found, future)
            future.add_errback(self._not_found, future)
        return self._lookup

    def _found(self, future: Future, response: Any) -> None:
        header = response.header
        with self._lock:
            if self._lookup is not future:
                return
            self._lookup = None
            node = header.get("node_id")
            if header.get("error", 0) or type(node) is not int:
                self._next_lookup = self._clock.monotonic() + self._backoff
                return
            # single broker: no ZeroMQ endpoint in the answer, the bootstrap one serves
            self.node = node if type(header.get("zmq_port")) is int else ANY_BROKER
            self._known = True
        self._transport.wakeup()  # the member's driver waits for this

    def _not_found(self, future: Future, exc: BaseException) -> None:
        with self._lock:
            if self._lookup is future:
                self._lookup = None
                self._next_lookup = self._clock.monotonic() + self._backoff
        self._transport.wakeup()

    # -- any thread -----------------------------------------------------------------

    def lost(self, now: float | None = None) -> None:
        """The coordinator answered that it is not (or not yet) one, or is unreachable:
        find it again after ``retry_backoff_ms``."""
        now = self._clock.monotonic() if now is None else now
        with self._lock:
            self._known = False
            self._lost = True
            self.node = ANY_BROKER
            self._next_lookup = max(self._next_lookup, now + self._backoff)

    def check(self, header: dict[str, Any]) -> bool:
        """False (and the route lost) when ``header`` is a coordinator error."""
        if header.get("error", 0) in COORDINATOR_ERRORS:
            self.lost()
            return False
        return True

    def call(
        self, api: str, header: dict[str, Any], *, timeout_ms: float, idempotent: bool = True
    ) -> dict[str, Any]:
        """Send a group request to the coordinator and return the answer's header,
        finding the coordinator again and retrying (after ``retry_backoff_ms``) on a
        coordinator error or a lost connection, until ``timeout_ms``. Raises
        KafkaTimeoutError, or the last coordinator error at the deadline."""
        clock = self._clock
        deadline = clock.monotonic() + timeout_ms / 1000.0
        last: BaseException | None = None
        while True:
            now = clock.monotonic()
            left = deadline - now
            if left <= 0:
                raise last or KafkaTimeoutError(
                    f"{api} for group '{self._group_id}': no coordinator answered within "
                    f"{timeout_ms:.0f} ms; is the cluster running?"
                )
            with self._lock:
                lookup = self._start_lookup(now) if self._needed() else None
                wait_until = self._next_lookup if self._needed() and lookup is None else now
                node = self.node
            if lookup is not None:
                lookup.wait(left + 1.0)
                continue
            if wait_until > now:
                self._sleep(min(wait_until - now, left))
                continue
            future = self._transport.request(
                api, header, idempotent=idempotent, timeout_ms=left * 1000.0, node=node
            )
            if not future.wait(left + 1.0):
                continue
            exc = future.exception
            if exc is None:
                answer = future.value.header
                if self.check(answer):
                    return answer
                last = from_wire(answer["error"], answer.get("message"))
            elif isinstance(exc, KafkaConnectionError):
                self.lost()
                last = exc
            else:
                raise exc
