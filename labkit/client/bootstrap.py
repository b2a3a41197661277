"""From ``bootstrap_servers`` to ZeroMQ endpoints: one round trip over the Kafka port.

Theory of operation
-------------------
The broker's main port (9092) speaks Kafka's protocol; labkit's client talks ZeroMQ on
the broker's ZeroMQ port. ``discover`` opens a plain TCP connection to every bootstrap
address at once and at once sends labkit's bootstrap request (protocol/bootstrap.py).
What comes back first decides, per address:

- a bootstrap answer: the ZeroMQ endpoint is ``zmq_host`` (or, when the broker leaves
  it out, the host the client dialled: port mappings and relays keep working) and
  ``zmq_port``;
- a ZeroMQ greeting (first byte 0xFF): the address *is* a ZeroMQ port (an address
  given as the ZeroMQ port, or a broker from before the Kafka protocol took 9092);
- the connection closed before any byte: not a Kafka port of a labkit broker; the
  address is still handed to the ZeroMQ probe, which reports what it is (and covers a
  ZeroMQ peer that reset the connection before its greeting was read);
- other bytes: another service; refused: tried again until ``quick`` seconds; no
  answer on an accepted connection: waited for until ``patient`` seconds (a busy
  broker answers late).

The first address with an answer or a greeting wins at once. Plain sockets, no zmq
(client/transport.py then probes the endpoints found with ZeroMQ).
"""

from __future__ import annotations

import errno
import selectors
import socket
import struct
from typing import NamedTuple

from labkit._clock import REAL_CLOCK, Clock
from labkit.errors import ProtocolError
from labkit.protocol import bootstrap as wire

RETRY_REFUSED_S = 0.1  # a refused address is tried again this often (a broker starting)
_CORRELATION = 0x4C4B


class Candidate(NamedTuple):
    """A ZeroMQ endpoint to probe, found from bootstrap address ``address``."""

    address: str
    zmq_address: str
    how: str  # "bootstrap" (asked the Kafka port), "zmtp" (a ZeroMQ port), "fallback"


def split(address: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` -> (host, port)."""
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


def join(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class _Attempt:
    """One bootstrap address: its socket and what it did."""

    def __init__(self, address: str):
        self.address = address
        self.sock: socket.socket | None = None
        self.sent = False
        self.received = bytearray()
        self.retry_at = 0.0
        self.connected = False
        self.refused = ""  # why the last connect failed (nothing listens, no such host)
        self.done: Candidate | str | None = None  # a candidate, or a sentence why not

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


def discover(
    addresses: list[str],
    quick: float,
    patient: float,
    client_id: str = "labkit",
    clock: Clock = REAL_CLOCK,
) -> tuple[list[Candidate], list[str]]:
    """(ZeroMQ endpoints to probe, sentences about the addresses that gave none)."""
    attempts = [_Attempt(address) for address in addresses]
    selector = selectors.DefaultSelector()
    request = wire.encode_request(_CORRELATION, client_id)
    start = clock.monotonic()
    try:
        while True:
            now = clock.monotonic()
            for attempt in attempts:
                if attempt.done is None and attempt.sock is None and now >= attempt.retry_at:
                    _connect(attempt, selector, clock)
            answered = [
                a.done
                for a in attempts
                if isinstance(a.done, Candidate) and a.done.how != "fallback"
            ]
            if answered:
                return answered[:1], []
            waiting = [a for a in attempts if a.done is None]
            if not waiting:
                break
            # someone is, or may be, there: connected, or a connect still pending (a busy
            # machine drops SYNs); a refused address is worth only the quick wait
            if now >= start + patient or (
                now >= start + quick and all(a.sock is None for a in waiting)
            ):
                break
            wake = min([start + patient, *(a.retry_at for a in waiting if a.sock is None)])
            if now < start + quick:
                wake = min(wake, start + quick)
            for key, events in selector.select(max(0.001, wake - now)):
                _serve(key.data, events, selector, request, clock)
    finally:
        for attempt in attempts:
            if attempt.sock is not None:
                selector.unregister(attempt.sock)
                attempt.close()
        selector.close()
    waited = clock.monotonic() - start
    candidates = [a.done for a in attempts if isinstance(a.done, Candidate)]
    problems = [a.done if isinstance(a.done, str) else _pending(a, waited) for a in attempts]
    return candidates, [p for p in problems if p]


def _pending(attempt: _Attempt, waited: float) -> str:
    if attempt.done is not None:
        return ""
    if attempt.connected:
        return (
            f"{attempt.address} accepted the connection but did not answer within "
            f"{waited:.1f} s (request_timeout_ms): is the broker stopped or overloaded?"
        )
    if attempt.refused:
        return f"{attempt.address} {attempt.refused}"
    return (
        f"{attempt.address} did not accept a connection within {waited:.1f} s "
        "(wrong host, or a firewall?)"
    )


def _connect(attempt: _Attempt, selector: selectors.BaseSelector, clock: Clock) -> None:
    try:
        host, port = split(attempt.address)
        family, kind, proto, _, target = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except (socket.gaierror, ValueError, UnicodeError) as exc:
        attempt.refused = f"could not be resolved ({exc}): check the host name"
        attempt.retry_at = clock.monotonic() + RETRY_REFUSED_S
        return
    sock = socket.socket(family, kind, proto)
    sock.setblocking(False)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    code = sock.connect_ex(target)
    if code not in (0, errno.EINPROGRESS, errno.EWOULDBLOCK):
        sock.close()
        _refused(attempt, code, clock)
        return
    attempt.sock = sock
    attempt.sent = False
    attempt.received.clear()
    selector.register(sock, selectors.EVENT_READ | selectors.EVENT_WRITE, attempt)


def _refused(attempt: _Attempt, code: int, clock: Clock) -> None:
    if code == errno.ECONNREFUSED:
        attempt.refused = "refused the connection (nothing listens there)"
    else:
        attempt.refused = f"could not be connected to ({errno.errorcode.get(code, code)})"
    attempt.retry_at = clock.monotonic() + RETRY_REFUSED_S


def _serve(
    attempt: _Attempt,
    events: int,
    selector: selectors.BaseSelector,
    request: bytes,
    clock: Clock,
) -> None:
    sock = attempt.sock
    assert sock is not None  # registered only while it has a socket
    if not attempt.sent and events & selectors.EVENT_WRITE:
        code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if code:
            selector.unregister(sock)
            attempt.close()
            _refused(attempt, code, clock)
            return
        attempt.connected = True
        attempt.sent = True
        try:
            sock.sendall(request)  # a few dozen bytes: the socket's buffer takes them
        except OSError:
            pass  # a ZeroMQ peer may hang up already; the read below tells
        selector.modify(sock, selectors.EVENT_READ, attempt)
        return
    if not events & selectors.EVENT_READ:
        return
    try:
        data = sock.recv(wire.MAX_ANSWER_BYTES + 4)
    except (BlockingIOError, InterruptedError):
        return
    except OSError:
        data = b""
    if data:
        attempt.received += data
        attempt.done = _read(attempt)
    elif not attempt.received or attempt.received[0] != wire.ZMTP_FIRST_BYTE:
        # closed before an answer: not labkit's Kafka port; ZeroMQ's probe says what it is
        attempt.done = Candidate(attempt.address, attempt.address, "fallback")
    if attempt.done is not None:
        selector.unregister(sock)
        attempt.close()


def _read(attempt: _Attempt) -> Candidate | str | None:
    """What the bytes so far say (None: wait for more)."""
    got = bytes(attempt.received)
    if got[0] == wire.ZMTP_FIRST_BYTE:
        return Candidate(attempt.address, attempt.address, "zmtp")
    if len(got) < 4:
        return None
    (size,) = struct.unpack_from(">i", got)
    if not 8 <= size <= wire.MAX_ANSWER_BYTES:
        return _not_labkit(attempt.address)
    if len(got) < 4 + size:
        return None
    try:
        correlation, error, answer = wire.decode_response(got[4 : 4 + size])
    except ProtocolError:
        return _not_labkit(attempt.address)
    if correlation != _CORRELATION:
        return _not_labkit(attempt.address)
    if error:
        return (
            f"{attempt.address} is a labkit broker that refused this client's bootstrap "
            f"request (error {error}; it speaks versions {answer.get('versions')}): update "
            "labkit (or the broker) so both are the same version"
        )
    host = answer.get("zmq_host") or split(attempt.address)[0]
    return Candidate(attempt.address, join(host, answer["zmq_port"]), "bootstrap")


def _not_labkit(address: str) -> str:
    return (
        f"{address} accepted the connection but does not speak labkit's protocol "
        "(another service on that port?)"
    )
