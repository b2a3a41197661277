"""Muting throttled connections (Kafka's KIP-219), pure: no sockets, time passed in.

Theory of operation
-------------------
When a client goes over its quota, ``broker/quotas.py`` says for how long it must
stay silent (``throttle_time_ms``). As in Kafka since KIP-219, the broker answers
at once with ``throttle_time_ms`` in the reply, and *mutes* the connection for
that long: its next produce/fetch requests are not handled before the throttle
time has passed. A client that honours ``throttle_time_ms`` (labkit's and Kafka's
do) sends nothing meanwhile; one that does not simply waits longer for its
answers. Holding only the reply would not be enough on a pipelined protocol: a
producer with five requests in flight would have all five appended at once.

``ThrottleGate``, per connection (ROUTER identity):

- ``mute(identity, delay_ms, now)`` starts or extends the connection's mute;
- ``admit(identity, frames, max_wait_s, now)`` -> False when the request was
  queued: the connection is muted, or still has queued requests (order is kept);
- ``due(now)``: connections with something to do now;
  ``pop_ready(identity, now)`` gives their queued requests back one at a time,
  in arrival order, while the connection is not muted (handling one may mute it
  again; then the rest wait). A request that has waited ``max_wait_s`` comes out
  even while muted (it is then handled and throttled further): a client's
  request never waits at the broker until its own ``request_timeout_ms`` runs out,
  so a throttled produce is never timed out, retried and written twice.

A connection queues at most ``max_queued`` requests; beyond that they are handled
at once (a flood costs the flooder more throttle time, never the broker unbounded
memory). Other APIs (metadata, heartbeats, commits, admin) are never muted: a
consumer's group membership does not suffer from its fetch quota. Only the
loop thread uses a gate.
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from dataclasses import dataclass, field
from typing import Any

MAX_QUEUED = 1000  # requests kept per muted connection


@dataclass
class _Mute:
    until: float
    queue: deque = field(default_factory=deque)  # (deadline, frames), arrival order


class ThrottleGate:
    def __init__(self, max_queued: int = MAX_QUEUED):
        self.max_queued = max_queued
        self._muted: dict[Any, _Mute] = {}
        self._timers: list = []  # (when, seq, identity)
        self._seq = itertools.count()

    def _wake_at(self, when: float, identity: Any) -> None:
        heapq.heappush(self._timers, (when, next(self._seq), identity))

    def muted_until(self, identity: Any) -> float | None:
        mute = self._muted.get(identity)
        return None if mute is None else mute.until

    def mute(self, identity: Any, delay_ms: int, now: float) -> None:
        if delay_ms <= 0:
            return
        until = now + delay_ms / 1000.0
        mute = self._muted.get(identity)
        if mute is None:
            self._muted[identity] = _Mute(until)
        elif until > mute.until:
            mute.until = until
        else:
            return
        self._wake_at(until, identity)

    def admit(self, identity: Any, frames: Any, max_wait_s: float, now: float) -> bool:
        """True: handle the request now. False: it was queued behind the mute."""
        mute = self._muted.get(identity)
        if (
            mute is None
            or (mute.until <= now and not mute.queue)
            or len(mute.queue) >= self.max_queued
        ):
            return True
        deadline = now + max_wait_s
        mute.queue.append((deadline, frames))
        self._wake_at(deadline, identity)
        return False

    def next_due(self) -> float | None:
        return self._timers[0][0] if self._timers else None

    def due(self, now: float, everything: bool = False) -> list:
        """Connections whose mute ended or whose oldest queued request waited long
        enough (all of them with ``everything``, at shutdown), in time order."""
        out: dict[Any, None] = {}
        timers = self._timers
        while timers and (everything or timers[0][0] <= now):
            out[heapq.heappop(timers)[2]] = None
        return list(out)

    def pop_ready(self, identity: Any, now: float, everything: bool = False) -> Any | None:
        """The connection's next queued request to handle now, or None."""
        mute = self._muted.get(identity)
        if mute is None:
            return None
        if mute.queue and (everything or mute.until <= now or mute.queue[0][0] <= now):
            return mute.queue.popleft()[1]
        if not mute.queue and mute.until <= now:
            del self._muted[identity]
        return None

    @property
    def muted_count(self) -> int:
        return len(self._muted)
