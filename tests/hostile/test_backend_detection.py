"""``backend_for`` against servers that are neither labkit nor a well-behaved Kafka:
whatever they send, it returns within its bounds, caches only a real answer, and never
calls a stranger "kafka" (which would hand the client to kafka-python)."""

from __future__ import annotations

import socket
import struct
import threading
import time

import pytest

import labkit
from labkit.client import backend
from labkit.protocol import bootstrap as wire


class FakeServer:
    """A TCP server that reads one request segment and answers with ``reply(request)``
    (bytes), then closes when ``close_after`` (else stays silent until the test ends)."""

    def __init__(self, reply, close_after: bool = True):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self.listener.getsockname()[1]}"
        self.reply = reply
        self.close_after = close_after
        self.connections: list[socket.socket] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections.append(conn)
            conn.settimeout(5)
            try:
                request = conn.recv(4096)
                conn.sendall(self.reply(request))
            except OSError:
                pass
            if self.close_after:
                conn.close()

    def close(self) -> None:
        self.listener.close()
        for conn in self.connections:
            conn.close()


@pytest.fixture
def serve():
    servers = []

    def start(reply, close_after: bool = True) -> str:
        server = FakeServer(reply, close_after)
        servers.append(server)
        return server.address

    backend.forget()
    yield start
    backend.forget()
    for server in servers:
        server.close()


def api_versions_answer(keys: list[int], correlation: int = 0x4C4A) -> bytes:
    body = struct.pack(">ihi", correlation, 0, len(keys))
    body += b"".join(struct.pack(">hhh", key, 0, 3) for key in keys)
    return struct.pack(">i", len(body)) + body


def timed(address: str, **kwargs) -> tuple[str, float]:
    start = time.monotonic()
    found = backend.backend_for(address, **kwargs)
    return found, time.monotonic() - start


def test_apache_kafkas_way_an_answer_then_a_hang_up_is_kafka_and_cached(serve):
    address = serve(lambda request: api_versions_answer([0, 1, 3, 18]))
    assert timed(address)[0] == "kafka"
    assert backend._cache[(address,)][0] == "kafka"


def test_an_answer_then_silence_is_kafka_after_a_second(serve):
    address = serve(lambda request: api_versions_answer([0, 1, 18]), close_after=False)
    found, took = timed(address)
    assert found == "kafka"
    assert took < backend.KAFKA_SILENCE_S + 3  # generous: a loaded machine


def test_an_api_versions_answer_that_lists_labkits_key_is_labkit(serve):
    address = serve(lambda request: api_versions_answer([18, wire.KEY]))
    assert timed(address)[0] == "labkit"


@pytest.mark.parametrize(
    "reply",
    [
        b"HTTP/1.1 400 Bad Request\r\n\r\n",  # another service
        b"\x7f\xff\xff\xff" + b"x" * 100,  # a 2 GiB size: not read
        b"\x00\x00\x00\x0a" + struct.pack(">ihi", 0x4C4A, 0, 1_000_000)[:10],  # count lies
        api_versions_answer([18], correlation=7),  # someone else's correlation id
        b"",  # hangs up at once
    ],
    ids=["http", "huge-size", "lying-count", "wrong-correlation", "hang-up"],
)
def test_strangers_are_no_answer_quickly_and_not_cached(serve, reply):
    address = serve(lambda request: reply)
    found, took = timed(address)
    assert found == "labkit"  # no answer: labkit's client reports what the address did
    assert took < 3
    assert (address,) not in backend._cache


def test_a_silent_server_is_waited_for_only_up_to_the_timeout(serve):
    address = serve(lambda request: b"", close_after=False)
    found, took = timed(address, timeout_s=0.5)
    assert found == "labkit"
    assert took < 3


def test_nothing_listening_or_no_such_host_is_no_answer_at_once():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = f"127.0.0.1:{probe.getsockname()[1]}"
    assert timed(closed)[0] == "labkit"
    assert timed("no-such-host.invalid:9092")[0] == "labkit"
    assert backend._cache == {}


def test_the_first_address_that_answers_decides_for_the_string(serve):
    kafka_like = serve(lambda request: api_versions_answer([18]))
    stranger = serve(lambda request: b"garbage")
    assert backend.backend_for(f"{stranger},{kafka_like}") == "kafka"


def closed_address() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{probe.getsockname()[1]}"


def test_an_answer_is_kept_for_a_while_then_asked_again(serve):
    from labkit.testing import FakeClock

    clock = FakeClock()
    address = closed_address()
    backend.remember([address], "kafka", clock)
    assert backend.backend_for(address, clock=clock) == "kafka"
    clock.advance(backend.CACHE_S + 1)
    assert backend.backend_for(address, clock=clock) == "labkit"  # refused now: no answer


def test_a_client_that_cannot_reach_the_broker_drops_what_was_known(serve):
    address = closed_address()
    backend.remember([address], "labkit")
    with pytest.raises(labkit.NoBrokersAvailable):
        labkit.KafkaProducer(bootstrap_servers=address, api_version_auto_timeout_ms=200)
    assert backend._cache == {}
