"""Which broker a bootstrap string reaches: labkit's, or another Kafka (Apache Kafka, a
managed cluster), whose clients labkit's classes then delegate to kafka-python.

Theory of operation
-------------------
``backend_for(bootstrap_servers)`` connects to every address at once over plain TCP and
writes two requests in one segment: Kafka's ApiVersions (v0, which every Kafka broker
answers) and labkit's bootstrap request (API key 19531, protocol/bootstrap.py). The
bytes that come back decide, per address:

- a ZeroMQ greeting (first byte 0xFF): a labkit broker's ZeroMQ port -> ``"labkit"``;
- the bootstrap answer (after the ApiVersions answer, in request order): -> ``"labkit"``;
- an ApiVersions answer, then the connection closed: a Kafka broker that does not know
  API key 19531 (Apache Kafka closes the connection on an unknown key) -> ``"kafka"``;
  so does an ApiVersions answer followed by silence for ``KAFKA_SILENCE_S``;
- refused, unresolvable, closed before any byte, other bytes, or silence: no answer.

The first address with an answer decides for the whole string, and the answer is cached
per bootstrap string for ``CACHE_S`` (30 s), and dropped when a client fails to reach
the broker (``forget``: a broker replaced by another kind on the same port). No answer is
not cached and counts as ``"labkit"``: labkit's own client then reports, with its usual
sentences, what each address did (nothing listens, no answer...), and once it reaches a
labkit broker there it records ``"labkit"`` (``remember``), so a broker too busy to
answer within ``DETECT_TIMEOUT_S`` costs that wait once, not per client. Both kinds of broker
answer within one round trip, so a labkit broker's first client pays one local round
trip more, and later clients nothing.
"""

from __future__ import annotations

import errno
import selectors
import socket
import struct
import threading
from typing import Any, Literal

from labkit._clock import REAL_CLOCK, Clock
from labkit.client.config import format_address, parse_bootstrap
from labkit.protocol import bootstrap as wire

Backend = Literal["labkit", "kafka"]
LABKIT: Backend = "labkit"
KAFKA: Backend = "kafka"

DETECT_TIMEOUT_S = 5.0  # an accepted connection that stays silent this long: no answer
KAFKA_SILENCE_S = 1.0  # an ApiVersions answer, then nothing this long: not labkit
_API_VERSIONS_KEY = 18
_API_VERSIONS_CORRELATION = 0x4C4A  # labkit's bootstrap request uses 0x4C4B
_BOOTSTRAP_CORRELATION = 0x4C4B
_MAX_ANSWER_BYTES = 64 * 1024  # an ApiVersions v0 answer is well under 1 KiB

CACHE_S = 30.0  # an answer is kept this long (a broker replaced on the same port is seen)
_cache: dict[tuple[str, ...], tuple[Backend, float]] = {}  # addresses -> (kind, expiry)
_lock = threading.Lock()


def backend_for(
    bootstrap_servers: Any = None,
    timeout_s: float = DETECT_TIMEOUT_S,
    clock: Clock = REAL_CLOCK,
) -> Backend:
    """``"labkit"`` or ``"kafka"``: which broker ``bootstrap_servers`` reaches (cached).

    ``bootstrap_servers`` as a client takes it (None: ``$LABKIT_BOOTSTRAP``, else
    localhost:9092). Raises KafkaConfigurationError for a malformed address.
    """
    addresses = _key(bootstrap_servers)
    with _lock:
        known, expiry = _cache.get(addresses, (None, 0.0))
    if known is not None and clock.monotonic() < expiry:
        return known
    found = _detect(list(addresses), timeout_s, clock)
    if found is None:
        return LABKIT
    remember(list(addresses), found, clock)
    return found


def _key(bootstrap_servers: Any) -> tuple[str, ...]:
    return tuple(format_address(h, p) for h, p in parse_bootstrap(bootstrap_servers))


def remember(addresses: Any, found: Backend, clock: Clock = REAL_CLOCK) -> None:
    """Record what ``addresses`` (as a client takes them) reach; labkit's transport calls
    it once a labkit broker answered there."""
    key = _key(addresses)
    with _lock:
        _cache[key] = (found, clock.monotonic() + CACHE_S)


def forget(addresses: Any = None) -> None:
    """Drop what is known about ``addresses`` (a client could not reach them: the broker
    there may have been replaced by another kind), or everything."""
    with _lock:
        if addresses is None:
            _cache.clear()
        else:
            _cache.pop(_key(addresses), None)


def api_versions_request(correlation_id: int, client_id: str = "labkit") -> bytes:
    """Kafka's ApiVersions v0 request (header v1) with its 4-byte size prefix."""
    name = client_id.encode("utf-8")
    body = struct.pack(">hhih", _API_VERSIONS_KEY, 0, correlation_id, len(name)) + name
    return struct.pack(">i", len(body)) + body


def parse_api_versions(frame: bytes) -> tuple[int, dict[int, tuple[int, int]]] | None:
    """(correlation id, {api key: (min, max)}) of an ApiVersions v0 answer without its
    size prefix, or None when the bytes are not one."""
    if len(frame) < 10:
        return None
    correlation, error, count = struct.unpack_from(">ihi", frame)
    if error != 0 or not 0 <= count <= (len(frame) - 10) // 6:
        return None
    keys = {}
    for index in range(count):
        key, low, high = struct.unpack_from(">hhh", frame, 10 + 6 * index)
        keys[key] = (low, high)
    return correlation, keys


class _Probe:
    """One address: its socket, the bytes so far, and what they said."""

    def __init__(self, address: str):
        self.address = address
        self.sock: socket.socket | None = None
        self.received = bytearray()
        self.kafka_since: float | None = None  # when an ApiVersions answer came
        self.verdict: Backend | None = None
        self.finished = False

    def close(self, selector: selectors.BaseSelector) -> None:
        if self.sock is not None:
            selector.unregister(self.sock)
            self.sock.close()
            self.sock = None
        self.finished = True


def _detect(addresses: list[str], timeout_s: float, clock: Clock) -> Backend | None:
    request = api_versions_request(_API_VERSIONS_CORRELATION) + wire.encode_request(
        _BOOTSTRAP_CORRELATION, "labkit"
    )
    selector = selectors.DefaultSelector()
    probes = [_Probe(address) for address in addresses]
    start = clock.monotonic()
    try:
        for probe in probes:
            _open(probe, selector)
        while True:
            now = clock.monotonic()
            for probe in probes:
                if probe.kafka_since is not None and now >= probe.kafka_since + KAFKA_SILENCE_S:
                    probe.verdict = KAFKA
                    probe.close(selector)
                if probe.verdict is not None:
                    return probe.verdict
            open_probes = [p for p in probes if not p.finished]
            if not open_probes or now >= start + timeout_s:
                return None
            wake = min(
                [start + timeout_s]
                + [p.kafka_since + KAFKA_SILENCE_S for p in open_probes if p.kafka_since]
            )
            for key, events in selector.select(max(0.001, wake - now)):
                _serve(key.data, events, selector, request, clock)
    finally:
        for probe in probes:
            probe.close(selector)
        selector.close()


def _open(probe: _Probe, selector: selectors.BaseSelector) -> None:
    try:
        host, port = probe.address.rsplit(":", 1)
        info = socket.getaddrinfo(host.strip("[]"), int(port), type=socket.SOCK_STREAM)[0]
    except (OSError, ValueError, UnicodeError):
        probe.finished = True
        return
    family, kind, proto, _, target = info
    sock = socket.socket(family, kind, proto)
    sock.setblocking(False)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if sock.connect_ex(target) not in (0, errno.EINPROGRESS, errno.EWOULDBLOCK):
        sock.close()
        probe.finished = True
        return
    probe.sock = sock
    selector.register(sock, selectors.EVENT_WRITE, probe)


def _serve(
    probe: _Probe,
    events: int,
    selector: selectors.BaseSelector,
    request: bytes,
    clock: Clock,
) -> None:
    sock = probe.sock
    assert sock is not None  # registered only while it has a socket
    if events & selectors.EVENT_WRITE:
        if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
            probe.close(selector)  # refused: nothing listens there
            return
        try:
            sock.sendall(request)  # under 100 bytes: the socket's buffer takes them
        except OSError:
            pass  # a ZeroMQ peer may hang up already; the read below tells
        selector.modify(sock, selectors.EVENT_READ, probe)
        return
    try:
        data = sock.recv(_MAX_ANSWER_BYTES)
    except (BlockingIOError, InterruptedError):
        return
    except OSError:
        data = b""
    if not data:
        if probe.kafka_since is not None:
            probe.verdict = KAFKA  # ApiVersions answered, key 19531 made it hang up
        probe.close(selector)
        return
    probe.received += data
    _read(probe, clock)
    if probe.verdict is not None or probe.finished or len(probe.received) > _MAX_ANSWER_BYTES:
        probe.close(selector)


def _read(probe: _Probe, clock: Clock) -> None:
    """Consume the whole answers in ``probe.received``; set what they say."""
    got = probe.received
    if got and got[0] == wire.ZMTP_FIRST_BYTE and probe.kafka_since is None:
        probe.verdict = LABKIT
        return
    while len(got) >= 4:
        (size,) = struct.unpack_from(">i", got)
        if not 4 <= size <= _MAX_ANSWER_BYTES:
            probe.finished = True  # not Kafka's framing: another service
            got.clear()
            return
        if len(got) < 4 + size:
            return
        frame = bytes(got[4 : 4 + size])
        del got[: 4 + size]
        (correlation,) = struct.unpack_from(">i", frame)
        if correlation == _BOOTSTRAP_CORRELATION:
            probe.verdict = LABKIT
            return
        answer = parse_api_versions(frame)
        if answer is None or answer[0] != _API_VERSIONS_CORRELATION:
            probe.finished = True
            return
        if wire.KEY in answer[1]:
            probe.verdict = LABKIT  # a labkit broker that lists its bootstrap key
            return
        probe.kafka_since = clock.monotonic()


def on_kafka(configs: dict[str, Any]) -> bool:
    """Whether a client built with ``configs`` reaches a Kafka broker that is not labkit
    (its class then delegates to kafka-python: client/delegate.py)."""
    return backend_for(configs.get("bootstrap_servers")) == KAFKA
