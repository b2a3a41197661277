"""Finding the broker: bootstrap probes over ZeroMQ (the client's only zmq module).

Theory of operation
-------------------
``find_broker`` runs in the client's constructor. ``client/bootstrap.py`` first asks
every bootstrap address, over plain TCP in Kafka's framing, where the broker's ZeroMQ
endpoint is. Then a probe DEALER connects to every endpoint found and sends
``api_versions`` on each (again every ``connect_timeout_ms`` while unanswered). The
first answer wins; the other probes are closed. A socket monitor tells what each
address did, and that sets the patience: when every address *refused* the connection
(nothing listens) or is not a labkit broker (the ZeroMQ handshake failed),
``NoBrokersAvailable`` comes after ``connect_timeout_ms``; while an address accepted the
connection (or its connect is still pending: a busy machine drops SYNs) the probe
waits up to ``bootstrap_timeout_ms``. The error names each address and what it did,
and how to start a broker. The caller closes the winning probe and talks to its
endpoint over its own ZMTP connection (``client/zmtp.py``; why: its header).

Single-threaded: it runs on the constructor's thread and leaves no socket open
except the winner it returns.
"""

from __future__ import annotations

import itertools
import struct
from collections.abc import Callable
from typing import Any

import zmq

from labkit._clock import Clock
from labkit.client.backend import forget as forget_backend
from labkit.client.bootstrap import discover
from labkit.client.config import BOOTSTRAP_ENV
from labkit.errors import NoBrokersAvailable, ProtocolError
from labkit.protocol.frames import MAGIC, build_request, decode_header

_MONITOR_IDS = itertools.count()
_EVENT = struct.Struct("=H")  # a monitor message's first frame: event id, then a 32-bit value


def _monitor_event(frames: list[bytes]) -> int:
    """The event id of one socket-monitor message (libzmq's 4.x event API). Read here
    rather than with ``zmq.utils.monitor``, which imports asyncio: 28 ms of every
    client process's start-up, paid 160 times when a class of 80 starts at once."""
    if len(frames) != 2 or len(frames[0]) != 6:
        return -1  # not an event this libzmq version documents: note nothing useful
    return _EVENT.unpack_from(frames[0])[0]


# what a bootstrap probe learns about an address from its socket monitor
_PROBE_EVENTS = (
    zmq.EVENT_CONNECTED
    | zmq.EVENT_CONNECT_RETRIED
    | zmq.EVENT_DISCONNECTED
    | zmq.EVENT_HANDSHAKE_SUCCEEDED
    | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
    | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
)


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
            _PROBE_EVENTS, addr=f"inproc://labkit-probe-{next(_MONITOR_IDS)}"
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


class BrokerFinder:
    """The bootstrap probes of one client (see the module docstring)."""

    def __init__(
        self,
        client_id: str,
        clock: Clock,
        reconnect: tuple[int, int],
        next_id: Callable[[], bytes],
    ):
        self.client_id = client_id
        self._clock = clock
        self._reconnect = reconnect  # libzmq's reconnect interval and its cap (ms)
        self._next_id = next_id
        self._ctx: zmq.Context = zmq.Context.instance()

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

    def find(self, addresses: list[str], quick: float, patient: float):
        """Find ZeroMQ endpoints, then probe them (see the module docstring); return the
        winner's (socket, bootstrap address, api_versions answer + ``zmq_address``).
        The caller closes the socket.
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
                frames = probe.monitor.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            probe.note(_monitor_event(frames))

    @staticmethod
    def _read_probe_answer(probe: _Probe) -> dict[str, Any] | None:
        try:
            got_rid, header = _parse(probe.sock.recv_multipart(zmq.NOBLOCK))
        except (zmq.Again, ProtocolError):
            return None
        if got_rid in probe.rids and not header.get("error"):
            return header
        return None


def _parse(frames: list[bytes]) -> tuple[bytes, dict[str, Any]]:
    if len(frames) < 3 or bytes(frames[0]) != MAGIC:
        raise ProtocolError("malformed response from broker")
    return bytes(frames[1]), decode_header(bytes(frames[2]))
