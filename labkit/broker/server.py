"""The broker process: one ROUTER socket, one loop thread, three helper threads.

Theory of operation
-------------------
The **loop thread** (the main thread) owns the ROUTER socket and every piece of
broker state. Each turn it polls the ROUTER, a wake-up socket and the ROUTER's
socket monitor, then:

- reads up to ``DRAIN`` requests without blocking and hands each to the
  ``BrokerLoop`` (broker/loop.py), which decides everything without sockets:
  dispatch, parked fetches, throttled connections, byte budgets, replies;
- tells it of connections opened and closed (the monitor) and of flusher rounds
  done (the wake-up socket);
- lets it do its housekeeping (``BrokerLoop.turn``), then polls again for at most
  ``BrokerLoop.wait_s``.

This module is the only one that imports zmq: it reads messages (counting their
wire bytes against their connection, learning a new client's descriptor with
``ZMQ_SRCFD``) and writes the replies the loop gives it.

Requests are answered in whatever order they complete; the client matches
replies by request id, so a client may keep many requests in flight.

The **flusher thread** (labkit/broker/flusher.py) makes durable what the
replies waiting for it promise — ``acks=-1`` produces, topic changes, offset
commits, client-quota changes — in rounds, then wakes the loop over an inproc
socket; the loop sends those replies. While it works, newer ones queue up and are
covered by the next round (group commit); the loop thread itself never fsyncs. The
**cleaner thread** (labkit/broker/cleaner.py) applies retention and compaction.
Neither helper touches the socket. The **Kafka listener thread**
(labkit/kafka/listener.py) owns the broker's main port (Kafka's ``listeners``): Kafka
clients, and labkit clients asking there where ZeroMQ is (docs/wire.md); it reaches
the loop over inproc like any client. The ROUTER itself binds its own port
(``zmq.port``).

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
from typing import TYPE_CHECKING, cast

import zmq
from zmq.utils.monitor import parse_monitor_message

from labkit._clock import REAL_CLOCK, Clock
from labkit.broker.cleaner import Cleaner
from labkit.broker.config import BrokerConfig
from labkit.broker.connections import frame_overhead
from labkit.broker.loop import MAX_FRAMES, BrokerLoop, new_stats
from labkit.broker.parking import ParkingLot
from labkit.broker.quotas import ClientQuotas
from labkit.broker.topics import TopicRegistry
from labkit.errors import KafkaConfigurationError
from labkit.kafka.listener import KafkaListener, ListenSpec
from labkit.protocol.frames import MAGIC

if TYPE_CHECKING:
    from labkit.broker.cluster_sync import ClusterSync
    from labkit.broker.replication import Replication

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
SEND_HWM = 100_000  # replies queued per client before ZeroMQ drops them
RECV_HWM = 100  # whole requests queued per client before ZeroMQ stops reading
# its socket (TCP then slows the client down)


class PortInUseError(KafkaConfigurationError):
    """The broker's TCP port is taken."""


class BrokerServer:
    """The broker: ``start()`` binds and opens, ``serve_forever()`` runs the loop."""

    def __init__(self, config: BrokerConfig, clock: Clock = REAL_CLOCK):
        self.config = config
        self.clock = clock
        self.stats = new_stats()
        self._stop = False
        self._ctx: zmq.Context | None = None
        # the sockets exist between start() and close(); the loop's methods run only then
        self._sock: zmq.Socket | None = None
        self._wake: zmq.Socket | None = None
        self._monitor: zmq.Socket | None = None
        self.registry: TopicRegistry | None = None
        self.loop: BrokerLoop | None = None
        self._cleaner: Cleaner | None = None
        self.kafka: KafkaListener | None = None
        # cluster mode only (kazoo is imported then, never in single-broker mode)
        self.cluster: ClusterSync | None = None
        self.replication: Replication | None = None

    @property
    def parking(self) -> ParkingLot | None:
        """The parked fetches (for tests and tools)."""
        return None if self.loop is None else self.loop.parking

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
            if ":" in self.config.bind_host:
                sock.setsockopt(zmq.IPV6, 1)
            sock.bind(f"tcp://{_zmq_host(self.config.bind_host)}:{self.config.zmq_port}")
        except zmq.ZMQError as exc:
            self._close_sockets()
            if exc.errno == zmq.EADDRINUSE:
                raise PortInUseError(
                    f"the ZeroMQ port {self.config.zmq_port} on {self.config.host} is already in "
                    "use. Is another broker running? Stop it, or start this one with another "
                    f"--zmq-port (e.g. --zmq-port {self.config.zmq_port + 1})"
                ) from None
            raise KafkaConfigurationError(
                f"cannot listen on {self.config.host}:"
                f"{self.config.zmq_port}: "
                f"{exc.strerror} (check --host)"
            ) from None
        endpoint = sock.getsockopt_string(zmq.LAST_ENDPOINT)
        zmq_port = int(endpoint.rsplit(":", 1)[1])
        self.config = dataclasses.replace(self.config, zmq_port=zmq_port)
        self._monitor = self._open_monitor(ctx, sock)
        wake_addr = f"inproc://labkit-wake-{id(self)}"
        wake = self._wake = ctx.socket(zmq.PULL)
        wake.bind(wake_addr)
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
        quotas = ClientQuotas(
            self.config.data_dir,
            self.config.quota_window_num,
            self.config.quota_window_size_seconds,
        )
        self.loop = BrokerLoop(
            self.config, self.clock, self.registry, quotas, self._write_reply, self.stats
        )
        self.loop.durable.start(lambda: _open_waker(ctx, wake_addr))
        if self.config.zookeeper_connect is None:  # cluster mode: from ZooKeeper, below
            self.loop.handlers.idempotence.ids.start()  # the first block of producer ids
        self._cleaner = Cleaner(self.registry, self.config, self.clock)
        self._cleaner.start()
        self._start_kafka(ctx, sock)
        if self.config.zookeeper_connect is not None:
            self._join_cluster()

    def _join_cluster(self) -> None:
        """Cluster mode: register in ZooKeeper (kazoo is imported here, never in
        single-broker mode). Raises ZooKeeperUnavailable, KafkaConfigurationError."""
        from labkit.broker.cluster_sync import ClusterSync
        from labkit.cluster.member import ClusterSettings
        from labkit.cluster.znodes import PRODUCER_ID_BLOCK, BrokerInfo

        config = self.config
        assert self.registry is not None
        assert self.loop is not None
        assert config.zookeeper_connect
        settings = ClusterSettings(
            config.broker_id,
            config.zookeeper_connect,
            config.zookeeper_session_timeout_ms,
            config.zookeeper_connection_timeout_ms,
            config.unclean_leader_election_enable,
            config.default_replication_factor,
            config.min_insync_replicas,
        )
        cluster = ClusterSync(settings, self.registry)
        info = BrokerInfo(
            config.broker_id,
            config.advertised_host,
            config.advertised_port,
            config.advertised_host,
            config.zmq_port,
        )
        try:
            cluster.start(info)
        except Exception:
            self.close()
            raise
        self.cluster = cluster
        assert cluster.member is not None
        self.loop.handlers.idempotence.ids.start(  # cluster-wide blocks, as Kafka's
            cluster.member.claim_producer_ids, f"ZooKeeper's {PRODUCER_ID_BLOCK}"
        )
        from labkit.broker.replication import Replication

        ctx = self._ctx
        assert ctx is not None
        self.replication = Replication(
            cluster,
            self.registry,
            self.clock,
            config.replica_lag_time_max_ms,
            self.loop.send,
            lambda endpoint: _open_dealer(ctx, endpoint),
        )
        self.loop.join_cluster(cluster, self.replication)

    def _start_kafka(self, ctx: zmq.Context, sock) -> None:
        """The Kafka listener's thread (every listener), bridged to this ROUTER over inproc."""
        endpoint = f"inproc://labkit-kafka-{id(self)}"
        sock.bind(endpoint)
        config = self.config
        specs = [
            ListenSpec(
                item.name,
                item.bind_host,
                item.port,
                item.advertised_host,
                item.advertised_port,
                # a configured advertised host is where labkit clients must go too; else
                # the host they dialled (what makes port mappings and aliases just work)
                item.advertised_host if item.explicit else None,
                config.zmq_port,
                "--port" if index == 0 else "--listeners",
            )
            for index, item in enumerate(config.listeners)
        ]
        self.kafka = KafkaListener(
            ctx,
            endpoint,
            specs,
            config.socket_request_max_bytes,
            config.connection_max_buffered_bytes,
            config.num_partitions,
        )
        try:
            self.kafka.start()
        except Exception:
            self.kafka = None
            self.close()
            raise
        listeners = tuple(
            item._replace(port=port)
            for item, port in zip(config.listeners, self.kafka.ports, strict=True)
        )
        self.config = dataclasses.replace(config, listeners=listeners, port=self.kafka.port)

    @staticmethod
    def _open_monitor(ctx: zmq.Context, sock: zmq.Socket) -> zmq.Socket:
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
        if self.loop is not None:
            self.loop.stopping = True

    def serve_forever(self) -> None:
        """Run the loop until ``request_stop()``; then shut down cleanly."""
        loop = self.loop
        # start() succeeded (it raises otherwise): the loop and its sockets exist
        assert loop is not None, "serve_forever() before start()"
        poller = zmq.Poller()
        poller.register(self._sock, zmq.POLLIN)
        poller.register(self._wake, zmq.POLLIN)
        poller.register(self._monitor, zmq.POLLIN)
        try:
            while not self._stop:
                wait = loop.wait_s(self.clock.monotonic())
                events = dict(poller.poll(max(0, int(wait * 1000) + 1)))
                if self._monitor in events:
                    self._connection_events()
                if self._sock in events:
                    self._drain()
                if self._wake in events:
                    self._finish_flushes()
                loop.turn()
        finally:
            self.close()

    def close(self) -> None:
        """Answer what is waiting, stop the helpers, flush and close the logs."""
        if self._ctx is None:
            return
        try:
            self._stop = True
            if self.cluster is not None:  # first: the controller moves on at once
                self.cluster.stop()
                self.cluster = None
            if self.loop is not None:
                self.loop.shutdown()
            if self.replication is not None:  # after the loop's last round: it may hold
                self.replication.close()
                self.replication = None
            if self._cleaner is not None:
                self._cleaner.stop()
            if self.kafka is not None:
                self.kafka.close()  # its DEALERs must close before the context ends
        finally:
            if self.registry is not None:
                self.registry.close()
            self._close_sockets()

    def _close_sockets(self) -> None:
        if self._monitor is not None and self._sock is not None:
            self._sock.disable_monitor()
        for sock in (self._monitor, self._sock, self._wake):
            if sock is not None:
                sock.close()
        self._sock = self._wake = self._monitor = None
        if self._ctx is not None:
            self._ctx.term()
            self._ctx = None

    # -- the ROUTER socket ---------------------------------------------------------

    def _drain(self) -> None:
        sock = self._sock
        # called from serve_forever() only, between start() and close()
        assert sock is not None
        assert self.loop is not None
        receive = self.loop.receive
        for _ in range(DRAIN):
            if not cast(int, sock.getsockopt(_EVENTS)) & _POLLIN:
                return
            self.stats["requests"] += 1
            receive(self._recv_message())

    def _recv_message(self) -> list[bytes | memoryview]:
        """One multipart message: the small leading frames as bytes, payloads (record
        batches) as zero-copy buffers. Counts its wire bytes against its connection."""
        sock = self._sock
        # called from _drain() only
        assert sock is not None
        assert self.loop is not None
        connections = self.loop.connections
        identity = sock.recv(_NOBLOCK)
        frames: list[bytes | memoryview] = [identity]
        wire = 0
        if not connections.knows(identity) and sock.getsockopt(_RCVMORE):
            first = sock.recv(_NOBLOCK, copy=False)  # a new client: learn its descriptor
            try:
                connections.bind(identity, first.get(_SRCFD))
            except zmq.ZMQError:
                # no descriptor (a ZMTP 1.0 peer; an inproc peer, the Kafka listener's,
                # gets EINVAL): no budget here; the TCP limits, or the listener's, hold
                pass
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
        connections.on_read(identity, wire)
        return frames

    def _write_reply(self, identity: bytes, rid: bytes, head: bytes, payloads) -> None:
        """The loop's transport: one reply as a multipart message."""
        sock = self._sock
        # the loop writes replies from its thread, before close() drops the socket
        assert sock is not None
        send = sock.send
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

    # -- the socket monitor and the flusher's wake-ups -------------------------------

    def _connection_events(self) -> None:
        """Drain the socket monitor: connections opened and closed."""
        monitor, loop = self._monitor, self.loop
        # called from serve_forever() only
        assert monitor is not None
        assert loop is not None
        while True:
            try:
                event = parse_monitor_message(monitor.recv_multipart(_NOBLOCK))
            except zmq.Again:
                return
            kind, value = event["event"], event["value"]
            try:
                if kind == zmq.EVENT_ACCEPTED:
                    loop.connection_accepted(value)
                elif kind == zmq.EVENT_DISCONNECTED:
                    loop.connection_closed(value)
            except Exception:
                log.exception("handling the connection event %r failed", event)

    def _finish_flushes(self) -> None:
        wake = self._wake
        if wake is None or self.loop is None:
            return
        while True:
            try:
                wake.recv(zmq.NOBLOCK)
            except zmq.Again:
                break
        self.loop.flushes_done()


def _zmq_host(host: str) -> str:
    """A host as a ZeroMQ tcp:// endpoint wants it (IPv6 in brackets, ``*`` for all)."""
    if host in ("0.0.0.0", "", "*"):
        return "*"
    return f"[{host}]" if ":" in host else host


def _open_dealer(ctx: zmq.Context, endpoint: str) -> zmq.Socket:
    """A replica fetcher thread's own socket to a leader's ``host:port`` (never the loop's)."""
    host, port = endpoint.rsplit(":", 1)
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    if ":" in host:
        sock.setsockopt(zmq.IPV6, 1)
        host = f"[{host}]"
    sock.connect(f"tcp://{host}:{port}")
    return sock


def _open_waker(ctx: zmq.Context, addr: str):
    """(wake, close) over a PUSH socket to the loop's wake-up socket (for a helper thread)."""
    sock = ctx.socket(zmq.PUSH)
    sock.connect(addr)
    return (lambda: sock.send(b"f")), (lambda: sock.close(linger=0))
