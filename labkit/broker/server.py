"""The broker process: one ROUTER socket, one loop thread, two helper threads.

Theory of operation
-------------------
The **loop thread** (the main thread) owns the ROUTER socket and every piece of
broker state. Each turn it polls the ROUTER and a wake-up socket, drains up to
``DRAIN`` requests without blocking, then:

1. re-checks parked fetches whose partitions got data (or all of them after an
   admin change) and answers those that now have ``min_bytes``;
2. answers parked fetches whose ``max_wait_ms`` ran out;
3. hands what waits for durability to the flusher, if it is idle;
4. calls the group service's ``tick()`` every ~100 ms and checks every connection's
   byte budget every ~50 ms;
5. handles the queued produce/fetch requests of connections whose client-quota
   throttle time is over (``broker/throttle.py``).

Parked fetches live in a ``ParkingLot`` (broker/parking.py: fair shares per client);
connections and their byte budgets in a ``ConnectionTable`` (broker/connections.py),
fed by a socket monitor that reports connects and disconnects: a client that goes
away takes its parked fetches with it. Every reply leaves through ``_send``.

Requests are answered in whatever order they complete; the client matches
replies by request id, so a client may keep many requests in flight.

The **flusher thread** (labkit/broker/flusher.py) makes durable what the
replies waiting for it promise — ``acks=-1`` produces, topic changes, offset
commits — in rounds, then wakes the loop over an inproc socket; the loop sends
those replies. While it works, newer ones queue up and are covered by the next
round (group commit); the loop thread itself never fsyncs. The **cleaner
thread** applies retention and compaction every
``log.retention.check.interval.ms`` (sooner for topics with a short
``retention.ms``), holding the registry's lock per partition. Neither helper
touches the socket.

Input is untrusted: frames larger than ``max_frame_bytes`` make ZeroMQ drop the
connection; a connection holding more than ``connection.max.buffered.bytes`` (an
unfinished request, unread replies) is closed; anything else malformed gets an
INVALID_REQUEST reply when its request id can be read, or is dropped and counted in
``stats["dropped"]``.
Nothing a client sends can stop the loop.
"""

from __future__ import annotations

import dataclasses
import logging
import threading

import zmq
from zmq.utils.monitor import parse_monitor_message

from labkit._clock import REAL_CLOCK, Clock
from labkit.broker.config import BrokerConfig
from labkit.broker.connections import ConnectionTable, frame_overhead
from labkit.broker.descriptors import FD_LOW_WATER, open_descriptors, open_file_limit
from labkit.broker.flusher import GroupCommit
from labkit.broker.group_api import GROUP_APIS, GroupService
from labkit.broker.handlers import Handlers, Reply, error_of
from labkit.broker.parking import ParkingLot
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
_SRCFD = int(zmq.SRCFD)
_HEAD_FRAMES = 5  # identity, magic, request id, api, header: received as bytes
# not EVENT_ACCEPT_FAILED: out of descriptors, libzmq retries accept() in a tight loop
# and would flood the monitor; the loop checks the descriptor count instead
_MONITOR_EVENTS = zmq.EVENT_ACCEPTED | zmq.EVENT_DISCONNECTED

DRAIN = 256  # requests handled per loop turn before housekeeping
TICK_S = 0.1  # group service tick period
BUDGET_CHECK_S = 0.05  # how often every connection's inbound bytes are measured
FD_CHECK_S = 5.0  # how often the loop looks whether descriptors ran out
MAX_FRAMES = 10_000  # frames kept per message; the rest are read and discarded
SEND_HWM = 100_000  # replies queued per client before ZeroMQ drops them
MAX_QUEUE_WAIT_S = 10.0  # longest a throttled connection's request waits unhandled
RECV_HWM = 100  # whole requests queued per client before ZeroMQ stops reading
# its socket (TCP then slows the client down)


class PortInUseError(KafkaConfigurationError):
    """The broker's TCP port is taken."""


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
                self._registry.shortest_retention_ms(), self._registry.any_compacted()
            )
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
            except Exception:  # a bad partition must not stop cleaning
                log.exception("cleaning %s-%d failed", topic.name, partition)


class BrokerServer:
    """The broker: ``start()`` binds and opens, ``serve_forever()`` runs the loop."""

    def __init__(self, config: BrokerConfig, clock: Clock = REAL_CLOCK):
        self.config = config
        self.clock = clock
        self.stats = {
            "requests": 0,
            "dropped": 0,
            "errors": 0,
            "fsync_rounds": 0,
            "synced_produces": 0,
        }
        self._stop = False
        self.quotas: ClientQuotas | None = None
        self._gate = ThrottleGate()
        self._ctx: zmq.Context | None = None
        self._sock: zmq.Socket | None = None
        self._wake: zmq.Socket | None = None
        self._monitor: zmq.Socket | None = None
        self.registry: TopicRegistry | None = None
        self.handlers: Handlers | None = None
        self.groups: GroupService | None = None
        self._durable: GroupCommit | None = None
        self._cleaner: _Cleaner | None = None
        self.parking: ParkingLot | None = None
        self.connections = ConnectionTable(config.connection_max_buffered_bytes)
        self._next_budget_check = 0.0
        self._next_fd_check = 0.0
        self._dirty: set = set()
        self._recheck_all = False

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
        sock.setsockopt(zmq.RCVHWM, RECV_HWM)
        try:
            sock.bind(f"tcp://{self.config.bind_host}:{self.config.port}")
        except zmq.ZMQError as exc:
            self._close_sockets()
            if exc.errno == zmq.EADDRINUSE:
                raise PortInUseError(
                    f"port {self.config.port} on {self.config.host} is already in use. Is another "
                    "broker running? Stop it, or start this one on another port with "
                    f"--port {self.config.port + 1}"
                ) from None
            raise KafkaConfigurationError(
                f"cannot listen on {self.config.host}:"
                f"{self.config.port}: "
                f"{exc.strerror} (check --host)"
            ) from None
        endpoint = sock.getsockopt(zmq.LAST_ENDPOINT).decode()
        port = int(endpoint.rsplit(":", 1)[1])
        self.config = dataclasses.replace(self.config, port=port)
        self._monitor = self._open_monitor(ctx, sock)
        wake_addr = f"inproc://labkit-wake-{id(self)}"
        self._wake = ctx.socket(zmq.PULL)
        self._wake.bind(wake_addr)
        try:
            self.registry = TopicRegistry(
                self.config.data_dir,
                self.config.log_defaults,
                self.clock,
                self.config.num_partitions,
            ).open()
        except Exception:
            self._close_sockets()
            raise
        self.quotas = ClientQuotas(
            self.config.data_dir,
            self.config.quota_window_num,
            self.config.quota_window_size_seconds,
        )
        self.handlers = Handlers(self.registry, self.config, self.clock, GROUP_APIS | QUOTA_APIS)
        self.parking = ParkingLot(self._parked_fetch)
        self.groups = GroupService(
            self.config.data_dir,
            self.clock,
            self._partitions_of,
            self._log_end_offset,
            offsets_retention_ms=self.config.offsets_retention_minutes * 60_000,
            retention_check_interval_ms=self.config.offsets_retention_check_interval_ms,
            max_group_size=self.config.group_max_size,
        )
        self._durable = GroupCommit(
            self.registry,
            self.groups.offsets,
            self._dispatch,
            self.handlers.try_auto_create,
            self._send,
            self.stats,
        )
        self._durable.start(lambda: _open_waker(ctx, wake_addr))
        self._cleaner = _Cleaner(self.registry, self.config, self.clock)
        self._cleaner.start()

    @staticmethod
    def _open_monitor(ctx: zmq.Context, sock) -> zmq.Socket:
        """A PAIR that receives the ROUTER's connect/disconnect events. Its queue is
        unbounded (RCVHWM 0): libzmq's I/O thread blocks on a full monitor queue, and
        the loop reads it every turn."""
        addr = f"inproc://labkit-monitor-{id(sock)}"
        sock.monitor(addr, _MONITOR_EVENTS)
        monitor = ctx.socket(zmq.PAIR)
        monitor.setsockopt(zmq.RCVHWM, 0)
        monitor.connect(addr)
        return monitor

    def request_stop(self) -> None:
        """Ask the loop to finish its turn and shut down (safe from a signal handler)."""
        self._stop = True

    def serve_forever(self) -> None:
        """Run the loop until ``request_stop()``; then shut down cleanly."""
        poller = zmq.Poller()
        poller.register(self._sock, zmq.POLLIN)
        poller.register(self._wake, zmq.POLLIN)
        poller.register(self._monitor, zmq.POLLIN)
        next_tick = self.clock.monotonic() + TICK_S
        try:
            while not self._stop:
                now = self.clock.monotonic()
                wait = min(next_tick, self._next_budget_check) - now
                deadline = self.parking.next_deadline()
                if deadline is not None:
                    wait = min(wait, deadline - now)
                due = self._gate.next_due()
                if due is not None:
                    wait = min(wait, due - now)
                events = dict(poller.poll(max(0, int(wait * 1000) + 1)))
                if self._monitor in events:
                    self._connection_events()
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
            if self.parking is not None:
                self._send_answers(self.parking.answer_all())
            if self._durable is not None:
                self._durable.stop()
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
        if self._monitor is not None:
            self._sock.disable_monitor()
        for sock in (self._monitor, self._sock, self._wake):
            if sock is not None:
                sock.close()
        self._sock = self._wake = self._monitor = None
        if self._ctx is not None:
            self._ctx.term()
            self._ctx = None

    # -- requests --------------------------------------------------------------

    def _drain(self) -> None:
        sock = self._sock
        for _ in range(DRAIN):
            if not sock.getsockopt(_EVENTS) & _POLLIN:  # type: ignore[operator]  # an int
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
            self._send(
                frames[0],
                frames[2],
                {
                    "error": -1,
                    "message": f"unexpected broker error {type(exc).__name__}: {exc} "
                    "(see the broker log)",
                },
            )

    def _recv_message(self) -> list:
        """One multipart message: the small leading frames as bytes, payloads (record
        batches) as zero-copy buffers. Counts its wire bytes against its connection."""
        sock = self._sock
        identity = sock.recv(_NOBLOCK)
        frames = [identity]
        wire = 0
        if not self.connections.knows(identity) and sock.getsockopt(_RCVMORE):
            first = sock.recv(_NOBLOCK, copy=False)  # a new client: learn its descriptor
            try:
                self.connections.bind(identity, first.get(_SRCFD))
            except zmq.ZMQError:
                pass  # no descriptor (a ZMTP 1.0 peer): no budget; the TCP limits still hold
            frames.append(first.bytes)
        while sock.getsockopt(_RCVMORE):
            if len(frames) < _HEAD_FRAMES:
                frames.append(sock.recv(_NOBLOCK))
            elif len(frames) <= MAX_FRAMES:
                frames.append(sock.recv(_NOBLOCK, copy=False).buffer)
            else:  # the rest of an abusive message
                size = len(sock.recv(_NOBLOCK, copy=False))
                wire += size + frame_overhead(size)
        for index in range(1, len(frames)):
            size = len(frames[index])
            wire += size + (2 if size < 256 else 9)  # ZMTP frame header, inlined (hot path)
        self.connections.on_read(identity, wire)
        return frames

    def _on_message(self, frames: list, admitted: bool = False) -> None:
        if len(frames) < 2:
            self._drop("an empty message")
            return
        identity = frames[0]
        body = frames[1:]
        rid: bytes | None
        try:
            if len(frames) > MAX_FRAMES:
                raise ProtocolError(f"more than {MAX_FRAMES} frames in one message")
            rid, api, header, payloads = parse_request(body)
        except ProtocolError as exc:
            rid = exc.request_id
            if (
                rid is None
                and len(body) >= 2
                and body[0] == MAGIC
                and len(body[1]) <= MAX_REQUEST_ID
            ):
                rid = body[1]
            if rid is None:
                self._drop(str(exc))
            else:
                self.stats["errors"] += 1
                self._send(
                    identity,
                    rid,
                    {"error": InvalidRequestError.errno, "message": f"malformed request: {exc}"},
                )
            return
        if api in QUOTA_APIS:
            self._send(identity, rid, self._quota_request(api, header))
            return
        if (
            api in ("produce", "fetch")
            and not admitted
            and not self._gate.admit(
                identity, frames, _max_queue_wait_s(header), self.clock.monotonic()
            )
        ):
            return  # a throttled connection: handled when its throttle time is over
        self._dispatch(identity, rid, api, header, payloads)

    def _dispatch(
        self, identity: bytes, rid: bytes, api: str, header: dict, payloads: list, holds: int = 0
    ) -> None:
        """Handle one parsed request (again, for one held while its topics were created)."""
        durable = self._durable
        if durable.hold(identity, rid, api, header, payloads, holds, before=True):
            return  # a produce to a topic being created: handled once it exists
        mark = durable.mark()
        if api in GROUP_APIS:
            answer = self._group_request(api, header)
            if not durable.group_reply(identity, rid, api, answer, mark):
                self._send(identity, rid, answer)
            return
        if api == "fetch" and self.quotas.active:
            header = self.quotas.bound_fetch(header)
        reply = self.handlers.handle(api, header, payloads)
        if api == "produce":
            self._charge(identity, PRODUCER_BYTE_RATE, header, reply.header, payloads)
        if reply.appended:
            self._dirty.update(reply.appended)
        if reply.topics_changed:
            self._recheck_all = True
        if reply.changed_topics:
            self.groups.topics_changed(reply.changed_topics)
        if reply.silent:
            return
        if durable.hold(identity, rid, api, header, payloads, holds, before=False):
            pass  # a metadata request: answered again once the topics it names exist
        elif reply.sync or durable.changed_since(mark):
            durable.wait(identity, rid, api, reply)
        elif reply.keys is not None:
            deadline = self.clock.monotonic() + reply.park_ms / 1000.0
            self._send_answers(self.parking.park(identity, rid, header, deadline, reply.keys))
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
            head = encode_header(
                {"error": -1, "message": "the broker built a bad reply; see the broker log"}
            )
            payloads = ()
        wire = (
            len(MAGIC)
            + len(rid)
            + len(head)
            + 4
            + frame_overhead(len(head))
            + sum(len(p) + frame_overhead(len(p)) for p in payloads)
        )
        gone = self.connections.on_send(identity, wire)
        if gone is not None:  # that client stopped reading its replies: disconnected
            self._forget_clients(gone)
            return
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

    # -- parked fetches and connections -------------------------------------------

    def _parked_fetch(self, header: dict, final: bool) -> Reply:
        reply = self.handlers.fetch(header, final)
        reply.request = header  # the client id its quota is charged to
        return reply

    def _send_answers(self, answers: list) -> None:
        for identity, rid, reply in answers:
            if reply.request is not None:
                self._charge(
                    identity, CONSUMER_BYTE_RATE, reply.request, reply.header, reply.payloads
                )
            self._send(identity, rid, reply.header, reply.payloads)

    # -- client quotas (broker/quotas.py, broker/throttle.py) ----------------------

    def _quota_request(self, api: str, header: dict) -> dict:
        try:
            return self.quotas.handle(api, header, self.clock.monotonic())
        except Exception as exc:  # noqa: BLE001 - a bad request must not stop the loop
            code, text = error_of(exc)
            return {"error": code, "message": text}

    def _charge(
        self, identity: bytes, key: str, request: dict, reply_header: dict, payloads
    ) -> None:
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

    def _housekeeping(self) -> None:
        parking = self.parking
        if self._recheck_all:
            self._recheck_all = False
            self._dirty.clear()
            self._send_answers(parking.wake_all())
        elif self._dirty:
            dirty, self._dirty = self._dirty, set()
            self._send_answers(parking.wake(dirty))
        now = self.clock.monotonic()
        self._send_answers(parking.expire(now))
        if now >= self._next_budget_check:
            self._next_budget_check = now + BUDGET_CHECK_S
            self._forget_clients(self.connections.check())
            self._check_descriptors(now)
        self._durable.hand_over()

    def _connection_events(self) -> None:
        """Drain the socket monitor: connections opened and closed."""
        while True:
            try:
                event = parse_monitor_message(self._monitor.recv_multipart(_NOBLOCK))
            except zmq.Again:
                return
            kind, value = event["event"], event["value"]
            try:
                if kind == zmq.EVENT_ACCEPTED:
                    self.connections.accepted(value)
                elif kind == zmq.EVENT_DISCONNECTED:
                    self._forget_clients(self.connections.closed(value))
            except Exception:  # bookkeeping must not stop the loop
                log.exception("handling the connection event %r failed", event)

    def _forget_clients(self, identities: list) -> None:
        for identity in identities:
            self._send_answers(self.parking.release_client(identity))

    def _check_descriptors(self, now: float) -> None:
        """Say plainly when the process is (nearly) out of descriptors: libzmq then
        cannot accept connections, and new clients only see silence."""
        if now < self._next_fd_check:
            return
        self._next_fd_check = now + FD_CHECK_S
        limit, used = open_file_limit(), open_descriptors()
        if limit is not None and used is not None and used >= limit - FD_LOW_WATER:
            log.error(
                "the broker is out of file descriptors (%d of %d open): new clients "
                "cannot connect until some disconnect or topics are deleted. Raise "
                "the limit (ulimit -n, or ulimits: nofile: in docker-compose.yml) and "
                "restart the broker",
                used,
                limit,
            )

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
        installed = self._durable.finish() if self._durable is not None else []
        if installed:
            self._recheck_all = True  # parked fetches may name a topic that now exists
            # groups subscribed to them rebalance now that their partitions exist
            self.groups.topics_changed(installed)

    # -- groups ------------------------------------------------------------------

    def _tick_groups(self) -> None:
        try:
            self.groups.tick()
        except Exception:
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


def _open_waker(ctx: zmq.Context, addr: str):
    """(wake, close) over a PUSH socket to the loop's wake-up socket (for a helper thread)."""
    sock = ctx.socket(zmq.PUSH)
    sock.connect(addr)
    return (lambda: sock.send(b"f")), (lambda: sock.close(linger=0))
