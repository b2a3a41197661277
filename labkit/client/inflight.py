"""The requests of a transport on their way: sent, answered, timed out, lost (I/O thread).

Theory of operation
-------------------
Other threads append ``Pending`` requests to ``outbox`` (``Transport.request``; a
deque's append is thread-safe); everything else here runs on the transport's I/O
thread (transport.py), which calls ``send`` for each request it takes from the
outbox. ``send`` hands a request to its broker's connection (``node``: a partition's
leader in cluster mode; ANY_BROKER: the bootstrap broker) and, unless no answer is
expected (``acks=0``), keeps it in ``inflight`` by request id, with a deadline.

- ``dispatch`` resolves the future of the request an answer is for (an answer to a
  request that timed out or was sent again is dropped). Metadata and
  find_coordinator answers also update ``routes``, whoever asked. A
  ``throttle_time_ms`` (a quota, Kafka's KIP-219) sets ``throttled_until``: until
  then ``send_unthrottled`` sends only what is not produce/fetch, in order.
- ``expire`` fails a request not answered by its deadline with KafkaTimeoutError
  (for a named broker marked ``invalid_metadata``: the caller asks metadata, as a
  silent leader may have been replaced).
- ``lost``: when a connection goes down, its idempotent requests for any broker go
  back to the outbox (at most ``max_resends`` times) and the others fail with
  KafkaConnectionError (the broker may or may not have applied them).
"""

from __future__ import annotations

import logging
from collections import deque
from typing import Any, NamedTuple

from labkit._clock import Clock
from labkit.client.connections import Connections
from labkit.client.routing import ANY_BROKER, Routes
from labkit.client.zmtp import ZmtpConnection
from labkit.errors import KafkaConnectionError, KafkaTimeoutError, ProtocolError, from_wire
from labkit.protocol.frames import MAGIC, decode_header

log = logging.getLogger(__name__)

MAX_SLEEP = 30.0  # the I/O thread's longest sleep: a safety net, not a tick
_THROTTLED_APIS = frozenset({"produce", "fetch"})  # what a quota's throttle_time_ms holds back


class Response(NamedTuple):
    header: dict[str, Any]
    payloads: list  # memoryviews of the payload frames


class Pending:
    __slots__ = (
        "rid",
        "api",
        "frames",
        "future",
        "timeout",
        "deadline",
        "idempotent",
        "expect_response",
        "resends",
        "node",
        "conn",
    )

    def __init__(self, rid, api, frames, future, timeout, idempotent, expect_response, node):
        self.rid = rid
        self.api = api
        self.frames = frames
        self.future = future
        self.timeout = timeout
        self.deadline = 0.0
        self.idempotent = idempotent
        self.expect_response = expect_response
        self.resends = 0
        self.node = node  # the broker it is for (ANY_BROKER: the bootstrap one, or any)
        self.conn: ZmtpConnection | None = None  # the connection it went out on


def raise_for_error(header: dict[str, Any]) -> dict[str, Any]:
    """Raise the Kafka error named by a response header's ``error``; else return it."""
    code = header.get("error", 0)
    if code:
        raise from_wire(code, header.get("message"))
    return header


class InFlight:
    def __init__(
        self,
        links: Connections,
        routes: Routes,
        clock: Clock,
        max_resends: int,
        bootstrap_conn: ZmtpConnection,
        address: str,
    ):
        self._links = links
        self.routes = routes
        self._clock = clock
        self._max_resends = max_resends
        self._conn = bootstrap_conn  # the bootstrap broker's (named by ``address``)
        self.address = address
        self.outbox: deque[Pending] = deque()
        self.inflight: dict[bytes, Pending] = {}
        self.throttled_until = 0.0  # a quota's throttle_time_ms: no produce/fetch before
        self._sending = False  # in send_outbox (which a lost connection calls back into)

    def send_outbox(self, now: float, closing: bool) -> None:
        """Send what waits in the outbox, in order (while throttled: ``send_unthrottled``).

        A write that loses its connection calls back into this while a request is half
        sent (ZmtpConnection's on_down -> Transport._connection_down -> ``lost``, then
        here). The inner call returns at once: the outer one goes on with the outbox,
        where ``lost`` put back what it sends again. Each request leaves the outbox before
        its write, so none is sent twice nor dropped unsent."""
        if self._sending:
            return
        self._sending = True
        try:
            outbox = self.outbox
            if outbox and now < self.throttled_until and not closing:
                self.send_unthrottled(now)
                return
            while outbox:
                pending = outbox.popleft()
                if not self.send(pending, now):
                    outbox.appendleft(pending)  # the socket pushed back: keep the order
                    return
        finally:
            self._sending = False

    def send(self, pending: Pending, now: float) -> bool:
        conn = self._links.for_node(pending.node)
        if conn is None:  # metadata named a leader but no endpoint for it
            pending.future.failure(
                KafkaConnectionError(
                    f"metadata names no ZeroMQ endpoint for broker {pending.node}; "
                    "the client refreshes metadata and tries again"
                )
            )
            return True
        pending.conn = conn
        if pending.expect_response:
            pending.deadline = now + pending.timeout
            # in flight before the write: a write that loses the connection finds it (lost)
            self.inflight[pending.rid] = pending
            conn.send(pending.frames)  # held until connected, as libzmq queues
        else:
            conn.send(pending.frames)
            pending.frames = None
            pending.future.success(None)
        return True

    def send_unthrottled(self, now: float) -> None:
        """While a quota throttles this client (Kafka's KIP-219), send only what is not
        produce/fetch; those keep their order and go when the throttle time is over."""
        kept: list[Pending] = []
        outbox = self.outbox
        for _ in range(len(outbox)):  # other threads may append meanwhile, at the right
            pending = outbox.popleft()
            if pending.api in _THROTTLED_APIS:
                kept.append(pending)
            elif not self.send(pending, now):
                outbox.appendleft(pending)  # the socket pushed back: keep the order
                break
        outbox.extendleft(reversed(kept))

    def dispatch(self, frames: list) -> None:
        """Resolve the future of the request this answer is for."""
        if len(frames) < 3 or frames[0] != MAGIC:
            log.warning("ignoring a malformed message from the broker")
            return
        pending = self.inflight.pop(bytes(frames[1]), None)
        if pending is None:
            return  # answer to a request that already timed out or was resent
        try:
            header = decode_header(bytes(frames[2]))
        except ProtocolError as exc:
            pending.future.failure(exc)
            return
        pending.frames = None
        if pending.api == "metadata" and not header.get("error"):
            self.routes.update(header)  # leaders and brokers, whoever asked
        elif pending.api == "find_coordinator" and not header.get("error"):
            self.routes.learn_coordinator(header)  # a group's coordinator (group_route.py)
        throttle_ms = header.get("throttle_time_ms")
        if type(throttle_ms) is int and throttle_ms > 0:  # honoured by Transport._send_outbox
            self.throttled_until = max(
                self.throttled_until, self._clock.monotonic() + throttle_ms / 1000.0
            )
        pending.future.success(Response(header, [memoryview(f) for f in frames[3:]]))

    def lost(self, conn: ZmtpConnection, where: str) -> None:
        """Send again, once reconnected, the idempotent requests in flight on ``conn``
        that were for any broker; fail the others with KafkaConnectionError."""
        lost = [p for p in self.inflight.values() if p.conn is conn]
        for pending in lost:
            del self.inflight[pending.rid]
            if (
                pending.node is ANY_BROKER
                and pending.idempotent
                and pending.resends < self._max_resends
            ):
                pending.resends += 1
                pending.conn = None
                self.outbox.append(pending)  # goes out again once reconnected
            else:  # for a named broker: the caller asks metadata for the new leader
                pending.future.failure(
                    KafkaConnectionError(
                        f"lost the connection to the broker at {where} before it answered {pending.api}; the broker "
                        "may or may not have applied it (is the broker restarting?)"
                    )
                )

    def next_deadline(self, now: float) -> float:
        if not self.inflight:
            return now + MAX_SLEEP
        return min(p.deadline for p in self.inflight.values())

    def expire(self, now: float) -> None:
        if not self.inflight:
            return
        expired = [p for p in self.inflight.values() if p.deadline <= now]
        for pending in expired:
            del self.inflight[pending.rid]
            error = KafkaTimeoutError(
                f"the broker at {self._where(pending)} did not answer {pending.api} within {pending.timeout:.1f} s (request_timeout_ms); is it "
                "running and not overloaded?"
            )
            if pending.node is not ANY_BROKER:  # a silent leader may have been replaced:
                error.invalid_metadata = True  # the caller asks metadata (as Kafka's clients)
            pending.future.failure(error)

    def _where(self, pending: Pending) -> str:
        if pending.conn is None or pending.conn is self._conn:
            return self.address
        return self._links.node_of(pending.conn)

    def fail_all(self, error: BaseException) -> None:
        """Fail every request in flight or waiting to be sent (the I/O thread stops)."""
        pending = list(self.inflight.values()) + list(self.outbox)
        self.inflight.clear()
        self.outbox.clear()
        for p in pending:
            p.future.failure(error)
