"""The client's only ZeroMQ module: one DEALER socket and one background I/O thread.

Theory of operation
-------------------
Every client object (producer, consumer, admin) owns one ``Transport``:

- **Bootstrap.** First ``client/bootstrap.py`` asks every bootstrap address at once,
  over plain TCP in Kafka's framing, where the broker's ZeroMQ endpoint is (the
  broker's main port speaks Kafka; an address that greets in ZeroMQ is used as it is).
  Then the constructor connects a probe DEALER to every endpoint found
  and sends ``api_versions`` on each (again every
  ``connect_timeout_ms`` while unanswered). The first answer wins; the other probes
  are closed. A socket monitor tells what each address did, and that sets the
  patience: when every address *refused* the connection (nothing listens) or is not
  a labkit broker (the ZeroMQ handshake failed), ``NoBrokersAvailable`` comes after
  ``connect_timeout_ms`` (kafka-python's ``api_version_auto_timeout_ms``, 2 s); while
  an address accepted the connection (or its connect is still pending: a busy
  machine drops SYNs) the probe waits up to ``bootstrap_timeout_ms`` (default
  ``request_timeout_ms``, as Kafka clients retry bootstrap). The error names each
  address and what it did, and how to start a broker. labkit has one broker, so the
  client keeps talking to the endpoint that answered (the advertised host in
  metadata is not used; the bootstrap answer names a ZeroMQ host only when the
  broker's listener has a configured advertised host: that is what makes Docker port
  mappings just work).
- **Threads.** Only the I/O thread touches the DEALER. Other threads call
  ``request()``, which appends to an outbox (a deque) and wakes the I/O thread
  through an inproc PAIR socket -- only when it is asleep, so a burst of requests
  costs one wake-up. Responses are matched to requests by request id (many in
  flight, answered in any order) and resolve a ``Future`` on the I/O thread.
- **Drivers.** A client may register a driver: a function the I/O thread calls on
  every loop turn (the producer drains its record accumulator there, so records go
  out without another thread). It returns how many seconds it may sleep (None: no
  deadline of its own).
- **Sleeping.** There is no fixed tick: the thread sleeps until the earliest
  deadline -- a driver's (heartbeat, linger, retry, metadata refresh), a reply's
  timeout -- or until a message, a socket event or ``wakeup()`` arrives, so an idle
  client costs next to nothing. Whoever changes what a driver would do next (a new
  request, a new subscription...) calls ``wakeup()``; ``_MAX_SLEEP`` is only a
  safety net.
- **Waking other threads last.** pyzmq releases the GIL in every socket call, so a
  thread woken in the middle of a loop turn (a consumer's ``poll()`` told "records
  are here") would trade the GIL back and forth with this thread, a context switch
  each time. Callbacks that wake another thread use ``notify_before_sleep``: they
  run when the turn's work is done, just before the thread sleeps.
- **Timeouts and restarts.** A request not answered within its timeout fails with
  ``KafkaTimeoutError``. ZeroMQ reconnects by itself when the broker restarts; a
  socket monitor reports the disconnect, and then every request in flight is either
  sent again (idempotent ones: metadata, fetch, list_offsets...) or failed with
  ``KafkaConnectionError`` (produce, create_topics...: the broker may have applied it).

Wire format: ``labkit.protocol.frames`` and docs/wire.md.

Size: about 670 lines, over the house's ~450, on purpose: the layer rule
(docs/architecture.md, tests/unit/test_layers.py) keeps every zmq call of the client
in this one module, and bootstrap probing, the I/O loop and the frame helpers all
touch sockets. What needs no socket lives elsewhere (futures: future.py; wire
format: labkit.protocol.frames).
"""

from __future__ import annotations

import itertools
import logging
import math
import threading
from collections import deque
from collections.abc import Callable
from typing import Any, NamedTuple

import zmq
from zmq.utils.monitor import recv_monitor_message

from labkit._clock import REAL_CLOCK, Clock
from labkit.client.backend import LABKIT
from labkit.client.backend import forget as forget_backend
from labkit.client.backend import remember as remember_backend
from labkit.client.bootstrap import discover
from labkit.client.config import BOOTSTRAP_ENV, format_address, parse_bootstrap
from labkit.client.future import Future
from labkit.errors import (
    KafkaConnectionError,
    KafkaTimeoutError,
    NoBrokersAvailable,
    ProtocolError,
    from_wire,
)
from labkit.protocol.frames import MAGIC, build_request, decode_header

log = logging.getLogger(__name__)

_WAKE_IDS = itertools.count()
# plain ints: pyzmq's enum flags cost microseconds per frame on the hot path
_NOBLOCK = int(zmq.NOBLOCK)
_SNDMORE = int(zmq.SNDMORE)
_EVENTS = int(zmq.EVENTS)
_POLLIN = int(zmq.POLLIN)
_COPY_BELOW = 65536  # smaller frames are copied (pyzmq copies them anyway)
_RECV_BATCH = 256  # messages read per loop turn before the drivers run again
_CLOSE_LINGER_MS = 1000
_MAX_SLEEP = 30.0  # a safety net, not a tick: every deadline is computed
# what a bootstrap probe learns about an address from its socket monitor
_PROBE_EVENTS = (
    zmq.EVENT_CONNECTED
    | zmq.EVENT_CONNECT_RETRIED
    | zmq.EVENT_DISCONNECTED
    | zmq.EVENT_HANDSHAKE_SUCCEEDED
    | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
    | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
)
_THROTTLED_APIS = frozenset({"produce", "fetch"})  # what a quota's throttle_time_ms holds back


class Response(NamedTuple):
    header: dict[str, Any]
    payloads: list  # memoryviews of the payload frames


class _Pending:
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
    )

    def __init__(self, rid, api, frames, future, timeout, idempotent, expect_response):
        self.rid = rid
        self.api = api
        self.frames = frames
        self.future = future
        self.timeout = timeout
        self.deadline = 0.0
        self.idempotent = idempotent
        self.expect_response = expect_response
        self.resends = 0


def raise_for_error(header: dict[str, Any]) -> dict[str, Any]:
    """Raise the Kafka error named by a response header's ``error``; else return it."""
    code = header.get("error", 0)
    if code:
        raise from_wire(code, header.get("message"))
    return header


def no_brokers_message(addresses: list[str], timeout_s: float) -> str:
    where = ", ".join(addresses)
    return (
        f"no labkit broker answered at {where} within {timeout_s:.1f} s. Start one in another terminal with "
        "`labkit broker` (or `docker-compose up` for the whole lab), or point the client at a "
        f"running broker with bootstrap_servers='host:port' or the {BOOTSTRAP_ENV} environment variable. "
        "(labkit clients talk only to a labkit broker, not to Apache Kafka.)"
    )


class _Probe:
    """One bootstrap address being tried, and what its socket monitor saw."""

    __slots__ = (
        "address",
        "sock",
        "monitor",
        "rids",
        "connected",
        "refused",
        "handshaken",
        "not_labkit",
        "found_by",
    )

    def __init__(self, address: str, sock: zmq.Socket, found_by: str = ""):
        """``sock``: not connected yet, so the monitor sees the connection happen.
        ``found_by``: the bootstrap address that named this ZeroMQ endpoint, if another."""
        self.address = address
        self.found_by = found_by
        self.sock = sock
        # an address of its own: the transport monitors the winner again afterwards
        self.monitor = sock.get_monitor_socket(
            _PROBE_EVENTS, addr=f"inproc://labkit-probe-{next(_WAKE_IDS)}"
        )
        self.rids: set[bytes] = set()
        self.connected = False  # a TCP connection was accepted
        self.refused = False  # a connect attempt failed (nothing listens)
        self.handshaken = False  # a ZeroMQ peer answered the handshake
        self.not_labkit = False  # connected, but cut off before any ZeroMQ handshake

    def note(self, event: int) -> None:
        if event == zmq.EVENT_CONNECTED:
            self.connected = True
        elif event == zmq.EVENT_CONNECT_RETRIED and not self.connected:
            self.refused = True
        elif event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
            self.handshaken = True
        elif (
            event
            in (
                zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL,
                zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL,
                zmq.EVENT_DISCONNECTED,
            )
            and not self.handshaken
        ):
            self.not_labkit = True

    def worth_waiting(self) -> bool:
        """Whether more patience may still get an answer (someone is, or may be, there)."""
        if self.connected:
            return not self.not_labkit
        return not self.refused  # connect still pending: a busy machine may drop SYNs

    def outcome(self, waited: float) -> str:
        if self.found_by:
            return (
                f"{self.found_by} answered labkit's bootstrap request (ZeroMQ at "
                f"{self.address}), but {self._outcome(waited)}"
            )
        return self._outcome(waited)

    def _outcome(self, waited: float) -> str:
        if self.not_labkit:
            return (
                f"{self.address} accepted the connection but does not speak labkit's "
                "protocol (another service on that port, e.g. Apache Kafka?)"
            )
        if self.connected:
            return (
                f"{self.address} accepted the connection but did not answer within "
                f"{waited:.1f} s (request_timeout_ms): is the broker stopped or overloaded?"
            )
        if self.refused:
            return f"{self.address} refused the connection (nothing listens there)"
        return (
            f"{self.address} did not accept a connection within {waited:.1f} s "
            "(wrong host, or a firewall?)"
        )

    def close(self) -> None:
        self.sock.disable_monitor()
        self.monitor.close(linger=0)
        self.sock.close(linger=0)


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
        self._clock = clock
        self._max_resends = max_resends
        self._reconnect = (
            int(reconnect_backoff_ms),
            int(max(reconnect_backoff_ms, reconnect_backoff_max_ms)),
        )
        self._ids = itertools.count(1)
        self._ctx: zmq.Context = zmq.Context.instance()
        addresses = [format_address(h, p) for h, p in parse_bootstrap(bootstrap_servers)]
        self.bootstrap_servers = addresses
        patience = request_timeout_ms if bootstrap_timeout_ms is None else bootstrap_timeout_ms
        self._sock, self.address, self.broker_info = self._bootstrap(
            addresses, connect_timeout_ms / 1000.0, max(connect_timeout_ms, patience) / 1000.0
        )
        remember_backend(addresses, LABKIT)  # a labkit broker answered: no need to ask again
        # where ZeroMQ is (the broker's own port; self.address: the bootstrap address)
        self.zmq_address: str = self.broker_info["zmq_address"]
        self.connected = True
        self._outbox: deque[_Pending] = deque()
        self._inflight: dict[bytes, _Pending] = {}
        self._drivers: list[Callable[[float], float | None]] = []
        self._before_sleep: list[Callable[[], None]] = []  # I/O thread only
        self._closing = False
        self._closed = False
        self._sleeping = False
        self._io_thread_id: int | None = None  # set by the thread itself
        # event counts (what an idle or busy client costs, without timing it):
        self.turns = 0  # times the I/O thread woke up from its sleep
        self.wakeups_sent = 0  # of those, wake-ups other threads sent it (wakeup())
        self.throttled_until = 0.0  # a quota's throttle_time_ms: no produce/fetch before
        endpoint = f"inproc://labkit-wake-{next(_WAKE_IDS)}"
        self._wake_recv = self._ctx.socket(zmq.PAIR)
        self._wake_recv.bind(endpoint)
        self._wake_send = self._ctx.socket(zmq.PAIR)
        self._wake_send.connect(endpoint)
        self._wake_lock = threading.Lock()
        self._monitor = self._sock.get_monitor_socket(
            zmq.EVENT_DISCONNECTED | zmq.EVENT_HANDSHAKE_SUCCEEDED
        )
        self._thread = threading.Thread(target=self._run, name=f"labkit-io-{name}", daemon=True)
        self._thread.start()

    # -- bootstrap --------------------------------------------------------------

    def _new_socket(self, address: str, connect: bool = True) -> zmq.Socket:
        sock = self._ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.RECONNECT_IVL, self._reconnect[0])
        sock.setsockopt(zmq.RECONNECT_IVL_MAX, self._reconnect[1])
        sock.setsockopt(zmq.SNDHWM, 0)
        sock.setsockopt(zmq.RCVHWM, 0)
        sock.setsockopt(zmq.HEARTBEAT_IVL, 2000)
        sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, 6000)
        if address.startswith("["):
            sock.setsockopt(zmq.IPV6, 1)
        if connect:
            sock.connect("tcp://" + address)
        return sock

    def _bootstrap(self, addresses: list[str], quick: float, patient: float):
        """Find ZeroMQ endpoints, then probe them (see the module docstring); return the
        winner's (socket, bootstrap address, api_versions answer + ``zmq_address``).
        Raises NoBrokersAvailable."""
        started = self._clock.monotonic()
        candidates, problems = discover(addresses, quick, patient, self.client_id, self._clock)
        spent = self._clock.monotonic() - started
        quick, patient = max(quick - spent, 0.5), max(patient - spent, 0.5)
        probes: list[_Probe] = []
        origin: dict[str, str] = {}
        poller = zmq.Poller()
        try:
            for candidate in candidates:
                address = candidate.zmq_address
                found_by = candidate.address if candidate.how == "bootstrap" else ""
                origin[address] = candidate.address
                try:
                    probe = self._new_probe(address, found_by)
                except zmq.ZMQError as exc:
                    problems.append(f"{address} could not be tried ({exc})")
                    continue
                probes.append(probe)
                poller.register(probe.sock, zmq.POLLIN)
                poller.register(probe.monitor, zmq.POLLIN)
            by_socket = {p.sock: p for p in probes} | {p.monitor: p for p in probes}
            start = self._clock.monotonic()
            resend_at = start
            while probes:
                now = self._clock.monotonic()
                if now >= start + patient or (
                    now >= start + quick and not any(p.worth_waiting() for p in probes)
                ):
                    break
                if now >= resend_at:  # again now and then: a broker restart loses a probe
                    resend_at = now + max(quick, 0.5)
                    for probe in probes:
                        self._send_probe(probe)
                wait_until = min(start + patient, resend_at)
                if now < start + quick:
                    wait_until = min(wait_until, start + quick)
                for sock, _ in poller.poll(max(1, int((wait_until - now) * 1000))):
                    probe = by_socket[sock]
                    if sock is probe.monitor:
                        self._read_probe_events(probe)
                    elif (answer := self._read_probe_answer(probe)) is not None:
                        probes.remove(probe)
                        probe.sock.disable_monitor()
                        probe.monitor.close(linger=0)
                        answer = {**answer, "zmq_address": probe.address}
                        return probe.sock, origin[probe.address], answer
            waited = self._clock.monotonic() - started
            problems += [p.outcome(waited) for p in probes]
        finally:
            for probe in probes:
                probe.close()
        forget_backend(addresses)  # whatever was known about them may be stale
        raise NoBrokersAvailable(
            no_brokers_message(addresses, self._clock.monotonic() - started)
            + " Tried: "
            + "; ".join(problems)
            + "."
        )

    def _new_probe(self, address: str, found_by: str = "") -> _Probe:
        sock = self._new_socket(address, connect=False)
        try:
            probe = _Probe(address, sock, found_by)  # the monitor first: it must see the connect
        except zmq.ZMQError:
            sock.close(linger=0)
            raise
        try:
            sock.connect("tcp://" + address)
        except zmq.ZMQError:
            probe.close()
            raise
        return probe

    def _send_probe(self, probe: _Probe) -> None:
        rid = self._next_id()
        probe.rids.add(rid)
        try:
            probe.sock.send_multipart(
                build_request(rid, "api_versions", {"client_id": self.client_id}), zmq.NOBLOCK
            )
        except zmq.Again:
            pass  # a probe is queued already

    @staticmethod
    def _read_probe_events(probe: _Probe) -> None:
        while True:
            try:
                event = recv_monitor_message(probe.monitor, zmq.NOBLOCK)
            except zmq.Again:
                return
            probe.note(event["event"])

    @staticmethod
    def _read_probe_answer(probe: _Probe) -> dict[str, Any] | None:
        try:
            got_rid, header = _parse(probe.sock.recv_multipart(zmq.NOBLOCK))
        except (zmq.Again, ProtocolError):
            return None
        if got_rid in probe.rids and not header.get("error"):
            return header
        return None

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
    ) -> Future:
        """Queue one request; the future resolves to a ``Response`` (or None without
        ``expect_response``, once sent). Top-level errors are not raised here: see
        ``raise_for_error``. Fails with KafkaTimeoutError / KafkaConnectionError."""
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
            _Pending(rid, api, frames, future, timeout, idempotent, expect_response)
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
    ) -> Response:
        """Send a request and block for its response; raise its top-level error."""
        timeout = self.request_timeout if timeout_ms is None else timeout_ms / 1000.0
        future = self.request(
            api, header, payloads, timeout_ms=timeout * 1000.0, idempotent=idempotent
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
                        self._wake_send.send(b"", zmq.NOBLOCK)
                    except zmq.ZMQError:
                        pass  # a wake-up is already queued

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
    def in_flight(self) -> int:
        return len(self._inflight) + len(self._outbox)

    # -- the I/O thread -------------------------------------------------------

    def _run(self) -> None:
        self._io_thread_id = threading.get_ident()
        poller = zmq.Poller()
        poller.register(self._sock, zmq.POLLIN)
        poller.register(self._wake_recv, zmq.POLLIN)
        poller.register(self._monitor, zmq.POLLIN)
        try:
            while True:
                self._sleeping = True
                now = self._clock.monotonic()
                delay = self._run_drivers(now)
                self._send_outbox(now)
                if self._closing and not self._outbox:
                    break
                if self._outbox:  # the socket pushed back, or requests wait for a throttle
                    throttled = self.throttled_until - self._clock.monotonic()
                    delay = min(delay, throttled) if throttled > 0 else 0.001
                delay = min(delay, self._next_deadline(now) - now)
                if self._before_sleep:
                    self._notify_waiters()
                events = dict(poller.poll(max(0, math.ceil(delay * 1000))))
                self._sleeping = False
                self.turns += 1
                if self._wake_recv in events:
                    self._drain_wakeups()
                if self._sock in events:
                    self._receive()
                if self._monitor in events:
                    self._handle_monitor()
                self._expire(self._clock.monotonic())
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
        delay = _MAX_SLEEP
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
        outbox = self._outbox
        if outbox and now < self.throttled_until and not self._closing:
            self._send_unthrottled(now)
            return
        while outbox:
            if not self._send_pending(outbox[0], now):
                return
            outbox.popleft()

    def _send_pending(self, pending: _Pending, now: float) -> bool:
        try:
            _send_frames(self._sock, pending.frames, _NOBLOCK)
        except zmq.Again:
            return False
        if pending.expect_response:
            pending.deadline = now + pending.timeout
            self._inflight[pending.rid] = pending
        else:
            pending.frames = None
            pending.future.success(None)
        return True

    def _send_unthrottled(self, now: float) -> None:
        """While a quota throttles this client (Kafka's KIP-219), send only what is not
        produce/fetch; those keep their order and go when the throttle time is over."""
        kept: list[_Pending] = []
        outbox = self._outbox
        for _ in range(len(outbox)):  # other threads may append meanwhile, at the right
            pending = outbox.popleft()
            if pending.api in _THROTTLED_APIS:
                kept.append(pending)
            elif not self._send_pending(pending, now):
                outbox.appendleft(pending)  # the socket pushed back: keep the order
                break
        outbox.extendleft(reversed(kept))

    def _receive(self) -> None:
        sock = self._sock
        for _ in range(_RECV_BATCH):
            try:
                frames = sock.recv_multipart(_NOBLOCK, copy=False)
            except zmq.Again:
                return
            self._dispatch(frames)
            # asking whether more is queued costs a third of a recv() that raises
            # zmq.Again (pyzmq builds the exception; one per loop turn otherwise)
            if not sock.getsockopt(_EVENTS) & _POLLIN:
                return

    def _dispatch(self, frames: list) -> None:
        """Resolve the future of the request this answer is for."""
        if len(frames) < 3 or frames[0].bytes != MAGIC:
            log.warning("ignoring a malformed message from the broker")
            return
        pending = self._inflight.pop(frames[1].bytes, None)
        if pending is None:
            return  # answer to a request that already timed out or was resent
        try:
            header = decode_header(frames[2].bytes)
        except ProtocolError as exc:
            pending.future.failure(exc)
            return
        pending.frames = None
        throttle_ms = header.get("throttle_time_ms")
        if type(throttle_ms) is int and throttle_ms > 0:  # honoured by _send_outbox
            self.throttled_until = max(
                self.throttled_until, self._clock.monotonic() + throttle_ms / 1000.0
            )
        pending.future.success(Response(header, [f.buffer for f in frames[3:]]))

    def _handle_monitor(self) -> None:
        while True:
            try:
                event = recv_monitor_message(self._monitor, zmq.NOBLOCK)
            except zmq.Again:
                return
            if event["event"] == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                if not self.connected:
                    log.info("reconnected to the broker at %s", self.address)
                self.connected = True
            elif event["event"] == zmq.EVENT_DISCONNECTED:
                self.connected = False
                log.warning("lost the connection to the broker at %s; reconnecting", self.address)
                self._connection_lost()

    def _connection_lost(self) -> None:
        now = self._clock.monotonic()
        lost = list(self._inflight.values())
        self._inflight.clear()
        for pending in lost:
            if pending.idempotent and pending.resends < self._max_resends:
                pending.resends += 1
                self._outbox.append(pending)  # goes out again once reconnected
            else:
                pending.future.failure(
                    KafkaConnectionError(
                        f"lost the connection to the broker at {self.address} before it answered {pending.api}; the broker "
                        "may or may not have applied it (is the broker restarting?)"
                    )
                )
        self._send_outbox(now)

    def _next_deadline(self, now: float) -> float:
        if not self._inflight:
            return now + _MAX_SLEEP
        return min(p.deadline for p in self._inflight.values())

    def _expire(self, now: float) -> None:
        if not self._inflight:
            return
        expired = [p for p in self._inflight.values() if p.deadline <= now]
        for pending in expired:
            del self._inflight[pending.rid]
            pending.future.failure(
                KafkaTimeoutError(
                    f"the broker at {self.address} did not answer {pending.api} within {pending.timeout:.1f} s (request_timeout_ms); is it "
                    "running and not overloaded?"
                )
            )

    def _drain_wakeups(self) -> None:
        while True:
            try:
                self._wake_recv.recv(zmq.NOBLOCK)
            except zmq.Again:
                return

    def _shutdown(self) -> None:
        error = KafkaConnectionError("the client was closed before the broker answered")
        pending = list(self._inflight.values()) + list(self._outbox)
        self._inflight.clear()
        self._outbox.clear()
        for p in pending:
            p.future.failure(error)
        with self._wake_lock:
            self._closed = True
            self._closing = True
            self._sock.disable_monitor()
            self._monitor.close(linger=0)
            self._sock.close(linger=_CLOSE_LINGER_MS)
            self._wake_send.close(linger=0)
            self._wake_recv.close(linger=0)


def _send_frames(sock: zmq.Socket, frames: list, flags: int = 0) -> None:
    """``send_multipart`` without its per-frame overhead. A multipart message is
    atomic: only the first frame can raise zmq.Again (with NOBLOCK)."""
    last = len(frames) - 1
    send = sock.send
    for index, frame in enumerate(frames):
        more = _SNDMORE if index < last else 0
        if len(frame) < _COPY_BELOW:
            send(frame, flags | more)
        else:
            send(frame, flags | more, copy=False)


def _parse(frames: list[bytes]) -> tuple[bytes, dict[str, Any]]:
    if len(frames) < 3 or bytes(frames[0]) != MAGIC:
        raise ProtocolError("malformed response from broker")
    return bytes(frames[1]), decode_header(bytes(frames[2]))
