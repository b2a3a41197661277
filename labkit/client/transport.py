"""The client's connection to the broker: requests, replies and one background I/O thread.

Theory of operation
-------------------
Every client object (producer, consumer, admin) owns one ``Transport``:

- **Bootstrap.** The constructor finds the broker's ZeroMQ endpoint with
  ``client/zmq_bootstrap.py`` (Kafka-framed bootstrap request, then ZeroMQ probes
  with ``api_versions``; its header says how patient it is and what
  ``NoBrokersAvailable`` names). A single broker is talked to at the endpoint that
  answered (the advertised host in metadata is not used; the bootstrap answer names
  a ZeroMQ host only when the broker's listener has a configured advertised host:
  that is what makes Docker port mappings just work).
- **Several brokers** (cluster mode). Every metadata answer this transport carries
  updates ``routes`` (client/routing.py: leaders, brokers' ZeroMQ endpoints); a
  request may name its broker (``node``: the producer and fetcher name each
  partition's leader) and goes on that broker's connection, opened on first use
  (client/connections.py). A request for a named broker whose connection is lost or
  cannot be made fails at once with ``KafkaConnectionError`` (retriable: the caller
  refreshes metadata and goes to the new leader) rather than waiting for that broker.
- **The connection.** The winning probe is closed and the constructor connects to
  its endpoint again over a plain TCP socket that the I/O thread reads and writes
  itself, speaking ZMTP (ZeroMQ's wire protocol, as a DEALER: ``client/zmtp.py``).
  pyzmq is used only to probe: with a libzmq DEALER every fetch answer also woke
  libzmq's own I/O thread (receive; send the next fetch), 10-15 % of a delivered
  record's client CPU at classroom rates (benchmarks/NOTES.md section 9.2).
- **Threads.** Only the I/O thread touches the connection. Other threads call
  ``request()``, which appends to an outbox (a deque) and wakes the I/O thread
  with one byte down a socket pair -- only when it is asleep, so a burst of
  requests costs one wake-up. The thread sleeps in ``poll(2)`` on that pair and
  the broker's socket. Responses are matched to requests by request id (many in
  flight, answered in any order) and resolve a ``Future`` on the I/O thread.
- **Drivers.** A client may register a driver: a function the I/O thread calls on
  every loop turn (the producer drains its record accumulator there, so records go
  out without another thread). It returns how many seconds it may sleep (None: no
  deadline of its own).
- **Sleeping.** There is no fixed tick: the thread sleeps until the earliest
  deadline -- a driver's (heartbeat, linger, retry, metadata refresh), a reply's
  timeout -- or until a message, a socket event or ``wakeup()`` arrives, so an idle
  client costs next to nothing. Whoever changes what a driver would do next (a new
  request, a new subscription...) calls ``wakeup()``; ``MAX_SLEEP`` is only a
  safety net.
- **Waking other threads last.** Every socket call releases the GIL, so a
  thread woken in the middle of a loop turn (a consumer's ``poll()`` told "records
  are here") would trade the GIL back and forth with this thread, a context switch
  each time. Callbacks that wake another thread use ``notify_before_sleep``: they
  run when the turn's work is done, just before the thread sleeps.
- **Timeouts and restarts.** A request not answered within its timeout fails with
  ``KafkaTimeoutError``. The connection reconnects by itself when the broker
  restarts (backoff ``reconnect_backoff_ms`` doubling to ``reconnect_backoff_max_ms``;
  requests made meanwhile wait for it, as libzmq queued them); when a connection
  that had completed its handshake is lost, every request in flight is either
  sent again (idempotent ones: metadata, fetch, list_offsets...) or failed with
  ``KafkaConnectionError`` (produce, create_topics...: the broker may have applied it).

Wire format: ``labkit.protocol.frames`` and docs/wire.md.

What needs no thread lives elsewhere (the bootstrap probes, the client's only zmq
code: zmq_bootstrap.py; the ZMTP connection: zmtp.py; futures: future.py; wire format:
labkit.protocol.frames), and so does the bookkeeping of requests on their way (sent,
answered, throttled, timed out, lost with a connection: inflight.py).
"""

from __future__ import annotations

import itertools
import logging
import math
import socket
import threading
from collections.abc import Callable
from typing import Any

from labkit._clock import REAL_CLOCK, Clock
from labkit.client.backend import LABKIT
from labkit.client.backend import remember as remember_backend
from labkit.client.config import format_address, parse_bootstrap
from labkit.client.connections import Connections, Waiter
from labkit.client.future import Future
from labkit.client.inflight import MAX_SLEEP, InFlight, Pending, Response, raise_for_error
from labkit.client.routing import ANY_BROKER, Routes
from labkit.client.zmq_bootstrap import BrokerFinder
from labkit.client.zmtp import ZmtpConnection
from labkit.errors import KafkaConnectionError, KafkaTimeoutError
from labkit.protocol.frames import build_request

log = logging.getLogger(__name__)

_CLOSE_LINGER_MS = 1000
_HANDSHAKE_TIMEOUT = 30.0  # libzmq's ZMQ_HANDSHAKE_IVL: only a hung peer takes this long


class Transport:
    """One connection to the broker. Thread-safe: ``request``, ``call``, ``wakeup``, ``close``.

    Raises NoBrokersAvailable from the constructor when no bootstrap address answers.
    """

    def __init__(
        self,
        bootstrap_servers: Any = None,
        *,
        client_id: str = "labkit",
        request_timeout_ms: float = 30000,
        connect_timeout_ms: float = 2000,
        bootstrap_timeout_ms: float | None = None,
        reconnect_backoff_ms: float = 50,
        reconnect_backoff_max_ms: float = 1000,
        max_resends: int = 3,
        clock: Clock = REAL_CLOCK,
        name: str = "client",
    ):
        self.client_id = client_id
        self.request_timeout = request_timeout_ms / 1000.0
        self.clock = self._clock = clock
        self._reconnect = (
            int(reconnect_backoff_ms),
            int(max(reconnect_backoff_ms, reconnect_backoff_max_ms)),
        )
        self._ids = itertools.count(1)
        addresses = [format_address(h, p) for h, p in parse_bootstrap(bootstrap_servers)]
        self.bootstrap_servers = addresses
        patience = request_timeout_ms if bootstrap_timeout_ms is None else bootstrap_timeout_ms
        finder = BrokerFinder(client_id, clock, self._reconnect, self._next_id)
        probe_sock, self.address, self.broker_info = finder.find(
            addresses, connect_timeout_ms / 1000.0, max(connect_timeout_ms, patience) / 1000.0
        )
        probe_sock.close(linger=0)  # from now on the I/O thread speaks ZMTP itself (zmtp.py)
        remember_backend(addresses, LABKIT)  # a labkit broker answered: no need to ask again
        # where ZeroMQ is (the broker's own port; self.address: the bootstrap address)
        self.zmq_address: str = self.broker_info["zmq_address"]
        self.connected = True
        self._drivers: list[Callable[[float], float | None]] = []
        self._before_sleep: list[Callable[[], None]] = []  # I/O thread only
        self._closing = False
        self._closed = False
        self._sleeping = False
        self._io_thread_id: int | None = None  # set by the thread itself
        # event counts (what an idle or busy client costs, without timing it):
        self.turns = 0  # times the I/O thread woke up from its sleep
        self.wakeups_sent = 0  # of those, wake-ups other threads sent it (wakeup())
        # wakeup(): one byte down a socket pair (a plain fd the I/O thread's poll watches)
        self._wake_recv, self._wake_send = socket.socketpair()
        self._wake_recv.setblocking(False)
        self._wake_send.setblocking(False)
        self._wake_lock = threading.Lock()
        host, _, port = self.zmq_address.rpartition(":")
        self._conn = self._open_connection(host.strip("[]"), int(port))
        node = self.broker_info.get("node_id")
        self.routes = Routes(node if type(node) is int else None)
        self._links = Connections(self._conn, self.routes, self._open_connection)
        self._requests = InFlight(
            self._links, self.routes, clock, max_resends, self._conn, self.address
        )
        self._outbox = self._requests.outbox  # the same deque: request() appends to it
        self._up: set[ZmtpConnection] = set()  # connections whose handshake completed
        self._conn.connect_now(max(connect_timeout_ms / 1000.0, 1.0))
        self._thread = threading.Thread(target=self._run, name=f"labkit-io-{name}", daemon=True)
        self._thread.start()

    def _open_connection(self, host: str, port: int) -> ZmtpConnection:
        conn: ZmtpConnection | None = None  # set below, before any callback can run

        def up() -> None:
            assert conn is not None
            self._connection_up(conn)

        def down(reason: str) -> None:
            assert conn is not None
            self._connection_down(conn, reason)

        conn = ZmtpConnection(
            host,
            port,
            clock=self._clock,
            on_up=up,
            on_down=down,
            reconnect_backoff=(self._reconnect[0] / 1000.0, self._reconnect[1] / 1000.0),
            handshake_timeout=_HANDSHAKE_TIMEOUT,
        )
        return conn

    # -- public API ---------------------------------------------------------------

    def _next_id(self) -> bytes:
        return next(self._ids).to_bytes(8, "little")

    def request(
        self,
        api: str,
        header: dict[str, Any],
        payloads=(),
        *,
        timeout_ms: float | None = None,
        idempotent: bool = False,
        expect_response: bool = True,
        node: int | None = ANY_BROKER,
    ) -> Future:
        """Queue one request; the future resolves to a ``Response`` (or None without
        ``expect_response``, once sent). Top-level errors are not raised here: see
        ``raise_for_error``. Fails with KafkaTimeoutError / KafkaConnectionError.
        ``node``: the broker it is for (cluster mode: a partition's leader)."""
        future = Future()
        if self._closing:
            return future.failure(
                KafkaConnectionError(
                    "this client is closed; create a new one to talk to the broker"
                )
            )
        rid = self._next_id()
        timeout = self.request_timeout if timeout_ms is None else timeout_ms / 1000.0
        # client_id in every request, as in Kafka's request header: quotas are per client id
        frames = build_request(rid, api, {"client_id": self.client_id, **header}, payloads)
        self._outbox.append(
            Pending(rid, api, frames, future, timeout, idempotent, expect_response, node)
        )
        self.wakeup()
        return future

    def call(
        self,
        api: str,
        header: dict[str, Any],
        payloads=(),
        *,
        timeout_ms: float | None = None,
        idempotent: bool = True,
        node: int | None = ANY_BROKER,
    ) -> Response:
        """Send a request and block for its response; raise its top-level error."""
        timeout = self.request_timeout if timeout_ms is None else timeout_ms / 1000.0
        future = self.request(
            api, header, payloads, timeout_ms=timeout * 1000.0, idempotent=idempotent, node=node
        )
        if not future.wait(timeout + 1.0):
            raise KafkaTimeoutError(
                f"the broker at {self.address} did not answer {api} within {timeout:.1f} s"
            )
        if future.exception is not None:
            raise future.exception
        raise_for_error(future.value.header)
        return future.value

    def add_driver(self, driver: Callable[[float], float | None]) -> None:
        """Run ``driver(now)`` on the I/O thread every loop turn; it returns seconds to sleep."""
        self._drivers.append(driver)
        self.wakeup()

    def notify_before_sleep(self, fn: Callable[[], None]) -> None:
        """Run ``fn()`` (it wakes another thread) when the I/O thread has finished this
        loop turn; at once when called from another thread."""
        if threading.get_ident() == self._io_thread_id:
            self._before_sleep.append(fn)
        else:
            fn()

    def wakeup(self) -> None:
        """Make the I/O thread run its loop soon (cheap when it is already awake)."""
        # not from the I/O thread itself (a driver or callback sending a request): it
        # sends the outbox before it sleeps, and a self-wake cost a loop turn a request
        if self._sleeping and threading.get_ident() != self._io_thread_id:
            self._sleeping = False
            with self._wake_lock:
                if not self._closed:
                    self.wakeups_sent += 1
                    try:
                        self._wake_send.send(b"\0")
                    except OSError:
                        pass  # the pair is full of wake-ups already

    def close(self, timeout: float | None = 5.0) -> None:
        """Send what is queued, fail what is in flight, stop the I/O thread."""
        if self._closing:
            return
        self._closing = True
        self._sleeping = True
        self.wakeup()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    @property
    def throttled_until(self) -> float:
        """A quota's throttle_time_ms: no produce/fetch before this (monotonic time)."""
        return self._requests.throttled_until

    @property
    def in_flight(self) -> int:
        return len(self._requests.inflight) + len(self._outbox)

    # -- the I/O thread -------------------------------------------------------

    def _run(self) -> None:
        self._io_thread_id = threading.get_ident()
        conns = self._links.all  # grows when a broker is first needed (this thread)
        wait = Waiter(self._wake_recv.fileno())
        try:
            while True:
                self._sleeping = True
                now = self._clock.monotonic()
                for conn in conns:
                    conn.tick(now)
                delay = self._run_drivers(now)
                self._send_outbox(now)
                if self._closing and not self._outbox:
                    break
                if self._outbox:  # requests wait for a throttle
                    throttled = self.throttled_until - self._clock.monotonic()
                    delay = min(delay, throttled) if throttled > 0 else 0.001
                delay = min(delay, self._requests.next_deadline(now) - now)
                for conn in conns:
                    delay = min(delay, conn.next_deadline() - now)
                if self._before_sleep:
                    self._notify_waiters()
                woken, readable, writable = wait(conns, max(0, math.ceil(delay * 1000)))
                self._sleeping = False
                self.turns += 1
                if woken:
                    self._drain_wakeups()
                for conn in writable:
                    conn.write()
                for conn in readable:
                    self._receive(conn)
                self._requests.expire(self._clock.monotonic())
        except Exception:  # the I/O thread must report, not vanish silently
            log.exception("labkit client I/O thread crashed")
        finally:
            self._shutdown()
            self._notify_waiters()

    def _notify_waiters(self) -> None:
        waiters, self._before_sleep = self._before_sleep, []
        for fn in waiters:
            try:
                fn()
            except Exception:
                log.exception("labkit client callback %r failed", fn)

    def _run_drivers(self, now: float) -> float:
        delay = MAX_SLEEP
        for driver in self._drivers:
            try:
                wanted = driver(now)
            except Exception:
                log.exception("labkit client driver %r failed", driver)
                wanted = 0.1
            if wanted is not None and wanted < delay:
                delay = max(0.0, wanted)
        return delay

    def _send_outbox(self, now: float) -> None:
        self._requests.send_outbox(now, self._closing)

    def _receive(self, conn: ZmtpConnection) -> None:
        for frames in conn.read():
            self._requests.dispatch(frames)

    def _connection_up(self, conn: ZmtpConnection) -> None:  # I/O thread (handshake done)
        self._up.add(conn)
        if conn is self._conn:
            if not self.connected:
                log.info("reconnected to the broker at %s", self.address)
            self.connected = True

    def _connection_down(self, conn: ZmtpConnection, reason: str) -> None:  # I/O thread
        where = self.address if conn is self._conn else self._links.node_of(conn)
        if conn in self._up:  # not for each failed connect to a broker that is gone
            self._up.discard(conn)
            log.warning("lost the connection to the broker at %s (%s); reconnecting", where, reason)
        if conn is self._conn:
            self.connected = False
        now = self._clock.monotonic()
        self._requests.lost(conn, where)  # requests sent again go back to the outbox
        self._send_outbox(now)

    def _drain_wakeups(self) -> None:
        try:
            while self._wake_recv.recv(4096):
                pass
        except OSError:
            pass  # drained (EAGAIN)

    def _shutdown(self) -> None:
        error = KafkaConnectionError("the client was closed before the broker answered")
        self._requests.fail_all(error)
        for conn in self._links.all:
            conn.flush(_CLOSE_LINGER_MS / 1000.0)  # what is queued still goes out
            conn.close()
        with self._wake_lock:  # not while flushing: wakeup() would wait for it
            self._closed = True
            self._closing = True
            self._wake_send.close()
            self._wake_recv.close()
