"""Parked long-poll fetches: who waits for which partition, until when. No sockets here.

Theory of operation
-------------------
A fetch that finds less than ``min_bytes`` is *parked* (Kafka's fetch purgatory):
kept under every partition it names and in a deadline heap. ``wake(keys)`` re-runs
the fetches parked on partitions that got data and returns those that now have
enough; ``expire(now)`` returns those whose time is up, answered with what there is.
The lot never sends: it returns ``(client, request_id, reply)`` triples and the
server sends them. Re-running a fetch is the ``fetch(header, final)`` callable given
at construction (``Handlers.fetch``): a reply whose ``keys`` is not None means
"still short, keep waiting".

Bounds, so that no client can take the lot from the others:

- at most ``capacity`` fetches wait in all, and at most ``per_client`` from one client
  (a connection's routing id); a fetch over its client's share is answered at once;
- when the lot is full, a client with fewer parked fetches than the biggest holder
  takes a slot from it: the holder's oldest fetch is answered at once (a long poll may
  always end early) — so a flood from one client never makes every other consumer's
  long poll return immediately;
- ``release_client`` takes a client's fetches out when its connection goes away or is
  closed for its budget: they are answered at once, which costs nothing when the
  client is gone (ZeroMQ drops the reply) and is harmless when the server mistook a
  live client for a gone one (a long poll may always end early).

Entries leave the heap lazily (``done`` is set; popped when they reach the top).
Used by the loop thread only; not thread-safe.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Hashable, Iterable
from typing import Any

Answer = tuple[bytes, bytes, Any]  # (client identity, request id, Reply)

MAX_PARKED = 10_000  # fetches parked at once, all clients together
MAX_PARKED_PER_CLIENT = 16  # ... and from one connection (a consumer parks one)


class _Parked:
    __slots__ = ("client", "rid", "header", "deadline", "keys", "done")

    def __init__(self, client: bytes, rid: bytes, header: dict, deadline: float, keys):
        self.client = client
        self.rid = rid
        self.header = header
        self.deadline = deadline
        self.keys = frozenset(keys)
        self.done = False


class ParkingLot:
    """Parked fetches with per-client fair shares (see the module docstring)."""

    def __init__(
        self,
        fetch: Callable[[dict, bool], Any],
        capacity: int = MAX_PARKED,
        per_client: int = MAX_PARKED_PER_CLIENT,
    ):
        self._fetch = fetch
        self.capacity = capacity
        self.per_client = per_client
        self._by_key: dict[Hashable, dict[_Parked, None]] = {}
        self._by_client: dict[bytes, dict[_Parked, None]] = {}  # insertion order = age
        self._heap: list = []
        self._seq = itertools.count()
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def parked_by(self, client: bytes) -> int:
        return len(self._by_client.get(client, ()))

    def next_deadline(self) -> float | None:
        """The earliest deadline still waiting (None when nothing is parked)."""
        heap = self._heap
        while heap and heap[0][2].done:
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def park(
        self, client: bytes, rid: bytes, header: dict, deadline: float, keys: Iterable[Hashable]
    ) -> list[Answer]:
        """Park one fetch; returns what must be answered now instead (this fetch when its
        client is over its share, or another client's oldest fetch that gave up its slot)."""
        mine = self._by_client.get(client)
        held = len(mine) if mine else 0
        if held >= self.per_client:
            return self._answer_now(client, rid, header)
        answers: list[Answer] = []
        if self._count >= self.capacity:
            hog = max(self._by_client, key=lambda c: len(self._by_client[c]))
            if len(self._by_client[hog]) <= held + 1:
                return self._answer_now(client, rid, header)  # already has a fair share
            oldest = next(iter(self._by_client[hog]))
            answers.append(self._finish(oldest, final=True))
        entry = _Parked(client, rid, header, deadline, keys)
        for key in entry.keys:
            self._by_key.setdefault(key, {})[entry] = None
        self._by_client.setdefault(client, {})[entry] = None
        heap = self._heap
        if len(heap) > 2 * self.capacity:  # mostly entries dropped with their clients
            heap[:] = [item for item in heap if not item[2].done]
            heapq.heapify(heap)
        heapq.heappush(heap, (deadline, next(self._seq), entry))
        self._count += 1
        return answers

    def wake(self, keys: Iterable[Hashable]) -> list[Answer]:
        """Re-run the fetches parked on ``keys`` (partitions that got data)."""
        answers: list[Answer] = []
        for key in keys:
            for entry in list(self._by_key.get(key, ())):
                self._try(entry, answers)
        return answers

    def wake_all(self) -> list[Answer]:
        """Re-run every parked fetch (after an admin change: topics deleted, partitions added)."""
        answers: list[Answer] = []
        for entries in list(self._by_client.values()):
            for entry in list(entries):
                self._try(entry, answers)
        return answers

    def expire(self, now: float) -> list[Answer]:
        """Answer, with what there is, every fetch whose deadline is ``<= now``."""
        answers: list[Answer] = []
        heap = self._heap
        while heap and (heap[0][0] <= now or heap[0][2].done):
            entry = heapq.heappop(heap)[2]
            if not entry.done:
                answers.append(self._finish(entry, final=True))
        return answers

    def release_client(self, client: bytes) -> list[Answer]:
        """Take out every fetch of a client that went away, answered as they stand."""
        entries = self._by_client.get(client)
        if not entries:
            return []
        return [self._finish(entry, final=True) for entry in list(entries)]

    def answer_all(self) -> list[Answer]:
        """Answer everything (shutdown)."""
        answers: list[Answer] = []
        for entries in list(self._by_client.values()):
            for entry in list(entries):
                answers.append(self._finish(entry, final=True))
        self._heap.clear()
        return answers

    # -- internals ---------------------------------------------------------------------

    def _answer_now(self, client: bytes, rid: bytes, header: dict) -> list[Answer]:
        return [(client, rid, self._fetch(header, True))]

    def _try(self, entry: _Parked, answers: list[Answer]) -> None:
        if entry.done:
            return
        reply = self._fetch(entry.header, False)
        if reply.keys is None:
            self._remove(entry)
            answers.append((entry.client, entry.rid, reply))

    def _finish(self, entry: _Parked, final: bool) -> Answer:
        self._remove(entry)
        return entry.client, entry.rid, self._fetch(entry.header, final)

    def _remove(self, entry: _Parked) -> None:
        if entry.done:
            return
        entry.done = True
        self._count -= 1
        for key in entry.keys:
            entries = self._by_key.get(key)
            if entries is not None:
                entries.pop(entry, None)
                if not entries:
                    del self._by_key[key]
        mine = self._by_client.get(entry.client)
        if mine is not None:
            mine.pop(entry, None)
            if not mine:
                del self._by_client[entry.client]
