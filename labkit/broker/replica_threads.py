"""The follower's threads: one per leader broker, each with its own DEALER to that
leader's ZeroMQ endpoint (never the loop's socket), driving the ``ReplicaFetcher``s of
the partitions this broker follows there (broker/replica_fetcher.py).

Theory of operation
-------------------
The loop thread decides who follows what (broker/replication.py) and calls
``FetcherPool.follow(key, assignment, plog)`` / ``unfollow(key)``; the pool keeps one
``LeaderFetcherThread`` per leader broker id (a new endpoint: a new thread). Each
thread loops:

1. partitions still truncating (KIP-101) send ``offsets_for_leader_epoch`` one by one
   (no wait on the leader's side);
2. the fetching ones go in **one** ``fetch`` with ``replica_id`` (the leader parks it
   up to ``replica.fetch.wait.max.ms``, 500, until one of them gets data); each row of
   the answer goes to its partition's fetcher, which appends at the leader's offsets
   and sets the high watermark;
3. a partition whose leader answered an error waits ``replica.fetch.backoff.ms``
   (1000); a stopped one (NOT_LEADER_OR_FOLLOWER, UNKNOWN_LEADER_EPOCH: the leader has
   not applied the controller's decision yet) starts over (truncation first) after
   the same back-off, until the loop re-targets it. A fenced one (FENCED_LEADER_EPOCH,
   KIP-320: the leader has a newer epoch than this broker's view) sends nothing more
   with its stale epoch: the loop's next ZooKeeper snapshot re-targets it with the
   leader's epoch (as Kafka's follower waits for LeaderAndIsr); only if none came
   within ``FENCED_WAIT_S`` does it start over.

A fetcher is built on the loop thread but started here (``ReplicaFetcher.start``, under
``lock``): its first truncation fsyncs, which the loop never does.

``lock`` is held while an answer is applied to a partition and while the loop removes
one, so once ``unfollow`` returns, this thread never touches that log again (the loop
may then append to it as its new leader). An answer for a request older than a
re-target is dropped (the fetcher object it was built for is no longer the
partition's). A leader that does not answer within the wait + ``REQUEST_TIMEOUT_S``
gets a new socket (a stale reply then cannot be mistaken for a new one). The sockets
come from ``open_dealer(endpoint)`` (broker/server.py: zmq is imported there only).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from labkit.broker.replica_fetcher import FETCHING, STOPPED, TRUNCATING, Assignment, ReplicaFetcher
from labkit.protocol.frames import build_request, parse_response

log = logging.getLogger(__name__)

OpenDealer = Callable[[str], Any]  # "host:port" -> a connected zmq DEALER (LINGER 0)

FETCH_BACKOFF_S = 1.0  # Kafka's replica.fetch.backoff.ms
REQUEST_TIMEOUT_S = 5.0  # beyond the fetch's own wait
FENCED_WAIT_S = 5.0  # fenced: the loop's newer assignment replaces it first, normally
IDLE_S = 0.05  # nothing to fetch: look again this often


class LeaderFetcherThread(threading.Thread):
    """Every partition this broker follows on one leader broker."""

    def __init__(self, open_dealer: OpenDealer, leader_id: int, endpoint: str, broker_id: int):
        super().__init__(name=f"labkit-replica-fetcher-{leader_id}", daemon=True)
        self.open_dealer = open_dealer
        self.leader_id = leader_id
        self.endpoint = endpoint
        self.broker_id = broker_id
        self.lock = threading.Lock()
        self.fetchers: dict[tuple[str, int], ReplicaFetcher] = {}
        self._resume_at: dict[tuple[str, int], float] = {}
        self._stopping = False
        self._sock: Any = None  # a zmq DEALER, used on this thread only
        self._next_id = 0

    # -- the loop thread ---------------------------------------------------------------------

    def follow(self, key: tuple[str, int], fetcher: ReplicaFetcher) -> None:
        with self.lock:
            self.fetchers[key] = fetcher
            self._resume_at.pop(key, None)

    def unfollow(self, key: tuple[str, int]) -> None:
        with self.lock:  # waits for an answer being applied to it
            self.fetchers.pop(key, None)
            self._resume_at.pop(key, None)

    def stop(self) -> None:
        self._stopping = True

    # -- this thread ---------------------------------------------------------------------------

    def run(self) -> None:
        try:
            while not self._stopping:
                try:
                    if not self._round():
                        time.sleep(IDLE_S)
                except Exception:
                    log.exception("replica fetcher for leader %d failed; retrying", self.leader_id)
                    time.sleep(FETCH_BACKOFF_S)
        finally:
            if self._sock is not None:
                self._sock.close(linger=0)

    def _round(self) -> bool:
        """One pass over the partitions; False when there was nothing to send."""
        now = time.monotonic()
        with self.lock:
            due = [
                (key, f) for key, f in self.fetchers.items() if self._resume_at.get(key, 0) <= now
            ]
        sent = False
        for key, fetcher in due:
            if not fetcher.started and not self._start(key, fetcher):
                continue  # its first truncation (here, never on the loop) failed: later
            if fetcher.state == STOPPED:  # not led there yet (or stale): start over
                self._restart(key, fetcher)
                continue
            if fetcher.state != TRUNCATING:
                continue
            request = fetcher.next_request()
            if request is None:
                continue
            answer = self._ask(*request, timeout_s=REQUEST_TIMEOUT_S)
            sent = True
            if answer is not None:
                self._apply(key, fetcher, answer[0], answer[1])
        fetching = [(k, f) for k, f in due if f.state == FETCHING and f.started]
        if not fetching:
            return sent
        rows = []
        header: dict = {}
        for _key, fetcher in fetching:
            request = fetcher.next_request()
            assert request is not None
            header = request[1]
            rows.append(header["partitions"][0])
        header = {**header, "partitions": rows}
        answer = self._ask("fetch", header, header["max_wait_ms"] / 1000 + REQUEST_TIMEOUT_S)
        if answer is None:
            return True
        reply, payloads = answer
        if reply.get("error", 0) != 0 or len(reply.get("partitions", ())) != len(fetching):
            for key, fetcher in fetching:
                self._apply(key, fetcher, reply, [])
            return True
        for index, (key, fetcher) in enumerate(fetching):
            payload = payloads[index] if index < len(payloads) else b""
            self._apply(
                key, fetcher, {"error": 0, "partitions": [reply["partitions"][index]]}, [payload]
            )
        return True

    def _apply(self, key, fetcher: ReplicaFetcher, header: dict, payloads: list) -> None:
        with self.lock:
            if self.fetchers.get(key) is not fetcher:
                return  # re-targeted or unfollowed meanwhile: this answer is stale
            try:
                fetcher.on_response(header, payloads)
                fetcher.plog.leader_epochs.save()  # only when an entry came: a restart needs it
            except Exception as exc:  # noqa: BLE001 - this partition only: truncate again
                log.warning(
                    "%s-%d: could not apply the answer of leader %d (%s); starting over",
                    key[0],
                    key[1],
                    self.leader_id,
                    exc,
                )
                fetcher.state = STOPPED
            if fetcher.last_error or fetcher.state == STOPPED:
                wait = FENCED_WAIT_S if fetcher.fenced else FETCH_BACKOFF_S
                self._resume_at[key] = time.monotonic() + wait

    def _start(self, key, fetcher: ReplicaFetcher) -> bool:
        with self.lock:
            if self.fetchers.get(key) is not fetcher:
                return False  # unfollowed meanwhile
            try:
                fetcher.start()
                return True
            except Exception as exc:  # noqa: BLE001 - this partition only: try again later
                log.warning("%s-%d: could not truncate (%s)", key[0], key[1], exc)
                fetcher.started, fetcher.state = True, STOPPED
                self._resume_at[key] = time.monotonic() + FETCH_BACKOFF_S
                return False

    def _restart(self, key, fetcher: ReplicaFetcher) -> None:
        with self.lock:
            if self.fetchers.get(key) is not fetcher:
                return
            self.fetchers[key] = ReplicaFetcher(fetcher.assignment, fetcher.plog, self.broker_id)

    def _ask(self, api: str, header: dict, timeout_s: float) -> tuple[dict, list] | None:
        """Send one request and wait for its answer; None when the leader is silent
        (the socket is then replaced)."""
        if self._sock is None:
            self._sock = self.open_dealer(self.endpoint)
        self._next_id += 1
        rid = self._next_id.to_bytes(8, "big")
        self._sock.send_multipart(build_request(rid, api, header))
        deadline = time.monotonic() + timeout_s
        while not self._stopping:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            if not self._sock.poll(min(left, 0.2) * 1000):
                continue
            got, reply, payloads = parse_response(self._sock.recv_multipart())
            if got == rid:
                return reply, [bytes(p) for p in payloads]
        self._sock.close(linger=0)
        self._sock = None
        return None


class FetcherPool:
    """The loop thread's handle on the fetcher threads (one per leader broker)."""

    def __init__(self, broker_id: int, open_dealer: OpenDealer):
        self.broker_id = broker_id
        self.open_dealer = open_dealer
        self._threads: dict[tuple[int, str], LeaderFetcherThread] = {}
        self._where: dict[tuple[str, int], tuple[int, str]] = {}  # partition -> thread key
        self.assignments: dict[tuple[str, int], Assignment] = {}

    def follow(self, assignment: Assignment, plog) -> None:
        """Fetch this partition from ``assignment``'s leader (re-target if it moved)."""
        key = (assignment.topic, assignment.partition)
        if self.assignments.get(key) == assignment:
            return
        self.unfollow(key)
        where = (assignment.leader_id, assignment.leader_endpoint)
        thread = self._threads.get(where)
        if thread is None:
            thread = LeaderFetcherThread(self.open_dealer, *where, self.broker_id)
            self._threads[where] = thread
            thread.start()
        thread.follow(key, ReplicaFetcher(assignment, plog, self.broker_id))
        self._where[key] = where
        self.assignments[key] = assignment

    def unfollow(self, key: tuple[str, int]) -> None:
        """Stop fetching this partition; on return no fetcher thread touches its log."""
        where = self._where.pop(key, None)
        self.assignments.pop(key, None)
        if where is not None:
            self._threads[where].unfollow(key)

    def followed(self) -> list[tuple[str, int]]:
        return list(self.assignments)

    def close(self) -> None:
        threads, self._threads = list(self._threads.values()), {}
        for thread in threads:
            thread.stop()
        for thread in threads:
            thread.join(timeout=REQUEST_TIMEOUT_S)
        self._where.clear()
        self.assignments.clear()
