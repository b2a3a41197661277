"""The broker process: one ROUTER socket, one loop thread, two helper threads.

Theory of operation
-------------------
The **loop thread** (the main thread) owns the ROUTER socket and every piece of
broker state. Each turn it polls the ROUTER and a wake-up socket, drains up to
``DRAIN`` requests without blocking, then:

1. re-checks parked fetches whose partitions got data (or all of them after an
   admin change) and answers those that now have ``min_bytes``;
2. answers parked fetches whose ``max_wait_ms`` ran out;
3. hands the ``acks=-1`` produces collected so far to the flusher, if it is idle;
4. calls the group service's ``tick()`` every ~100 ms;
5. handles the queued produce/fetch requests of connections whose client-quota
   throttle time is over (``broker/throttle.py``).

Requests are answered in whatever order they complete; the client matches
replies by request id, so a client may keep many requests in flight.

The **flusher thread** fsyncs the logs of one batch of ``acks=-1`` produces,
then wakes the loop over an inproc socket; the loop sends those replies. While
it works, newer ``acks=-1`` produces queue up and are covered by the next single
fsync (group commit). The **cleaner thread** applies retention and compaction
every ``log.retention.check.interval.ms`` (sooner for topics with a short
``retention.ms``), holding the registry's lock per partition. Neither helper
touches the socket.

Input is untrusted: frames larger than ``max_frame_bytes`` make ZeroMQ drop the
connection; anything else malformed gets an INVALID_REQUEST reply when its
request id can be read, or is dropped and counted in ``stats["dropped"]``.
Nothing a client sends can stop the loop.
"""

from __future__ import annotations

import dataclasses
import heapq
import itertools
import logging
import queue
import threading
from collections import deque

import zmq

from labkit._clock import REAL_CLOCK, Clock
from labkit.broker.config import BrokerConfig
from labkit.broker.group_api import GROUP_APIS, GroupService
from labkit.broker.handlers import Handlers, Reply, error_of
from labkit.broker.quotas import (
    CONSUMER_BYTE_RATE,
    PRODUCER_BYTE_RATE,
    QUOTA_APIS,
    ClientQuotas,
    client_id_of,
)
from labkit.broker.throttle import ThrottleGate
from labkit.broker.topics import TopicRegistry
from labkit.errors import InvalidRequestError, KafkaConfigurationError, ProtocolError
from labkit.protocol.frames import MAGIC, MAX_REQUEST_ID, encode_header, parse_request

log = logging.getLogger(__name__)

# plain ints: pyzmq's enum flags cost microseconds per frame on the hot path
_NOBLOCK = int(zmq.NOBLOCK)
_SNDMORE = int(zmq.SNDMORE)
_RCVMORE = int(zmq.RCVMORE)
_EVENTS = int(zmq.EVENTS)
_POLLIN = int(zmq.POLLIN)
_HEAD_FRAMES = 5        # identity, magic, request id, api, header: received as bytes

DRAIN = 256             # requests handled per loop turn before housekeeping
TICK_S = 0.1            # group service tick period
MAX_PARKED = 10_000     # parked fetches beyond this are answered at once
MAX_FRAMES = 10_000     # frames kept per message; the rest are read and discarded
SEND_HWM = 100_000      # replies queued per client before ZeroMQ drops them
MAX_QUEUE_WAIT_S = 10.0  # longest a throttled connection's request waits unhandled


class PortInUseError(KafkaConfigurationError):
    """The broker's TCP port is taken."""


class _Parked:
    __slots__ = ("identity", "rid", "header", "deadline", "keys", "done")

    def __init__(self, identity, rid, header, deadline, keys):
        self.identity = identity
        self.rid = rid
        self.header = header
        self.deadline = deadline
        self.keys = keys
        self.done = False


class _Flusher(threading.Thread):
    """fsyncs batches of logs for acks=-1 and wakes the loop when a batch is done."""

    def __init__(self, ctx: zmq.Context, wake_addr: str):
        super().__init__(name="labkit-flusher", daemon=True)
        self._ctx = ctx
        self._wake_addr = wake_addr
        self.jobs: queue.Queue = queue.Queue()
        self.done: deque = deque()

    def run(self) -> None:
        wake = self._ctx.socket(zmq.PUSH)
        wake.connect(self._wake_addr)
        try:
            while True:
                job = self.jobs.get()
                if job is None:
                    return
                self.done.append((job, flush_logs(job[1])))
                wake.send(b"f")
        finally:
            wake.close(linger=0)


def flush_logs(logs: dict) -> dict:
    """fsync each log once; return {id(log): exception} for the ones that failed."""
    failed = {}
    for key, plog in logs.items():
        try:
            plog.flush()
        except Exception as exc:  # noqa: BLE001 - reported to the producer, not raised
            failed[key] = exc
    return failed


class _Cleaner(threading.Thread):
    """Applies retention and compaction in the background."""

    RECHECK_S = 0.5  # how soon a new short-retention topic changes the pace

    def __init__(self, registry: TopicRegistry, config: BrokerConfig, clock: Clock):
        super().__init__(name="labkit-cleaner", daemon=True)
        self._registry = registry
        self._config = config
        self._clock = clock
        self.stop_event = threading.Event()

    def run(self) -> None:
        last = self._clock.monotonic()
        while not self.stop_event.wait(self.RECHECK_S):
            interval = self._config.retention_check_interval_s(
                self._registry.shortest_retention_ms(), self._registry.any_compacted())
            now = self._clock.monotonic()
            if now - last >= interval - 0.01:
                last = now
                self.clean_once()

    def clean_once(self) -> None:
        """One pass over every partition. A log closed meanwhile (topic deleted) does
        nothing; PartitionLog makes retention and compaction safe against the loop."""
        for topic, partition, plog in self._registry.partitions_snapshot():
            if self.stop_event.is_set():
                return
            try:
                if topic.config.deletes:
                    plog.apply_retention()
                if topic.config.compacts:
                    plog.compact()
            except Exception:  # noqa: BLE001 - a bad partition must not stop cleaning
                log.exception("cleaning %s-%d failed", topic.name, partition)


class BrokerServer:
    """The broker: ``start()`` binds and opens, ``serve_forever()`` runs the loop."""

    def __init__(self, config: BrokerConfig, clock: Clock = REAL_CLOCK):
        self.config = config
        self.clock = clock
        self.stats = {"requests": 0, "dropped": 0, "errors": 0,
                      "fsync_rounds": 0, "synced_produces": 0}
        self._stop = False
        self._ctx: zmq.Context | None = None
        self._sock = None
        self._wake = None
        self.registry: TopicRegistry | None = None
        self.handlers: Handlers | None = None
        self.groups: GroupService | None = None
        self._flusher: _Flusher | None = None
        self._cleaner: _Cleaner | None = None
        self._parked_by_key: dict[tuple, list] = {}
        self._deadlines: list = []
        self._seq = itertools.count()
        self._dirty: set = set()
        self._recheck_all = False
        self._sync_waiting: list = []
        self._flush_busy = False
        self.quotas: ClientQuotas | None = None
        self._gate = ThrottleGate()

    # -- life cycle ------------------------------------------------------------

    def start(self) -> None:
        """Bind the socket, open the data directory, start the helper threads.

        Raises PortInUseError, DataDirLockedError, KafkaConfigurationError.
        """
        ctx = self._ctx = zmq.Context()
        sock = self._sock = ctx.socket(zmq.ROUTER)
        sock.setsockopt(zmq.LINGER, 500)
        sock.setsockopt(zmq.MAXMSGSIZE, self.config.max_frame_bytes)
        sock.setsockopt(zmq.SNDHWM, SEND_HWM)
        sock.setsockopt(zmq.RCVHWM, SEND_HWM)
        try:
            sock.bind(f"tcp://{self.config.bind_host}:{self.config.port}")
        except zmq.ZMQError as exc:
            self._close_sockets()
            if exc.errno == zmq.EADDRINUSE:
                raise PortInUseError(
                    f"port {self.config.port} on {self.config.host} is already in use. Is another "
                    "broker running? Stop it, or start this one on another port with "
                    f"--port {self.config.port + 1}") from None
            raise KafkaConfigurationError(f"cannot listen on {self.config.host}:"
                                          f"{self.config.port}: "
                                          f"{exc.strerror} (check --host)") from None
        endpoint = sock.getsockopt(zmq.LAST_ENDPOINT).decode()
        port = int(endpoint.rsplit(":", 1)[1])
        self.config = dataclasses.replace(self.config, port=port)
        wake_addr = f"inproc://labkit-wake-{id(self)}"
        self._wake = ctx.socket(zmq.PULL)
        self._wake.bind(wake_addr)
        try:
            self.registry = TopicRegistry(self.config.data_dir, self.config.log_defaults,
                                          self.clock, self.config.num_partitions).open()
        except Exception:
            self._close_sockets()
            raise
        self.quotas = ClientQuotas(self.config.data_dir, self.config.quota_window_num,
                                   self.config.quota_window_size_seconds)
        self.handlers = Handlers(self.registry, self.config, self.clock, GROUP_APIS | QUOTA_APIS)
        self.groups = GroupService(self.config.data_dir, self.clock, self._partitions_of,
                                   self._log_end_offset)
        self._flusher = _Flusher(ctx, wake_addr)
        self._flusher.start()
        self._cleaner = _Cleaner(self.registry, self.config, self.clock)
        self._cleaner.start()

    def request_stop(self) -> None:
        """Ask the loop to finish its turn and shut down (safe from a signal handler)."""
        self._stop = True

    def serve_forever(self) -> None:
        """Run the loop until ``request_stop()``; then shut down cleanly."""
        poller = zmq.Poller()
        poller.register(self._sock, zmq.POLLIN)
        poller.register(self._wake, zmq.POLLIN)
        next_tick = self.clock.monotonic() + TICK_S
        try:
            while not self._stop:
                now = self.clock.monotonic()
                wait = next_tick - now
                if self._deadlines:
                    wait = min(wait, self._deadlines[0][0] - now)
                if self._gate.next_due() is not None:
                    wait = min(wait, self._gate.next_due() - now)
                events = dict(poller.poll(max(0, int(wait * 1000) + 1)))
                if self._sock in events:
                    self._drain()
                if self._wake in events:
                    self._finish_flushes()
                self._housekeeping()
                self._release_throttled(everything=False)
                now = self.clock.monotonic()
                if now >= next_tick:
                    next_tick = now + TICK_S
                    self._tick_groups()
        finally:
            self.close()

    def close(self) -> None:
        """Answer what is waiting, stop the helpers, flush and close the logs."""
        if self._ctx is None:
            return
        try:
            self._stop = True
            self._release_throttled(everything=True)
            for entries in list(self._parked_by_key.values()):
                for parked in list(entries):
                    self._answer_parked(parked, final=True)
            if self._flusher is not None:
                self._flusher.jobs.put(None)
                self._flusher.join(timeout=10)
            self._finish_flushes()
            if self._sync_waiting:
                batch, self._sync_waiting = self._sync_waiting, []
                self._send_synced(batch, flush_logs(_logs_of(batch)))
            if self._cleaner is not None:
                self._cleaner.stop_event.set()
                self._cleaner.join(timeout=30)
            if self.groups is not None:
                self.groups.close()
        finally:
            if self.registry is not None:
                self.registry.close()
            self._close_sockets()

    def _close_sockets(self) -> None:
        for sock in (self._sock, self._wake):
            if sock is not None:
                sock.close()
        self._sock = self._wake = None
        if self._ctx is not None:
            self._ctx.term()
            self._ctx = None

    # -- requests --------------------------------------------------------------

    def _drain(self) -> None:
        sock = self._sock
        for _ in range(DRAIN):
            if not sock.getsockopt(_EVENTS) & _POLLIN:
                return
            self.stats["requests"] += 1
            frames = self._recv_message()
            try:
                self._on_message(frames)
            except Exception as exc:  # noqa: BLE001 - nothing a client sends may stop the loop
                self._internal_error(frames, exc)

    def _internal_error(self, frames: list, exc: Exception) -> None:
        self.stats["errors"] += 1
        log.error("a request could not be handled; the broker carries on", exc_info=exc)
        if len(frames) >= 3 and frames[1] == MAGIC and len(frames[2]) <= MAX_REQUEST_ID:
            self._send(frames[0], frames[2], {
                "error": -1, "message": f"unexpected broker error {type(exc).__name__}: {exc} "
                                        "(see the broker log)"})

    def _recv_message(self) -> list:
        """One multipart message: the small leading frames as bytes, payloads (record
        batches) as zero-copy buffers."""
        sock = self._sock
        frames = [sock.recv(_NOBLOCK)]
        while sock.getsockopt(_RCVMORE):
            if len(frames) < _HEAD_FRAMES:
                frames.append(sock.recv(_NOBLOCK))
            elif len(frames) <= MAX_FRAMES:
                frames.append(sock.recv(_NOBLOCK, copy=False).buffer)
            else:
                sock.recv(_NOBLOCK, copy=False)  # the rest of an abusive message
        return frames

    def _on_message(self, frames: list, admitted: bool = False) -> None:
        if len(frames) < 2:
            self._drop("an empty message")
            return
        identity = frames[0]
        body = frames[1:]
        try:
            if len(frames) > MAX_FRAMES:
                raise ProtocolError(f"more than {MAX_FRAMES} frames in one message")
            rid, api, header, payloads = parse_request(body)
        except ProtocolError as exc:
            rid = getattr(exc, "request_id", None)
            if rid is None and len(body) >= 2 and body[0] == MAGIC \
                    and len(body[1]) <= MAX_REQUEST_ID:
                rid = body[1]
            if rid is None:
                self._drop(str(exc))
            else:
                self.stats["errors"] += 1
                self._send(identity, rid, {"error": InvalidRequestError.errno,
                                           "message": f"malformed request: {exc}"})
            return
        if api in GROUP_APIS:
            self._send(identity, rid, self._group_request(api, header))
            return
        if api in QUOTA_APIS:
            self._send(identity, rid, self._quota_request(api, header))
            return
        if api in ("produce", "fetch") and not admitted and not self._gate.admit(
                identity, frames, _max_queue_wait_s(header), self.clock.monotonic()):
            return  # a throttled connection: handled when its throttle time is over
        if api == "fetch" and self.quotas.active:
            header = self.quotas.bound_fetch(header)
        reply = self.handlers.handle(api, header, payloads)
        if api == "produce":
            self._charge(identity, PRODUCER_BYTE_RATE, header, reply.header, payloads)
        if reply.appended:
            self._dirty.update(reply.appended)
        if reply.topics_changed:
            self._recheck_all = True
        if reply.silent:
            return
        if reply.sync:
            self._sync_waiting.append((identity, rid, reply))
        elif reply.keys is not None and len(self._deadlines) < MAX_PARKED:
            self._park(identity, rid, header, reply)
        else:
            if api == "fetch":
                self._charge(identity, CONSUMER_BYTE_RATE, header, reply.header, reply.payloads)
            self._send(identity, rid, reply.header, reply.payloads)

    def _group_request(self, api: str, header: dict) -> dict:
        try:
            return self.groups.handle(api, header)
        except Exception as exc:  # noqa: BLE001 - the contract says never, but be safe
            code, text = error_of(exc)
            return {"error": code, "message": text}

    # -- client quotas (broker/quotas.py, broker/throttle.py) ----------------------

    def _quota_request(self, api: str, header: dict) -> dict:
        try:
            return self.quotas.handle(api, header, self.clock.monotonic())
        except Exception as exc:  # noqa: BLE001 - a bad request must not stop the loop
            code, text = error_of(exc)
            return {"error": code, "message": text}

    def _charge(self, identity: bytes, key: str, request: dict, reply_header: dict,
                payloads) -> None:
        """Count a produce's or fetch's record bytes against the client's quota; a
        client over it gets ``throttle_time_ms`` and its connection is muted."""
        if not self.quotas.active:
            return
        now = self.clock.monotonic()
        delay = self.quotas.record(key, client_id_of(request), sum(map(len, payloads)), now)
        reply_header["throttle_time_ms"] = delay
        if not self._stop:
            self._gate.mute(identity, delay, now)

    def _release_throttled(self, everything: bool) -> None:
        """Handle the queued requests of connections whose throttle time is over."""
        now = self.clock.monotonic()
        for identity in self._gate.due(now, everything):
            while (frames := self._gate.pop_ready(identity, now, everything)) is not None:
                try:
                    self._on_message(frames, admitted=True)
                except Exception as exc:  # noqa: BLE001 - as in _drain
                    self._internal_error(frames, exc)

    def _drop(self, why: str) -> None:
        self.stats["dropped"] += 1
        count = self.stats["dropped"]
        if count <= 10 or count % 1000 == 0:
            log.warning("dropped a malformed message (%s); %d dropped so far", why, count)

    def _send(self, identity: bytes, rid: bytes, header: dict, payloads=()) -> None:
        try:
            head = encode_header(header)
        except (TypeError, ValueError) as exc:  # never send half a message
            log.error("reply header is not JSON (%s): %r", exc, header)
            head = encode_header({"error": -1, "message": "the broker built a bad reply; "
                                  "see the broker log"})
            payloads = ()
        send = self._sock.send
        try:
            send(identity, _SNDMORE)
            send(MAGIC, _SNDMORE)
            send(rid, _SNDMORE)
            if not payloads:
                send(head, 0)
                return
            send(head, _SNDMORE)
            last = len(payloads) - 1
            for index, payload in enumerate(payloads):
                # copy=False: pyzmq copies small frames anyway and sends big ones in place
                send(payload, _SNDMORE if index < last else 0, copy=False)
        except zmq.ZMQError as exc:
            log.warning("could not send a reply: %s", exc)

    # -- parked fetches ----------------------------------------------------------

    def _park(self, identity: bytes, rid: bytes, header: dict, reply: Reply) -> None:
        deadline = self.clock.monotonic() + reply.park_ms / 1000.0
        parked = _Parked(identity, rid, header, deadline, reply.keys)
        for key in set(parked.keys):
            self._parked_by_key.setdefault(key, []).append(parked)
        heapq.heappush(self._deadlines, (deadline, next(self._seq), parked))

    def _answer_parked(self, parked: _Parked, final: bool) -> bool:
        if parked.done:
            return True
        reply = self.handlers.fetch(parked.header, final)  # never raises
        if reply.keys is not None and not final:
            return False
        parked.done = True
        for key in set(parked.keys):
            entries = self._parked_by_key.get(key)
            if entries is not None:
                entries.remove(parked)
                if not entries:
                    del self._parked_by_key[key]
        self._charge(parked.identity, CONSUMER_BYTE_RATE, parked.header, reply.header,
                     reply.payloads)
        self._send(parked.identity, parked.rid, reply.header, reply.payloads)
        return True

    def _housekeeping(self) -> None:
        if self._recheck_all:
            self._recheck_all = False
            self._dirty.clear()
            for entries in list(self._parked_by_key.values()):
                for parked in list(entries):
                    self._answer_parked(parked, final=False)
        elif self._dirty:
            dirty, self._dirty = self._dirty, set()
            for key in dirty:
                for parked in list(self._parked_by_key.get(key, ())):
                    self._answer_parked(parked, final=False)
        now = self.clock.monotonic()
        heap = self._deadlines
        while heap and (heap[0][0] <= now or heap[0][2].done):
            _deadline, _seq, parked = heapq.heappop(heap)
            self._answer_parked(parked, final=True)
        if self._sync_waiting and not self._flush_busy:
            batch, self._sync_waiting = self._sync_waiting, []
            self._flush_busy = True
            self._flusher.jobs.put((batch, _logs_of(batch)))

    # -- group commit ------------------------------------------------------------

    def _finish_flushes(self) -> None:
        wake = self._wake
        if wake is None:
            return
        while True:
            try:
                wake.recv(zmq.NOBLOCK)
            except zmq.Again:
                break
        flusher = self._flusher
        while flusher is not None and flusher.done:
            (batch, _logs), failed = flusher.done.popleft()
            self._flush_busy = False
            self.stats["fsync_rounds"] += 1
            self.stats["synced_produces"] += len(batch)
            self._send_synced(batch, failed)

    def _send_synced(self, batch: list, failed: dict) -> None:
        for identity, rid, reply in batch:
            results = reply.header["results"]
            for index, plog in reply.sync:
                exc = failed.get(id(plog))
                if exc is not None:
                    code, text = error_of(exc)
                    results[index] = [-1, code, -1, text]
            self._send(identity, rid, reply.header, reply.payloads)

    # -- groups ------------------------------------------------------------------

    def _tick_groups(self) -> None:
        try:
            self.groups.tick()
        except Exception:  # noqa: BLE001
            log.exception("group service tick failed")

    def _partitions_of(self, topic: str) -> int | None:
        found = self.registry.get(topic)
        return None if found is None else len(found.partitions)

    def _log_end_offset(self, topic: str, partition: int) -> int | None:
        found = self.registry.get(topic)
        if found is None or not 0 <= partition < len(found.partitions):
            return None
        return found.partitions[partition].log_end_offset


def _max_queue_wait_s(header: dict) -> float:
    """How long a muted connection's request may wait: well within the client's own
    request timeout (a produce says it), so it is never timed out and sent twice."""
    timeout_ms = header.get("timeout_ms")
    if type(timeout_ms) is int and timeout_ms > 0:
        return min(MAX_QUEUE_WAIT_S, timeout_ms / 2000.0)
    return MAX_QUEUE_WAIT_S


def _logs_of(batch: list) -> dict:
    logs = {}
    for _identity, _rid, reply in batch:
        for _index, plog in reply.sync:
            logs[id(plog)] = plog
    return logs
